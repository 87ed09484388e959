//! One module per subcommand: an `Args` struct and a `run` function that parses
//! nothing further, calls the library and prints the result.

pub mod backfill_backtest_stab_scenario_metrics;
pub mod backfill_joint_profiles;
pub mod backfill_joint_stab_fragility_scenarios;
pub mod backfill_joint_stab_fragility_states;
pub mod backfill_numeric_embeddings;
pub mod backfill_numeric_scenario_embeddings;
pub mod backfill_portfolio_stab_scenario_metrics;
pub mod bench;
pub mod demo;
pub mod eval_retrieval;
pub mod find_similar_stab_scenarios;
pub mod gen_scenarios;
pub mod generate;
pub mod import;
pub mod index;
pub mod migrate;
#[cfg(feature = "server")]
pub mod serve;
pub mod show_joint_models;
pub mod show_joint_stab_fragility_scenarios;
pub mod show_joint_stab_fragility_states;
pub mod show_portfolio_stab_scenario_exposure;
