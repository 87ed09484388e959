//! Trust in what goes in and out: tables other tools created with NUMERIC
//! columns, connecting (refused servers, missing or read-only SQLite files,
//! locked files), merged JSON patches holding null, output paths, usage
//! errors and hints, and vector files the benchmark cannot use.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use chrono::NaiveDate;
use clap::CommandFactory;
use serde_json::{json, Value as Json};
use sqlx::Row;
use stabspace::backfill::{
    backfill_numeric_embeddings, backfill_numeric_scenario_embeddings, NumericBackfill, ScenarioBackfill,
};
use stabspace::import::{import_file, ImportKind};
use stabspace::joint::{backfill_joint_states, StateBackfill, Weights};
use stabspace::output::{Format, Table};
use stabspace::progress::Quiet;
use stabspace::storage::merge::{merge_backtest_metrics, merge_risk_metrics};
use stabspace::storage::{scenarios, Backend, Db};
use stabspace::synth::{HISTORICAL_SET, MONTE_CARLO_SET};
use stabspace::with_pool;

use crate::both_backends;
use crate::support::{import_all, small_market, stabspace, text, TestDb};

const JOINT: &str = "joint-stab-fragility-v1";

fn stderr(o: &Output) -> String {
    text(&o.stderr)
}

/// Run the binary against an explicit database URL.
fn stabspace_at(url: &str, args: &[&str], data_dir: &Path) -> Output {
    let mut all = vec!["--database-url", url];
    all.extend_from_slice(args);
    stabspace(&all, data_dir)
}

// ---------------------------------------------------------------------------
// Item 5: tables created by another tool with NUMERIC columns.

both_backends!(unmigrated: numeric_columns_created_by_another_tool_read_as_doubles);

/// The numeric vectors (v1 states, v1 and v2 scenarios) stored in `db`, by (model, entity).
async fn numeric_vectors(db: &Db) -> BTreeMap<(String, String), Vec<u8>> {
    with_pool!(db, p => sqlx::query("SELECT model_id, entity_id, vector FROM numeric_window_embeddings")
        .fetch_all(p)
        .await
        .unwrap()
        .into_iter()
        .map(|r| ((r.get::<String, _>(0), r.get::<String, _>(1)), r.get::<Vec<u8>, _>(2)))
        .collect())
}

/// Import the small market and run the numeric and scenario backfills.
async fn backfill_small_market(db: &Db, dir: &Path) -> BTreeMap<(String, String), Vec<u8>> {
    let (_, g) = small_market(dir);
    import_all(db, &g).await;
    let n = NumericBackfill {
        as_of: g.last_date,
        window_days: 20,
        horizon_days: 20,
        market_id: "US_EQ".into(),
        limit: None,
        model_id: "num-stab-core-v1".into(),
    };
    let s = backfill_numeric_embeddings(db, &n, &Quiet).await.unwrap();
    assert_eq!(s.encoded, 29, "{s}");
    for (set, model) in [
        (MONTE_CARLO_SET, "num-scenario-core-v1"),
        (HISTORICAL_SET, "num-scenario-core-v2"),
    ] {
        let p = ScenarioBackfill {
            scenario_set_id: set.into(),
            model_id: model.into(),
            horizon_days: 5,
            limit: None,
        };
        let s = backfill_numeric_scenario_embeddings(db, &p, &Quiet)
            .await
            .unwrap();
        assert!(s.encoded > 0, "{set}: {s}");
    }
    numeric_vectors(db).await
}

