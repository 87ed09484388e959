//! Fault injection (issue 11, "Trust"): the binary is killed (`SIGKILL`) at
//! every pause point of a scenario backfill, a scenario projection and an index
//! build (`src/faults.rs`). After each kill the set's vectors in the database
//! are exactly as before the command or exactly as after it, every visible
//! partition file is whole (the old file byte for byte, or the new one), a
//! leftover temporary file is never taken for a partition and is removed (and
//! reported) by the next `index status` or build, and a re-run gives
//! what an uninterrupted run in another database of the same backend gives:
//! the same rows, and a partition whose every section but the provenance is
//! byte-identical (the provenance differs only in build time, database id and
//! `created_at`).
//!
//! Both backends in about 8 s (2 cores), so it runs in the default suite.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use stabspace::faults::{self, PAUSE_AT_ENV};
use stabspace::partitions::{index_dir, partition_path, LocalDir, PartitionStore};
use stabspace::storage::Db;
use stabspace::synth::MONTE_CARLO_SET;
use stabspace::with_pool;
use stabspace_index::format::{kind, Header};
use stabspace_index::Partition;

use crate::both_backends;
use crate::support::{import_all, postgres, small_market, sqlite, text, TestDb};

both_backends!(killed_runs_leave_before_or_after_and_reruns_match_an_uninterrupted_run);

const JOINT: &str = "joint-stab-fragility-v2";
/// A set of 2,500 generated scenarios: above the flat threshold, so its
/// partition has a graph.
const GRAPH_SET: &str = "FAULT_GRAPH";
/// How long a spawned run may take to reach its pause point.
const PAUSE_TIMEOUT: Duration = Duration::from_secs(60);

/// `backfill-numeric-scenario-embeddings` (v2) of the Monte-Carlo set.
const SCENARIO_BACKFILL: &[&str] = &[
    "backfill-numeric-scenario-embeddings",
    "--scenario-set-id",
    MONTE_CARLO_SET,
    "--model-id",
    "num-scenario-core-v2",
];
/// The projection, which then rebuilds the set's partition (M 16).
const PROJECTION: &[&str] = &[
    "backfill-joint-stab-fragility-scenarios",
    "--scenario-set-id",
    MONTE_CARLO_SET,
    "--scenario-model-id",
    "num-scenario-core-v2",
    "--joint-model-id",
    JOINT,
    "--deterministic",
];
/// A rebuild with other parameters (M 8), so the old and new files differ.
const INDEX_BUILD: &[&str] = &[
    "index",
    "build",
    "--model-id",
    JOINT,
    "--scenario-set-id",
    MONTE_CARLO_SET,
    "--m",
    "8",
    "--deterministic",
];
const GEN_GRAPH_SET: &[&str] = &[
    "gen-scenarios",
    "--model-id",
    JOINT,
    "--scenario-set-id",
    GRAPH_SET,
    "--count",
    "2500",
    "--no-index",
];
const GRAPH_INDEX_BUILD: &[&str] = &[
    "index",
    "build",
    "--model-id",
    JOINT,
    "--scenario-set-id",
    GRAPH_SET,
    "--m",
    "8",
    "--ef-construction",
    "32",
    "--deterministic",
];

/// One database and data directory, driven through the binary.
struct Site<'a> {
    t: &'a TestDb,
    data_dir: PathBuf,
}

impl Site<'_> {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_stabspace"));
        c.args(args)
            .arg("--database-url")
            .arg(&self.t.url)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .env_remove("DATABASE_URL")
            .env_remove("STABSPACE_READ_DATABASE_URL")
            .env_remove("STABSPACE_DATA_DIR")
            .env_remove(PAUSE_AT_ENV);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        let o = self.command(args).output().expect("run stabspace");
        assert!(
            o.status.success(),
            "stabspace {args:?} failed\n{}{}",
            text(&o.stdout),
            text(&o.stderr)
        );
        o
    }

    /// Run `args` until it reaches pause point `point`, then `SIGKILL` it.
    fn kill_at(&self, args: &[&str], point: &str) {
        let mut child = self
            .command(args)
            .env(PAUSE_AT_ENV, point)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn stabspace");
        let stderr = child.stderr.take().expect("piped stderr");
        let (send, recv) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        let wanted = format!("paused at {point}");
        let deadline = Instant::now() + PAUSE_TIMEOUT;
        let mut seen = Vec::new();
        let paused = loop {
            match recv.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if line == wanted => break true,
                Ok(line) => seen.push(line),
                Err(_) => break false,
            }
        };
        child.kill().expect("kill stabspace");
        let status = child.wait().expect("wait for stabspace");
        drop(recv);
        let _ = reader.join();
        assert!(
            paused,
            "stabspace {args:?} did not reach pause point {point} within {PAUSE_TIMEOUT:?} \
             (exit {status}); stderr:\n{}",
            seen.join("\n")
        );
        assert_eq!(status.signal(), Some(9), "{args:?} at {point}: {status}");
    }

    fn index_dir(&self) -> PathBuf {
        index_dir(&self.data_dir)
    }

    fn partition(&self, set: &str) -> PathBuf {
        partition_path(&self.index_dir(), JOINT, set)
    }

    fn partition_bytes(&self, set: &str) -> Option<Vec<u8>> {
        std::fs::read(self.partition(set)).ok()
    }
}

