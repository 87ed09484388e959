//! The v2 signature pair (`num-stab-core-v2`, `num-scenario-core-v2`), the
//! feature-space check, and `eval-retrieval`, on both backends: vectors against
//! an independent computation from the generated CSV files, the mixed-space
//! error with nothing written, and retrieval of the planted crash windows.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use stabspace::backfill::{
    backfill_numeric_embeddings, backfill_numeric_scenario_embeddings, NumericBackfill, ScenarioBackfill,
};
use stabspace::diagnostics::{backfill_portfolio_metrics, find_similar, portfolio_exposure, MetricsBackfill};
use stabspace::eval::{eval_retrieval, EvalReport, EvalSpec};
use stabspace::gen_scenarios::{gen_scenarios, GenScenarios};
use stabspace::joint::{
    backfill_joint_profiles, backfill_joint_scenarios, backfill_joint_states, ProfileBackfill,
    ScenarioProjection, StateBackfill, Weights,
};
use stabspace::nearest::SearchOpts;
use stabspace::partitions::fingerprint;
use stabspace::progress::Quiet;
use stabspace::storage::Db;
use stabspace::synth::HISTORICAL_SET;
use stabspace::{vector, with_pool, Error};

use crate::both_backends;
use crate::support::{count, episode_market, import_all, read_csv, TestDb, DB_SCAN};

both_backends!(
    v2_vectors_match_the_signature_computed_from_the_csv_files,
    mixing_v1_states_with_v2_scenarios_is_an_error_naming_both_and_writes_nothing,
    eval_retrieval_finds_the_planted_crash_windows_and_reruns_change_nothing,
    reprojecting_a_set_with_changed_vectors_replaces_them_and_makes_its_partition_stale,
    states_of_two_spaces_are_not_averaged_even_against_unrecorded_scenarios,
);

const H: usize = 20;
const JOINT: &str = "joint-stab-fragility-v2";
const V2_SPACE: &str = "stab-v2-signature-h20";
/// A joint model of the tests' own that is made to hold two spaces: the
/// registry refuses that, so these tests forget the registry in between, as
/// a database written before the registry (or by another tool) would be.
const MIXED: &str = "joint-mixed-spaces-test";

/// Empty the joint model registry (see [`MIXED`]).
async fn forget_registry(db: &Db) {
    with_pool!(db, p => sqlx::query("DELETE FROM joint_models").execute(p).await.map(|_| ()))
        .expect("forget registry");
}

fn mixed(s: StateBackfill) -> StateBackfill {
    StateBackfill {
        joint_model_id: MIXED.into(),
        ..s
    }
}

fn numeric(as_of: NaiveDate, model: &str) -> NumericBackfill {
    NumericBackfill {
        as_of,
        window_days: H,
        horizon_days: H,
        market_id: "US_EQ".into(),
        limit: None,
        model_id: model.into(),
    }
}

fn states(as_of: NaiveDate, stab: &str, profile: Option<&str>) -> StateBackfill {
    StateBackfill {
        as_of,
        market_id: "US_EQ".into(),
        region: None,
        stab_model_id: stab.into(),
        profile_model_id: profile.map(String::from),
        joint_model_id: JOINT.into(),
        weights: Weights::default(),
        limit: None,
        replace: false,
    }
}

async fn scenarios(db: &Db, set: &str, model: &str) {
    scenarios_under(db, JOINT, set, model).await;
}

/// Encode `set` with `model` and project it under joint model `joint`.
async fn scenarios_under(db: &Db, joint: &str, set: &str, model: &str) {
    backfill_numeric_scenario_embeddings(
        db,
        &ScenarioBackfill {
            scenario_set_id: set.into(),
            model_id: model.into(),
            horizon_days: H,
            limit: None,
        },
        &Quiet,
    )
    .await
    .expect("numeric scenarios");
    backfill_joint_scenarios(
        db,
        &ScenarioProjection {
            scenario_set_id: set.into(),
            scenario_model_id: model.into(),
            joint_model_id: joint.into(),
            weights: Weights::default(),
            limit: None,
            replace: false,
        },
        &Quiet,
    )
    .await
    .expect("joint scenarios");
}

