//! The joint model registry (`joint_models`): a joint model is a named,
//! recorded combination of branch vectors in one feature space.
//!
//! A backfill under a new `--joint-model-id` registers it with what it
//! combines; a later backfill under the same id must combine the same branches
//! (the state and profile encoders and their weights, or the scenario encoder)
//! in the same feature space, or it is an error naming what differs, unless
//! `--replace`, which redefines the model and deletes the vectors stored
//! under its old definition. Fields stay NULL until a backfill determines
//! them: a state backfill the state and profile branches, a scenario
//! projection the scenario branch. The built-in ids keep their meaning:
//! `joint-stab-fragility-v1` is the documents' v1 space, `-v2` the v2 pair,
//! `-v3` the v3 pair.

use std::fmt;

use serde::Serialize;

use super::Weights;
use crate::encoders::{describe_space, multiscale, signature, V1_SPACE};
use crate::error::{Error, Result};
use crate::storage::joint::{count_stab_vectors, delete_stab_vectors};
use crate::storage::registry::{self as rows, Cell, Column, JointModelRow};
use crate::storage::{Db, Tx};

/// `kind` of the identity model: z = Σ w_b·z_b / Σ w_b over the branches present.
pub const IDENTITY_KIND: &str = "identity-weighted-average";
/// `profile_model_id` of a model whose states have no profile branch.
pub const NO_PROFILE: &str = "none";

/// The built-in joint models: id, and the feature spaces it may hold.
pub const BUILTIN: &[(&str, &str)] = &[
    ("joint-stab-fragility-v1", "the documents' v1 encoders (stab-v1)"),
    (
        "joint-stab-fragility-v2",
        "the v2 signature pair (stab-v2-signature-h<H>)",
    ),
    (
        "joint-stab-fragility-v3",
        "the v3 multi-scale pair (stab-v3-multiscale-h<H>)",
    ),
];

/// The built-in joint model for vectors of `space`, if there is one.
pub fn builtin_for_space(space: &str) -> Option<&'static str> {
    if space == V1_SPACE {
        Some("joint-stab-fragility-v1")
    } else if signature::horizon_of_space(space).is_some() {
        Some("joint-stab-fragility-v2")
    } else if multiscale::horizon_of_space(space).is_some() {
        Some("joint-stab-fragility-v3")
    } else {
        None
    }
}

/// One row of `joint_models`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct JointModelRecord {
    pub joint_model_id: String,
    pub kind: String,
    pub feature_space: Option<String>,
    pub stab_model_id: Option<String>,
    pub scenario_model_id: Option<String>,
    pub profile_model_id: Option<String>,
    pub w_stab: Option<f64>,
    pub w_scen: Option<f64>,
    pub w_prof: Option<f64>,
    pub registered_at: String,
}

impl From<JointModelRow> for JointModelRecord {
    fn from(r: JointModelRow) -> Self {
        JointModelRecord {
            joint_model_id: r.joint_model_id,
            kind: r.kind,
            feature_space: r.feature_space,
            stab_model_id: r.stab_model_id,
            scenario_model_id: r.scenario_model_id,
            profile_model_id: r.profile_model_id,
            w_stab: r.w_stab,
            w_scen: r.w_scen,
            w_prof: r.w_prof,
            registered_at: r.registered_at,
        }
    }
}

/// Every registered joint model, by id.
pub async fn joint_models(db: &Db) -> Result<Vec<JointModelRecord>> {
    Ok(rows::joint_models(db)
        .await?
        .into_iter()
        .map(Into::into)
        .collect())
}

/// The registered joint model `id`, if any.
pub async fn find(db: &Db, id: &str) -> Result<Option<JointModelRecord>> {
    Ok(rows::find(db, id).await?.map(Into::into))
}

