//! Reads shared by the workflows, written once for both backends.
//!
//! Numbers are read through `CAST(… AS DOUBLE PRECISION)`: tables that another
//! tool created first may hold `NUMERIC` (or `REAL`, `INTEGER`) columns where our
//! migrations would have made `DOUBLE PRECISION`, and the migrations leave such
//! tables as they are. Both backends accept the cast (SQLite gives it REAL
//! affinity).

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDate;
use sqlx::Row;

use super::sql::{placeholders, split_floats, IN_CHUNK};
use super::{Db, Pool};
use crate::encoders::PriceWindow;
use crate::error::{Error, Result};
use crate::with_pool;

use super::sql::sql_limit;

/// Active instruments of a market, ordered by id, at most `limit`.
pub async fn active_instruments(db: &Db, market_id: &str, limit: Option<u64>) -> Result<Vec<String>> {
    let sql = "SELECT instrument_id FROM instruments \
               WHERE market_id = $1 AND lower(status) = 'active' \
               ORDER BY instrument_id LIMIT $2";
    with_pool!(db, p => sqlx::query_scalar::<_, String>(sql)
        .bind(market_id)
        .bind(sql_limit(limit))
        .fetch_all(p)
        .await)
    .map_err(|e| db.err(e))
}

/// For each instrument, its last `n` prices on or before `as_of`, oldest first.
/// Instruments without any price are absent from the map.
///
/// Two index seeks per instrument, whatever the length of its history: first
/// each instrument's cutoff (its n-th latest trade date), then the prices from
/// the cutoff to `as_of` of all instruments sharing that cutoff (one query
/// when they share a calendar), aggregated to one row per instrument.
pub async fn recent_prices(
    db: &Db,
    instruments: &[String],
    as_of: NaiveDate,
    n: usize,
) -> Result<HashMap<String, PriceWindow>> {
    let mut out: HashMap<String, PriceWindow> = HashMap::with_capacity(instruments.len());
    let offset = n.saturating_sub(1) as i64;
    for chunk in instruments.chunks(IN_CHUNK) {
        let sql = format!(
            "SELECT i.instrument_id, (SELECT q.trade_date FROM prices_daily q \
               WHERE q.instrument_id = i.instrument_id AND q.trade_date <= $1 \
               ORDER BY q.trade_date DESC LIMIT 1 OFFSET $2) \
             FROM instruments i WHERE i.instrument_id IN ({})",
            placeholders(3, chunk.len())
        );
        let cutoffs: Vec<(String, Option<NaiveDate>)> = with_pool!(db, p => {
            let mut q = sqlx::query_as(&sql).bind(as_of).bind(offset);
            for id in chunk {
                q = q.bind(id);
            }
            q.fetch_all(p).await
        })
        .map_err(|e| db.err(e))?;
        // Instruments with fewer than n prices have no cutoff: all their (few) prices.
        let mut groups: BTreeMap<NaiveDate, Vec<String>> = BTreeMap::new();
        for (id, cutoff) in cutoffs {
            groups
                .entry(cutoff.unwrap_or(NaiveDate::MIN))
                .or_default()
                .push(id);
        }
        for (from, ids) in groups {
            for w in price_windows(db, &ids, from, as_of).await? {
                out.insert(w.instrument_id.clone(), w);
            }
        }
    }
    Ok(out)
}

