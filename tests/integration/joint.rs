//! The joint-space workflows end to end on generated data, on both backends,
//! each value checked against an independent computation from the CSV files
//! or the stored branch vectors.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde_json::Value as Json;
use sqlx::Row;
use stabspace::backfill::{
    backfill_numeric_embeddings, backfill_numeric_scenario_embeddings, NumericBackfill, ScenarioBackfill,
};
use stabspace::diagnostics::{
    backfill_backtest_metrics, backfill_portfolio_metrics, find_similar, portfolio_exposure, MetricsBackfill,
};
use stabspace::import::ImportKind;
use stabspace::joint::{
    backfill_joint_profiles, backfill_joint_scenarios, backfill_joint_states, ProfileBackfill,
    ScenarioProjection, StateBackfill, Weights, PROFILE_JOINT_TYPE, STAB_JOINT_TYPE,
};
use stabspace::nearest::SearchOpts;
use stabspace::progress::Quiet;
use stabspace::storage::{Backend, Db};
use stabspace::synth::{month_ends, trading_days, Generated, HISTORICAL_SET, MONTE_CARLO_SET};
use stabspace::{vector, with_pool};

use crate::both_backends;
use crate::support::{import_all, read_csv, small_market, TestDb, DB_SCAN};

both_backends!(
    profiles_are_z_scores_of_each_issuers_latest_fundamentals,
    states_average_the_stab_and_profile_branches_and_reruns_replace,
    scenarios_are_projected_with_their_metadata,
    nearest_scenarios_match_a_brute_force_scan,
    portfolio_vector_matches_an_independent_computation,
    metrics_merge_into_reports_and_runs_and_reruns_change_nothing,
    bad_portfolio_input_is_a_clear_error_and_writes_nothing,
);

const WINDOW: usize = 20;
pub(crate) const JOINT: &str = "joint-stab-fragility-v1";
pub(crate) const STAB: &str = "num-stab-core-v1";
const PROFILE: &str = "joint-profile-core-v1";

pub(crate) struct Market {
    pub g: Generated,
    pub dates: Vec<NaiveDate>,
    /// Month ends with a full window, and the last date: where states are backfilled.
    pub state_dates: Vec<NaiveDate>,
}

fn states(as_of: NaiveDate, profile: bool, weights: Weights) -> StateBackfill {
    StateBackfill {
        as_of,
        market_id: "US_EQ".into(),
        region: None,
        stab_model_id: STAB.into(),
        profile_model_id: profile.then(|| PROFILE.into()),
        joint_model_id: JOINT.into(),
        weights,
        limit: None,
        replace: false,
    }
}

/// Generate and import a small market; backfill numeric vectors, profiles
/// and joint states at every state date, and both scenario sets.
pub(crate) async fn pipeline(t: &TestDb) -> Market {
    let (cfg, g) = small_market(t.dir.path());
    import_all(&t.db, &g).await;
    let dates = trading_days(cfg.start, cfg.days);
    let state_dates: Vec<NaiveDate> = month_ends(&dates, WINDOW).into_iter().map(|i| dates[i]).collect();
    for &d in &state_dates {
        let n = NumericBackfill {
            as_of: d,
            window_days: WINDOW,
            horizon_days: 20,
            market_id: "US_EQ".into(),
            limit: None,
            model_id: STAB.into(),
        };
        backfill_numeric_embeddings(&t.db, &n, &Quiet).await.unwrap();
        let p = ProfileBackfill {
            as_of: d,
            model_id: PROFILE.into(),
            limit: None,
        };
        backfill_joint_profiles(&t.db, &p).await.unwrap();
        backfill_joint_states(&t.db, &states(d, true, Weights::default()), &Quiet)
            .await
            .unwrap();
    }
    for set in [HISTORICAL_SET, MONTE_CARLO_SET] {
        let s = ScenarioBackfill {
            scenario_set_id: set.into(),
            model_id: "num-scenario-core-v1".into(),
            horizon_days: 20,
            limit: None,
        };
        backfill_numeric_scenario_embeddings(&t.db, &s, &Quiet)
            .await
            .unwrap();
        backfill_joint_scenarios(&t.db, &projection(set, None), &Quiet)
            .await
            .unwrap();
    }
    Market {
        g,
        dates,
        state_dates,
    }
}

