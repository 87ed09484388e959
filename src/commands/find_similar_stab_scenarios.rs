use chrono::NaiveDate;

use crate::cli::args::OutputArgs;
use crate::cli::args::{FilterArgs, SearchArgs};
use crate::cli::global::GlobalOpts;
use crate::config::parse_date;
use crate::diagnostics::find_similar;
use crate::error::Result;
use crate::report;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Takes the instrument's STAB state on --as-of and lists the --top-k scenarios \
of the set nearest to it by cosine, as \
rank,cosine,euclidean,scenario_set_id,scenario_id,scenario_as_of,instrument_id,as_of_date,\
answered_by,partition_stale,scenario_known_from.\n\n\
Every answer is for the set as the database holds it now. answered_by says how: `index` (the \
set's partition file holds what the database holds), `index+delta` (the database gained rows since \
the partition was built: they are scanned exactly and ranked with the partition's hits) or \
`exact-scan` (every vector read from the database: --exact, no partition, or a partition whose rows \
were changed or removed, or that lacks too many rows). partition_stale is true when the partition \
is behind the database; `stabspace index rebuild` brings it up to date. scenario_known_from is the \
first date the scenario could have been known.\n\n\
--point-in-time lists only scenarios known strictly before --as-of (no look-ahead); --known-before, \
--shock-type and --min-severity filter further. The filters search the same index at the same \
calibrated recall.\n\n\
Example: stabspace find-similar-stab-scenarios --instrument-id AAA.US --as-of 2025-01-31 \
--model-id joint-stab-fragility-v1 --scenario-set-id SET_ABC123 --top-k 20"
)]
pub struct Args {
    /// Instrument whose STAB state is the query (its latest state on or before --as-of).
    #[arg(long)]
    pub instrument_id: String,
    /// Date of the instrument's state (YYYY-MM-DD).
    #[arg(long, value_parser = parse_date)]
    pub as_of: NaiveDate,
    /// Joint model of the states and scenarios.
    #[arg(long, default_value = "joint-stab-fragility-v1")]
    pub model_id: String,
    /// Scenario set to search (its STAB scenario vectors under --model-id).
    #[arg(long)]
    pub scenario_set_id: String,
    /// Number of scenarios to list. More than the set holds lists every scenario of the set
    /// (any value is accepted and clamped to the set's size).
    #[arg(long, default_value_t = 20, value_parser = crate::config::parse_clamped)]
    pub top_k: usize,
    #[command(flatten)]
    pub search: SearchArgs,
    #[command(flatten)]
    pub filter: FilterArgs,
    #[command(flatten)]
    pub out: OutputArgs,
}

pub async fn run(g: &GlobalOpts, a: Args) -> Result<()> {
    let db = g.open_db_read().await?;
    let found = find_similar(
        &db,
        &a.search.filtered(&g.config(), &a.filter)?,
        &a.instrument_id,
        a.as_of,
        &a.model_id,
        &a.scenario_set_id,
        a.top_k,
    )
    .await?;
    a.out.emit(&report::similar_scenarios(
        &a.scenario_set_id,
        &a.instrument_id,
        a.as_of,
        found,
    ))
}
