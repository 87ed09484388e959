//! Reads of the joint space (`joint_embeddings`, and the numeric vectors and
//! portfolio tables the joint workflows start from), for both backends.
//!
//! JSON columns are read as text (`CAST(… AS TEXT)`: JSONB on PostgreSQL, TEXT
//! on SQLite) and parsed by the caller, which knows which row it came from.

use std::collections::HashMap;

use chrono::NaiveDate;
use sqlx::Row;

use super::sql::{placeholders, sql_limit, IN_CHUNK};
use super::Db;
use crate::error::Result;
use crate::with_pool;

/// Distinct values of one text column, for "what exists" in error messages.
pub async fn distinct(
    db: &Db,
    column: &str,
    table: &str,
    filter: &str,
    binds: &[&str],
) -> Result<Vec<String>> {
    let sql = format!("SELECT DISTINCT {column} FROM {table} WHERE {filter} ORDER BY {column} LIMIT 50");
    with_pool!(db, p => {
        let mut q = sqlx::query_scalar::<_, String>(&sql);
        for b in binds {
            q = q.bind(*b);
        }
        q.fetch_all(p).await
    })
    .map_err(|e| db.err(e))
}

/// One date-valued aggregate (`max(as_of_date)`, …) with text binds.
pub async fn date_agg(db: &Db, sql: &str, binds: &[&str]) -> Result<Option<NaiveDate>> {
    with_pool!(db, p => {
        let mut q = sqlx::query_scalar::<_, Option<NaiveDate>>(sql);
        for b in binds {
            q = q.bind(*b);
        }
        q.fetch_one(p).await
    })
    .map_err(|e| db.err(e))
}

/// Latest `issuer_fundamentals` row of each issuer on or before `as_of`, by issuer.
pub async fn latest_fundamentals(
    db: &Db,
    as_of: NaiveDate,
    limit: Option<u64>,
) -> Result<Vec<(String, NaiveDate, String)>> {
    let sql = "SELECT f.issuer_id, f.as_of_date, CAST(f.fundamentals AS TEXT) FROM issuer_fundamentals f \
               WHERE f.as_of_date = (SELECT max(g.as_of_date) FROM issuer_fundamentals g \
                                     WHERE g.issuer_id = f.issuer_id AND g.as_of_date <= $1) \
               ORDER BY f.issuer_id LIMIT $2";
    with_pool!(db, p => sqlx::query_as(sql).bind(as_of).bind(sql_limit(limit)).fetch_all(p).await)
        .map_err(|e| db.err(e))
}

/// A numeric state vector of an instrument, with what the joint row records of it.
#[derive(Clone, Debug)]
pub struct NumericState {
    pub instrument_id: String,
    pub issuer_id: Option<String>,
    pub region: Option<String>,
    pub vector: Vec<u8>,
    pub window_start: Option<NaiveDate>,
    pub window_end: Option<NaiveDate>,
    /// The feature space of the vector (`None`: not recorded).
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
    with_pool!(db, p => sqlx::query(sql)
        .bind(model)
        .bind(as_of)
        .bind(market)
        .bind(region)
        .bind(sql_limit(limit))
        .fetch_all(p)
        .await
        .and_then(|rows| rows.iter().map(|r| Ok(NumericState {
            instrument_id: r.try_get(0)?,
            issuer_id: r.try_get(1)?,
            region: r.try_get(2)?,
            vector: r.try_get(3)?,
            window_start: r.try_get(4)?,
            window_end: r.try_get(5)?,
            feature_space: crate::encoders::recorded_space(model, r.try_get(6)?),
        })).collect()))
    .map_err(|e| db.err(e))
}

/// Instruments of a market (and region), active or not, by id.
pub async fn market_instruments(db: &Db, market: &str, region: Option<&str>) -> Result<Vec<String>> {
    let sql = "SELECT instrument_id FROM instruments WHERE market_id = $1 AND ($2 IS NULL OR region = $2) \
               ORDER BY instrument_id";
    with_pool!(db, p => sqlx::query_scalar::<_, String>(sql).bind(market).bind(region).fetch_all(p).await)
        .map_err(|e| db.err(e))
}