/// A set's scenario rows, every column but `created_at`, the vector apart.
type Rows = Vec<(String, Vec<u8>)>;

/// The set's rows in numeric_window_embeddings and in joint_embeddings.
#[derive(Clone, Debug, PartialEq)]
struct Snapshot {
    numeric: Rows,
    joint: Rows,
}

async fn rows(db: &Db, table: &str, columns: &[&str], set: &str) -> Rows {
    let fields: Vec<String> = columns
        .iter()
        .map(|c| format!("COALESCE(CAST({c} AS TEXT), '<null>')"))
        .collect();
    let sql = format!(
        "SELECT {}, vector FROM {table} WHERE entity_type = 'SCENARIO' AND scope_id = $1 \
         ORDER BY {}",
        fields.join(" || '|' || "),
        columns.join(", ")
    );
    with_pool!(db, p => sqlx::query_as(&sql).bind(set).fetch_all(p).await).expect("read rows")
}

async fn snapshot(db: &Db, set: &str) -> Snapshot {
    Snapshot {
        numeric: rows(
            db,
            "numeric_window_embeddings",
            &[
                "model_id",
                "entity_type",
                "scope_id",
                "entity_id",
                "as_of_date",
                "window_days",
                "window_start",
                "window_end",
                "feature_space",
            ],
            set,
        )
        .await,
        joint: rows(
            db,
            "joint_embeddings",
            &[
                "joint_type",
                "model_id",
                "entity_type",
                "scope_id",
                "entity_id",
                "as_of_date",
                "issuer_id",
                "region",
                "entity_scope",
                "feature_space",
            ],
            set,
        )
        .await,
    }
}

/// The database holds `before` or `after`, and which one the point implies.
fn assert_before_or_after(now: &Snapshot, before: &Snapshot, after: &Snapshot, expect_after: bool, at: &str) {
    assert_ne!(before, after, "{at}: the command changes nothing to check");
    let is_after = if now == after {
        true
    } else {
        assert_eq!(
            now, before,
            "{at}: the database is neither as before nor as after"
        );
        false
    };
    assert_eq!(
        is_after,
        expect_after,
        "{at}: the database is as {} the command",
        if is_after { "after" } else { "before" }
    );
}

/// A partition file's content without its provenance's build time, database
/// id and latest `created_at`: header fields but the length and CRCs, every
/// section but the provenance byte for byte, and the rest of the provenance.
#[derive(Debug, PartialEq)]
struct Content {
    header: Header,
    sections: Vec<(u32, Vec<u8>)>,
    provenance: serde_json::Value,
}

impl Content {
    /// What differs, in words, for a failure message.
    fn differences(&self, other: &Content) -> String {
        let mut out = Vec::new();
        if self.header != other.header {
            out.push("the header".to_string());
        }
        for ((k, a), (_, b)) in self.sections.iter().zip(&other.sections) {
            if a != b {
                out.push(format!("section {k}"));
            }
        }
        if self.provenance != other.provenance {
            out.push(format!(
                "the provenance: {} vs {}",
                self.provenance, other.provenance
            ));
        }
        out.join("; ")
    }
}

