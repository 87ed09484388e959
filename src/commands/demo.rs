//! `stabspace demo`: the whole pipeline on a small generated market.

use std::time::Instant;

use chrono::NaiveDate;

use crate::backfill::{
    backfill_numeric_embeddings, backfill_numeric_scenario_embeddings, NumericBackfill, ScenarioBackfill,
};
use crate::cli::global::GlobalOpts;
use crate::cli::progress::{self, Bars};
use crate::diagnostics::{
    backfill_backtest_metrics, backfill_portfolio_metrics, portfolio_exposure, MetricsBackfill,
};
use crate::encoders::{DEFAULT_HORIZON, DEFAULT_WINDOW_DAYS};
use crate::error::Result;
use crate::eval::{eval_retrieval, EvalSpec};
use crate::import::import_file;
use crate::joint::{
    backfill_joint_profiles, backfill_joint_scenarios, backfill_joint_states, ProfileBackfill,
    ScenarioProjection, StateBackfill, Weights,
};
use crate::partitions::build;
use crate::portfolio::DEFAULT_MIN_COVERAGE;
use crate::storage::{resolve_url, tables};
use crate::synth::{generate, month_ends, trading_days, SynthConfig};
use stabspace_index::BuildParams;

const PROFILE_MODEL: &str = "joint-profile-core-v1";

/// Which encoder pair the demo runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Encoders {
    /// num-stab-core-v2 + num-scenario-core-v2: fragility signatures, states and scenarios in one space.
    V2,
    /// num-stab-core-v1 + num-scenario-core-v1 (+ issuer profiles): the design documents' flatten-and-pad.
    V1,
    /// num-stab-core-v3 + num-scenario-core-v3: multi-scale signatures with the market's cross-section.
    V3,
}

impl Encoders {
    fn models(self) -> (&'static str, &'static str) {
        match self {
            Encoders::V2 => ("num-stab-core-v2", "num-scenario-core-v2"),
            Encoders::V1 => ("num-stab-core-v1", "num-scenario-core-v1"),
            Encoders::V3 => ("num-stab-core-v3", "num-scenario-core-v3"),
        }
    }
    /// The built-in joint model of the pair's space.
    fn joint_model(self) -> &'static str {
        match self {
            Encoders::V2 => "joint-stab-fragility-v2",
            Encoders::V1 => "joint-stab-fragility-v1",
            Encoders::V3 => "joint-stab-fragility-v3",
        }
    }
    /// Trading days of each state window.
    fn window_days(self) -> usize {
        match self {
            Encoders::V2 | Encoders::V3 => DEFAULT_HORIZON,
            Encoders::V1 => DEFAULT_WINDOW_DAYS,
        }
    }
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Writes the generated CSV files to <data-dir>/demo/, imports them into the \
database (the embedded SQLite file unless --database-url is given), then runs every workflow: numeric \
backfills, issuer profiles and joint STAB states at each month end, scenario projection, the portfolio \
and backtest STAB metrics, prints one portfolio's closest scenarios, and evaluates how well the market's \
states retrieve their own stress windows (eval-retrieval). The v2 signature encoders under \
joint-stab-fragility-v2 are the default (--encoders v1 runs the design documents' encoders under \
joint-stab-fragility-v1, with issuer profiles in the states; --encoders v3 the v3 pair under \
joint-stab-fragility-v3).\n\n\
The demo uses its own database: the embedded SQLite file <data-dir>/stabspace.db, whatever DATABASE_URL \
says, unless --database-url is given on the command line. It refuses a database holding data it did not \
create, and empties the one an earlier demo filled before it starts, so every run prints the same figures."
)]
pub struct Args {
    /// Instruments in the generated market.
    #[arg(long, default_value_t = 60)]
    pub instruments: usize,
    /// Trading days of history.
    #[arg(long, default_value_t = 400)]
    pub days: usize,
    /// Random seed.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Encoder pair.
    #[arg(long, value_enum, default_value_t = Encoders::V2)]
    pub encoders: Encoders,
}

