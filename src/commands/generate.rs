use std::path::PathBuf;

use crate::cli::global::GlobalOpts;
use crate::error::Result;
use crate::synth::{generate, SetKind, SynthConfig};

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Writes instruments.csv, prices.csv, scenarios.csv, scenario_paths.csv, \
portfolios.csv, risk_reports.csv, backtest_runs.csv and fundamentals.csv, in exactly the formats of \
`stabspace import`, then prints the import commands. The same --seed gives the same files."
)]
pub struct Args {
    /// Directory to write the CSV files into (created if needed).
    #[arg(long)]
    pub out: PathBuf,
    /// Number of instruments (every 25th is delisted).
    #[arg(long, default_value_t = 60)]
    pub instruments: usize,
    /// Number of trading days (weekdays from --start).
    #[arg(long, default_value_t = 400)]
    pub days: usize,
    /// Scenario sets to write.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "historical,monte-carlo"
    )]
    pub scenario_sets: Vec<SetKind>,
    /// Monte-Carlo scenarios in the monte-carlo set.
    #[arg(long, default_value_t = 200)]
    pub mc_scenarios: usize,
    /// Planted stress episodes, shaped in turn sharp crash, slow grind, volatility spike,
    /// rebound (each becomes a historical-window scenario).
    #[arg(long, visible_alias = "episodes", default_value_t = 6)]
    pub crashes: usize,
    /// Trading days per scenario and per crash.
    #[arg(long, default_value_t = 20)]
    pub horizon: usize,
    /// Instruments in each Monte-Carlo scenario panel (historical windows cover every active instrument).
    #[arg(long, default_value_t = 10)]
    pub scenario_instruments: usize,
    /// Number of portfolios (each with month-end weights, daily risk reports and one backtest run).
    #[arg(long, default_value_t = 3)]
    pub portfolios: usize,
    /// Market id of the instruments.
    #[arg(long, default_value = "US_EQ")]
    pub market_id: String,
    /// Region of the market's instruments.
    #[arg(long, default_value = "US")]
    pub region: String,
    /// Random seed.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

impl Args {
    pub fn config(&self) -> SynthConfig {
        SynthConfig {
            market_id: self.market_id.clone(),
            region: self.region.clone(),
            instruments: self.instruments,
            days: self.days,
            seed: self.seed,
            crashes: self.crashes,
            horizon: self.horizon,
            scenario_instruments: self.scenario_instruments,
            mc_scenarios: self.mc_scenarios,
            portfolios: self.portfolios,
            sets: self.scenario_sets.clone(),
            ..SynthConfig::default()
        }
    }
}

pub async fn run(_g: &GlobalOpts, a: Args) -> Result<()> {
    let g = generate(&a.config(), &a.out)?;
    println!(
        "wrote a synthetic market of {} instruments, {} to {} ({} planted stress episodes), into {}:",
        a.instruments,
        g.first_date,
        g.last_date,
        g.crash_windows.len(),
        a.out.display()
    );
    for (kind, path, rows) in &g.files {
        println!(
            "  stabspace import {:<15} {}   # {rows} rows",
            kind.name(),
            path.display()
        );
    }
    Ok(())
}
