//! Command-line parsing and dispatch. Each subcommand lives in `commands/`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::commands;
use crate::error::{Error, Result, NEVER_COMPARED};

pub mod args;
pub mod global;
pub mod progress;
pub mod reference;

pub use global::GlobalOpts;

#[derive(Debug, Parser)]
#[command(
    name = "stabspace",
    version,
    about = "Stability/fragility (STAB) joint embedding space: backfills and nearest-scenario queries",
    long_about = "Stability/fragility (STAB) joint embedding space.\n\n\
        Turns daily prices and shock scenarios into 384-dim float32 vectors stored in \
        PostgreSQL or, by default, an embedded SQLite file in the data directory.\n\n\
        Start with `stabspace demo`."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOpts,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply missing database migrations (every command also does this) and exit.
    Migrate(commands::migrate::Args),
    /// Import a CSV file into its table (one transaction; re-importing is a no-op).
    Import(commands::import::Args),
    /// Encode the price windows of a market's active instruments (num-stab-core-v1, -v2, -v3, …).
    BackfillNumericEmbeddings(commands::backfill_numeric_embeddings::Args),
    /// Encode the return panels of a scenario set (num-scenario-core-v1, -v2, -v3).
    BackfillNumericScenarioEmbeddings(commands::backfill_numeric_scenario_embeddings::Args),
    /// Standardised issuer-fundamentals profiles (joint-profile-core-v1).
    BackfillJointProfiles(commands::backfill_joint_profiles::Args),
    /// Instrument STAB states in the joint space (stab branch + optional profile branch).
    BackfillJointStabFragilityStates(commands::backfill_joint_stab_fragility_states::Args),
    /// List stored STAB states (CSV or JSON).
    ShowJointStabFragilityStates(commands::show_joint_stab_fragility_states::Args),
    /// Project a scenario set's numeric vectors into the joint space.
    BackfillJointStabFragilityScenarios(commands::backfill_joint_stab_fragility_scenarios::Args),
    /// List stored STAB scenario vectors of a set (CSV or JSON).
    ShowJointStabFragilityScenarios(commands::show_joint_stab_fragility_scenarios::Args),
    /// List the registered joint models: branches, weights and feature space (CSV or JSON).
    ShowJointModels(commands::show_joint_models::Args),
    /// The scenarios nearest an instrument's STAB state.
    FindSimilarStabScenarios(commands::find_similar_stab_scenarios::Args),
    /// The scenarios nearest a portfolio's STAB vector on a date.
    ShowPortfolioStabScenarioExposure(commands::show_portfolio_stab_scenario_exposure::Args),
    /// Merge nearest-scenario metrics into portfolio_risk_reports.risk_metrics over a date range.
    BackfillPortfolioStabScenarioMetrics(commands::backfill_portfolio_stab_scenario_metrics::Args),
    /// Merge run-level STAB summaries into backtest_runs.metrics_json.
    BackfillBacktestStabScenarioMetrics(commands::backfill_backtest_stab_scenario_metrics::Args),
    /// How well market states retrieve their own historical stress windows (hit@1, hit@3, MRR).
    EvalRetrieval(commands::eval_retrieval::Args),
    /// Index partitions of scenario vectors: build, rebuild, status, verify, drop.
    Index(commands::index::Args),
    /// Recall and latency of the index against the exact scan, per search breadth.
    Bench(commands::bench::Args),
    /// HTTP server for nearest-scenario queries: partitions opened once, hot swaps, metrics
    /// (no authentication; loopback by default).
    #[cfg(feature = "server")]
    Serve(commands::serve::Args),
    /// Write a large synthetic scenario set straight into the database (for benchmarks).
    GenScenarios(commands::gen_scenarios::Args),
    /// Write a deterministic synthetic market as CSV files in the import formats.
    Generate(commands::generate::Args),
    /// Generate a small market, import it and run every workflow on it.
    Demo(commands::demo::Args),
}

pub async fn run(cli: Cli) -> Result<()> {
    let _ = JOINT_MODEL_FLAGS.set(joint_model_flags(&cli.command));
    let g = &cli.global;
    match cli.command {
        Command::Migrate(a) => commands::migrate::run(g, a).await,
        Command::Import(a) => commands::import::run(g, a).await,
        Command::BackfillNumericEmbeddings(a) => commands::backfill_numeric_embeddings::run(g, a).await,
        Command::BackfillNumericScenarioEmbeddings(a) => {
            commands::backfill_numeric_scenario_embeddings::run(g, a).await
        }
        Command::BackfillJointProfiles(a) => commands::backfill_joint_profiles::run(g, a).await,
        Command::BackfillJointStabFragilityStates(a) => {
            commands::backfill_joint_stab_fragility_states::run(g, a).await
        }
        Command::ShowJointStabFragilityStates(a) => {
            commands::show_joint_stab_fragility_states::run(g, a).await
        }
        Command::BackfillJointStabFragilityScenarios(a) => {
            commands::backfill_joint_stab_fragility_scenarios::run(g, a).await
        }
        Command::ShowJointStabFragilityScenarios(a) => {
            commands::show_joint_stab_fragility_scenarios::run(g, a).await
        }
        Command::FindSimilarStabScenarios(a) => commands::find_similar_stab_scenarios::run(g, a).await,
        Command::ShowJointModels(a) => commands::show_joint_models::run(g, a).await,
        Command::ShowPortfolioStabScenarioExposure(a) => {
            commands::show_portfolio_stab_scenario_exposure::run(g, a).await
        }
        Command::BackfillPortfolioStabScenarioMetrics(a) => {
            commands::backfill_portfolio_stab_scenario_metrics::run(g, a).await
        }
        Command::BackfillBacktestStabScenarioMetrics(a) => {
            commands::backfill_backtest_stab_scenario_metrics::run(g, a).await
        }
        Command::EvalRetrieval(a) => commands::eval_retrieval::run(g, a).await,
        Command::Index(a) => commands::index::run(g, a).await,
        Command::Bench(a) => commands::bench::run(g, a).await,
        #[cfg(feature = "server")]
        Command::Serve(a) => commands::serve::run(g, a).await,
        Command::GenScenarios(a) => commands::gen_scenarios::run(g, a).await,
        Command::Generate(a) => commands::generate::run(g, a).await,
        Command::Demo(a) => commands::demo::run(g, a).await,
    }
}

