//! The v3 pair: *multi-scale market signatures* shared by instrument states
//! (`num-stab-core-v3`) and scenarios (`num-scenario-core-v3`), built so that
//! a market state partway into a stress episode already resembles the
//! episode's scenario.
//!
//! Over a window of H daily log returns (default 20), four horizons
//! h ∈ {H/4, H/2, 3H/4, H} (5, 10, 15, 20). For a stretch of h days the
//! *group* is four sorted blocks of h values each:
//!
//! ```text
//! G(stretch) = [ sort↑ r , sort↑ |r| , sort↑ m , sort↑ s ]          (4h values)
//! ```
//!
//! r: the instrument's own log returns; m: the market's mean log return that
//! day, over its instruments; s: the cross-sectional spread that day,
//! √(mean over instruments of (r − m)²). The vector is
//! `[G_H/4 | G_H/2 | G_3H/4 | G_H]` (10H values, 200 for H = 20), zero-padded
//! to 384; values stay in return units with no rescaling.
//!
//! * State (`num-stab-core-v3`, instrument at as_of): G_h is the group of the
//!   last h days ending at as_of; m and s are the market's over its last H
//!   trading days, from its active instruments ([`MarketContext`]), so every
//!   instrument of a market carries the same market blocks and an
//!   equal-weight portfolio keeps them unchanged. Needs H + 1 closes, as v2.
//! * Scenario (`num-scenario-core-v3`, panel of ≥ H days): with x = ln(1 + r)
//!   of its first H days and m, s over the panel's instruments, the group of
//!   a stretch has its r and |r| blocks averaged over instruments, and
//!
//!   ```text
//!   G_h = (1 − e) · mean over every h-day stretch of the H days (H − h + 1 of them)
//!       +      e  · the last h-day stretch                       (e = END_WEIGHT = 0.1)
//!   ```
//!
//!   The full-length group G_H (one stretch) of a panel that is the whole
//!   market over H days is exactly the G_H of the equal-weight portfolio of
//!   the market's states on the last of them.
//!
//! Why: a state 10 days before an episode's end has only 10 of the episode's
//! days in its last 20, but its 5- and 10-day groups are all episode; the
//! scenario's short groups, averaged over every stretch, describe any part of
//! the episode, and the share e of the last stretch keeps the state at the
//! episode's very end nearest its own scenario (measured with eval-retrieval,
//! README "v3": hit@1 at offset 0 from 0.76 to 0.86 on generated markets and
//! hit@3 there to 1.00 on real prices, for about 0.01 of hit@3 at offsets 5
//! and 10). The market blocks tell episodes apart by how the whole market
//! moved (a crash: m very negative and s wide; a grind: m mildly negative and
//! s narrow), which a single instrument's returns see only through noise.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;

use super::{pad_to_dim, PriceWindow, ScenarioEncoder, ScenarioPanel, SkipReason, WindowEncoder};
use crate::error::{Error, Result};
use crate::vector::DIM;

/// The share of a scenario's last h-day stretch in its group G_h (the rest is
/// the mean over all its stretches).
pub const END_WEIGHT: f64 = 0.1;

/// The largest H whose 10H values fit in [`DIM`] (a multiple of 4).
pub const MAX_HORIZON: usize = 36;

/// The feature space of the v3 pair at horizon `h`.
pub fn space(h: usize) -> String {
    crate::spaces::v3_space(h)
}

/// The horizon a v3 space name was made with.
pub fn horizon_of_space(space: &str) -> Option<usize> {
    crate::spaces::v3_horizon(space)
}

/// Check a horizon given on the command line.
pub fn check_horizon(h: usize) -> Result<usize> {
    if h == 0 || !h.is_multiple_of(4) || h > MAX_HORIZON {
        return Err(Error::Invalid(format!(
            "--horizon-days {h}: the v3 encoders take a multiple of 4 between 4 and {MAX_HORIZON} \
             (horizons H/4, H/2, 3H/4, H; 10·H values in {DIM})"
        )));
    }
    Ok(h)
}

/// The four horizons of H.
pub fn horizons(h: usize) -> [usize; 4] {
    [h / 4, h / 2, 3 * h / 4, h]
}