/// prices_daily.close/volume and scenario_paths.return created as NUMERIC
/// before our migrations (which then leave the tables alone): the import and
/// both backfills work and store the same vectors as on a database our
/// migrations created.
async fn numeric_columns_created_by_another_tool_read_as_doubles(t: TestDb) {
    with_pool!(t.db, p => {
        sqlx::query(
            "CREATE TABLE prices_daily (instrument_id TEXT NOT NULL, trade_date DATE NOT NULL, \
             close NUMERIC NOT NULL, volume NUMERIC NOT NULL, PRIMARY KEY (instrument_id, trade_date))",
        )
        .execute(p)
        .await
        .unwrap();
        sqlx::query(
            "CREATE TABLE scenario_paths (scenario_set_id TEXT NOT NULL, scenario_id TEXT NOT NULL, \
             day_index INTEGER NOT NULL, instrument_id TEXT NOT NULL, return NUMERIC NOT NULL, \
             PRIMARY KEY (scenario_set_id, scenario_id, day_index, instrument_id))",
        )
        .execute(p)
        .await
        .unwrap();
    });
    t.db.migrate().await.unwrap();
    if t.db.backend() == Backend::Postgres {
        let ty: String = with_pool!(t.db, p => sqlx::query_scalar(
            "SELECT data_type FROM information_schema.columns \
             WHERE table_name = 'scenario_paths' AND column_name = 'return'")
            .fetch_one(p).await.unwrap());
        assert_eq!(ty, "numeric", "the migrations replaced the other tool's table");
    }
    let got = backfill_small_market(&t.db, t.dir.path()).await;

    // The per-cell read (used to name a missing cell) also reads NUMERIC.
    let cells = scenarios::scenario_paths(&t.db, MONTE_CARLO_SET, "", "~")
        .await
        .unwrap();
    assert!(!cells.is_empty());

    let reference = match t.db.backend() {
        Backend::Sqlite => crate::support::sqlite(true).await,
        Backend::Postgres => crate::support::postgres(true)
            .await
            .expect("postgres was reachable"),
    };
    let want = backfill_small_market(&reference.db, reference.dir.path()).await;
    let ref_cells = scenarios::scenario_paths(&reference.db, MONTE_CARLO_SET, "", "~")
        .await
        .unwrap();
    assert_eq!(got.len(), want.len());
    // NUMERIC keeps 15 significant digits of a float8 on PostgreSQL: the f32
    // vectors built from it equal those built from DOUBLE PRECISION.
    assert_eq!(got, want, "vectors from NUMERIC columns differ");
    assert_eq!(cells.len(), ref_cells.len());
    for (a, b) in cells.iter().zip(&ref_cells) {
        assert!(
            (a.ret - b.ret).abs() <= 1e-14 * b.ret.abs().max(1e-300),
            "{a:?} vs {b:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// Item 7: connecting.

/// "At once" is the first attempt's own error: a pool that retried until its
/// timeout would report only that it timed out ("timed out waiting for the
/// server", or "no answer from the server within N s" from the probe), so the
/// message, not a stopwatch, shows that nothing retried.
#[test]
fn refused_connection_says_so_at_once_naming_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let o = stabspace_at(
        "postgres://alice:hunter2@127.0.0.1:1/risk",
        &["show-joint-stab-fragility-scenarios", "--scenario-set-id", "S"],
        dir.path(),
    );
    assert!(!o.status.success());
    let err = stderr(&o);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: cannot connect to postgres://alice:***@127.0.0.1:1/risk: connection refused"),
        "{err}"
    );
    assert!(
        !err.contains("hunter2") && !err.contains("timed out") && !err.contains("no answer"),
        "{err}"
    );
}

#[test]
fn read_commands_need_an_existing_database_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("not-yet");
    for args in [
        &["show-joint-stab-fragility-states", "--as-of", "2025-01-31"][..],
        &["show-joint-stab-fragility-scenarios", "--scenario-set-id", "S"][..],
        &[
            "find-similar-stab-scenarios",
            "--instrument-id",
            "I",
            "--as-of",
            "2025-01-31",
            "--scenario-set-id",
            "S",
        ][..],
        &[
            "show-portfolio-stab-scenario-exposure",
            "--portfolio-id",
            "P",
            "--as-of",
            "2025-01-31",
            "--scenario-set-id",
            "S",
        ][..],
        &["index", "status"][..],
        &["index", "build", "--scenario-set-id", "S"][..],
    ] {
        let o = stabspace(args, &data);
        assert!(!o.status.success(), "{args:?}");
        let err = stderr(&o);
        assert!(
            err.contains(&format!("no database at {}", data.join("stabspace.db").display()))
                && err.contains("stabspace demo"),
            "{args:?}: {err}"
        );
        assert!(!data.exists(), "{args:?} created {}", data.display());
    }
    // An explicit URL with a mistyped directory: a read names the file.
    let typo = dir.path().join("typo").join("s.db");
    let url = format!("sqlite://{}", typo.display());
    let o = stabspace_at(
        &url,
        &["show-joint-stab-fragility-states", "--as-of", "2025-01-31"],
        dir.path(),
    );
    assert!(stderr(&o).contains("no database at"), "{}", stderr(&o));
    assert!(!dir.path().join("typo").exists());

    // The first command that writes creates the data directory and the file.
    let o = stabspace(&["migrate"], &data);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(data.join("stabspace.db").is_file());
    let o = stabspace(
        &["show-joint-stab-fragility-scenarios", "--scenario-set-id", "S"],
        &data,
    );
    assert!(!stderr(&o).contains("no database at"), "{}", stderr(&o));
}