fn projection(set: &str, limit: Option<u64>) -> ScenarioProjection {
    ScenarioProjection {
        scenario_set_id: set.into(),
        scenario_model_id: "num-scenario-core-v1".into(),
        joint_model_id: JOINT.into(),
        weights: Weights::default(),
        limit,
        replace: false,
    }
}

/// A stored joint vector and its entity_scope.
async fn joint(
    db: &Db,
    joint_type: &str,
    entity_type: &str,
    scope: &str,
    id: &str,
    d: NaiveDate,
) -> (Vec<f32>, Json) {
    let model = if joint_type == PROFILE_JOINT_TYPE {
        PROFILE
    } else {
        JOINT
    };
    let row = with_pool!(db, p => sqlx::query(
        "SELECT vector, CAST(entity_scope AS TEXT) FROM joint_embeddings WHERE joint_type = $1 AND model_id = $2 \
         AND entity_type = $3 AND scope_id = $4 AND entity_id = $5 AND as_of_date = $6")
        .bind(joint_type).bind(model).bind(entity_type).bind(scope).bind(id).bind(d)
        .fetch_one(p).await.map(|r| (r.get::<Vec<u8>, _>(0), r.get::<String, _>(1))))
    .unwrap_or_else(|e| panic!("{joint_type} {entity_type} {id} {d}: {e}"));
    (
        vector::from_bytes(&row.0, id).unwrap(),
        serde_json::from_str(&row.1).unwrap(),
    )
}

async fn numeric(db: &Db, entity_type: &str, model: &str, id: &str) -> Vec<(NaiveDate, Vec<f32>)> {
    let rows = with_pool!(db, p => sqlx::query(
        "SELECT as_of_date, vector FROM numeric_window_embeddings WHERE entity_type = $1 AND model_id = $2 \
         AND entity_id = $3 ORDER BY as_of_date")
        .bind(entity_type).bind(model).bind(id)
        .fetch_all(p).await.unwrap()
        .into_iter()
        .map(|r| (r.get::<NaiveDate, _>(0), r.get::<Vec<u8>, _>(1)))
        .collect::<Vec<_>>());
    rows.into_iter()
        .map(|(d, b)| (d, vector::from_bytes(&b, id).unwrap()))
        .collect()
}

/// All STAB vectors of one entity type (and scope), by (entity, date).
async fn all_joint(db: &Db, entity_type: &str, scope: &str) -> BTreeMap<(String, NaiveDate), Vec<f32>> {
    let rows = with_pool!(db, p => sqlx::query(
        "SELECT entity_id, as_of_date, vector FROM joint_embeddings WHERE joint_type = $1 AND model_id = $2 \
         AND entity_type = $3 AND scope_id = $4")
        .bind(STAB_JOINT_TYPE).bind(JOINT).bind(entity_type).bind(scope)
        .fetch_all(p).await.unwrap()
        .into_iter()
        .map(|r| ((r.get::<String, _>(0), r.get::<NaiveDate, _>(1)), r.get::<Vec<u8>, _>(2)))
        .collect::<Vec<_>>());
    rows.into_iter()
        .map(|(k, b)| (k, vector::from_bytes(&b, "v").unwrap()))
        .collect()
}

async fn count_joint(db: &Db, joint_type: &str) -> i64 {
    with_pool!(db, p => sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM joint_embeddings WHERE joint_type = $1")
        .bind(joint_type).fetch_one(p).await)
    .unwrap()
}

fn file(g: &Generated, kind: ImportKind) -> &std::path::Path {
    &g.files.iter().find(|f| f.0 == kind).unwrap().1
}

fn cosine(a: &[f64], b: &[f32]) -> (f64, f64) {
    let b: Vec<f64> = b.iter().map(|&x| f64::from(x)).collect();
    let dot: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
    let na = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    let dist = a.iter().zip(&b).map(|(x, y)| (x - y).powi(2)).sum::<f64>().sqrt();
    (dot / (na * nb), dist)
}

