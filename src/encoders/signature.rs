//! The v2 pair: a *fragility signature* shared by instrument states
//! (`num-stab-core-v2`) and scenarios (`num-scenario-core-v2`), so that the two
//! live in one space and distances between them mean something.
//!
//! The signature of a daily log-return path r₁…r_H is
//!
//! ```text
//! [ sort_ascending(r₁…r_H) , sort_ascending(|r₁|…|r_H|) ]   (2H values, then PadToDim(384))
//! ```
//!
//! Order statistics, not a time-aligned path: a state a few days into a stress
//! episode already has the episode's worst days in its lower tail, wherever in
//! the window they fell. Values stay in return units with no per-vector
//! rescaling, so a calm window is short and a violent one long.
//!
//! * State (`num-stab-core-v2`): the signature of the instrument's last H log
//!   returns ending at as_of (H + 1 closes).
//! * Scenario (`num-scenario-core-v2`): the mean over the scenario's instruments
//!   of each instrument's signature of its path, the stored simple returns
//!   converted with ln(1 + r). A scenario with more than H days is encoded from
//!   its first H days; one with fewer is an error (order statistics of paths of
//!   different lengths do not line up).
//!
//! A portfolio vector Σ wᵢzᵢ / Σ|wᵢ| of states is then directly comparable with
//! the scenario vectors.

use super::{pad_to_dim, PriceWindow, ScenarioEncoder, ScenarioPanel, SkipReason, WindowEncoder};
use crate::error::{Error, Result};
use crate::vector::DIM;

/// Default H, in trading days.
pub const DEFAULT_HORIZON: usize = 20;
/// The largest H whose signature (2H values) fits in [`DIM`].
pub const MAX_HORIZON: usize = DIM / 2;

/// The feature space of the v2 pair at horizon `h`: states and scenarios of
/// different horizons are not comparable, so the horizon is part of the name.
pub fn space(h: usize) -> String {
    crate::spaces::v2_space(h)
}

/// The horizon a v2 space name was made with.
pub fn horizon_of_space(space: &str) -> Option<usize> {
    crate::spaces::v2_horizon(space)
}

/// Check a horizon given on the command line.
pub fn check_horizon(h: usize) -> Result<usize> {
    if h == 0 || h > MAX_HORIZON {
        return Err(Error::Invalid(format!(
            "--horizon-days {h}: must be between 1 and {MAX_HORIZON} (the signature has 2·H values in {DIM})"
        )));
    }
    Ok(h)
}

/// The 2H-value signature of a log-return path: returns sorted ascending, then
/// absolute returns sorted ascending.
pub fn fragility_signature(log_returns: &[f64]) -> Vec<f64> {
    let mut sorted = log_returns.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mut abs: Vec<f64> = log_returns.iter().map(|r| r.abs()).collect();
    abs.sort_by(f64::total_cmp);
    sorted.extend(abs);
    sorted
}

/// `num-stab-core-v2`: the signature of the last H log returns.
pub struct SignatureWindow {
    horizon: usize,
}

impl SignatureWindow {
    pub fn new(horizon: usize) -> Result<Self> {
        Ok(SignatureWindow {
            horizon: check_horizon(horizon)?,
        })
    }
}

impl WindowEncoder for SignatureWindow {
    fn model_id(&self) -> &'static str {
        "num-stab-core-v2"
    }

    fn feature_space(&self) -> String {
        space(self.horizon)
    }

    fn fixed_window_days(&self) -> Option<usize> {
        Some(self.horizon)
    }

    fn encode(&self, w: &PriceWindow) -> Result<Vec<f32>, SkipReason> {
        Ok(pad_to_dim(fragility_signature(&last_log_returns(
            w,
            self.horizon,
        )?)))
    }
}

/// The last `h` daily log returns of a window (its last h + 1 closes, which
/// must be positive and finite).
pub fn last_log_returns(w: &PriceWindow, h: usize) -> Result<Vec<f64>, SkipReason> {
    let need = h + 1;
    if w.close.len() < need {
        return Err(SkipReason::InsufficientHistory {
            have: w.close.len(),
            need,
        });
    }
    let start = w.close.len() - need;
    for i in start..w.close.len() {
        let date = w.dates[i];
        if !w.close[i].is_finite() {
            return Err(SkipReason::NonFinite { date, field: "close" });
        }
        if w.close[i] <= 0.0 {
            return Err(SkipReason::NonPositiveClose { date });
        }
    }
    Ok((start + 1..w.close.len())
        .map(|t| (w.close[t] / w.close[t - 1]).ln())
        .collect())
}

/// Each instrument's log-return path, ln(1 + r), over the panel's first `h`
/// days; a shorter panel, one without instruments or a return with no log
/// return is an error naming the scenario (and `model_id`'s flag to fix it).
pub fn panel_log_returns(p: &ScenarioPanel, h: usize, model_id: &str) -> Result<Vec<Vec<f64>>> {
    if p.days < h {
        return Err(Error::Invalid(format!(
            "scenario {:?} has {} day(s); {model_id} with --horizon-days {h} needs at least {h} \
             (pass --horizon-days {} to encode it, and use the same value for the states)",
            p.scenario_id, p.days, p.days
        )));
    }
    if p.instruments == 0 {
        return Err(Error::Invalid(format!(
            "scenario {:?} has no instruments",
            p.scenario_id
        )));
    }
    (0..p.instruments)
        .map(|j| {
            (0..h)
                .map(|d| {
                    let r = p.values[d * p.instruments + j];
                    if !r.is_finite() || r <= -1.0 {
                        return Err(Error::Invalid(format!(
                            "scenario {:?}, day {d}, instrument #{} (by id): return {r} has no log return \
                             (must be finite and above -1)",
                            p.scenario_id,
                            j + 1
                        )));
                    }
                    Ok(r.ln_1p())
                })
                .collect()
        })
        .collect()
}