fn sorted(values: impl IntoIterator<Item = f64>) -> Vec<f64> {
    let mut v: Vec<f64> = values.into_iter().collect();
    v.sort_by(f64::total_cmp);
    v
}

/// The market's mean log return and cross-sectional spread on each of its
/// trading days: over its instruments with a close that day and on the
/// market's previous trading day (an instrument that missed a day adds no
/// two-day return). Days are the union of the windows' dates.
#[derive(Clone, Debug, Default)]
pub struct MarketContext {
    /// (day, mean, spread), ascending; days on which no instrument has a return are left out.
    days: Vec<(NaiveDate, f64, f64)>,
}

impl MarketContext {
    /// From the price windows of the market's instruments; closes that are not
    /// positive and finite give no return.
    pub fn from_windows<'a>(windows: impl IntoIterator<Item = &'a PriceWindow>) -> MarketContext {
        let mut calendar: BTreeSet<NaiveDate> = BTreeSet::new();
        let mut closes: Vec<BTreeMap<NaiveDate, f64>> = Vec::new();
        for w in windows {
            calendar.extend(&w.dates);
            closes.push(
                w.dates
                    .iter()
                    .zip(&w.close)
                    .filter(|(_, c)| c.is_finite() && **c > 0.0)
                    .map(|(d, c)| (*d, *c))
                    .collect(),
            );
        }
        let calendar: Vec<NaiveDate> = calendar.into_iter().collect();
        let days = calendar
            .windows(2)
            .filter_map(|pair| {
                let r: Vec<f64> = closes
                    .iter()
                    .filter_map(|c| Some((c.get(&pair[1])? / c.get(&pair[0])?).ln()))
                    .collect();
                (!r.is_empty()).then(|| {
                    let (m, s) = mean_and_spread(&r);
                    (pair[1], m, s)
                })
            })
            .collect();
        MarketContext { days }
    }

    /// The market's last `h` days with a return on or before `until` (fewer
    /// when it has fewer).
    pub fn last_days(&self, until: NaiveDate, h: usize) -> &[(NaiveDate, f64, f64)] {
        let end = self.days.partition_point(|d| d.0 <= until);
        &self.days[end.saturating_sub(h)..end]
    }
}

/// Mean and population standard deviation.
fn mean_and_spread(x: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    let m = x.iter().sum::<f64>() / n;
    (m, (x.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / n).sqrt())
}

/// The group of one stretch, added into `out` (4h values) with `weight`.
fn add_group(out: &mut [f64], own: &[&[f64]], m: &[f64], s: &[f64], weight: f64) {
    let h = m.len();
    let per = weight / own.len() as f64;
    for r in own {
        for (o, v) in out[..h].iter_mut().zip(sorted(r.iter().copied())) {
            *o += per * v;
        }
        for (o, v) in out[h..2 * h].iter_mut().zip(sorted(r.iter().map(|x| x.abs()))) {
            *o += per * v;
        }
    }
    for (o, v) in out[2 * h..3 * h].iter_mut().zip(sorted(m.iter().copied())) {
        *o += weight * v;
    }
    for (o, v) in out[3 * h..].iter_mut().zip(sorted(s.iter().copied())) {
        *o += weight * v;
    }
}

/// `num-stab-core-v3`: the groups of the last h days at each horizon.
pub struct MultiscaleWindow {
    horizon: usize,
}

impl MultiscaleWindow {
    pub fn new(horizon: usize) -> Result<Self> {
        Ok(MultiscaleWindow {
            horizon: check_horizon(horizon)?,
        })
    }
}