/// The k nearest of `candidates` to `q` by cosine, computed directly in f64.
fn brute_force(
    q: &[f64],
    candidates: &BTreeMap<(String, NaiveDate), Vec<f32>>,
    k: usize,
) -> Vec<(String, f64, f64)> {
    let mut all: Vec<(String, f64, f64)> = candidates
        .iter()
        .map(|((id, _), v)| {
            let (c, d) = cosine(q, v);
            (id.clone(), c, d)
        })
        .collect();
    all.sort_by(|a, b| b.1.total_cmp(&a.1));
    all.truncate(k);
    all
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs()).max(1e-12)
}

async fn profiles_are_z_scores_of_each_issuers_latest_fundamentals(t: TestDb) {
    let (_, g) = small_market(t.dir.path());
    import_all(&t.db, &g).await;
    let d = g.last_date;
    let p = ProfileBackfill {
        as_of: d,
        model_id: PROFILE.into(),
        limit: None,
    };
    let s = backfill_joint_profiles(&t.db, &p).await.unwrap();

    // Independently: each issuer's last row on or before d, fields in key order, ddof-0 z-scores.
    let mut latest: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    for r in read_csv(file(&g, ImportKind::Fundamentals)) {
        if r["as_of_date"].as_str() <= d.to_string().as_str() {
            let f: BTreeMap<String, f64> = serde_json::from_str(&r["fundamentals_json"]).unwrap();
            latest.insert(r["issuer_id"].clone(), f);
        }
    }
    assert_eq!(s.encoded as usize, latest.len(), "{s}");
    let fields: Vec<&String> = latest.values().next().unwrap().keys().collect();
    for issuer in ["ISS_0001", "ISS_0007"] {
        let (v, scope) = joint(&t.db, PROFILE_JOINT_TYPE, "ISSUER", "", issuer, d).await;
        assert_eq!(scope["entity_type"], "ISSUER");
        assert_eq!(scope["entity_id"], issuer);
        assert_eq!(scope["as_of_date"], d.to_string());
        for (slot, f) in fields.iter().enumerate() {
            let xs: Vec<f64> = latest.values().map(|m| m[*f]).collect();
            let mean = xs.iter().sum::<f64>() / xs.len() as f64;
            let sd = (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64).sqrt();
            let want = (latest[issuer][*f] - mean) / sd;
            assert!(
                close(f64::from(v[slot]), want, 1e-6),
                "{issuer} {f}: {} vs {want}",
                v[slot]
            );
        }
        assert!(v[fields.len()..].iter().all(|&x| x == 0.0), "padding");
    }
    let before = count_joint(&t.db, PROFILE_JOINT_TYPE).await;
    backfill_joint_profiles(&t.db, &p).await.unwrap();
    assert_eq!(
        count_joint(&t.db, PROFILE_JOINT_TYPE).await,
        before,
        "re-run duplicated"
    );
}

