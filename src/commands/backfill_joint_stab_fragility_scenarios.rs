use crate::cli::global::GlobalOpts;
use crate::cli::progress::Bars;
use crate::commands::index::ParamArgs;
use crate::error::Result;
use crate::joint::{backfill_joint_scenarios, ScenarioProjection, Weights};
use crate::partitions::build;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Projects the numeric scenario vectors (--scenario-model-id) of a scenario set \
into the STAB joint space (entity_type SCENARIO, as_of_date = scenario_date, entity_scope with the \
scenario's shock_type and severity). Re-running replaces the stored vectors. Then rebuilds the set's index partition (unless --no-index), \
so that queries search the new vectors.\n\n\
The first projection under a --joint-model-id registers its scenario encoder and feature space \
(show-joint-models); a later one under the same id must agree, or it stops naming what differs \
(--replace redefines the model). joint-stab-fragility-v1 holds the v1 encoders' space, -v2 the v2 \
pair's, -v3 the v3 pair's.\n\n\
Example: stabspace backfill-joint-stab-fragility-scenarios --scenario-set-id SET_ABC123 \
--scenario-model-id num-scenario-core-v1 --joint-model-id joint-stab-fragility-v1 --limit 100"
)]
pub struct Args {
    /// Scenario set to project (scenarios.scenario_set_id), e.g. MC_STRESS_V0.
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
    /// Do not rebuild the set's index partition afterwards.
    #[arg(long)]
    pub no_index: bool,
    /// If the joint model is registered with other branches, weights or feature space, redefine
    /// it: the registry takes this run's definition and the vectors stored under the old one are
    /// deleted (without it, such a run is an error naming what differs).
    #[arg(long)]
    pub replace: bool,
    #[command(flatten)]
    pub params: ParamArgs,
}

pub async fn run(g: &GlobalOpts, a: Args) -> Result<()> {
    let bars = Bars::default();
    let db = g.open_db().await?;
    let s = backfill_joint_scenarios(
        &db,
        &ScenarioProjection {
            scenario_set_id: a.scenario_set_id.clone(),
            scenario_model_id: a.scenario_model_id,
            joint_model_id: a.joint_model_id.clone(),
            weights: Weights::default(),
            limit: a.limit,
            replace: a.replace,
        },
        &bars,
    )
    .await?;
    print!("{s}");
    crate::faults::pause_point(crate::faults::JOINT_COMMITTED);
    if !a.no_index {
        // After the commit: a failed backfill leaves the old partition in place.
        let built = build(
            &db,
            &*g.config().partition_store()?,
            &a.joint_model_id,
            &a.scenario_set_id,
            &a.params.params(),
            crate::partitions::BuildMode::AppendIfOnlyGained,
            &bars,
        )
        .await?;
        print!("{built}");
    }
    Ok(())
}
