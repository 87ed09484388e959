//! `stabspace index …`: build, rebuild, inspect, verify and drop the index
//! partitions under `<data-dir>/index/`.

use stabspace_index::{BuildParams, GraphBuilder, Quantization, MAX_M};

use crate::cli::global::GlobalOpts;
use crate::cli::progress::Bars;
use crate::error::{Error, Result};
use crate::output::Format;
use crate::partitions::calibrate::{recalibrate, QuerySource};
use crate::partitions::queries::file_queries;
use crate::partitions::{
    build, recorded_params, sources, status_all, status_of, swept_note, BuildMode, Freshness,
};
use crate::report;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: IndexCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum IndexCommand {
    /// Build (or replace) the partition of one (joint model, scenario set), from the primary
    /// (--database-url, never --read-database-url).
    Build(BuildArgs),
    /// Rebuild partitions: all of them, or only the stale and missing ones, each
    /// with the parameters it was built with unless flags say otherwise. Reads the primary.
    Rebuild(RebuildArgs),
    /// One line per partition: vectors, size, parameters, built at, and fresh /
    /// stale / missing against the database read (--read-database-url when given;
    /// ahead-of-database when that replica is behind the partition, which is then not
    /// stale), checksums checked, and the last recall observed on sampled queries (`serve` and
    /// the metrics backfill, --recall-sample). Removes the temporary files of killed builds and
    /// says so.
    Status(StatusArgs),
    /// Recalibrate partitions' recall in place on the queries users send: by default the joint
    /// model's most recent instrument states (on or before --as-of), or the vectors of
    /// --queries FILE. The graph is not rebuilt (its bytes do not change) and the partition
    /// stays fresh; afterwards `--recall R` (the default 0.95) searches with the breadth that
    /// met R on those queries. Run it when the query population changed: states backfilled
    /// after the index was built, a new universe, a new kind of portfolio.
    Calibrate(CalibrateArgs),
    /// Check every checksum of every partition file; exit non-zero on any failure.
    Verify,
    /// Remove what no partition needs any more. In an s3:// store: versions superseded more
    /// than --grace-hours ago are forgotten, then objects no version names (those of builds
    /// that lost a race, or were killed after their upload) older than --grace-hours are
    /// deleted. Query nodes keep the versions they have cached. In a directory: the
    /// temporary files of killed builds.
    Gc(GcArgs),
    /// Delete the partition of one (joint model, scenario set), or all of them.
    Drop(DropArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct ParamArgs {
    /// Graph degree (neighbours per node on the upper levels; 2·M on level 0).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(2..=MAX_M as i64))]
    pub m: u32,
    /// Candidate breadth while inserting (higher: better graph, slower build).
    #[arg(long, default_value_t = 200)]
    pub ef_construction: usize,
    /// Insert on one thread so the same input gives a byte-identical file.
    #[arg(long)]
    pub deterministic: bool,
    /// Graph builder: ours (parallel, per-node locks; appends new rows to an
    /// existing graph), or hnsw_rs, the reference it is tested against
    /// (always a full build).
    #[arg(long, value_enum, default_value_t = BuilderArg::Stabspace)]
    pub builder: BuilderArg,
    /// Write no int8 copy of the vectors: graph searches then read the f32
    /// vectors (slower; the file is about a fifth smaller). By default the
    /// beam runs on int8 codes and the answers are re-ranked exactly.
    #[arg(long)]
    pub no_quantized: bool,
}

/// `--builder` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BuilderArg {
    Stabspace,
    #[value(name = "hnsw_rs")]
    HnswRs,
}

impl From<BuilderArg> for GraphBuilder {
    fn from(b: BuilderArg) -> Self {
        match b {
            BuilderArg::Stabspace => GraphBuilder::Native,
            BuilderArg::HnswRs => GraphBuilder::HnswRs,
        }
    }
}

impl ParamArgs {
    pub fn params(&self) -> BuildParams {
        BuildParams {
            m: self.m as usize,
            ef_construction: self.ef_construction.max(1),
            deterministic: self.deterministic,
            builder: self.builder.into(),
            quantization: if self.no_quantized {
                Quantization::None
            } else {
                Quantization::default()
            },
            ..BuildParams::default()
        }
    }
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Reads the STAB scenario vectors of the set from joint_embeddings and writes \
<data-dir>/index/<model>/<set>.stabidx atomically: queries running meanwhile keep the old file.\n\n\
Example: stabspace index build --model-id joint-stab-fragility-v1 --scenario-set-id MC_STRESS_V0"
)]
pub struct BuildArgs {
    /// Joint model whose STAB scenario vectors are indexed.
    #[arg(long, default_value = "joint-stab-fragility-v1")]
    pub model_id: String,
    /// Scenario set whose STAB scenario vectors are indexed.
    #[arg(long)]
    pub scenario_set_id: String,
    #[command(flatten)]
    pub params: ParamArgs,
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Each partition is rebuilt with the M, ef_construction, seed and deterministic \
setting recorded in the file it replaces; a flag given here overrides that one setting for every \
partition rebuilt. A (model, set) without a readable partition gets the defaults of `index build` \
(M 16, ef_construction 200, parallel). The output says which parameters each build used and why.\n\n\
Append or full: when a set has only gained rows since its partition was built (no row changed or \
removed) and the parameters are kept, only the new rows are inserted into the existing graph and the \
file is written anew atomically; a changed or removed row (found by comparing each row's content hash \
with the hashes stored in the file), other parameters, a partition without a graph or in format \
version 1, or --full build the graph from all rows. `index status` says which the next rebuild will \
do; the output says which each did and why."
)]
pub struct RebuildArgs {
    /// Every (model, set) in the database, fresh or not.
    #[arg(long)]
    pub all: bool,
    /// Build every graph from all its rows, even where the set has only gained
    /// rows and the new ones could be appended to the existing graph.
    #[arg(long)]
    pub full: bool,
    #[command(flatten)]
    pub params: RebuildParamArgs,
}

