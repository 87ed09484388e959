//! Numeric encoders: price windows and scenario panels to 384-dim vectors.
//!
//! An encoder is one small type implementing [`WindowEncoder`] (instrument price
//! windows) or [`ScenarioEncoder`] (scenario return panels); the registries below
//! map model ids to them, so a new model is one new file plus one line here.

mod pad_to_dim;

use std::fmt;

use chrono::NaiveDate;

pub use pad_to_dim::{pad_to_dim, PadToDimScenario, PadToDimWindow};

use crate::error::{Error, Result};

/// The last `window_days + 1` daily prices of one instrument, oldest first.
/// The first price only anchors the first day's log return.
#[derive(Clone, Debug, PartialEq)]
pub struct PriceWindow {
    pub instrument_id: String,
    pub dates: Vec<NaiveDate>,
    pub close: Vec<f64>,
    pub volume: Vec<f64>,
}

impl PriceWindow {
    /// Days in the window proper (prices minus the anchor).
    pub fn window_days(&self) -> usize {
        self.dates.len().saturating_sub(1)
    }
    /// First and last trading day of the window proper.
    pub fn span(&self) -> Option<(NaiveDate, NaiveDate)> {
        Some((*self.dates.get(1)?, *self.dates.last()?))
    }
}

/// A scenario's return panel, row-major: `values[d * instruments + j]` is the
/// simple return of the j-th instrument (by instrument_id) on the d-th day (by
/// day_index).
#[derive(Clone, Debug, PartialEq)]
pub struct ScenarioPanel {
    pub scenario_id: String,
    pub days: usize,
    pub instruments: usize,
    pub values: Vec<f64>,
}

/// Why an instrument was left out of a backfill.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SkipReason {
    InsufficientHistory { have: usize, need: usize },
    NonPositiveClose { date: NaiveDate },
    NonFinite { date: NaiveDate, field: &'static str },
}

impl SkipReason {
    /// A short label to group skips by in summaries.
    pub fn kind(&self) -> &'static str {
        match self {
            SkipReason::InsufficientHistory { .. } => "insufficient history",
            SkipReason::NonPositiveClose { .. } => "non-positive close",
            SkipReason::NonFinite { .. } => "non-finite value",
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::InsufficientHistory { have, need } => {
                write!(f, "insufficient history: {have} prices, need {need}")
            }
            SkipReason::NonPositiveClose { date } => write!(f, "non-positive close on {date}"),
            SkipReason::NonFinite { date, field } => write!(f, "non-finite {field} on {date}"),
        }
    }
}

/// Encodes an instrument's price window at an as-of date.
pub trait WindowEncoder: Send + Sync {
    fn model_id(&self) -> &'static str;
    /// Prices needed for a window of `window_days` trading days.
    fn prices_needed(&self, window_days: usize) -> usize {
        window_days + 1
    }
    fn encode(&self, window: &PriceWindow) -> Result<Vec<f32>, SkipReason>;
}

/// Encodes a scenario's return panel.
pub trait ScenarioEncoder: Send + Sync {
    fn model_id(&self) -> &'static str;
    fn encode(&self, panel: &ScenarioPanel) -> Result<Vec<f32>>;
}

/// Model ids of the window encoders, in the order `--help` lists them.
pub const WINDOW_MODELS: &[&str] = &["num-stab-core-v1", "num-regime-core-v1"];
/// Model ids of the scenario encoders.
pub const SCENARIO_MODELS: &[&str] = &["num-scenario-core-v1"];

pub fn window_encoder(model_id: &str) -> Result<Box<dyn WindowEncoder>> {
    match model_id {
        "num-stab-core-v1" => Ok(Box::new(PadToDimWindow::new("num-stab-core-v1"))),
        "num-regime-core-v1" => Ok(Box::new(PadToDimWindow::new("num-regime-core-v1"))),
        other => Err(unknown("price-window backfills", other, WINDOW_MODELS)),
    }
}

pub fn scenario_encoder(model_id: &str) -> Result<Box<dyn ScenarioEncoder>> {
    match model_id {
        "num-scenario-core-v1" => Ok(Box::new(PadToDimScenario)),
        other => Err(unknown("scenario backfills", other, SCENARIO_MODELS)),
    }
}

fn unknown(what: &'static str, got: &str, known: &[&str]) -> Error {
    Error::UnknownModel {
        what,
        got: got.to_string(),
        known: known.iter().map(|s| s.to_string()).collect(),
    }
}
