//! `backfill-numeric-scenario-embeddings`: scenario return panels of one set.

use std::collections::BTreeSet;
use std::time::Instant;

use super::BackfillSummary;
use crate::encoders::{scenario_encoder, ScenarioPanel};
use crate::error::{Error, Result};
use crate::faults;
use crate::progress::Progress;
use crate::storage::bulk::{BulkWriter, Value};
use crate::storage::scenarios::{self, PathCell};
use crate::storage::tables::NUMERIC_WINDOW_EMBEDDINGS;
use crate::storage::Db;
use crate::vector;

#[derive(Clone, Debug)]
pub struct ScenarioBackfill {
    pub scenario_set_id: String,
    pub model_id: String,
    /// H of the v2 signature encoder.
    pub horizon_days: usize,
    pub limit: Option<u64>,
}

/// Scenarios whose paths are read per query.
const SCENARIOS_PER_READ: usize = 1000;

pub async fn backfill_numeric_scenario_embeddings(
    db: &Db,
    p: &ScenarioBackfill,
    progress: &dyn Progress,
) -> Result<BackfillSummary> {
    let started = Instant::now();
    let encoder = scenario_encoder(&p.model_id, p.horizon_days)?;
    let space = encoder.feature_space();
    let set = p.scenario_set_id.as_str();
    let ids = scenarios::scenario_ids(db, set, p.limit).await?;
    if ids.is_empty() {
        let sets = scenarios::sets_with_paths(db).await?;
        return Err(Error::Invalid(format!(
            "scenario set {set:?} has no scenario paths; sets with paths: {}",
            if sets.is_empty() {
                "none (import scenario-paths first)".into()
            } else {
                sets.join(", ")
            }
        )));
    }
    let meta = scenarios::scenario_meta(db, set).await?;
    let missing: Vec<&String> = ids.iter().filter(|id| !meta.contains_key(*id)).collect();
    if let Some(first) = missing.first() {
        return Err(Error::Invalid(format!(
            "scenario {first:?} of set {set:?} has paths but no row in `scenarios` (no scenario_date); \
             {} such scenario(s) — import the scenarios file first",
            missing.len()
        )));
    }

    progress.start("scenarios", Some(ids.len() as u64));
    progress.message(&format!("{} {set}", p.model_id));
    faults::pause_point(faults::SCENARIO_BEFORE_WRITE);
    let half = (ids.len() as u64).div_ceil(2);
    let mut tx = db.begin().await?;
    let mut writer = BulkWriter::new(&NUMERIC_WINDOW_EMBEDDINGS);
    let mut encoded = 0u64;
    // A reader task fetches the next chunk of panels while this one is encoded
    // and written: reads and the write transaction use different connections.
    let (send, mut recv) = tokio::sync::mpsc::channel(2);
    let ranges: Vec<(String, String)> = ids
        .chunks(SCENARIOS_PER_READ)
        .map(|c| (c[0].clone(), c[c.len() - 1].clone()))
        .collect();
    let reader = {
        let (db, set) = (db.clone(), set.to_string());
        tokio::spawn(async move {
            for (first, last) in ranges {
                let rows = scenarios::scenario_panels(&db, &set, &first, &last).await;
                let failed = rows.is_err();
                if send.send(rows).await.is_err() || failed {
                    break;
                }
            }
        })
    };
    while let Some(rows) = recv.recv().await {
        for row in rows? {
            let panel = if row.returns.len() == row.days * row.instruments {
                ScenarioPanel {
                    scenario_id: row.scenario_id,
                    days: row.days,
                    instruments: row.instruments,
                    values: row.returns,
                }
            } else {
                // Incomplete: read its cells one by one to name the missing one.
                let cells = scenarios::scenario_paths(db, set, &row.scenario_id, &row.scenario_id).await?;
                build_panel(set, &cells)?
            };
            let v = encoder.encode(&panel)?;
            let m = &meta[&panel.scenario_id];
            let row = vec![
                Value::Text("SCENARIO".into()),
                Value::Text(panel.scenario_id.clone()),
                Value::Text(set.to_string()),
                Value::Date(m.scenario_date),
                Value::Int(encoder.window_days(&panel) as i64),
                Value::Text(p.model_id.clone()),
                Value::Bytes(vector::to_bytes(&v)),
                Value::Null,
                Value::Null,
                Value::Text(space.clone()),
            ];
            writer.push(&mut tx, row).await.map_err(|e| db.err(e))?;
            encoded += 1;
            progress.advance(1);
            if encoded == half && faults::armed(faults::SCENARIO_MID_WRITE) {
                // Test hook only: the rows so far into the table, uncommitted.
                writer.flush(&mut tx).await.map_err(|e| db.err(e))?;
                faults::pause_point(faults::SCENARIO_MID_WRITE);
            }
        }
    }
    reader
        .await
        .map_err(|e| Error::Invalid(format!("scenario reader task failed: {e}")))?;
    writer.finish(&mut tx).await.map_err(|e| db.err(e))?;
    faults::pause_point(faults::SCENARIO_BEFORE_COMMIT);
    db.commit(tx).await?;
    progress.finish();
    Ok(BackfillSummary {
        model_id: p.model_id.clone(),
        encoded,
        seconds: started.elapsed().as_secs_f64(),
        ..Default::default()
    })
}

/// The (day × instrument) panel of one scenario's cells, which arrive ordered by
/// day then instrument. Every day must have a return for every instrument.
pub fn build_panel(set: &str, cells: &[PathCell]) -> Result<ScenarioPanel> {
    let scenario_id = cells[0].scenario_id.clone();
    let days: Vec<i32> = cells
        .iter()
        .map(|c| c.day_index)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let instruments: Vec<String> = cells
        .iter()
        .map(|c| c.instrument_id.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(str::to_string)
        .collect();
    let n = instruments.len();
    let mut grid: Vec<Option<f64>> = vec![None; days.len() * n];
    for c in cells {
        let d = days.binary_search(&c.day_index).expect("day collected above");
        let j = instruments
            .binary_search_by(|x| x.as_str().cmp(&c.instrument_id))
            .expect("instrument collected above");
        grid[d * n + j] = Some(c.ret);
    }
    if let Some(pos) = grid.iter().position(Option::is_none) {
        return Err(Error::Invalid(format!(
            "scenario {scenario_id:?} of set {set:?}: no return for instrument {:?} on day_index {} \
             (panel of {} days × {} instruments has {} of {} cells)",
            instruments[pos % n],
            days[pos / n],
            days.len(),
            n,
            cells.len(),
            grid.len()
        )));
    }
    Ok(ScenarioPanel {
        scenario_id,
        days: days.len(),
        instruments: n,
        values: grid.into_iter().map(|v| v.unwrap_or_default()).collect(),
    })
}
