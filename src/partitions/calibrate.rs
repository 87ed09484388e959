//! Recalibrating a partition in place (`stabspace index calibrate`): its
//! recall measured anew on the queries users send (the joint model's recent
//! states, or a file of queries) when that population changed, the graph
//! and every other section kept byte for byte, the new file published as a
//! build is. Its freshness does not change: the rows are the same.

use chrono::{NaiveDate, Utc};
use stabspace_index::Calibration;

use super::build::record_of;
use super::provenance::{CalibrationRecord, Provenance};
use super::queries::{recent_state_queries, CalibrationQueries};
use super::store::PartitionStore;
use crate::error::{Error, Result};
use crate::storage::Db;

/// What a recalibration did.
#[derive(Clone, Debug)]
pub struct Recalibrated {
    pub path: std::path::PathBuf,
    pub provenance: Provenance,
    /// The calibration queries took their breadth from before.
    pub before: Option<CalibrationRecord>,
}

/// Where recalibration queries come from.
pub enum QuerySource {
    /// The joint model's most recent states on or before the date (any date: `None`).
    States(Option<NaiveDate>),
    /// Vectors read already (`--queries FILE`).
    Given(CalibrationQueries),
}

/// Recalibrate the partition of (model, set) on `source` and publish it.
pub async fn recalibrate(
    db: &Db,
    store: &dyn PartitionStore,
    model: &str,
    set: &str,
    source: &QuerySource,
) -> Result<Recalibrated> {
    let base = store.base(model, set)?;
    let path = store.locate(model, set);
    if !store.exists(&path) {
        return Err(Error::Invalid(format!(
            "no partition of {model} / {set} in {}: build it with `stabspace index build --model-id {model} \
             --scenario-set-id {set}`",
            store.describe()
        )));
    }
    let (p, _) = store.open(&path)?;
    let mut provenance = Provenance::of(&p)?;
    if !p.has_graph() {
        return Err(Error::Invalid(format!(
            "the partition of {model} / {set} has {} rows and no graph: it is searched exactly, there is no \
             breadth to calibrate",
            p.len()
        )));
    }
    let states;
    let queries = match source {
        QuerySource::Given(q) => q,
        QuerySource::States(until) => {
            states = recent_state_queries(db, model, *until).await?.ok_or_else(|| {
                Error::Invalid(format!(
                    "no instrument states of {model}{} in {} to calibrate on: backfill them \
                     (backfill-joint-stab-fragility-states) or give --queries FILE",
                    until.map_or(String::new(), |d| format!(" on or before {d}")),
                    db.label()
                ))
            })?;
            &states
        }
    };
    let before = provenance.calibration.clone();
    let seed = p.info().seed;
    let old = provenance.calibrations.clone();
    let published = store.publish(model, set, base, &mut |at| {
        tokio::task::block_in_place(|| {
            p.recalibrate(at, &queries.vectors, seed, |all: &[Calibration]| {
                let record = |c: &Calibration| record_of(c, &old, Some(&queries.source));
                provenance.calibrations = all.iter().map(record).collect();
                provenance.calibration = stabspace_index::preferred_calibration(all).map(record);
                provenance.calibration_note = None;
                provenance.calibrated_at =
                    Some(Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
                serde_json::to_string(&provenance).expect("provenance serialises")
            })
        })?;
        Ok(())
    })?;
    Ok(Recalibrated {
        path: published.location,
        provenance,
        before,
    })
}

impl std::fmt::Display for Recalibrated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = &self.provenance;
        writeln!(
            f,
            "index {} / {}: recalibrated in place (graph unchanged) → {}",
            p.model_id,
            p.scenario_set_id,
            self.path.display()
        )?;
        if let Some(b) = &self.before {
            writeln!(f, "  before: on {}: {}", b.describe(), b.summary())?;
        }
        write!(f, "{}", super::build::calibration_lines(p))
    }
}
