//! A query answers for the scenario set as the database holds it now: a
//! partition behind the database is searched with an exact scan of the rows
//! it lacks (`index+delta`), or not at all (`exact-scan`) when its rows were
//! changed or removed or it lacks too many; every answer says which.

use std::path::Path;

use chrono::NaiveDate;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use stabspace::gen_scenarios::{gen_scenarios, GenScenarios, Market};
use stabspace::nearest::{delta_limit, AnsweredBy, ScenarioHit, ScenarioSpace, SearchOpts};
use stabspace::partitions::{build, BuildMode, LocalDir};
use stabspace::progress::Quiet;
use stabspace::storage::joint::joint_scenarios_page;
use stabspace::storage::Db;
use stabspace::with_pool;
use stabspace_index::BuildParams;

use crate::both_backends;
use crate::support::{stabspace_ok, TestDb};

both_backends!(
    a_partition_behind_the_database_answers_for_the_set_as_it_is_now,
    the_cli_says_how_each_answer_was_found,
);

const MODEL: &str = "joint-stab-fragility-v1";

/// `count` generated scenarios of `set` under [`MODEL`] (also the replica tests').
pub(crate) fn scenarios(set: &str, count: usize) -> GenScenarios {
    GenScenarios {
        scenario_set_id: set.into(),
        count,
        model_id: MODEL.into(),
        seed: 5,
        scenario_date: NaiveDate::from_ymd_opt(2021, 6, 1).unwrap(),
        spread_years: 0,
    }
}

fn opts(dir: &Path, ef: Option<usize>, exact: bool) -> SearchOpts {
    crate::support::partition_opts(dir, ef, exact)
}

/// Every (id, vector) of the set, straight from the database.
async fn stored(t: &TestDb, set: &str) -> Vec<(String, Vec<f32>)> {
    stored_in(&t.db, MODEL, set).await
}

async fn stored_in(db: &Db, model: &str, set: &str) -> Vec<(String, Vec<f32>)> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = joint_scenarios_page(db, model, set, after.as_deref(), 1000)
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.scenario_id.clone());
        for s in &page {
            let v = s
                .vector
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            out.push((s.scenario_id.clone(), v));
        }
    }
    out
}

