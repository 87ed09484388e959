//! The filter fields of the search routes: which scenarios a query may see
//! (point-in-time search). Checked here, naming the field at fault.
//!
//! - `known_before`: a date (`"2008-10-31"`), or on the raw search route with
//!   `vectors` an array of dates, one per vector: only scenarios known
//!   strictly before it.
//! - `point_in_time` (workflow routes): only scenarios known strictly before `as_of`.
//! - `shock_type`: a shock type or an array of them; `min_severity`: a
//!   number or LOW, MEDIUM, HIGH, SEVERE, EXTREME.

use serde::Deserialize;

use super::error::ApiError;
use crate::config::parse_date;
use crate::pointintime::{parse_min_severity, QueryFilter, ScenarioFilter};

/// `known_before`: one date, or one per vector.
#[derive(Deserialize)]
#[serde(untagged)]
pub enum KnownBefore {
    One(String),
    Each(Vec<String>),
}

/// `shock_type`: one, or any of several.
#[derive(Deserialize)]
#[serde(untagged)]
pub enum ShockTypes {
    One(String),
    Any(Vec<String>),
}

/// `min_severity`: a number or a label.
#[derive(Deserialize)]
#[serde(untagged)]
pub enum Severity {
    Number(f32),
    Label(String),
}

fn date(field: &str, s: &str) -> Result<chrono::NaiveDate, ApiError> {
    parse_date(s).map_err(|e| ApiError::field(field, e))
}

/// The filter of `shock_type` and `min_severity`.
pub fn fixed(
    shock_type: Option<ShockTypes>,
    min_severity: Option<Severity>,
) -> Result<ScenarioFilter, ApiError> {
    let shock_types = match shock_type {
        None => Vec::new(),
        Some(ShockTypes::One(s)) => vec![s],
        Some(ShockTypes::Any(v)) if v.is_empty() => {
            return Err(ApiError::field(
                "shock_type",
                "is an empty array: give at least one shock type, or leave the field out",
            ))
        }
        Some(ShockTypes::Any(v)) => v,
    };
    let min_severity = match min_severity {
        None => None,
        Some(Severity::Number(x)) if x.is_finite() => Some(x),
        Some(Severity::Number(x)) => {
            return Err(ApiError::field("min_severity", format!("{x} is not finite")))
        }
        Some(Severity::Label(s)) => {
            Some(parse_min_severity(&s).map_err(|e| ApiError::field("min_severity", e))?)
        }
    };
    Ok(ScenarioFilter {
        known_before: None,
        shock_types,
        min_severity,
    })
}

/// The workflow routes' filter: `point_in_time` bounds by the request's
/// `as_of`; `known_before` is one date.
pub fn workflow(
    point_in_time: bool,
    known_before: Option<KnownBefore>,
    shock_type: Option<ShockTypes>,
    min_severity: Option<Severity>,
) -> Result<QueryFilter, ApiError> {
    let mut filter = fixed(shock_type, min_severity)?;
    filter.known_before = match known_before {
        None => None,
        Some(KnownBefore::One(s)) => Some(date("known_before", &s)?),
        Some(KnownBefore::Each(_)) => {
            return Err(ApiError::field(
                "known_before",
                "is an array; this route takes one date (YYYY-MM-DD)",
            ))
        }
    };
    if point_in_time && filter.known_before.is_some() {
        return Err(ApiError::field(
            "known_before",
            "give point_in_time or known_before, not both (point_in_time bounds by as_of)",
        ));
    }
    Ok(QueryFilter {
        point_in_time,
        filter,
    })
}

/// The raw search route's filters, one per query (`None`: unfiltered).
pub fn per_query(
    known_before: Option<KnownBefore>,
    shock_type: Option<ShockTypes>,
    min_severity: Option<Severity>,
    queries: usize,
    batch: bool,
) -> Result<Option<Vec<ScenarioFilter>>, ApiError> {
    let base = fixed(shock_type, min_severity)?;
    let filters = match known_before {
        None => vec![base; queries],
        Some(KnownBefore::One(s)) => vec![base.before(date("known_before", &s)?); queries],
        Some(KnownBefore::Each(dates)) => {
            if !batch {
                return Err(ApiError::field(
                    "known_before",
                    "is an array; with `vector` give one date (an array is one date per entry of `vectors`)",
                ));
            }
            if dates.len() != queries {
                return Err(ApiError::field(
                    "known_before",
                    format!(
                        "has {} dates for {queries} vectors: give one per vector, or one date for all",
                        dates.len()
                    ),
                ));
            }
            dates
                .iter()
                .enumerate()
                .map(|(i, s)| Ok(base.before(date(&format!("known_before[{i}]"), s)?)))
                .collect::<Result<_, ApiError>>()?
        }
    };
    Ok((!filters.iter().all(ScenarioFilter::is_empty)).then_some(filters))
}
