use crate::cli::global::GlobalOpts;
use crate::diagnostics::backfill_backtest_metrics;
use crate::error::Result;

#[derive(Debug, clap::Args)]
#[command(
    group = clap::ArgGroup::new("runs").required(true).args(["strategy_id", "run_id"]),
    after_help = "For each backtest run, takes portfolio_id from config_json, reads the run's risk \
reports over [start_date, end_date] that carry STAB metrics (see backfill-portfolio-stab-scenario-metrics) \
and merges into metrics_json: stab_scenario_set_id (the most common), \
stab_closest_scenario_cosine_mean/min/max, stab_portfolio_ctx_norm_mean/max and stab_num_days, with \
stab_point_in_time (true when every day was scored point-in-time) and stab_num_days_not_point_in_time; \
the summary warns about runs with days scored against scenarios from their future. Every \
other key is kept.\n\n\
Examples:\n  stabspace backfill-backtest-stab-scenario-metrics --strategy-id US_CORE_LONG_EQ\n  \
stabspace backfill-backtest-stab-scenario-metrics --run-id 123e4567-e89b-12d3-a456-426614174000"
)]
pub struct Args {
    /// Every run of this strategy.
    #[arg(long)]
    pub strategy_id: Option<String>,
    /// One run.
    #[arg(long)]
    pub run_id: Option<String>,
}

pub async fn run(g: &GlobalOpts, a: Args) -> Result<()> {
    let db = g.open_db().await?;
    let s = backfill_backtest_metrics(&db, a.strategy_id.as_deref(), a.run_id.as_deref()).await?;
    print!("{s}");
    Ok(())
}
