//! `stabspace serve`: the HTTP query server (see [`crate::server`]).

use std::net::SocketAddr;
use std::time::Duration;

use crate::cli::global::GlobalOpts;
use crate::error::Result;
use crate::server::{serve, ApiKeys, App, Limits};

#[derive(Debug, clap::Args)]
#[command(after_help = "Routes (JSON in and out):\n\
  GET  /v1/partitions                                     every partition with its status (as `index status`) and \
the recall this server observes on it (--recall-sample)\n\
  POST /v1/partitions/{joint_model}/{scenario_set}/search  {\"vector\": [...]} or {\"vectors\": [[...], ...]}, \
\"k\", optional \"ef\" / \"recall\" / \"exact\"\n\
  POST /v1/similar-scenarios                              find-similar-stab-scenarios's flags in snake_case\n\
  POST /v1/portfolio-exposure                             show-portfolio-stab-scenario-exposure's flags in snake_case\n\
  GET  /healthz, GET /metrics (Prometheus text format)\n\n\
Partitions are opened once and shared; a partition rebuilt by the CLI (or another server) is picked up by \
the next request, while requests in flight finish on the old file. Every answer is for the set as the \
database read holds it now (--read-database-url, a replica, when given; else --database-url) and says how it was found (\"answered_by\": index, index+delta or exact-scan, \
\"partition_stale\"), counted in the metric stabspace_answers_total; --rebuild-stale brings stale \
partitions up to date in the background. SIGINT or SIGTERM stops accepting, \
finishes the requests in flight and exits 0.\n\n\
Without --api-key-file there is NO AUTHENTICATION: anyone who can reach the address can query (and \
read the scenario ids of) every partition. The default address is loopback. With --api-key-file, every \
route but GET /healthz answers 401 unless the request carries `Authorization: Bearer <key>` with one of \
the file's keys; serve TLS in front of it (a proxy: see deploy/README.md) so that keys never cross a \
network in clear.\n\n\
Example: stabspace serve --addr 127.0.0.1:7878 &\n  \
curl -s localhost:7878/v1/similar-scenarios -d '{\"instrument_id\": \"SYN0001.US\", \"as_of\": \"2023-03-24\", \
\"model_id\": \"joint-stab-fragility-v2\", \"scenario_set_id\": \"MC_STRESS_V0\", \"top_k\": 5}'")]
pub struct Args {
    /// Address to listen on (port 0: any free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:7878")]
    pub addr: SocketAddr,
    /// Largest k (top_k) a request may ask for.
    #[arg(long, default_value_t = 1000, value_parser = crate::config::parse_clamped)]
    pub max_k: usize,
    /// Largest search breadth (ef) a request may ask for.
    #[arg(long, default_value_t = 10_000, value_parser = crate::config::parse_clamped)]
    pub max_ef: usize,
    /// Most vectors in one search request.
    #[arg(long, default_value_t = 1024, value_parser = crate::config::parse_clamped)]
    pub max_batch: usize,
    /// Largest request body, in MiB (a larger one is answered 413).
    #[arg(long, default_value_t = 16, value_parser = crate::config::parse_clamped)]
    pub max_body_mb: usize,
    /// Seconds a request may take (its wait for a turn included) before it is answered 408.
    #[arg(long, default_value_t = 30, value_parser = crate::config::parse_clamped)]
    pub timeout_secs: usize,
    /// Requests handled at once by the whole server; more wait their turn (within the timeout).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub concurrency: u32,
    /// Rebuild stale partitions in the background, one at a time: at start and then every
    /// --rebuild-stale-secs, each partition is compared with its set's change counters (constant
    /// work) and those the database has moved past are rebuilt as `index rebuild` would (an
    /// append when the set only gained rows). Until a new file is swapped in, queries answer
    /// for the set as the database holds it (answered_by index+delta or exact-scan). Off by
    /// default: builds are the backfills' and `index rebuild`'s work. With --read-database-url
    /// the queries read the replica while the look and the rebuilds read the primary
    /// (--database-url); a partition ahead of a lagging replica answers as it is.
    #[arg(long)]
    pub rebuild_stale: bool,
    /// Seconds between two looks for stale partitions (with --rebuild-stale).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..), requires = "rebuild_stale")]
    pub rebuild_stale_secs: u64,
    /// Require an API key: FILE holds one key per line (at least 16 characters, no whitespace;
    /// blank lines and lines starting with '#' are skipped). Every route but GET /healthz then
    /// answers 401 unless the request carries `Authorization: Bearer <key>` with one of them.
    /// Read once, at start.
    #[arg(long, value_name = "FILE")]
    pub api_key_file: Option<std::path::PathBuf>,
    /// With an s3:// --partition-store: seconds between two reads of the partition manifest.
    /// A new version of a partition this node serves is fetched into --cache-dir (its SHA-256
    /// checked) before it is swapped in, so no request waits on a download after a publish;
    /// one this node never served is fetched at its first request. With the object store
    /// down, cached versions keep serving and others are answered by an exact scan.
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS", value_parser = parse_seconds)]
    pub refresh_secs: f64,
    /// Share of queries whose answer is checked against an exact scan of the same partition
    /// rows, with the same filter, off the request path (0: none; 1: every one). Each check
    /// gives the query's recall@k (tie-aware); per partition, the mean of the last 200 is the
    /// gauge stabspace_observed_recall and GET /v1/partitions' observed_recall, each one the
    /// histogram stabspace_query_recall. A partition whose queries that asked for a recall
    /// (`recall`, default 0.95; not those that gave `ef`) fall clearly below it over at least 50
    /// of them is warned about on stderr and in recall_warning. Answers that were exact already
    /// are not checked. The checks take at most 3% of one core; samples past that are dropped
    /// (stabspace_recall_samples_dropped_total). The windows are recorded in the database every
    /// minute and at shutdown (best effort: a read replica refuses, said once), for `index status`.
    #[arg(long, default_value_t = 0.01, value_name = "FRACTION", value_parser = crate::config::parse_sample_share)]
    pub recall_sample: f64,
}