impl WindowEncoder for MultiscaleWindow {
    fn model_id(&self) -> &'static str {
        "num-stab-core-v3"
    }

    fn feature_space(&self) -> String {
        space(self.horizon)
    }

    fn fixed_window_days(&self) -> Option<usize> {
        Some(self.horizon)
    }

    fn uses_market(&self) -> bool {
        true
    }

    /// Without a market: the instrument as a market of one (m = r, s = 0).
    fn encode(&self, w: &PriceWindow) -> Result<Vec<f32>, SkipReason> {
        self.encode_in_market(w, &MarketContext::from_windows([w]))
    }

    fn encode_in_market(&self, w: &PriceWindow, market: &MarketContext) -> Result<Vec<f32>, SkipReason> {
        let h = self.horizon;
        let r = super::signature::last_log_returns(w, h)?;
        // The market's last H days up to the window's last day; where the
        // market has fewer, the instrument's own earliest returns (s = 0).
        let until = *w.dates.last().expect("a window with returns has dates");
        let days = market.last_days(until, h);
        let own = h - days.len();
        let (m, s): (Vec<f64>, Vec<f64>) = r[..own]
            .iter()
            .map(|&x| (x, 0.0))
            .chain(days.iter().map(|&(_, m, s)| (m, s)))
            .unzip();
        let mut out = Vec::with_capacity(10 * h);
        for k in horizons(h) {
            let mut g = vec![0.0; 4 * k];
            add_group(&mut g, &[&r[h - k..]], &m[h - k..], &s[h - k..], 1.0);
            out.extend(g);
        }
        Ok(pad_to_dim(out))
    }
}

/// `num-scenario-core-v3`: at each horizon, the mean group over every stretch,
/// with [`END_WEIGHT`] more on the last.
pub struct MultiscaleScenario {
    horizon: usize,
}

impl MultiscaleScenario {
    pub fn new(horizon: usize) -> Result<Self> {
        Ok(MultiscaleScenario {
            horizon: check_horizon(horizon)?,
        })
    }
}