/// The v2 signature as the README states it, written out here rather than
/// taken from the encoder under test: the returns sorted ascending, then their
/// absolute values sorted ascending (an insertion sort, in plain loops).
fn signature_by_hand(r: &[f64]) -> Vec<f64> {
    fn sorted(mut v: Vec<f64>) -> Vec<f64> {
        for i in 1..v.len() {
            let mut j = i;
            while j > 0 && v[j - 1] > v[j] {
                v.swap(j - 1, j);
                j -= 1;
            }
        }
        v
    }
    let mut out = sorted(r.to_vec());
    out.extend(sorted(r.iter().map(|x| x.abs()).collect()));
    assert_eq!(out.len(), 2 * r.len());
    out
}

async fn stored(db: &Db, table: &str, model: &str, entity: &str) -> (Vec<f32>, Option<String>) {
    let sql = format!("SELECT vector, feature_space FROM {table} WHERE model_id = $1 AND entity_id = $2");
    let (bytes, space): (Vec<u8>, Option<String>) = with_pool!(db, p => sqlx::query_as(&sql)
        .bind(model)
        .bind(entity)
        .fetch_one(p)
        .await)
    .expect("stored vector");
    (vector::from_bytes(&bytes, entity).unwrap(), space)
}

async fn v2_vectors_match_the_signature_computed_from_the_csv_files(t: TestDb) {
    let g = episode_market(t.dir.path(), 3);
    import_all(&t.db, &g).await;
    let dir = t.dir.path().join("market");
    let as_of = g.last_date;

    // State: the signature of the instrument's last H log returns, from prices.csv.
    backfill_numeric_embeddings(&t.db, &numeric(as_of, "num-stab-core-v2"), &Quiet)
        .await
        .unwrap();
    let id = "SYN0003.US";
    let closes: Vec<f64> = read_csv(&dir.join("prices.csv"))
        .into_iter()
        .filter(|r| r["instrument_id"] == id)
        .map(|r| r["close"].parse().unwrap())
        .collect();
    let tail = &closes[closes.len() - H - 1..];
    let r: Vec<f64> = tail.windows(2).map(|w| (w[1] / w[0]).ln()).collect();
    let expected: Vec<f32> = signature_by_hand(&r).iter().map(|&x| x as f32).collect();
    let (v, space) = stored(&t.db, "numeric_window_embeddings", "num-stab-core-v2", id).await;
    assert_eq!(&v[..2 * H], &expected[..]);
    assert!(v[2 * H..].iter().all(|&x| x == 0.0));
    assert_eq!(space.as_deref(), Some(V2_SPACE));

    // Scenario: the mean over its instruments of the signatures of ln(1 + r), from scenario_paths.csv.
    scenarios(&t.db, HISTORICAL_SET, "num-scenario-core-v2").await;
    let sid = {
        let rows = read_csv(&dir.join("scenarios.csv"));
        rows.iter()
            .find(|r| r["scenario_set_id"] == HISTORICAL_SET)
            .unwrap()["scenario_id"]
            .clone()
    };
    let mut paths: BTreeMap<String, Vec<(usize, f64)>> = BTreeMap::new();
    for r in read_csv(&dir.join("scenario_paths.csv")) {
        if r["scenario_id"] == sid {
            paths
                .entry(r["instrument_id"].clone())
                .or_default()
                .push((r["day_index"].parse().unwrap(), r["return"].parse().unwrap()));
        }
    }
    let active = read_csv(&dir.join("instruments.csv"))
        .iter()
        .filter(|r| r["status"] == "active")
        .count();
    assert_eq!(paths.len(), active, "a historical window covers the whole market");
    let mut mean = vec![0f64; 2 * H];
    for path in paths.values_mut() {
        path.sort_by_key(|p| p.0);
        let logs: Vec<f64> = path.iter().map(|p| (1.0 + p.1).ln()).collect();
        for (m, s) in mean.iter_mut().zip(signature_by_hand(&logs)) {
            *m += s / active as f64;
        }
    }
    let (v, space) = stored(&t.db, "numeric_window_embeddings", "num-scenario-core-v2", &sid).await;
    for (i, (&got, want)) in v.iter().zip(&mean).enumerate() {
        assert!((f64::from(got) - want).abs() < 1e-7, "slot {i}: {got} vs {want}");
    }
    assert_eq!(space.as_deref(), Some(V2_SPACE));
    // The joint projection keeps the vector and records the space.
    let (z, space) = stored(&t.db, "joint_embeddings", JOINT, &sid).await;
    assert_eq!(z, v);
    assert_eq!(space.as_deref(), Some(V2_SPACE));
}

