//! `stabspace demo`: the whole pipeline on a small generated market.

use std::time::Instant;

use crate::backfill::{
    backfill_numeric_embeddings, backfill_numeric_scenario_embeddings, NumericBackfill, ScenarioBackfill,
};
use crate::cli::GlobalOpts;
use crate::error::Result;
use crate::import::import_file;
use crate::storage::queries;
use crate::synth::{generate, SynthConfig};

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Writes the generated CSV files to <data-dir>/demo/, imports them into the \
database (the embedded SQLite file unless --database-url is given), runs the numeric backfills and \
prints what each step did. Re-running it is safe: every write is an upsert."
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

    let as_of = gen.last_date;
    let stab = backfill_numeric_embeddings(
        &db,
        &NumericBackfill {
            as_of,
            window_days: 63,
            market_id: cfg.market_id.clone(),
            limit: None,
            model_id: "num-stab-core-v1".into(),
        },
    )
    .await?;
    println!(
        "3. backfill-numeric-embeddings --as-of {as_of} --market-id {} --window-days 63",
        cfg.market_id
    );
    print!("     {stab}");

    println!("4. backfill-numeric-scenario-embeddings:");
    for set in &gen.scenario_sets {
        let s = backfill_numeric_scenario_embeddings(
            &db,
            &ScenarioBackfill {
                scenario_set_id: set.clone(),
                model_id: "num-scenario-core-v1".into(),
                limit: None,
            },
        )
        .await?;
        print!("     {set}: {s}");
    }

    let vectors = queries::count(&db, "numeric_window_embeddings").await?;
    println!(
        "done in {:.1} s: {vectors} vectors of 384 float32 stored in numeric_window_embeddings.",
        started.elapsed().as_secs_f64()
    );
    db.close().await;
    Ok(())
}