async fn states_average_the_stab_and_profile_branches_and_reruns_replace(t: TestDb) {
    let m = pipeline(&t).await;
    let d = *m.state_dates.last().unwrap();
    let id = "SYN0003.US"; // issuer ISS_0002
    let stab = numeric(&t.db, "INSTRUMENT", STAB, id).await;
    let stab = &stab.iter().find(|(x, _)| *x == d).unwrap().1;
    let (prof, _) = joint(&t.db, PROFILE_JOINT_TYPE, "ISSUER", "", "ISS_0002", d).await;
    let (z, scope) = joint(&t.db, STAB_JOINT_TYPE, "INSTRUMENT", "", id, d).await;
    for i in 0..vector::DIM {
        let want = ((f64::from(stab[i]) + f64::from(prof[i])) / 2.0) as f32;
        assert_eq!(z[i], want, "slot {i}");
    }
    assert_eq!(scope["entity_type"], "INSTRUMENT");
    assert_eq!(scope["entity_id"], id);
    assert_eq!(scope["issuer_id"], "ISS_0002");
    assert_eq!(scope["region"], "US");
    assert_eq!(scope["source"], "stab+profile");
    assert_eq!(scope["stab_window"]["end_date"], d.to_string());
    let start = m.dates[m.dates.iter().position(|x| *x == d).unwrap() + 1 - WINDOW];
    assert_eq!(scope["stab_window"]["start_date"], start.to_string());

    let states_before = count_joint(&t.db, STAB_JOINT_TYPE).await;
    let w = Weights {
        stab: 3.0,
        profile: 1.0,
        ..Weights::default()
    };
    // Other weights with a profile branch redefine the registered model: an
    // error naming them, unless --replace.
    let e = backfill_joint_states(&t.db, &states(d, true, w), &Quiet)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!("joint model {JOINT} is registered as"))
            && e.contains("w_stab 3 (registered: 1)")
            && e.contains("--replace"),
        "{e}"
    );
    assert_eq!(
        count_joint(&t.db, STAB_JOINT_TYPE).await,
        states_before,
        "nothing written"
    );
    let s = backfill_joint_states(
        &t.db,
        &StateBackfill {
            replace: true,
            ..states(d, true, w)
        },
        &Quiet,
    )
    .await
    .unwrap();
    assert!(
        s.summary
            .registration
            .replaced
            .iter()
            .any(|r| r.contains("w_stab 1 → 3")),
        "{s}"
    );
    assert_eq!((s.with_profile, s.without_profile), (29, 0), "{s}");
    // The states of the other dates were made under the old definition: deleted.
    let after_replace = count_joint(&t.db, STAB_JOINT_TYPE).await;
    assert!(m.state_dates.len() > 1 && after_replace < states_before);
    assert!(
        s.summary
            .registration
            .replaced
            .iter()
            .any(|r| r.contains("instrument row(s)")),
        "{s}"
    );
    assert!(s.summary.skipped["no numeric embedding"]
        .iter()
        .any(|(i, _)| i == "SYN0025.US"));
    let (z, _) = joint(&t.db, STAB_JOINT_TYPE, "INSTRUMENT", "", id, d).await;
    let want = ((3.0 * f64::from(stab[7]) + f64::from(prof[7])) / 4.0) as f32;
    assert_eq!(z[7], want);
    // Plain states under the profile-augmented model are another model too.
    let e = backfill_joint_states(&t.db, &states(d, false, Weights::default()), &Quiet)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("profile branch none (registered: joint-profile-core-v1)"),
        "{e}"
    );
    let s = backfill_joint_states(
        &t.db,
        &StateBackfill {
            replace: true,
            ..states(d, false, Weights::default())
        },
        &Quiet,
    )
    .await
    .unwrap();
    assert_eq!((s.with_profile, s.without_profile), (0, 29));
    let (z, scope) = joint(&t.db, STAB_JOINT_TYPE, "INSTRUMENT", "", id, d).await;
    assert_eq!(&z, stab, "one branch passes through unchanged");
    assert_eq!(scope["source"], "stab");
    assert_eq!(
        count_joint(&t.db, STAB_JOINT_TYPE).await,
        after_replace,
        "re-runs replace"
    );

    // Errors say what exists.
    let mut p = states(d, false, Weights::default());
    p.region = Some("EU".into());
    let e = backfill_joint_states(&t.db, &p, &Quiet)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("no instruments") && e.contains("US_EQ"), "{e}");
    let e = backfill_joint_states(&t.db, &states(m.g.first_date, false, Weights::default()), &Quiet)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains(&format!("latest date with them is {d}")), "{e}");
    // A joint model id names a directory of partitions: a path is refused.
    let mut p = states(d, false, Weights::default());
    p.joint_model_id = "../nope".into();
    let e = backfill_joint_states(&t.db, &p, &Quiet)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("--joint-model-id \"../nope\"") && e.contains("letters, digits"),
        "{e}"
    );
}