fn content(path: &Path) -> Content {
    let bytes = std::fs::read(path).expect("read partition");
    let mut header = *Partition::open(path).expect("open partition").header();
    header.file_len = 0;
    header.header_crc32 = 0;
    let mut sections = Vec::new();
    let mut provenance = serde_json::Value::Null;
    for e in header.sections.iter_mut().take(header.section_count as usize) {
        let at = e.offset as usize..(e.offset + e.len) as usize;
        if e.kind == kind::PROVENANCE {
            provenance = serde_json::from_slice(&bytes[at]).expect("provenance JSON");
            e.len = 0;
            e.crc32 = 0;
        } else {
            sections.push((e.kind, bytes[at].to_vec()));
        }
    }
    let p = provenance.as_object_mut().expect("provenance object");
    // Why a build was full depends on the file it replaced (none, or one
    // left by a killed run), not on the content.
    for volatile in ["built_at", "build_seconds", "database_id", "full_build_reason"] {
        assert!(p.remove(volatile).is_some(), "provenance has {volatile}");
    }
    p["fingerprint"]
        .as_object_mut()
        .expect("fingerprint")
        .remove("latest_created_at");
    Content {
        header,
        sections,
        provenance,
    }
}

/// Every visible partition verifies, the binary's `index verify` sees exactly
/// those (not the temporary files), and the file of `set` is `before` byte for
/// byte (`None`: absent) or, when `after` is given, has its content.
fn assert_partition_before_or_after(
    site: &Site<'_>,
    set: &str,
    before: Option<&[u8]>,
    after: Option<&Content>,
    expect_after: bool,
    at: &str,
) {
    let visible = LocalDir::new(site.index_dir()).list().expect("list partitions");
    for f in &visible {
        let p = Partition::open(f).unwrap_or_else(|e| panic!("{at}: {} does not open: {e}", f.display()));
        p.verify()
            .unwrap_or_else(|e| panic!("{at}: {} does not verify: {e}", f.display()));
    }
    if !visible.is_empty() {
        let o = site.run(&["index", "verify"]);
        let ok = text(&o.stdout).lines().filter(|l| l.starts_with("ok ")).count();
        assert_eq!(ok, visible.len(), "{at}: {}", text(&o.stdout));
    }
    let is_before = site.partition_bytes(set).as_deref() == before;
    if !is_before {
        let path = site.partition(set);
        assert!(path.exists(), "{at}: the partition of {set} is gone");
        let after = after.unwrap_or_else(|| panic!("{at}: the partition of {set} changed"));
        assert!(
            content(&path) == *after,
            "{at}: the partition of {set} is neither the old file nor the new one"
        );
    }
    assert_eq!(
        !is_before,
        expect_after,
        "{at}: the partition of {set} is the {} one",
        if is_before { "old" } else { "new" }
    );
}

/// Temporary files left in the set's partition directory.
fn temp_files(site: &Site<'_>, set: &str) -> Vec<PathBuf> {
    let path = site.partition(set);
    let prefix = format!(".{}.tmp.", path.file_name().unwrap().to_string_lossy());
    let Ok(dir) = std::fs::read_dir(path.parent().unwrap()) else {
        return Vec::new();
    };
    dir.map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(&prefix))
        .collect()
}

/// After a kill left temporary files of `set`, the next `index status`
/// removes them and says so: on stdout in text, on stderr beside a CSV or
/// JSON table that stays whole.
fn status_sweeps(site: &Site<'_>, set: &str, format: &str, at: &str) {
    let left = temp_files(site, set);
    assert_eq!(left.len(), 1, "{at}: {left:?}");
    let o = site.run(&["index", "status", "--format", format]);
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    let said = format!(
        "removed 1 temporary file left by a killed build: {}",
        left[0].display()
    );
    let (said_in, table) = if format == "text" {
        (&out, None)
    } else {
        (&err, Some(&out))
    };
    assert!(
        said_in.contains(&said),
        "{at}: index status did not say {said:?}\n{out}{err}"
    );
    if let Some(table) = table {
        assert!(
            !table.contains("temporary"),
            "{at}: the note is not part of the table\n{table}"
        );
        if format == "json" {
            let rows: serde_json::Value = serde_json::from_str(table).expect("status JSON");
            assert!(rows.as_array().is_some_and(|r| !r.is_empty()), "{at}: {table}");
        }
    }
    assert!(
        temp_files(site, set).is_empty(),
        "{at}: a temporary file is left after index status"
    );
    // Nothing left to say the next time.
    let o = site.run(&["index", "status", "--format", format]);
    assert!(
        !(text(&o.stdout) + &text(&o.stderr)).contains("temporary"),
        "{at}"
    );
}