/// The build parameters of `index rebuild`: each one given overrides what
/// the partition records; the others are kept.
#[derive(Debug, Clone, clap::Args)]
pub struct RebuildParamArgs {
    /// Graph degree (default: each partition's recorded M; 16 without one).
    #[arg(long, value_parser = clap::value_parser!(u32).range(2..=MAX_M as i64))]
    pub m: Option<u32>,
    /// Candidate breadth while inserting (default: each partition's recorded value; 200 without one).
    #[arg(long)]
    pub ef_construction: Option<usize>,
    /// Insert on one thread so the same input gives a byte-identical file; `--deterministic false`
    /// inserts in parallel (default: each partition's recorded setting; parallel without one).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub deterministic: Option<bool>,
    /// Write the int8 copy of the vectors that graph searches traverse; `--quantized false` writes
    /// none (default: each partition's recorded setting; on without one).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub quantized: Option<bool>,
}

impl RebuildParamArgs {
    /// The parameters for a rebuild of a partition that records `recorded`
    /// (`None`: no readable partition), and where each came from, in words.
    pub fn resolve(&self, recorded: Option<&BuildParams>) -> (BuildParams, String) {
        let default = BuildParams::default();
        let base = recorded.unwrap_or(&default);
        let kept = if recorded.is_some() { "recorded" } else { "default" };
        let from = |flag: bool, name: &'static str| if flag { name } else { kept };
        let params = BuildParams {
            m: self.m.map_or(base.m, |m| m as usize),
            ef_construction: self.ef_construction.map_or(base.ef_construction, |e| e.max(1)),
            seed: base.seed,
            deterministic: self.deterministic.unwrap_or(base.deterministic),
            builder: base.builder,
            quantization: match self.quantized {
                Some(true) if base.quantization == Quantization::None => Quantization::default(),
                Some(true) => base.quantization,
                Some(false) => Quantization::None,
                None => base.quantization,
            },
            ..default.clone()
        };
        let words = format!(
            "M {} ({}), ef_construction {} ({}), seed {} ({kept}), {} ({})",
            params.m,
            from(self.m.is_some(), "--m"),
            params.ef_construction,
            from(self.ef_construction.is_some(), "--ef-construction"),
            params.seed,
            if params.deterministic {
                "deterministic"
            } else {
                "parallel"
            },
            from(self.deterministic.is_some(), "--deterministic"),
        ) + &format!(
            ", builder {} ({kept}), quantisation {} ({})",
            params.builder.name(),
            params.quantization.name(),
            from(self.quantized.is_some(), "--quantized"),
        );
        (params, words)
    }
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// List every version an s3:// partition store holds (generation, current, cached on this
    /// machine, SHA-256, object), instead of one line per partition. In text format with an
    /// s3:// store they follow the partitions anyway.
    #[arg(long)]
    pub versions: bool,
}