/// A stored joint vector.
#[derive(Clone, Debug)]
pub struct JointVector {
    pub entity_id: String,
    pub as_of_date: NaiveDate,
    pub vector: Vec<u8>,
    /// The recorded feature space (`None`: not recorded).
    pub feature_space: Option<String>,
}

/// For each of `ids`, its latest joint vector (`joint_type`, `model`,
/// `entity_type`, scope '') on or before `as_of`. Ids without one are absent.
///
/// Two steps, each an index seek per id whatever the history length: first
/// every id's latest date (a backwards seek on the primary key), then the
/// vectors of the ids sharing a date in one query (one query in all when the
/// states were backfilled on common dates).
pub async fn latest_joint(
    db: &Db,
    joint_type: &str,
    model: &str,
    entity_type: &str,
    ids: &[String],
    as_of: NaiveDate,
) -> Result<HashMap<String, JointVector>> {
    let mut out = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(IN_CHUNK) {
        let values: Vec<String> = (5..5 + chunk.len()).map(|i| format!("(${i})")).collect();
        let sql = format!(
            "SELECT v.column1, (SELECT max(k.as_of_date) FROM joint_embeddings k \
                 WHERE k.joint_type = $1 AND k.model_id = $2 AND k.entity_type = $3 AND k.scope_id = '' \
                   AND k.entity_id = v.column1 AND k.as_of_date <= $4) \
             FROM (VALUES {}) AS v",
            values.join(", ")
        );
        let latest: Vec<(String, Option<NaiveDate>)> = with_pool!(db, p => {
            let mut q = sqlx::query_as(&sql).bind(joint_type).bind(model).bind(entity_type).bind(as_of);
            for id in chunk {
                q = q.bind(id);
            }
            q.fetch_all(p).await
        })
        .map_err(|e| db.err(e))?;
        let mut by_date: std::collections::BTreeMap<NaiveDate, Vec<String>> = Default::default();
        for (id, date) in latest {
            if let Some(d) = date {
                by_date.entry(d).or_default().push(id);
            }
        }
        for (date, group) in by_date {
            let sql = format!(
                "SELECT entity_id, as_of_date, vector, feature_space FROM joint_embeddings \
                 WHERE joint_type = $1 AND model_id = $2 AND entity_type = $3 AND scope_id = '' \
                   AND as_of_date = $4 AND entity_id IN ({})",
                placeholders(5, group.len())
            );
            let rows = with_pool!(db, p => {
                let mut q = sqlx::query(&sql).bind(joint_type).bind(model).bind(entity_type).bind(date);
                for id in &group {
                    q = q.bind(id);
                }
                q.fetch_all(p).await.and_then(|rows| rows.iter().map(joint_vector).collect::<Result<Vec<_>, _>>())
            })
            .map_err(|e| db.err(e))?;
            for v in rows {
                out.insert(v.entity_id.clone(), v);
            }
        }
    }
    Ok(out)
}

/// Joint vectors of `ids` with `from < as_of_date <= to`, by entity then date.
pub async fn joint_between(
    db: &Db,
    joint_type: &str,
    model: &str,
    entity_type: &str,
    ids: &[String],
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<JointVector>> {
    let mut out = Vec::new();
    for chunk in ids.chunks(IN_CHUNK) {
        let sql = format!(
            "SELECT entity_id, as_of_date, vector, feature_space FROM joint_embeddings \
             WHERE joint_type = $1 AND model_id = $2 AND entity_type = $3 AND scope_id = '' \
               AND as_of_date > $4 AND as_of_date <= $5 AND entity_id IN ({}) \
             ORDER BY entity_id, as_of_date",
            placeholders(6, chunk.len())
        );
        let rows = with_pool!(db, p => {
            let mut q = sqlx::query(&sql).bind(joint_type).bind(model).bind(entity_type).bind(from).bind(to);
            for id in chunk {
                q = q.bind(id);
            }
            q.fetch_all(p).await.and_then(|rows| rows.iter().map(joint_vector).collect::<Result<Vec<_>, _>>())
        })
        .map_err(|e| db.err(e))?;
        out.extend(rows);
    }
    Ok(out)
}

fn joint_vector<R: Row>(r: &R) -> Result<JointVector, sqlx::Error>
where
    usize: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> NaiveDate: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Vec<u8>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<String>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(JointVector {
        entity_id: r.try_get(0)?,
        as_of_date: r.try_get(1)?,
        vector: r.try_get(2)?,
        feature_space: r.try_get(3)?,
    })
}