/// Prices of `ids` with `from <= trade_date <= to`, one aggregated row per instrument.
async fn price_windows(db: &Db, ids: &[String], from: NaiveDate, to: NaiveDate) -> Result<Vec<PriceWindow>> {
    let filter = format!(
        "FROM prices_daily WHERE instrument_id IN ({}) AND trade_date >= $1 AND trade_date <= $2 \
         GROUP BY instrument_id",
        placeholders(3, ids.len())
    );
    let from = from.max(NaiveDate::from_ymd_opt(1, 1, 1).expect("valid date"));
    match db.pool() {
        Pool::Postgres(pg) => {
            let sql = format!(
                "SELECT instrument_id, array_agg(trade_date ORDER BY trade_date), \
                 array_agg(CAST(close AS DOUBLE PRECISION) ORDER BY trade_date), \
                 array_agg(CAST(volume AS DOUBLE PRECISION) ORDER BY trade_date) {filter}"
            );
            let mut q = sqlx::query(&sql).bind(from).bind(to);
            for id in ids {
                q = q.bind(id);
            }
            q.fetch_all(pg)
                .await
                .and_then(|rows| {
                    rows.iter()
                        .map(|r| {
                            Ok(PriceWindow {
                                instrument_id: r.try_get(0)?,
                                dates: r.try_get(1)?,
                                close: r.try_get(2)?,
                                volume: r.try_get(3)?,
                            })
                        })
                        .collect()
                })
                .map_err(|e| db.err(e))
        }
        Pool::Sqlite(lite) => {
            // No arrays in SQLite: comma-joined ISO dates and round-trippable numbers.
            let sql = format!(
                "SELECT instrument_id, group_concat(trade_date, ',' ORDER BY trade_date), \
                 group_concat(printf('%!.17g', close), ',' ORDER BY trade_date), \
                 group_concat(printf('%!.17g', volume), ',' ORDER BY trade_date) {filter}"
            );
            let mut q = sqlx::query_as(&sql).bind(from).bind(to);
            for id in ids {
                q = q.bind(id);
            }
            let rows: Vec<(String, String, String, String)> =
                q.fetch_all(lite).await.map_err(|e| db.err(e))?;
            rows.into_iter()
                .map(|(id, dates, close, volume)| {
                    let bad = |what: &str, e: &dyn std::fmt::Display| {
                        Error::Invalid(format!("prices of {id:?}: unreadable {what}: {e}"))
                    };
                    Ok(PriceWindow {
                        dates: dates
                            .split(',')
                            .map(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d"))
                            .collect::<Result<_, _>>()
                            .map_err(|e| bad("trade_date", &e))?,
                        close: split_floats(&close).map_err(|e| bad("close", &e))?,
                        volume: split_floats(&volume).map_err(|e| bad("volume", &e))?,
                        instrument_id: id,
                    })
                })
                .collect()
        }
    }
}

/// Distinct scenario ids with paths in a set, ordered, at most `limit`.
pub async fn scenario_ids(db: &Db, set: &str, limit: Option<u64>) -> Result<Vec<String>> {
    let sql = "SELECT DISTINCT scenario_id FROM scenario_paths WHERE scenario_set_id = $1 \
               ORDER BY scenario_id LIMIT $2";
    with_pool!(db, p => sqlx::query_scalar::<_, String>(sql)
        .bind(set)
        .bind(sql_limit(limit))
        .fetch_all(p)
        .await)
    .map_err(|e| db.err(e))
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
    let rows = with_pool!(db, p => sqlx::query(sql).bind(set).fetch_all(p).await.and_then(|rows| {
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get::<String, _>(0)?,
                    ScenarioMeta {
                        scenario_date: r.try_get(1)?,
                        shock_type: r.try_get(2)?,
                        severity: r.try_get(3)?,
                    },
                ))
            })
            .collect::<Result<HashMap<_, _>, sqlx::Error>>()
    }))
    .map_err(|e| db.err(e))?;
    Ok(rows)
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
/// scenario id: one row per scenario instead of one per cell.
pub async fn scenario_panels(db: &Db, set: &str, first: &str, last: &str) -> Result<Vec<PanelRow>> {
    const HEAD: &str = "SELECT scenario_id, COUNT(DISTINCT day_index), COUNT(DISTINCT instrument_id), ";
    const TAIL: &str = " FROM scenario_paths \
        WHERE scenario_set_id = $1 AND scenario_id >= $2 AND scenario_id <= $3 \
        GROUP BY scenario_id ORDER BY scenario_id";
    let counts = |r: &dyn Fn(usize) -> Result<i64, sqlx::Error>| -> Result<(usize, usize), sqlx::Error> {
        Ok((r(1)?.max(0) as usize, r(2)?.max(0) as usize))
    };
    match db.pool() {
        Pool::Postgres(p) => {
            let sql = format!(
                "{HEAD}array_agg(CAST(return AS DOUBLE PRECISION) ORDER BY day_index, instrument_id){TAIL}"
            );
            let rows = sqlx::query(&sql)
                .bind(set)
                .bind(first)
                .bind(last)
                .fetch_all(p)
                .await;
            rows.and_then(|rows| {
                rows.iter()
                    .map(|r| {
                        let (days, instruments) = counts(&|i| r.try_get::<i64, _>(i))?;
                        Ok(PanelRow {
                            scenario_id: r.try_get(0)?,
                            days,
                            instruments,
                            returns: r.try_get(3)?,
                        })
                    })
                    .collect()
            })
            .map_err(|e| db.err(e))
        }
        Pool::Sqlite(p) => {
            // SQLite has no arrays: a comma-joined list of round-trippable
            // 17-significant-digit numbers ('%!.17g'; plain %g stops at 16).
            let sql = format!(
                "{HEAD}group_concat(printf('%!.17g', return), ',' ORDER BY day_index, instrument_id){TAIL}"
            );
            let rows = sqlx::query(&sql)
                .bind(set)
                .bind(first)
                .bind(last)
                .fetch_all(p)
                .await;
            let rows = rows
                .and_then(|rows| {
                    rows.iter()
                        .map(|r| {
                            let (days, instruments) = counts(&|i| r.try_get::<i64, _>(i))?;
                            Ok((
                                r.try_get::<String, _>(0)?,
                                days,
                                instruments,
                                r.try_get::<String, _>(3)?,
                            ))
                        })
                        .collect::<Result<Vec<_>, sqlx::Error>>()
                })
                .map_err(|e| db.err(e))?;
            rows.into_iter()
                .map(|(scenario_id, days, instruments, joined)| {
                    let returns = split_floats(&joined).map_err(|e| {
                        Error::Invalid(format!("scenario {scenario_id:?}: unreadable return: {e}"))
                    })?;
                    Ok(PanelRow {
                        scenario_id,
                        days,
                        instruments,
                        returns,
                    })
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
    with_pool!(db, p => sqlx::query(sql).bind(set).bind(first).bind(last).fetch_all(p).await.and_then(|rows| {
        rows.iter()
            .map(|r| {
                Ok(PathCell {
                    scenario_id: r.try_get(0)?,
                    day_index: r.try_get(1)?,
                    instrument_id: r.try_get(2)?,
                    ret: r.try_get(3)?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
    }))
    .map_err(|e| db.err(e))
}

/// Number of rows in a table (for summaries and tests).
pub async fn count(db: &Db, table: &str) -> Result<i64> {
    let sql = format!("SELECT COUNT(*) FROM {table}");
    with_pool!(db, p => sqlx::query_scalar::<_, i64>(&sql).fetch_one(p).await).map_err(|e| db.err(e))
}
