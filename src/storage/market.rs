//! The market's reference data: `instruments`, `markets`, `issuers` and
//! `issuer_fundamentals`; and the ids an import checks rows against.

use std::collections::HashSet;

use chrono::NaiveDate;

use super::sql::{date_agg, distinct, fetch_all, fetch_column, sql_limit, tx_fetch_all, Arg};
use super::{Db, Tx};
use crate::error::Result;

/// Active instruments of a market, ordered by id, at most `limit`.
pub async fn active_instruments(db: &Db, market_id: &str, limit: Option<u64>) -> Result<Vec<String>> {
    let sql = "SELECT instrument_id FROM instruments \
               WHERE market_id = $1 AND lower(status) = 'active' \
               ORDER BY instrument_id LIMIT $2";
    fetch_column(db, sql, &[Arg::Text(market_id), Arg::Int(sql_limit(limit))]).await
}

/// The markets with active instruments, all of them, ordered.
pub async fn active_markets(db: &Db) -> Result<Vec<String>> {
    let sql = "SELECT DISTINCT market_id FROM instruments WHERE lower(status) = 'active' ORDER BY market_id";
    fetch_column(db, sql, &[]).await
}

/// Instruments of a market (and region), active or not, by id.
pub async fn market_instruments(db: &Db, market: &str, region: Option<&str>) -> Result<Vec<String>> {
    let sql = "SELECT instrument_id FROM instruments WHERE market_id = $1 AND ($2 IS NULL OR region = $2) \
               ORDER BY instrument_id";
    fetch_column(db, sql, &[Arg::Text(market), Arg::OptText(region)]).await
}

/// The markets of the instruments (at most 50, for hints).
pub async fn markets(db: &Db) -> Result<Vec<String>> {
    distinct(db, "market_id", "instruments", "1 = 1", &[]).await
}

/// Latest `issuer_fundamentals` row of each issuer on or before `as_of`, by
/// issuer: (issuer, date, fundamentals as JSON text).
pub async fn latest_fundamentals(
    db: &Db,
    as_of: NaiveDate,
    limit: Option<u64>,
) -> Result<Vec<(String, NaiveDate, String)>> {
    let sql = "SELECT f.issuer_id, f.as_of_date, CAST(f.fundamentals AS TEXT) FROM issuer_fundamentals f \
               WHERE f.as_of_date = (SELECT max(g.as_of_date) FROM issuer_fundamentals g \
                                     WHERE g.issuer_id = f.issuer_id AND g.as_of_date <= $1) \
               ORDER BY f.issuer_id LIMIT $2";
    fetch_all(db, sql, &[Arg::Date(as_of), Arg::Int(sql_limit(limit))]).await
}

/// The earliest date with issuer fundamentals.
pub async fn earliest_fundamentals(db: &Db) -> Result<Option<NaiveDate>> {
    date_agg(db, "SELECT min(as_of_date) FROM issuer_fundamentals", &[]).await
}

/// A set of ids that imported rows name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KnownIds {
    /// `instruments.instrument_id`.
    Instruments,
    /// The portfolios with target weights (`target_portfolios.portfolio_id`).
    TargetPortfolios,
    /// `issuers.issuer_id`.
    Issuers,
}

/// Every id of `which`, read inside the transaction.
pub async fn known_ids(tx: &mut Tx, which: KnownIds) -> Result<HashSet<String>, sqlx::Error> {
    let sql = match which {
        KnownIds::Instruments => "SELECT instrument_id FROM instruments",
        KnownIds::TargetPortfolios => "SELECT DISTINCT portfolio_id FROM target_portfolios",
        KnownIds::Issuers => "SELECT issuer_id FROM issuers",
    };
    let ids: Vec<(String,)> = tx_fetch_all(tx, sql, &[]).await?;
    Ok(ids.into_iter().map(|(id,)| id).collect())
}
