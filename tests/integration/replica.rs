//! Read replicas (`--read-database-url`) against a real streaming replica
//! (`streaming::replicated`): queries read the replica, writes and the
//! builds that publish partitions go to the primary, and a replica behind a
//! partition (its change counter below the recorded one) is not a reason to
//! call the partition stale or to rebuild it: the partition answers as it is.

use std::path::Path;

use serde_json::Value;
use stabspace::gen_scenarios::gen_scenarios;
use stabspace::nearest::{AnsweredBy, ScenarioSpace};
use stabspace::partitions::{
    build, counters, rebuild, stale_partitions, status_of, BuildMode, Freshness, LocalDir,
};
use stabspace::progress::Quiet;
use stabspace::storage::Db;
use stabspace_index::BuildParams;

use crate::stale::scenarios;
use crate::streaming::replicated;
use crate::support::{count, import_all, partition_opts, small_market, stabspace, stabspace_ok, text};

const MODEL: &str = "joint-stab-fragility-v1";

/// How a query of set `set` on `db` is answered, partitions from `index`,
/// and how many rows it searches.
async fn answer(db: &Db, index: &Path, set: &str) -> (AnsweredBy, bool, usize) {
    let s = ScenarioSpace::open(db, &partition_opts(index, None, false), MODEL, set)
        .await
        .unwrap();
    (s.answered_by(), s.partition_stale, s.len())
}

async fn state(db: &Db, store: &LocalDir, set: &str) -> Freshness {
    status_of(db, store, MODEL, set).await.unwrap().state
}

fn pairs(set: &str) -> Vec<(String, String)> {
    vec![(MODEL.to_string(), set.to_string())]
}

/// The lagging-replica rule through the library: a partition built from the
/// primary while the replica is paused is ahead of the replica; it answers
/// `index`, is neither stale nor listed for a rebuild against the replica,
/// and once the replica has caught up it is judged exactly as against the
/// primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_ahead_of_a_lagging_replica_answers_as_it_is() {
    let Some(pair) = replicated() else { return };
    let primary = pair.primary().await;
    let data = pair.scratch.path().join("data");
    let index = data.join("index");
    let store = LocalDir::new(&index);
    gen_scenarios(&primary, &scenarios("S", 300), &Quiet)
        .await
        .unwrap();
    let params = BuildParams::default();
    build(&primary, &store, MODEL, "S", &params, BuildMode::Full, &Quiet)
        .await
        .unwrap();
    pair.catch_up().await;
    let replica = pair.replica().await;
    assert_eq!(state(&replica, &store, "S").await, Freshness::Fresh);
    assert_eq!(
        answer(&replica, &index, "S").await,
        (AnsweredBy::Index, false, 300)
    );

    // The replica stops replaying; the primary gains 20 rows and the
    // partition is rebuilt from the primary: it is now ahead of the replica.
    pair.pause().await;
    gen_scenarios(&primary, &scenarios("S", 320), &Quiet)
        .await
        .unwrap();
    build(
        &primary,
        &store,
        MODEL,
        "S",
        &params,
        BuildMode::AppendIfOnlyGained,
        &Quiet,
    )
    .await
    .unwrap();
    let (behind, newest) = (
        counters(&replica, MODEL, "S").await.unwrap(),
        counters(&primary, MODEL, "S").await.unwrap(),
    );
    assert!(
        behind.version < newest.version,
        "the paused replica lags: {behind} against the primary's {newest}"
    );
    assert_eq!(
        answer(&replica, &index, "S").await,
        (AnsweredBy::Index, false, 320),
        "the partition answers as it is, with the rows the replica has not replayed"
    );
    let st = status_of(&replica, &store, MODEL, "S").await.unwrap();
    assert_eq!(st.state, Freshness::Ahead, "{}", st.detail);
    assert_eq!(st.state.label(), "ahead-of-database");
    assert!(
        st.detail
            .contains("the database read is behind this partition (a lagging replica)"),
        "{}",
        st.detail
    );
    assert!(st.next_rebuild.starts_with("none"), "{}", st.next_rebuild);
    assert_eq!(stale_partitions(&replica, &store).await.unwrap(), []);
    assert_eq!(stale_partitions(&primary, &store).await.unwrap(), []);
    assert_eq!(state(&primary, &store, "S").await, Freshness::Fresh);
    // `index status` through the CLI, reading the replica.
    let status: Value = serde_json::from_str(&stabspace_ok(
        &[
            "index",
            "status",
            "--format",
            "json",
            "--database-url",
            &pair.primary_url,
            "--read-database-url",
            &pair.replica_url,
        ],
        &data,
    ))
    .unwrap();
    assert_eq!(status[0]["state"], "ahead-of-database", "{status}");

    // The primary moves past the partition too, with no build: stale
    // against the primary, still ahead of the lagging replica.
    gen_scenarios(&primary, &scenarios("S", 330), &Quiet)
        .await
        .unwrap();
    assert_eq!(stale_partitions(&primary, &store).await.unwrap(), pairs("S"));
    assert_eq!(stale_partitions(&replica, &store).await.unwrap(), []);
    assert_eq!(
        answer(&primary, &index, "S").await,
        (AnsweredBy::IndexDelta, true, 330)
    );
    assert_eq!(
        answer(&replica, &index, "S").await,
        (AnsweredBy::Index, false, 320)
    );

    // Caught up, the replica judges the partition as the primary does.
    pair.resume().await;
    pair.catch_up().await;
    for (name, db) in [("primary", &primary), ("replica", &replica)] {
        assert_eq!(
            answer(db, &index, "S").await,
            (AnsweredBy::IndexDelta, true, 330),
            "{name}"
        );
        assert_eq!(state(db, &store, "S").await, Freshness::Stale, "{name}");
        assert_eq!(stale_partitions(db, &store).await.unwrap(), pairs("S"), "{name}");
    }
    rebuild(&primary, &store, MODEL, "S").await.unwrap();
    for (name, db) in [("primary", &primary), ("replica", &replica)] {
        assert_eq!(
            answer(db, &index, "S").await,
            (AnsweredBy::Index, false, 330),
            "{name}"
        );
        assert_eq!(state(db, &store, "S").await, Freshness::Fresh, "{name}");
        assert_eq!(stale_partitions(db, &store).await.unwrap(), [], "{name}");
    }
    replica.close().await;
    primary.close().await;
}