#[test]
fn writers_never_create_the_directory_of_an_explicit_sqlite_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("mistyped");
    let url = format!("sqlite://{}", missing.join("nested").join("s.db").display());
    let csv = dir.path().join("i.csv");
    std::fs::write(
        &csv,
        "instrument_id,issuer_id,market_id,region,status\nA,I,M,US,active\n",
    )
    .unwrap();
    for args in [
        &["migrate"][..],
        &["import", "instruments", csv.to_str().unwrap()][..],
    ] {
        let o = stabspace_at(&url, args, dir.path());
        assert!(!o.status.success(), "{args:?}");
        let err = stderr(&o);
        assert!(
            err.contains(&format!(
                "the directory {} does not exist",
                missing.join("nested").display()
            )),
            "{args:?}: {err}"
        );
        assert!(!missing.exists(), "{args:?} created {}", missing.display());
    }
    // In an existing directory the file is created.
    let url = format!("sqlite://{}", dir.path().join("new.db").display());
    let o = stabspace_at(
        &url,
        &["import", "instruments", csv.to_str().unwrap()],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(dir.path().join("new.db").is_file());
}

/// A SQLite database with the small market's v1 states on its last date.
/// Returns (file, state date). The pool is closed, so the WAL is checkpointed.
async fn states_db(dir: &Path) -> (std::path::PathBuf, NaiveDate) {
    let file = dir.join("states.db");
    let db = Db::open(&format!("sqlite://{}", file.display())).await.unwrap();
    let (_, g) = small_market(dir);
    import_all(&db, &g).await;
    let n = NumericBackfill {
        as_of: g.last_date,
        window_days: 20,
        horizon_days: 20,
        market_id: "US_EQ".into(),
        limit: None,
        model_id: "num-stab-core-v1".into(),
    };
    backfill_numeric_embeddings(&db, &n, &Quiet).await.unwrap();
    let s = StateBackfill {
        as_of: g.last_date,
        market_id: "US_EQ".into(),
        region: None,
        stab_model_id: "num-stab-core-v1".into(),
        profile_model_id: None,
        joint_model_id: JOINT.into(),
        weights: Weights::default(),
        limit: None,
        replace: false,
    };
    backfill_joint_states(&db, &s, &Quiet).await.unwrap();
    // Everything into the main file, so its bytes say whether a reader wrote.
    with_pool!(db, p => sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(p).await.map(|_| ()).unwrap());
    db.close().await;
    (file, g.last_date)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_commands_run_on_a_read_only_database() {
    let dir = tempfile::tempdir().unwrap();
    let (file, date) = states_db(dir.path()).await;
    let before = std::fs::read(&file).unwrap();
    let d = date.to_string();

    // Opened read-only by SQLite itself (`mode=ro`): no migration, no journal-mode change.
    let ro = format!("sqlite://{}?mode=ro", file.display());
    let o = stabspace_at(
        &ro,
        &["show-joint-stab-fragility-states", "--as-of", &d],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(text(&o.stdout).lines().count(), 1 + 29, "{}", text(&o.stdout));

    // A plain URL: a reader does not write to a database that has every migration.
    let rw = format!("sqlite://{}", file.display());
    let o = stabspace_at(
        &rw,
        &["show-joint-stab-fragility-states", "--as-of", &d],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        std::fs::read(&file).unwrap() == before,
        "a read command changed the database file"
    );

    // A file without write permission (not testable as root, who may write anyway).
    let mut perms = std::fs::metadata(&file).unwrap().permissions();
    perms.set_readonly(true);
    std::fs::set_permissions(&file, perms.clone()).unwrap();
    if std::fs::OpenOptions::new().write(true).open(&file).is_err() {
        let o = stabspace_at(
            &rw,
            &["show-joint-stab-fragility-states", "--as-of", &d],
            dir.path(),
        );
        assert!(o.status.success(), "{}", stderr(&o));
    } else {
        eprintln!("note: running as root: file permissions do not stop writes; mode=ro covers read-only");
    }
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&file, perms).unwrap();

    // A date without states: the message says "on D" (no Rust range syntax).
    let o = stabspace_at(
        &ro,
        &["show-joint-stab-fragility-states", "--as-of", "2001-02-03"],
        dir.path(),
    );
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains(&format!("no STAB states of {JOINT} on 2001-02-03")),
        "{err}"
    );
    assert!(!err.contains("..="), "{err}");
    let o = stabspace_at(
        &ro,
        &[
            "show-joint-stab-fragility-states",
            "--start",
            "2001-02-03",
            "--end",
            "2001-03-04",
        ],
        dir.path(),
    );
    assert!(
        stderr(&o).contains("from 2001-02-03 to 2001-03-04"),
        "{}",
        stderr(&o)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_database_lacking_migrations_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("old.db");
    let db = Db::connect(&format!("sqlite://{}", file.display()))
        .await
        .unwrap();
    with_pool!(db, p => sqlx::query("CREATE TABLE other_tool (x INTEGER)").execute(p).await.map(|_| ()).unwrap());
    db.close().await;
    let ro = format!("sqlite://{}?mode=ro", file.display());
    let o = stabspace_at(
        &ro,
        &["show-joint-stab-fragility-scenarios", "--scenario-set-id", "S"],
        dir.path(),
    );
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("is read-only and lacks migrations 0001") && err.contains("stabspace migrate"),
        "{err}"
    );
    // With write access, the same read command applies them.
    let rw = format!("sqlite://{}", file.display());
    let o = stabspace_at(
        &rw,
        &["show-joint-stab-fragility-scenarios", "--scenario-set-id", "S"],
        dir.path(),
    );
    assert!(!stderr(&o).contains("migrations"), "{}", stderr(&o));
    let db = Db::connect(&rw).await.unwrap();
    assert!(db.missing_migrations().await.is_empty());
    db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_database_says_at_once_that_it_waits() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("locked.db");
    let url = format!("sqlite://{}", file.display());
    let holder = Db::open(&url).await.unwrap();
    let csv = dir.path().join("i.csv");
    std::fs::write(
        &csv,
        "instrument_id,issuer_id,market_id,region,status\nA,I,M,US,active\n",
    )
    .unwrap();

    // Hold the write lock: a write transaction that has written.
    let mut tx = holder.begin().await.unwrap();
    match &mut tx {
        stabspace::storage::Tx::Sqlite(t) => {
            sqlx::query("INSERT INTO markets (market_id, region) VALUES ('HELD', 'US')")
                .execute(&mut **t)
                .await
                .unwrap();
        }
        stabspace::storage::Tx::Postgres(_) => unreachable!(),
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_stabspace"))
        .args([
            "--database-url",
            &url,
            "import",
            "instruments",
            csv.to_str().unwrap(),
        ])
        .env_remove("DATABASE_URL")
        .env_remove("STABSPACE_READ_DATABASE_URL")
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (send, recv) = std::sync::mpsc::channel();
    let err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = send.send(line.clone());
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    // The events, in the order they must happen: the note while the lock is
    // held (nothing here releases it before the note), the import still
    // running, then, only after the release, the import's success. An import
    // cannot write while the lock is held, so a success that follows the
    // release is the import having waited; one that gave up fails instead.
    // The timeout only keeps a broken build from hanging the test.
    let note = recv
        .recv_timeout(Duration::from_secs(120))
        .expect("a note on stderr while waiting");
    assert!(
        note.contains("waiting for the database") && note.contains("locked by another process"),
        "{note}"
    );
    assert!(note.contains("locked.db"), "{note}");
    assert!(
        child.try_wait().unwrap().is_none(),
        "the import ended while the lock was held"
    );
    let imported = |db: &Db| {
        let db = db.clone();
        async move {
            with_pool!(db, p => sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM instruments WHERE instrument_id = 'A'")
                .fetch_one(p)
                .await)
            .unwrap()
        }
    };
    assert_eq!(
        imported(&holder).await,
        0,
        "the import wrote while the lock was held"
    );
    tx_rollback(tx).await;
    let status = child.wait().unwrap();
    let all = reader.join().unwrap();
    assert!(status.success(), "{all}");
    assert_eq!(all.matches("waiting for the database").count(), 1, "{all}");
    assert_eq!(imported(&holder).await, 1, "{all}");
    holder.close().await;
}

async fn tx_rollback(tx: stabspace::storage::Tx) {
    match tx {
        stabspace::storage::Tx::Sqlite(t) => t.rollback().await.unwrap(),
        stabspace::storage::Tx::Postgres(t) => t.rollback().await.unwrap(),
    }
}

// ---------------------------------------------------------------------------
// Item 10: errors, hints and usage.

#[test]
fn output_into_a_missing_directory_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir");
    let out = missing.join("o.csv");
    let mut t = Table::new(&["a"]);
    t.push(vec!["x".into()]);
    let e = t.emit_to(Format::Csv, Some(&out)).unwrap_err().to_string();
    assert!(
        e.contains(&format!("the directory {} does not exist", missing.display())),
        "{e}"
    );
    assert!(!missing.exists(), "the directory was created");
    t.emit_to(Format::Csv, Some(&dir.path().join("o.csv"))).unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("o.csv")).unwrap(),
        "a\nx\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_output_into_a_missing_directory_and_typo_model_hints() {
    let dir = tempfile::tempdir().unwrap();
    let (file, date) = states_db(dir.path()).await;
    let url = format!("sqlite://{}", file.display());
    let d = date.to_string();
    let out = dir.path().join("nowhere").join("o.csv");
    let o = stabspace_at(
        &url,
        &[
            "show-joint-stab-fragility-states",
            "--as-of",
            &d,
            "--output",
            out.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("nowhere") && stderr(&o).contains("does not exist"),
        "{}",
        stderr(&o)
    );
    assert!(!dir.path().join("nowhere").exists());

    // A mistyped joint model: the hint lists the registered ones and gives the
    // command with the one that has states, instead of suggesting a backfill
    // under the typo.
    let o = stabspace_at(
        &url,
        &[
            "find-similar-stab-scenarios",
            "--instrument-id",
            "SYN0003.US",
            "--as-of",
            &d,
            "--scenario-set-id",
            MONTE_CARLO_SET,
            "--model-id",
            "joint-stab-fragility-vl",
        ],
        dir.path(),
    );
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("\"joint-stab-fragility-vl\" is not a registered joint model (registered: joint-stab-fragility-v1)")
            && err.contains(&format!(
                "find-similar-stab-scenarios --instrument-id SYN0003.US --as-of {d} --scenario-set-id \
                 {MONTE_CARLO_SET} --model-id joint-stab-fragility-v1`"
            )),
        "{err}"
    );
    assert!(!err.contains("model-id joint-stab-fragility-vl"), "{err}");

    // A mistyped numeric state encoder in the states backfill, likewise.
    let db = Db::open(&url).await.unwrap();
    let s = StateBackfill {
        as_of: date,
        market_id: "US_EQ".into(),
        region: None,
        stab_model_id: "num-stab-core-vl".into(),
        profile_model_id: None,
        joint_model_id: JOINT.into(),
        weights: Weights::default(),
        limit: None,
        replace: false,
    };
    let e = backfill_joint_states(&db, &s, &Quiet)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("\"num-stab-core-vl\" is not a state encoder stabspace knows")
            && e.contains("num-stab-core-v1"),
        "{e}"
    );
    assert!(!e.contains("--model-id num-stab-core-vl"), "{e}");
    // A known encoder with nothing stored still gets the command to run.
    let e = backfill_joint_states(
        &db,
        &StateBackfill {
            stab_model_id: "num-stab-core-v2".into(),
            ..s
        },
        &Quiet,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains("--model-id num-stab-core-v2"), "{e}");
    db.close().await;
}

