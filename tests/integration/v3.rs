//! The v3 pair (`num-stab-core-v3`, `num-scenario-core-v3`) on both backends:
//! vectors against an independent computation from the generated CSV files,
//! earlier retrieval of the planted episodes than v2, and v3 vectors never
//! compared with or averaged into another space.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use stabspace::backfill::{
    backfill_numeric_embeddings, backfill_numeric_scenario_embeddings, NumericBackfill, ScenarioBackfill,
};
use stabspace::diagnostics::{find_similar, portfolio_exposure};
use stabspace::eval::{eval_retrieval, EvalReport, EvalSpec};
use stabspace::joint::{
    backfill_joint_scenarios, backfill_joint_states, ScenarioProjection, StateBackfill, Weights,
};
use stabspace::progress::Quiet;
use stabspace::storage::Db;
use stabspace::synth::HISTORICAL_SET;
use stabspace::{vector, with_pool, Error};

use crate::both_backends;
use crate::support::{episode_market, import_all, read_csv, TestDb, DB_SCAN};

both_backends!(
    v3_vectors_match_an_independent_computation_from_the_csv_files,
    v3_finds_the_planted_episodes_earlier_than_v2,
    v3_vectors_are_never_compared_with_or_averaged_into_another_space,
);

const H: usize = 20;
const V3: &str = "joint-stab-fragility-v3";
const V2: &str = "joint-stab-fragility-v2";
const V3_SPACE: &str = "stab-v3-multiscale-h20";
const V2_SPACE: &str = "stab-v2-signature-h20";

async fn numeric(db: &Db, as_of: NaiveDate, model: &str, limit: Option<u64>) {
    backfill_numeric_embeddings(
        db,
        &NumericBackfill {
            as_of,
            window_days: H,
            horizon_days: H,
            market_id: "US_EQ".into(),
            limit,
            model_id: model.into(),
        },
        &Quiet,
    )
    .await
    .expect("numeric states");
}

fn states(as_of: NaiveDate, joint: &str, stab: &str) -> StateBackfill {
    StateBackfill {
        as_of,
        market_id: "US_EQ".into(),
        region: None,
        stab_model_id: stab.into(),
        profile_model_id: None,
        joint_model_id: joint.into(),
        weights: Weights::default(),
        limit: None,
        replace: false,
    }
}

async fn scenarios(db: &Db, joint: &str, model: &str) -> Result<(), Error> {
    backfill_numeric_scenario_embeddings(
        db,
        &ScenarioBackfill {
            scenario_set_id: HISTORICAL_SET.into(),
            model_id: model.into(),
            horizon_days: H,
            limit: None,
        },
        &Quiet,
    )
    .await?;
    backfill_joint_scenarios(
        db,
        &ScenarioProjection {
            scenario_set_id: HISTORICAL_SET.into(),
            scenario_model_id: model.into(),
            joint_model_id: joint.into(),
            weights: Weights::default(),
            limit: None,
            replace: false,
        },
        &Quiet,
    )
    .await
    .map(|_| ())
}