async fn mixing_v1_states_with_v2_scenarios_is_an_error_naming_both_and_writes_nothing(t: TestDb) {
    let g = episode_market(t.dir.path(), 3);
    import_all(&t.db, &g).await;
    let as_of = g.last_date;
    backfill_numeric_embeddings(&t.db, &numeric(as_of, "num-stab-core-v1"), &Quiet)
        .await
        .unwrap();
    backfill_joint_states(&t.db, &mixed(states(as_of, "num-stab-core-v1", None)), &Quiet)
        .await
        .unwrap();
    // The registry refuses v2 scenarios under a joint model of v1 states, and writes nothing.
    backfill_numeric_scenario_embeddings(
        &t.db,
        &ScenarioBackfill {
            scenario_set_id: HISTORICAL_SET.into(),
            model_id: "num-scenario-core-v2".into(),
            horizon_days: H,
            limit: None,
        },
        &Quiet,
    )
    .await
    .unwrap();
    let rows = count(&t.db, "joint_embeddings").await;
    let e = backfill_joint_scenarios(
        &t.db,
        &ScenarioProjection {
            scenario_set_id: HISTORICAL_SET.into(),
            scenario_model_id: "num-scenario-core-v2".into(),
            joint_model_id: MIXED.into(),
            weights: Weights::default(),
            limit: None,
            replace: false,
        },
        &Quiet,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        e.contains(&format!("feature space {V2_SPACE} (registered: stab-v1)")) && e.contains("--replace"),
        "{e}"
    );
    assert_eq!(count(&t.db, "joint_embeddings").await, rows);
    // Written anyway (no registry), the queries still refuse to compare the two spaces.
    forget_registry(&t.db).await;
    scenarios_under(&t.db, MIXED, HISTORICAL_SET, "num-scenario-core-v2").await;
    let named = |e: Error| {
        let text = e.to_string();
        assert!(matches!(e, Error::MixedSpaces { .. }), "{text}");
        assert!(text.contains("stab-v1") && text.contains(V2_SPACE), "{text}");
        text
    };

    let e = find_similar(&t.db, &DB_SCAN, "SYN0001.US", as_of, MIXED, HISTORICAL_SET, 3)
        .await
        .unwrap_err();
    assert!(named(e).contains("SYN0001.US"));
    let portfolio = &g.portfolios[0];
    let e = portfolio_exposure(
        &t.db,
        &DB_SCAN,
        portfolio,
        as_of,
        HISTORICAL_SET,
        MIXED,
        3,
        stabspace::portfolio::DEFAULT_MIN_COVERAGE,
    )
    .await
    .unwrap_err();
    named(e);

    // The metrics backfill fails the same way and leaves every risk report as it was.
    let reports =
        "SELECT CAST(risk_metrics AS TEXT) FROM portfolio_risk_reports ORDER BY portfolio_id, as_of_date";
    let before: Vec<String> = with_pool!(&t.db, p => sqlx::query_scalar(reports).fetch_all(p).await).unwrap();
    let e = backfill_portfolio_metrics(
        &t.db,
        &MetricsBackfill {
            portfolio_id: None,
            scenario_set_id: HISTORICAL_SET.into(),
            model_id: MIXED.into(),
            start: as_of,
            end: as_of,
            search: DB_SCAN,
            min_coverage: stabspace::portfolio::DEFAULT_MIN_COVERAGE,
            recall_sample: 0.0,
        },
        &Quiet,
    )
    .await
    .unwrap_err();
    named(e);
    let after: Vec<String> = with_pool!(&t.db, p => sqlx::query_scalar(reports).fetch_all(p).await).unwrap();
    assert_eq!(before, after);

    // A v2 stab branch with a (v1-space) profile branch cannot be averaged: nothing is written.
    backfill_joint_profiles(
        &t.db,
        &ProfileBackfill {
            as_of,
            model_id: "joint-profile-core-v1".into(),
            limit: None,
        },
    )
    .await
    .unwrap();
    backfill_numeric_embeddings(&t.db, &numeric(as_of, "num-stab-core-v2"), &Quiet)
        .await
        .unwrap();
    let joint_rows = count(&t.db, "joint_embeddings").await;
    let e = backfill_joint_states(
        &t.db,
        &mixed(states(as_of, "num-stab-core-v2", Some("joint-profile-core-v1"))),
        &Quiet,
    )
    .await
    .unwrap_err();
    let text = named(e);
    assert!(text.contains("joint-profile-core-v1"), "{text}");
    assert_eq!(count(&t.db, "joint_embeddings").await, joint_rows);

    // With v2 states too, the query works.
    backfill_joint_states(&t.db, &mixed(states(as_of, "num-stab-core-v2", None)), &Quiet)
        .await
        .unwrap();
    let found = find_similar(&t.db, &DB_SCAN, "SYN0001.US", as_of, MIXED, HISTORICAL_SET, 3)
        .await
        .unwrap();
    assert_eq!(found.hits.len(), 3);
}

