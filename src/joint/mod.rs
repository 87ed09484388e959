//! The STAB joint space: joint models that combine branch vectors, and the
//! backfills that store joint states, scenarios and issuer profiles in
//! `joint_embeddings`.

mod profile;
pub mod registry;
mod scenarios;
mod states;

pub use profile::{backfill_joint_profiles, encode_profiles, ProfileBackfill, PROFILE_MODELS};
pub use registry::{Claim, JointModelRecord, Registration};
pub use scenarios::{backfill_joint_scenarios, ScenarioProjection};
pub use states::{backfill_joint_states, StateBackfill, StateSummary};

use crate::error::{Error, Result};
use crate::vector::DIM;

/// `joint_type` of stability/fragility states and scenarios, and of issuer
/// profile embeddings: values of a storage column, defined there.
pub use crate::storage::joint::{PROFILE_JOINT_TYPE, STAB_JOINT_TYPE};

/// Ids of the built-in joint models, in the order `--help` lists them (any
/// other id is registered by its first backfill: [`registry`]).
pub const JOINT_MODELS: &[&str] = &[
    "joint-stab-fragility-v1",
    "joint-stab-fragility-v2",
    "joint-stab-fragility-v3",
];

/// For hints that would suggest a command with `model`: `Some(note)` when
/// `model` is not one of `known`, so the hint names the known ids instead of
/// suggesting a backfill under a mistyped one (which would fail).
pub fn unknown_model_note(model: &str, kind: &str, known: &[&str]) -> Option<String> {
    (!known.contains(&model)).then(|| {
        format!(
            "{model:?} is not a {kind} stabspace knows (known: {}); check the spelling",
            known.join(", ")
        )
    })
}

/// The branch vectors available for one entity, each in R^384.
#[derive(Clone, Copy, Debug, Default)]
pub struct Branches<'a> {
    pub stab: Option<&'a [f32]>,
    pub scenario: Option<&'a [f32]>,
    pub profile: Option<&'a [f32]>,
}

/// Branch weights of a weighted-average combination.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Weights {
    pub stab: f64,
    pub scenario: f64,
    pub profile: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            stab: 1.0,
            scenario: 1.0,
            profile: 1.0,
        }
    }
}

/// Maps the branches of an entity to its joint vector. The identity model
/// below is v0; a learned projection implements the same trait.
pub trait JointModel: Send + Sync {
    fn model_id(&self) -> &str;
    fn combine(&self, branches: &Branches<'_>) -> Result<Vec<f32>>;
}

/// `joint-stab-fragility-v1`: z_num = Σ w_b·z_b / Σ w_b over the branches
/// present, then z_joint = z_num unchanged (`IdentityNumericJointModel`).
#[derive(Clone, Debug)]
pub struct IdentityNumericJointModel {
    model_id: String,
    weights: Weights,
}

impl IdentityNumericJointModel {
    pub fn new(model_id: &str, weights: Weights) -> Result<Self> {
        for (name, w) in [
            ("--w-stab", weights.stab),
            ("--w-scen", weights.scenario),
            ("--w-prof", weights.profile),
        ] {
            if !w.is_finite() || w < 0.0 {
                return Err(Error::Invalid(format!(
                    "{name} must be a finite number ≥ 0, got {w}"
                )));
            }
        }
        Ok(IdentityNumericJointModel {
            model_id: model_id.to_string(),
            weights,
        })
    }
}

impl JointModel for IdentityNumericJointModel {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn combine(&self, b: &Branches<'_>) -> Result<Vec<f32>> {
        let present: Vec<(&[f32], f64)> = [
            (b.stab, self.weights.stab),
            (b.scenario, self.weights.scenario),
            (b.profile, self.weights.profile),
        ]
        .into_iter()
        .filter_map(|(v, w)| v.map(|v| (v, w)))
        .collect();
        if present.is_empty() {
            return Err(Error::Invalid("no branch vector to combine".into()));
        }
        let total: f64 = present.iter().map(|(_, w)| w).sum();
        if total <= 0.0 {
            return Err(Error::Invalid(
                "the weights of the branches present sum to 0; give at least one a positive weight".into(),
            ));
        }
        let mut acc = vec![0f64; DIM];
        for (v, w) in &present {
            if v.len() != DIM {
                return Err(Error::Invalid(format!(
                    "branch vector has {} dimensions, expected {DIM}",
                    v.len()
                )));
            }
            for (a, &x) in acc.iter_mut().zip(v.iter()) {
                *a += w * f64::from(x);
            }
        }
        Ok(acc.into_iter().map(|a| (a / total) as f32).collect())
    }
}

/// The longest joint model id (it names a directory of partitions).
pub const MAX_ID_LEN: usize = 100;

/// Check a joint model id: it names a directory of index partitions, so
/// letters, digits, `.`, `_` and `-` only, not starting with `.`.
pub fn check_model_id(model_id: &str) -> Result<()> {
    let ok = !model_id.is_empty()
        && model_id.len() <= MAX_ID_LEN
        && !model_id.starts_with('.')
        && model_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "--joint-model-id {model_id:?}: use 1 to {MAX_ID_LEN} letters, digits, '.', '_' or '-' (not \
             starting with '.'), e.g. joint-stab-prof-v1"
        )))
    }
}

/// The identity joint model under `model_id` (what it holds is recorded in
/// the registry by the backfills: [`registry::register`]).
pub fn joint_model(model_id: &str, weights: Weights) -> Result<Box<dyn JointModel>> {
    check_model_id(model_id)?;
    Ok(Box::new(IdentityNumericJointModel::new(model_id, weights)?))
}

/// `a, b, c`, or `empty` when there is nothing.
pub fn list_or(items: &[String], empty: &str) -> String {
    if items.is_empty() {
        empty.to_string()
    } else {
        items.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_model_averages_the_present_branches_by_weight() {
        let stab: Vec<f32> = (0..DIM).map(|i| i as f32).collect();
        let prof: Vec<f32> = vec![3.0; DIM];
        let w = Weights {
            stab: 1.0,
            scenario: 1.0,
            profile: 3.0,
        };
        let m = IdentityNumericJointModel::new("joint-stab-fragility-v1", w).unwrap();
        let only = m
            .combine(&Branches {
                stab: Some(&stab),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(only, stab, "one branch passes through unchanged");
        let both = m
            .combine(&Branches {
                stab: Some(&stab),
                profile: Some(&prof),
                ..Default::default()
            })
            .unwrap();
        for (i, x) in both.iter().enumerate() {
            assert_eq!(*x, ((i as f64 + 9.0) / 4.0) as f32, "slot {i}");
        }
        assert!(m.combine(&Branches::default()).is_err());
        assert!(joint_model("../escape", Weights::default()).is_err());
        assert!(joint_model("", Weights::default()).is_err());
        assert!(joint_model("joint-stab-prof-v1", Weights::default()).is_ok());
        assert!(IdentityNumericJointModel::new("x", Weights { stab: -1.0, ..w }).is_err());
    }
}
