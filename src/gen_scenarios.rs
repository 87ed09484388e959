//! `gen-scenarios`: a large synthetic scenario set written straight into the
//! database, for benchmarking the index and the metrics backfill at the scale
//! of real scenario libraries (100k–1M scenarios).
//!
//! Each scenario is a 20-day × 20-instrument panel of simple returns drawn
//! from one long simulated market history (GARCH(1,1) market factor with
//! Student-t shocks, instrument betas, idiosyncratic noise), flattened and
//! padded to 384 values exactly as `num-scenario-core-v1` encodes panels. The
//! vectors go into `joint_embeddings` (STAB_FRAGILITY_V0, entity_type
//! SCENARIO) with a `scenarios` row each; no paths are stored.

use std::time::Instant;

use chrono::NaiveDate;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StudentT};
use serde_json::json;

use crate::encoders::pad_to_dim;
use crate::error::{Error, Result};
use crate::joint::STAB_JOINT_TYPE;
use crate::progress::Progress;
use crate::storage::bulk::{BulkWriter, Value};
use crate::storage::tables::{JOINT_EMBEDDINGS, SCENARIOS};
use crate::storage::Db;
use crate::vector;

#[derive(Clone, Debug)]
pub struct GenScenarios {
    pub scenario_set_id: String,
    pub count: usize,
    pub model_id: String,
    pub seed: u64,
    pub scenario_date: NaiveDate,
    /// Spread the scenario dates (and so the dates they are known from)
    /// uniformly over this many years ending at `scenario_date` (0: all on it).
    pub spread_years: u32,
}

const INSTRUMENTS: usize = 20;
const DAYS: usize = 20;
const HISTORY: usize = 5_000;

/// A simulated market history to draw scenario days from.
pub struct Market {
    beta: Vec<f64>,
    series: Vec<f64>,
}

impl Market {
    pub fn simulate(rng: &mut ChaCha8Rng) -> Market {
        let t4 = StudentT::new(4.0).expect("valid degrees of freedom");
        let beta: Vec<f64> = (0..INSTRUMENTS).map(|_| rng.random_range(0.5..1.5)).collect();
        let mut series = vec![0f64; HISTORY * INSTRUMENTS];
        let (mut var, mut prev) = (1e-4f64, 0f64);
        for t in 0..HISTORY {
            var = 2e-6 + 0.09 * prev * prev + 0.89 * var;
            let m = var.sqrt() * t4.sample(rng) / 2f64.sqrt();
            prev = m;
            for i in 0..INSTRUMENTS {
                let idio = 0.6 * var.sqrt() * t4.sample(rng) / 2f64.sqrt();
                series[t * INSTRUMENTS + i] = beta[i] * m + idio;
            }
        }
        Market { beta, series }
    }

    /// One scenario vector: `DAYS` days drawn from the history.
    pub fn scenario(&self, rng: &mut ChaCha8Rng) -> Vec<f32> {
        let mut panel = Vec::with_capacity(DAYS * INSTRUMENTS);
        for _ in 0..DAYS {
            let t = rng.random_range(0..HISTORY);
            panel.extend_from_slice(&self.series[t * INSTRUMENTS..(t + 1) * INSTRUMENTS]);
        }
        pad_to_dim(panel)
    }

    pub fn instruments(&self) -> usize {
        self.beta.len()
    }
}

/// The date of scenario `i` of `count`: `end` itself without a spread, else
/// spread evenly over the `years` years ending at `end` (a fixed stride
/// through the days, so dates do not follow ids and neighbours in the vector
/// space are not neighbours in time).
pub fn spread_date(end: NaiveDate, years: u32, i: usize, count: usize) -> NaiveDate {
    if years == 0 || count == 0 {
        return end;
    }
    let days = i64::from(years) * 365;
    // An odd stride coprime with most spans walks every day before repeating.
    let step = (i as i64).wrapping_mul(7_919) % days.max(1);
    end - chrono::Duration::days(step)
}

pub async fn gen_scenarios(db: &Db, p: &GenScenarios, progress: &dyn Progress) -> Result<(u64, f64)> {
    let started = Instant::now();
    if p.count == 0 {
        return Err(Error::Invalid("--count must be at least 1".into()));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(p.seed);
    let market = Market::simulate(&mut rng);
    progress.start("scenarios", Some(p.count as u64));
    progress.message(&format!("gen-scenarios {}", p.scenario_set_id));
    let mut tx = db.begin().await?;
    let mut meta = BulkWriter::new(&SCENARIOS);
    let mut vectors = BulkWriter::new(&JOINT_EMBEDDINGS);
    let width = p.count.to_string().len().max(6);
    for i in 0..p.count {
        let id = format!("SYN_{i:0width$}");
        let v = market.scenario(&mut rng);
        // A generated scenario is known from its own date.
        let date = spread_date(p.scenario_date, p.spread_years, i, p.count);
        let severity = if vector::l2_norm(&v) > 0.25 {
            "HIGH"
        } else {
            "MEDIUM"
        };
        meta.push(
            &mut tx,
            vec![
                Value::Text(p.scenario_set_id.clone()),
                Value::Text(id.clone()),
                Value::Date(date),
                Value::Text("synthetic".into()),
                Value::Text(severity.into()),
                Value::Null,
            ],
        )
        .await
        .map_err(|e| db.err(e))?;
        let scope = json!({
            "entity_type": "SCENARIO",
            "scenario_set_id": p.scenario_set_id,
            "scenario_id": id,
            "source": "gen-scenarios",
            "metadata": {"shock_type": "synthetic", "severity": severity},
        });
        vectors
            .push(
                &mut tx,
                vec![
                    Value::Text(STAB_JOINT_TYPE.into()),
                    Value::Text(p.model_id.clone()),
                    Value::Text("SCENARIO".into()),
                    Value::Text(id),
                    Value::Text(p.scenario_set_id.clone()),
                    Value::Date(date),
                    Value::Null,
                    Value::Null,
                    Value::Json(scope.to_string()),
                    Value::Bytes(vector::to_bytes(&v)),
                    // Synthetic benchmark vectors belong to no encoder's space.
                    Value::Null,
                    Value::Date(date),
                ],
            )
            .await
            .map_err(|e| db.err(e))?;
        progress.advance(1);
    }
    meta.finish(&mut tx).await.map_err(|e| db.err(e))?;
    let n = vectors.finish(&mut tx).await.map_err(|e| db.err(e))?;
    db.commit(tx).await?;
    progress.finish();
    Ok((n, started.elapsed().as_secs_f64()))
}
