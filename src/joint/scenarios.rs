//! `backfill-joint-stab-fragility-scenarios`: scenario vectors projected into the joint space.

use std::time::Instant;

use serde_json::json;

use super::list_or;
use super::registry::{self, Claim};
use super::{joint_model, Branches, Weights, STAB_JOINT_TYPE};
use crate::backfill::BackfillSummary;
use crate::encoders::{recorded_space, SCENARIO_MODELS};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::storage::bulk::{BulkWriter, Value};
use crate::storage::prices::market_calendar;
use crate::storage::scenarios::historical_path_ends;
use crate::storage::tables::JOINT_EMBEDDINGS;
use crate::storage::vectors::{
    count_numeric_scenarios, numeric_scenario_models, numeric_scenario_sets, numeric_scenarios_page,
};
use crate::storage::Db;
use crate::{pointintime, vector};

#[derive(Clone, Debug)]
pub struct ScenarioProjection {
    pub scenario_set_id: String,
    pub scenario_model_id: String,
    pub joint_model_id: String,
    pub weights: Weights,
    pub limit: Option<u64>,
    /// Redefine the joint model if it is registered otherwise.
    pub replace: bool,
}

/// Scenarios read per query.
const PAGE: u64 = 5000;

pub async fn backfill_joint_scenarios(
    db: &Db,
    p: &ScenarioProjection,
    progress: &dyn Progress,
) -> Result<BackfillSummary> {
    let started = Instant::now();
    let model = joint_model(&p.joint_model_id, p.weights)?;
    let set = p.scenario_set_id.as_str();
    let mut summary = BackfillSummary {
        model_id: p.joint_model_id.clone(),
        ..Default::default()
    };
    let total = count_numeric_scenarios(db, &p.scenario_model_id, set)
        .await?
        .max(0) as u64;
    progress.start("scenarios", Some(p.limit.map_or(total, |l| l.min(total))));
    progress.message(&format!("{} {set}", p.joint_model_id));
    let window_ends = historical_window_ends(db, set).await?;
    let mut tx = db.begin().await?;
    let mut writer = BulkWriter::new(&JOINT_EMBEDDINGS);
    let mut after: Option<String> = None;
    let mut space: Option<(String, Option<String>)> = None;
    loop {
        let want = p.limit.map_or(PAGE, |l| PAGE.min(l - summary.encoded));
        if want == 0 {
            break;
        }
        let mut page = numeric_scenarios_page(db, &p.scenario_model_id, set, after.as_deref(), want).await?;
        for s in &mut page {
            s.feature_space = recorded_space(&p.scenario_model_id, s.feature_space.take());
        }
        let Some(last) = page.last() else { break };
        after = Some(last.scenario_id.clone());
        if summary.encoded == 0 {
            let first = &page[0];
            space = Some((first.scenario_id.clone(), first.feature_space.clone()));
            let claim = Claim::Scenarios {
                scenario_model_id: p.scenario_model_id.clone(),
                weights: p.weights,
                feature_space: first.feature_space.clone(),
            };
            summary.registration =
                registry::register(db, &mut tx, &p.joint_model_id, &claim, p.replace).await?;
        }
        for s in &page {
            let (shock_type, severity) = (&s.shock_type, &s.severity);
            let known_from = pointintime::known_from(
                s.as_of,
                shock_type.as_deref(),
                s.known_from,
                window_ends.get(&s.scenario_id).copied(),
            );
            let what = format!(
                "{} vector of scenario {} of {set}",
                p.scenario_model_id, s.scenario_id
            );
            // One space per run: the first scenario's, which every other must share.
            if let Some((first, first_space)) = &space {
                Error::check_spaces(
                    || what.clone(),
                    s.feature_space.as_deref(),
                    || format!("{} vector of scenario {first} of {set}", p.scenario_model_id),
                    first_space.as_deref(),
                )?;
            }
            let v = vector::from_bytes(&s.vector, &what)?;
            let z = model.combine(&Branches {
                scenario: Some(&v),
                ..Default::default()
            })?;
            let scope = json!({
                "entity_type": "SCENARIO",
                "scenario_set_id": set,
                "scenario_id": s.scenario_id,
                "source": "scenarios",
                "scenario_model_id": p.scenario_model_id,
                "feature_space": s.feature_space,
                "metadata": {"shock_type": shock_type, "severity": severity},
                "known_from": known_from,
            });
            let row = vec![
                Value::Text(STAB_JOINT_TYPE.into()),
                Value::Text(p.joint_model_id.clone()),
                Value::Text("SCENARIO".into()),
                Value::Text(s.scenario_id.clone()),
                Value::Text(set.to_string()),
                Value::Date(s.as_of),
                Value::Null,
                Value::Null,
                Value::Json(scope.to_string()),
                Value::Bytes(vector::to_bytes(&z)),
                s.feature_space.clone().map_or(Value::Null, Value::Text),
                Value::Date(known_from),
            ];
            writer.push(&mut tx, row).await.map_err(|e| db.err(e))?;
            summary.encoded += 1;
            progress.advance(1);
        }
        if (page.len() as u64) < want {
            break;
        }
    }
    if summary.encoded == 0 {
        let sets = numeric_scenario_sets(db, &p.scenario_model_id).await?;
        if let Some(note) =
            super::unknown_model_note(&p.scenario_model_id, "scenario encoder", SCENARIO_MODELS)
        {
            let models = numeric_scenario_models(db, set).await?;
            return Err(Error::Invalid(format!(
                "no {} vectors of scenario set {set:?} are stored and {note} (models with vectors of the \
                 set: {})",
                p.scenario_model_id,
                list_or(&models, "none"),
            )));
        }
        return Err(Error::Invalid(format!(
            "no {} vectors of scenario set {set:?} (with a row in `scenarios`) are stored; sets with {} \
             vectors: {}; run `stabspace backfill-numeric-scenario-embeddings --scenario-set-id {set} \
             --model-id {}` first",
            p.scenario_model_id,
            p.scenario_model_id,
            list_or(&sets, "none"),
            p.scenario_model_id
        )));
    }
    writer.finish(&mut tx).await.map_err(|e| db.err(e))?;
    crate::faults::pause_point(crate::faults::JOINT_BEFORE_COMMIT);
    db.commit(tx).await?;
    progress.finish();
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// The last trading day of each historical window of `set` on its market's
/// calendar (windows without a path are left out: they are known from
/// their scenario date).
async fn historical_window_ends(
    db: &Db,
    set: &str,
) -> Result<std::collections::HashMap<String, chrono::NaiveDate>> {
    let mut calendars: std::collections::HashMap<String, Vec<chrono::NaiveDate>> = Default::default();
    let mut out = std::collections::HashMap::new();
    let starts = crate::storage::scenarios::scenario_meta(db, set).await?;
    for (id, max_day, market) in historical_path_ends(db, set).await? {
        let (Some(max_day), Some(meta)) = (max_day, starts.get(&id)) else {
            continue;
        };
        let calendar = match market {
            Some(m) => {
                if !calendars.contains_key(&m) {
                    let days = market_calendar(db, &m).await?;
                    calendars.insert(m.clone(), days);
                }
                calendars[&m].as_slice()
            }
            None => &[],
        };
        let last = pointintime::last_path_day(calendar, meta.scenario_date, max_day.max(0) as usize);
        out.insert(id, last);
    }
    Ok(out)
}
