//! The tables as the code writes them: columns, keys and conflict rules. The
//! DDL is in `migrations/{postgres,sqlite}/`; these specs must name the same
//! columns.

use super::bulk::{Col, OnConflict, TableSpec};
use super::sql::fetch_one;
use super::Db;
use crate::error::Result;

/// Number of rows in a table (for summaries and tests).
pub async fn count(db: &Db, table: &str) -> Result<i64> {
    let sql = format!("SELECT COUNT(*) FROM {table}");
    let (n,): (i64,) = fetch_one(db, &sql, &[]).await?;
    Ok(n)
}

pub static MARKETS: TableSpec = TableSpec {
    table: "markets",
    columns: &[("market_id", Col::Text), ("region", Col::Text)],
    key: &["market_id"],
    on_conflict: OnConflict::Ignore,
    touch_created_at: false,
};
pub static ISSUERS: TableSpec = TableSpec {
    table: "issuers",
    columns: &[("issuer_id", Col::Text), ("name", Col::Text)],
    key: &["issuer_id"],
    on_conflict: OnConflict::Ignore,
    touch_created_at: false,
};
pub static INSTRUMENTS: TableSpec = TableSpec {
    table: "instruments",
    columns: &[
        ("instrument_id", Col::Text),
        ("issuer_id", Col::Text),
        ("market_id", Col::Text),
        ("region", Col::Text),
        ("status", Col::Text),
    ],
    key: &["instrument_id"],
    on_conflict: OnConflict::Update,
    touch_created_at: false,
};
pub static PRICES: TableSpec = TableSpec {
    table: "prices_daily",
    columns: &[
        ("instrument_id", Col::Text),
        ("trade_date", Col::Date),
        ("close", Col::Float),
        ("volume", Col::Float),
    ],
    key: &["instrument_id", "trade_date"],
    on_conflict: OnConflict::Update,
    touch_created_at: false,
};
pub static SCENARIOS: TableSpec = TableSpec {
    table: "scenarios",
    columns: &[
        ("scenario_set_id", Col::Text),
        ("scenario_id", Col::Text),
        ("scenario_date", Col::Date),
        ("shock_type", Col::Text),
        ("severity", Col::Text),
        ("known_from", Col::Date),
    ],
    key: &["scenario_set_id", "scenario_id"],
    on_conflict: OnConflict::Update,
    touch_created_at: false,
};
pub static SCENARIO_PATHS: TableSpec = TableSpec {
    table: "scenario_paths",
    columns: &[
        ("scenario_set_id", Col::Text),
        ("scenario_id", Col::Text),
        ("day_index", Col::Int),
        ("instrument_id", Col::Text),
        ("return", Col::Float),
    ],
    key: &["scenario_set_id", "scenario_id", "day_index", "instrument_id"],
    on_conflict: OnConflict::Update,
    touch_created_at: false,
};
pub static PORTFOLIOS: TableSpec = TableSpec {
    table: "target_portfolios",
    columns: &[
        ("portfolio_id", Col::Text),
        ("as_of_date", Col::Date),
        ("target_positions", Col::Json),
    ],
    key: &["portfolio_id", "as_of_date"],
    on_conflict: OnConflict::Update,
    touch_created_at: false,
};
pub static RISK_REPORTS: TableSpec = TableSpec {
    table: "portfolio_risk_reports",
    columns: &[
        ("portfolio_id", Col::Text),
        ("as_of_date", Col::Date),
        ("risk_metrics", Col::Json),
    ],
    key: &["portfolio_id", "as_of_date"],
    on_conflict: OnConflict::Update,
    touch_created_at: false,
};
pub static BACKTEST_RUNS: TableSpec = TableSpec {
    table: "backtest_runs",
    columns: &[
        ("run_id", Col::Text),
        ("strategy_id", Col::Text),
        ("start_date", Col::Date),
        ("end_date", Col::Date),
        ("config_json", Col::Json),
        ("metrics_json", Col::Json),
    ],
    key: &["run_id"],
    on_conflict: OnConflict::Update,
    touch_created_at: false,
};
pub static FUNDAMENTALS: TableSpec = TableSpec {
    table: "issuer_fundamentals",
    columns: &[
        ("issuer_id", Col::Text),
        ("as_of_date", Col::Date),
        ("fundamentals", Col::Json),
    ],
    key: &["issuer_id", "as_of_date"],
    on_conflict: OnConflict::Update,
    touch_created_at: false,
};

pub static NUMERIC_WINDOW_EMBEDDINGS: TableSpec = TableSpec {
    table: "numeric_window_embeddings",
    columns: &[
        ("entity_type", Col::Text),
        ("entity_id", Col::Text),
        ("scope_id", Col::Text),
        ("as_of_date", Col::Date),
        ("window_days", Col::Int),
        ("model_id", Col::Text),
        ("vector", Col::Bytes),
        ("window_start", Col::Date),
        ("window_end", Col::Date),
        ("feature_space", Col::Text),
    ],
    key: &["model_id", "entity_type", "scope_id", "entity_id", "as_of_date"],
    on_conflict: OnConflict::Update,
    touch_created_at: true,
};

pub static JOINT_EMBEDDINGS: TableSpec = TableSpec {
    table: "joint_embeddings",
    columns: &[
        ("joint_type", Col::Text),
        ("model_id", Col::Text),
        ("entity_type", Col::Text),
        ("entity_id", Col::Text),
        ("scope_id", Col::Text),
        ("as_of_date", Col::Date),
        ("issuer_id", Col::Text),
        ("region", Col::Text),
        ("entity_scope", Col::Json),
        ("vector", Col::Bytes),
        ("feature_space", Col::Text),
        ("known_from", Col::Date),
    ],
    key: &[
        "joint_type",
        "model_id",
        "entity_type",
        "scope_id",
        "entity_id",
        "as_of_date",
    ],
    on_conflict: OnConflict::Update,
    touch_created_at: true,
};
