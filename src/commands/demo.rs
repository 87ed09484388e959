//! `stabspace demo`: the whole pipeline on a small generated market.

use std::time::Instant;

use chrono::NaiveDate;

use crate::backfill::{
    backfill_numeric_embeddings, backfill_numeric_scenario_embeddings, NumericBackfill, ScenarioBackfill,
};
use crate::cli::GlobalOpts;
use crate::diagnostics::{
    backfill_backtest_metrics, backfill_portfolio_metrics, portfolio_exposure, MetricsBackfill,
};
use crate::error::Result;
use crate::import::import_file;
use crate::joint::{
    backfill_joint_profiles, backfill_joint_scenarios, backfill_joint_states, ProfileBackfill,
    ScenarioProjection, StateBackfill, Weights,
};
use crate::nearest::SearchOpts;
use crate::partitions::{build_with_progress, index_dir};
use crate::progress;
use crate::storage::queries;
use crate::synth::{generate, month_ends, trading_days, SynthConfig};
use stabspace_index::BuildParams;

const WINDOW_DAYS: usize = 63;
const STAB_MODEL: &str = "num-stab-core-v1";
const SCENARIO_MODEL: &str = "num-scenario-core-v1";
const PROFILE_MODEL: &str = "joint-profile-core-v1";
const JOINT_MODEL: &str = "joint-stab-fragility-v1";

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Writes the generated CSV files to <data-dir>/demo/, imports them into the \
database (the embedded SQLite file unless --database-url is given), then runs every workflow: numeric \
backfills, issuer profiles and joint STAB states at each month end, scenario projection, the portfolio \
and backtest STAB metrics, and prints one portfolio's closest scenarios. Re-running it is safe: every \
write is an upsert."
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
}

pub async fn run(g: &GlobalOpts, a: Args) -> Result<()> {
    let started = Instant::now();
    let db = g.open_db().await?;
    println!("stabspace demo — database {}", db.label());

    let cfg = SynthConfig {
        instruments: a.instruments,
        days: a.days,
        seed: a.seed,
        ..SynthConfig::default()
    };
    let dir = g.data_dir.join("demo");
    let gen = generate(&cfg, &dir)?;
    println!(
        "1. generated {} instruments of {} over {} to {} with {} planted crashes → {}",
        cfg.instruments,
        cfg.market_id,
        gen.first_date,
        gen.last_date,
        gen.crash_windows.len(),
        dir.display()
    );

    println!("2. imported:");
    for (kind, path, _) in &gen.files {
        let s = import_file(&db, *kind, path).await?;
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
    let state_dates: Vec<NaiveDate> = month_ends(&dates, WINDOW_DAYS)
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
                window_days: WINDOW_DAYS,
                market_id: cfg.market_id.clone(),
                limit: None,
                model_id: STAB_MODEL.into(),
            },
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
                stab_model_id: STAB_MODEL.into(),
                profile_model_id: Some(PROFILE_MODEL.into()),
                joint_model_id: JOINT_MODEL.into(),
                weights: Weights::default(),
                limit: None,
            },
        )
        .await?;
        joint += s.summary.encoded;
        with_profile += s.with_profile;
    }
    pb.finish_and_clear();
    println!(
        "3. backfill-numeric-embeddings, backfill-joint-profiles, backfill-joint-stab-fragility-states \
         at {} month ends ({} to {as_of}): {encoded} {STAB_MODEL} vectors, {joint} STAB states \
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
                model_id: SCENARIO_MODEL.into(),
                limit: None,
            },
        )
        .await?;
        let j = backfill_joint_scenarios(
            &db,
            &ScenarioProjection {
                scenario_set_id: set.clone(),
                scenario_model_id: SCENARIO_MODEL.into(),
                joint_model_id: JOINT_MODEL.into(),
                weights: Weights::default(),
                limit: None,
            },
        )
        .await?;
        let built = build_with_progress(
            &db,
            &index_dir(&g.data_dir),
            JOINT_MODEL,
            set,
            &BuildParams::default(),
        )
        .await?;
        println!(
            "     {set}: {} scenario vectors, {} projected into {JOINT_MODEL}, indexed in {:.2} s",
            s.encoded, j.encoded, built.provenance.build_seconds
        );
    }

    let set = gen.scenario_sets[0].clone();
    let search = SearchOpts {
        index_dir: Some(index_dir(&g.data_dir)),
        ..SearchOpts::default()
    };
    let m = backfill_portfolio_metrics(
        &db,
        &MetricsBackfill {
            portfolio_id: None,
            scenario_set_id: set.clone(),
            model_id: JOINT_MODEL.into(),
            start: gen.first_date,
            end: as_of,
            search: search.clone(),
        },
    )
    .await?;
    print!("5. backfill-portfolio-stab-scenario-metrics --scenario-set-id {set}: {m}");
    let b = backfill_backtest_metrics(&db, Some(&format!("{}_CORE_LONG", cfg.market_id)), None).await?;
    print!("6. backfill-backtest-stab-scenario-metrics: {b}");

    let portfolio = &gen.portfolios[0];
    let e = portfolio_exposure(&db, &search, portfolio, as_of, &set, JOINT_MODEL, 5).await?;
    println!(
        "7. show-portfolio-stab-scenario-exposure --portfolio-id {portfolio} --as-of {as_of} \
         --scenario-set-id {set} --top-k 5\n   ({} holdings with STAB states, portfolio vector norm {:.4}):",
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

    let vectors = queries::count(&db, "numeric_window_embeddings").await?;
    let joint = queries::count(&db, "joint_embeddings").await?;
    println!(
        "done in {:.1} s: {vectors} numeric and {joint} joint vectors stored in {}.",
        started.elapsed().as_secs_f64(),
        db.label()
    );
    db.close().await;
    Ok(())
}
