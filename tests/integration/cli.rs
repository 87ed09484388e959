//! The real binary, as a user runs it.

use std::fs;
use std::path::Path;
use std::process::Output;

use crate::support::{stabspace, stabspace_ok, text};

fn stderr(o: &Output) -> String {
    text(&o.stderr)
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
    let instruments = dir.path().join("instruments.csv");
    fs::write(
        &instruments,
        "instrument_id,issuer_id,market_id,region,status\nA,I,M,US,active\n",
    )
    .unwrap();
    let o = stabspace(
        &["import", "instruments", instruments.to_str().unwrap()],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
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

/// The joint model of the demo's (v2) vectors.
const V2: &str = "joint-stab-fragility-v2";

/// The demo, then the show/find commands on its database, as a user runs them.
#[test]
fn demo_then_show_and_find_commands_print_csv_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let o = stabspace(&["demo", "--instruments", "12", "--days", "260"], dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("show-portfolio-stab-scenario-exposure"), "{out}");

    let o = stabspace(
        &[
            "show-joint-stab-fragility-states",
            "--start",
            "2000-01-01",
            "--end",
            "2100-01-01",
            "--instrument-id",
            "SYN0002.US",
            "--model-id",
            V2,
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let csv = String::from_utf8_lossy(&o.stdout);
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("as_of_date,instrument_id,issuer_id,region,model_id,dim,l2_norm")
    );
    let rows: Vec<&str> = lines.collect();
    assert!(rows.len() > 3, "{csv}");
    let mut dates: Vec<&str> = rows.iter().map(|r| r.split(',').next().unwrap()).collect();
    let sorted = {
        let mut d = dates.clone();
        d.sort();
        d
    };
    assert_eq!(dates, sorted, "ordered by date");
    let last = dates.pop().unwrap();
    assert!(
        rows[0].contains(",SYN0002.US,ISS_0001,US,joint-stab-fragility-v2,384,"),
        "{}",
        rows[0]
    );

    // --output goes into an existing directory (a missing one is an error, see trust_io).
    fs::create_dir(dir.path().join("out")).unwrap();
    let file = dir.path().join("out/similar.json");
    let o = stabspace(
        &[
            "find-similar-stab-scenarios",
            "--instrument-id",
            "SYN0002.US",
            "--as-of",
            last,
            "--scenario-set-id",
            "MC_STRESS_V0",
            "--top-k",
            "4",
            "--model-id",
            V2,
            "--format",
            "json",
            "--output",
            file.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(o.stdout.is_empty(), "written to --output, not stdout");
    let hits: serde_json::Value = serde_json::from_slice(&fs::read(&file).unwrap()).unwrap();
    let hits = hits.as_array().unwrap();
    assert_eq!(hits.len(), 4);
    let keys: Vec<&str> = hits[0].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "rank",
            "cosine",
            "euclidean",
            "scenario_set_id",
            "scenario_id",
            "scenario_as_of",
            "instrument_id",
            "as_of_date",
            "answered_by",
            "partition_stale",
            "scenario_known_from"
        ]
    );
    assert_eq!(hits[0]["answered_by"], "index", "the demo's partitions are fresh");
    assert_eq!(hits[0]["partition_stale"], false);
    let cos: Vec<f64> = hits.iter().map(|h| h["cosine"].as_f64().unwrap()).collect();
    assert!(cos.windows(2).all(|w| w[0] >= w[1]), "cosine descending: {cos:?}");

    let o = stabspace(
        &[
            "show-portfolio-stab-scenario-exposure",
            "--portfolio-id",
            "PORTFOLIO_CORE_US_EQ_001",
            "--as-of",
            last,
            "--scenario-set-id",
            "HIST_CRASH_WINDOWS",
            "--top-k",
            "2",
            "--stab-model-id",
            V2,
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let csv = String::from_utf8_lossy(&o.stdout);
    assert!(csv.starts_with(
        "cosine,euclidean,scenario_set_id,scenario_id,scenario_as_of,portfolio_id,portfolio_ctx_norm,num_instruments_used,weight_covered,answered_by,partition_stale,scenario_known_from\n"
    ), "{csv}");
    assert_eq!(csv.lines().count(), 3, "{csv}");

    let o = stabspace(
        &[
            "show-joint-stab-fragility-scenarios",
            "--scenario-set-id",
            "HIST_CRASH_WINDOWS",
            "--limit",
            "1",
            "--model-id",
            V2,
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with(
        "scenario_set_id,scenario_id,scenario_as_of,model_id,dim,l2_norm,known_from\nHIST_CRASH_WINDOWS,HIST_01_"
    ));

    // The demo's partitions are fresh and record the v2 space; eval-retrieval's JSON has every rank.
    let o = stabspace(&["index", "status", "--format", "csv"], dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let status = String::from_utf8_lossy(&o.stdout);
    let hist = status
        .lines()
        .find(|l| l.contains(",HIST_CRASH_WINDOWS,"))
        .unwrap_or_else(|| panic!("{status}"));
    assert!(
        hist.contains(",fresh,") && hist.contains(",stab-v2-signature-h20,"),
        "{status}"
    );
    let o = stabspace(
        &[
            "eval-retrieval",
            "--scenario-set-id",
            "HIST_CRASH_WINDOWS",
            "--market-id",
            "US_EQ",
            "--joint-model-id",
            V2,
            "--format",
            "json",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["stab_model_id"], "num-stab-core-v2");
    let windows = report["windows"].as_u64().unwrap() as usize;
    assert_eq!(report["ranks"].as_array().unwrap().len(), 3 * windows);
    assert_eq!(
        report["scores"][0]["hit_at_1"], 1.0,
        "offset 0: {}",
        report["scores"][0]
    );

    // Nothing stored: a non-zero exit and a message naming what exists.
    let o = stabspace(
        &[
            "show-joint-stab-fragility-states",
            "--as-of",
            "1999-01-04",
            "--model-id",
            V2,
        ],
        dir.path(),
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains(&format!(
            "the latest date with STAB states of joint-stab-fragility-v2 is {last}"
        )),
        "{}",
        stderr(&o)
    );
    assert!(o.stdout.is_empty(), "no empty table on error");

    // The seed's default joint model (v1) has nothing after the v2 demo: the
    // errors name the joint model that has vectors and give the command that works.
    let o = stabspace(&["show-joint-stab-fragility-states", "--as-of", last], dir.path());
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains(&format!(
            "run `stabspace show-joint-stab-fragility-states --as-of {last} --model-id joint-stab-fragility-v2`"
        )),
        "{}",
        stderr(&o)
    );
    let o = stabspace(
        &[
            "show-joint-stab-fragility-scenarios",
            "--scenario-set-id",
            "HIST_CRASH_WINDOWS",
            "--model-id",
            "joint-stab-fragility-v1",
        ],
        dir.path(),
    );
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("under joint-stab-fragility-v2 (stab-v2-signature-h20")
            && e.contains(
                "run `stabspace show-joint-stab-fragility-scenarios --scenario-set-id HIST_CRASH_WINDOWS \
                 --model-id joint-stab-fragility-v2`"
            ),
        "{e}"
    );
}

/// Every encoder pair of the demo runs end to end under its own joint model,
/// eval-retrieval included (v1 evaluates with the profile branch it registered).
#[test]
fn demo_runs_with_each_encoder_pair_under_its_joint_model() {
    for (pair, joint) in [
        ("v1", "joint-stab-fragility-v1"),
        ("v3", "joint-stab-fragility-v3"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let o = stabspace(
            &["demo", "--instruments", "12", "--days", "260", "--encoders", pair],
            dir.path(),
        );
        assert!(o.status.success(), "{pair}: {}", stderr(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            out.contains(&format!("eval-retrieval --scenario-set-id HIST_CRASH_WINDOWS --market-id US_EQ --joint-model-id {joint}")),
            "{out}"
        );
        let models =
            String::from_utf8_lossy(&stabspace(&["show-joint-models"], dir.path()).stdout).to_string();
        let row = models.lines().nth(1).unwrap_or_default().to_string();
        assert!(
            row.starts_with(&format!("{joint},identity-weighted-average,")),
            "{models}"
        );
        assert_eq!(models.lines().count(), 2, "{models}");
    }
}

/// The figures the demo prints (its table rows), without timings.
fn demo_figures(stdout: &[u8]) -> Vec<String> {
    text(stdout)
        .lines()
        .filter(|l| {
            let t = l.trim_start();
            t.starts_with(|c: char| c.is_ascii_digit()) && !l.contains(" s)") && !l.contains(" s ")
        })
        .map(str::to_string)
        .collect()
}

/// The demo ignores DATABASE_URL from the environment (its own SQLite file),
/// prints the same figures on every run, and refuses a database holding data
/// it did not create, leaving that data alone.
#[test]
fn demo_uses_its_own_database_and_repeats_its_figures() {
    let dir = tempfile::tempdir().unwrap();
    let demo = |dir: &Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_stabspace"))
            .args(["demo", "--instruments", "12", "--days", "260"])
            // A server that is not there: the demo must not even try it.
            .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/real_data")
            .env("STABSPACE_DATA_DIR", dir)
            .output()
            .unwrap()
    };
    // A data directory that does not exist yet, as on a fresh machine.
    let data = dir.path().join("fresh");
    let first = demo(&data);
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(
        stderr(&first).contains("ignores DATABASE_URL"),
        "{}",
        stderr(&first)
    );
    assert!(data.join("stabspace.db").is_file());
    // A set of scenarios of its own, indexed: the next demo empties it.
    stabspace_ok(
        &[
            "gen-scenarios",
            "--scenario-set-id",
            "EXTRA_V0",
            "--count",
            "50",
            "--model-id",
            "joint-stab-fragility-v2",
        ],
        &data,
    );
    let second = demo(&data);
    assert!(second.status.success(), "{}", stderr(&second));
    assert!(text(&second.stdout).contains("earlier demo's data cleared"));
    // Its partition is orphaned: the change counters only grew when the demo
    // emptied the set, so the partition never looks ahead of the database
    // (what only a lagging replica may look like).
    let status = stabspace_ok(&["index", "status", "--format", "csv"], &data);
    let extra = status
        .lines()
        .find(|l| l.contains("EXTRA_V0"))
        .unwrap_or_default();
    assert!(extra.contains("orphaned"), "{status}");
    let (a, b) = (demo_figures(&first.stdout), demo_figures(&second.stdout));
    assert!(a.len() > 8, "{}", text(&first.stdout));
    assert_eq!(a, b, "the second run prints the first run's figures");

    // A database with a user's own rows is refused and left as it was.
    let mine = tempfile::tempdir().unwrap();
    let csv = mine.path().join("instruments.csv");
    std::fs::write(
        &csv,
        "instrument_id,issuer_id,market_id,region,status\nMY.US,MY,US_EQ,US,active\n",
    )
    .unwrap();
    let o = stabspace(&["import", "instruments", csv.to_str().unwrap()], mine.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let o = demo(mine.path());
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("did not create") && e.contains("1 rows in instruments"),
        "{e}"
    );
    assert!(
        !mine.path().join("demo").exists(),
        "refused before generating anything"
    );
    let o = stabspace(&["import", "instruments", csv.to_str().unwrap()], mine.path());
    assert!(
        o.status.success(),
        "the user's database still opens: {}",
        stderr(&o)
    );
}

/// `--partition-store file://DIR` (or `STABSPACE_PARTITION_STORE`) puts the
/// partitions in DIR instead of `<data-dir>/index`: builds publish there and
/// the index commands read there; another kind of URL is refused by name.
#[test]
fn partitions_live_in_the_partition_store_given() {
    let dir = tempfile::tempdir().unwrap();
    let (data, store) = (dir.path().join("data"), dir.path().join("elsewhere"));
    let url = format!("file://{}", store.display());
    let model = "joint-stab-fragility-v1";
    stabspace_ok(
        &[
            "gen-scenarios",
            "--scenario-set-id",
            "S",
            "--count",
            "300",
            "--model-id",
            model,
            "--partition-store",
            &url,
        ],
        &data,
    );
    assert!(stabspace::partitions::partition_path(&store, model, "S").is_file());
    assert!(!data.join("index").exists(), "nothing under the data directory");

    // The environment variable names the same store.
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_stabspace"))
        .args(["index", "status", "--format", "csv"])
        .env_remove("DATABASE_URL")
        .env_remove("STABSPACE_READ_DATABASE_URL")
        .env("STABSPACE_DATA_DIR", &data)
        .env("STABSPACE_PARTITION_STORE", &url)
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", stderr(&status));
    let row = text(&status.stdout)
        .lines()
        .find(|l| l.contains(",S,"))
        .unwrap_or_default()
        .to_string();
    assert!(row.contains("fresh"), "{}", text(&status.stdout));
    // Without it, the data directory's store has no partition of the set.
    let default = stabspace_ok(&["index", "status", "--format", "csv"], &data);
    assert!(default.contains("missing"), "{default}");

    for (bad, says) in [
        ("gs://bucket/prefix", "gs:// partition stores are not supported"),
        ("s3://No_Such_Bucket/x", "does not name a bucket"),
        ("/just/a/path", "is not a partition store URL"),
    ] {
        let o = stabspace(&["index", "status", "--partition-store", bad], &data);
        assert!(!o.status.success(), "{bad}");
        assert!(
            stderr(&o).contains("--partition-store") && stderr(&o).contains(says),
            "{}",
            stderr(&o)
        );
    }
}
