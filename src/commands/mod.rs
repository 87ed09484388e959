//! One module per subcommand: an `Args` struct and a `run` function that parses
//! nothing further, calls the library and prints the result.

pub mod backfill_numeric_embeddings;
pub mod backfill_numeric_scenario_embeddings;
pub mod demo;
pub mod generate;
pub mod import;
pub mod migrate;
