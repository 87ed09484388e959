use crate::cli::args::OutputArgs;
use crate::cli::global::GlobalOpts;
use crate::error::Result;
use crate::joint::registry::joint_models;
use crate::output::{Cell, Table};

#[derive(Debug, clap::Args)]
#[command(after_help = "Lists the joint model registry as \
joint_model_id,kind,feature_space,stab_model_id,profile_model_id,scenario_model_id,w_stab,w_prof,w_scen,\
registered_at. A backfill under a new --joint-model-id registers it; an empty field is not recorded \
yet (a state backfill records the state and profile branches, a scenario projection the scenario \
branch); profile_model_id 'none' means states without a profile branch. The weights are recorded as \
given; they enter the vectors only where two branches meet (states with a profile).\n\n\
Example: stabspace show-joint-models --format text")]
pub struct Args {
    #[command(flatten)]
    pub out: OutputArgs,
}

pub async fn run(g: &GlobalOpts, a: Args) -> Result<()> {
    let db = g.open_db_read().await?;
    let mut t = Table::new(&[
        "joint_model_id",
        "kind",
        "feature_space",
        "stab_model_id",
        "profile_model_id",
        "scenario_model_id",
        "w_stab",
        "w_prof",
        "w_scen",
        "registered_at",
    ]);
    let w = |x: Option<f64>| x.map_or(Cell::Null, Cell::from);
    for r in joint_models(&db).await? {
        t.push(vec![
            r.joint_model_id.into(),
            r.kind.into(),
            r.feature_space.into(),
            r.stab_model_id.into(),
            r.profile_model_id.into(),
            r.scenario_model_id.into(),
            w(r.w_stab),
            w(r.w_prof),
            w(r.w_scen),
            r.registered_at.into(),
        ]);
    }
    a.out.emit(&t)
}