/// `num-scenario-core-v2`: the mean over instruments of their path signatures.
pub struct SignatureScenario {
    horizon: usize,
}

impl SignatureScenario {
    pub fn new(horizon: usize) -> Result<Self> {
        Ok(SignatureScenario {
            horizon: check_horizon(horizon)?,
        })
    }
}

impl ScenarioEncoder for SignatureScenario {
    fn model_id(&self) -> &'static str {
        "num-scenario-core-v2"
    }

    fn feature_space(&self) -> String {
        space(self.horizon)
    }

    fn window_days(&self, _panel: &ScenarioPanel) -> usize {
        self.horizon
    }

    fn encode(&self, p: &ScenarioPanel) -> Result<Vec<f32>> {
        let paths = panel_log_returns(p, self.horizon, self.model_id())?;
        let mut mean = vec![0.0f64; 2 * self.horizon];
        for path in &paths {
            for (m, s) in mean.iter_mut().zip(fragility_signature(path)) {
                *m += s;
            }
        }
        let n = paths.len() as f64;
        Ok(pad_to_dim(mean.into_iter().map(|s| s / n)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn d(day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2025, 3, day).unwrap()
    }

    #[test]
    fn signature_of_a_hand_made_path_is_sorted_returns_then_sorted_absolute_returns() {
        let s = fragility_signature(&[0.01, -0.05, 0.02, -0.01]);
        assert_eq!(s, vec![-0.05, -0.01, 0.01, 0.02, 0.01, 0.01, 0.02, 0.05]);
    }

    #[test]
    fn state_is_the_signature_of_the_last_h_log_returns_padded_to_384() {
        // Closes 64 → 128 → 96 → 192 (ratios 2, 0.75, 2); the first close, 10, is outside H = 3.
        let w = PriceWindow {
            instrument_id: "AAA.US".into(),
            dates: vec![d(3), d(4), d(5), d(6), d(7)],
            close: vec![10.0, 64.0, 128.0, 96.0, 192.0],
            volume: vec![1.0; 5],
        };
        let v = SignatureWindow::new(3).unwrap().encode(&w).unwrap();
        assert_eq!(v.len(), DIM);
        let (up, down) = (2f64.ln(), 0.75f64.ln());
        // Sorted: ln 0.75 < ln 2 = ln 2. Absolute values sorted: |ln 0.75| = 0.288 < ln 2 = ln 2.
        let expected: Vec<f32> = [down, up, up, -down, up, up].iter().map(|&x| x as f32).collect();
        assert_eq!(&v[..6], &expected[..]);
        assert!(v[6..].iter().all(|&x| x == 0.0));
    }

    #[test]
    fn state_needs_h_plus_one_positive_closes() {
        let w = PriceWindow {
            instrument_id: "X".into(),
            dates: vec![d(3), d(4), d(5)],
            close: vec![10.0, 0.0, 11.0],
            volume: vec![1.0; 3],
        };
        let enc = SignatureWindow::new(2).unwrap();
        assert_eq!(enc.encode(&w), Err(SkipReason::NonPositiveClose { date: d(4) }));
        let enc = SignatureWindow::new(5).unwrap();
        assert_eq!(
            enc.encode(&w),
            Err(SkipReason::InsufficientHistory { have: 3, need: 6 })
        );
    }

    #[test]
    fn scenario_is_the_mean_over_instruments_of_their_signatures_of_log_returns() {
        // Two instruments, two days, row-major (day × instrument), simple returns.
        let p = ScenarioPanel {
            scenario_id: "S".into(),
            days: 2,
            instruments: 2,
            values: vec![0.10, -0.20, -0.05, 0.02],
        };
        let v = SignatureScenario::new(2).unwrap().encode(&p).unwrap();
        let a = fragility_signature(&[(1.10f64).ln(), (0.95f64).ln()]);
        let b = fragility_signature(&[(0.80f64).ln(), (1.02f64).ln()]);
        let expected: Vec<f32> = a.iter().zip(&b).map(|(x, y)| ((x + y) / 2.0) as f32).collect();
        assert_eq!(&v[..4], &expected[..]);
        assert!(v[4..].iter().all(|&x| x == 0.0));
    }

    #[test]
    fn a_scenario_shorter_than_h_or_with_a_total_loss_is_an_error_naming_it() {
        let p = ScenarioPanel {
            scenario_id: "SHORT".into(),
            days: 1,
            instruments: 1,
            values: vec![0.01],
        };
        let e = SignatureScenario::new(2)
            .unwrap()
            .encode(&p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("SHORT") && e.contains("--horizon-days 1"), "{e}");
        let p = ScenarioPanel {
            scenario_id: "WIPEOUT".into(),
            days: 1,
            instruments: 1,
            values: vec![-1.0],
        };
        let e = SignatureScenario::new(1)
            .unwrap()
            .encode(&p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("WIPEOUT") && e.contains("day 0"), "{e}");
    }

    #[test]
    fn horizons_out_of_range_are_refused_and_spaces_carry_the_horizon() {
        assert!(check_horizon(0).is_err());
        assert!(check_horizon(MAX_HORIZON + 1).is_err());
        assert_eq!(horizon_of_space(&space(20)), Some(20));
        assert_eq!(horizon_of_space("stab-v1"), None);
    }
}
