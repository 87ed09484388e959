use crate::cli::GlobalOpts;
use crate::error::Result;
use crate::joint::{backfill_joint_scenarios, ScenarioProjection, Weights};

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Projects the numeric scenario vectors (--scenario-model-id) of a scenario set \
into the STAB joint space (entity_type SCENARIO, as_of_date = scenario_date, entity_scope with the \
scenario's shock_type and severity). Re-running replaces the stored vectors.\n\n\
Example: stabspace backfill-joint-stab-fragility-scenarios --scenario-set-id SET_ABC123 \
--scenario-model-id num-scenario-core-v1 --joint-model-id joint-stab-fragility-v1 --limit 100"
)]
pub struct Args {
    #[arg(long)]
    pub scenario_set_id: String,
    /// Numeric scenario model whose vectors are projected.
    #[arg(long, default_value = "num-scenario-core-v1")]
    pub scenario_model_id: String,
    /// Joint model the scenarios are stored under.
    #[arg(long, default_value = "joint-stab-fragility-v1")]
    pub joint_model_id: String,
    /// At most this many scenarios, in scenario_id order.
    #[arg(long)]
    pub limit: Option<u64>,
}

pub async fn run(g: &GlobalOpts, a: Args) -> Result<()> {
    let db = g.open_db().await?;
    let s = backfill_joint_scenarios(
        &db,
        &ScenarioProjection {
            scenario_set_id: a.scenario_set_id,
            scenario_model_id: a.scenario_model_id,
            joint_model_id: a.joint_model_id,
            weights: Weights::default(),
            limit: a.limit,
        },
    )
    .await?;
    print!("{s}");
    Ok(())
}
