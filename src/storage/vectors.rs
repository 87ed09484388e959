//! `numeric_window_embeddings`: the numeric state and scenario vectors the
//! joint workflows start from, and the hints' "what exists".
//!
//! Feature spaces are returned as recorded (`None` when a row records none);
//! what an unrecorded space means is the encoders' business.

use chrono::NaiveDate;

use super::joint::{ScenarioCols, ScenarioVector};
use super::sql::{date_agg, distinct, fetch_all, fetch_one, sql_limit, Arg};
use super::Db;
use crate::error::Result;

/// A numeric state vector of an instrument, with what the joint row records of it.
#[derive(Clone, Debug)]
pub struct NumericState {
    pub instrument_id: String,
    pub issuer_id: Option<String>,
    pub region: Option<String>,
    pub vector: Vec<u8>,
    pub window_start: Option<NaiveDate>,
    pub window_end: Option<NaiveDate>,
    /// The feature space as recorded (`None`: not recorded).
    pub feature_space: Option<String>,
}

/// Numeric embeddings (`model`, entity_type INSTRUMENT) on `as_of` of the
/// instruments of `market` (and `region`), by instrument id, at most `limit`.
pub async fn numeric_states(
    db: &Db,
    model: &str,
    market: &str,
    region: Option<&str>,
    as_of: NaiveDate,
    limit: Option<u64>,
) -> Result<Vec<NumericState>> {
    let sql = "SELECT i.instrument_id, i.issuer_id, i.region, n.vector, n.window_start, n.window_end, \
                      n.feature_space \
               FROM numeric_window_embeddings n JOIN instruments i ON i.instrument_id = n.entity_id \
               WHERE n.model_id = $1 AND n.entity_type = 'INSTRUMENT' AND n.as_of_date = $2 \
                 AND i.market_id = $3 AND ($4 IS NULL OR i.region = $4) \
               ORDER BY i.instrument_id LIMIT $5";
    type Cols = (
        String,
        Option<String>,
        Option<String>,
        Vec<u8>,
        Option<NaiveDate>,
        Option<NaiveDate>,
        Option<String>,
    );
    let args = [
        Arg::Text(model),
        Arg::Date(as_of),
        Arg::Text(market),
        Arg::OptText(region),
        Arg::Int(sql_limit(limit)),
    ];
    let rows: Vec<Cols> = fetch_all(db, sql, &args).await?;
    Ok(rows
        .into_iter()
        .map(
            |(instrument_id, issuer_id, region, vector, window_start, window_end, feature_space)| {
                NumericState {
                    instrument_id,
                    issuer_id,
                    region,
                    vector,
                    window_start,
                    window_end,
                    feature_space,
                }
            },
        )
        .collect())
}

/// One page of the numeric scenario vectors (`model`) of a set, with their
/// `scenarios` row: scenario_date, shock_type, severity and, as `known_from`,
/// the override the scenarios CSV gave (`None`: none given).
pub async fn numeric_scenarios_page(
    db: &Db,
    model: &str,
    set: &str,
    after: Option<&str>,
    page: u64,
) -> Result<Vec<ScenarioVector>> {
    let sql = "SELECT n.entity_id, s.scenario_date, n.vector, n.feature_space, s.known_from, s.shock_type, \
                      s.severity \
               FROM numeric_window_embeddings n JOIN scenarios s \
                 ON s.scenario_set_id = n.scope_id AND s.scenario_id = n.entity_id \
               WHERE n.model_id = $1 AND n.entity_type = 'SCENARIO' AND n.scope_id = $2 \
                 AND ($3 IS NULL OR n.entity_id > $3) \
               ORDER BY n.entity_id LIMIT $4";
    let args = [
        Arg::Text(model),
        Arg::Text(set),
        Arg::OptText(after),
        Arg::Int(sql_limit(Some(page))),
    ];
    // The columns of a joint scenario row, in the same order.
    let rows: Vec<ScenarioCols> = fetch_all(db, sql, &args).await?;
    Ok(rows.into_iter().map(ScenarioVector::from).collect())
}

/// How many numeric scenario vectors (`model`) of a set are stored.
pub async fn count_numeric_scenarios(db: &Db, model: &str, set: &str) -> Result<i64> {
    let sql = "SELECT COUNT(*) FROM numeric_window_embeddings \
               WHERE model_id = $1 AND entity_type = 'SCENARIO' AND scope_id = $2";
    let (n,): (i64,) = fetch_one(db, sql, &[Arg::Text(model), Arg::Text(set)]).await?;
    Ok(n)
}

/// The scenario sets with numeric vectors of `model` (at most 50, for hints).
pub async fn numeric_scenario_sets(db: &Db, model: &str) -> Result<Vec<String>> {
    distinct(
        db,
        "scope_id",
        "numeric_window_embeddings",
        "entity_type = 'SCENARIO' AND model_id = $1",
        &[Arg::Text(model)],
    )
    .await
}

/// The scenario encoders with vectors of `set` (at most 50, for hints).
pub async fn numeric_scenario_models(db: &Db, set: &str) -> Result<Vec<String>> {
    distinct(
        db,
        "model_id",
        "numeric_window_embeddings",
        "entity_type = 'SCENARIO' AND scope_id = $1",
        &[Arg::Text(set)],
    )
    .await
}

/// The state encoders with instrument vectors (at most 50, for hints).
pub async fn numeric_state_models(db: &Db) -> Result<Vec<String>> {
    distinct(
        db,
        "model_id",
        "numeric_window_embeddings",
        "entity_type = 'INSTRUMENT'",
        &[],
    )
    .await
}

/// The latest date with numeric vectors (`model`) of the instruments of `market`.
pub async fn latest_numeric_state_date(db: &Db, model: &str, market: &str) -> Result<Option<NaiveDate>> {
    date_agg(
        db,
        "SELECT max(n.as_of_date) FROM numeric_window_embeddings n \
         JOIN instruments i ON i.instrument_id = n.entity_id \
         WHERE n.model_id = $1 AND n.entity_type = 'INSTRUMENT' AND i.market_id = $2",
        &[Arg::Text(model), Arg::Text(market)],
    )
    .await
}
