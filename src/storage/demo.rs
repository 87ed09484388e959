//! The demo's database: which tables hold data, and emptying them.

use super::sql::tx_execute;
use super::tables::count;
use super::Db;
use crate::error::Result;

/// Every table holding data, children before parents. Not the change
/// counters (`joint_scenario_versions`): they only ever grow (emptying
/// `joint_embeddings` moves them on), so that a partition built before the
/// demo emptied its set is seen as stale or orphaned, never as ahead of the
/// database (what a lagging replica looks like).
pub const DATA_TABLES: &[&str] = &[
    "portfolio_risk_reports",
    "target_portfolios",
    "backtest_runs",
    "joint_embeddings",
    "joint_models",
    "numeric_window_embeddings",
    "scenario_paths",
    "scenarios",
    "prices_daily",
    "issuer_fundamentals",
    "instruments",
    "issuers",
    "markets",
];

/// Rows per data table, for the tables that have any.
pub async fn contents(db: &Db) -> Result<Vec<(&'static str, i64)>> {
    let mut out = Vec::new();
    for &t in DATA_TABLES {
        let n = count(db, t).await?;
        if n > 0 {
            out.push((t, n));
        }
    }
    Ok(out)
}

/// Delete every row of every data table, in one transaction.
pub async fn empty(db: &Db) -> Result<()> {
    let mut tx = db.begin().await?;
    for &t in DATA_TABLES {
        let sql = format!("DELETE FROM {t}");
        tx_execute(&mut tx, &sql, &[]).await.map_err(|e| db.err(e))?;
    }
    db.commit(tx).await
}
