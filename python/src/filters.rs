//! The filter arguments of the searches (point-in-time search): dates,
//! shock types and severities as Python gives them, checked with errors
//! that name the argument.

use chrono::NaiveDate;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use stabspace::config::parse_date;
use stabspace::pointintime::{parse_min_severity, QueryFilter, ScenarioFilter};

/// A date given as "YYYY-MM-DD" or as a datetime.date (or anything with `isoformat()`:
/// datetime, pandas Timestamp, numpy datetime64 through pandas).
pub fn date(v: &Bound<'_, PyAny>, name: &str) -> PyResult<NaiveDate> {
    let text: String = match v.extract::<String>() {
        Ok(s) => s,
        // A datetime's isoformat() goes on with the time: its first ten characters are the day.
        Err(_) => v
            .call_method0("isoformat")
            .and_then(|s| s.extract::<String>())
            .map(|s| s.chars().take(10).collect())
            .map_err(|_| {
                PyValueError::new_err(format!(
                    "{name} must be a date or a \"YYYY-MM-DD\" string, got {}",
                    v.get_type().name().map(|n| n.to_string()).unwrap_or_default()
                ))
            })?,
    };
    parse_date(&text).map_err(|e| PyValueError::new_err(format!("{name}: {e}")))
}

/// `shock_type` (a string or a list of them) and `min_severity` (a number,
/// or LOW, MEDIUM, HIGH, SEVERE, EXTREME).
pub fn fixed(
    shock_type: Option<&Bound<'_, PyAny>>,
    min_severity: Option<&Bound<'_, PyAny>>,
) -> PyResult<ScenarioFilter> {
    let shock_types = match shock_type {
        None => Vec::new(),
        Some(v) => match v.extract::<String>() {
            Ok(s) => vec![s],
            Err(_) => v
                .extract::<Vec<String>>()
                .map_err(|_| PyValueError::new_err("shock_type must be a string or a list of strings"))?,
        },
    };
    let min_severity = match min_severity {
        None => None,
        Some(v) => Some(match v.extract::<f64>() {
            Ok(x) if x.is_finite() => x as f32,
            Ok(x) => return Err(PyValueError::new_err(format!("min_severity: {x} is not finite"))),
            Err(_) => {
                let s: String = v.extract().map_err(|_| {
                    PyValueError::new_err(
                        "min_severity must be a number or LOW, MEDIUM, HIGH, SEVERE, EXTREME",
                    )
                })?;
                parse_min_severity(&s).map_err(|e| PyValueError::new_err(format!("min_severity: {e}")))?
            }
        }),
    };
    Ok(ScenarioFilter {
        known_before: None,
        shock_types,
        min_severity,
    })
}

/// The filter of the workflow calls (`similar_scenarios`, `portfolio_exposure`).
pub fn workflow(
    point_in_time: bool,
    known_before: Option<&Bound<'_, PyAny>>,
    shock_type: Option<&Bound<'_, PyAny>>,
    min_severity: Option<&Bound<'_, PyAny>>,
) -> PyResult<QueryFilter> {
    let mut filter = fixed(shock_type, min_severity)?;
    filter.known_before = known_before.map(|v| date(v, "known_before")).transpose()?;
    if point_in_time && filter.known_before.is_some() {
        return Err(PyValueError::new_err(
            "give point_in_time or known_before, not both (point_in_time bounds by as_of)",
        ));
    }
    Ok(QueryFilter {
        point_in_time,
        filter,
    })
}

/// One filter per query of `n`: `known_before` is one date for all, or
/// (for a batch) a sequence of `n` dates. `None` when nothing filters.
pub fn per_query(
    known_before: Option<&Bound<'_, PyAny>>,
    shock_type: Option<&Bound<'_, PyAny>>,
    min_severity: Option<&Bound<'_, PyAny>>,
    n: usize,
    batch: bool,
) -> PyResult<Option<Vec<ScenarioFilter>>> {
    let base = fixed(shock_type, min_severity)?;
    let filters = match known_before {
        None => vec![base; n],
        Some(v) => match date(v, "known_before") {
            Ok(d) => vec![base.before(d); n],
            Err(e) if !batch || v.extract::<String>().is_ok() => return Err(e),
            Err(_) => {
                let dates: Vec<Bound<'_, PyAny>> = v.try_iter()?.collect::<PyResult<_>>()?;
                if dates.len() != n {
                    return Err(PyValueError::new_err(format!(
                        "known_before has {} dates for {n} queries: give one per row of Q, or one date for all",
                        dates.len()
                    )));
                }
                dates
                    .iter()
                    .enumerate()
                    .map(|(i, d)| Ok(base.before(date(d, &format!("known_before[{i}]"))?)))
                    .collect::<PyResult<_>>()?
            }
        },
    };
    Ok((!filters.iter().all(ScenarioFilter::is_empty)).then_some(filters))
}
