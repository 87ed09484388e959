//! Numeric encoders: price windows and scenario panels to 384-dim vectors.
//!
//! An encoder is one small type implementing [`WindowEncoder`] (instrument price
//! windows) or [`ScenarioEncoder`] (scenario return panels); the registries below
//! map model ids to them, so a new model is one new file plus one line here.

pub mod multiscale;
mod pad_to_dim;
pub mod signature;

use std::fmt;

use chrono::NaiveDate;

pub use multiscale::{MarketContext, MultiscaleScenario, MultiscaleWindow};
pub use pad_to_dim::{pad_to_dim, PadToDimScenario, PadToDimWindow};
pub use signature::{fragility_signature, SignatureScenario, SignatureWindow, DEFAULT_HORIZON};

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

/// `--window-days` of the v1 window encoders when not given (the design documents' 63).
pub const DEFAULT_WINDOW_DAYS: usize = 63;

pub use crate::spaces::{describe_space, V1_SPACE};

/// The feature space of a stored numeric vector: the recorded one, else (rows
/// written before spaces were recorded) `stab-v1` for the v1 model ids.
pub fn recorded_space(model_id: &str, recorded: Option<String>) -> Option<String> {
    recorded.or_else(|| {
        matches!(
            model_id,
            "num-stab-core-v1" | "num-regime-core-v1" | "num-scenario-core-v1" | "joint-profile-core-v1"
        )
        .then(|| V1_SPACE.to_string())
    })
}

/// The state and scenario encoders whose vectors live in `space`, if we have
/// them (its horizon: [`horizon_of_space`]).
pub fn encoders_for_space(space: &str) -> Option<(&'static str, &'static str)> {
    if space == V1_SPACE {
        Some(("num-stab-core-v1", "num-scenario-core-v1"))
    } else if signature::horizon_of_space(space).is_some() {
        Some(("num-stab-core-v2", "num-scenario-core-v2"))
    } else if multiscale::horizon_of_space(space).is_some() {
        Some(("num-stab-core-v3", "num-scenario-core-v3"))
    } else {
        None
    }
}

/// The instrument-state encoder whose vectors live in `space`, if we have one.
pub fn state_encoder_for_space(space: &str) -> Option<&'static str> {
    encoders_for_space(space).map(|(state, _)| state)
}

/// H of a v2 or v3 space (`None` for v1 and unknown spaces).
pub fn horizon_of_space(space: &str) -> Option<usize> {
    signature::horizon_of_space(space).or_else(|| multiscale::horizon_of_space(space))
}

/// Encodes an instrument's price window at an as-of date.
pub trait WindowEncoder: Send + Sync {
    fn model_id(&self) -> &'static str;
    /// The space its vectors live in: only vectors of one space are compared.
    fn feature_space(&self) -> String {
        V1_SPACE.to_string()
    }
    /// A window length the encoder fixes itself (its horizon), if any.
    fn fixed_window_days(&self) -> Option<usize> {
        None
    }
    /// Prices needed for a window of `window_days` trading days.
    fn prices_needed(&self, window_days: usize) -> usize {
        window_days + 1
    }
    /// Whether the state depends on the market's other instruments on the
    /// same days (then backfills call [`WindowEncoder::encode_in_market`]).
    fn uses_market(&self) -> bool {
        false
    }
    fn encode(&self, window: &PriceWindow) -> Result<Vec<f32>, SkipReason>;
    /// The state of `window` within its market's cross-section.
    fn encode_in_market(
        &self,
        window: &PriceWindow,
        _market: &MarketContext,
    ) -> Result<Vec<f32>, SkipReason> {
        self.encode(window)
    }
}

/// Encodes a scenario's return panel.
pub trait ScenarioEncoder: Send + Sync {
    fn model_id(&self) -> &'static str;
    /// The space its vectors live in.
    fn feature_space(&self) -> String {
        V1_SPACE.to_string()
    }
    /// The `window_days` recorded with the vector of `panel`.
    fn window_days(&self, panel: &ScenarioPanel) -> usize {
        panel.days
    }
    fn encode(&self, panel: &ScenarioPanel) -> Result<Vec<f32>>;
}

/// Model ids of the window encoders, in the order `--help` lists them.
pub const WINDOW_MODELS: &[&str] = &[
    "num-stab-core-v1",
    "num-regime-core-v1",
    "num-stab-core-v2",
    "num-stab-core-v3",
];
/// Model ids of the scenario encoders.
pub const SCENARIO_MODELS: &[&str] = &[
    "num-scenario-core-v1",
    "num-scenario-core-v2",
    "num-scenario-core-v3",
];

/// Whether a model id is one of the v2 or v3 encoders, which take `--horizon-days`.
pub fn is_signature_model(model_id: &str) -> bool {
    is_v3_model(model_id) || matches!(model_id, "num-stab-core-v2" | "num-scenario-core-v2")
}

fn is_v3_model(model_id: &str) -> bool {
    matches!(model_id, "num-stab-core-v3" | "num-scenario-core-v3")
}

/// H for `model_id` from an optional `--horizon-days`: the v2 encoders take
/// it (default [`DEFAULT_HORIZON`]); the v1 encoders have no horizon.
pub fn resolve_horizon(model_id: &str, horizon: Option<usize>) -> Result<usize> {
    match horizon {
        Some(h) if !is_signature_model(model_id) => Err(Error::Invalid(format!(
            "--horizon-days {h} applies to the v2 and v3 encoders (num-stab-core-v2/v3, \
             num-scenario-core-v2/v3), not to {model_id}"
        ))),
        Some(h) if is_v3_model(model_id) => multiscale::check_horizon(h),
        Some(h) => signature::check_horizon(h),
        None => Ok(DEFAULT_HORIZON),
    }
}

/// The window encoder of `model_id`; `horizon` is H for the v2 and v3 encoders.
pub fn window_encoder(model_id: &str, horizon: usize) -> Result<Box<dyn WindowEncoder>> {
    match model_id {
        "num-stab-core-v1" => Ok(Box::new(PadToDimWindow::new("num-stab-core-v1"))),
        "num-regime-core-v1" => Ok(Box::new(PadToDimWindow::new("num-regime-core-v1"))),
        "num-stab-core-v2" => Ok(Box::new(SignatureWindow::new(horizon)?)),
        "num-stab-core-v3" => Ok(Box::new(MultiscaleWindow::new(horizon)?)),
        other => Err(unknown("price-window backfills", other, WINDOW_MODELS)),
    }
}

/// The scenario encoder of `model_id`; `horizon` is H for the v2 and v3 encoders.
pub fn scenario_encoder(model_id: &str, horizon: usize) -> Result<Box<dyn ScenarioEncoder>> {
    match model_id {
        "num-scenario-core-v1" => Ok(Box::new(PadToDimScenario)),
        "num-scenario-core-v2" => Ok(Box::new(SignatureScenario::new(horizon)?)),
        "num-scenario-core-v3" => Ok(Box::new(MultiscaleScenario::new(horizon)?)),
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
