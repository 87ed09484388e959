//! `partition_recall_observations` (migration 0010): the recall observed on
//! live queries, one row per (model, set) each time `serve` or the metrics
//! backfill records what its sampled exact checks found.

use super::sql::{fetch_all, tx_execute, Arg};
use super::{Db, Tx};
use crate::error::Result;

/// How long observations are kept: older rows of a (model, set) are deleted
/// when a new one of it is written (a row a minute per serving node, at most).
pub const KEEP_DAYS: i64 = 30;

/// One recorded observation.
#[derive(Clone, Debug, PartialEq)]
pub struct RecallObservation {
    pub model_id: String,
    pub scenario_set_id: String,
    /// RFC 3339, UTC, to the microsecond.
    pub observed_at: String,
    /// `serve` or `metrics-backfill`.
    pub source: String,
    /// Sampled queries the mean is over.
    pub samples: i64,
    pub observed_recall: f64,
    /// The mean recall the sampled queries asked for (`None`: none asked).
    pub target_recall: Option<f64>,
}

type Tuple = (String, String, String, String, i64, f64, Option<f64>);

const COLUMNS: &str =
    "model_id, scenario_set_id, observed_at, source, samples, observed_recall, target_recall";

/// Record `r` inside the transaction, and delete the observations of its
/// (model, set) older than [`KEEP_DAYS`] before it. A row with the same key
/// (model, set, time, source) is replaced.
pub async fn record_tx(tx: &mut Tx, r: &RecallObservation) -> Result<(), sqlx::Error> {
    let sql = format!(
        "INSERT INTO partition_recall_observations ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (model_id, scenario_set_id, observed_at, source) DO UPDATE SET \
         samples = excluded.samples, observed_recall = excluded.observed_recall, \
         target_recall = excluded.target_recall"
    );
    let args = [
        Arg::Text(&r.model_id),
        Arg::Text(&r.scenario_set_id),
        Arg::Text(&r.observed_at),
        Arg::Text(&r.source),
        Arg::Int(r.samples),
        Arg::Float(r.observed_recall),
        Arg::OptFloat(r.target_recall),
    ];
    tx_execute(tx, &sql, &args).await?;
    let cutoff = chrono::DateTime::parse_from_rfc3339(&r.observed_at)
        .map(|t| t.to_utc())
        .unwrap_or_else(|_| chrono::Utc::now())
        - chrono::Duration::days(KEEP_DAYS);
    let cutoff = cutoff.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let sql = "DELETE FROM partition_recall_observations \
                WHERE model_id = $1 AND scenario_set_id = $2 AND observed_at < $3";
    tx_execute(
        tx,
        sql,
        &[
            Arg::Text(&r.model_id),
            Arg::Text(&r.scenario_set_id),
            Arg::Text(&cutoff),
        ],
    )
    .await?;
    Ok(())
}

/// Record `rows` in one transaction ([`record_tx`]).
pub async fn record(db: &Db, rows: &[RecallObservation]) -> Result<()> {
    let mut tx = db.begin().await?;
    for r in rows {
        record_tx(&mut tx, r).await.map_err(|e| db.err(e))?;
    }
    db.commit(tx).await
}

/// The latest observation of every (model, set), by model and set.
pub async fn latest(db: &Db) -> Result<Vec<RecallObservation>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM partition_recall_observations o \
          WHERE observed_at = (SELECT MAX(observed_at) FROM partition_recall_observations n \
                                WHERE n.model_id = o.model_id AND n.scenario_set_id = o.scenario_set_id) \
          ORDER BY model_id, scenario_set_id, source"
    );
    let rows: Vec<Tuple> = fetch_all(db, &sql, &[]).await?;
    let mut out: Vec<RecallObservation> = rows
        .into_iter()
        .map(|t| RecallObservation {
            model_id: t.0,
            scenario_set_id: t.1,
            observed_at: t.2,
            source: t.3,
            samples: t.4,
            observed_recall: t.5,
            target_recall: t.6,
        })
        .collect();
    // Two sources at the same instant: one row per (model, set).
    out.dedup_by(|b, a| a.model_id == b.model_id && a.scenario_set_id == b.scenario_set_id);
    Ok(out)
}
