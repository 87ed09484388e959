//! Flag groups shared by several commands (`#[command(flatten)]`): how to
//! search, how much of a portfolio must be covered, where a table goes. Each
//! turns into the library's plain options.

use std::path::PathBuf;

use crate::config::{parse_clamped, parse_recall, parse_share, Config};
use crate::error::Result;
use crate::nearest::SearchOpts;
use crate::output::{Format, Table};
use crate::portfolio::DEFAULT_MIN_COVERAGE;

/// `--ef` and `--exact`, shared by the commands that search scenarios.
#[derive(Clone, Debug, clap::Args)]
pub struct SearchArgs {
    /// Target recall@10 of the graph search, between 0 and 1 (default 0.95). The breadth
    /// used is the smallest that reached it when this partition was built, measured against
    /// an exact scan with some of its own rows as held-out queries (`stabspace index status`
    /// shows the breadth per target); the query prints the breadth chosen. Partitions in
    /// format version 1 were not calibrated: they use ef 128 until rebuilt.
    #[arg(long, value_name = "R", value_parser = parse_recall, conflicts_with = "ef")]
    pub recall: Option<f64>,
    /// Search breadth on the index graph, for experts: overrides --recall (≥ k; larger is
    /// slower and more exact). Any value is accepted: one at or above the partition's row
    /// count (clamped to it) scans every row exactly.
    #[arg(long, value_name = "N", value_parser = parse_clamped)]
    pub ef: Option<usize>,
    /// Scan every scenario vector of the database exactly (never a partition file) instead of
    /// searching the index graph.
    #[arg(long, conflicts_with_all = ["ef", "recall"])]
    pub exact: bool,
    /// Run the graph search on the f32 vectors instead of the partition's int8 codes (slower;
    /// for comparison). Either way the candidates are re-ranked exactly, so cosines and
    /// distances are exact; only which candidates the beam finds can differ.
    #[arg(long, conflicts_with = "exact")]
    pub no_quantized: bool,
}

impl SearchArgs {
    /// The search options with the filter of `filter`'s flags.
    pub fn filtered(&self, config: &Config, filter: &FilterArgs) -> Result<SearchOpts> {
        Ok(SearchOpts {
            filter: filter.query_filter(),
            ..self.opts(config)?
        })
    }

    pub fn opts(&self, config: &Config) -> Result<SearchOpts> {
        Ok(SearchOpts {
            // --exact answers from the database alone.
            partitions: if self.exact {
                None
            } else {
                Some(config.partition_cache()?)
            },
            ef: self.ef,
            recall: self.recall,
            exact: self.exact,
            no_quantized: self.no_quantized,
            filter: Default::default(),
        })
    }
}

/// `--point-in-time`, `--known-before`, `--shock-type`, `--min-severity`:
/// which scenarios the commands that search scenarios may return.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct FilterArgs {
    /// Point-in-time: a query dated D sees only scenarios known strictly before D (a historical
    /// window is known from the last trading day its path covers; a generated scenario from its
    /// scenario_date; a `known_from` column of the scenarios CSV overrides both). What a backtest
    /// must use, so that no day is compared with scenarios from its own future.
    #[arg(long, conflicts_with = "known_before")]
    pub point_in_time: bool,
    /// Only scenarios known strictly before this date (YYYY-MM-DD), whatever the query's date.
    #[arg(long, value_name = "DATE", value_parser = crate::config::parse_date)]
    pub known_before: Option<chrono::NaiveDate>,
    /// Only scenarios of this shock type (repeat, or separate with commas, for several).
    #[arg(long, value_name = "TYPE", value_delimiter = ',')]
    pub shock_type: Vec<String>,
    /// Only scenarios at least this severe: a number, or LOW < MEDIUM < HIGH < SEVERE (= EXTREME).
    #[arg(long, value_name = "S", value_parser = crate::pointintime::parse_min_severity)]
    pub min_severity: Option<f32>,
}

impl FilterArgs {
    /// The library's filter of these flags.
    pub fn query_filter(&self) -> crate::pointintime::QueryFilter {
        crate::pointintime::QueryFilter {
            point_in_time: self.point_in_time,
            filter: crate::pointintime::ScenarioFilter {
                known_before: self.known_before,
                shock_types: self.shock_type.clone(),
                min_severity: self.min_severity,
            },
        }
    }
}

/// `--min-coverage`, shared by the commands that form portfolio vectors.
#[derive(Clone, Debug, clap::Args)]
pub struct CoverageArgs {
    /// Least share (0 to 1) of the portfolio's absolute weight that the holdings with a STAB state
    /// must carry. Holdings without a state are left out of the vector and named on stderr; below
    /// this share the day has no vector (an error for one day, a skipped day in a backfill).
    /// 0 accepts any coverage.
    #[arg(long, value_name = "F", default_value_t = DEFAULT_MIN_COVERAGE, value_parser = parse_share)]
    pub min_coverage: f64,
}

/// `--format` and `--output`, shared by every command that prints a table.
#[derive(Clone, Debug, clap::Args)]
pub struct OutputArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Csv)]
    pub format: Format,
    /// Write to this file (replaced atomically) instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

impl OutputArgs {
    /// Print `t` to stdout, or write it to `--output` atomically (into an existing directory).
    pub fn emit(&self, t: &Table) -> Result<()> {
        t.emit_to(self.format, self.output.as_deref())
    }
}
