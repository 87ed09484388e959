use chrono::NaiveDate;

use crate::cli::global::GlobalOpts;
use crate::cli::progress::Bars;
use crate::commands::index::ParamArgs;
use crate::config::parse_date;
use crate::error::Result;
use crate::gen_scenarios::{gen_scenarios, GenScenarios};
use crate::partitions::build;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Writes --count synthetic scenarios (20-day × 20-instrument return panels drawn \
from a simulated fat-tailed market, encoded as num-scenario-core-v1 does) straight into `scenarios` and \
`joint_embeddings` under --model-id, then builds the set's index partition (unless --no-index). Meant \
for benchmarks: `stabspace bench`, the metrics backfill at scale. Re-running with the same seed writes \
the same vectors.\n\n\
Examples:\n  stabspace gen-scenarios --scenario-set-id BENCH_100K --count 100000\n  \
stabspace gen-scenarios --scenario-set-id PIT_100K --count 100000 --spread-years 20   (known-from dates over \
20 years, for point-in-time benchmarks)"
)]
pub struct Args {
    /// Id of the scenario set to write into (scenarios.scenario_set_id).
    #[arg(long)]
    pub scenario_set_id: String,
    /// Number of scenarios.
    #[arg(long)]
    pub count: usize,
    /// Joint model the vectors are stored under.
    #[arg(long, default_value = "joint-stab-fragility-v1")]
    pub model_id: String,
    /// Seed of the random generator: the same seed writes the same scenarios.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// scenario_date of every scenario (with --spread-years, of the latest).
    #[arg(long, value_parser = parse_date, default_value = "2020-03-16")]
    pub scenario_date: NaiveDate,
    /// Spread the scenario dates over this many years ending at --scenario-date: each scenario is
    /// known from its own date, so point-in-time searches (--point-in-time, --known-before) admit a
    /// share of the set that grows with the query date. 0 puts every scenario on --scenario-date.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=200))]
    pub spread_years: u32,
    /// Do not build the index partition.
    #[arg(long)]
    pub no_index: bool,
    #[command(flatten)]
    pub params: ParamArgs,
}

pub async fn run(g: &GlobalOpts, a: Args) -> Result<()> {
    let bars = Bars::default();
    let db = g.open_db().await?;
    let (n, secs) = gen_scenarios(
        &db,
        &GenScenarios {
            scenario_set_id: a.scenario_set_id.clone(),
            count: a.count,
            model_id: a.model_id.clone(),
            seed: a.seed,
            scenario_date: a.scenario_date,
            spread_years: a.spread_years,
        },
        &bars,
    )
    .await?;
    println!(
        "gen-scenarios {}: {n} scenario vectors written in {secs:.2} s ({:.0}/s)",
        a.scenario_set_id,
        n as f64 / secs.max(1e-9)
    );
    if !a.no_index {
        let built = build(
            &db,
            &*g.config().partition_store()?,
            &a.model_id,
            &a.scenario_set_id,
            &a.params.params(),
            crate::partitions::BuildMode::Full,
            &bars,
        )
        .await?;
        print!("{built}");
    }
    Ok(())
}
