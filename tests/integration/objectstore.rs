//! Partitions in S3-compatible object storage (`--partition-store s3://…`),
//! against moto's S3 server started here on a loopback port
//! (`pip install 'moto[server]'`; scripts/test and .ci/run install it):
//! builds publish through the manifest, query nodes with empty data
//! directories fetch, verify and cache what they serve and answer as the
//! exact scan does, a publish reaches every node under load with no failed
//! request, a node keeps serving its cached versions with the store down,
//! a corrupted or truncated object is refused and the version before keeps
//! serving, and of two builders racing on a set exactly one commits.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use stabspace::partitions::{PartitionStore, RemoteSettings, RemoteStore};
use stabspace::storage::manifest;
use stabspace_index::Partition;

use crate::serve::{agent, ask, row_vector, Load, Server, KEY, MODEL};
use crate::support::{program_or_skip, text, TestDb};

const BUCKET: &str = "stabspace-test";
const PREFIX: &str = "parts";
const GRAPH_SET: &str = "S3_GRAPH";
const OTHER_SET: &str = "S3_OTHER";

/// moto's S3 server on a free loopback port, with one bucket; killed when dropped.
pub(crate) struct Moto {
    child: Child,
    pub(crate) port: u16,
}

impl Moto {
    /// `None` when moto is not installed and the run allows skips.
    pub(crate) fn start() -> Option<Moto> {
        // scripts/test installs moto into a virtual environment of its own and names it here.
        let program = match std::env::var_os("STABSPACE_MOTO_SERVER") {
            Some(p) => PathBuf::from(p),
            None => program_or_skip("moto_server", "pip install 'moto[server]'")?,
        };
        let port = crate::support::free_port();
        let child = Command::new(program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let moto = Moto { child, port };
        let a = agent();
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            // A bucket made (or already there) once the server answers.
            if let Ok(r) = a.put(&moto.url(&format!("/{BUCKET}"))).send_empty() {
                if r.status().is_success() {
                    return Some(moto);
                }
            }
            assert!(
                Instant::now() < until,
                "moto_server never answered on port {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The environment that points the S3 client and the partition store here.
    pub(crate) fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ACCESS_KEY_ID", "test".to_string()),
            ("AWS_SECRET_ACCESS_KEY", "test".to_string()),
            ("AWS_REGION", "us-east-1".to_string()),
            ("AWS_ENDPOINT_URL", self.url("")),
            ("AWS_ALLOW_HTTP", "true".to_string()),
            ("STABSPACE_PARTITION_STORE", format!("s3://{BUCKET}/{PREFIX}")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Put `bytes` at `key` in the bucket (moto takes unsigned requests).
    fn put(&self, key: &str, bytes: &[u8]) {
        let r = agent()
            .put(&self.url(&format!("/{BUCKET}/{key}")))
            .send(bytes)
            .expect("put an object");
        assert!(r.status().is_success(), "PUT {key}: {}", r.status());
    }

    /// The keys in the bucket.
    fn keys(&self) -> Vec<String> {
        let mut r = agent()
            .get(&self.url(&format!("/{BUCKET}?list-type=2")))
            .call()
            .expect("list the bucket");
        let body = r.body_mut().read_to_string().unwrap();
        body.split("<Key>")
            .skip(1)
            .filter_map(|s| s.split("</Key>").next())
            .map(str::to_string)
            .collect()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The CLI on the test database with the store in moto; assert success; stdout.
fn cli(t: &TestDb, moto: &Moto, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_stabspace"))
        .args(args)
        .args(["--database-url", &t.url])
        .env_remove("DATABASE_URL")
        .env_remove("STABSPACE_READ_DATABASE_URL")
        .env("STABSPACE_DATA_DIR", t.dir.path())
        .envs(moto.env())
        .output()
        .expect("run stabspace");
    assert!(
        out.status.success(),
        "stabspace {args:?} failed:\n{}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn gen(t: &TestDb, moto: &Moto, set: &str, count: usize) -> String {
    cli(
        t,
        moto,
        &[
            "gen-scenarios",
            "--scenario-set-id",
            set,
            "--count",
            &count.to_string(),
            "--model-id",
            MODEL,
        ],
    )
}

/// `index status --versions` as JSON rows.
fn versions(t: &TestDb, moto: &Moto) -> Vec<Value> {
    serde_json::from_str(&cli(
        t,
        moto,
        &["index", "status", "--versions", "--format", "json"],
    ))
    .unwrap()
}

/// The current version of `set`: (generation, sha256).
fn current(t: &TestDb, moto: &Moto, set: &str) -> (i64, String) {
    let v = versions(t, moto);
    let row = v
        .iter()
        .find(|r| r["scenario_set_id"] == set && r["current"] == true)
        .unwrap_or_else(|| panic!("no current version of {set} in {v:?}"));
    (
        row["generation"].as_i64().unwrap(),
        row["sha256"].as_str().unwrap().to_string(),
    )
}

/// The builder's cached copy of `set`'s current version (the builder keeps what it published).
fn builder_copy(t: &TestDb, moto: &Moto, set: &str) -> Partition {
    let (_, sha) = current(t, moto, set);
    Partition::open(t.dir.path().join("cache/objects").join(format!("{sha}.stabidx")))
        .expect("the builder's copy")
}

/// A query node: an empty data directory, its own cache, the key file.
fn node(t: &TestDb, moto: &Moto, refresh: &str) -> (Server, tempfile::TempDir) {
    let home = tempfile::tempdir().unwrap();
    let keys = home.path().join("keys");
    std::fs::write(&keys, format!("{KEY}\n")).unwrap();
    let data = home.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let cache = home.path().join("cache");
    let mut env = moto.env();
    env.push(("STABSPACE_DATA_DIR".into(), data.display().to_string()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let s = Server::start(
        t,
        &[
            "--cache-dir",
            cache.to_str().unwrap(),
            "--refresh-secs",
            refresh,
            "--api-key-file",
            keys.to_str().unwrap(),
        ],
        &env,
    );
    (s, home)
}

/// A keyed search: (status, answer).
fn search(s: &Server, set: &str, body: &Value) -> (u16, Value) {
    let (status, text, _) = ask(
        &agent(),
        "POST",
        &s.url(&format!("/v1/partitions/{MODEL}/{set}/search")),
        Some(&format!("Bearer {KEY}")),
        Some(body),
    );
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}")),
    )
}

fn hit_ids(answer: &Value) -> Vec<String> {
    answer["hits"]
        .as_array()
        .unwrap_or_else(|| panic!("no hits in {answer}"))
        .iter()
        .map(|h| h["scenario_id"].as_str().unwrap().to_string())
        .collect()
}

/// A node's metric (0 when absent).
fn metric(s: &Server, name: &str) -> f64 {
    crate::serve::metric(s, Some(&format!("Bearer {KEY}")), name).unwrap_or(0.0)
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < until, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Builds publish into the store (objects, a manifest row each); two nodes
/// with empty data directories answer identically, as the exact scan does,
/// from the versions they fetched; without a key they answer 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_partitions_serve_from_empty_nodes_like_the_exact_scan() {
    let Some(t) = crate::support::postgres(false).await else {
        return;
    };
    let Some(moto) = Moto::start() else { return };
    gen(&t, &moto, GRAPH_SET, 3000);
    gen(&t, &moto, OTHER_SET, 400);
    assert!(
        !t.dir.path().join("index").exists(),
        "nothing was written to a local directory"
    );
    let v = versions(&t, &moto);
    assert_eq!(v.len(), 2, "{v:?}");
    let keys = moto.keys();
    for row in &v {
        assert_eq!(
            (row["generation"].as_i64(), row["current"].as_bool()),
            (Some(1), Some(true))
        );
        let object = row["object"].as_str().unwrap();
        let key = object.trim_start_matches(&format!("s3://{BUCKET}/"));
        // PREFIX/<database id>/<model>/<set>/<sha256>.stabidx
        assert!(
            key.starts_with(&format!("{PREFIX}/"))
                && key.contains(&format!("/{MODEL}/"))
                && key.ends_with(".stabidx"),
            "{key}"
        );
        assert!(
            key.contains(row["sha256"].as_str().unwrap()),
            "content-addressed: {key}"
        );
        assert!(keys.contains(&key.to_string()), "{key} not in {keys:?}");
    }
    let status = cli(&t, &moto, &["index", "status", "--format", "json"]);
    let status: Vec<Value> = serde_json::from_str(&status).unwrap();
    assert!(status.iter().all(|r| r["state"] == "fresh"), "{status:?}");
    // From a machine that holds none of them: the manifest's summaries, no download.
    let elsewhere = tempfile::tempdir().unwrap();
    let cache = elsewhere.path().join("cache");
    let status = cli(
        &t,
        &moto,
        &[
            "index",
            "status",
            "--format",
            "json",
            "--cache-dir",
            cache.to_str().unwrap(),
        ],
    );
    let status: Vec<Value> = serde_json::from_str(&status).unwrap();
    assert!(
        status
            .iter()
            .all(|r| r["state"] == "fresh" && r["vectors"].as_u64().is_some()),
        "{status:?}"
    );
    assert_eq!(
        std::fs::read_dir(cache.join("objects")).unwrap().count(),
        0,
        "nothing was fetched"
    );

    let p = builder_copy(&t, &moto, GRAPH_SET);
    let (n1, h1) = node(&t, &moto, "1");
    let (n2, h2) = node(&t, &moto, "1");
    for row in (0..p.len()).step_by(151) {
        let q = row_vector(&p, row);
        let (s, exact) = search(&n1, GRAPH_SET, &json!({"vector": q, "k": 10, "exact": true}));
        assert_eq!(
            (s, exact["answered_by"].as_str()),
            (200, Some("exact-scan")),
            "{exact}"
        );
        // A breadth covering the set: the fetched file, scanned exactly.
        let (s, a1) = search(&n1, GRAPH_SET, &json!({"vector": q, "k": 10, "ef": 3000}));
        assert_eq!((s, a1["answered_by"].as_str()), (200, Some("index")), "{a1}");
        let (_, a2) = search(&n2, GRAPH_SET, &json!({"vector": q, "k": 10, "ef": 3000}));
        assert_eq!(hit_ids(&a1), hit_ids(&exact), "node 1 against the exact scan");
        assert_eq!(hit_ids(&a2), hit_ids(&exact), "node 2 against the exact scan");
        // The graph at its default breadth: both nodes hold the same file.
        let (_, g1) = search(&n1, GRAPH_SET, &json!({"vector": q, "k": 10}));
        let (_, g2) = search(&n2, GRAPH_SET, &json!({"vector": q, "k": 10}));
        assert_eq!(hit_ids(&g1), hit_ids(&g2));
    }
    for (n, home) in [(&n1, &h1), (&n2, &h2)] {
        let (_, sha) = current(&t, &moto, GRAPH_SET);
        assert!(
            home.path().join(format!("cache/objects/{sha}.stabidx")).exists(),
            "fetched into the cache"
        );
        assert!(
            std::fs::read_dir(home.path().join("data"))
                .unwrap()
                .next()
                .is_none(),
            "data dir untouched"
        );
        assert_eq!(
            metric(n, "stabspace_partition_fetches_total"),
            1.0,
            "downloaded once"
        );
        let (status, body, _) = ask(&agent(), "GET", &n.url("/v1/partitions"), None, None);
        assert_eq!(status, 401, "{body}");
    }
}

/// A set that gains rows under load: the append is published, every node
/// fetches it before swapping it in, and no request fails meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_published_under_load_reaches_every_node_without_a_failed_request() {
    let Some(t) = crate::support::postgres(false).await else {
        return;
    };
    let Some(moto) = Moto::start() else { return };
    gen(&t, &moto, GRAPH_SET, 2000);
    let p = builder_copy(&t, &moto, GRAPH_SET);
    let queries: Arc<Vec<Vec<f32>>> = Arc::new((0..40).map(|r| row_vector(&p, r * 31)).collect());
    let nodes = [node(&t, &moto, "0.5"), node(&t, &moto, "0.5")];
    let urls: Vec<String> = nodes
        .iter()
        .map(|(n, _)| n.url(&format!("/v1/partitions/{MODEL}/{GRAPH_SET}/search")))
        .collect();
    let auth = format!("Bearer {KEY}");
    let load = Load::start(4, &urls, Some(&auth), Arc::clone(&queries), 5);
    load.wait_for(40);
    cli(
        &t,
        &moto,
        &[
            "gen-scenarios",
            "--scenario-set-id",
            GRAPH_SET,
            "--count",
            "2300",
            "--model-id",
            MODEL,
            "--no-index",
        ],
    );
    let out = cli(&t, &moto, &["index", "rebuild"]);
    assert!(out.contains("appended 300 new row(s)"), "{out}");
    let (generation, sha) = current(&t, &moto, GRAPH_SET);
    assert_eq!(generation, 2);
    // Every node swaps to the new version once it holds it.
    for (n, home) in &nodes {
        wait_until("the node serves the new version", || {
            let (_, a) = search(n, GRAPH_SET, &json!({"vector": queries[0], "k": 5}));
            a["answered_by"] == "index" && home.path().join(format!("cache/objects/{sha}.stabidx")).exists()
        });
        assert!(
            metric(n, "stabspace_partition_prefetches_total") >= 1.0,
            "fetched before the swap"
        );
    }
    load.wait_for(load.answered() + 40);
    let (_, failed) = load.finish();
    assert!(
        failed.is_empty(),
        "{} requests failed, first: {}",
        failed.len(),
        failed[0]
    );
    // A new row is found by its own vector on every node.
    let mut fresh = None;
    let p2 = builder_copy(&t, &moto, GRAPH_SET);
    for r in 0..p2.len() {
        if p2.id(r).unwrap() >= "SYN_002000" {
            fresh = Some(r);
            break;
        }
    }
    let r = fresh.expect("an appended row");
    for (n, _) in &nodes {
        let (_, a) = search(
            n,
            GRAPH_SET,
            &json!({"vector": row_vector(&p2, r), "k": 1, "ef": 2300}),
        );
        assert_eq!(hit_ids(&a), vec![p2.id(r).unwrap().to_string()], "{a}");
    }
}

/// The object store killed: a node keeps answering from the versions it
/// cached, and a set it never fetched is answered by an exact scan of the
/// database, saying why. Then a corrupted and a truncated object are refused
/// at download; the version before keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_store_down_or_an_object_damaged_nodes_keep_serving() {
    let Some(t) = crate::support::postgres(false).await else {
        return;
    };
    let Some(mut moto) = Moto::start() else { return };
    gen(&t, &moto, GRAPH_SET, 1500);
    gen(&t, &moto, OTHER_SET, 1500);
    let p = builder_copy(&t, &moto, GRAPH_SET);
    let q = row_vector(&p, 7);
    let (n, _home) = node(&t, &moto, "0.5");
    let (_, first) = search(&n, GRAPH_SET, &json!({"vector": q, "k": 5}));
    assert_eq!(first["answered_by"], "index", "{first}");

    // Damaged objects, committed as generations 2 and 3 of the set: the
    // length or the checksum does not match what the manifest records.
    let rows = manifest::current(&t.db).await.unwrap();
    let row = rows
        .iter()
        .find(|r| r.scenario_set_id == GRAPH_SET)
        .unwrap()
        .clone();
    let whole = std::fs::read(p.path()).unwrap();
    let truncated = format!("{PREFIX}/damaged/truncated.stabidx");
    moto.put(&truncated, &whole[..whole.len() / 2]);
    let mut flipped_bytes = whole.clone();
    flipped_bytes[whole.len() / 3] ^= 0x40;
    let flipped = format!("{PREFIX}/damaged/flipped.stabidx");
    moto.put(&flipped, &flipped_bytes);
    for (generation, key, says) in [(2, &truncated, "truncated"), (3, &flipped, "SHA-256")] {
        let damaged = manifest::ManifestRow {
            generation,
            object_key: key.clone(),
            sha256: format!("{:064x}", generation),
            ..row.clone()
        };
        assert!(manifest::commit(&t.db, &damaged).await.unwrap());
        n.await_stderr(says);
        let (status, again) = search(&n, GRAPH_SET, &json!({"vector": q, "k": 5}));
        assert_eq!((status, &again["answered_by"]), (200, &json!("index")), "{again}");
        assert_eq!(hit_ids(&again), hit_ids(&first), "the version before answers");
    }
    assert!(metric(&n, "stabspace_partition_fetch_failures_total") >= 2.0);
    // A node with an empty cache refuses the damaged version too, and scans.
    let (cold, _h) = node(&t, &moto, "60");
    let (status, scanned) = search(&cold, GRAPH_SET, &json!({"vector": q, "k": 5}));
    assert_eq!(
        (status, &scanned["answered_by"]),
        (200, &json!("exact-scan")),
        "{scanned}"
    );
    cold.await_stderr("refused");

    // The store down: what the node cached answers; what it never fetched is scanned.
    moto.kill();
    let (status, cached) = search(&n, GRAPH_SET, &json!({"vector": q, "k": 5}));
    assert_eq!(
        (status, &cached["answered_by"]),
        (200, &json!("index")),
        "{cached}"
    );
    assert_eq!(hit_ids(&cached), hit_ids(&first));
    let (status, other) = search(&n, OTHER_SET, &json!({"vector": q, "k": 5}));
    assert_eq!(
        (status, &other["answered_by"]),
        (200, &json!("exact-scan")),
        "{other}"
    );
    n.await_stderr("cannot fetch");
}

/// Two builders racing on one set, both from generation 0: the first to
/// commit wins, the second fails saying so, exactly one manifest row
/// remains, and `index gc` removes the loser's object once past the grace
/// period while the winner's stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_builders_racing_on_a_set_leave_exactly_one_winner() {
    let t = crate::support::sqlite(true).await;
    let Some(moto) = Moto::start() else { return };
    // Two different files of one set, built locally (different M).
    crate::serve::cli(
        &t,
        &[
            "gen-scenarios",
            "--scenario-set-id",
            GRAPH_SET,
            "--count",
            "1200",
            "--model-id",
            MODEL,
        ],
    );
    let local = crate::serve::partition_file(&t, GRAPH_SET);
    let first = t.path("first.stabidx");
    std::fs::copy(&local, &first).unwrap();
    crate::serve::cli(
        &t,
        &[
            "index",
            "build",
            "--model-id",
            MODEL,
            "--scenario-set-id",
            GRAPH_SET,
            "--m",
            "8",
        ],
    );
    let second = t.path("second.stabidx");
    std::fs::copy(&local, &second).unwrap();

    let store = |cache: &Path| {
        RemoteStore::open(RemoteSettings {
            bucket: BUCKET.into(),
            prefix: PREFIX.into(),
            cache_dir: cache.to_path_buf(),
            cache_max_bytes: 1 << 30,
            refresh_every: None,
            primary_url: t.url.clone(),
            read_url: t.url.clone(),
            // Not the process environment: other tests run beside this one.
            s3_overrides: moto
                .env()
                .into_iter()
                .filter(|(k, _)| k.starts_with("AWS_"))
                .collect(),
        })
        .unwrap()
    };
    let (a, b) = (store(&t.path("cache-a")), store(&t.path("cache-b")));
    let copy = |from: PathBuf| {
        move |to: &Path| {
            std::fs::copy(&from, to)
                .map(|_| ())
                .map_err(|e| stabspace::error::Error::io(to, e))
        }
    };
    let mut copy_second = copy(second.clone());
    let copy_first = copy(first.clone());
    // Both start from generation 0 (no version yet); B commits while A writes.
    let (base_a, base_b) = (
        a.base(MODEL, GRAPH_SET).unwrap(),
        b.base(MODEL, GRAPH_SET).unwrap(),
    );
    assert_eq!(base_a, base_b);
    let lost = tokio::task::block_in_place(|| {
        a.publish(MODEL, GRAPH_SET, base_a, &mut |at| {
            b.publish(MODEL, GRAPH_SET, base_b, &mut copy_second)
                .expect("the first to commit wins");
            copy_first(at)
        })
    })
    .expect_err("the second to commit loses");
    assert!(lost.to_string().contains("another build published"), "{lost}");
    let rows = manifest::all(&t.db).await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let (winner_sha, _) = stabspace::partitions::fetch::sha256_file(&second).unwrap();
    assert_eq!(rows[0].sha256, winner_sha, "B's file is the version");
    let (loser_sha, _) = stabspace::partitions::fetch::sha256_file(&first).unwrap();
    let keys = moto.keys();
    assert_eq!(keys.len(), 2, "both uploaded: {keys:?}");
    // Within the grace period nothing goes; past it, the loser's object.
    let kept = tokio::task::block_in_place(|| a.gc(Duration::from_secs(3600), false)).unwrap();
    assert_eq!((kept.objects.len(), kept.kept_young), (0, 1));
    let gone = tokio::task::block_in_place(|| a.gc(Duration::ZERO, false)).unwrap();
    assert_eq!(gone.objects.len(), 1, "{gone:?}");
    assert!(gone.objects[0].0.contains(&loser_sha));
    assert_eq!(moto.keys(), vec![rows[0].object_key.clone()]);

    // The CLI on the same store: verify fetches and checks the version; gc
    // refuses a grace under an hour and finds nothing to take; drop forgets
    // the set, and its object goes once it is older than the grace period.
    let verified = cli(&t, &moto, &["index", "verify"]);
    assert!(verified.contains("1 partition file(s) verified"), "{verified}");
    let refused = Command::new(env!("CARGO_BIN_EXE_stabspace"))
        .args(["index", "gc", "--grace-hours", "0", "--database-url", &t.url])
        .envs(moto.env())
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("give at least 1"),
        "{}",
        text(&refused.stderr)
    );
    let dry = cli(&t, &moto, &["index", "gc", "--dry-run"]);
    assert!(dry.contains("0 version(s), 0 object(s)"), "{dry}");
    let dropped = cli(
        &t,
        &moto,
        &[
            "index",
            "drop",
            "--model-id",
            MODEL,
            "--scenario-set-id",
            GRAPH_SET,
        ],
    );
    assert!(dropped.contains("1 partition(s) dropped"), "{dropped}");
    assert!(manifest::all(&t.db).await.unwrap().is_empty());
    assert_eq!(versions(&t, &moto), Vec::<Value>::new());
    let dry = cli(&t, &moto, &["index", "gc", "--dry-run"]);
    assert!(
        dry.contains("1 unnamed object(s) younger than 24 h kept"),
        "{dry}"
    );
    assert_eq!(moto.keys().len(), 1, "a dry run deletes nothing");
}
