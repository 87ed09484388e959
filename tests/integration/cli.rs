//! The real binary, as a user runs it.

use std::fs;
use std::process::{Command, Output};

fn stabspace(args: &[&str], data_dir: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stabspace"))
        .args(args)
        .env_remove("DATABASE_URL")
        .env("STABSPACE_DATA_DIR", data_dir)
        .output()
        .expect("run stabspace")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn unreachable_database_is_one_line_without_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let o = stabspace(
        &[
            "--database-url",
            "postgres://alice:hunter2@127.0.0.1:1/risk",
            "migrate",
        ],
        dir.path(),
    );
    assert!(!o.status.success());
    let err = stderr(&o);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: cannot connect to postgres://alice:***@127.0.0.1:1/risk"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
}

#[test]
fn unsupported_url_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let o = stabspace(&["--database-url", "mysql://x/y", "migrate"], dir.path());
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("expected postgres://… or sqlite://…"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn default_database_is_created_in_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let o = stabspace(&["migrate"], dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(dir.path().join("stabspace.db").is_file());
}

#[test]
fn bad_import_exits_non_zero_naming_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("prices.csv");
    fs::write(
        &csv,
        "instrument_id,trade_date,close,volume\nA,2025-01-02,1,1\nA,2025-01-03,x,1\n",
    )
    .unwrap();
    let o = stabspace(&["import", "prices", csv.to_str().unwrap()], dir.path());
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("prices.csv:3: column \"close\": invalid number \"x\""),
        "{err}"
    );
}

#[test]
fn unknown_model_exits_non_zero_listing_known_models() {
    let dir = tempfile::tempdir().unwrap();
    let o = stabspace(
        &[
            "backfill-numeric-embeddings",
            "--as-of",
            "2025-01-31",
            "--market-id",
            "US_EQ",
            "--model-id",
            "bogus",
        ],
        dir.path(),
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("unknown model id \"bogus\""),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("num-stab-core-v1"), "{}", stderr(&o));
}

#[test]
fn generate_writes_files_that_import_and_backfill() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("csv");
    let o = stabspace(
        &[
            "generate",
            "--out",
            out.to_str().unwrap(),
            "--instruments",
            "8",
            "--days",
            "150",
            "--crashes",
            "2",
            "--mc-scenarios",
            "5",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    for (kind, file) in [("instruments", "instruments.csv"), ("prices", "prices.csv")] {
        let o = stabspace(&["import", kind, out.join(file).to_str().unwrap()], dir.path());
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let o = stabspace(
        &[
            "backfill-numeric-embeddings",
            "--as-of",
            "2030-01-01",
            "--market-id",
            "US_EQ",
            "--window-days",
            "63",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("num-stab-core-v1: encoded 8 vectors, skipped 0"),
        "{out}"
    );
}
