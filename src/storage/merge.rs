//! Merging keys into JSON columns in place (`risk_metrics`, `metrics_json`):
//! every other key of the stored object is kept. The merge happens in SQL
//! (`||` on PostgreSQL JSONB, `json_set` on SQLite), so rows are never read
//! back and rewritten, and rows that already hold the same values are left alone.
//!
//! Both backends give the same result, a *shallow* merge in which every key of
//! the patch is stored with its value as given:
//!
//! - **`null` is stored as a value.** A patch `{"k": null}` leaves `"k": null`
//!   in the row, it does not remove `k`. This is what PostgreSQL's `jsonb || jsonb`
//!   does, and PostgreSQL is the production backend that the Python toolchain
//!   reads: a summary such as `stab_portfolio_ctx_norm_mean` that was computed
//!   but has no value is recorded as computed-and-empty, distinguishable from a
//!   metric never backfilled, and it still replaces a stale earlier value.
//!   SQLite's `json_patch` (RFC 7396 merge patch) would instead delete the key,
//!   so it is not used: each key is written with `json_set`.
//! - **Nested objects are replaced, not merged**, again as `||` does (where
//!   `json_patch` would merge them recursively).

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
                let (merged, binds) = sqlite_merge("risk_metrics", 3, patch)?;
                let sql = format!(
                    "UPDATE portfolio_risk_reports SET risk_metrics = {merged} \
                     WHERE portfolio_id = $1 AND as_of_date = $2 AND risk_metrics IS NOT {merged}"
                );
                let mut q = sqlx::query(&sql).bind(pid).bind(date);
                for b in binds {
                    q = q.bind(b);
                }
                changed += q.execute(&mut **t).await?.rows_affected();
            }
        }
    }
    Ok(changed)
}

/// Merge `patch` objects into `backtest_runs.metrics_json` of run_id.
pub async fn merge_backtest_metrics(tx: &mut Tx, rows: &[(String, Json)]) -> Result<u64, sqlx::Error> {
    let mut changed = 0;
    for (run, patch) in rows {
        changed += match tx {
            Tx::Postgres(t) => sqlx::query(
                "UPDATE backtest_runs SET metrics_json = metrics_json || $2::jsonb \
                 WHERE run_id = $1 AND NOT metrics_json @> $2::jsonb",
            )
            .bind(run)
            .bind(patch.to_string())
            .execute(&mut **t)
            .await?
            .rows_affected(),
            Tx::Sqlite(t) => {
                let (merged, binds) = sqlite_merge("metrics_json", 2, patch)?;
                let sql = format!(
                    "UPDATE backtest_runs SET metrics_json = {merged} \
                     WHERE run_id = $1 AND metrics_json IS NOT {merged}"
                );
                let mut q = sqlx::query(&sql).bind(run);
                for b in binds {
                    q = q.bind(b);
                }
                q.execute(&mut **t).await?.rows_affected()
            }
        };
    }
    Ok(changed)
}

/// The SQLite expression that sets every top-level key of `patch` in `column`
/// (`json_set(column, $n, json($n+1), …)`, placeholders from `$first`), and its
/// binds in order: a JSON path and a JSON text per key. A `null` value is
/// stored as `null` (see the module documentation).
fn sqlite_merge(column: &str, first: usize, patch: &Json) -> Result<(String, Vec<String>), sqlx::Error> {
    let Json::Object(map) = patch else {
        return Err(sqlx::Error::Protocol(format!(
            "a metrics patch must be a JSON object, not {patch}"
        )));
    };
    if map.is_empty() {
        return Ok((column.to_string(), Vec::new()));
    }
    let mut args = Vec::with_capacity(map.len());
    let mut binds = Vec::with_capacity(2 * map.len());
    for (i, (key, value)) in map.iter().enumerate() {
        if key.contains('"') {
            // SQLite JSON paths quote a key in double quotes with no escape for one inside.
            return Err(sqlx::Error::Protocol(format!(
                "metrics key {key:?} contains a double quote, which SQLite cannot address"
            )));
        }
        let at = first + 2 * i;
        args.push(format!("${at}, json(${})", at + 1));
        binds.push(format!("$.\"{key}\""));
        binds.push(value.to_string());
    }
    Ok((format!("json_set({column}, {})", args.join(", ")), binds))
}
