//! Test databases: a temporary SQLite file, or a fresh PostgreSQL database per test.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use stabspace::progress::Quiet;
use stabspace::storage::Db;
use stabspace::synth::{generate, Generated, SetKind, SynthConfig};
use tempfile::TempDir;

pub const DEFAULT_PG: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A migrated database that disappears with the value.
pub struct TestDb {
    pub db: Db,
    pub url: String,
    /// Scratch directory for CSV files (and the SQLite file).
    pub dir: TempDir,
    pg: Option<(String, String)>,
}

impl TestDb {
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

pub async fn sqlite(migrate: bool) -> TestDb {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("test.db").display());
    let db = Db::connect(&url).await.expect("open sqlite");
    if migrate {
        db.migrate().await.expect("migrate sqlite");
    }
    TestDb {
        db,
        url,
        dir,
        pg: None,
    }
}

pub fn env_is_1(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v == "1")
}

/// A fresh database on the server at TEST_DATABASE_URL.
///
/// When no server answers, the test fails saying so, unless
/// `STABSPACE_SKIP_POSTGRES=1` (and not `STABSPACE_REQUIRE_POSTGRES=1`, as in
/// CI): then `None`, the test's body does not run, and the skip is appended to
/// the file `STABSPACE_POSTGRES_SKIP_LOG` names, if any. `scripts/test` sets
/// both and ends with the number of PostgreSQL tests that did not run, so a
/// skip never passes for a run in the summary a developer reads.
pub async fn postgres(migrate: bool) -> Option<TestDb> {
    static N: AtomicU32 = AtomicU32::new(0);
    let admin_url = std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_PG.to_string());
    let admin = match Db::connect(&admin_url).await {
        Ok(db) => db,
        Err(e) => {
            if env_is_1("STABSPACE_REQUIRE_POSTGRES") {
                panic!("STABSPACE_REQUIRE_POSTGRES=1 but PostgreSQL is unreachable: {e}");
            }
            if !env_is_1("STABSPACE_SKIP_POSTGRES") {
                panic!(
                    "PostgreSQL is unreachable: {e}. Start it or point TEST_DATABASE_URL at a server; to \
                     skip the PostgreSQL tests instead, set STABSPACE_SKIP_POSTGRES=1 (scripts/test does, \
                     and counts the skipped tests at its end)"
                );
            }
            record_skip("PostgreSQL test", &e.to_string());
            return None;
        }
    };
    let name = format!(
        "stabspace_test_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
    );
    stabspace::with_pool!(admin, p => sqlx::query(&format!("CREATE DATABASE {name}")).execute(p).await.map(|_| ()))
        .expect("create test database");
    admin.close().await;
    let mut url = url::Url::parse(&admin_url).expect("TEST_DATABASE_URL is a URL");
    url.set_path(&name);
    let url = url.to_string();
    let db = Db::connect(&url).await.expect("open test database");
    if migrate {
        db.migrate().await.expect("migrate test database");
    }
    Some(TestDb {
        db,
        url,
        dir: tempfile::tempdir().expect("tempdir"),
        pg: Some((admin_url, name)),
    })
}

/// A loopback port free now, for a server a test starts a moment later: taken
/// below the kernel's ephemeral range (32768 and up), so that the outgoing
/// connections of tests running meanwhile cannot take it in between.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    // Each call starts further on: two servers of one test never get the same.
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let seed = (std::process::id() as u16).wrapping_mul(7919);
    for _ in 0..2000 {
        let port = 20_000 + (seed.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed)) % 12_000);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port between 20000 and 32000")
}

/// A PostgreSQL test that did not run, recorded as [`record_skip`] records it.
pub fn record_postgres_skip(reason: &str) {
    record_skip("PostgreSQL test", reason);
}

/// One line, "test name<TAB>reason", in the file `STABSPACE_POSTGRES_SKIP_LOG`
/// names (one `write` of an appending file: lines of parallel tests do not mix).
fn record_skip(what: &str, reason: &str) {
    use std::io::Write;
    let test = std::thread::current().name().unwrap_or("?").to_string();
    eprintln!("*** {test}: {what} SKIPPED: {reason} ***");
    let Some(log) = std::env::var_os("STABSPACE_POSTGRES_SKIP_LOG") else {
        return;
    };
    let line = format!("{test}\t{}\n", reason.replace(['\t', '\n'], " "));
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .and_then(|mut f| f.write_all(line.as_bytes()))
        .unwrap_or_else(|e| panic!("cannot record the skip in {}: {e}", Path::new(&log).display()));
}

/// The program `name` (on `PATH`, or in the `sbin` directories Debian puts
/// daemons in), for a test that needs it. Missing, the test fails when
/// `STABSPACE_REQUIRE_POSTGRES=1` (CI requires every test to run), else
/// `None`: its body does not run and the skip is recorded as
/// [`postgres`]'s are, so that `scripts/test` counts it at its end.
pub fn program_or_skip(name: &str, install: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        let reason = format!("{name} is not installed ({install})");
        if env_is_1("STABSPACE_REQUIRE_POSTGRES") {
            panic!("STABSPACE_REQUIRE_POSTGRES=1 (every test must run) but {reason}");
        }
        record_skip("test", &reason);
    }
    found
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((admin_url, name)) = self.pg.take() else {
            return;
        };
        let db = self.db.clone();
        // Drop runs inside the test's runtime; do the async cleanup on a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async move {
                db.close().await;
                let admin = Db::connect(&admin_url).await.ok()?;
                let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                let _ = stabspace::with_pool!(admin, p => sqlx::query(&sql).execute(p).await.map(|_| ()));
                admin.close().await;
                Some(())
            })
        })
        .join();
    }
}