/// What a backfill is about to store under a joint model.
#[derive(Clone, Debug)]
pub enum Claim {
    /// Instrument states: the state encoder, the profile model (if any) and the weights.
    States {
        stab_model_id: String,
        profile_model_id: Option<String>,
        weights: Weights,
        feature_space: Option<String>,
    },
    /// Scenarios projected from one scenario encoder's vectors.
    Scenarios {
        scenario_model_id: String,
        weights: Weights,
        feature_space: Option<String>,
    },
}

impl Claim {
    fn feature_space(&self) -> Option<&str> {
        match self {
            Claim::States { feature_space, .. } | Claim::Scenarios { feature_space, .. } => {
                feature_space.as_deref()
            }
        }
    }

    fn what(&self) -> String {
        match self {
            Claim::States { stab_model_id, .. } => format!("{stab_model_id} states"),
            Claim::Scenarios {
                scenario_model_id, ..
            } => format!("{scenario_model_id} scenarios"),
        }
    }
}

/// What registering did, for the backfill's summary.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Registration {
    /// The model was new and is now registered.
    pub registered: bool,
    /// Fields recorded now that were not known before.
    pub completed: Vec<&'static str>,
    /// `--replace`: what changed (`field: old → new`) and what was deleted.
    pub replaced: Vec<String>,
}

impl fmt::Display for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.registered {
            writeln!(
                f,
                "  registered a new joint model (stabspace show-joint-models lists it)"
            )?;
        } else if !self.completed.is_empty() {
            writeln!(f, "  recorded in the joint model: {}", self.completed.join(", "))?;
        }
        for r in &self.replaced {
            writeln!(f, "  --replace: {r}")?;
        }
        Ok(())
    }
}

/// A field a claim sets: (column, value as text for messages, value to bind).
struct Field {
    column: Column,
    label: &'static str,
    text: Option<String>,
    number: Option<f64>,
}

fn text(column: Column, label: &'static str, v: Option<&str>) -> Field {
    Field {
        column,
        label,
        text: v.map(str::to_string),
        number: None,
    }
}

fn number(column: Column, label: &'static str, v: f64) -> Field {
    Field {
        column,
        label,
        text: None,
        number: Some(v),
    }
}

impl Field {
    fn shown(&self) -> String {
        match (&self.text, self.number) {
            (Some(t), _) => t.clone(),
            (None, Some(n)) => format!("{n}"),
            (None, None) => "(not recorded)".into(),
        }
    }

    fn recorded(&self, r: &JointModelRecord) -> Option<String> {
        match self.column {
            Column::FeatureSpace => r.feature_space.clone(),
            Column::StabModelId => r.stab_model_id.clone(),
            Column::ScenarioModelId => r.scenario_model_id.clone(),
            Column::ProfileModelId => r.profile_model_id.clone(),
            Column::WStab => r.w_stab.map(|w| format!("{w}")),
            Column::WScen => r.w_scen.map(|w| format!("{w}")),
            Column::WProf => r.w_prof.map(|w| format!("{w}")),
        }
    }

    /// The column and the value to write into it (NULL when it has none).
    fn cell(&self) -> (Column, Cell<'_>) {
        let value = match self.number {
            Some(n) => Cell::Number(n),
            None => Cell::Text(self.text.as_deref()),
        };
        (self.column, value)
    }
}

/// The fields a claim determines. Weights are compared only where they
/// change the vectors: the state weights when there is a profile branch.
fn fields(claim: &Claim) -> (Vec<Field>, Vec<Field>) {
    let space = text(Column::FeatureSpace, "feature space", claim.feature_space());
    match claim {
        Claim::States {
            stab_model_id,
            profile_model_id,
            weights,
            ..
        } => {
            let mut compared = vec![
                space,
                text(Column::StabModelId, "state branch", Some(stab_model_id)),
                text(
                    Column::ProfileModelId,
                    "profile branch",
                    Some(profile_model_id.as_deref().unwrap_or(NO_PROFILE)),
                ),
            ];
            let w = vec![
                number(Column::WStab, "w_stab", weights.stab),
                number(Column::WProf, "w_prof", weights.profile),
            ];
            if profile_model_id.is_some() {
                compared.extend(w);
                (compared, Vec::new())
            } else {
                (compared, w)
            }
        }
        Claim::Scenarios {
            scenario_model_id,
            weights,
            ..
        } => (
            vec![
                space,
                text(
                    Column::ScenarioModelId,
                    "scenario branch",
                    Some(scenario_model_id),
                ),
            ],
            vec![number(Column::WScen, "w_scen", weights.scenario)],
        ),
    }
}

