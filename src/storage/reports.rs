//! The portfolio side: `target_portfolios`, `portfolio_risk_reports` and
//! `backtest_runs` (reads; the metric merges are in [`super::merge`]).
//!
//! JSON columns are read as text (`CAST(… AS TEXT)`: JSONB on PostgreSQL, TEXT
//! on SQLite) and parsed by the caller, which knows which row it came from.

use chrono::NaiveDate;

use super::sql::{distinct, fetch_all, fetch_one, placeholders, Arg, IN_CHUNK};
use super::Db;
use crate::error::Result;

/// `target_portfolios` rows (portfolio, date, target_positions as text) of
/// `portfolios` with `as_of_date <= to`, by portfolio then date.
pub async fn targets(
    db: &Db,
    portfolios: &[String],
    to: NaiveDate,
) -> Result<Vec<(String, NaiveDate, String)>> {
    let mut out = Vec::new();
    for chunk in portfolios.chunks(IN_CHUNK) {
        let sql = format!(
            "SELECT portfolio_id, as_of_date, CAST(target_positions AS TEXT) FROM target_portfolios \
             WHERE as_of_date <= $1 AND portfolio_id IN ({}) ORDER BY portfolio_id, as_of_date",
            placeholders(2, chunk.len())
        );
        let mut args = vec![Arg::Date(to)];
        args.extend(chunk.iter().map(|id| Arg::Text(id)));
        let rows: Vec<(String, NaiveDate, String)> = fetch_all(db, &sql, &args).await?;
        out.extend(rows);
    }
    Ok(out)
}

/// The date of a portfolio's earliest target weights.
pub async fn earliest_target(db: &Db, portfolio: &str) -> Result<Option<NaiveDate>> {
    let sql = "SELECT min(as_of_date) FROM target_portfolios WHERE portfolio_id = $1";
    super::sql::date_agg(db, sql, &[Arg::Text(portfolio)]).await
}

/// The portfolios with target weights (at most 50, for hints).
pub async fn target_portfolio_ids(db: &Db) -> Result<Vec<String>> {
    distinct(db, "portfolio_id", "target_portfolios", "1 = 1", &[]).await
}

/// (portfolio, date) of the risk reports in `[from, to]`, of one portfolio or all.
pub async fn report_days(
    db: &Db,
    portfolio: Option<&str>,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<(String, NaiveDate)>> {
    let sql = "SELECT portfolio_id, as_of_date FROM portfolio_risk_reports \
               WHERE ($1 IS NULL OR portfolio_id = $1) AND as_of_date >= $2 AND as_of_date <= $3 \
               ORDER BY portfolio_id, as_of_date";
    fetch_all(
        db,
        sql,
        &[Arg::OptText(portfolio), Arg::Date(from), Arg::Date(to)],
    )
    .await
}

/// The first and last dates of a portfolio's risk reports (`None`: it has none).
pub async fn report_span(db: &Db, portfolio: &str) -> Result<(Option<NaiveDate>, Option<NaiveDate>)> {
    let sql = "SELECT min(as_of_date), max(as_of_date) FROM portfolio_risk_reports WHERE portfolio_id = $1";
    fetch_one(db, sql, &[Arg::Text(portfolio)]).await
}

/// The portfolios with risk reports (at most 50, for hints).
pub async fn report_portfolio_ids(db: &Db) -> Result<Vec<String>> {
    distinct(db, "portfolio_id", "portfolio_risk_reports", "1 = 1", &[]).await
}

/// Risk metrics (as text) of one portfolio's reports in `[from, to]`, by date.
pub async fn risk_metrics(
    db: &Db,
    portfolio: &str,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<(NaiveDate, String)>> {
    let sql = "SELECT as_of_date, CAST(risk_metrics AS TEXT) FROM portfolio_risk_reports \
               WHERE portfolio_id = $1 AND as_of_date >= $2 AND as_of_date <= $3 ORDER BY as_of_date";
    fetch_all(db, sql, &[Arg::Text(portfolio), Arg::Date(from), Arg::Date(to)]).await
}

/// A `backtest_runs` row, JSON as text.
#[derive(Clone, Debug)]
pub struct BacktestRun {
    pub run_id: String,
    pub strategy_id: String,
    pub start_date: NaiveDate,
    pub end_date: NaiveDate,
    pub config_json: String,
}

/// Runs of a strategy, or the one run with an id, by run id.
pub async fn backtest_runs(db: &Db, strategy: Option<&str>, run: Option<&str>) -> Result<Vec<BacktestRun>> {
    let sql =
        "SELECT run_id, strategy_id, start_date, end_date, CAST(config_json AS TEXT) FROM backtest_runs \
               WHERE ($1 IS NULL OR strategy_id = $1) AND ($2 IS NULL OR run_id = $2) ORDER BY run_id";
    let rows: Vec<(String, String, NaiveDate, NaiveDate, String)> =
        fetch_all(db, sql, &[Arg::OptText(strategy), Arg::OptText(run)]).await?;
    Ok(rows
        .into_iter()
        .map(
            |(run_id, strategy_id, start_date, end_date, config_json)| BacktestRun {
                run_id,
                strategy_id,
                start_date,
                end_date,
                config_json,
            },
        )
        .collect())
}

/// The strategies with backtest runs (at most 50, for hints).
pub async fn strategies(db: &Db) -> Result<Vec<String>> {
    distinct(db, "strategy_id", "backtest_runs", "1 = 1", &[]).await
}