fn spec(dir: &std::path::Path) -> EvalSpec {
    EvalSpec {
        scenario_set_id: HISTORICAL_SET.into(),
        joint_model_id: JOINT.into(),
        market_id: "US_EQ".into(),
        stab_model_id: None,
        window_days: 63,
        offsets: vec![0, 5, 10],
        search: SearchOpts::with_partitions(std::sync::Arc::new(stabspace::nearest::PartitionCache::local(
            dir.join("index"),
        ))),
    }
}

async fn eval_retrieval_finds_the_planted_crash_windows_and_reruns_change_nothing(t: TestDb) {
    let crashes = 16;
    let g = episode_market(t.dir.path(), crashes);
    import_all(&t.db, &g).await;
    scenarios(&t.db, HISTORICAL_SET, "num-scenario-core-v2").await;
    let r: EvalReport = eval_retrieval(&t.db, &spec(t.dir.path()), &Quiet).await.unwrap();
    eprintln!("{}", serde_json::to_string(&r.scores).unwrap());
    assert_eq!(
        r.stab_model_id, "num-stab-core-v2",
        "chosen from the scenarios' space"
    );
    assert_eq!((r.windows, r.scenarios), (crashes, crashes));
    assert!(r.skipped.is_empty(), "{:?}", r.skipped);
    let chance = 3.0 / crashes as f64;
    let at = |o: usize| r.scores.iter().find(|s| s.offset == o).unwrap();
    assert_eq!(at(0).windows, crashes);
    assert!((at(0).chance_at_3 - chance).abs() < 1e-12);
    assert!(at(0).hit_at_3 >= 0.95, "offset 0: {:?}", at(0));
    assert!(at(5).hit_at_3 >= 2.0 * chance, "offset 5: {:?}", at(5));
    // Every rank is the true window's position in an exact cosine ranking:
    // check one against the stored vectors directly.
    let w = r.ranks.iter().find(|x| x.offset == 5).unwrap();
    let ids: Vec<String> = with_pool!(&t.db, p => sqlx::query_scalar(
        "SELECT entity_id FROM joint_embeddings WHERE model_id = $1 AND entity_type = 'INSTRUMENT' \
         AND as_of_date = $2 ORDER BY entity_id")
        .bind(JOINT)
        .bind(w.as_of)
        .fetch_all(p)
        .await)
    .unwrap();
    let mut mean = vec![0f64; 384];
    for id in &ids {
        let (z, space) = stored_on(&t.db, id, w.as_of).await;
        assert_eq!(space.as_deref(), Some(V2_SPACE));
        for (m, x) in mean.iter_mut().zip(z) {
            *m += f64::from(x) / ids.len() as f64;
        }
    }
    let sql =
        "SELECT entity_id, vector FROM joint_embeddings WHERE model_id = $1 AND entity_type = 'SCENARIO' \
               AND scope_id = $2";
    let scen: Vec<(String, Vec<u8>)> =
        with_pool!(&t.db, p => sqlx::query_as(sql).bind(JOINT).bind(HISTORICAL_SET).fetch_all(p).await)
            .unwrap();
    let cos = |b: &[u8]| {
        let v = vector::from_bytes(b, "scenario").unwrap();
        let dot: f64 = v.iter().zip(&mean).map(|(&a, b)| f64::from(a) * b).sum();
        let n1: f64 = v.iter().map(|&a| f64::from(a).powi(2)).sum::<f64>().sqrt();
        let n2: f64 = mean.iter().map(|b| b * b).sum::<f64>().sqrt();
        dot / n1 / n2
    };
    let truth = cos(&scen.iter().find(|s| s.0 == w.scenario_id).unwrap().1);
    let better = scen.iter().filter(|s| cos(&s.1) > truth + 1e-9).count();
    assert_eq!(w.rank, Some(better + 1), "{w:?}");
    assert!((w.cosine.unwrap() - truth).abs() < 1e-5);

    // Re-running backfills nothing new and ranks the same.
    let rows = count(&t.db, "joint_embeddings").await;
    let again = eval_retrieval(&t.db, &spec(t.dir.path()), &Quiet).await.unwrap();
    assert_eq!(count(&t.db, "joint_embeddings").await, rows);
    let ranks = |r: &EvalReport| {
        r.ranks
            .iter()
            .map(|x| (x.scenario_id.clone(), x.offset, x.rank))
            .collect::<Vec<_>>()
    };
    assert_eq!(ranks(&again), ranks(&r));

    // Scenarios encoded over their first 10 of 20 days: the query date follows
    // the encoded horizon (the 10th day of each window), so offset 0 is exact again.
    backfill_numeric_scenario_embeddings(
        &t.db,
        &ScenarioBackfill {
            scenario_set_id: HISTORICAL_SET.into(),
            model_id: "num-scenario-core-v2".into(),
            horizon_days: 10,
            limit: None,
        },
        &Quiet,
    )
    .await
    .unwrap();
    backfill_joint_scenarios(
        &t.db,
        &ScenarioProjection {
            scenario_set_id: HISTORICAL_SET.into(),
            scenario_model_id: "num-scenario-core-v2".into(),
            joint_model_id: JOINT.into(),
            weights: Weights::default(),
            limit: None,
            // H = 10 is another feature space: the model is redefined, its H = 20 states deleted.
            replace: true,
        },
        &Quiet,
    )
    .await
    .unwrap();
    let h10 = eval_retrieval(&t.db, &spec(t.dir.path()), &Quiet).await.unwrap();
    assert_eq!(h10.feature_space.as_deref(), Some("stab-v2-signature-h10"));
    let first = r.ranks.iter().find(|x| x.offset == 0).unwrap();
    let first10 = h10
        .ranks
        .iter()
        .find(|x| x.offset == 0 && x.scenario_id == first.scenario_id)
        .unwrap();
    let calendar = crate::support::read_csv(&t.dir.path().join("market/prices.csv"))
        .into_iter()
        .filter(|row| row["instrument_id"] == "SYN0001.US")
        .map(|row| row["trade_date"].parse::<NaiveDate>().unwrap())
        .collect::<Vec<_>>();
    let end20 = calendar.iter().position(|d| *d == first.as_of).unwrap();
    assert_eq!(
        calendar[end20 - 10],
        first10.as_of,
        "the 10th day of the window, not the 20th"
    );
    let at0 = h10.scores.iter().find(|s| s.offset == 0).unwrap();
    assert!(at0.hit_at_3 >= 0.95, "H = 10, offset 0: {at0:?}");

    // Asking for v1 states against v2 scenarios is the mixed-space error.
    let e = eval_retrieval(
        &t.db,
        &EvalSpec {
            stab_model_id: Some("num-stab-core-v1".into()),
            ..spec(t.dir.path())
        },
        &Quiet,
    )
    .await
    .unwrap_err();
    assert!(matches!(e, Error::MixedSpaces { .. }), "{e}");
}