async fn scenarios_are_projected_with_their_metadata(t: TestDb) {
    let m = pipeline(&t).await;
    let scenarios = read_csv(file(&m.g, ImportKind::Scenarios));
    let hist: Vec<_> = scenarios
        .iter()
        .filter(|r| r["scenario_set_id"] == HISTORICAL_SET)
        .collect();
    let stored = all_joint(&t.db, "SCENARIO", HISTORICAL_SET).await;
    assert_eq!(stored.len(), hist.len());
    for r in &hist {
        let id = &r["scenario_id"];
        let d: NaiveDate = r["scenario_date"].parse().unwrap();
        let (z, scope) = joint(&t.db, STAB_JOINT_TYPE, "SCENARIO", HISTORICAL_SET, id, d).await;
        let n = numeric(&t.db, "SCENARIO", "num-scenario-core-v1", id).await;
        assert_eq!(z, n[0].1, "{id}: the scenario branch passes through unchanged");
        assert_eq!(scope["entity_type"], "SCENARIO");
        assert_eq!(scope["scenario_set_id"], HISTORICAL_SET);
        assert_eq!(scope["scenario_id"], id.as_str());
        assert_eq!(scope["source"], "scenarios");
        assert_eq!(scope["metadata"]["shock_type"], r["shock_type"].as_str());
        assert_eq!(scope["metadata"]["severity"], r["severity"].as_str());
    }
    let s = backfill_joint_scenarios(&t.db, &projection(MONTE_CARLO_SET, Some(3)), &Quiet)
        .await
        .unwrap();
    assert_eq!(s.encoded, 3);
    assert_eq!(
        all_joint(&t.db, "SCENARIO", MONTE_CARLO_SET).await.len(),
        20,
        "re-run replaced"
    );
    let e = backfill_joint_scenarios(&t.db, &projection("NOPE", None), &Quiet)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains(HISTORICAL_SET) && e.contains(MONTE_CARLO_SET), "{e}");
}

async fn nearest_scenarios_match_a_brute_force_scan(t: TestDb) {
    let m = pipeline(&t).await;
    let d = *m.state_dates.last().unwrap();
    let candidates = all_joint(&t.db, "SCENARIO", MONTE_CARLO_SET).await;
    for id in ["SYN0001.US", "SYN0010.US", "SYN0029.US"] {
        let found = find_similar(&t.db, &DB_SCAN, id, d, JOINT, MONTE_CARLO_SET, 7)
            .await
            .unwrap();
        let q: Vec<f64> = found.state.iter().map(|&x| f64::from(x)).collect();
        let want = brute_force(&q, &candidates, 7);
        let got: Vec<&str> = found.hits.iter().map(|h| h.scenario_id.as_str()).collect();
        let expect: Vec<&str> = want.iter().map(|w| w.0.as_str()).collect();
        assert_eq!(got, expect, "{id}");
        for (h, w) in found.hits.iter().zip(&want) {
            assert!(
                close(h.cosine, w.1, 1e-6),
                "{id} {}: {} vs {}",
                w.0,
                h.cosine,
                w.1
            );
            assert!(
                close(h.euclidean, w.2, 1e-6),
                "{id} {}: {} vs {}",
                w.0,
                h.euclidean,
                w.2
            );
        }
    }
    let e = find_similar(
        &t.db,
        &DB_SCAN,
        "SYN0001.US",
        m.g.first_date,
        JOINT,
        MONTE_CARLO_SET,
        3,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains("nearest states are on none (before) and"), "{e}");
    let e = find_similar(&t.db, &DB_SCAN, "NOPE.US", d, JOINT, MONTE_CARLO_SET, 3)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!("latest date with STAB states of {JOINT} is {d}")),
        "{e}"
    );
}

/// Σ wᵢ·zᵢ / Σ|wᵢ| from the portfolios CSV and the stored states, in f64.
async fn expected_portfolio(t: &TestDb, m: &Market, pid: &str, d: NaiveDate) -> (Vec<f64>, usize) {
    let rows = read_csv(file(&m.g, ImportKind::Portfolios));
    let weights: BTreeMap<String, f64> = rows
        .iter()
        .rfind(|r| r["portfolio_id"] == pid && r["as_of_date"].as_str() <= d.to_string().as_str())
        .map(|r| serde_json::from_str(&r["weights_json"]).unwrap())
        .unwrap();
    let states = all_joint(&t.db, "INSTRUMENT", "").await;
    let mut acc = vec![0f64; vector::DIM];
    let (mut abs, mut used) = (0.0, 0);
    for (id, w) in &weights {
        let latest = states
            .range((id.clone(), NaiveDate::MIN)..=(id.clone(), d))
            .next_back();
        if let Some((_, z)) = latest {
            used += 1;
            abs += w.abs();
            for (a, x) in acc.iter_mut().zip(z) {
                *a += w * f64::from(*x);
            }
        }
    }
    (acc.into_iter().map(|a| a / abs).collect(), used)
}

