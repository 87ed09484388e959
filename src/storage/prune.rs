//! Removing stored vectors that a re-run no longer produces.
//!
//! A backfill replaces what an earlier run stored for the same key; when it
//! now skips an entity (too little history, a non-positive close, no numeric
//! fields, …) the earlier run's vector no longer matches the inputs and must
//! go too, in the same transaction as the writes. So a re-run leaves exactly
//! what a run from scratch would store.

use std::collections::BTreeSet;

use chrono::NaiveDate;

use super::joint::placeholders;
use super::Tx;
use crate::on_tx;

/// Ids per `IN (…)` list.
const CHUNK: usize = 500;

/// The stored vectors of one (table, model, entity type, scope, date).
#[derive(Clone, Copy, Debug)]
pub struct VectorKey<'a> {
    /// `Some(joint_type)`: `joint_embeddings`; `None`: `numeric_window_embeddings`.
    pub joint_type: Option<&'a str>,
    pub model_id: &'a str,
    pub entity_type: &'a str,
    pub scope_id: &'a str,
    pub as_of: NaiveDate,
}

impl VectorKey<'_> {
    /// `FROM … WHERE …` with $1 model, $2 entity type, $3 scope, $4 date, $5 joint type.
    fn table_filter(&self) -> &'static str {
        match self.joint_type {
            Some(_) => {
                "FROM joint_embeddings WHERE model_id = $1 AND entity_type = $2 AND scope_id = $3 \
                 AND as_of_date = $4 AND joint_type = $5"
            }
            None => {
                "FROM numeric_window_embeddings WHERE model_id = $1 AND entity_type = $2 AND scope_id = $3 \
                 AND as_of_date = $4 AND $5 = ''"
            }
        }
    }
}

/// The entity ids stored under `key`, sorted.
pub async fn stored_ids(tx: &mut Tx, key: VectorKey<'_>) -> Result<Vec<String>, sqlx::Error> {
    let sql = format!("SELECT entity_id {} ORDER BY entity_id", key.table_filter());
    let jt = key.joint_type.unwrap_or_default();
    on_tx!(tx, c => sqlx::query_scalar::<_, String>(&sql)
        .bind(key.model_id)
        .bind(key.entity_type)
        .bind(key.scope_id)
        .bind(key.as_of)
        .bind(jt)
        .fetch_all(c)
        .await)
}

/// Delete the vectors of `ids` under `key`; returns the rows deleted.
pub async fn delete_ids(tx: &mut Tx, key: VectorKey<'_>, ids: &[String]) -> Result<u64, sqlx::Error> {
    let jt = key.joint_type.unwrap_or_default();
    let mut deleted = 0;
    for chunk in ids.chunks(CHUNK) {
        let sql = format!(
            "DELETE {} AND entity_id IN ({})",
            key.table_filter(),
            placeholders(6, chunk.len())
        );
        deleted += on_tx!(tx, c => {
            let mut q = sqlx::query(&sql)
                .bind(key.model_id)
                .bind(key.entity_type)
                .bind(key.scope_id)
                .bind(key.as_of)
                .bind(jt);
            for id in chunk {
                q = q.bind(id);
            }
            q.execute(c).await?.rows_affected()
        });
    }
    Ok(deleted)
}

/// Make the vectors under `key` exactly the ones this run wrote: delete every
/// stored entity not in `written` (limited to `considered` when the run saw
/// only part of the entities, as with `--limit`). Returns the ids deleted.
pub async fn keep_only(
    tx: &mut Tx,
    key: VectorKey<'_>,
    written: &BTreeSet<&str>,
    considered: Option<&BTreeSet<&str>>,
) -> Result<Vec<String>, sqlx::Error> {
    let gone: Vec<String> = stored_ids(tx, key)
        .await?
        .into_iter()
        .filter(|id| !written.contains(id.as_str()) && considered.is_none_or(|c| c.contains(id.as_str())))
        .collect();
    delete_ids(tx, key, &gone).await?;
    Ok(gone)
}