/// Through the binary: backfills and gen-scenarios write the primary (and
/// build from it) while the replica lags; a query with --read-database-url
/// reads the replica only (it answers with the primary unreachable) and,
/// caught up, answers as the primary does; behind a partition, it answers
/// `index` with a note; a command that writes, given the replica as
/// --database-url, fails naming it a read-only standby.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_reads_the_replica_and_writes_the_primary() {
    let Some(pair) = replicated() else { return };
    let primary = pair.primary().await;
    let (_, market) = small_market(pair.scratch.path());
    import_all(&primary, &market).await;
    let data = pair.scratch.path().join("data");
    let last = market.last_date.to_string();
    let both = |args: &[&str]| -> Vec<String> {
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        all.extend([
            "--database-url".into(),
            pair.primary_url.clone(),
            "--read-database-url".into(),
            pair.replica_url.clone(),
        ]);
        all
    };
    let run = |args: Vec<String>| -> (bool, String, String) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = stabspace(&args, &data);
        (o.status.success(), text(&o.stdout), text(&o.stderr))
    };
    let ok = |args: Vec<String>| -> (String, String) {
        let (success, out, err) = run(args.clone());
        assert!(success, "{args:?}: {err}");
        (out, err)
    };
    pair.catch_up().await;
    let replica = pair.replica().await;

    // Backfills write to the primary while the replica is paused.
    pair.pause().await;
    ok(both(&[
        "backfill-numeric-embeddings",
        "--market-id",
        "US_EQ",
        "--as-of",
        &last,
    ]));
    ok(both(&[
        "backfill-joint-stab-fragility-states",
        "--market-id",
        "US_EQ",
        "--as-of",
        &last,
    ]));
    ok(both(&[
        "gen-scenarios",
        "--scenario-set-id",
        "G",
        "--count",
        "2100",
    ]));
    let written = count(&primary, "joint_embeddings").await;
    assert!(written > 2100, "states and scenarios on the primary: {written}");
    assert_eq!(count(&replica, "joint_embeddings").await, 0, "not replayed yet");
    let query = [
        "find-similar-stab-scenarios",
        "--instrument-id",
        "SYN0001.US",
        "--as-of",
        &last,
        "--scenario-set-id",
        "G",
        "--top-k",
        "5",
    ];
    // The query reads the replica, which has no states yet.
    let (success, _, err) = run(both(&query));
    assert!(!success, "a query on the lagging replica finds no state: {err}");

    pair.resume().await;
    pair.catch_up().await;
    let (via_replica, _) = ok(both(&query));
    let mut primary_only: Vec<String> = query.iter().map(|a| a.to_string()).collect();
    primary_only.extend(["--database-url".into(), pair.primary_url.clone()]);
    let (via_primary, _) = ok(primary_only);
    assert_eq!(via_replica, via_primary);
    assert_eq!(via_replica.lines().count(), 6, "{via_replica}");
    assert!(
        via_replica
            .lines()
            .skip(1)
            .all(|l| crate::support::before_known_from(l).ends_with(",index,false")),
        "{via_replica}"
    );
    // Queries never open the primary: one nobody listens on does not matter.
    let mut replica_only: Vec<String> = query.iter().map(|a| a.to_string()).collect();
    replica_only.extend([
        "--database-url".into(),
        "postgres://postgres@127.0.0.1:1/postgres".into(),
        "--read-database-url".into(),
        pair.replica_url.clone(),
    ]);
    assert_eq!(ok(replica_only).0, via_primary);

    // A partition built from the primary while the replica lags answers as
    // it is, once noted.
    pair.pause().await;
    ok(both(&[
        "gen-scenarios",
        "--scenario-set-id",
        "G",
        "--count",
        "2160",
    ]));
    let (ahead, note) = ok(both(&query));
    assert!(
        ahead
            .lines()
            .skip(1)
            .all(|l| crate::support::before_known_from(l).ends_with(",index,false")),
        "{ahead}"
    );
    assert_eq!(
        note.matches("the database read is behind index partition")
            .count(),
        1,
        "{note}"
    );
    pair.resume().await;
    pair.catch_up().await;
    let (caught_up, note) = ok(both(&query));
    assert!(
        caught_up
            .lines()
            .skip(1)
            .all(|l| crate::support::before_known_from(l).ends_with(",index,false")),
        "{caught_up}"
    );
    assert!(!note.contains("behind"), "{note}");

    // The replica refuses writes: a command that writes says so at once.
    for args in [
        vec!["gen-scenarios", "--scenario-set-id", "H", "--count", "10"],
        vec!["migrate"],
    ] {
        let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        args.extend(["--database-url".into(), pair.replica_url.clone()]);
        let (success, _, err) = run(args.clone());
        assert!(!success, "{args:?}");
        assert!(
            err.contains("is a read-only standby") && err.contains(&pair.replica_url),
            "{args:?}: {err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }
    replica.close().await;
    primary.close().await;
}
