//! `backfill-joint-stab-fragility-states`: instrument STAB states in the joint space.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Instant;

use chrono::NaiveDate;
use serde_json::json;

use super::registry::{self, Claim};
use super::{joint_model, list_or, Branches, Weights, PROFILE_JOINT_TYPE, STAB_JOINT_TYPE};
use crate::backfill::BackfillSummary;
use crate::encoders::{recorded_space, WINDOW_MODELS};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::storage::bulk::{BulkWriter, Value};
use crate::storage::joint::{earliest_profile_date, latest_joint};
use crate::storage::market::{market_instruments, markets};
use crate::storage::prune::{keep_only, VectorKey};
use crate::storage::tables::JOINT_EMBEDDINGS;
use crate::storage::vectors::{latest_numeric_state_date, numeric_state_models, numeric_states};
use crate::storage::Db;
use crate::vector;

#[derive(Clone, Debug)]
pub struct StateBackfill {
    pub as_of: NaiveDate,
    pub market_id: String,
    pub region: Option<String>,
    pub stab_model_id: String,
    pub profile_model_id: Option<String>,
    pub joint_model_id: String,
    pub weights: Weights,
    pub limit: Option<u64>,
    /// Redefine the joint model if it is registered otherwise.
    pub replace: bool,
}

/// What a state backfill did.
#[derive(Clone, Debug, Default)]
pub struct StateSummary {
    pub summary: BackfillSummary,
    pub with_profile: u64,
    pub without_profile: u64,
}

impl fmt::Display for StateSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.summary)?;
        writeln!(
            f,
            "  states with a profile branch (stab+profile): {}, without (stab): {}",
            self.with_profile, self.without_profile
        )
    }
}

pub async fn backfill_joint_states(
    db: &Db,
    p: &StateBackfill,
    progress: &dyn Progress,
) -> Result<StateSummary> {
    let started = Instant::now();
    let model = joint_model(&p.joint_model_id, p.weights)?;
    let region = p.region.as_deref();
    let mut states = numeric_states(db, &p.stab_model_id, &p.market_id, region, p.as_of, p.limit).await?;
    for s in &mut states {
        s.feature_space = recorded_space(&p.stab_model_id, s.feature_space.take());
    }
    if states.is_empty() {
        return Err(no_states(db, p).await);
    }

    let profiles = match &p.profile_model_id {
        None => Default::default(),
        Some(pm) => {
            let issuers: Vec<String> = states
                .iter()
                .filter_map(|s| s.issuer_id.clone())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let found = latest_joint(db, PROFILE_JOINT_TYPE, pm, "ISSUER", &issuers, p.as_of).await?;
            if found.is_empty() {
                let latest = earliest_profile_date(db, pm).await?;
                return Err(Error::Invalid(match latest {
                    Some(d) => format!(
                        "no {pm} profile of the market's issuers on or before {}; the earliest profiles are \
                         from {d}",
                        p.as_of
                    ),
                    None => match super::unknown_model_note(pm, "profile model", super::PROFILE_MODELS) {
                        Some(note) => format!(
                            "no profiles of model {pm:?} are stored and {note}; or leave out \
                             --profile-joint-model-id"
                        ),
                        None => format!(
                            "no profiles of model {pm:?} are stored; run `stabspace backfill-joint-profiles \
                             --as-of {} --model-id {pm}` first, or leave out --profile-joint-model-id",
                            p.as_of
                        ),
                    },
                }));
            }
            found
        }
    };

    let mut out = StateSummary {
        summary: BackfillSummary {
            model_id: p.joint_model_id.clone(),
            ..Default::default()
        },
        ..Default::default()
    };
    // The whole market is seen only without --limit.
    let market = if p.limit.is_none() {
        market_instruments(db, &p.market_id, region).await?
    } else {
        Vec::new()
    };
    let have: BTreeSet<&str> = states.iter().map(|s| s.instrument_id.as_str()).collect();
    for id in market.iter().cloned() {
        if !have.contains(id.as_str()) {
            out.summary
                .skipped
                .entry("no numeric embedding")
                .or_default()
                .push((id, format!("no {} vector on {}", p.stab_model_id, p.as_of)));
        }
    }

    progress.start("instruments", Some(states.len() as u64));
    progress.message(&format!("{} {}", p.joint_model_id, p.market_id));
    let mut tx = db.begin().await?;
    // One space per run: the first state's, which every other must share.
    let space = recorded_space(&p.stab_model_id, states[0].feature_space.clone());
    for s in &states[1..] {
        Error::check_spaces(
            || format!("the {} state of {}", p.stab_model_id, s.instrument_id),
            recorded_space(&p.stab_model_id, s.feature_space.clone()).as_deref(),
            || format!("the {} state of {}", p.stab_model_id, states[0].instrument_id),
            space.as_deref(),
        )?;
    }
    let claim = Claim::States {
        stab_model_id: p.stab_model_id.clone(),
        profile_model_id: p.profile_model_id.clone(),
        weights: p.weights,
        feature_space: space,
    };
    out.summary.registration = registry::register(db, &mut tx, &p.joint_model_id, &claim, p.replace).await?;
    let mut writer = BulkWriter::new(&JOINT_EMBEDDINGS);
    let mut written: BTreeSet<&str> = BTreeSet::new();
    for s in &states {
        progress.advance(1);
        // A blob of another length or with a non-finite value (another tool
        // wrote it) skips this instrument, not the run. An all-zero state
        // (constant prices) is a real state and is kept.
        let stab = match vector::finite(&s.vector) {
            Ok(v) => v,
            Err(why) => {
                out.summary
                    .skipped
                    .entry("unusable numeric embedding")
                    .or_default()
                    .push((
                        s.instrument_id.clone(),
                        format!("{} vector on {}: {why}", p.stab_model_id, p.as_of),
                    ));
                continue;
            }
        };
        let profile = match s.issuer_id.as_ref().and_then(|i| profiles.get(i)) {
            Some(pv) => {
                let pm = p.profile_model_id.as_deref().unwrap_or_default();
                Error::check_spaces(
                    || format!("the {} state of {}", p.stab_model_id, s.instrument_id),
                    s.feature_space.as_deref(),
                    || format!("the {pm} profile of issuer {}", pv.entity_id),
                    recorded_space(pm, pv.feature_space.clone()).as_deref(),
                )?;
                Some(vector::from_bytes(
                    &pv.vector,
                    &format!("profile of {} on {}", pv.entity_id, pv.as_of_date),
                )?)
            }
            None => None,
        };
        let z = model.combine(&Branches {
            stab: Some(&stab),
            profile: profile.as_deref(),
            ..Default::default()
        })?;
        let source = if profile.is_some() {
            out.with_profile += 1;
            "stab+profile"
        } else {
            out.without_profile += 1;
            "stab"
        };
        let scope = json!({
            "entity_type": "INSTRUMENT",
            "entity_id": s.instrument_id,
            "issuer_id": s.issuer_id,
            "region": s.region,
            "as_of_date": p.as_of.to_string(),
            "source": source,
            "stab_model_id": p.stab_model_id,
            "feature_space": s.feature_space,
            "stab_window": {
                "start_date": s.window_start.map(|d| d.to_string()),
                "end_date": s.window_end.map(|d| d.to_string()),
            },
        });
        let text = |v: &Option<String>| v.clone().map_or(Value::Null, Value::Text);
        let row = vec![
            Value::Text(STAB_JOINT_TYPE.into()),
            Value::Text(p.joint_model_id.clone()),
            Value::Text("INSTRUMENT".into()),
            Value::Text(s.instrument_id.clone()),
            Value::Text(String::new()),
            Value::Date(p.as_of),
            text(&s.issuer_id),
            text(&s.region),
            Value::Json(scope.to_string()),
            Value::Bytes(vector::to_bytes(&z)),
            text(&s.feature_space),
            Value::Null,
        ];
        writer.push(&mut tx, row).await.map_err(|e| db.err(e))?;
        written.insert(&s.instrument_id);
        out.summary.encoded += 1;
    }
    writer.finish(&mut tx).await.map_err(|e| db.err(e))?;
    // States an earlier run stored on this date for instruments of the market
    // that have no usable numeric vector now. With --limit the run does not
    // see the whole market, so nothing is removed.
    if p.limit.is_none() {
        let considered: BTreeSet<&str> = market.iter().map(String::as_str).collect();
        let key = VectorKey {
            joint_type: Some(STAB_JOINT_TYPE),
            model_id: &p.joint_model_id,
            entity_type: "INSTRUMENT",
            scope_id: "",
            as_of: p.as_of,
        };
        out.summary.removed = keep_only(&mut tx, key, &written, Some(&considered))
            .await
            .map_err(|e| db.err(e))?;
    }
    db.commit(tx).await?;
    progress.finish();
    out.summary.seconds = started.elapsed().as_secs_f64();
    Ok(out)
}

