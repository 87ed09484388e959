//! Nearest scenarios: the STAB scenario vectors of one (joint model, scenario
//! set), searched by cosine, with each hit's scenario date.
//!
//! The vectors are read from `joint_embeddings` and scanned exactly (the index
//! engine's in-memory flat index: f32 scan, f64 re-rank).

use chrono::NaiveDate;
use stabspace_index::FlatIndex;

use crate::error::{Error, Result};
use crate::joint::STAB_JOINT_TYPE;
use crate::storage::joint::{distinct, joint_scenarios_page};
use crate::storage::Db;
use crate::vector::{self, DIM};

/// One nearest scenario.
#[derive(Clone, Debug, PartialEq)]
pub struct ScenarioHit {
    pub scenario_id: String,
    pub scenario_as_of: NaiveDate,
    pub cosine: f64,
    pub euclidean: f64,
}

/// The searchable scenarios of one set under one joint model.
pub struct ScenarioSpace {
    pub model_id: String,
    pub set_id: String,
    index: FlatIndex,
    as_of: Vec<NaiveDate>,
    /// Scenarios left out because their vector is all zeros (no direction).
    pub zero_vectors: Vec<String>,
}

/// Rows read per query when loading.
const PAGE: u64 = 10_000;

impl ScenarioSpace {
    /// Read every STAB scenario vector of `set` under `model`.
    pub async fn load(db: &Db, model: &str, set: &str) -> Result<ScenarioSpace> {
        let mut index = FlatIndex::new(DIM)?;
        let mut as_of = Vec::new();
        let mut zero_vectors = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = joint_scenarios_page(db, model, set, after.as_deref(), PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.scenario_id.clone());
            for s in &page {
                let v = vector::from_bytes(&s.vector, &format!("scenario {} of {set}", s.scenario_id))?;
                match index.add(&s.scenario_id, &v) {
                    Ok(_) => as_of.push(s.as_of),
                    Err(stabspace_index::IndexError::ZeroVector { .. }) => {
                        zero_vectors.push(s.scenario_id.clone())
                    }
                    Err(e) => {
                        return Err(Error::Invalid(format!(
                            "scenario {} of set {set} under {model}: {e}",
                            s.scenario_id
                        )))
                    }
                }
            }
            if (page.len() as u64) < PAGE {
                break;
            }
        }
        if index.is_empty() {
            return Err(no_scenarios(db, model, set, zero_vectors.len()).await);
        }
        if !zero_vectors.is_empty() {
            eprintln!(
                "note: {} scenario(s) of {set} have an all-zero vector and cannot be ranked by cosine: {}",
                zero_vectors.len(),
                zero_vectors
                    .iter()
                    .take(5)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        Ok(ScenarioSpace {
            model_id: model.to_string(),
            set_id: set.to_string(),
            index,
            as_of,
            zero_vectors,
        })
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The k scenarios nearest `query` by cosine, best first.
    pub fn search(&self, query: &[f32], k: usize) -> Result<Vec<ScenarioHit>> {
        Ok(self.hits(self.index.search(query, k)?))
    }

    /// Many queries at once, on all cores.
    pub fn search_batch(&self, queries: &[Vec<f32>], k: usize) -> Result<Vec<Vec<ScenarioHit>>> {
        Ok(self
            .index
            .search_batch(queries, k)?
            .into_iter()
            .map(|h| self.hits(h))
            .collect())
    }

    fn hits(&self, hits: Vec<stabspace_index::Hit>) -> Vec<ScenarioHit> {
        hits.into_iter()
            .map(|h| ScenarioHit {
                scenario_as_of: self.as_of[h.row as usize],
                scenario_id: h.id,
                cosine: h.cosine,
                euclidean: h.euclidean,
            })
            .collect()
    }
}

pub async fn no_scenarios(db: &Db, model: &str, set: &str, zero: usize) -> Error {
    if zero > 0 {
        return Error::Invalid(format!(
            "every scenario vector of set {set:?} under {model} is all zeros; nothing can be ranked by cosine"
        ));
    }
    let sets = distinct(
        db,
        "scope_id",
        "joint_embeddings",
        "joint_type = $1 AND model_id = $2 AND entity_type = 'SCENARIO'",
        &[STAB_JOINT_TYPE, model],
    )
    .await;
    let models = distinct(
        db,
        "model_id",
        "joint_embeddings",
        "joint_type = $1 AND entity_type = 'SCENARIO'",
        &[STAB_JOINT_TYPE],
    )
    .await;
    match (sets, models) {
        (Ok(sets), Ok(models)) => Error::Invalid(format!(
            "no STAB scenario vectors of set {set:?} under joint model {model:?}; sets under {model}: {}; \
             joint models with scenario vectors: {}; run `stabspace backfill-joint-stab-fragility-scenarios \
             --scenario-set-id {set} --joint-model-id {model}` first",
            crate::joint::list_or(&sets, "none"),
            crate::joint::list_or(&models, "none"),
        )),
        (Err(e), _) | (_, Err(e)) => e,
    }
}