/// clap value parser for `--refresh-secs`: a positive number of seconds.
fn parse_seconds(s: &str) -> std::result::Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(x) if x > 0.0 && x.is_finite() && x <= 86_400.0 => Ok(x),
        _ => Err(format!("{s:?} is not a number of seconds between 0 and 86400")),
    }
}

pub async fn run(g: &GlobalOpts, a: Args) -> Result<()> {
    // Before the database: a bad key file is refused at once.
    let api_keys = a.api_key_file.as_deref().map(ApiKeys::from_file).transpose()?;
    let db = g.open_db_read().await?;
    let limits = Limits {
        max_k: a.max_k,
        max_ef: a.max_ef,
        max_batch: a.max_batch,
        max_body_bytes: a.max_body_mb.saturating_mul(1 << 20),
        timeout: Duration::from_secs(a.timeout_secs as u64),
        concurrency: a.concurrency as usize,
    };
    let config = g.config();
    // Rebuilds read the primary; without a replica that is the same database.
    let primary = match (a.rebuild_stale, config.reads_a_replica()) {
        (false, _) => None,
        (true, false) => Some(db.clone()),
        (true, true) => Some(g.open_primary_read().await?),
    };
    let mut app = App::new(db, &config, limits)?;
    app.api_keys = api_keys;
    app.refresh_every = Duration::from_secs_f64(a.refresh_secs);
    if a.recall_sample > 0.0 {
        // Recorded where serve writes anyway (the primary with --rebuild-stale), else where it reads.
        let record_to = primary.clone().unwrap_or_else(|| app.db.clone());
        app.sample_recall(a.recall_sample, record_to);
    }
    app.rebuild_stale = primary.map(|p| (Duration::from_secs(a.rebuild_stale_secs), p));
    serve(a.addr, app).await
}
