//! What a stale partition costs a query (issue "Trust, second round"): a
//! partition built from N generated scenarios, then a tenth more rows written
//! without a rebuild (the most a delta may hold, [`delta_limit`]), on SQLite.
//!
//! - `open/*`: opening the set for a query: fresh (one counter row), with the
//!   delta read from the database (keys of the set, then the missing rows'
//!   vectors; what the first query after a write pays, once per change in the
//!   server), and with the delta already kept on the open partition (every
//!   later query in the server).
//! - `search/*`: one query at the default recall: partition alone,
//!   partition + delta scan, and the exact scan of the database that answers
//!   past the delta limit.
//!
//! `cargo bench --bench stale` (N = 20,000); `STABSPACE_BENCH_SCENARIOS=100000`
//! for the 100k figure. Report the ratios of one run.

use std::sync::Arc;

use chrono::NaiveDate;
use criterion::{criterion_group, criterion_main, Criterion};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use stabspace::gen_scenarios::{gen_scenarios, GenScenarios, Market};
use stabspace::nearest::{delta_limit, AnsweredBy, PartitionCache, ScenarioSpace, SearchOpts};
use stabspace::partitions::{build, BuildMode, LocalDir};
use stabspace::progress::Quiet;
use stabspace::storage::Db;
use stabspace_index::BuildParams;

const MODEL: &str = "joint-stab-fragility-v1";
const SET: &str = "BENCH_STALE";

fn spec(count: usize) -> GenScenarios {
    GenScenarios {
        scenario_set_id: SET.into(),
        count,
        model_id: MODEL.into(),
        seed: 1,
        scenario_date: NaiveDate::from_ymd_opt(2020, 3, 16).unwrap(),
        spread_years: 0,
    }
}

/// Partitions opened once and shared by every query, as in the server.
fn opts(cache: &Arc<PartitionCache>, exact: bool) -> SearchOpts {
    SearchOpts {
        exact,
        ..SearchOpts::with_partitions(Arc::clone(cache))
    }
}

fn stale(c: &mut Criterion) {
    let n: usize = std::env::var("STABSPACE_BENCH_SCENARIOS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("index");
    let url = format!("sqlite://{}", tmp.path().join("bench.db").display());
    let db: Db = rt.block_on(async {
        let db = Db::connect(&url).await.unwrap();
        db.migrate().await.unwrap();
        gen_scenarios(&db, &spec(n), &Quiet).await.unwrap();
        build(
            &db,
            &LocalDir::new(&dir),
            MODEL,
            SET,
            &BuildParams::default(),
            BuildMode::Full,
            &Quiet,
        )
        .await
        .unwrap();
        db
    });
    let fresh_part = Arc::new(PartitionCache::local(&dir));
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let market = Market::simulate(&mut rng);
    let queries: Vec<Vec<f32>> = (0..200).map(|_| market.scenario(&mut rng)).collect();

    let mut g = c.benchmark_group(format!("stale/{n}"));
    g.sample_size(20);
    let fresh = rt
        .block_on(ScenarioSpace::open(&db, &opts(&fresh_part, false), MODEL, SET))
        .unwrap();
    assert_eq!(fresh.answered_by(), AnsweredBy::Index);
    g.bench_function("open/fresh", |b| {
        b.iter(|| {
            rt.block_on(ScenarioSpace::open(&db, &opts(&fresh_part, false), MODEL, SET))
                .unwrap()
        })
    });
    let mut i = 0;
    g.bench_function("search/index", |b| {
        b.iter(|| {
            i += 1;
            fresh.search(&queries[i % queries.len()], 10).unwrap()
        })
    });

    // A tenth more rows, no rebuild: the largest delta a query scans.
    let added = delta_limit(n);
    rt.block_on(gen_scenarios(&db, &spec(n + added), &Quiet)).unwrap();
    g.bench_function("open/delta-read", |b| {
        b.iter(|| {
            // A cache of its own: the file mapped anew, its delta read anew.
            let cache = Arc::new(PartitionCache::local(&dir));
            rt.block_on(ScenarioSpace::open(&db, &opts(&cache, false), MODEL, SET))
                .unwrap()
        })
    });
    let shared = Arc::new(PartitionCache::local(&dir));
    let with_delta = rt
        .block_on(ScenarioSpace::open(&db, &opts(&shared, false), MODEL, SET))
        .unwrap();
    assert_eq!(with_delta.answered_by(), AnsweredBy::IndexDelta);
    g.bench_function("open/delta-kept", |b| {
        b.iter(|| {
            rt.block_on(ScenarioSpace::open(&db, &opts(&shared, false), MODEL, SET))
                .unwrap()
        })
    });
    g.bench_function("search/index+delta", |b| {
        b.iter(|| {
            i += 1;
            with_delta.search(&queries[i % queries.len()], 10).unwrap()
        })
    });
    let exact = rt
        .block_on(ScenarioSpace::open(&db, &opts(&shared, true), MODEL, SET))
        .unwrap();
    assert_eq!(exact.answered_by(), AnsweredBy::ExactScan);
    g.bench_function("search/exact-scan", |b| {
        b.iter(|| {
            i += 1;
            exact.search(&queries[i % queries.len()], 10).unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, stale);
criterion_main!(benches);