/// A joint state row as the show command lists it.
#[derive(Clone, Debug)]
pub struct StateRow {
    pub as_of_date: NaiveDate,
    pub instrument_id: String,
    pub issuer_id: Option<String>,
    pub region: Option<String>,
    pub vector: Vec<u8>,
    /// The recorded feature space (`None`: not recorded).
    pub feature_space: Option<String>,
}

/// Instrument states of a joint model in `[from, to]`, by date then instrument.
pub async fn joint_states(
    db: &Db,
    model: &str,
    from: NaiveDate,
    to: NaiveDate,
    instrument: Option<&str>,
    region: Option<&str>,
    limit: Option<u64>,
) -> Result<Vec<StateRow>> {
    let sql = "SELECT as_of_date, entity_id, issuer_id, region, vector, feature_space FROM joint_embeddings \
               WHERE joint_type = $1 AND model_id = $2 AND entity_type = 'INSTRUMENT' AND scope_id = '' \
                 AND as_of_date >= $3 AND as_of_date <= $4 \
                 AND ($5 IS NULL OR entity_id = $5) AND ($6 IS NULL OR region = $6) \
               ORDER BY as_of_date, entity_id LIMIT $7";
    with_pool!(db, p => sqlx::query(sql)
        .bind(crate::joint::STAB_JOINT_TYPE)
        .bind(model)
        .bind(from)
        .bind(to)
        .bind(instrument)
        .bind(region)
        .bind(sql_limit(limit))
        .fetch_all(p)
        .await
        .and_then(|rows| rows.iter().map(|r| Ok(StateRow {
            as_of_date: r.try_get(0)?,
            instrument_id: r.try_get(1)?,
            issuer_id: r.try_get(2)?,
            region: r.try_get(3)?,
            vector: r.try_get(4)?,
            feature_space: r.try_get(5)?,
        })).collect()))
    .map_err(|e| db.err(e))
}

/// A scenario's vector with its date (as stored with the vector).
#[derive(Clone, Debug)]
pub struct ScenarioVector {
    pub scenario_id: String,
    pub as_of: NaiveDate,
    pub vector: Vec<u8>,
    /// The recorded feature space (`None`: not recorded).
    pub feature_space: Option<String>,
}

impl From<JointVector> for ScenarioVector {
    fn from(v: JointVector) -> Self {
        ScenarioVector {
            scenario_id: v.entity_id,
            as_of: v.as_of_date,
            vector: v.vector,
            feature_space: v.feature_space,
        }
    }
}

/// One page of the joint scenario vectors of a set: scenario ids after
/// `after`, in order, at most `page` of them.
pub async fn joint_scenarios_page(
    db: &Db,
    model: &str,
    set: &str,
    after: Option<&str>,
    page: u64,
) -> Result<Vec<ScenarioVector>> {
    let sql = "SELECT entity_id, as_of_date, vector, feature_space FROM joint_embeddings \
               WHERE joint_type = $1 AND model_id = $2 AND entity_type = 'SCENARIO' AND scope_id = $3 \
                 AND ($4 IS NULL OR entity_id > $4) \
               ORDER BY entity_id LIMIT $5";
    with_pool!(db, p => sqlx::query(sql)
        .bind(crate::joint::STAB_JOINT_TYPE)
        .bind(model)
        .bind(set)
        .bind(after)
        .bind(sql_limit(Some(page)))
        .fetch_all(p)
        .await
        .and_then(|rows| rows.iter().map(|r| joint_vector(r).map(ScenarioVector::from)).collect()))
    .map_err(|e| db.err(e))
}

