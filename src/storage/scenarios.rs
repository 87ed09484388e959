//! `scenarios` and `scenario_paths`: scenario sets, their scenarios' rows and
//! their return paths.
//!
//! Returns are read through `CAST(… AS DOUBLE PRECISION)` (see [`super::prices`]).

use std::collections::HashMap;

use chrono::NaiveDate;

use super::sql::{bind_args, distinct, fetch_all, fetch_column, split_floats, sql_limit, Arg};
use super::{Db, Pool, Tx};
use crate::error::{Error, Result};

/// Distinct scenario ids with paths in a set, ordered, at most `limit`.
pub async fn scenario_ids(db: &Db, set: &str, limit: Option<u64>) -> Result<Vec<String>> {
    let sql = "SELECT DISTINCT scenario_id FROM scenario_paths WHERE scenario_set_id = $1 \
               ORDER BY scenario_id LIMIT $2";
    fetch_column(db, sql, &[Arg::Text(set), Arg::Int(sql_limit(limit))]).await
}

/// The scenario sets with paths, all of them, ordered.
pub async fn sets_with_paths(db: &Db) -> Result<Vec<String>> {
    let sql = "SELECT DISTINCT scenario_set_id FROM scenario_paths ORDER BY scenario_set_id";
    fetch_column(db, sql, &[]).await
}

/// A scenario's row in `scenarios`.
#[derive(Clone, Debug, PartialEq)]
pub struct ScenarioMeta {
    pub scenario_date: NaiveDate,
    pub shock_type: Option<String>,
    pub severity: Option<String>,
}

/// All scenarios of a set, by scenario id.
pub async fn scenario_meta(db: &Db, set: &str) -> Result<HashMap<String, ScenarioMeta>> {
    let sql = "SELECT scenario_id, scenario_date, shock_type, severity FROM scenarios \
               WHERE scenario_set_id = $1";
    let rows: Vec<(String, NaiveDate, Option<String>, Option<String>)> =
        fetch_all(db, sql, &[Arg::Text(set)]).await?;
    Ok(rows
        .into_iter()
        .map(|(id, scenario_date, shock_type, severity)| {
            (
                id,
                ScenarioMeta {
                    scenario_date,
                    shock_type,
                    severity,
                },
            )
        })
        .collect())
}

/// The historical windows of `set` (shock type starting `hist`, any case:
/// [`crate::pointintime::is_historical`]) with the last `day_index` of their
/// paths and the market of their paths' first instrument (`None`: no path,
/// or an instrument not in `instruments`).
pub async fn historical_path_ends(db: &Db, set: &str) -> Result<Vec<(String, Option<i64>, Option<String>)>> {
    let sql = "SELECT s.scenario_id, \
                      (SELECT CAST(max(p.day_index) AS BIGINT) FROM scenario_paths p \
                        WHERE p.scenario_set_id = s.scenario_set_id AND p.scenario_id = s.scenario_id), \
                      (SELECT i.market_id FROM scenario_paths p JOIN instruments i ON i.instrument_id = p.instrument_id \
                        WHERE p.scenario_set_id = s.scenario_set_id AND p.scenario_id = s.scenario_id \
                        ORDER BY p.day_index, p.instrument_id LIMIT 1) \
               FROM scenarios s WHERE s.scenario_set_id = $1 AND lower(substr(s.shock_type, 1, 4)) = 'hist'";
    fetch_all(db, sql, &[Arg::Text(set)]).await
}

/// A scenario of a set with the number of distinct days of its paths
/// (`None`, or 0: it has none).
#[derive(Clone, Debug, PartialEq)]
pub struct ScenarioDays {
    pub scenario_id: String,
    pub scenario_date: NaiveDate,
    pub days: Option<i64>,
}

/// The scenarios of `set` with shock type `shock_type`, by id, with the days of their paths.
pub async fn scenarios_with_days(db: &Db, set: &str, shock_type: &str) -> Result<Vec<ScenarioDays>> {
    let sql = "SELECT s.scenario_id, s.scenario_date, \
                      (SELECT CAST(COUNT(DISTINCT p.day_index) AS BIGINT) FROM scenario_paths p \
                        WHERE p.scenario_set_id = s.scenario_set_id AND p.scenario_id = s.scenario_id) \
               FROM scenarios s WHERE s.scenario_set_id = $1 AND s.shock_type = $2 ORDER BY s.scenario_id";
    let rows: Vec<(String, NaiveDate, Option<i64>)> =
        fetch_all(db, sql, &[Arg::Text(set), Arg::Text(shock_type)]).await?;
    Ok(rows
        .into_iter()
        .map(|(scenario_id, scenario_date, days)| ScenarioDays {
            scenario_id,
            scenario_date,
            days,
        })
        .collect())
}

/// The shock types of a set's scenarios (at most 50, for hints).
pub async fn shock_types(db: &Db, set: &str) -> Result<Vec<String>> {
    distinct(
        db,
        "shock_type",
        "scenarios",
        "scenario_set_id = $1",
        &[Arg::Text(set)],
    )
    .await
}

