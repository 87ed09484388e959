//! No silent wrong answers: partitions of another database, holdings without
//! states, vectors that cannot be ranked, and vectors a re-run no longer
//! produces (issue "Trust", items 1 to 4).

use std::path::Path;

use chrono::NaiveDate;
use stabspace::backfill::{backfill_numeric_embeddings, NumericBackfill};
use stabspace::diagnostics::{backfill_portfolio_metrics, find_similar, portfolio_exposure};
use stabspace::gen_scenarios::{gen_scenarios, GenScenarios};
use stabspace::joint::{
    backfill_joint_profiles, backfill_joint_states, ProfileBackfill, StateBackfill, Weights, STAB_JOINT_TYPE,
};
use stabspace::nearest::{ScenarioSpace, SearchOpts};
use stabspace::partitions::{build, status_of, BuildMode, Freshness, LocalDir};
use stabspace::progress::Quiet;
use stabspace::storage::{Backend, Db};
use stabspace::{vector, with_pool};
use stabspace_index::BuildParams;

use crate::both_backends;
use crate::joint::{metrics, pipeline, put_target, risk_metrics_of, JOINT, STAB};
use crate::support::{sqlite, TestDb, DB_SCAN};

both_backends!(
    a_partition_from_another_database_is_never_used,
    holdings_without_states_are_reported_and_low_coverage_is_skipped,
    vectors_without_direction_are_per_item_skips,
    a_rerun_removes_what_it_now_skips,
);

const SET: &str = "TRUST_SET";

fn gen(seed: u64) -> GenScenarios {
    GenScenarios {
        scenario_set_id: SET.into(),
        count: 300,
        model_id: JOINT.into(),
        seed,
        scenario_date: NaiveDate::from_ymd_opt(2020, 3, 16).unwrap(),
        spread_years: 0,
    }
}

fn opts(dir: &Path, exact: bool) -> SearchOpts {
    SearchOpts {
        partitions: Some(std::sync::Arc::new(stabspace::nearest::PartitionCache::local(
            dir,
        ))),
        ef: None,
        recall: None,
        exact,
        no_quantized: false,
        filter: Default::default(),
    }
}

async fn build_here(db: &Db, dir: &Path) {
    build(
        db,
        &LocalDir::new(dir),
        JOINT,
        SET,
        &BuildParams::default(),
        BuildMode::Full,
        &Quiet,
    )
    .await
    .unwrap();
}

/// The best cosine of `q` over every scenario vector of the set, computed here.
async fn best_cosine(db: &Db, q: &[f32]) -> f64 {
    let rows: Vec<Vec<u8>> = with_pool!(db, p => sqlx::query_scalar(
        "SELECT vector FROM joint_embeddings WHERE joint_type = $1 AND model_id = $2 AND scope_id = $3 \
         AND entity_type = 'SCENARIO'")
        .bind(STAB_JOINT_TYPE).bind(JOINT).bind(SET).fetch_all(p).await)
    .unwrap();
    let qn = vector::l2_norm(q);
    rows.iter()
        .map(|b| {
            let v = vector::from_bytes(b, "row").unwrap();
            let dot: f64 = v.iter().zip(q).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum();
            dot / (vector::l2_norm(&v) * qn)
        })
        .fold(f64::MIN, f64::max)
}