async fn stored_on(db: &Db, id: &str, d: NaiveDate) -> (Vec<f32>, Option<String>) {
    let (bytes, space): (Vec<u8>, Option<String>) = with_pool!(db, p => sqlx::query_as(
        "SELECT vector, feature_space FROM joint_embeddings WHERE model_id = $1 AND entity_type = 'INSTRUMENT' \
         AND entity_id = $2 AND as_of_date = $3")
        .bind(JOINT)
        .bind(id)
        .bind(d)
        .fetch_one(p)
        .await)
    .unwrap();
    (vector::from_bytes(&bytes, id).unwrap(), space)
}

/// Regression: on SQLite, the change-counter trigger of an upsert that
/// updated a scenario row failed with a UNIQUE violation (migration 0004).
async fn reprojecting_a_set_with_changed_vectors_replaces_them_and_makes_its_partition_stale(t: TestDb) {
    let g = episode_market(t.dir.path(), 3);
    import_all(&t.db, &g).await;
    scenarios_under(&t.db, MIXED, HISTORICAL_SET, "num-scenario-core-v1").await;
    forget_registry(&t.db).await;
    let before = fingerprint(&t.db, MIXED, HISTORICAL_SET).await.unwrap();
    let rows = count(&t.db, "joint_embeddings").await;
    scenarios_under(&t.db, MIXED, HISTORICAL_SET, "num-scenario-core-v2").await;
    let after = fingerprint(&t.db, MIXED, HISTORICAL_SET).await.unwrap();
    assert_eq!(
        count(&t.db, "joint_embeddings").await,
        rows,
        "replaced, not added"
    );
    assert_eq!(after.rows, before.rows);
    assert!(after.version > before.version, "{before} → {after}");
    let sid = format!("HIST_01_{}", g.crash_windows[0].0);
    let (_, space) = stored(&t.db, "joint_embeddings", MIXED, &sid).await;
    assert_eq!(space.as_deref(), Some(V2_SPACE));
    // Re-running with the same vectors changes nothing, so the counter stays.
    scenarios_under(&t.db, MIXED, HISTORICAL_SET, "num-scenario-core-v2").await;
    assert_eq!(fingerprint(&t.db, MIXED, HISTORICAL_SET).await.unwrap(), after);
}

