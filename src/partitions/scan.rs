//! Reading a set's scenario vectors from the database, a page at a time:
//! what the partition build and the exact scan from the database both read.

use super::provenance::SpaceTally;
use crate::encoders::describe_space;
use crate::error::{Error, Result};
use crate::storage::joint::{joint_scenarios_page, ScenarioVector};
use crate::storage::Db;
use crate::vector;

/// Rows read per query when loading.
const PAGE: u64 = 10_000;

/// What reading a set's scenario vectors left out, and their feature space.
pub struct ScenarioScan {
    /// Scenarios with an all-zero vector (no direction to rank by cosine).
    pub zero: Vec<String>,
    /// Scenarios with a vector that cannot be used (another length, a
    /// non-finite value), with the reason.
    pub unusable: Vec<(String, String)>,
    /// The one recorded feature space of the set (`None`: not recorded).
    pub feature_space: Option<String>,
}

/// Hand every STAB scenario vector of (model, set) that can be ranked by
/// cosine to `add(row, vector)` (the row without its bytes decoded), in id order, a page at a time;
/// the others are counted in the scan. A set with nothing to add is the
/// [`no_scenarios`] error, one that mixes feature spaces an error too. The
/// partition build and the exact scan from the database both read this way.
pub async fn scan_scenarios(
    db: &Db,
    model: &str,
    set: &str,
    mut add: impl FnMut(&ScenarioVector, &[f32]) -> std::result::Result<(), stabspace_index::IndexError>,
) -> Result<ScenarioScan> {
    let (mut zero, mut unusable, mut added) = (Vec::new(), Vec::new(), 0usize);
    let mut spaces = SpaceTally::default();
    let mut after: Option<String> = None;
    loop {
        let page = joint_scenarios_page(db, model, set, after.as_deref(), PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.scenario_id.clone());
        for s in &page {
            spaces.add(s.feature_space.as_deref(), 1);
            match vector::usable(&s.vector) {
                Ok(v) => {
                    add(s, &v).map_err(|e| {
                        Error::Invalid(format!(
                            "scenario {} of set {set} under {model}: {e}",
                            s.scenario_id
                        ))
                    })?;
                    added += 1;
                }
                Err(vector::Unusable::Zero) => zero.push(s.scenario_id.clone()),
                Err(why) => unusable.push((s.scenario_id.clone(), why.to_string())),
            }
        }
        if (page.len() as u64) < PAGE {
            break;
        }
    }
    if added == 0 {
        return Err(no_scenarios(db, model, set, zero.len() + unusable.len()).await);
    }
    Ok(ScenarioScan {
        feature_space: spaces.one(model, set)?,
        zero,
        unusable,
    })
}

pub async fn no_scenarios(db: &Db, model: &str, set: &str, zero: usize) -> Error {
    if zero > 0 {
        return Error::Invalid(format!(
            "every scenario vector of set {set:?} under {model} is all zeros or unusable (wrong length, \
             non-finite values); nothing can be ranked by cosine"
        ));
    }
    let sets = crate::storage::joint::scenario_sets_of_model(db, model).await;
    let models = crate::storage::joint::scenario_models(db).await;
    let elsewhere = match crate::storage::joint::scenario_models_of_set(db, set).await {
        Ok(v) => v.into_iter().filter(|(m, _)| m != model).collect::<Vec<_>>(),
        Err(e) => return e,
    };
    let registered = match crate::joint::registry::note(db, model).await {
        Ok(n) => format!(" ({n})"),
        Err(e) => return e,
    };
    if let Some((other, _)) = elsewhere.first() {
        let listed: Vec<String> = elsewhere
            .iter()
            .map(|(m, s)| {
                format!(
                    "{m} ({})",
                    s.as_deref()
                        .map_or("feature space not recorded".into(), describe_space)
                )
            })
            .collect();
        return Error::OtherJointModel {
            what: format!(
                "no STAB scenario vectors of set {set:?} under joint model {model}{registered}, but the set \
                 has them under {}",
                listed.join(", ")
            ),
            asked: model.to_string(),
            other: other.clone(),
        };
    }
    match (sets, models) {
        (Ok(sets), Ok(models)) => Error::Invalid(format!(
            "no STAB scenario vectors of set {set:?} under joint model {model:?}{registered}; sets under \
             {model}: {}; \
             joint models with scenario vectors: {}; run `stabspace backfill-joint-stab-fragility-scenarios \
             --scenario-set-id {set} --joint-model-id {model}` first",
            crate::joint::list_or(&sets, "none"),
            crate::joint::list_or(&models, "none"),
        )),
        (Err(e), _) | (_, Err(e)) => e,
    }
}
