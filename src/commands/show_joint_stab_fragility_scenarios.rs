use crate::cli::args::OutputArgs;
use crate::cli::global::GlobalOpts;
use crate::error::Result;
use crate::output::Table;
use crate::partitions::no_scenarios;
use crate::storage::joint::joint_scenarios_page;
use crate::vector;

#[derive(Debug, clap::Args)]
#[command(after_help = "Lists the STAB scenario vectors of a set as \
scenario_set_id,scenario_id,scenario_as_of,model_id,dim,l2_norm,known_from, ordered by scenario id. \
known_from is the first date the scenario could have been known (what --point-in-time searches \
filter on): the scenarios CSV's known_from when given, else for a historical window the last trading \
day of its path, else its scenario_date; empty for vectors backfilled before point-in-time search.\n\n\
Example: stabspace show-joint-stab-fragility-scenarios --scenario-set-id SET_ABC123 \
--model-id joint-stab-fragility-v1 --limit 200")]
pub struct Args {
    /// Scenario set whose STAB scenario vectors are listed.
    #[arg(long)]
    pub scenario_set_id: String,
    /// Joint model.
    #[arg(long, default_value = "joint-stab-fragility-v1")]
    pub model_id: String,
    /// At most this many rows.
    #[arg(long)]
    pub limit: Option<u64>,
    #[command(flatten)]
    pub out: OutputArgs,
}

pub async fn run(g: &GlobalOpts, a: Args) -> Result<()> {
    let db = g.open_db_read().await?;
    let rows = joint_scenarios_page(
        &db,
        &a.model_id,
        &a.scenario_set_id,
        None,
        a.limit.unwrap_or(u64::MAX),
    )
    .await?;
    if rows.is_empty() {
        return Err(no_scenarios(&db, &a.model_id, &a.scenario_set_id, 0).await);
    }
    let mut t = Table::new(&[
        "scenario_set_id",
        "scenario_id",
        "scenario_as_of",
        "model_id",
        "dim",
        "l2_norm",
        "known_from",
    ]);
    for r in rows {
        let v = vector::from_bytes(&r.vector, &format!("scenario {}", r.scenario_id))?;
        t.push(vec![
            a.scenario_set_id.clone().into(),
            r.scenario_id.into(),
            r.as_of.into(),
            a.model_id.clone().into(),
            v.len().into(),
            vector::l2_norm(&v).into(),
            r.known_from.into(),
        ]);
    }
    a.out.emit(&t)
}
