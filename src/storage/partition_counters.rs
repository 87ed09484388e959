//! What partitions are compared against: the change counters of each (joint
//! model, scenario set) in `joint_scenario_versions` (kept by triggers), the
//! count of a set's rows, and the sets that have STAB scenario vectors.

use super::joint::STAB_JOINT_TYPE;
use super::sql::{fetch_all, fetch_one, fetch_optional, Arg};
use super::Db;
use crate::error::Result;

/// The `joint_scenario_versions` row of (model, set).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CounterRow {
    /// Bumped by every insert, update and delete.
    pub version: i64,
    /// Bumped by updates and deletes only.
    pub rewrites: i64,
}

/// The change counters of (model, set), if the set was ever written: one
/// indexed row lookup.
pub async fn counters(db: &Db, model: &str, set: &str) -> Result<Option<CounterRow>> {
    let sql = "SELECT version, rewrites FROM joint_scenario_versions WHERE model_id = $1 AND scope_id = $2";
    let row: Option<(i64, i64)> = fetch_optional(db, sql, &[Arg::Text(model), Arg::Text(set)]).await?;
    Ok(row.map(|(version, rewrites)| CounterRow { version, rewrites }))
}

/// The counters of every set ever written, as (model, set, counters): one row each.
pub async fn all_counters(db: &Db) -> Result<Vec<(String, String, CounterRow)>> {
    let sql = "SELECT model_id, scope_id, version, rewrites FROM joint_scenario_versions";
    let rows: Vec<(String, String, i64, i64)> = fetch_all(db, sql, &[]).await?;
    Ok(rows
        .into_iter()
        .map(|(m, s, version, rewrites)| (m, s, CounterRow { version, rewrites }))
        .collect())
}

/// The number of STAB scenario vectors of (model, set) and the latest
/// `created_at` among them (as text): a scan of the set.
pub async fn scenario_rows(db: &Db, model: &str, set: &str) -> Result<(i64, Option<String>)> {
    let sql = "SELECT COUNT(*), CAST(max(created_at) AS TEXT) \
               FROM joint_embeddings WHERE joint_type = $1 AND model_id = $2 AND entity_type = 'SCENARIO' \
                 AND scope_id = $3";
    fetch_one(
        db,
        sql,
        &[Arg::Text(STAB_JOINT_TYPE), Arg::Text(model), Arg::Text(set)],
    )
    .await
}

/// (model, set) pairs with STAB scenario vectors in the database.
pub async fn sources(db: &Db) -> Result<Vec<(String, String)>> {
    let sql = "SELECT DISTINCT model_id, scope_id FROM joint_embeddings \
               WHERE joint_type = $1 AND entity_type = 'SCENARIO' ORDER BY model_id, scope_id";
    fetch_all(db, sql, &[Arg::Text(STAB_JOINT_TYPE)]).await
}