/// A one-line description of a record, for messages.
pub fn describe(r: &JointModelRecord) -> String {
    let or = |v: &Option<String>| v.clone().unwrap_or_else(|| "(not recorded yet)".into());
    let mut s = format!(
        "{} ({}): feature space {}; state branch {}, profile branch {}, scenario branch {}",
        r.joint_model_id,
        r.kind,
        r.feature_space
            .as_deref()
            .map_or("(not recorded yet)".into(), describe_space),
        or(&r.stab_model_id),
        or(&r.profile_model_id),
        or(&r.scenario_model_id),
    );
    if r.profile_model_id.as_deref().is_some_and(|p| p != NO_PROFILE) {
        if let (Some(a), Some(b)) = (r.w_stab, r.w_prof) {
            s += &format!("; w_stab {a}, w_prof {b}");
        }
    }
    s
}

/// A built-in id holds only its own vectors: the error says which id does.
fn check_builtin(id: &str, claim: &Claim) -> Result<()> {
    let Some(&(_, meaning)) = BUILTIN.iter().find(|(b, _)| *b == id) else {
        return Ok(());
    };
    let Some(space) = claim.feature_space() else {
        return Ok(());
    };
    if builtin_for_space(space) == Some(id) {
        return Ok(());
    }
    let instead = match builtin_for_space(space) {
        Some(other) => format!("store them under --joint-model-id {other} (or an id of your own)"),
        None => "store them under a --joint-model-id of your own".into(),
    };
    Err(Error::Invalid(format!(
        "joint model {id} is the space of {meaning}; {} are in {}: {instead}",
        claim.what(),
        describe_space(space)
    )))
}

