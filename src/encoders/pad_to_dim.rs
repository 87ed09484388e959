//! `PadToDimNumericEmbeddingModel`: flatten the features, then zero-pad to 384
//! (or keep the first 384 values when there are more).
//!
//! * Price windows (`num-stab-core-v1`, `num-regime-core-v1`): per trading day,
//!   oldest first, `(close, volume, ln(close_t / close_{t-1}))`.
//! * Scenario panels (`num-scenario-core-v1`): the (day × instrument) return
//!   panel flattened row-major, day by day.

use super::{PriceWindow, ScenarioEncoder, ScenarioPanel, SkipReason, WindowEncoder};
use crate::error::Result;
use crate::vector::DIM;

/// The first [`DIM`] values as f32, zero-padded.
pub fn pad_to_dim(values: impl IntoIterator<Item = f64>) -> Vec<f32> {
    let mut out: Vec<f32> = values.into_iter().take(DIM).map(|x| x as f32).collect();
    out.resize(DIM, 0.0);
    out
}

pub struct PadToDimWindow {
    model_id: &'static str,
}

impl PadToDimWindow {
    pub fn new(model_id: &'static str) -> Self {
        PadToDimWindow { model_id }
    }
}

impl WindowEncoder for PadToDimWindow {
    fn model_id(&self) -> &'static str {
        self.model_id
    }

    fn encode(&self, w: &PriceWindow) -> Result<Vec<f32>, SkipReason> {
        if w.dates.len() < 2 {
            return Err(SkipReason::InsufficientHistory {
                have: w.dates.len(),
                need: 2,
            });
        }
        for i in 0..w.dates.len() {
            let date = w.dates[i];
            if !w.close[i].is_finite() {
                return Err(SkipReason::NonFinite { date, field: "close" });
            }
            if !w.volume[i].is_finite() {
                return Err(SkipReason::NonFinite {
                    date,
                    field: "volume",
                });
            }
            if w.close[i] <= 0.0 {
                return Err(SkipReason::NonPositiveClose { date });
            }
        }
        let features = (1..w.dates.len()).flat_map(|t| {
            let r = (w.close[t] / w.close[t - 1]).ln();
            [w.close[t], w.volume[t], r]
        });
        Ok(pad_to_dim(features))
    }
}

pub struct PadToDimScenario;

impl ScenarioEncoder for PadToDimScenario {
    fn model_id(&self) -> &'static str {
        "num-scenario-core-v1"
    }

    fn encode(&self, panel: &ScenarioPanel) -> Result<Vec<f32>> {
        Ok(pad_to_dim(panel.values.iter().copied()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn d(day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2025, 1, day).unwrap()
    }

    #[test]
    fn window_is_close_volume_logreturn_day_by_day_then_zero_padded() {
        let w = PriceWindow {
            instrument_id: "AAA.US".into(),
            dates: vec![d(2), d(3), d(6)],
            close: vec![100.0, 110.0, 99.0],
            volume: vec![5.0, 1000.0, 2000.0],
        };
        let v = PadToDimWindow::new("num-stab-core-v1").encode(&w).unwrap();
        assert_eq!(v.len(), 384);
        // Hand-computed: ln(110/100) = 0.09531017980432493 and ln(99/110) = -0.10536051565782628,
        // whose nearest float32 values have the little-endian bytes fc31c33d and 41c7d7bd.
        let expected: [f32; 6] = [
            110.0,
            1000.0,
            f32::from_le_bytes([0xfc, 0x31, 0xc3, 0x3d]),
            99.0,
            2000.0,
            f32::from_le_bytes([0x41, 0xc7, 0xd7, 0xbd]),
        ];
        assert_eq!(&v[..6], &expected);
        assert!(v[6..].iter().all(|&x| x == 0.0));
    }

    #[test]
    fn long_inputs_keep_the_first_384_values() {
        let v = pad_to_dim((0..1000).map(f64::from));
        assert_eq!(v.len(), 384);
        assert_eq!(v[383], 383.0);
    }

    #[test]
    fn bad_prices_are_skipped_with_a_reason() {
        let mut w = PriceWindow {
            instrument_id: "X".into(),
            dates: vec![d(2), d(3)],
            close: vec![100.0, 0.0],
            volume: vec![1.0, 1.0],
        };
        let enc = PadToDimWindow::new("num-stab-core-v1");
        assert_eq!(enc.encode(&w), Err(SkipReason::NonPositiveClose { date: d(3) }));
        w.close[1] = f64::NAN;
        assert_eq!(
            enc.encode(&w),
            Err(SkipReason::NonFinite {
                date: d(3),
                field: "close"
            })
        );
    }

    #[test]
    fn scenario_panel_is_flattened_row_major() {
        let p = ScenarioPanel {
            scenario_id: "S".into(),
            days: 2,
            instruments: 2,
            values: vec![0.01, -0.02, 0.03, -0.04],
        };
        let v = PadToDimScenario.encode(&p).unwrap();
        assert_eq!(&v[..4], &[0.01f32, -0.02, 0.03, -0.04]);
        assert_eq!(v[4], 0.0);
    }
}