/// Another fresh database of the same backend as `t`.
async fn same_backend(t: &TestDb) -> TestDb {
    if t.url.starts_with("sqlite:") {
        sqlite(true).await
    } else {
        postgres(true).await.expect("PostgreSQL answered a moment ago")
    }
}

fn at(args: &[&str], point: &str) -> String {
    let command: Vec<&str> = args
        .iter()
        .copied()
        .take_while(|a| !a.starts_with("--"))
        .collect();
    format!("{} killed at {point}", command.join(" "))
}

async fn killed_runs_leave_before_or_after_and_reruns_match_an_uninterrupted_run(t: TestDb) {
    let started = Instant::now();
    let (_, market) = small_market(t.dir.path());
    let mut exercised = BTreeSet::new();

    // The reference: every command run once, uninterrupted, in another database.
    let r = same_backend(&t).await;
    import_all(&r.db, &market).await;
    let reference = Site {
        t: &r,
        data_dir: r.path("data"),
    };
    reference.run(SCENARIO_BACKFILL);
    reference.run(PROJECTION);
    let after_projection = snapshot(&r.db, MONTE_CARLO_SET).await;
    let projected = content(&reference.partition(MONTE_CARLO_SET));
    reference.run(INDEX_BUILD);
    let rebuilt = content(&reference.partition(MONTE_CARLO_SET));
    assert_ne!(projected, rebuilt, "M 16 and M 8 give different files");
    reference.run(GEN_GRAPH_SET);
    let graph_rows = snapshot(&r.db, GRAPH_SET).await;
    reference.run(GRAPH_INDEX_BUILD);
    assert!(Partition::open(reference.partition(GRAPH_SET))
        .unwrap()
        .has_graph());
    let graph = content(&reference.partition(GRAPH_SET));
    let after_backfill = Snapshot {
        joint: Vec::new(),
        ..after_projection.clone()
    };
    eprintln!(
        "faults: reference runs took {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // The site under test.
    import_all(&t.db, &market).await;
    let site = Site {
        t: &t,
        data_dir: t.path("data"),
    };

    // 1. The scenario backfill: one transaction, so nothing until it commits.
    let before = snapshot(&t.db, MONTE_CARLO_SET).await;
    for point in [
        faults::SCENARIO_BEFORE_WRITE,
        faults::SCENARIO_MID_WRITE,
        faults::SCENARIO_BEFORE_COMMIT,
    ] {
        let at = at(SCENARIO_BACKFILL, point);
        site.kill_at(SCENARIO_BACKFILL, point);
        exercised.insert(point);
        let now = snapshot(&t.db, MONTE_CARLO_SET).await;
        assert_before_or_after(&now, &before, &after_backfill, false, &at);
        assert_partition_before_or_after(&site, MONTE_CARLO_SET, None, None, false, &at);
    }
    site.run(SCENARIO_BACKFILL);
    assert_eq!(snapshot(&t.db, MONTE_CARLO_SET).await, after_backfill);

    // 2. The projection, then its partition build.
    for (point, db_after, file_after) in [
        (faults::JOINT_BEFORE_COMMIT, false, false),
        (faults::JOINT_COMMITTED, true, false),
        (faults::INDEX_BEFORE_WRITE, true, false),
        (faults::INDEX_TEMP_WRITTEN, true, false),
        (faults::INDEX_RENAMED, true, true),
    ] {
        let at = at(PROJECTION, point);
        site.kill_at(PROJECTION, point);
        exercised.insert(point);
        let now = snapshot(&t.db, MONTE_CARLO_SET).await;
        assert_before_or_after(&now, &after_backfill, &after_projection, db_after, &at);
        if point == faults::INDEX_TEMP_WRITTEN {
            assert!(
                !temp_files(&site, MONTE_CARLO_SET).is_empty(),
                "{at}: no temporary file"
            );
        }
        // No partition until the rename (the last point).
        assert_partition_before_or_after(&site, MONTE_CARLO_SET, None, Some(&projected), file_after, &at);
    }
    site.run(PROJECTION);
    assert_eq!(snapshot(&t.db, MONTE_CARLO_SET).await, after_projection);
    let rerun = content(&site.partition(MONTE_CARLO_SET));
    assert!(
        rerun == projected,
        "the re-run projection's partition differs from the reference: {}",
        rerun.differences(&projected)
    );

    // 3. A rebuild over an existing partition: the old file until the rename.
    for (point, file_after) in [
        (faults::INDEX_BEFORE_WRITE, false),
        (faults::INDEX_TEMP_WRITTEN, false),
        (faults::INDEX_RENAMED, true),
    ] {
        let at = at(INDEX_BUILD, point);
        let old = site.partition_bytes(MONTE_CARLO_SET).unwrap();
        site.kill_at(INDEX_BUILD, point);
        assert_eq!(snapshot(&t.db, MONTE_CARLO_SET).await, after_projection, "{at}");
        assert_partition_before_or_after(
            &site,
            MONTE_CARLO_SET,
            Some(&old),
            Some(&rebuilt),
            file_after,
            &at,
        );
        if point == faults::INDEX_TEMP_WRITTEN {
            // The old partition is intact (above); the next status sweeps.
            status_sweeps(&site, MONTE_CARLO_SET, "text", &at);
            assert_eq!(site.partition_bytes(MONTE_CARLO_SET).unwrap(), old, "{at}");
        }
    }
    site.run(INDEX_BUILD);
    assert!(
        content(&site.partition(MONTE_CARLO_SET)) == rebuilt,
        "the re-run build's partition differs from the reference"
    );

    // 4. A partition with a graph, killed with its temporary file written.
    site.run(GEN_GRAPH_SET);
    assert_eq!(snapshot(&t.db, GRAPH_SET).await, graph_rows);
    let at = at(GRAPH_INDEX_BUILD, faults::INDEX_TEMP_WRITTEN);
    site.kill_at(GRAPH_INDEX_BUILD, faults::INDEX_TEMP_WRITTEN);
    assert!(
        !temp_files(&site, GRAPH_SET).is_empty(),
        "{at}: no temporary file"
    );
    assert_partition_before_or_after(&site, GRAPH_SET, None, Some(&graph), false, &at);
    status_sweeps(&site, GRAPH_SET, "json", &at);
    site.run(GRAPH_INDEX_BUILD);
    assert!(
        content(&site.partition(GRAPH_SET)) == graph,
        "the re-run graph build's partition differs from the reference"
    );
    assert_eq!(snapshot(&t.db, GRAPH_SET).await, graph_rows);

    // 5. A write that committed and was killed before its partition write:
    // the set gained 100 rows the partition lacks. Queries answer for the set
    // as stored (partition + exact scan of the rows it lacks) and say so; the
    // re-run repairs the partition.
    let gained: Vec<&str> = GEN_GRAPH_SET
        .iter()
        .copied()
        .filter(|a| *a != "--no-index")
        .map(|a| if a == "2500" { "2600" } else { a })
        .collect();
    let at = self::at(&gained, faults::INDEX_BEFORE_WRITE);
    site.kill_at(&gained, faults::INDEX_BEFORE_WRITE);
    assert!(
        content(&site.partition(GRAPH_SET)) == graph,
        "{at}: the partition is the old one"
    );
    crate::stale::answers_for_the_set_as_stored(&t.db, &site.index_dir(), JOINT, GRAPH_SET, 100, &at).await;
    site.run(&gained);
    let repaired = crate::stale::space(&t.db, &site.index_dir(), JOINT, GRAPH_SET, None).await;
    assert_eq!(
        (repaired.answered_by(), repaired.partition_stale, repaired.len()),
        (stabspace::nearest::AnsweredBy::Index, false, 2600),
        "{at}: the re-run rebuilt the partition"
    );

    let missed: Vec<&&str> = faults::POINTS
        .iter()
        .filter(|p| !exercised.contains(*p))
        .collect();
    assert!(missed.is_empty(), "pause points never exercised: {missed:?}");
    // The projection's kill at the temporary file left one; the builds since
    // swept it, as the status above swept the others.
    let leftovers: BTreeMap<&str, usize> = [MONTE_CARLO_SET, GRAPH_SET]
        .into_iter()
        .map(|s| (s, temp_files(&site, s).len()))
        .collect();
    assert!(
        leftovers.values().all(|&n| n == 0),
        "temporary files left: {leftovers:?}"
    );
    eprintln!("faults: {:.1} s in all", started.elapsed().as_secs_f64());
    r.db.close().await;
}