async fn a_partition_from_another_database_is_never_used(t: TestDb) {
    let dir = t.path("index");
    gen_scenarios(&t.db, &gen(1), &Quiet).await.unwrap();
    // Another database with the same set id but other vectors, sharing the
    // index directory (a data dir built from SQLite, queried on PostgreSQL).
    let other = sqlite(true).await;
    gen_scenarios(&other.db, &gen(2), &Quiet).await.unwrap();
    build_here(&other.db, &dir).await;

    let q: Vec<f32> = (0..vector::DIM)
        .map(|i| ((i * 7919) % 101) as f32 - 50.0)
        .collect();
    let want = best_cosine(&t.db, &q).await;
    assert!(
        (want - best_cosine(&other.db, &q).await).abs() > 1e-6,
        "the databases differ"
    );
    for exact in [false, true] {
        let space = ScenarioSpace::open(&t.db, &opts(&dir, exact), JOINT, SET)
            .await
            .unwrap();
        assert_eq!(space.describe(), "exact scan from the database", "exact {exact}");
        let got = space.search(&q, 1).unwrap()[0].cosine;
        assert!(
            (got - want).abs() < 1e-6,
            "exact {exact}: {got} vs this database's {want}"
        );
    }
    let st = status_of(&t.db, &LocalDir::new(&dir), JOINT, SET).await.unwrap();
    assert_eq!(st.state, Freshness::Foreign, "{}", st.detail);
    assert!(st.detail.contains("another database"), "{}", st.detail);
    assert_eq!(
        status_of(&other.db, &LocalDir::new(&dir), JOINT, SET)
            .await
            .unwrap()
            .state,
        Freshness::Fresh
    );

    // Rebuilt here, the partition is this database's and the other's no more.
    build_here(&t.db, &dir).await;
    assert_eq!(
        status_of(&t.db, &LocalDir::new(&dir), JOINT, SET)
            .await
            .unwrap()
            .state,
        Freshness::Fresh
    );
    assert_eq!(
        status_of(&other.db, &LocalDir::new(&dir), JOINT, SET)
            .await
            .unwrap()
            .state,
        Freshness::Foreign
    );
    let space = ScenarioSpace::open(&t.db, &opts(&dir, false), JOINT, SET)
        .await
        .unwrap();
    assert!(
        space.describe().starts_with("index partition"),
        "{}",
        space.describe()
    );
    let got = space.search(&q, 1).unwrap()[0].cosine;
    assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    // --exact still reads the database, not the file.
    let space = ScenarioSpace::open(&t.db, &opts(&dir, true), JOINT, SET)
        .await
        .unwrap();
    assert_eq!(space.describe(), "exact scan from the database");
}

/// The stored STAB state of `id` on `d`.
async fn state_of(db: &Db, id: &str, d: NaiveDate) -> Vec<f32> {
    let b: Vec<u8> = with_pool!(db, p => sqlx::query_scalar(
        "SELECT vector FROM joint_embeddings WHERE joint_type = $1 AND model_id = $2 AND entity_type = 'INSTRUMENT' \
         AND entity_id = $3 AND as_of_date = $4")
        .bind(STAB_JOINT_TYPE).bind(JOINT).bind(id).bind(d).fetch_one(p).await)
    .unwrap();
    vector::from_bytes(&b, id).unwrap()
}

async fn set_state(db: &Db, id: &str, d: NaiveDate, v: &[f32]) {
    let n = with_pool!(db, p => sqlx::query(
        "UPDATE joint_embeddings SET vector = $1 WHERE joint_type = $2 AND model_id = $3 \
         AND entity_type = 'INSTRUMENT' AND entity_id = $4 AND as_of_date = $5")
        .bind(vector::to_bytes(v)).bind(STAB_JOINT_TYPE).bind(JOINT).bind(id).bind(d)
        .execute(p).await.map(|r| r.rows_affected()))
    .unwrap();
    assert_eq!(n, 1, "{id} {d}");
}

async fn put_report(db: &Db, pid: &str, d: NaiveDate) {
    let sql = match db.backend() {
        Backend::Postgres => {
            "INSERT INTO portfolio_risk_reports VALUES ($1, $2, CAST('{\"var_95\": 0.02}' AS JSONB))"
        }
        Backend::Sqlite => "INSERT INTO portfolio_risk_reports VALUES ($1, $2, '{\"var_95\": 0.02}')",
    };
    with_pool!(db, p => sqlx::query(sql).bind(pid).bind(d).execute(p).await.map(|_| ())).unwrap();
}

async fn holdings_without_states_are_reported_and_low_coverage_is_skipped(t: TestDb) {
    let m = pipeline(&t).await;
    let last = m.g.last_date;
    let set = stabspace::synth::HISTORICAL_SET;
    put_target(
        &t.db,
        "P_HALF",
        last,
        r#"{"weights": {"SYN0001.US": 0.5, "NVDA.US": 0.5}}"#,
    )
    .await;
    put_report(&t.db, "P_HALF", last).await;

    // Any coverage accepted: the vector is SYN0001's state, and says so.
    let e = portfolio_exposure(&t.db, &DB_SCAN, "P_HALF", last, set, JOINT, 3, 0.0)
        .await
        .unwrap();
    assert_eq!(e.vector.used, 1);
    assert_eq!(e.vector.missing, vec!["NVDA.US".to_string()]);
    assert!((e.vector.weight_covered - 0.5).abs() < 1e-12);
    assert_eq!(e.vector.vector, state_of(&t.db, "SYN0001.US", last).await);
    assert!(e.vector.coverage_note().unwrap().contains("NVDA.US"));

    // The default minimum refuses the day, naming the missing holding.
    let err = portfolio_exposure(
        &t.db,
        &DB_SCAN,
        "P_HALF",
        last,
        set,
        JOINT,
        3,
        stabspace::portfolio::DEFAULT_MIN_COVERAGE,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("0.5000") && err.contains("NVDA.US") && err.contains("--min-coverage"),
        "{err}"
    );

    // The metrics backfill skips it with that reason, and scores it at 0.5.
    let mut p = metrics(Some("P_HALF"), last, last);
    p.scenario_set_id = set.into();
    let s = backfill_portfolio_metrics(&t.db, &p, &Quiet)
        .await
        .unwrap_err()
        .to_string();
    assert!(s.contains("min-coverage") && s.contains("NVDA.US"), "{s}");
    assert!(risk_metrics_of(&t.db).await[&("P_HALF".to_string(), last)]
        .get("stab_weight_covered")
        .is_none());
    p.min_coverage = 0.5;
    let s = backfill_portfolio_metrics(&t.db, &p, &Quiet).await.unwrap();
    assert_eq!((s.computed, s.partial), (1, 1), "{s}");
    let r = &risk_metrics_of(&t.db).await[&("P_HALF".to_string(), last)];
    assert_eq!(r["stab_weight_covered"].as_f64(), Some(0.5), "{r}");
    assert_eq!(r["var_95"].as_f64(), Some(0.02), "other keys kept: {r}");
}