/// The binary's entry point: parse, run, print errors as one line, set the exit code.
pub fn main() -> ExitCode {
    let matches = <Cli as clap::CommandFactory>::command().get_matches();
    let mut cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    cli.global.database_url_from_env = url_from_env(&matches);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", message(&e));
            ExitCode::FAILURE
        }
    };
    // Every command awaits its own work; what is left (a server's background
    // rebuild, a blocking task of a request that timed out) ends with the process
    // rather than delaying its exit. Partition files are replaced atomically.
    runtime.shutdown_background();
    code
}

/// An error as the CLI prints it: a hint naming another joint model becomes
/// the command line that asks for it, where this command can give one.
fn message(e: &Error) -> String {
    match e {
        Error::OtherJointModel { what, asked, other } => match command_line_with_joint_model(asked, other) {
            Some(cmd) => format!("{what}; {NEVER_COMPARED}: run `{cmd}`"),
            None => e.to_string(),
        },
        e => e.to_string(),
    }
}

/// True when --database-url was filled from DATABASE_URL, not typed on the
/// command line (before or after the subcommand).
fn url_from_env(m: &clap::ArgMatches) -> bool {
    use clap::parser::ValueSource;
    let mut sources = Vec::new();
    let mut level = Some(m);
    while let Some(m) = level {
        if let Ok(Some(s)) = m
            .try_get_one::<String>("database_url")
            .map(|v| v.and(m.value_source("database_url")))
        {
            sources.push(s);
        }
        level = m.subcommand().map(|(_, sub)| sub);
    }
    sources.contains(&ValueSource::EnvVariable) && !sources.contains(&ValueSource::CommandLine)
}

/// The flags naming the joint model in the running command (the first is
/// its own name, the others aliases), set by [`run`] from the parsed command.
static JOINT_MODEL_FLAGS: std::sync::OnceLock<&'static [&'static str]> = std::sync::OnceLock::new();

fn joint_model_flags(command: &Command) -> &'static [&'static str] {
    match command {
        Command::FindSimilarStabScenarios(_)
        | Command::ShowJointStabFragilityScenarios(_)
        | Command::ShowJointStabFragilityStates(_)
        | Command::Bench(_) => &["--model-id"],
        Command::ShowPortfolioStabScenarioExposure(_) | Command::BackfillPortfolioStabScenarioMetrics(_) => {
            &["--stab-model-id", "--joint-model-id"]
        }
        Command::EvalRetrieval(_) => &["--joint-model-id"],
        Command::Index(a) if matches!(a.command, commands::index::IndexCommand::Build(_)) => &["--model-id"],
        _ => &[],
    }
}

/// Characters a shell takes literally outside quotes.
fn shell_safe(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c)
}

/// This process's command line with its joint model `current` replaced by
/// `model` (or the command's joint model flag added when `current` was its
/// default), for hints that give the command that works; a database URL's
/// password is hidden. `None` for a command without a joint model flag
/// (or before [`run`] parsed one), or when an argument is not UTF-8. The
/// library's [`Error::OtherJointModel`] names the model; [`main`] prints it as
/// this command line.
pub fn command_line_with_joint_model(current: &str, model: &str) -> Option<String> {
    let flags = *JOINT_MODEL_FLAGS.get()?;
    let canonical = *flags.first()?;
    let args: Vec<String> = std::env::args_os()
        .map(|a| a.into_string().ok())
        .collect::<Option<_>>()?;
    let mut out = vec!["stabspace".to_string()];
    let mut replaced = false;
    let mut iter = args.into_iter().skip(1).peekable();
    while let Some(a) = iter.next() {
        let flag_value = a.split_once('=').filter(|(f, _)| f.starts_with("--"));
        if flags.contains(&a.as_str()) && iter.peek().is_some_and(|v| v == current) {
            iter.next();
            out.extend([a, model.to_string()]);
            replaced = true;
        } else if let Some((f, _)) = flag_value.filter(|(f, v)| flags.contains(f) && *v == current) {
            out.push(format!("{f}={model}"));
            replaced = true;
        } else if a == "--database-url" || a == "--read-database-url" {
            out.push(a);
            if let Some(url) = iter.next() {
                out.push(crate::storage::redact(&url));
            }
        } else if let Some((flag, url)) = ["--database-url=", "--read-database-url="]
            .iter()
            .find_map(|f| a.strip_prefix(f).map(|url| (f, url)))
        {
            out.push(format!("{flag}{}", crate::storage::redact(url)));
        } else {
            out.push(a);
        }
    }
    if !replaced {
        out.extend([canonical.to_string(), model.to_string()]);
    }
    Some(
        out.iter()
            .map(|a| {
                if !a.is_empty() && a.chars().all(shell_safe) {
                    a.clone()
                } else {
                    format!("'{}'", a.replace('\'', "'\\''"))
                }
            })
            .collect::<Vec<_>>()
            .join(" "),
    )
}