/// The exact top-k ids by cosine in f64, computed here, independently of the engine.
fn brute_force(rows: &[(String, Vec<f32>)], q: &[f32], k: usize) -> Vec<String> {
    let norm = |v: &[f32]| v.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>().sqrt();
    let qn = norm(q);
    let mut scored: Vec<(f64, &str)> = rows
        .iter()
        .map(|(id, v)| {
            let dot: f64 = v.iter().zip(q).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum();
            (dot / (norm(v) * qn), id.as_str())
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
    scored.into_iter().take(k).map(|(_, id)| id.to_string()).collect()
}

fn ids(h: &[ScenarioHit]) -> Vec<String> {
    h.iter().map(|x| x.scenario_id.clone()).collect()
}

/// Query vectors from a market the stored scenarios were not drawn from.
fn queries(n: usize) -> Vec<Vec<f32>> {
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    let m = Market::simulate(&mut rng);
    (0..n).map(|_| m.scenario(&mut rng)).collect()
}

async fn open(t: &TestDb, dir: &Path, ef: Option<usize>) -> ScenarioSpace {
    space(&t.db, dir, MODEL, "S", ef).await
}

/// The set's scenarios as a query opens them, partitions from `dir`.
pub async fn space(db: &Db, dir: &Path, model: &str, set: &str, ef: Option<usize>) -> ScenarioSpace {
    ScenarioSpace::open(db, &opts(dir, ef, false), model, set)
        .await
        .unwrap()
}

/// The fault test's check after a write killed between its commit and its
/// partition write: the set's partition lacks its `gained` newest rows, and
/// queries answer `index+delta` with what a brute-force scan of the stored
/// set answers (each new row its own nearest; every top-10 at a breadth of
/// every row equal to brute force).
pub async fn answers_for_the_set_as_stored(
    db: &Db,
    dir: &Path,
    model: &str,
    set: &str,
    gained: usize,
    at: &str,
) {
    let rows = stored_in(db, model, set).await;
    let s = space(db, dir, model, set, Some(1_000_000)).await;
    assert_eq!(
        (s.answered_by(), s.partition_stale),
        (AnsweredBy::IndexDelta, true),
        "{at}"
    );
    assert_eq!(s.len(), rows.len(), "{at}");
    let part = &s.partition().expect("a partition").partition;
    assert_eq!(rows.len() - part.len(), gained, "{at}: rows the partition lacks");
    let in_partition: std::collections::HashSet<String> =
        (0..part.len()).map(|r| part.id(r).unwrap().to_string()).collect();
    for (id, v) in rows.iter().filter(|(id, _)| !in_partition.contains(id)) {
        assert_eq!(
            &s.search(v, 3).unwrap()[0].scenario_id,
            id,
            "{at}: {id} finds itself"
        );
    }
    for q in queries(10) {
        assert_eq!(
            ids(&s.search(&q, 10).unwrap()),
            brute_force(&rows, &q, 10),
            "{at}"
        );
    }
}

async fn a_partition_behind_the_database_answers_for_the_set_as_it_is_now(t: TestDb) {
    let dir = t.path("index");
    gen_scenarios(&t.db, &scenarios("S", 2500), &Quiet).await.unwrap();
    let params = BuildParams::default();
    let full = || async {
        build(
            &t.db,
            &LocalDir::new(&dir),
            MODEL,
            "S",
            &params,
            BuildMode::Full,
            &Quiet,
        )
        .await
        .unwrap()
    };
    full().await;
    let fresh = open(&t, &dir, None).await;
    assert_eq!(
        (fresh.answered_by(), fresh.partition_stale),
        (AnsweredBy::Index, false)
    );

    // The set gains 120 rows with no partition write (a `--no-index` backfill,
    // or one killed between its commit and its partition write).
    gen_scenarios(&t.db, &scenarios("S", 2620), &Quiet).await.unwrap();
    let rows = stored(&t, "S").await;
    assert_eq!(rows.len(), 2620);
    let space = open(&t, &dir, None).await;
    assert_eq!(space.answered_by(), AnsweredBy::IndexDelta);
    assert!(space.partition_stale);
    assert_eq!(space.len(), 2620);
    assert!(
        space.describe().contains("120 row(s) added since its build"),
        "{}",
        space.describe()
    );
    // Each new row is found by its own vector.
    for (id, v) in rows.iter().filter(|(id, _)| id.as_str() >= "SYN_002500") {
        let hits = space.search(v, 5).unwrap();
        assert_eq!(&hits[0].scenario_id, id, "a new row is its own nearest scenario");
        assert!((hits[0].cosine - 1.0).abs() < 1e-9);
    }
    // With a breadth of every row the partition part is exact: the merged
    // answer is the brute-force answer over the set as stored now.
    let qs = queries(30);
    let scan = open(&t, &dir, Some(100_000)).await;
    assert_eq!(scan.answered_by(), AnsweredBy::IndexDelta);
    let batch = scan.search_batch(&qs, 10).unwrap();
    let mut from_delta = 0;
    for (q, got) in qs.iter().zip(&batch) {
        let want = brute_force(&rows, q, 10);
        assert_eq!(ids(got), want);
        assert_eq!(ids(&scan.search(q, 10).unwrap()), want, "one query as the batch");
        from_delta += want.iter().filter(|id| id.as_str() >= "SYN_002500").count();
    }
    assert!(
        from_delta > 0,
        "some true neighbours are rows the partition lacks"
    );
    // At the calibrated breadth: recall against brute force.
    let found: usize = qs
        .iter()
        .map(|q| {
            let want = brute_force(&rows, q, 10);
            let got = ids(&space.search(q, 10).unwrap());
            got.iter().filter(|id| want.contains(id)).count()
        })
        .sum();
    let recall = found as f64 / (qs.len() * 10) as f64;
    assert!(
        recall >= 0.9,
        "recall@10 {recall} of index+delta against brute force"
    );

    // More rows than the delta may hold: the database answers.
    let limit = delta_limit(2500);
    gen_scenarios(&t.db, &scenarios("S", 2500 + limit + 1), &Quiet)
        .await
        .unwrap();
    let over = open(&t, &dir, None).await;
    assert_eq!(
        (over.answered_by(), over.partition_stale),
        (AnsweredBy::ExactScan, true)
    );
    assert_eq!(over.len(), 2500 + limit + 1);

    // An append rebuild brings it up to date.
    build(
        &t.db,
        &LocalDir::new(&dir),
        MODEL,
        "S",
        &params,
        BuildMode::AppendIfOnlyGained,
        &Quiet,
    )
    .await
    .unwrap();
    let again = open(&t, &dir, None).await;
    assert_eq!(
        (again.answered_by(), again.partition_stale),
        (AnsweredBy::Index, false)
    );

    // A changed row: the partition is not searched, the database answers,
    // with the changed vector.
    with_pool!(t.db, p => sqlx::query(
        "UPDATE joint_embeddings SET vector = (SELECT vector FROM joint_embeddings WHERE entity_id = 'SYN_000001' \
         AND scope_id = 'S') WHERE entity_id = 'SYN_000005' AND scope_id = 'S'")
        .execute(p).await.map(|_| ()))
    .unwrap();
    let changed = open(&t, &dir, None).await;
    assert_eq!(
        (changed.answered_by(), changed.partition_stale),
        (AnsweredBy::ExactScan, true)
    );
    let v1 = &rows.iter().find(|(id, _)| id == "SYN_000001").unwrap().1;
    let top2 = ids(&changed.search(v1, 2).unwrap());
    assert_eq!(
        top2,
        ["SYN_000001", "SYN_000005"],
        "both rows now hold one vector"
    );

    // A removed row: likewise, and the row is gone from the answers.
    full().await;
    with_pool!(t.db, p => sqlx::query("DELETE FROM joint_embeddings WHERE entity_id = 'SYN_000001' AND scope_id = 'S'")
        .execute(p).await.map(|_| ()))
    .unwrap();
    let removed = open(&t, &dir, None).await;
    assert_eq!(
        (removed.answered_by(), removed.partition_stale),
        (AnsweredBy::ExactScan, true)
    );
    assert_eq!(ids(&removed.search(v1, 1).unwrap()), ["SYN_000005"]);

    // --exact never reads the file, fresh or not, and is not called stale.
    full().await;
    let exact = ScenarioSpace::open(&t.db, &opts(&dir, None, true), MODEL, "S")
        .await
        .unwrap();
    assert_eq!(
        (exact.answered_by(), exact.partition_stale),
        (AnsweredBy::ExactScan, false)
    );
}

/// Through the binary: the trailing `answered_by` and `partition_stale`
/// columns in CSV and JSON, after a `--no-index` write and after the rebuild.
async fn the_cli_says_how_each_answer_was_found(t: TestDb) {
    let data = t.path("data");
    let url = t.url.clone();
    let run = |args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--database-url", &url]);
        stabspace_ok(&all, &data)
    };
    // States to query with: the small synthetic market's, under the v1 joint model.
    let (_, market) = crate::support::small_market(t.dir.path());
    crate::support::import_all(&t.db, &market).await;
    let last = market.last_date.to_string();
    run(&[
        "backfill-numeric-embeddings",
        "--market-id",
        "US_EQ",
        "--as-of",
        &last,
    ]);
    run(&[
        "backfill-joint-stab-fragility-states",
        "--market-id",
        "US_EQ",
        "--as-of",
        &last,
    ]);
    run(&["gen-scenarios", "--scenario-set-id", "G", "--count", "2100"]);
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
    let csv_of = |extra: &[&str]| {
        let mut args = query.to_vec();
        args.extend_from_slice(extra);
        run(&args)
    };
    let header = "rank,cosine,euclidean,scenario_set_id,scenario_id,scenario_as_of,instrument_id,as_of_date,\
                  answered_by,partition_stale";
    let fresh = csv_of(&[]);
    assert!(fresh.starts_with(header), "{fresh}");
    assert!(
        fresh
            .lines()
            .skip(1)
            .all(|l| crate::support::before_known_from(l).ends_with(",index,false")),
        "{fresh}"
    );

    run(&[
        "gen-scenarios",
        "--scenario-set-id",
        "G",
        "--count",
        "2160",
        "--no-index",
    ]);
    let stale = csv_of(&[]);
    assert!(
        stale
            .lines()
            .skip(1)
            .all(|l| crate::support::before_known_from(l).ends_with(",index+delta,true")),
        "{stale}"
    );
    let json: serde_json::Value = serde_json::from_str(&csv_of(&["--format", "json"])).unwrap();
    assert_eq!(json[0]["answered_by"], "index+delta");
    assert_eq!(json[0]["partition_stale"], true);
    // The same hits as the exact scan of the database.
    let exact = csv_of(&["--exact"]);
    let hit_ids = |s: &str| {
        s.lines()
            .skip(1)
            .map(|l| l.split(',').nth(4).unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert!(
        exact
            .lines()
            .skip(1)
            .all(|l| crate::support::before_known_from(l).ends_with(",exact-scan,false")),
        "{exact}"
    );
    assert_eq!(hit_ids(&stale), hit_ids(&exact));

    // The next command that builds repairs it.
    run(&["index", "rebuild"]);
    let rebuilt = csv_of(&[]);
    assert!(
        rebuilt
            .lines()
            .skip(1)
            .all(|l| crate::support::before_known_from(l).ends_with(",index,false")),
        "{rebuilt}"
    );
}