impl ScenarioEncoder for MultiscaleScenario {
    fn model_id(&self) -> &'static str {
        "num-scenario-core-v3"
    }

    fn feature_space(&self) -> String {
        space(self.horizon)
    }

    fn window_days(&self, _panel: &ScenarioPanel) -> usize {
        self.horizon
    }

    fn encode(&self, p: &ScenarioPanel) -> Result<Vec<f32>> {
        let h = self.horizon;
        let x = super::signature::panel_log_returns(p, h, self.model_id())?;
        // Per day: the panel's mean and spread.
        let (m, s): (Vec<f64>, Vec<f64>) = (0..h)
            .map(|d| mean_and_spread(&x.iter().map(|path| path[d]).collect::<Vec<_>>()))
            .unzip();
        let mut out = Vec::with_capacity(10 * h);
        for k in horizons(h) {
            let stretches = h - k + 1;
            let mut g = vec![0.0; 4 * k];
            for a in 0..stretches {
                let own: Vec<&[f64]> = x.iter().map(|path| &path[a..a + k]).collect();
                let last = if a + 1 == stretches { END_WEIGHT } else { 0.0 };
                let weight = (1.0 - END_WEIGHT) / stretches as f64 + last;
                add_group(&mut g, &own, &m[a..a + k], &s[a..a + k], weight);
            }
            out.extend(g);
        }
        Ok(pad_to_dim(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2025, 3, day).unwrap()
    }

    fn window(id: &str, close: &[f64]) -> PriceWindow {
        PriceWindow {
            instrument_id: id.into(),
            dates: (0..close.len()).map(|i| d(3 + i as u32)).collect(),
            close: close.to_vec(),
            volume: vec![0.0; close.len()],
        }
    }

    #[test]
    fn horizons_must_be_multiples_of_four_that_fit() {
        assert!(check_horizon(4).is_ok() && check_horizon(36).is_ok());
        for bad in [0, 6, 40] {
            assert!(check_horizon(bad).is_err(), "{bad}");
        }
        assert_eq!(horizons(20), [5, 10, 15, 20]);
        assert_eq!(horizon_of_space(&space(20)), Some(20));
        assert_eq!(horizon_of_space("stab-v2-signature-h20"), None);
    }

    #[test]
    fn state_with_h4_is_its_groups_by_hand() {
        // Two instruments, H = 4 (horizons 1, 2, 3, 4). Closes of A double,
        // halve, stay, double; B is flat then falls 50% on the last day.
        let a = window("A", &[1.0, 2.0, 1.0, 1.0, 2.0]);
        let b = window("B", &[4.0, 4.0, 4.0, 4.0, 2.0]);
        let market = MarketContext::from_windows([&a, &b]);
        let v = MultiscaleWindow::new(4)
            .unwrap()
            .encode_in_market(&a, &market)
            .unwrap();
        let l = 2f64.ln();
        let r = [l, -l, 0.0, l];
        let m = [l / 2.0, -l / 2.0, 0.0, 0.0];
        let s = [l / 2.0, l / 2.0, 0.0, l];
        let mut want = Vec::new();
        for k in [1, 2, 3, 4] {
            let tail = |x: &[f64]| x[4 - k..].to_vec();
            want.extend(sorted(tail(&r)));
            want.extend(sorted(tail(&r).iter().map(|x| x.abs())));
            want.extend(sorted(tail(&m)));
            want.extend(sorted(tail(&s)));
        }
        assert_eq!(want.len(), 40);
        for (i, (got, w)) in v.iter().zip(&want).enumerate() {
            assert!((f64::from(*got) - w).abs() < 1e-7, "slot {i}: {got} vs {w}");
        }
        assert!(v[40..].iter().all(|&x| x == 0.0));
        // Alone, an instrument is its own market: m = r, s = 0.
        let alone = MultiscaleWindow::new(4).unwrap().encode(&a).unwrap();
        assert!(
            (f64::from(alone[2]) - l).abs() < 1e-7 && alone[3] == 0.0,
            "{:?}",
            &alone[..4]
        );
    }

    #[test]
    fn market_blocks_follow_the_market_calendar_whatever_an_instrument_missed() {
        // C has no close on the fifth day (index 4): the market's returns of
        // that day and of the next are A's and B's only.
        let a = window("A", &[1.0, 1.1, 1.0, 1.2, 1.1, 1.0]);
        let b = window("B", &[2.0, 2.0, 2.2, 2.0, 2.1, 2.0]);
        let mut c = window("C", &[3.0, 3.3, 3.0, 3.6, 3.3, 3.0]);
        c.dates.remove(4);
        c.close.remove(4);
        let market = MarketContext::from_windows([&a, &b, &c]);
        let enc = MultiscaleWindow::new(4).unwrap();
        let (va, vc) = (
            enc.encode_in_market(&a, &market).unwrap(),
            enc.encode_in_market(&c, &market).unwrap(),
        );
        // The m and s blocks of G_4 (slots 32..40) are the same for A and C.
        assert_eq!(&va[32..40], &vc[32..40]);
        // Day 5's mean is over A and B only: ln(1/1.1) and ln(2/2.1).
        let day5 = market.last_days(d(8), 1)[0];
        assert!(
            (day5.1 - ((1.0f64 / 1.1).ln() + (2.0f64 / 2.1).ln()) / 2.0).abs() < 1e-12,
            "{day5:?}"
        );
    }

    #[test]
    fn scenario_groups_weigh_every_stretch_and_the_last_and_the_full_group_equals_the_state() {
        // One instrument, H = 4: the h = 1 group is 0.9 × the mean of the four
        // days + 0.1 × the last day.
        let r = [0.10, -0.20, 0.05, -0.05];
        let p = ScenarioPanel {
            scenario_id: "S".into(),
            days: 5,
            instruments: 1,
            values: r.iter().copied().chain([0.3]).collect(),
        };
        let v = MultiscaleScenario::new(4).unwrap().encode(&p).unwrap();
        let x: Vec<f64> = r.iter().map(|v: &f64| v.ln_1p()).collect();
        let e = END_WEIGHT;
        let mean = (1.0 - e) * x.iter().sum::<f64>() / 4.0 + e * x[3];
        let mean_abs = (1.0 - e) * x.iter().map(|v| v.abs()).sum::<f64>() / 4.0 + e * x[3].abs();
        for (i, want) in [mean, mean_abs, mean, 0.0].iter().enumerate() {
            assert!((f64::from(v[i]) - want).abs() < 1e-7, "slot {i}");
        }
        // The h = 4 group (slots 24..40) is the state of the same closes.
        let mut close = vec![100.0];
        for v in &x {
            close.push(close.last().unwrap() * v.exp());
        }
        let state = MultiscaleWindow::new(4)
            .unwrap()
            .encode(&window("A", &close))
            .unwrap();
        for i in 24..40 {
            assert!(
                (v[i] - state[i]).abs() < 1e-6,
                "slot {i}: {} vs {}",
                v[i],
                state[i]
            );
        }
    }
}
