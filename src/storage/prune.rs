//! Removing stored vectors that a re-run no longer produces.
//!
//! A backfill replaces what an earlier run stored for the same key; when it
//! now skips an entity (too little history, a non-positive close, no numeric
//! fields, …) the earlier run's vector no longer matches the inputs and must
//! go too, in the same transaction as the writes. So a re-run leaves exactly
//! what a run from scratch would store.

use std::collections::BTreeSet;

use chrono::NaiveDate;

use super::sql::{placeholders, tx_execute, tx_fetch_all, Arg, IN_CHUNK};
use super::Tx;

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

impl<'a> VectorKey<'a> {
    /// The binds of [`VectorKey::table_filter`], $1 to $5.
    fn args(&self) -> Vec<Arg<'a>> {
        vec![
            Arg::Text(self.model_id),
            Arg::Text(self.entity_type),
            Arg::Text(self.scope_id),
            Arg::Date(self.as_of),
            Arg::Text(self.joint_type.unwrap_or_default()),
        ]
    }
}

/// The entity ids stored under `key`, sorted.
pub async fn stored_ids(tx: &mut Tx, key: VectorKey<'_>) -> Result<Vec<String>, sqlx::Error> {
    let sql = format!("SELECT entity_id {} ORDER BY entity_id", key.table_filter());
    let rows: Vec<(String,)> = tx_fetch_all(tx, &sql, &key.args()).await?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

/// Delete the vectors of `ids` under `key`; returns the rows deleted.
pub async fn delete_ids(tx: &mut Tx, key: VectorKey<'_>, ids: &[String]) -> Result<u64, sqlx::Error> {
    let mut deleted = 0;
    for chunk in ids.chunks(IN_CHUNK) {
        let sql = format!(
            "DELETE {} AND entity_id IN ({})",
            key.table_filter(),
            placeholders(6, chunk.len())
        );
        let mut args = key.args();
        args.extend(chunk.iter().map(|id| Arg::Text(id)));
        deleted += tx_execute(tx, &sql, &args).await?;
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
