//! `partition_manifest` (migration 0008): the versions of partitions
//! published to a remote partition store, one row per publish. The database
//! is the commit point of a publish: an object in the store is a version only
//! once its row is committed here.

use super::sql::{execute, fetch_all, fetch_optional, Arg};
use super::Db;
use crate::error::Result;

/// One published version of one (model, set) partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestRow {
    pub model_id: String,
    pub scenario_set_id: String,
    /// 1 for the first publish of the (model, set), then one more each time.
    pub generation: i64,
    /// The object's key in the store, below its prefix: content-addressed.
    pub object_key: String,
    pub size_bytes: i64,
    /// SHA-256 of the whole file, lowercase hex.
    pub sha256: String,
    /// The database the partition was built from (`stabspace_meta.database_id`).
    pub database_id: String,
    /// The set's change counters the partition was built at.
    pub scenario_version: i64,
    pub scenario_rewrites: i64,
    pub row_count: i64,
    /// The partition file's format version.
    pub format_version: i64,
    /// When the partition was built, and when this row was committed (RFC 3339, UTC).
    pub built_at: String,
    pub published_at: String,
    /// What the file records, as JSON (`partitions::Recorded`).
    pub summary: String,
}

type Tuple = (
    String,
    String,
    i64,
    String,
    i64,
    String,
    String,
    i64,
    i64,
    i64,
    i64,
    String,
    String,
    String,
);

const COLUMNS: &str = "model_id, scenario_set_id, generation, object_key, size_bytes, sha256, database_id, \
                       scenario_version, scenario_rewrites, row_count, format_version, built_at, published_at, summary";

fn row(t: Tuple) -> ManifestRow {
    ManifestRow {
        model_id: t.0,
        scenario_set_id: t.1,
        generation: t.2,
        object_key: t.3,
        size_bytes: t.4,
        sha256: t.5,
        database_id: t.6,
        scenario_version: t.7,
        scenario_rewrites: t.8,
        row_count: t.9,
        format_version: t.10,
        built_at: t.11,
        published_at: t.12,
        summary: t.13,
    }
}

/// The newest generation of every (model, set), ordered by model and set.
pub async fn current(db: &Db) -> Result<Vec<ManifestRow>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM partition_manifest m \
          WHERE generation = (SELECT MAX(generation) FROM partition_manifest n \
                               WHERE n.model_id = m.model_id AND n.scenario_set_id = m.scenario_set_id) \
          ORDER BY model_id, scenario_set_id"
    );
    let rows: Vec<Tuple> = fetch_all(db, &sql, &[]).await?;
    Ok(rows.into_iter().map(row).collect())
}

/// What a node compares to tell whether the manifest moved: the row count,
/// the sum of the generations and the newest publish time.
pub type Signature = (i64, i64, String);

/// The manifest's [`Signature`]: it changes with every commit and delete (a
/// commit adds a row with a new generation; a delete removes rows), so a
/// node polls this one aggregate and reads the rows only when it moved.
pub async fn signature(db: &Db) -> Result<Signature> {
    let sql =
        "SELECT COUNT(*), CAST(COALESCE(SUM(generation), 0) AS BIGINT), COALESCE(MAX(published_at), '') \
               FROM partition_manifest";
    super::sql::fetch_one(db, sql, &[]).await
}

/// Every row, ordered by model, set and generation.
pub async fn all(db: &Db) -> Result<Vec<ManifestRow>> {
    let sql =
        format!("SELECT {COLUMNS} FROM partition_manifest ORDER BY model_id, scenario_set_id, generation");
    let rows: Vec<Tuple> = fetch_all(db, &sql, &[]).await?;
    Ok(rows.into_iter().map(row).collect())
}

/// The newest generation of (model, set): 0 when it was never published.
pub async fn generation(db: &Db, model: &str, set: &str) -> Result<i64> {
    let sql = "SELECT MAX(generation) FROM partition_manifest WHERE model_id = $1 AND scenario_set_id = $2";
    let got: Option<(Option<i64>,)> = fetch_optional(db, sql, &[Arg::Text(model), Arg::Text(set)]).await?;
    Ok(got.and_then(|(g,)| g).unwrap_or(0))
}

/// Commit `r` as the next version of its (model, set). `false`: another
/// publish committed `r.generation` first (nothing was written).
pub async fn commit(db: &Db, r: &ManifestRow) -> Result<bool> {
    let sql = format!(
        "INSERT INTO partition_manifest ({COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
         ON CONFLICT (model_id, scenario_set_id, generation) DO NOTHING"
    );
    let args = [
        Arg::Text(&r.model_id),
        Arg::Text(&r.scenario_set_id),
        Arg::Int(r.generation),
        Arg::Text(&r.object_key),
        Arg::Int(r.size_bytes),
        Arg::Text(&r.sha256),
        Arg::Text(&r.database_id),
        Arg::Int(r.scenario_version),
        Arg::Int(r.scenario_rewrites),
        Arg::Int(r.row_count),
        Arg::Int(r.format_version),
        Arg::Text(&r.built_at),
        Arg::Text(&r.published_at),
        Arg::Text(&r.summary),
    ];
    Ok(execute(db, &sql, &args).await? == 1)
}

/// Forget every version of (model, set) (`index drop`); the rows deleted.
pub async fn remove(db: &Db, model: &str, set: &str) -> Result<u64> {
    let sql = "DELETE FROM partition_manifest WHERE model_id = $1 AND scenario_set_id = $2";
    execute(db, sql, &[Arg::Text(model), Arg::Text(set)]).await
}

/// Forget one superseded version (`index gc`).
pub async fn remove_generation(db: &Db, model: &str, set: &str, generation: i64) -> Result<u64> {
    let sql = "DELETE FROM partition_manifest \
                WHERE model_id = $1 AND scenario_set_id = $2 AND generation = $3";
    execute(db, sql, &[Arg::Text(model), Arg::Text(set), Arg::Int(generation)]).await
}
