use chrono::NaiveDate;

use crate::cli::args::CoverageArgs;
use crate::cli::args::{FilterArgs, SearchArgs};
use crate::cli::global::GlobalOpts;
use crate::cli::progress::Bars;
use crate::config::parse_date;
use crate::diagnostics::{backfill_portfolio_metrics, MetricsBackfill};
use crate::error::Result;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "For each portfolio_risk_reports row in [--start, --end], forms the portfolio's \
STAB vector for that date (as show-portfolio-stab-scenario-exposure does), compares it with every \
scenario of the set and merges into risk_metrics the keys stab_scenario_set_id, \
stab_closest_scenario_id, stab_closest_scenario_cosine, stab_closest_scenario_distance, \
stab_portfolio_ctx_norm, stab_top3_scenario_cosine_mean and stab_weight_covered (the share of the \
absolute weight in holdings with a STAB state), with stab_answered_by and stab_partition_stale \
(how the nearest scenarios were found: index, index+delta or exact-scan; see \
find-similar-stab-scenarios --help). Every other key is kept. A day that cannot be scored \
(no weights, no states, holdings below --min-coverage, a vector without direction) is skipped and \
counted by reason in the summary.\n\n\
--point-in-time compares each day only with scenarios known strictly before it (what a backtest \
needs: no look-ahead). A day with no such scenario is skipped, counted and named in the summary, and \
the run goes on. risk_metrics records stab_point_in_time (true or false), stab_scenario_filter (the \
--known-before, --shock-type and --min-severity bounds, or null) and stab_closest_scenario_known_from, \
so a later reader (backfill-backtest-stab-scenario-metrics) can tell.\n\n\
One transaction: \
an error writes nothing; re-running changes nothing.\n\n\
Example: stabspace backfill-portfolio-stab-scenario-metrics --portfolio-id PORTFOLIO_CORE_US_EQ_001 \
--scenario-set-id STAB_EQ_CRASH_SET_V0 --stab-model-id joint-stab-fragility-v1 \
--start 2025-01-01 --end 2025-12-31"
)]
pub struct Args {
    /// One portfolio; without it, every portfolio with risk reports in range.
    #[arg(long)]
    pub portfolio_id: Option<String>,
    /// Scenario set the portfolios are compared with.
    #[arg(long)]
    pub scenario_set_id: String,
    /// Joint model of the portfolios' STAB states and of the scenarios (a joint model id such as
    /// joint-stab-fragility-v1, not a numeric encoder; --joint-model-id is the same flag).
    #[arg(
        long,
        visible_alias = "joint-model-id",
        default_value = "joint-stab-fragility-v1"
    )]
    pub stab_model_id: String,
    /// First report date (YYYY-MM-DD).
    #[arg(long, value_parser = parse_date)]
    pub start: NaiveDate,
    /// Last report date (YYYY-MM-DD).
    #[arg(long, value_parser = parse_date)]
    pub end: NaiveDate,
    #[command(flatten)]
    pub search: SearchArgs,
    #[command(flatten)]
    pub filter: FilterArgs,
    #[command(flatten)]
    pub coverage: CoverageArgs,
    /// Share of the portfolio-days whose nearest-scenario search is checked against an exact
    /// scan of the same partition rows, with the same filter (0: none; 1: every one). The mean
    /// recall@3 (tie-aware) is printed at the end and recorded, in the same transaction, in
    /// partition_recall_observations (`index status` shows the latest). Days are picked by a fixed
    /// seed; answers that were exact already (--exact, a flat partition) are not checked.
    #[arg(long, default_value_t = 0.01, value_name = "FRACTION", value_parser = crate::config::parse_sample_share)]
    pub recall_sample: f64,
}

pub async fn run(g: &GlobalOpts, a: Args) -> Result<()> {
    let bars = Bars::default();
    let db = g.open_db().await?;
    let s = backfill_portfolio_metrics(
        &db,
        &MetricsBackfill {
            portfolio_id: a.portfolio_id,
            scenario_set_id: a.scenario_set_id,
            model_id: a.stab_model_id,
            start: a.start,
            end: a.end,
            search: a.search.filtered(&g.config(), &a.filter)?,
            min_coverage: a.coverage.min_coverage,
            recall_sample: a.recall_sample,
        },
        &bars,
    )
    .await?;
    print!("{s}");
    Ok(())
}
