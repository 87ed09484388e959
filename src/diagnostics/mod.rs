//! Portfolio and backtest diagnostics in the STAB space: nearest scenarios of
//! an instrument or a portfolio, and the metrics merged into risk reports and
//! backtest runs.

mod backtest;
mod exposure;
mod metrics;
pub mod vectors;

pub use backtest::{backfill_backtest_metrics, BacktestMetrics, BacktestSummary};
pub use exposure::{find_similar, portfolio_exposure, stab_states_hint, Exposure, SimilarScenarios};
pub use metrics::{backfill_portfolio_metrics, MetricsBackfill, MetricsSummary, SampledRecall};