/// The (scenario id, scenario date) of every STAB scenario vector of (model,
/// set), without the vectors: an index-only read of the primary key, to find
/// the rows a partition lacks.
pub async fn joint_scenario_keys(db: &Db, model: &str, set: &str) -> Result<Vec<(String, NaiveDate)>> {
    let sql = "SELECT entity_id, as_of_date FROM joint_embeddings \
               WHERE joint_type = $1 AND model_id = $2 AND entity_type = 'SCENARIO' AND scope_id = $3";
    with_pool!(db, p => sqlx::query_as::<_, (String, NaiveDate)>(sql)
        .bind(crate::joint::STAB_JOINT_TYPE)
        .bind(model)
        .bind(set)
        .fetch_all(p)
        .await)
    .map_err(|e| db.err(e))
}

/// The STAB scenario vectors of (model, set) with the given scenario ids, in
/// id order (an id stored at two dates gives two rows).
pub async fn joint_scenarios_by_ids(
    db: &Db,
    model: &str,
    set: &str,
    ids: &[String],
) -> Result<Vec<ScenarioVector>> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(IN_CHUNK) {
        let sql = format!(
            "SELECT entity_id, as_of_date, vector, feature_space FROM joint_embeddings \
             WHERE joint_type = $1 AND model_id = $2 AND entity_type = 'SCENARIO' AND scope_id = $3 \
               AND entity_id IN ({}) ORDER BY entity_id, as_of_date",
            placeholders(4, chunk.len())
        );
        let rows = with_pool!(db, p => {
            let mut q = sqlx::query(&sql)
                .bind(crate::joint::STAB_JOINT_TYPE)
                .bind(model)
                .bind(set);
            for id in chunk {
                q = q.bind(id);
            }
            q.fetch_all(p).await.and_then(|rows| {
                rows.iter()
                    .map(|r| joint_vector(r).map(ScenarioVector::from))
                    .collect::<std::result::Result<Vec<_>, sqlx::Error>>()
            })
        })
        .map_err(|e| db.err(e))?;
        out.extend(rows);
    }
    Ok(out)
}

/// One page of the numeric scenario vectors (`model`) of a set, with their
/// `scenarios` row: (vector with scenario_date, shock_type, severity).
pub async fn numeric_scenarios_page(
    db: &Db,
    model: &str,
    set: &str,
    after: Option<&str>,
    page: u64,
) -> Result<Vec<(ScenarioVector, Option<String>, Option<String>)>> {
    let sql = "SELECT n.entity_id, s.scenario_date, n.vector, s.shock_type, s.severity, n.feature_space, n.model_id \
               FROM numeric_window_embeddings n JOIN scenarios s \
                 ON s.scenario_set_id = n.scope_id AND s.scenario_id = n.entity_id \
               WHERE n.model_id = $1 AND n.entity_type = 'SCENARIO' AND n.scope_id = $2 \
                 AND ($3 IS NULL OR n.entity_id > $3) \
               ORDER BY n.entity_id LIMIT $4";
    with_pool!(db, p => sqlx::query(sql)
        .bind(model)
        .bind(set)
        .bind(after)
        .bind(sql_limit(Some(page)))
        .fetch_all(p)
        .await
        .and_then(|rows| rows.iter().map(|r| Ok((ScenarioVector {
            scenario_id: r.try_get(0)?,
            as_of: r.try_get(1)?,
            vector: r.try_get(2)?,
            feature_space: crate::encoders::recorded_space(&r.try_get::<String, _>(6)?, r.try_get(5)?),
        }, r.try_get(3)?, r.try_get(4)?))).collect()))
    .map_err(|e| db.err(e))
}

/// `target_portfolios` rows (portfolio, date, target_positions as text) of
/// `portfolios` with `as_of_date <= to`, by portfolio then date.
pub async fn targets(
    db: &Db,
    portfolios: &[String],
    to: NaiveDate,
) -> Result<Vec<(String, NaiveDate, String)>> {
    let mut out = Vec::new();
    for chunk in portfolios.chunks(IN_CHUNK) {
        let sql = format!(
            "SELECT portfolio_id, as_of_date, CAST(target_positions AS TEXT) FROM target_portfolios \
             WHERE as_of_date <= $1 AND portfolio_id IN ({}) ORDER BY portfolio_id, as_of_date",
            placeholders(2, chunk.len())
        );
        let rows: Vec<(String, NaiveDate, String)> = with_pool!(db, p => {
            let mut q = sqlx::query_as(&sql).bind(to);
            for id in chunk {
                q = q.bind(id);
            }
            q.fetch_all(p).await
        })
        .map_err(|e| db.err(e))?;
        out.extend(rows);
    }
    Ok(out)
}