/// Why there is nothing to combine, and what exists nearby.
async fn no_states(db: &Db, p: &StateBackfill) -> Error {
    let explain = async {
        let instruments = market_instruments(db, &p.market_id, p.region.as_deref()).await?;
        if instruments.is_empty() {
            let markets = markets(db).await?;
            return Ok(format!(
                "market {:?}{} has no instruments; markets: {}",
                p.market_id,
                p.region
                    .as_ref()
                    .map_or(String::new(), |r| format!(" in region {r:?}")),
                list_or(&markets, "none (import instruments first)")
            ));
        }
        let latest = latest_numeric_state_date(db, &p.stab_model_id, &p.market_id).await?;
        Ok(match latest {
            Some(d) => format!(
                "no {} vectors of market {:?} on {}; the latest date with them is {d}",
                p.stab_model_id, p.market_id, p.as_of
            ),
            None => {
                let models = numeric_state_models(db).await?;
                match super::unknown_model_note(&p.stab_model_id, "state encoder", WINDOW_MODELS) {
                    Some(note) => format!(
                        "no {} vectors of market {:?} are stored and {note} (models with instrument \
                         vectors: {})",
                        p.stab_model_id,
                        p.market_id,
                        list_or(&models, "none"),
                    ),
                    None => format!(
                        "no {} vectors of market {:?} are stored (models with instrument vectors: {}); run \
                         `stabspace backfill-numeric-embeddings --as-of {} --market-id {} --model-id {}` first",
                        p.stab_model_id,
                        p.market_id,
                        list_or(&models, "none"),
                        p.as_of,
                        p.market_id,
                        p.stab_model_id
                    ),
                }
            }
        })
    };
    match explain.await {
        Ok(msg) => Error::Invalid(msg),
        Err(e) => e,
    }
}