async fn vectors_without_direction_are_per_item_skips(t: TestDb) {
    let m = pipeline(&t).await;
    let last = m.g.last_date;
    let set = stabspace::synth::HISTORICAL_SET;
    let pid = m.g.portfolios[0].clone();
    // A constant-price holding (cash, a suspended stock) has an all-zero state;
    // another tool wrote a NaN into a second one.
    set_state(&t.db, "SYN0001.US", last, &[0.0; vector::DIM]).await;
    let mut nan = state_of(&t.db, "SYN0002.US", last).await;
    nan[5] = f32::NAN;
    set_state(&t.db, "SYN0002.US", last, &nan).await;

    for (id, why) in [("SYN0001.US", "all zeros"), ("SYN0002.US", "non-finite")] {
        let e = find_similar(&t.db, &DB_SCAN, id, last, JOINT, set, 3)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(id) && e.contains(&last.to_string()) && e.contains(why),
            "{e}"
        );
    }

    // A portfolio of only the zero-state holding has no direction: one day
    // skipped with its reason, every other day scored.
    put_target(&t.db, "P_CASH", last, r#"{"weights": {"SYN0001.US": 1.0}}"#).await;
    put_report(&t.db, "P_CASH", last).await;
    let e = portfolio_exposure(&t.db, &DB_SCAN, "P_CASH", last, set, JOINT, 3, 0.9)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("P_CASH") && e.contains("all zeros"), "{e}");
    let mut p = metrics(None, m.g.first_date, last);
    p.scenario_set_id = set.into();
    let s = backfill_portfolio_metrics(&t.db, &p, &Quiet).await.unwrap();
    let (why, days) = s
        .skipped
        .iter()
        .find(|(why, _)| why.contains("all zeros"))
        .unwrap_or_else(|| panic!("{s}"));
    assert_eq!(days, &vec![("P_CASH".to_string(), last)], "{why}");
    let reports = risk_metrics_of(&t.db).await;
    let skipped: usize = s.skipped.values().map(Vec::len).sum();
    assert_eq!(s.computed + skipped, s.reports, "{s}");
    // At most P_CASH and the generated portfolios' last day (if SYN0002 weighs
    // more than a tenth of one) are skipped.
    assert!(s.computed + 1 + m.g.portfolios.len() >= s.reports, "{s}");
    assert!(reports[&(pid.clone(), m.g.last_date.pred_opt().unwrap())]
        .get("stab_closest_scenario_id")
        .is_some());
    // The NaN state counts as a missing holding of the generated portfolios
    // that hold SYN0002 (named on stderr), never as a NaN in a metric.
    for (k, r) in &reports {
        if let Some(c) = r.get("stab_closest_scenario_cosine") {
            assert!(c.as_f64().is_some_and(f64::is_finite), "{k:?}: {r}");
        }
    }

    // A scenario vector with a NaN is left out; the rest still answer.
    with_pool!(&t.db, p => sqlx::query(
        "UPDATE joint_embeddings SET vector = $1 WHERE joint_type = $2 AND model_id = $3 AND scope_id = $4 \
         AND entity_type = 'SCENARIO' AND entity_id = (SELECT min(entity_id) FROM joint_embeddings \
         WHERE model_id = $3 AND scope_id = $4 AND entity_type = 'SCENARIO')")
        .bind(vector::to_bytes(&nan)).bind(STAB_JOINT_TYPE).bind(JOINT).bind(set).execute(p).await.map(|_| ()))
    .unwrap();
    let space = ScenarioSpace::load(&t.db, JOINT, set, None).await.unwrap();
    let all = with_pool!(&t.db, p => sqlx::query_scalar::<_, i64>(
        "SELECT COUNT(*) FROM joint_embeddings WHERE model_id = $1 AND scope_id = $2 AND entity_type = 'SCENARIO'")
        .bind(JOINT).bind(set).fetch_one(p).await)
    .unwrap();
    assert_eq!(space.len() as i64, all - 1);
    let q = state_of(&t.db, "SYN0003.US", last).await;
    assert!(space.search(&q, 3).unwrap().iter().all(|h| h.cosine.is_finite()));
}