async fn stored(db: &Db, model: &str, entity: &str) -> (Vec<f32>, Option<String>) {
    let sql =
        "SELECT vector, feature_space FROM numeric_window_embeddings WHERE model_id = $1 AND entity_id = $2";
    let (bytes, space): (Vec<u8>, Option<String>) =
        with_pool!(db, p => sqlx::query_as(sql).bind(model).bind(entity).fetch_one(p).await).expect("stored");
    (vector::from_bytes(&bytes, entity).unwrap(), space)
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn spread(v: &[f64]) -> f64 {
    let m = mean(v);
    (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len() as f64).sqrt()
}

fn assert_close(got: &[f32], want: &[f64], what: &str) {
    assert_eq!(want.len(), 10 * H, "{what}");
    for (i, (&g, w)) in got.iter().zip(want).enumerate() {
        assert!((f64::from(g) - w).abs() < 1e-7, "{what}, slot {i}: {g} vs {w}");
    }
    assert!(got[want.len()..].iter().all(|&x| x == 0.0), "{what}: padding");
}

async fn v3_vectors_match_an_independent_computation_from_the_csv_files(t: TestDb) {
    let g = episode_market(t.dir.path(), 3);
    import_all(&t.db, &g).await;
    let dir = t.dir.path().join("market");
    let as_of = g.last_date;

    // Log returns of every active instrument over the last H days, from prices.csv.
    let active: Vec<String> = read_csv(&dir.join("instruments.csv"))
        .into_iter()
        .filter(|r| r["status"] == "active")
        .map(|r| r["instrument_id"].clone())
        .collect();
    let mut closes: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for r in read_csv(&dir.join("prices.csv")) {
        if active.contains(&r["instrument_id"]) {
            closes
                .entry(r["instrument_id"].clone())
                .or_default()
                .push(r["close"].parse().unwrap());
        }
    }
    let returns: BTreeMap<&String, Vec<f64>> = closes
        .iter()
        .map(|(id, c)| {
            let tail = &c[c.len() - H - 1..];
            (id, tail.windows(2).map(|w| (w[1] / w[0]).ln()).collect())
        })
        .collect();
    let day = |d: usize| returns.values().map(|r| r[d]).collect::<Vec<f64>>();
    let m: Vec<f64> = (0..H).map(|d| mean(&day(d))).collect();
    let s: Vec<f64> = (0..H).map(|d| spread(&day(d))).collect();

    numeric(&t.db, as_of, "num-stab-core-v3", None).await;
    let id = "SYN0003.US".to_string();
    let r = &returns[&id];
    let mut want = Vec::new();
    for k in [5, 10, 15, 20] {
        let tail = |x: &[f64]| x[H - k..].to_vec();
        want.extend(sorted(tail(r)));
        want.extend(sorted(tail(r).iter().map(|x| x.abs()).collect()));
        want.extend(sorted(tail(&m)));
        want.extend(sorted(tail(&s)));
    }
    let (v, space) = stored(&t.db, "num-stab-core-v3", &id).await;
    assert_close(&v, &want, "state of SYN0003.US");
    assert_eq!(space.as_deref(), Some(V3_SPACE));

    // --limit encodes fewer instruments, but each within the whole market.
    numeric(&t.db, as_of, "num-stab-core-v3", Some(3)).await;
    let (again, _) = stored(&t.db, "num-stab-core-v3", &id).await;
    assert_eq!(again, v, "the market context does not depend on --limit");

    // A scenario: at each horizon, 0.9 × the mean over every k-day stretch + 0.1 × the last stretch.
    scenarios(&t.db, V3, "num-scenario-core-v3").await.unwrap();
    let sid = read_csv(&dir.join("scenarios.csv"))
        .into_iter()
        .find(|r| r["scenario_set_id"] == HISTORICAL_SET)
        .unwrap()["scenario_id"]
        .clone();
    let mut paths: BTreeMap<String, BTreeMap<usize, f64>> = BTreeMap::new();
    for r in read_csv(&dir.join("scenario_paths.csv")) {
        if r["scenario_id"] == sid {
            let x: f64 = r["return"].parse().unwrap();
            paths
                .entry(r["instrument_id"].clone())
                .or_default()
                .insert(r["day_index"].parse().unwrap(), x.ln_1p());
        }
    }
    let x: Vec<Vec<f64>> = paths.values().map(|p| p.values().copied().collect()).collect();
    let pm: Vec<f64> = (0..H)
        .map(|d| mean(&x.iter().map(|p| p[d]).collect::<Vec<_>>()))
        .collect();
    let ps: Vec<f64> = (0..H)
        .map(|d| spread(&x.iter().map(|p| p[d]).collect::<Vec<_>>()))
        .collect();
    let mut want = Vec::new();
    for k in [5, 10, 15, 20] {
        let n = H - k + 1;
        let mut g = vec![0f64; 4 * k];
        for a in 0..n {
            let mut part = vec![0f64; 4 * k];
            for p in &x {
                for (j, v) in sorted(p[a..a + k].to_vec()).into_iter().enumerate() {
                    part[j] += v / x.len() as f64;
                }
                for (j, v) in sorted(p[a..a + k].iter().map(|v| v.abs()).collect())
                    .into_iter()
                    .enumerate()
                {
                    part[k + j] += v / x.len() as f64;
                }
            }
            for (j, v) in sorted(pm[a..a + k].to_vec()).into_iter().enumerate() {
                part[2 * k + j] = v;
            }
            for (j, v) in sorted(ps[a..a + k].to_vec()).into_iter().enumerate() {
                part[3 * k + j] = v;
            }
            let weight = 0.9 / n as f64 + if a == n - 1 { 0.1 } else { 0.0 };
            for (gj, pj) in g.iter_mut().zip(part) {
                *gj += weight * pj;
            }
        }
        want.extend(g);
    }
    let (v, space) = stored(&t.db, "num-scenario-core-v3", &sid).await;
    assert_close(&v, &want, &format!("scenario {sid}"));
    assert_eq!(space.as_deref(), Some(V3_SPACE));
}

fn spec(joint: &str) -> EvalSpec {
    EvalSpec {
        scenario_set_id: HISTORICAL_SET.into(),
        joint_model_id: joint.into(),
        market_id: "US_EQ".into(),
        stab_model_id: None,
        window_days: 63,
        offsets: vec![0, 5, 10],
        search: DB_SCAN,
    }
}

fn hit3(r: &EvalReport, offset: usize) -> f64 {
    r.scores.iter().find(|s| s.offset == offset).unwrap().hit_at_3
}

async fn v3_finds_the_planted_episodes_earlier_than_v2(t: TestDb) {
    let g = episode_market(t.dir.path(), 16);
    import_all(&t.db, &g).await;
    scenarios(&t.db, V2, "num-scenario-core-v2").await.unwrap();
    scenarios(&t.db, V3, "num-scenario-core-v3").await.unwrap();
    let v2 = eval_retrieval(&t.db, &spec(V2), &Quiet).await.unwrap();
    let v3 = eval_retrieval(&t.db, &spec(V3), &Quiet).await.unwrap();
    assert_eq!((v3.windows, v3.scenarios), (16, 16));
    assert_eq!(v3.stab_model_id, "num-stab-core-v3");
    assert_eq!(v3.feature_space.as_deref(), Some(V3_SPACE));
    let (a, b) = ((hit3(&v2, 5), hit3(&v2, 10)), (hit3(&v3, 5), hit3(&v3, 10)));
    assert!(hit3(&v3, 0) >= 0.8, "v3 at offset 0: {:?}", v3.scores);
    assert!(
        b.0 >= a.0 && b.1 >= a.1 && b.0 + b.1 > a.0 + a.1,
        "hit@3 at offsets 5 and 10: v2 {a:?}, v3 {b:?}"
    );
}

async fn v3_vectors_are_never_compared_with_or_averaged_into_another_space(t: TestDb) {
    let g = episode_market(t.dir.path(), 3);
    import_all(&t.db, &g).await;
    let d = g.last_date;
    numeric(&t.db, d, "num-stab-core-v3", None).await;
    numeric(&t.db, d, "num-stab-core-v2", None).await;
    backfill_joint_states(&t.db, &states(d, V3, "num-stab-core-v3"), &Quiet)
        .await
        .unwrap();
    scenarios(&t.db, V2, "num-scenario-core-v2").await.unwrap();

    // v3 states, a set with only v2 scenarios: the error names where they are.
    let e = find_similar(&t.db, &DB_SCAN, "SYN0001.US", d, V3, HISTORICAL_SET, 3)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!("under joint model {V3}"))
            && e.contains(&format!("the set has them under {V2} ({V2_SPACE}")),
        "{e}"
    );
    // Under one id of its own, the registry refuses the second space ...
    let mine = "joint-v3-and-v2";
    backfill_joint_states(&t.db, &states(d, mine, "num-stab-core-v3"), &Quiet)
        .await
        .unwrap();
    let e = scenarios(&t.db, mine, "num-scenario-core-v2")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!("feature space {V2_SPACE} (registered: {V3_SPACE})")),
        "{e}"
    );
    // ... and rows written without it (an older database) are still never compared or averaged.
    with_pool!(&t.db, p => sqlx::query("DELETE FROM joint_models").execute(p).await.map(|_| ())).unwrap();
    scenarios(&t.db, mine, "num-scenario-core-v2").await.unwrap();
    let e = find_similar(&t.db, &DB_SCAN, "SYN0001.US", d, mine, HISTORICAL_SET, 3)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::MixedSpaces { .. }), "{e}");
    let text = e.to_string();
    assert!(text.contains(V3_SPACE) && text.contains(V2_SPACE), "{text}");
    with_pool!(&t.db, p => sqlx::query("DELETE FROM joint_models").execute(p).await.map(|_| ())).unwrap();
    backfill_joint_states(
        &t.db,
        &StateBackfill {
            limit: Some(12),
            ..states(d, mine, "num-stab-core-v2")
        },
        &Quiet,
    )
    .await
    .unwrap();
    let e = portfolio_exposure(
        &t.db,
        &DB_SCAN,
        &g.portfolios[0],
        d,
        HISTORICAL_SET,
        mine,
        3,
        stabspace::portfolio::DEFAULT_MIN_COVERAGE,
    )
    .await
    .unwrap_err();
    assert!(matches!(e, Error::MixedSpaces { .. }), "{e}");
}