/// One partition (--model-id, --scenario-set-id) or every one (--all).
#[derive(Debug, clap::Args)]
#[group(skip)]
pub struct Which {
    /// Joint model of the partition.
    #[arg(long, default_value = "joint-stab-fragility-v1")]
    pub model_id: String,
    /// Scenario set of the partition.
    #[arg(long, required_unless_present = "all")]
    pub scenario_set_id: Option<String>,
    /// Every partition of the store (of every joint model).
    #[arg(long, conflicts_with = "scenario_set_id")]
    pub all: bool,
}

#[derive(Debug, clap::Args)]
pub struct CalibrateArgs {
    #[command(flatten)]
    pub which: Which,
    /// Calibrate on the states on or before this date (YYYY-MM-DD; default: the latest):
    /// the most recent ones, up to 2,000 read and 500 measured.
    #[arg(long, value_parser = crate::parse::parse_date, conflicts_with = "queries")]
    pub as_of: Option<chrono::NaiveDate>,
    /// Calibrate on these query vectors instead: raw little-endian float32 rows of 384
    /// columns (as `stabspace bench --queries` reads); up to 500 are measured.
    #[arg(long, value_name = "FILE")]
    pub queries: Option<std::path::PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct GcArgs {
    /// Keep anything younger than this many hours (at least 1): a build still uploading or
    /// committing, a version a query node may still be fetching.
    #[arg(long, default_value_t = 24.0, value_parser = parse_hours)]
    pub grace_hours: f64,
    /// Say what would be removed; remove nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// clap value parser for `--grace-hours`: hours, 1 or more (an object
/// uploaded a moment ago may be a version whose manifest row is being committed).
fn parse_hours(s: &str) -> std::result::Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(h) if (1.0..=1e6).contains(&h) => Ok(h),
        Ok(_) => Err(format!(
            "{s} hours: give at least 1 (a younger object may belong to a publish still committing)"
        )),
        _ => Err(format!("{s:?} is not a number of hours")),
    }
}

#[derive(Debug, clap::Args)]
pub struct DropArgs {
    /// The partition to delete, or --all.
    #[command(flatten)]
    pub which: Which,
}