async fn portfolio_vector_matches_an_independent_computation(t: TestDb) {
    let m = pipeline(&t).await;
    let pid = &m.g.portfolios[0];
    // A day between two state dates: states and weights are the latest on or before it.
    let i = m
        .dates
        .iter()
        .position(|d| *d == m.state_dates[m.state_dates.len() - 2])
        .unwrap();
    let candidates = all_joint(&t.db, "SCENARIO", HISTORICAL_SET).await;
    for d in [m.dates[i + 3], *m.dates.last().unwrap()] {
        let (want, used) = expected_portfolio(&t, &m, pid, d).await;
        let e = portfolio_exposure(
            &t.db,
            &DB_SCAN,
            pid,
            d,
            HISTORICAL_SET,
            JOINT,
            2,
            stabspace::portfolio::DEFAULT_MIN_COVERAGE,
        )
        .await
        .unwrap();
        assert_eq!(e.vector.used, used, "{d}");
        assert_eq!(used, 15);
        let norm = want.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!(
            close(e.vector.ctx_norm, norm, 1e-6),
            "{d}: {} vs {norm}",
            e.vector.ctx_norm
        );
        for (got, want) in e.vector.vector.iter().zip(&want) {
            assert!(close(f64::from(*got), *want, 1e-6), "{got} vs {want}");
        }
        let top = brute_force(&want, &candidates, 2);
        assert_eq!(e.hits[0].scenario_id, top[0].0, "{d}");
        assert!(
            close(e.hits[0].cosine, top[0].1, 1e-6),
            "{} vs {}",
            e.hits[0].cosine,
            top[0].1
        );
        assert!(close(e.hits[0].euclidean, top[0].2, 1e-6));
        let stored_date = m.g.crash_windows.iter().any(|w| w.0 == e.hits[0].scenario_as_of);
        assert!(stored_date, "scenario_as_of is the window start");
    }
}

pub(crate) async fn risk_metrics_of(db: &Db) -> BTreeMap<(String, NaiveDate), Json> {
    let rows = with_pool!(db, p => sqlx::query_as::<_, (String, NaiveDate, String)>(
        "SELECT portfolio_id, as_of_date, CAST(risk_metrics AS TEXT) FROM portfolio_risk_reports")
        .fetch_all(p).await)
    .unwrap();
    rows.into_iter()
        .map(|(p, d, t)| ((p, d), serde_json::from_str(&t).unwrap()))
        .collect()
}

async fn metrics_json_of(db: &Db) -> BTreeMap<String, Json> {
    let rows = with_pool!(db, p => sqlx::query_as::<_, (String, String)>(
        "SELECT run_id, CAST(metrics_json AS TEXT) FROM backtest_runs")
        .fetch_all(p).await)
    .unwrap();
    rows.into_iter()
        .map(|(r, t)| (r, serde_json::from_str(&t).unwrap()))
        .collect()
}

pub(crate) fn metrics(portfolio: Option<&str>, start: NaiveDate, end: NaiveDate) -> MetricsBackfill {
    MetricsBackfill {
        portfolio_id: portfolio.map(str::to_string),
        scenario_set_id: MONTE_CARLO_SET.into(),
        model_id: JOINT.into(),
        start,
        end,
        search: SearchOpts::default(),
        min_coverage: stabspace::portfolio::DEFAULT_MIN_COVERAGE,
        recall_sample: 0.0,
    }
}