/// The sets with scenarios of shock type `shock_type` (at most 50, for hints).
pub async fn sets_with_shock_type(db: &Db, shock_type: &str) -> Result<Vec<String>> {
    distinct(
        db,
        "scenario_set_id",
        "scenarios",
        "shock_type = $1",
        &[Arg::Text(shock_type)],
    )
    .await
}

/// Every scenario id of a set, handed to `each` as it streams from the
/// database inside the transaction (never all held at once).
pub async fn each_scenario_id(tx: &mut Tx, set: &str, mut each: impl FnMut(&str)) -> Result<(), sqlx::Error> {
    use futures_util::TryStreamExt as _;
    const SQL: &str = "SELECT scenario_id FROM scenarios WHERE scenario_set_id = $1";
    match tx {
        Tx::Postgres(t) => {
            let mut rows = sqlx::query_scalar::<_, String>(SQL).bind(set).fetch(&mut **t);
            while let Some(id) = rows.try_next().await? {
                each(&id);
            }
        }
        Tx::Sqlite(t) => {
            let mut rows = sqlx::query_scalar::<_, String>(SQL).bind(set).fetch(&mut **t);
            while let Some(id) = rows.try_next().await? {
                each(&id);
            }
        }
    }
    Ok(())
}

/// A scenario's path cells aggregated in SQL: how many distinct days and
/// instruments it has, and its returns ordered by (day_index, instrument_id).
/// The table key rules out duplicate cells, so the panel is complete exactly
/// when `returns.len() == days * instruments`.
#[derive(Clone, Debug, PartialEq)]
pub struct PanelRow {
    pub scenario_id: String,
    pub days: usize,
    pub instruments: usize,
    pub returns: Vec<f64>,
}

/// Aggregated panels of the scenarios with `first <= scenario_id <= last`, by
/// scenario id: one row per scenario instead of one per cell. The returns are
/// an array on PostgreSQL; on SQLite, which has none, a comma-joined list of
/// round-trippable 17-significant-digit numbers ('%!.17g'; plain %g stops at
/// 16). The rest of the statement is one text.
pub async fn scenario_panels(db: &Db, set: &str, first: &str, last: &str) -> Result<Vec<PanelRow>> {
    const HEAD: &str = "SELECT scenario_id, COUNT(DISTINCT day_index), COUNT(DISTINCT instrument_id), ";
    const TAIL: &str = " FROM scenario_paths \
        WHERE scenario_set_id = $1 AND scenario_id >= $2 AND scenario_id <= $3 \
        GROUP BY scenario_id ORDER BY scenario_id";
    let args = [Arg::Text(set), Arg::Text(first), Arg::Text(last)];
    let panel = |scenario_id, days: i64, instruments: i64, returns| PanelRow {
        scenario_id,
        days: days.max(0) as usize,
        instruments: instruments.max(0) as usize,
        returns,
    };
    let err = |e| db.err(e);
    match db.pool() {
        Pool::Postgres(p) => {
            let sql = format!(
                "{HEAD}array_agg(CAST(return AS DOUBLE PRECISION) ORDER BY day_index, instrument_id){TAIL}"
            );
            let q = sqlx::query_as::<_, (String, i64, i64, Vec<f64>)>(&sql);
            let rows = bind_args!(q, &args).fetch_all(p).await.map_err(err)?;
            Ok(rows.into_iter().map(|(id, d, i, r)| panel(id, d, i, r)).collect())
        }
        Pool::Sqlite(p) => {
            let sql = format!(
                "{HEAD}group_concat(printf('%!.17g', return), ',' ORDER BY day_index, instrument_id){TAIL}"
            );
            let q = sqlx::query_as::<_, (String, i64, i64, String)>(&sql);
            let rows = bind_args!(q, &args).fetch_all(p).await.map_err(err)?;
            rows.into_iter()
                .map(|(id, d, i, joined)| {
                    let returns = split_floats(&joined)
                        .map_err(|e| Error::Invalid(format!("scenario {id:?}: unreadable return: {e}")))?;
                    Ok(panel(id, d, i, returns))
                })
                .collect()
        }
    }
}

/// One cell of a scenario path.
#[derive(Clone, Debug, PartialEq)]
pub struct PathCell {
    pub scenario_id: String,
    pub day_index: i32,
    pub instrument_id: String,
    pub ret: f64,
}

/// Path cells of the scenarios with `first <= scenario_id <= last`, ordered by
/// scenario, day and instrument (the table's key order). One row per cell: used
/// to name the missing cell of an incomplete panel.
pub async fn scenario_paths(db: &Db, set: &str, first: &str, last: &str) -> Result<Vec<PathCell>> {
    let sql =
        "SELECT scenario_id, day_index, instrument_id, CAST(return AS DOUBLE PRECISION) FROM scenario_paths \
               WHERE scenario_set_id = $1 AND scenario_id >= $2 AND scenario_id <= $3 \
               ORDER BY scenario_id, day_index, instrument_id";
    let rows: Vec<(String, i32, String, f64)> =
        fetch_all(db, sql, &[Arg::Text(set), Arg::Text(first), Arg::Text(last)]).await?;
    Ok(rows
        .into_iter()
        .map(|(scenario_id, day_index, instrument_id, ret)| PathCell {
            scenario_id,
            day_index,
            instrument_id,
            ret,
        })
        .collect())
}
