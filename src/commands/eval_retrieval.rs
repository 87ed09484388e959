use std::path::PathBuf;

use crate::cli::global::GlobalOpts;
use crate::cli::progress::Bars;
use crate::encoders::DEFAULT_WINDOW_DAYS;
use crate::error::{Error, Result};
use crate::eval::{eval_retrieval, EvalReport, EvalSpec};
use crate::output::{check_output_dir, write_file_atomically, Cell, Format, Table};

#[derive(Debug, clap::Args)]
#[command(
    after_help = "For each scenario of the set whose shock_type is historical_window (it starts \
on scenario_date and spans as many trading days of the market as its paths have days), takes the \
equal-weight portfolio of the market's STAB states on the window's last trading day and on each \
--offsets trading days before it, ranks every scenario of the set by cosine to it (an exact scan), and \
reports per offset hit@1, hit@3 and the mean reciprocal rank of the true window, beside hit@3 by chance \
(3 / scenarios).\n\n\
The states it needs are backfilled first, into the database and idempotently (numeric states with \
--stab-model-id, then joint states without a profile branch, under --joint-model-id): states stored \
there for the evaluated dates are replaced, so evaluate under a joint model of its own (project the \
set into it with backfill-joint-stab-fragility-scenarios --joint-model-id …) to keep others. --stab-model-id defaults to the state \
encoder of the scenario vectors' feature space: num-stab-core-v3 or -v2 (with their --horizon-days) for \
num-scenario-core-v3 or -v2 scenarios, num-stab-core-v1 for num-scenario-core-v1.\n\n\
The states are backfilled as the joint model is registered (show-joint-models): its state encoder, \
profile branch and weights; a date before the first profile of a profile-augmented model is skipped \
with a note.\n\n\
--point-in-time ranks the true window only against scenarios known strictly before the query's date \
(no look-ahead competitors; the window evaluated always competes); --known-before, --shock-type and \
--min-severity narrow the competitors further. Chance is then 3 / the mean number of scenarios ranked.\n\n\
Example (after the demo, or generate + import + the v2 backfills):\n  stabspace eval-retrieval \
--scenario-set-id HIST_CRASH_WINDOWS --joint-model-id joint-stab-fragility-v2 --market-id US_EQ\n\
scripts/eval-encoders in the repository runs it for the v1, v2 and v3 pairs on one market."
)]
pub struct Args {
    /// Scenario set holding the historical windows (and any other scenarios to rank against).
    #[arg(long)]
    pub scenario_set_id: String,
    /// Joint model of the scenario vectors and of the states it backfills.
    #[arg(long, default_value = "joint-stab-fragility-v1")]
    pub joint_model_id: String,
    /// Market whose equal-weight portfolio is the query.
    #[arg(long)]
    pub market_id: String,
    /// State encoder [default: the one of the scenarios' feature space].
    #[arg(long)]
    pub stab_model_id: Option<String>,
    /// Trading days before each window's last day to query from.
    #[arg(long, value_delimiter = ',', default_value = "0,5,10")]
    pub offsets: Vec<usize>,
    /// Window of a v1 state encoder (v2 and v3 use the scenarios' horizon).
    #[arg(long, default_value_t = DEFAULT_WINDOW_DAYS)]
    pub window_days: usize,
    #[command(flatten)]
    pub filter: crate::cli::args::FilterArgs,
    /// text (an aligned table), csv, or json (with every window's rank).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Write to this file (replaced atomically) instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

pub async fn run(g: &GlobalOpts, a: Args) -> Result<()> {
    let bars = Bars::default();
    if a.offsets.is_empty() {
        return Err(Error::Invalid("--offsets: give at least one offset".into()));
    }
    if let Some(path) = &a.output {
        check_output_dir(path)?;
    }
    let db = g.open_db().await?;
    let report = eval_retrieval(
        &db,
        &EvalSpec {
            scenario_set_id: a.scenario_set_id,
            joint_model_id: a.joint_model_id,
            market_id: a.market_id,
            stab_model_id: a.stab_model_id,
            window_days: a.window_days,
            offsets: a.offsets,
            search: crate::nearest::SearchOpts {
                filter: a.filter.query_filter(),
                ..g.config().search_opts()?
            },
        },
        &bars,
    )
    .await?;
    for s in &report.skipped {
        eprintln!("note: skipped {s}");
    }
    if a.format == Format::Json {
        let text = serde_json::to_string_pretty(&report).expect("report serialises") + "\n";
        return match &a.output {
            Some(path) => write_file_atomically(path, text.as_bytes()),
            None => {
                print!("{text}");
                Ok(())
            }
        };
    }
    if a.format == Format::Text {
        println!("{}", heading(&report));
    }
    scores(&report).emit_to(a.format, a.output.as_deref())
}

fn heading(r: &EvalReport) -> String {
    format!(
        "{} historical windows of {} among {} scenarios; states {} → {} ({}), market {}",
        r.ranks
            .iter()
            .map(|x| &x.scenario_id)
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        r.scenario_set_id,
        r.scenarios,
        r.stab_model_id,
        r.joint_model_id,
        r.feature_space.as_deref().unwrap_or("feature space not recorded"),
        r.market_id
    ) + &r
        .filter
        .as_ref()
        .map_or(String::new(), |f| format!("; competitors {f}"))
}

fn scores(r: &EvalReport) -> Table {
    let mut t = Table::new(&["offset", "windows", "hit_at_1", "hit_at_3", "mrr", "chance_at_3"]);
    for s in &r.scores {
        t.push(vec![
            s.offset.into(),
            s.windows.into(),
            Cell::Float(s.hit_at_1),
            Cell::Float(s.hit_at_3),
            Cell::Float(s.mrr),
            Cell::Float(s.chance_at_3),
        ]);
    }
    t
}