async fn metrics_merge_into_reports_and_runs_and_reruns_change_nothing(t: TestDb) {
    let m = pipeline(&t).await;
    let before = risk_metrics_of(&t.db).await;
    let (first, last) = (m.g.first_date, m.g.last_date);
    let s = backfill_portfolio_metrics(&t.db, &metrics(None, first, last), &Quiet)
        .await
        .unwrap();
    assert_eq!(s.computed, before.len(), "{s}");
    assert_eq!(s.changed as usize, before.len());
    let after = risk_metrics_of(&t.db).await;

    let pid = m.g.portfolios[1].clone();
    let i = m
        .dates
        .iter()
        .position(|d| *d == m.state_dates[m.state_dates.len() - 2])
        .unwrap();
    let d = m.dates[i + 2];
    let e = portfolio_exposure(
        &t.db,
        &DB_SCAN,
        &pid,
        d,
        MONTE_CARLO_SET,
        JOINT,
        3,
        stabspace::portfolio::DEFAULT_MIN_COVERAGE,
    )
    .await
    .unwrap();
    let got = &after[&(pid.clone(), d)];
    let old = before[&(pid.clone(), d)].as_object().unwrap();
    for (k, v) in old {
        assert_eq!(&got[k], v, "{k} kept");
    }
    assert_eq!(got["stab_scenario_set_id"], MONTE_CARLO_SET);
    assert_eq!(got["stab_closest_scenario_id"], e.hits[0].scenario_id.as_str());
    let f = |k: &str| got[k].as_f64().unwrap();
    assert!(close(f("stab_closest_scenario_cosine"), e.hits[0].cosine, 1e-12));
    assert!(close(
        f("stab_closest_scenario_distance"),
        e.hits[0].euclidean,
        1e-12
    ));
    assert!(close(f("stab_portfolio_ctx_norm"), e.vector.ctx_norm, 1e-12));
    let top3 = e.hits.iter().map(|h| h.cosine).sum::<f64>() / 3.0;
    assert!(close(f("stab_top3_scenario_cosine_mean"), top3, 1e-12));

    let again = backfill_portfolio_metrics(&t.db, &metrics(None, first, last), &Quiet)
        .await
        .unwrap();
    assert_eq!(again.changed, 0, "identical re-run wrote {again}");
    assert_eq!(risk_metrics_of(&t.db).await, after);

    // Backtest runs: the per-day metrics summarised, other keys kept.
    let runs_before = metrics_json_of(&t.db).await;
    let b = backfill_backtest_metrics(&t.db, Some("US_EQ_CORE_LONG"), None)
        .await
        .unwrap();
    assert_eq!(b.runs.len(), m.g.portfolios.len(), "{b}");
    let runs = metrics_json_of(&t.db).await;
    let run = b.runs.iter().find(|r| r.portfolio_id == pid).unwrap();
    let got = &runs[&run.run_id];
    for (k, v) in runs_before[&run.run_id].as_object().unwrap() {
        assert_eq!(&got[k], v, "{k} kept");
    }
    let cos: Vec<f64> = after
        .iter()
        .filter(|((p, _), _)| *p == pid)
        .map(|(_, v)| v["stab_closest_scenario_cosine"].as_f64().unwrap())
        .collect();
    let norms: Vec<f64> = after
        .iter()
        .filter(|((p, _), _)| *p == pid)
        .map(|(_, v)| v["stab_portfolio_ctx_norm"].as_f64().unwrap())
        .collect();
    assert_eq!(got["stab_num_days"], cos.len());
    assert_eq!(got["stab_scenario_set_id"], MONTE_CARLO_SET);
    let mean = cos.iter().sum::<f64>() / cos.len() as f64;
    assert!(close(
        got["stab_closest_scenario_cosine_mean"].as_f64().unwrap(),
        mean,
        1e-12
    ));
    let min = cos.iter().copied().fold(f64::INFINITY, f64::min);
    assert_eq!(got["stab_closest_scenario_cosine_min"].as_f64().unwrap(), min);
    let max = norms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    assert_eq!(got["stab_portfolio_ctx_norm_max"].as_f64().unwrap(), max);
    let one = backfill_backtest_metrics(&t.db, None, Some(&run.run_id))
        .await
        .unwrap();
    assert_eq!((one.runs.len(), one.changed), (1, 0), "re-run changes nothing");
    let e = backfill_backtest_metrics(&t.db, Some("NOPE"), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("US_EQ_CORE_LONG"), "{e}");
}

/// Store a target row as another tool might have (JSON not validated by our import).
pub(crate) async fn put_target(db: &Db, pid: &str, d: NaiveDate, json: &str) {
    let sql = match db.backend() {
        Backend::Postgres => {
            "INSERT INTO target_portfolios VALUES ($1, $2, CAST($3 AS JSONB)) \
             ON CONFLICT (portfolio_id, as_of_date) DO UPDATE SET target_positions = excluded.target_positions"
        }
        Backend::Sqlite => {
            "INSERT INTO target_portfolios VALUES ($1, $2, $3) \
             ON CONFLICT (portfolio_id, as_of_date) DO UPDATE SET target_positions = excluded.target_positions"
        }
    };
    with_pool!(db, p => sqlx::query(sql).bind(pid).bind(d).bind(json).execute(p).await.map(|_| ())).unwrap();
}

