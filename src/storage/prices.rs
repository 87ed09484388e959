//! `prices_daily`: instruments' recent prices and a market's calendar.
//!
//! Numbers are read through `CAST(… AS DOUBLE PRECISION)`: tables that another
//! tool created first may hold `NUMERIC` (or `REAL`, `INTEGER`) columns where our
//! migrations would have made `DOUBLE PRECISION`, and the migrations leave such
//! tables as they are. Both backends accept the cast (SQLite gives it REAL
//! affinity).

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDate;

use super::sql::{bind_args, fetch_all, fetch_column, placeholders, split_floats, Arg, IN_CHUNK};
use super::{Db, Pool};
use crate::error::{Error, Result};

/// Prices of one instrument, oldest first: its trade dates, closes and volumes.
#[derive(Clone, Debug, PartialEq)]
pub struct PriceRows {
    pub instrument_id: String,
    pub dates: Vec<NaiveDate>,
    pub close: Vec<f64>,
    pub volume: Vec<f64>,
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
) -> Result<HashMap<String, PriceRows>> {
    let mut out: HashMap<String, PriceRows> = HashMap::with_capacity(instruments.len());
    let offset = n.saturating_sub(1) as i64;
    for chunk in instruments.chunks(IN_CHUNK) {
        let sql = format!(
            "SELECT i.instrument_id, (SELECT q.trade_date FROM prices_daily q \
               WHERE q.instrument_id = i.instrument_id AND q.trade_date <= $1 \
               ORDER BY q.trade_date DESC LIMIT 1 OFFSET $2) \
             FROM instruments i WHERE i.instrument_id IN ({})",
            placeholders(3, chunk.len())
        );
        let mut args = vec![Arg::Date(as_of), Arg::Int(offset)];
        args.extend(chunk.iter().map(|id| Arg::Text(id)));
        let cutoffs: Vec<(String, Option<NaiveDate>)> = fetch_all(db, &sql, &args).await?;
        // Instruments with fewer than n prices have no cutoff: all their (few) prices.
        let mut groups: BTreeMap<NaiveDate, Vec<String>> = BTreeMap::new();
        for (id, cutoff) in cutoffs {
            groups
                .entry(cutoff.unwrap_or(NaiveDate::MIN))
                .or_default()
                .push(id);
        }
        for (from, ids) in groups {
            for w in price_rows(db, &ids, from, as_of).await? {
                out.insert(w.instrument_id.clone(), w);
            }
        }
    }
    Ok(out)
}

/// Prices of `ids` with `from <= trade_date <= to`, one aggregated row per
/// instrument: arrays on PostgreSQL; on SQLite, which has none, comma-joined
/// ISO dates and round-trippable numbers. The rest of the statement is one text.
async fn price_rows(db: &Db, ids: &[String], from: NaiveDate, to: NaiveDate) -> Result<Vec<PriceRows>> {
    let from = from.max(NaiveDate::from_ymd_opt(1, 1, 1).expect("valid date"));
    let filter = format!(
        "FROM prices_daily WHERE instrument_id IN ({}) AND trade_date >= $1 AND trade_date <= $2 \
         GROUP BY instrument_id",
        placeholders(3, ids.len())
    );
    let mut args = vec![Arg::Date(from), Arg::Date(to)];
    args.extend(ids.iter().map(|id| Arg::Text(id)));
    let err = |e| db.err(e);
    match db.pool() {
        Pool::Postgres(pg) => {
            let sql = format!(
                "SELECT instrument_id, array_agg(trade_date ORDER BY trade_date), \
                 array_agg(CAST(close AS DOUBLE PRECISION) ORDER BY trade_date), \
                 array_agg(CAST(volume AS DOUBLE PRECISION) ORDER BY trade_date) {filter}"
            );
            let q = sqlx::query_as::<_, (String, Vec<NaiveDate>, Vec<f64>, Vec<f64>)>(&sql);
            let rows = bind_args!(q, &args).fetch_all(pg).await.map_err(err)?;
            Ok(rows
                .into_iter()
                .map(|(instrument_id, dates, close, volume)| PriceRows {
                    instrument_id,
                    dates,
                    close,
                    volume,
                })
                .collect())
        }
        Pool::Sqlite(lite) => {
            let sql = format!(
                "SELECT instrument_id, group_concat(trade_date, ',' ORDER BY trade_date), \
                 group_concat(printf('%!.17g', close), ',' ORDER BY trade_date), \
                 group_concat(printf('%!.17g', volume), ',' ORDER BY trade_date) {filter}"
            );
            let q = sqlx::query_as::<_, (String, String, String, String)>(&sql);
            let rows = bind_args!(q, &args).fetch_all(lite).await.map_err(err)?;
            rows.into_iter()
                .map(|(id, dates, close, volume)| {
                    let bad = |what: &str, e: &dyn std::fmt::Display| {
                        Error::Invalid(format!("prices of {id:?}: unreadable {what}: {e}"))
                    };
                    Ok(PriceRows {
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

/// The market's trading days: the dates with a price of any of its instruments.
pub async fn market_calendar(db: &Db, market: &str) -> Result<Vec<NaiveDate>> {
    let sql = "SELECT DISTINCT p.trade_date FROM prices_daily p \
               JOIN instruments i ON i.instrument_id = p.instrument_id \
               WHERE i.market_id = $1 ORDER BY p.trade_date";
    fetch_column(db, sql, &[Arg::Text(market)]).await
}