/// Register `id` for `claim` inside the backfill's transaction, or check that
/// the claim agrees with the registered definition. With `replace`, a
/// differing definition is overwritten and the vectors stored under the old
/// one are deleted (in the same transaction).
pub async fn register(db: &Db, tx: &mut Tx, id: &str, claim: &Claim, replace: bool) -> Result<Registration> {
    check_builtin(id, claim)?;
    let (compared, recorded_only) = fields(claim);
    // Insert first: a concurrent backfill registering the same new id waits
    // on the key instead of failing on it, and on SQLite the write lock is
    // taken here (waiting out the busy timeout) rather than on a later write.
    let all: Vec<(Column, Cell<'_>)> = compared.iter().chain(&recorded_only).map(Field::cell).collect();
    let inserted = rows::insert_if_absent(tx, id, IDENTITY_KIND, &all)
        .await
        .map_err(|e| db.err(e))?;
    if inserted {
        return Ok(Registration {
            registered: true,
            ..Default::default()
        });
    }
    // Registered before: lock the row (PostgreSQL) so that no other backfill
    // completes or replaces it until this one commits.
    let existing: JointModelRecord = rows::lock(tx, id).await.map_err(|e| db.err(e))?.into();

    let differs: Vec<(&Field, String)> = compared
        .iter()
        .filter_map(|f| {
            let old = f.recorded(&existing)?;
            let same = match f.number {
                Some(n) => old.parse::<f64>().is_ok_and(|o| o == n),
                None => f.text.as_deref().is_none_or(|t| t == old),
            };
            (!same).then_some((f, old))
        })
        .collect();
    let mut out = Registration::default();
    let mut set: Vec<&Field> = Vec::new();
    let has_value = |f: &&Field| f.text.is_some() || f.number.is_some();
    if differs.is_empty() {
        for f in compared.iter().filter(has_value) {
            if f.recorded(&existing).is_none() {
                out.completed.push(f.label);
                set.push(f);
            }
        }
        // Weights that do not enter the vectors: recorded as last given.
        for f in recorded_only.iter().filter(has_value) {
            if f.recorded(&existing).is_none() {
                out.completed.push(f.label);
            }
            set.push(f);
        }
    } else if !replace {
        let list: Vec<String> = differs
            .iter()
            .map(|(f, old)| format!("{} {} (registered: {old})", f.label, f.shown()))
            .collect();
        return Err(Error::Invalid(format!(
            "joint model {id} is registered as {}; these {} differ: {}. Give the new combination its own \
             --joint-model-id, or pass --replace to redefine {id} (the vectors stored under its old \
             definition are deleted)",
            describe(&existing),
            claim.what(),
            list.join("; ")
        )));
    } else {
        let space_changed = differs.iter().any(|(f, _)| f.column == Column::FeatureSpace);
        for (f, old) in &differs {
            out.replaced
                .push(format!("{id}: {} {old} → {}", f.label, f.shown()));
        }
        set.extend(compared.iter().chain(&recorded_only).filter(has_value));
        // The other side's branch is of the old space when the space changes.
        let (own, other) = match claim {
            Claim::States { .. } => ("INSTRUMENT", "SCENARIO"),
            Claim::Scenarios { .. } => ("SCENARIO", "INSTRUMENT"),
        };
        let mut deleted = vec![(own, delete_rows(db, tx, id, own).await?)];
        if space_changed {
            let clear: &[Column] = match claim {
                Claim::States { .. } => &[Column::ScenarioModelId, Column::WScen],
                Claim::Scenarios { .. } => &[
                    Column::StabModelId,
                    Column::ProfileModelId,
                    Column::WStab,
                    Column::WProf,
                ],
            };
            rows::clear(tx, id, clear).await.map_err(|e| db.err(e))?;
            deleted.push((other, delete_rows(db, tx, id, other).await?));
        }
        let gone: Vec<String> = deleted
            .iter()
            .map(|(kind, n)| format!("{n} {} row(s)", kind.to_lowercase()))
            .collect();
        let mut note = format!(
            "{id}: deleted {} stored under the old definition",
            gone.join(" and ")
        );
        if deleted.iter().any(|(k, n)| *k == "SCENARIO" && *n > 0) {
            note += &format!(
                "; re-project the scenario sets under {id} (backfill-joint-stab-fragility-scenarios) to \
                 rebuild their partitions"
            );
        }
        out.replaced.push(note);
    }
    if !set.is_empty() {
        let cells: Vec<(Column, Cell<'_>)> = set.iter().map(|f| f.cell()).collect();
        rows::update(tx, id, &cells).await.map_err(|e| db.err(e))?;
    }
    Ok(out)
}

async fn delete_rows(db: &Db, tx: &mut Tx, id: &str, entity_type: &str) -> Result<u64> {
    delete_stab_vectors(tx, id, entity_type)
        .await
        .map_err(|e| db.err(e))
}

/// What the registry says of `model`, for errors: its definition, or that it
/// is not registered (a typo?) and which are.
pub async fn note(db: &Db, model: &str) -> Result<String> {
    if let Some(r) = find(db, model).await? {
        return Ok(format!("{model} is {}", describe(&r)));
    }
    let vectors = count_stab_vectors(db, model).await?;
    if vectors > 0 {
        return Ok(format!(
            "{model} has {vectors} vector(s) but no registry entry: written by gen-scenarios (synthetic, \
             in no feature space) or by another tool"
        ));
    }
    let known: Vec<String> = joint_models(db)
        .await?
        .into_iter()
        .map(|r| r.joint_model_id)
        .collect();
    Ok(format!(
        "{model:?} is not a registered joint model (registered: {}); check the spelling",
        if known.is_empty() {
            "none".into()
        } else {
            known.join(", ")
        }
    ))
}