/// Runs an async test body against SQLite and PostgreSQL, as two tests, on a
/// migrated database (or, after `unmigrated:`, an empty one). Without a
/// PostgreSQL server the second fails, or is skipped and recorded: see [`postgres`].
#[macro_export]
macro_rules! both_backends {
    (unmigrated: $($name:ident),* $(,)?) => { $crate::both_backends!(@with false; $($name),*); };
    ($($name:ident),* $(,)?) => { $crate::both_backends!(@with true; $($name),*); };
    (@with $migrate:expr; $($name:ident),*) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::support::sqlite($migrate).await).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(db) = $crate::support::postgres($migrate).await {
                    super::$name(db).await
                }
            }
        }
    )*};
}

/// A small market: 30 instruments (SYN0025 delisted), 160 days, 2 crashes, 20 MC scenarios.
pub fn small_market(dir: &Path) -> (SynthConfig, Generated) {
    let cfg = SynthConfig {
        instruments: 30,
        days: 160,
        crashes: 2,
        mc_scenarios: 20,
        scenario_instruments: 5,
        portfolios: 2,
        sets: vec![SetKind::Historical, SetKind::MonteCarlo],
        ..SynthConfig::default()
    };
    let generated = generate(&cfg, &dir.join("market")).expect("generate");
    (cfg, generated)
}

/// Searches that scan the database exactly (no partition files).
pub const DB_SCAN: stabspace::nearest::SearchOpts = stabspace::nearest::SearchOpts {
    partitions: None,
    ef: None,
    recall: None,
    exact: false,
    no_quantized: false,
    filter: stabspace::pointintime::QueryFilter {
        point_in_time: false,
        filter: stabspace::pointintime::ScenarioFilter {
            known_before: None,
            shock_types: Vec::new(),
            min_severity: None,
        },
    },
};

/// 30 instruments (SYN0025 delisted) with `episodes` planted episodes of the
/// four shapes over days enough for them and windows of 20 days, 10
/// Monte-Carlo scenarios, one portfolio.
pub fn episode_market(dir: &Path, episodes: usize) -> Generated {
    let cfg = SynthConfig {
        instruments: 30,
        days: 80 + episodes * 26 + 40,
        crashes: episodes,
        mc_scenarios: 10,
        scenario_instruments: 5,
        portfolios: 1,
        sets: vec![SetKind::Historical, SetKind::MonteCarlo],
        ..SynthConfig::default()
    };
    generate(&cfg, &dir.join("market")).expect("generate")
}

/// Import every generated file.
pub async fn import_all(db: &Db, g: &Generated) {
    for (kind, path, rows) in &g.files {
        let s = stabspace::import::import_file(db, *kind, path, &Quiet)
            .await
            .expect("import");
        assert_eq!(s.rows, *rows, "{}", path.display());
    }
}

pub async fn count(db: &Db, table: &str) -> i64 {
    stabspace::storage::tables::count(db, table).await.expect("count")
}

/// Read a CSV file written by the generator as header-keyed rows.
pub fn read_csv(path: &Path) -> Vec<std::collections::HashMap<String, String>> {
    let mut r = csv::Reader::from_path(path).expect("open csv");
    let headers = r.headers().expect("header").clone();
    r.records()
        .map(|rec| {
            let rec = rec.expect("record");
            headers
                .iter()
                .map(str::to_string)
                .zip(rec.iter().map(str::to_string))
                .collect()
        })
        .collect()
}

/// Run the real binary with the embedded database in `data_dir`, as a user would.
pub fn stabspace(args: &[&str], data_dir: &Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_stabspace"))
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("STABSPACE_READ_DATABASE_URL")
        .env("STABSPACE_DATA_DIR", data_dir)
        .output()
        .expect("run stabspace")
}

/// [`stabspace`], asserting it succeeded: its stdout.
pub fn stabspace_ok(args: &[&str], data_dir: &Path) -> String {
    let o = stabspace(args, data_dir);
    assert!(o.status.success(), "{args:?}: {}", text(&o.stderr));
    text(&o.stdout)
}

/// Program output as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Searches through the partitions under `dir` (the CLI's options, by hand).
pub fn partition_opts(dir: &Path, ef: Option<usize>, exact: bool) -> stabspace::nearest::SearchOpts {
    stabspace::nearest::SearchOpts {
        partitions: Some(std::sync::Arc::new(stabspace::nearest::PartitionCache::local(
            dir,
        ))),
        ef,
        exact,
        ..DB_SCAN
    }
}

/// A row of a query's CSV without its last column (`scenario_known_from`),
/// so that checks of `answered_by,partition_stale` read the row's end.
pub fn before_known_from(line: &str) -> &str {
    line.rsplit_once(',').map_or(line, |(head, _)| head)
}
