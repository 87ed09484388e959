//! The demo's own database: `stabspace demo` writes only into a database that
//! is empty or that an earlier demo filled (marked in `stabspace_meta`), and
//! empties it first, so its figures never depend on earlier runs and it never
//! mixes synthetic rows into a user's data.

use crate::error::{Error, Result};
use crate::storage::{meta, Db};

/// Every table holding data, children before parents.
const DATA_TABLES: &[&str] = &[
    "portfolio_risk_reports",
    "target_portfolios",
    "backtest_runs",
    "joint_embeddings",
    "joint_scenario_versions",
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
async fn contents(db: &Db) -> Result<Vec<(&'static str, i64)>> {
    let mut out = Vec::new();
    for &t in DATA_TABLES {
        let n = crate::storage::tables::count(db, t).await?;
        if n > 0 {
            out.push((t, n));
        }
    }
    Ok(out)
}

/// Make `db` ready for the demo: mark an empty database as the demo's, empty
/// one the demo filled before, refuse anything else. Returns whether earlier
/// demo data was cleared.
pub async fn claim(db: &Db) -> Result<bool> {
    let marked = meta::get(db, meta::DEMO_KEY).await?.is_some();
    let found = contents(db).await?;
    if !marked && !found.is_empty() {
        let what: Vec<String> = found.iter().map(|(t, n)| format!("{n} rows in {t}")).collect();
        return Err(Error::Invalid(format!(
            "{} holds data that `stabspace demo` did not create ({}); the demo only writes into an empty \
             database or one an earlier demo filled. Run it with another --data-dir (its own SQLite file), or \
             give `demo --database-url` an empty database",
            db.label(),
            what.join(", ")
        )));
    }
    let cleared = !found.is_empty();
    let mut tx = db.begin().await?;
    for &t in DATA_TABLES {
        let sql = format!("DELETE FROM {t}");
        match &mut tx {
            crate::storage::Tx::Postgres(c) => sqlx::query(&sql).execute(&mut **c).await.map(|_| ()),
            crate::storage::Tx::Sqlite(c) => sqlx::query(&sql).execute(&mut **c).await.map(|_| ()),
        }
        .map_err(|e| db.err(e))?;
    }
    db.commit(tx).await?;
    meta::set(db, meta::DEMO_KEY, "created by stabspace demo").await?;
    Ok(cleared)
}