/// A portfolio whose holdings have states of two spaces (v1 for some, v2 for
/// others) cannot be averaged, even against synthetic scenarios that record
/// no space: the error names both states.
async fn states_of_two_spaces_are_not_averaged_even_against_unrecorded_scenarios(t: TestDb) {
    let g = episode_market(t.dir.path(), 3);
    import_all(&t.db, &g).await;
    let as_of = g.last_date;
    for model in ["num-stab-core-v1", "num-stab-core-v2"] {
        backfill_numeric_embeddings(&t.db, &numeric(as_of, model), &Quiet)
            .await
            .unwrap();
    }
    backfill_joint_states(&t.db, &mixed(states(as_of, "num-stab-core-v1", None)), &Quiet)
        .await
        .unwrap();
    forget_registry(&t.db).await;
    // The first 12 instruments' states replaced by v2 ones.
    backfill_joint_states(
        &t.db,
        &StateBackfill {
            limit: Some(12),
            ..mixed(states(as_of, "num-stab-core-v2", None))
        },
        &Quiet,
    )
    .await
    .unwrap();
    gen_scenarios(
        &t.db,
        &GenScenarios {
            scenario_set_id: "SYNTH".into(),
            count: 50,
            model_id: MIXED.into(),
            seed: 1,
            scenario_date: as_of,
            spread_years: 0,
        },
        &Quiet,
    )
    .await
    .unwrap();
    let e = portfolio_exposure(
        &t.db,
        &DB_SCAN,
        &g.portfolios[0],
        as_of,
        "SYNTH",
        MIXED,
        3,
        stabspace::portfolio::DEFAULT_MIN_COVERAGE,
    )
    .await
    .unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, Error::MixedSpaces { .. }), "{text}");
    assert!(text.contains("stab-v1") && text.contains(V2_SPACE), "{text}");
}
