use chrono::NaiveDate;

use crate::cli::args::CoverageArgs;
use crate::cli::args::OutputArgs;
use crate::cli::args::{FilterArgs, SearchArgs};
use crate::cli::global::GlobalOpts;
use crate::config::parse_date;
use crate::diagnostics::portfolio_exposure;
use crate::error::Result;
use crate::report;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Forms the portfolio's STAB vector on --as-of, Σ wᵢ·zᵢ / Σ |wᵢ| over its \
instruments with a STAB state (each instrument's latest on or before --as-of), with the weights of its \
latest target_portfolios row on or before --as-of, and lists the --top-k nearest scenarios as \
cosine,euclidean,scenario_set_id,scenario_id,scenario_as_of,portfolio_id,portfolio_ctx_norm,\
num_instruments_used,weight_covered (the share of the absolute weight held in instruments with a \
state; holdings without one are named on stderr, and below --min-coverage the command fails),\
answered_by,partition_stale,scenario_known_from (see find-similar-stab-scenarios --help).\n\n\
--point-in-time lists only scenarios known strictly before --as-of; --known-before, --shock-type and \
--min-severity filter further.\n\n\
Example: stabspace show-portfolio-stab-scenario-exposure --portfolio-id PORTFOLIO_CORE_US_EQ_001 \
--as-of 2025-01-31 --scenario-set-id STAB_EQ_CRASH_SET_V0 --stab-model-id joint-stab-fragility-v1 \
--top-k 20"
)]
pub struct Args {
    /// Portfolio whose target weights form the query vector (target_portfolios.portfolio_id).
    #[arg(long)]
    pub portfolio_id: String,
    /// Date (YYYY-MM-DD).
    #[arg(long, value_parser = parse_date)]
    pub as_of: NaiveDate,
    /// Scenario set to search (its STAB scenario vectors under --stab-model-id).
    #[arg(long)]
    pub scenario_set_id: String,
    /// Joint model of the portfolio's STAB states and of the scenarios (a joint model id such as
    /// joint-stab-fragility-v1, not a numeric encoder; --joint-model-id is the same flag).
    #[arg(
        long,
        visible_alias = "joint-model-id",
        default_value = "joint-stab-fragility-v1"
    )]
    pub stab_model_id: String,
    /// Number of scenarios to list. More than the set holds lists every scenario of the set
    /// (any value is accepted and clamped to the set's size).
    #[arg(long, default_value_t = 20, value_parser = crate::config::parse_clamped)]
    pub top_k: usize,
    #[command(flatten)]
    pub search: SearchArgs,
    #[command(flatten)]
    pub filter: FilterArgs,
    #[command(flatten)]
    pub coverage: CoverageArgs,
    #[command(flatten)]
    pub out: OutputArgs,
}

pub async fn run(g: &GlobalOpts, a: Args) -> Result<()> {
    let db = g.open_db_read().await?;
    let e = portfolio_exposure(
        &db,
        &a.search.filtered(&g.config(), &a.filter)?,
        &a.portfolio_id,
        a.as_of,
        &a.scenario_set_id,
        &a.stab_model_id,
        a.top_k,
        a.coverage.min_coverage,
    )
    .await?;
    a.out.emit(&report::portfolio_exposure(
        &a.scenario_set_id,
        &a.portfolio_id,
        e,
    ))
}