#[test]
fn top_k_zero_is_a_usage_error_on_every_command_with_it() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &[
            "find-similar-stab-scenarios",
            "--instrument-id",
            "I",
            "--as-of",
            "2025-01-31",
            "--scenario-set-id",
            "S",
            "--top-k",
            "0",
        ][..],
        &[
            "show-portfolio-stab-scenario-exposure",
            "--portfolio-id",
            "P",
            "--as-of",
            "2025-01-31",
            "--scenario-set-id",
            "S",
            "--top-k",
            "0",
        ][..],
        &["bench", "--scenario-set-id", "S", "--sample", "1", "--k", "0"][..],
    ] {
        let o = stabspace(args, dir.path());
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains("must be at least 1"), "{args:?}: {err}");
    }
    // 1 passes the parser (then fails for lack of a database).
    let o = stabspace(
        &[
            "find-similar-stab-scenarios",
            "--instrument-id",
            "I",
            "--as-of",
            "2025-01-31",
            "--scenario-set-id",
            "S",
            "--top-k",
            "1",
        ],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
}

#[test]
fn every_argument_has_help_and_joint_model_flags_say_so() {
    let mut missing = Vec::new();
    fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            let help = arg.get_help().or(arg.get_long_help()).map(|h| h.to_string());
            if help.is_none_or(|h| h.trim().is_empty()) {
                missing.push(format!("{path} --{id}"));
            }
        }
        for sub in cmd.get_subcommands() {
            walk(sub, &format!("{path} {}", sub.get_name()), missing);
        }
    }
    let cmd = stabspace::cli::Cli::command();
    walk(&cmd, "stabspace", &mut missing);
    assert!(missing.is_empty(), "arguments without help: {missing:#?}");

    for name in [
        "show-portfolio-stab-scenario-exposure",
        "backfill-portfolio-stab-scenario-metrics",
    ] {
        let sub = cmd.find_subcommand(name).unwrap();
        let arg = sub
            .get_arguments()
            .find(|a| a.get_id() == "stab_model_id")
            .unwrap();
        let help = arg.get_help().unwrap().to_string();
        assert!(help.contains("Joint model"), "{name}: {help}");
        assert!(
            arg.get_visible_aliases()
                .is_some_and(|a| a.contains(&"joint-model-id")),
            "{name}"
        );
    }
    use clap::Parser;
    let cli = stabspace::cli::Cli::try_parse_from([
        "stabspace",
        "show-portfolio-stab-scenario-exposure",
        "--portfolio-id",
        "P",
        "--as-of",
        "2025-01-31",
        "--scenario-set-id",
        "S",
        "--joint-model-id",
        "other-joint",
    ])
    .unwrap();
    match cli.command {
        stabspace::cli::Command::ShowPortfolioStabScenarioExposure(a) => {
            assert_eq!(a.stab_model_id, "other-joint")
        }
        other => panic!("parsed as {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Item 11: vector files the benchmark cannot use; null in merged metrics.

/// A float32 `.npy` with a declared shape and `values` as data.
fn npy(path: &Path, shape: &str, values: &[f32]) {
    let mut bytes = stabspace_index::vecfile::npy_prefix(shape);
    for v in values {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn bench_on_unusable_vector_files_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    npy(&p("n0.npy"), "(5, 0)", &[]);
    npy(&p("zero.npy"), "(0, 4)", &[]);
    let base: Vec<f32> = (0..40).map(|i| (i % 7) as f32 + 1.0).collect();
    npy(&p("base.npy"), "(10, 4)", &base);
    npy(&p("q3.npy"), "(2, 3)", &[1.0; 6]);
    for (args, file) in [
        (vec!["bench", "--base", "n0.npy", "--sample", "1"], "n0.npy"),
        (vec!["bench", "--base", "zero.npy", "--sample", "1"], "zero.npy"),
        (
            vec!["bench", "--base", "base.npy", "--queries", "n0.npy"],
            "n0.npy",
        ),
        (
            vec!["bench", "--base", "base.npy", "--queries", "q3.npy"],
            "q3.npy",
        ),
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_stabspace"))
            .args(&args)
            .current_dir(dir.path())
            .env_remove("DATABASE_URL")
            .env_remove("STABSPACE_READ_DATABASE_URL")
            .env("STABSPACE_DATA_DIR", dir.path().join("data"))
            .output()
            .unwrap();
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?} (101 is a panic): {err}");
        assert!(
            err.starts_with("error: ") && err.contains(file),
            "{args:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

both_backends!(null_in_a_merged_patch_is_stored_as_null_on_both_backends);

async fn metrics_of(db: &Db, pid: &str) -> Json {
    let date = NaiveDate::from_ymd_opt(2025, 1, 31).unwrap();
    let rows = stabspace::storage::reports::risk_metrics(db, pid, date, date)
        .await
        .unwrap();
    serde_json::from_str(&rows[0].1).unwrap()
}

async fn run_metrics_of(db: &Db, run: &str) -> Json {
    let s: String = with_pool!(db, p => sqlx::query_scalar(
        "SELECT CAST(metrics_json AS TEXT) FROM backtest_runs WHERE run_id = $1")
        .bind(run).fetch_one(p).await.unwrap());
    serde_json::from_str(&s).unwrap()
}

/// `{"k": null}` leaves `"k": null` (PostgreSQL's `||`; SQLite's json_patch
/// would delete k), nested objects are replaced whole on both, every other
/// key is kept, and re-merging changes nothing.
async fn null_in_a_merged_patch_is_stored_as_null_on_both_backends(t: TestDb) {
    let reports = t.path("r.csv");
    std::fs::write(
        &reports,
        "portfolio_id,as_of_date,risk_metrics_json\n\
         P,2025-01-31,\"{\"\"var\"\": 1.5, \"\"stab_x\"\": 2, \"\"nested\"\": {\"\"a\"\": 1, \"\"b\"\": 2}}\"\n",
    )
    .unwrap();
    import_file(&t.db, ImportKind::RiskReports, &reports, &Quiet)
        .await
        .unwrap();
    let runs = t.path("b.csv");
    std::fs::write(
        &runs,
        "run_id,strategy_id,start_date,end_date,config_json,metrics_json\n\
         R,S,2025-01-01,2025-01-31,\"{\"\"portfolio_id\"\": \"\"P\"\"}\",\"{\"\"sharpe\"\": 1.1, \"\"stab_y\"\": 3}\"\n",
    )
    .unwrap();
    import_file(&t.db, ImportKind::BacktestRuns, &runs, &Quiet)
        .await
        .unwrap();

    let date = NaiveDate::from_ymd_opt(2025, 1, 31).unwrap();
    let patch = json!({"stab_x": null, "nested": {"a": 9}, "stab_new": null, "stab_z": 0.25});
    let mut tx = t.db.begin().await.unwrap();
    let changed = merge_risk_metrics(&mut tx, &[("P".into(), date, patch.clone())])
        .await
        .unwrap();
    assert_eq!(changed, 1);
    let changed = merge_backtest_metrics(&mut tx, &[("R".into(), patch.clone())])
        .await
        .unwrap();
    assert_eq!(changed, 1);
    t.db.commit(tx).await.unwrap();
    assert_eq!(
        metrics_of(&t.db, "P").await,
        json!({"var": 1.5, "stab_x": null, "nested": {"a": 9}, "stab_new": null, "stab_z": 0.25})
    );
    assert_eq!(
        run_metrics_of(&t.db, "R").await,
        json!({"sharpe": 1.1, "stab_y": 3, "stab_x": null, "nested": {"a": 9}, "stab_new": null, "stab_z": 0.25})
    );

    let mut tx = t.db.begin().await.unwrap();
    assert_eq!(
        merge_risk_metrics(&mut tx, &[("P".into(), date, patch.clone())])
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        merge_backtest_metrics(&mut tx, &[("R".into(), patch)])
            .await
            .unwrap(),
        0
    );
    t.db.commit(tx).await.unwrap();
}