async fn bad_portfolio_input_is_a_clear_error_and_writes_nothing(t: TestDb) {
    let m = pipeline(&t).await;
    let (first, last) = (m.g.first_date, m.g.last_date);
    let pid = m.g.portfolios[0].clone();
    let ex = |p: String, d: NaiveDate| {
        let db = t.db.clone();
        async move {
            portfolio_exposure(
                &db,
                &DB_SCAN,
                &p,
                d,
                HISTORICAL_SET,
                JOINT,
                3,
                stabspace::portfolio::DEFAULT_MIN_COVERAGE,
            )
            .await
            .unwrap_err()
            .to_string()
        }
    };
    let e = ex("NOPE".into(), last).await;
    assert!(e.contains("no target_portfolios rows") && e.contains(&pid), "{e}");
    let e = ex(pid.clone(), first).await;
    assert!(
        e.contains("no target weights on or before") && e.contains("earliest"),
        "{e}"
    );
    let e = portfolio_exposure(
        &t.db,
        &DB_SCAN,
        &pid,
        last,
        "NOPE",
        JOINT,
        3,
        stabspace::portfolio::DEFAULT_MIN_COVERAGE,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains(HISTORICAL_SET), "{e}");

    // Holdings without states.
    put_target(
        &t.db,
        "P_GHOST",
        last,
        r#"{"weights": {"GHOST1.US": 0.5, "GHOST2.US": 0.5}}"#,
    )
    .await;
    let e = ex("P_GHOST".into(), last).await;
    assert!(e.contains("none of its 2 instruments has a STAB state"), "{e}");

    let e = backfill_backtest_metrics(&t.db, Some("US_EQ_CORE_LONG"), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("carry STAB metrics"), "{e}");
    let before = risk_metrics_of(&t.db).await;
    let d = m.dates[m.dates.len() - 3];
    // Weights summing to zero in absolute value.
    put_target(
        &t.db,
        &pid,
        d,
        r#"{"weights": {"SYN0001.US": 0, "SYN0002.US": 0.0}}"#,
    )
    .await;
    let e = ex(pid.clone(), d).await;
    assert!(e.contains("sum to 0 in absolute value"), "{e}");
    // In the metrics backfill such a day is skipped with its reason; the
    // other days are scored.
    let s = backfill_portfolio_metrics(&t.db, &metrics(None, first, last), &Quiet)
        .await
        .unwrap();
    let skipped = &s.skipped["the holdings with a STAB state have zero weights"];
    assert!(skipped.contains(&(pid.clone(), d)), "{skipped:?}");
    assert_eq!(
        s.computed + s.skipped.values().map(Vec::len).sum::<usize>(),
        s.reports
    );
    assert!(s.computed > 100, "{s:?}");
    let after = risk_metrics_of(&t.db).await;
    let at_d = &after[&(pid.clone(), d)];
    assert!(at_d.get("stab_closest_scenario_id").is_none(), "{at_d}");
    assert_ne!(after, before, "the other days are scored");
    let before = after;

    // Malformed weights.
    put_target(&t.db, &pid, d, r#"{"weights": {"SYN0001.US": "lots"}}"#).await;
    let e = backfill_portfolio_metrics(&t.db, &metrics(Some(&pid), first, last), &Quiet)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&pid) && e.contains(&d.to_string()) && e.contains("SYN0001.US"),
        "{e}"
    );
    put_target(&t.db, &pid, d, r#"{"positions": []}"#).await;
    let e = ex(pid.clone(), d).await;
    assert!(e.contains("no \"weights\" object"), "{e}");
    assert_eq!(risk_metrics_of(&t.db).await, before, "nothing written");

    let e = backfill_portfolio_metrics(&t.db, &metrics(Some("NOPE"), first, last), &Quiet)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("no risk reports") && e.contains(&pid), "{e}");
}