pub async fn run(g: &GlobalOpts, a: Args) -> Result<()> {
    let bars = Bars::default();
    let started = Instant::now();
    let (stab_model, scenario_model) = a.encoders.models();
    let window_days = a.encoders.window_days();
    let joint_model = a.encoders.joint_model();
    // Profiles (z-scored fundamentals) live in the v1 space only.
    let profile = (a.encoders == Encoders::V1).then_some(PROFILE_MODEL);
    // The demo's own database: the embedded file unless --database-url is
    // typed on the command line (DATABASE_URL in the environment is ignored:
    // it usually points at real data).
    let own = if g.database_url_from_env {
        eprintln!(
            "note: the demo ignores DATABASE_URL and uses its own database {}; give `stabspace demo \
             --database-url URL` to run it on another (empty) database",
            resolve_url(None, &g.data_dir)
        );
        GlobalOpts {
            database_url: None,
            ..g.clone()
        }
    } else {
        g.clone()
    };
    // Creates the data directory for the embedded default, as every writer does.
    let db = own.open_db().await?;
    let cleared = crate::demo_db::claim(&db).await?;
    println!(
        "stabspace demo — database {}{}",
        db.label(),
        if cleared {
            " (an earlier demo's data cleared first)"
        } else {
            ""
        }
    );

    let cfg = SynthConfig {
        instruments: a.instruments,
        days: a.days,
        seed: a.seed,
        ..SynthConfig::default()
    };
    let dir = g.data_dir.join("demo");
    let gen = generate(&cfg, &dir)?;
    println!(
        "1. generated {} instruments of {} over {} to {} with {} planted stress episodes → {}",
        cfg.instruments,
        cfg.market_id,
        gen.first_date,
        gen.last_date,
        gen.crash_windows.len(),
        dir.display()
    );

    println!("2. imported:");
    for (kind, path, _) in &gen.files {
        let s = import_file(&db, *kind, path, &bars).await?;
        println!(
            "     {:<15} {:>8} rows  ({:.2} s)",
            kind.name(),
            s.rows,
            s.seconds
        );
    }

    // States at every month end with a full 63-day window, and at the last date:
    // the risk reports of any day then find their holdings' latest state.
    let dates = trading_days(cfg.start, cfg.days);
    let as_of = gen.last_date;
    let state_dates: Vec<NaiveDate> = month_ends(&dates, window_days)
        .into_iter()
        .map(|t| dates[t])
        .collect();
    let pb = progress::items(state_dates.len() as u64, "dates");
    pb.set_message("numeric, profile and joint states");
    let (mut encoded, mut joint, mut with_profile) = (0, 0, 0);
    for &d in &state_dates {
        pb.inc(1);
        encoded += backfill_numeric_embeddings(
            &db,
            &NumericBackfill {
                as_of: d,
                window_days,
                horizon_days: DEFAULT_HORIZON,
                market_id: cfg.market_id.clone(),
                limit: None,
                model_id: stab_model.into(),
            },
            &bars,
        )
        .await?
        .encoded;
        backfill_joint_profiles(
            &db,
            &ProfileBackfill {
                as_of: d,
                model_id: PROFILE_MODEL.into(),
                limit: None,
            },
        )
        .await?;
        let s = backfill_joint_states(
            &db,
            &StateBackfill {
                as_of: d,
                market_id: cfg.market_id.clone(),
                region: None,
                stab_model_id: stab_model.into(),
                profile_model_id: profile.map(String::from),
                joint_model_id: joint_model.into(),
                weights: Weights::default(),
                limit: None,
                replace: false,
            },
            &bars,
        )
        .await?;
        joint += s.summary.encoded;
        with_profile += s.with_profile;
    }
    pb.finish_and_clear();
    println!(
        "3. backfill-numeric-embeddings, backfill-joint-profiles, backfill-joint-stab-fragility-states \
         at {} month ends ({} to {as_of}): {encoded} {stab_model} vectors, {joint} STAB states \
         ({with_profile} with a profile branch)",
        state_dates.len(),
        state_dates[0]
    );

    println!("4. backfill-numeric-scenario-embeddings, backfill-joint-stab-fragility-scenarios:");
    for set in &gen.scenario_sets {
        let s = backfill_numeric_scenario_embeddings(
            &db,
            &ScenarioBackfill {
                scenario_set_id: set.clone(),
                model_id: scenario_model.into(),
                horizon_days: DEFAULT_HORIZON,
                limit: None,
            },
            &bars,
        )
        .await?;
        let j = backfill_joint_scenarios(
            &db,
            &ScenarioProjection {
                scenario_set_id: set.clone(),
                scenario_model_id: scenario_model.into(),
                joint_model_id: joint_model.into(),
                weights: Weights::default(),
                limit: None,
                replace: false,
            },
            &bars,
        )
        .await?;
        let built = build(
            &db,
            &*g.config().partition_store()?,
            joint_model,
            set,
            &BuildParams::default(),
            crate::partitions::BuildMode::Full,
            &bars,
        )
        .await?;
        println!(
            "     {set}: {} scenario vectors, {} projected into {joint_model}, indexed in {:.2} s",
            s.encoded, j.encoded, built.provenance.build_seconds
        );
    }

    let set = gen.scenario_sets[0].clone();
    let search = g.config().search_opts()?;
    // A backtest's days see only the windows known before them.
    let point_in_time = crate::nearest::SearchOpts {
        filter: crate::pointintime::QueryFilter {
            point_in_time: true,
            ..Default::default()
        },
        ..search.clone()
    };
    let m = backfill_portfolio_metrics(
        &db,
        &MetricsBackfill {
            portfolio_id: None,
            scenario_set_id: set.clone(),
            model_id: joint_model.into(),
            start: gen.first_date,
            end: as_of,
            search: point_in_time,
            min_coverage: DEFAULT_MIN_COVERAGE,
            recall_sample: 0.0,
        },
        &bars,
    )
    .await?;
    print!(
        "5. backfill-portfolio-stab-scenario-metrics --point-in-time --scenario-set-id {set} --stab-model-id \
         {joint_model}: {m}"
    );
    let b = backfill_backtest_metrics(&db, Some(&format!("{}_CORE_LONG", cfg.market_id)), None).await?;
    print!("6. backfill-backtest-stab-scenario-metrics: {b}");

    let portfolio = &gen.portfolios[0];
    let e = portfolio_exposure(
        &db,
        &search,
        portfolio,
        as_of,
        &set,
        joint_model,
        5,
        DEFAULT_MIN_COVERAGE,
    )
    .await?;
    println!(
        "7. show-portfolio-stab-scenario-exposure --portfolio-id {portfolio} --as-of {as_of} \
         --scenario-set-id {set} --stab-model-id {joint_model} --top-k 5\n   ({} holdings with STAB states, \
         portfolio vector norm {:.4}):",
        e.vector.used, e.vector.ctx_norm
    );
    println!("     rank     cosine       euclidean  scenario_id          scenario_as_of");
    for (i, h) in e.hits.iter().enumerate() {
        println!(
            "     {:>4}  {:>9.6}  {:>14.4}  {:<20} {}",
            i + 1,
            h.cosine,
            h.euclidean,
            h.scenario_id,
            h.scenario_as_of
        );
    }

    let hist = crate::synth::HISTORICAL_SET;
    let eval = eval_retrieval(
        &db,
        &EvalSpec {
            scenario_set_id: hist.into(),
            joint_model_id: joint_model.into(),
            market_id: cfg.market_id.clone(),
            stab_model_id: None,
            window_days,
            offsets: vec![0, 5, 10],
            search: search.clone(),
        },
        &bars,
    )
    .await?;
    println!(
        "8. eval-retrieval --scenario-set-id {hist} --market-id {} --joint-model-id {joint_model}: the \
         equal-weight market portfolio \
         of {stab_model} states at the end of each of the {} stress windows, and 5 and 10 trading days \
         before, ranks the {} scenarios of the set; the true window is found at",
        cfg.market_id, eval.windows, eval.scenarios
    );
    println!("     offset  hit@1  hit@3    MRR  (chance hit@3)");
    for s in &eval.scores {
        println!(
            "     {:>6}  {:>5.2}  {:>5.2}  {:>5.2}  ({:.2})",
            s.offset, s.hit_at_1, s.hit_at_3, s.mrr, s.chance_at_3
        );
    }

    let vectors = tables::count(&db, "numeric_window_embeddings").await?;
    let joint = tables::count(&db, "joint_embeddings").await?;
    println!(
        "done in {:.1} s: {vectors} numeric and {joint} joint vectors stored in {}.",
        started.elapsed().as_secs_f64(),
        db.label()
    );
    db.close().await;
    Ok(())
}
