//! Nearest scenarios of one instrument (`find-similar-stab-scenarios`) or one
//! portfolio (`show-portfolio-stab-scenario-exposure`) on one date.

use chrono::NaiveDate;

use super::vectors::{portfolio_vectors, DaySkip};
use crate::error::{Error, Result};
use crate::joint::list_or;
use crate::nearest::{Answer, ExactCheck, ScenarioHit, ScenarioSpace, SearchOpts};
use crate::portfolio::{NoVector, PortfolioVector};
use crate::storage::joint::{joint_states, latest_state_date, state_dates_around, state_models};
use crate::storage::reports::{earliest_target, target_portfolio_ids};
use crate::storage::Db;
use crate::vector;

/// An instrument's state and its nearest scenarios.
#[derive(Clone, Debug)]
pub struct SimilarScenarios {
    pub state: Vec<f32>,
    pub hits: Vec<ScenarioHit>,
    /// How the hits were found.
    pub answer: Answer,
    /// How to check the hits against an exact scan (`None`: they are exact).
    pub check: Option<ExactCheck>,
}

/// The instrument's STAB state on `as_of` and the `k` nearest scenarios of `set`.
pub async fn find_similar(
    db: &Db,
    search: &SearchOpts,
    instrument: &str,
    as_of: NaiveDate,
    model: &str,
    set: &str,
    k: usize,
) -> Result<SimilarScenarios> {
    let rows = joint_states(db, model, as_of, as_of, Some(instrument), None, Some(1)).await?;
    let Some(row) = rows.first() else {
        return Err(no_state(db, instrument, as_of, model).await);
    };
    let state = vector::usable(&row.vector).map_err(|why| {
        Error::Invalid(format!(
            "the STAB state of {instrument} on {as_of} (joint model {model}) cannot be ranked against \
             scenarios: {why}{}",
            if why == vector::Unusable::Zero {
                " (constant prices over its window: cash, or a suspended instrument)"
            } else {
                ""
            }
        ))
    })?;
    let space = ScenarioSpace::open(db, search, model, set).await?;
    space.same_space().check(
        || format!("the STAB state of {instrument} on {as_of} (joint model {model})"),
        row.feature_space.as_deref(),
    )?;
    let hits = search_at(&space, search, &state, as_of, k)?;
    Ok(SimilarScenarios {
        state,
        hits,
        answer: space.answer(),
        check: space.exact_check(k),
    })
}

/// The `k` scenarios nearest `query`, dated `as_of`, that the search's
/// filter admits; an error saying so plainly when it admits none.
fn search_at(
    space: &ScenarioSpace,
    search: &SearchOpts,
    query: &[f32],
    as_of: NaiveDate,
    k: usize,
) -> Result<Vec<ScenarioHit>> {
    if search.filter.is_empty() {
        return space.search(query, k);
    }
    let filter = search.filter.at(as_of);
    let found = space.search_filtered(query, k, &filter)?;
    if found.admitted == 0 {
        return Err(Error::Invalid(format!(
            "no scenario of set {:?} is admitted on {as_of}: none of its {} scenarios is {}{}",
            space.set_id,
            space.len(),
            filter.describe(),
            if filter.known_before.is_some() {
                " (a scenario is known from the last day of its path for a historical window, else from its \
                 scenario_date; scenarios backfilled before point-in-time search have no date until \
                 `backfill-joint-stab-fragility-scenarios` is run again)"
            } else {
                ""
            }
        )));
    }
    Ok(found.hits)
}

async fn no_state(db: &Db, instrument: &str, as_of: NaiveDate, model: &str) -> Error {
    let explain = async {
        let (before, after) = state_dates_around(db, model, instrument, as_of).await?;
        if before.is_some() || after.is_some() {
            let show = |d: Option<NaiveDate>| d.map_or("none".to_string(), |d| d.to_string());
            return Ok(Error::Invalid(format!(
                "instrument {instrument:?} has no STAB state of {model} on {as_of}; its nearest states are \
                 on {} (before) and {} (after)",
                show(before),
                show(after)
            )));
        }
        stab_states_hint(
            db,
            model,
            &format!("instrument {instrument:?} has no STAB state of {model}"),
        )
        .await
    };
    explain.await.unwrap_or_else(|e| e)
}