pub async fn run(g: &GlobalOpts, a: Args) -> Result<()> {
    let bars = Bars::default();
    let store = g.config().partition_store()?;
    let store = &*store;
    match a.command {
        IndexCommand::Build(b) => {
            // The primary, never the read replica: a build publishes what
            // queries answer from, and must hold the newest rows.
            let db = g.open_primary_read().await?;
            let built = build(
                &db,
                store,
                &b.model_id,
                &b.scenario_set_id,
                &b.params.params(),
                BuildMode::Full,
                &bars,
            )
            .await?;
            print!("{built}");
        }
        IndexCommand::Rebuild(r) => {
            let db = g.open_primary_read().await?;
            let pairs = sources(&db).await?;
            if pairs.is_empty() {
                return Err(Error::Invalid(
                    "no STAB scenario vectors in the database: nothing to index (run \
                     backfill-joint-stab-fragility-scenarios first)"
                        .into(),
                ));
            }
            if let Some(note) = swept_note(&store.sweep()?) {
                println!("{note}");
            }
            let mut rebuilt = 0;
            for (model, set) in pairs {
                match status_of(&db, store, &model, &set).await?.state {
                    Freshness::Fresh if !r.all => {
                        println!("index {model} / {set}: fresh, kept");
                        continue;
                    }
                    // The primary behind its own partition: restored from an
                    // older backup, say. Rebuilt only when asked to.
                    Freshness::Ahead if !r.all => {
                        println!(
                            "index {model} / {set}: kept: {} is behind this partition (`index rebuild \
                             --all` rebuilds it from the rows it holds)",
                            db.label()
                        );
                        continue;
                    }
                    _ => {}
                }
                let recorded = recorded_params(store, &model, &set);
                let (params, words) = r.params.resolve(recorded.as_ref());
                println!("index {model} / {set}: rebuilding with {words}");
                let mode = if r.full {
                    BuildMode::Full
                } else {
                    BuildMode::AppendIfOnlyGained
                };
                print!("{}", build(&db, store, &model, &set, &params, mode, &bars).await?);
                rebuilt += 1;
            }
            println!("{rebuilt} partition(s) rebuilt");
        }
        IndexCommand::Status(s) if s.versions => match store.versions()? {
            Some(v) => report::stored_versions(&v).emit_to(s.format, None)?,
            None => println!(
                "{} is a directory: it holds one version of each partition (`index status` lists them)",
                store.describe()
            ),
        },
        IndexCommand::Status(s) => {
            let db = g.open_db_read().await?;
            // Not part of the table: stdout stays one table in CSV and JSON.
            if let Some(note) = swept_note(&store.sweep()?) {
                match s.format {
                    Format::Text => println!("{note}"),
                    Format::Csv | Format::Json => eprintln!("{note}"),
                }
            }
            let rows = status_all(&db, store).await?;
            if rows.is_empty() {
                println!("no partitions and no STAB scenario vectors in {}", db.label());
                return Ok(());
            }
            report::partition_status(&rows).emit_to(s.format, None)?;
            if s.format == Format::Text {
                if let Some(v) = store.versions()? {
                    println!(
                        "\nversions in {} (`index status --versions` for CSV or JSON):",
                        store.describe()
                    );
                    report::stored_versions(&v).emit_to(s.format, None)?;
                }
            }
        }
        IndexCommand::Gc(c) => {
            let grace = std::time::Duration::from_secs_f64(c.grace_hours * 3600.0);
            let done = store.gc(grace, c.dry_run)?;
            let verb = if c.dry_run { "would forget" } else { "forgot" };
            for v in &done.versions {
                println!("{verb} superseded version {v}");
            }
            let verb = if c.dry_run { "would delete" } else { "deleted" };
            for (o, bytes) in &done.objects {
                println!("{verb} {o} ({:.1} MB)", *bytes as f64 / 1e6);
            }
            println!(
                "{} version(s), {} object(s) ({:.1} MB){}; {} unnamed object(s) younger than {} h kept",
                done.versions.len(),
                done.objects.len(),
                done.objects.iter().map(|(_, b)| *b as f64).sum::<f64>() / 1e6,
                if c.dry_run {
                    " would be removed (dry run)"
                } else {
                    " removed"
                },
                done.kept_young,
                c.grace_hours
            );
        }
        IndexCommand::Calibrate(c) => {
            // The primary: the publish is a new version of the partition.
            let db = g.open_primary_read().await?;
            let source = match &c.queries {
                Some(f) => QuerySource::Given(file_queries(f, crate::vector::DIM)?),
                None => QuerySource::States(c.as_of),
            };
            let pairs: Vec<(String, String)> = match &c.which.scenario_set_id {
                Some(set) if !c.which.all => vec![(c.which.model_id.clone(), set.clone())],
                _ => sources(&db)
                    .await?
                    .into_iter()
                    .filter(|(m, s)| {
                        let at = store.locate(m, s);
                        // A flat partition is searched exactly: nothing to calibrate.
                        store.exists(&at) && store.open(&at).map_or(true, |(p, _)| p.has_graph())
                    })
                    .collect(),
            };
            if pairs.is_empty() {
                return Err(Error::Invalid(format!(
                    "no partitions in {} to calibrate: build them with `stabspace index rebuild`",
                    store.describe()
                )));
            }
            for (model, set) in pairs {
                print!("{}", recalibrate(&db, store, &model, &set, &source).await?);
            }
        }
        IndexCommand::Verify => {
            let all = store.list()?;
            if all.is_empty() {
                println!("no partition files under {}", store.describe());
                return Ok(());
            }
            let mut failed = 0;
            for f in &all {
                match store.open(f).and_then(|(p, _)| Ok(p.verify()?)) {
                    Ok(()) => println!("ok      {}", f.display()),
                    Err(e) => {
                        failed += 1;
                        println!("FAILED  {e}");
                    }
                }
            }
            if failed > 0 {
                return Err(Error::Invalid(format!(
                    "{failed} of {} partition file(s) failed verification; rebuild them with \
                     `stabspace index rebuild --all`",
                    all.len()
                )));
            }
            println!("{} partition file(s) verified", all.len());
        }
        IndexCommand::Drop(d) => {
            if let Some(note) = swept_note(&store.sweep()?) {
                println!("{note}");
            }
            let targets = match &d.which.scenario_set_id {
                Some(set) if !d.which.all => vec![store.locate(&d.which.model_id, set)],
                _ => store.list()?,
            };
            let mut dropped = 0;
            for f in targets {
                if !store.remove(&f)? {
                    return Err(Error::Invalid(format!("no partition file {}", f.display())));
                }
                dropped += 1;
                println!("dropped {}", f.display());
            }
            println!("{dropped} partition(s) dropped");
        }
    }
    Ok(())
}
