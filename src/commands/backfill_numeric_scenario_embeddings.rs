use crate::backfill::{backfill_numeric_scenario_embeddings, ScenarioBackfill};
use crate::cli::global::GlobalOpts;
use crate::cli::progress::Bars;
use crate::encoders::resolve_horizon;
use crate::error::Result;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Builds each scenario's (day × instrument) return panel from scenario_paths \
(days by day_index, instruments sorted by id), flattens it day by day and zero-pads to 384 float32 \
values, into numeric_window_embeddings (entity_type SCENARIO, scope = the set, as_of_date = the \
scenario_date). A missing cell is an error naming the scenario. Re-running replaces the vectors.\n\n\
num-scenario-core-v2 instead encodes each instrument's path over the first --horizon-days days as its \
fragility signature (log returns sorted ascending, then absolute log returns sorted ascending) and \
stores the mean over instruments: the space of num-stab-core-v2 states with the same --horizon-days.\n\n\
num-scenario-core-v3 encodes, at four horizons (H/4, H/2, 3H/4, H), the mean over every stretch of \
that many days of the stretch's sorted returns and absolute returns (averaged over instruments) and \
sorted daily mean and spread across instruments: the space of num-stab-core-v3 states.\n\n\
Examples:\n  stabspace backfill-numeric-scenario-embeddings --scenario-set-id SET_ABC123 \
--model-id num-scenario-core-v1 --limit 100\n  stabspace backfill-numeric-scenario-embeddings \
--scenario-set-id HIST_CRASH_WINDOWS --model-id num-scenario-core-v2 --horizon-days 20"
)]
pub struct Args {
    /// Scenario set to encode.
    #[arg(long)]
    pub scenario_set_id: String,
    /// Encoder: num-scenario-core-v1 (flatten and pad), num-scenario-core-v2 (fragility signature)
    /// or num-scenario-core-v3 (multi-scale market signature).
    #[arg(long, default_value = "num-scenario-core-v1")]
    pub model_id: String,
    /// H, the days of each path encoded by num-scenario-core-v2/v3 [default: 20; v3: a multiple of 4].
    #[arg(long, value_name = "H")]
    pub horizon_days: Option<usize>,
    /// At most this many scenarios, in scenario_id order.
    #[arg(long)]
    pub limit: Option<u64>,
}

pub async fn run(g: &GlobalOpts, a: Args) -> Result<()> {
    let bars = Bars::default();
    let db = g.open_db().await?;
    let summary = backfill_numeric_scenario_embeddings(
        &db,
        &ScenarioBackfill {
            scenario_set_id: a.scenario_set_id,
            horizon_days: resolve_horizon(&a.model_id, a.horizon_days)?,
            model_id: a.model_id,
            limit: a.limit,
        },
        &bars,
    )
    .await?;
    print!("{summary}");
    Ok(())
}
