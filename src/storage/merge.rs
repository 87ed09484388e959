//! Merging keys into JSON columns in place (`risk_metrics`, `metrics_json`):
//! every other key of the stored object is kept. The merge happens in SQL
//! (`||` on PostgreSQL JSONB, `json_patch` on SQLite), so rows are never read
//! back and rewritten, and rows that already hold the same values are left alone.

use chrono::NaiveDate;
use serde_json::Value as Json;

use super::Tx;

/// Rows per PostgreSQL `UPDATE … FROM UNNEST(…)` statement.
const PG_BATCH: usize = 2000;

/// Merge `patch` objects into `portfolio_risk_reports.risk_metrics` of
/// (portfolio_id, as_of_date). Returns the rows changed.
pub async fn merge_risk_metrics(tx: &mut Tx, rows: &[(String, NaiveDate, Json)]) -> Result<u64, sqlx::Error> {
    let mut changed = 0;
    match tx {
        Tx::Postgres(t) => {
            for chunk in rows.chunks(PG_BATCH) {
                let ids: Vec<&str> = chunk.iter().map(|r| r.0.as_str()).collect();
                let dates: Vec<NaiveDate> = chunk.iter().map(|r| r.1).collect();
                let patches: Vec<String> = chunk.iter().map(|r| r.2.to_string()).collect();
                changed += sqlx::query(
                    "UPDATE portfolio_risk_reports r SET risk_metrics = r.risk_metrics || u.m \
                     FROM (SELECT * FROM UNNEST($1::text[], $2::date[], $3::text[]::jsonb[])) AS u(pid, d, m) \
                     WHERE r.portfolio_id = u.pid AND r.as_of_date = u.d AND NOT r.risk_metrics @> u.m",
                )
                .bind(&ids)
                .bind(&dates)
                .bind(&patches)
                .execute(&mut **t)
                .await?
                .rows_affected();
            }
        }
        Tx::Sqlite(t) => {
            for (pid, date, patch) in rows {
                changed += sqlx::query(
                    "UPDATE portfolio_risk_reports SET risk_metrics = json_patch(risk_metrics, $3) \
                     WHERE portfolio_id = $1 AND as_of_date = $2 \
                       AND risk_metrics IS NOT json_patch(risk_metrics, $3)",
                )
                .bind(pid)
                .bind(date)
                .bind(patch.to_string())
                .execute(&mut **t)
                .await?
                .rows_affected();
            }
        }
    }
    Ok(changed)
}

/// Merge `patch` objects into `backtest_runs.metrics_json` of run_id.
pub async fn merge_backtest_metrics(tx: &mut Tx, rows: &[(String, Json)]) -> Result<u64, sqlx::Error> {
    let mut changed = 0;
    for (run, patch) in rows {
        let patch = patch.to_string();
        changed += match tx {
            Tx::Postgres(t) => sqlx::query(
                "UPDATE backtest_runs SET metrics_json = metrics_json || $2::jsonb \
                 WHERE run_id = $1 AND NOT metrics_json @> $2::jsonb",
            )
            .bind(run)
            .bind(&patch)
            .execute(&mut **t)
            .await?
            .rows_affected(),
            Tx::Sqlite(t) => sqlx::query(
                "UPDATE backtest_runs SET metrics_json = json_patch(metrics_json, $2) \
                 WHERE run_id = $1 AND metrics_json IS NOT json_patch(metrics_json, $2)",
            )
            .bind(run)
            .bind(&patch)
            .execute(&mut **t)
            .await?
            .rows_affected(),
        };
    }
    Ok(changed)
}
