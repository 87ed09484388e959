//! `stabspace_meta`: facts about the database itself (migration 0005).
//!
//! - `database_id`: a random id made at the first migration. Index partitions
//!   record it, so a partition built from another database is never used here.
//! - `demo`: present when `stabspace demo` created the database's contents; the
//!   demo refuses a database that holds data without it.

use super::sql::{execute, fetch_optional, Arg};
use super::Db;
use crate::error::{Error, Result};

/// Key of the demo marker.
pub const DEMO_KEY: &str = "demo";

/// One value of `stabspace_meta`.
pub async fn get(db: &Db, key: &str) -> Result<Option<String>> {
    let sql = "SELECT value FROM stabspace_meta WHERE key = $1";
    let row: Option<(String,)> = fetch_optional(db, sql, &[Arg::Text(key)]).await?;
    Ok(row.map(|(v,)| v))
}

/// Set one value of `stabspace_meta`.
pub async fn set(db: &Db, key: &str, value: &str) -> Result<()> {
    let sql = "INSERT INTO stabspace_meta (key, value) VALUES ($1, $2) \
               ON CONFLICT (key) DO UPDATE SET value = excluded.value";
    execute(db, sql, &[Arg::Text(key), Arg::Text(value)]).await?;
    Ok(())
}

/// The database's identity, made at its first migration.
/// Read once per [`Db`]: it never changes once made.
pub async fn database_id(db: &Db) -> Result<String> {
    db.database_id_memo()
        .get_or_try_init(|| async {
            get(db, "database_id").await?.ok_or_else(|| {
                Error::Invalid(format!(
                    "{} has no database id (stabspace_meta.database_id); run `stabspace migrate` on it",
                    db.label()
                ))
            })
        })
        .await
        .cloned()
}