/// The error saying `what`, then the latest date with STAB states of
/// `model`, or the models that have some ([`Error::OtherJointModel`]).
pub async fn stab_states_hint(db: &Db, model: &str, what: &str) -> Result<Error> {
    let latest = latest_state_date(db, model).await?;
    Ok(match latest {
        Some(d) => Error::Invalid(format!(
            "{what}; the latest date with STAB states of {model} is {d}"
        )),
        None => {
            let models = state_models(db).await?;
            match models.iter().find(|m| *m != model) {
                Some(other) => Error::OtherJointModel {
                    what: format!(
                        "{what}; no STAB states of {model} are stored ({}), but there are under {}",
                        crate::joint::registry::note(db, model).await?,
                        list_or(&models, "none")
                    ),
                    asked: model.to_string(),
                    other: other.clone(),
                },
                None => Error::Invalid(format!(
                    "{what}; no STAB states of {model:?} are stored (joint models with states: none); run \
                     `stabspace backfill-joint-stab-fragility-states --as-of <date> --market-id <market> \
                     --joint-model-id {model}` first"
                )),
            }
        }
    })
}

/// A portfolio's STAB vector on a date and its nearest scenarios; holdings
/// without a state are named on stderr.
#[derive(Clone, Debug)]
pub struct Exposure {
    pub weights_as_of: NaiveDate,
    pub vector: PortfolioVector,
    pub hits: Vec<ScenarioHit>,
    /// How the hits were found.
    pub answer: Answer,
    /// How to check the hits against an exact scan (`None`: they are exact).
    pub check: Option<ExactCheck>,
}

/// `show-portfolio-stab-scenario-exposure`: the portfolio vector on `as_of`
/// (weights of the latest target on or before it, each instrument's latest
/// state on or before it) and the `k` nearest scenarios of `set`.
#[allow(
    clippy::too_many_arguments,
    reason = "the command's flags, one to one; a struct would only rename them"
)]
pub async fn portfolio_exposure(
    db: &Db,
    search: &SearchOpts,
    portfolio: &str,
    as_of: NaiveDate,
    set: &str,
    model: &str,
    k: usize,
    min_coverage: f64,
) -> Result<Exposure> {
    let day = [(portfolio.to_string(), as_of)];
    let space = ScenarioSpace::open(db, search, model, set).await?;
    let v = portfolio_vectors(db, model, &day, Some(&space), min_coverage)
        .await?
        .pop()
        .expect("one day in, one out");
    let v = match v {
        Ok(v) => v,
        Err(skip) => return Err(no_vector(db, portfolio, as_of, model, skip).await),
    };
    if let Some(note) = v.vector.coverage_note() {
        eprintln!("warning: portfolio {portfolio} on {as_of}: {note}");
    }
    let hits = search_at(&space, search, &v.vector.vector, as_of, k)?;
    Ok(Exposure {
        weights_as_of: v.weights_as_of,
        vector: v.vector,
        hits,
        answer: space.answer(),
        check: space.exact_check(k),
    })
}

/// Why a portfolio has no vector on a date, with what exists nearby.
pub(crate) async fn no_vector(
    db: &Db,
    portfolio: &str,
    as_of: NaiveDate,
    model: &str,
    skip: DaySkip,
) -> Error {
    let explain = async {
        // The day's search only saw targets up to the day: look for later ones.
        let skip = match skip {
            DaySkip::NoTarget { earliest: None } => DaySkip::NoTarget {
                earliest: earliest_target(db, portfolio).await?,
            },
            other => other,
        };
        Ok(Error::Invalid(match skip {
            DaySkip::NoTarget { earliest: None } => {
                let known = target_portfolio_ids(db).await?;
                format!(
                    "portfolio {portfolio:?} has no target_portfolios rows; portfolios with targets: {}",
                    list_or(&known, "none (import portfolios first)")
                )
            }
            DaySkip::NoTarget { earliest: Some(d) } => format!(
                "portfolio {portfolio:?} has no target weights on or before {as_of}; its earliest are from {d}"
            ),
            DaySkip::NoVector(NoVector::NoStates { holdings }) => {
                return stab_states_hint(
                    db,
                    model,
                    &format!(
                        "portfolio {portfolio:?} on {as_of}: none of its {holdings} instruments has a STAB \
                         state of {model} on or before {as_of}"
                    ),
                )
                .await;
            }
            DaySkip::NoVector(
                z @ (NoVector::ZeroWeights { .. } | NoVector::Unusable { .. } | NoVector::LowCoverage { .. }),
            ) => {
                format!("portfolio {portfolio:?} on {as_of}: {z}")
            }
        }))
    };
    explain.await.unwrap_or_else(|e| e)
}