async fn stored_ids(db: &Db, table: &str, model: &str, d: NaiveDate) -> Vec<String> {
    let sql = format!(
        "SELECT entity_id FROM {table} WHERE model_id = $1 AND entity_type = 'INSTRUMENT' AND as_of_date = $2 \
         ORDER BY entity_id"
    );
    with_pool!(db, p => sqlx::query_scalar(&sql).bind(model).bind(d).fetch_all(p).await).unwrap()
}

async fn a_rerun_removes_what_it_now_skips(t: TestDb) {
    let m = pipeline(&t).await;
    let d = *m.state_dates.last().unwrap();
    let numeric = |limit| NumericBackfill {
        as_of: d,
        window_days: 20,
        horizon_days: 20,
        market_id: "US_EQ".into(),
        limit,
        model_id: STAB.into(),
    };
    let before = stored_ids(&t.db, "numeric_window_embeddings", STAB, d).await;
    assert!(before.contains(&"SYN0003.US".to_string()));
    // SYN0003's prices change under the stored vector: a close of 0 in its window.
    with_pool!(&t.db, p => sqlx::query(
        "UPDATE prices_daily SET close = 0 WHERE instrument_id = 'SYN0003.US' AND trade_date = $1")
        .bind(d).execute(p).await.map(|_| ()))
    .unwrap();
    let s = backfill_numeric_embeddings(&t.db, &numeric(None), &Quiet)
        .await
        .unwrap();
    assert_eq!(s.removed, vec!["SYN0003.US".to_string()], "{s}");
    assert!(s.to_string().contains("removed 1 vector"), "{s}");
    let after = stored_ids(&t.db, "numeric_window_embeddings", STAB, d).await;
    let want: Vec<String> = before.iter().filter(|i| *i != "SYN0003.US").cloned().collect();
    assert_eq!(after, want);

    // The joint states follow: SYN0003's state on d goes too.
    let states = StateBackfill {
        as_of: d,
        market_id: "US_EQ".into(),
        region: None,
        stab_model_id: STAB.into(),
        // As the pipeline registered the joint model: with the profile branch.
        profile_model_id: Some("joint-profile-core-v1".into()),
        joint_model_id: JOINT.into(),
        weights: Weights::default(),
        limit: None,
        replace: false,
    };
    assert!(stored_ids(&t.db, "joint_embeddings", JOINT, d)
        .await
        .contains(&"SYN0003.US".to_string()));
    let s = backfill_joint_states(&t.db, &states, &Quiet).await.unwrap();
    assert_eq!(s.summary.removed, vec!["SYN0003.US".to_string()]);
    assert_eq!(stored_ids(&t.db, "joint_embeddings", JOINT, d).await, want);

    // A re-run is a no-op; --limit settles only the instruments it saw.
    let s = backfill_numeric_embeddings(&t.db, &numeric(None), &Quiet)
        .await
        .unwrap();
    assert!(s.removed.is_empty());
    let s = backfill_numeric_embeddings(&t.db, &numeric(Some(2)), &Quiet)
        .await
        .unwrap();
    assert!(s.removed.is_empty());
    assert_eq!(
        stored_ids(&t.db, "numeric_window_embeddings", STAB, d).await,
        want
    );

    // Profiles: --limit 1 reads one issuer and leaves the others' profiles alone.
    let profiles = || async {
        with_pool!(&t.db, p => sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM joint_embeddings WHERE joint_type = 'PROFILE_CORE_V0' AND as_of_date = $1")
            .bind(d).fetch_one(p).await)
        .unwrap()
    };
    let before = profiles().await;
    assert!(before > 1, "{before}");
    let s = backfill_joint_profiles(
        &t.db,
        &ProfileBackfill {
            as_of: d,
            model_id: "joint-profile-core-v1".into(),
            limit: Some(1),
        },
    )
    .await
    .unwrap();
    assert!(s.removed.is_empty(), "{s}");
    assert_eq!(profiles().await, before);
}
