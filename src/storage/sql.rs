//! The small pieces every storage module shares: `--limit` as SQL, `IN (…)`
//! placeholders, typed binds ([`Arg`]) and the run-one-statement helpers that
//! bind, fetch and decode on whichever backend is open.
//!
//! Rows are decoded by position into tuples (both backends implement
//! `FromRow` for them); each module turns its tuples into its own row structs.

use chrono::NaiveDate;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::FromRow;

use super::{Db, Tx};
use crate::error::Result;
use crate::{on_tx, with_pool};

/// Ids per `IN (…)` list: far below both backends' parameter limits.
pub const IN_CHUNK: usize = 500;

/// `--limit` as SQL: no limit is the largest value both backends accept.
pub fn sql_limit(limit: Option<u64>) -> i64 {
    limit.map_or(i64::MAX, |l| i64::try_from(l).unwrap_or(i64::MAX))
}

/// `$first, $first+1, …` for an IN list of `len` values.
pub fn placeholders(first: usize, len: usize) -> String {
    (first..first + len)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// One value bound to a `$N` placeholder, in order.
#[derive(Clone, Copy, Debug)]
pub enum Arg<'a> {
    Text(&'a str),
    /// Text or NULL.
    OptText(Option<&'a str>),
    Date(NaiveDate),
    Int(i64),
    Float(f64),
    /// A number or NULL.
    OptFloat(Option<f64>),
}

/// `args` bound to a query of either backend, in order.
macro_rules! bind_args {
    ($q:expr, $args:expr) => {{
        let mut q = $q;
        for a in $args {
            q = match *a {
                $crate::storage::sql::Arg::Text(v) => q.bind(v),
                $crate::storage::sql::Arg::OptText(v) => q.bind(v),
                $crate::storage::sql::Arg::Date(v) => q.bind(v),
                $crate::storage::sql::Arg::Int(v) => q.bind(v),
                $crate::storage::sql::Arg::Float(v) => q.bind(v),
                $crate::storage::sql::Arg::OptFloat(v) => q.bind(v),
            };
        }
        q
    }};
}
pub(crate) use bind_args;

/// A row both backends decode (a tuple of shared column types).
pub trait Decoded: Send + Unpin + for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow> {}
impl<T> Decoded for T where T: Send + Unpin + for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow> {}

/// Every row of `sql`.
pub async fn fetch_all<T: Decoded>(db: &Db, sql: &str, args: &[Arg<'_>]) -> Result<Vec<T>> {
    with_pool!(db, p => bind_args!(sqlx::query_as::<_, T>(sql), args).fetch_all(p).await)
        .map_err(|e| db.err(e))
}

/// The one row of `sql` (an aggregate).
pub async fn fetch_one<T: Decoded>(db: &Db, sql: &str, args: &[Arg<'_>]) -> Result<T> {
    with_pool!(db, p => bind_args!(sqlx::query_as::<_, T>(sql), args).fetch_one(p).await)
        .map_err(|e| db.err(e))
}

/// The row of `sql`, if there is one.
pub async fn fetch_optional<T: Decoded>(db: &Db, sql: &str, args: &[Arg<'_>]) -> Result<Option<T>> {
    with_pool!(db, p => bind_args!(sqlx::query_as::<_, T>(sql), args).fetch_optional(p).await)
        .map_err(|e| db.err(e))
}

/// The first column of every row of `sql`.
pub async fn fetch_column<T>(db: &Db, sql: &str, args: &[Arg<'_>]) -> Result<Vec<T>>
where
    (T,): Decoded,
{
    let rows: Vec<(T,)> = fetch_all(db, sql, args).await?;
    Ok(rows.into_iter().map(|(v,)| v).collect())
}

/// Run `sql`; the rows it changed.
pub async fn execute(db: &Db, sql: &str, args: &[Arg<'_>]) -> Result<u64> {
    with_pool!(db, p => bind_args!(sqlx::query(sql), args).execute(p).await.map(|r| r.rows_affected()))
        .map_err(|e| db.err(e))
}

/// Every row of `sql`, inside the transaction.
pub async fn tx_fetch_all<T: Decoded>(
    tx: &mut Tx,
    sql: &str,
    args: &[Arg<'_>],
) -> Result<Vec<T>, sqlx::Error> {
    on_tx!(tx, c => bind_args!(sqlx::query_as::<_, T>(sql), args).fetch_all(c).await)
}

/// The one row of `sql`, inside the transaction.
pub async fn tx_fetch_one<T: Decoded>(tx: &mut Tx, sql: &str, args: &[Arg<'_>]) -> Result<T, sqlx::Error> {
    on_tx!(tx, c => bind_args!(sqlx::query_as::<_, T>(sql), args).fetch_one(c).await)
}

/// Run `sql` inside the transaction; the rows it changed.
pub async fn tx_execute(tx: &mut Tx, sql: &str, args: &[Arg<'_>]) -> Result<u64, sqlx::Error> {
    on_tx!(tx, c => bind_args!(sqlx::query(sql), args).execute(c).await.map(|r| r.rows_affected()))
}

/// Distinct values of one text column, for "what exists" in error messages
/// (at most 50, ordered).
pub async fn distinct(
    db: &Db,
    column: &str,
    table: &str,
    filter: &str,
    args: &[Arg<'_>],
) -> Result<Vec<String>> {
    let sql = format!("SELECT DISTINCT {column} FROM {table} WHERE {filter} ORDER BY {column} LIMIT 50");
    fetch_column(db, &sql, args).await
}

/// One date-valued aggregate (`max(as_of_date)`, …).
pub async fn date_agg(db: &Db, sql: &str, args: &[Arg<'_>]) -> Result<Option<NaiveDate>> {
    let (d,): (Option<NaiveDate>,) = fetch_one(db, sql, args).await?;
    Ok(d)
}

/// Numbers joined by commas (SQLite's stand-in for arrays).
pub fn split_floats(joined: &str) -> Result<Vec<f64>, std::num::ParseFloatError> {
    joined.split(',').map(str::parse).collect()
}