/// (portfolio, date) of the risk reports in `[from, to]`, of one portfolio or all.
pub async fn report_days(
    db: &Db,
    portfolio: Option<&str>,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<(String, NaiveDate)>> {
    let sql = "SELECT portfolio_id, as_of_date FROM portfolio_risk_reports \
               WHERE ($1 IS NULL OR portfolio_id = $1) AND as_of_date >= $2 AND as_of_date <= $3 \
               ORDER BY portfolio_id, as_of_date";
    with_pool!(db, p => sqlx::query_as(sql).bind(portfolio).bind(from).bind(to).fetch_all(p).await)
        .map_err(|e| db.err(e))
}

/// Risk metrics (as text) of one portfolio's reports in `[from, to]`, by date.
pub async fn risk_metrics(
    db: &Db,
    portfolio: &str,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<(NaiveDate, String)>> {
    let sql = "SELECT as_of_date, CAST(risk_metrics AS TEXT) FROM portfolio_risk_reports \
               WHERE portfolio_id = $1 AND as_of_date >= $2 AND as_of_date <= $3 ORDER BY as_of_date";
    with_pool!(db, p => sqlx::query_as(sql).bind(portfolio).bind(from).bind(to).fetch_all(p).await)
        .map_err(|e| db.err(e))
}

/// A `backtest_runs` row, JSON as text.
#[derive(Clone, Debug)]
pub struct BacktestRun {
    pub run_id: String,
    pub strategy_id: String,
    pub start_date: NaiveDate,
    pub end_date: NaiveDate,
    pub config_json: String,
}

/// Runs of a strategy, or the one run with an id, by run id.
pub async fn backtest_runs(db: &Db, strategy: Option<&str>, run: Option<&str>) -> Result<Vec<BacktestRun>> {
    let sql =
        "SELECT run_id, strategy_id, start_date, end_date, CAST(config_json AS TEXT) FROM backtest_runs \
               WHERE ($1 IS NULL OR strategy_id = $1) AND ($2 IS NULL OR run_id = $2) ORDER BY run_id";
    with_pool!(db, p => sqlx::query(sql)
        .bind(strategy)
        .bind(run)
        .fetch_all(p)
        .await
        .and_then(|rows| rows.iter().map(|r| Ok(BacktestRun {
            run_id: r.try_get(0)?,
            strategy_id: r.try_get(1)?,
            start_date: r.try_get(2)?,
            end_date: r.try_get(3)?,
            config_json: r.try_get(4)?,
        })).collect()))
    .map_err(|e| db.err(e))
}

/// `COUNT(*)` of the rows of `table` matching `filter` (text binds).
pub async fn count_where(db: &Db, table: &str, filter: &str, binds: &[&str]) -> Result<i64> {
    let sql = format!("SELECT COUNT(*) FROM {table} WHERE {filter}");
    with_pool!(db, p => {
        let mut q = sqlx::query_scalar::<_, i64>(&sql);
        for b in binds {
            q = q.bind(*b);
        }
        q.fetch_one(p).await
    })
    .map_err(|e| db.err(e))
}

/// The recorded feature spaces of a set's STAB scenario vectors under `model`,
/// with their row counts (`None`: not recorded).
pub async fn scenario_spaces(db: &Db, model: &str, set: &str) -> Result<Vec<(Option<String>, i64)>> {
    let sql = "SELECT feature_space, COUNT(*) FROM joint_embeddings \
               WHERE joint_type = $1 AND model_id = $2 AND entity_type = 'SCENARIO' AND scope_id = $3 \
               GROUP BY feature_space";
    with_pool!(db, p => sqlx::query_as(sql)
        .bind(crate::joint::STAB_JOINT_TYPE)
        .bind(model)
        .bind(set)
        .fetch_all(p)
        .await)
    .map_err(|e| db.err(e))
}
