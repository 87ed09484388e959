//! `eval-retrieval`: does the market's state at the end of a historical stress
//! window find that window among the scenarios?
//!
//! For each scenario of the set whose `shock_type` is `historical_window` (it
//! starts on `scenario_date` and spans H trading days of the market, H being its
//! number of path days), take the equal-weight portfolio of the market's STAB
//! states on the window's last trading day, and on `offset` trading days before
//! it; rank every scenario of the set by cosine to that portfolio (exactly), and
//! note where the true window lands. Per offset: hit@1, hit@3 and the mean
//! reciprocal rank. The states it needs are backfilled first (numeric, then
//! joint, without a profile branch), idempotently, like the backfill commands.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;
use serde::Serialize;

use crate::backfill::{backfill_numeric_embeddings, NumericBackfill};
use crate::encoders::{horizon_of_space, state_encoder_for_space, window_encoder, DEFAULT_HORIZON};
use crate::error::{Error, Result};
use crate::joint::{backfill_joint_states, list_or, StateBackfill, Weights};
use crate::nearest::{ScenarioSpace, SearchOpts};
use crate::portfolio::portfolio_vector;
use crate::progress::Progress;
use crate::storage::joint::{earliest_profile_date, joint_states};
use crate::storage::market::{market_instruments, markets};
use crate::storage::prices;
use crate::storage::scenarios::{scenarios_with_days, sets_with_shock_type, shock_types};
use crate::storage::Db;
use crate::vector;

/// The shock type of scenarios that are windows of the market's own history.
pub const HISTORICAL_WINDOW: &str = "historical_window";

#[derive(Clone, Debug)]
pub struct EvalSpec {
    pub scenario_set_id: String,
    pub joint_model_id: String,
    pub market_id: String,
    /// `None`: the state encoder of the scenario vectors' feature space.
    pub stab_model_id: Option<String>,
    /// `--window-days` of a v1 state encoder (v2 uses the space's horizon).
    pub window_days: usize,
    pub offsets: Vec<usize>,
    /// Where partitions live; ranks are always exact.
    pub search: SearchOpts,
}

/// Where one window's true scenario ranked at one offset.
#[derive(Clone, Debug, Serialize)]
pub struct WindowRank {
    pub scenario_id: String,
    pub offset: usize,
    pub as_of: NaiveDate,
    /// 1-based; `None` when the scenario could not be ranked (all-zero vector).
    pub rank: Option<usize>,
    pub cosine: Option<f64>,
    /// The scenario ranked first, and its cosine.
    pub top_scenario_id: String,
    pub top_cosine: f64,
    pub instruments_used: usize,
}

/// The figures of one offset.
#[derive(Clone, Debug, Serialize)]
pub struct OffsetScore {
    pub offset: usize,
    /// Windows evaluated (those with a date and states at this offset).
    pub windows: usize,
    pub hit_at_1: f64,
    pub hit_at_3: f64,
    pub mrr: f64,
    /// hit@3 of a random ranking: 3 / scenarios in the set.
    pub chance_at_3: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct EvalReport {
    pub scenario_set_id: String,
    pub joint_model_id: String,
    pub stab_model_id: String,
    pub feature_space: Option<String>,
    pub market_id: String,
    /// Scenarios in the set (each query ranks them all, or with a filter
    /// those it admits and the window evaluated).
    pub scenarios: usize,
    /// The filter of the scenarios ranked (`None`: every scenario).
    pub filter: Option<String>,
    /// Historical windows in the set.
    pub windows: usize,
    pub scores: Vec<OffsetScore>,
    pub ranks: Vec<WindowRank>,
    /// Windows or offsets left out, with the reason.
    pub skipped: Vec<String>,
}

/// A historical window: its scenario, first day and length in trading days.
struct Window {
    scenario_id: String,
    start: NaiveDate,
    days: usize,
}

pub async fn eval_retrieval(db: &Db, spec: &EvalSpec, progress: &dyn Progress) -> Result<EvalReport> {
    let set = spec.scenario_set_id.as_str();
    let windows = historical_windows(db, set).await?;
    let calendar = market_calendar(db, &spec.market_id).await?;
    let search = SearchOpts {
        exact: true,
        ..spec.search.clone()
    };
    let space = ScenarioSpace::open(db, &search, &spec.joint_model_id, set).await?;

    // The scenarios' horizon (v2), and the state encoder: given, or the one
    // of the scenarios' feature space.
    let scenario_horizon = space.feature_space.as_deref().and_then(horizon_of_space);
    // The states are backfilled as the joint model is registered: its state
    // encoder, profile branch and weights (a plain model when not yet known).
    let registered = crate::joint::registry::find(db, &spec.joint_model_id).await?;
    let profile_model = registered
        .as_ref()
        .and_then(|r| r.profile_model_id.clone())
        .filter(|p| p != crate::joint::registry::NO_PROFILE);
    let weights = registered.as_ref().map_or_else(Weights::default, |r| Weights {
        stab: r.w_stab.unwrap_or(1.0),
        profile: r.w_prof.unwrap_or(1.0),
        ..Weights::default()
    });
    let stab_model = match (&spec.stab_model_id, space.feature_space.as_deref()) {
        (Some(m), _) => m.clone(),
        (None, _) if registered.as_ref().is_some_and(|r| r.stab_model_id.is_some()) => registered
            .as_ref()
            .and_then(|r| r.stab_model_id.clone())
            .unwrap_or_default(),
        (None, Some(s)) => match state_encoder_for_space(s) {
            Some(m) => m.to_string(),
            None => {
                return Err(Error::Invalid(format!(
                    "no state encoder writes into {s}, the feature space of set {set} under {}; give \
                     --stab-model-id",
                    spec.joint_model_id
                )))
            }
        },
        (None, None) => {
            return Err(Error::Invalid(format!(
                "the scenario vectors of set {set} under {} have no recorded feature space; give \
                 --stab-model-id",
                spec.joint_model_id
            )))
        }
    };
    let horizon = scenario_horizon.unwrap_or(DEFAULT_HORIZON);
    let encoder = window_encoder(&stab_model, horizon)?;
    let mut same = space.same_space();
    same.check(|| format!("{stab_model} states"), Some(&encoder.feature_space()))?;

    let encoded_days = scenario_horizon.unwrap_or(usize::MAX);
    // The dates to evaluate: each window's last (encoded) day, minus each offset.
    let mut skipped = Vec::new();
    let mut queries: Vec<(usize, usize, NaiveDate)> = Vec::new(); // (window, offset, date)
    for (w, win) in windows.iter().enumerate() {
        let Ok(start) = calendar.binary_search(&win.start) else {
            skipped.push(format!(
                "{}: scenario_date {} is not a trading day of market {}",
                win.scenario_id, win.start, spec.market_id
            ));
            continue;
        };
        // A v2 or v3 scenario is encoded from its first H days: the state to compare
        // with it ends on the H-th day of the window.
        let last = start + win.days.min(encoded_days) - 1;
        if last >= calendar.len() {
            skipped.push(format!(
                "{}: its {} days run past the market's last trading day {}",
                win.scenario_id,
                win.days,
                calendar[calendar.len() - 1]
            ));
            continue;
        }
        for &o in &spec.offsets {
            match last.checked_sub(o) {
                Some(t) => queries.push((w, o, calendar[t])),
                None => skipped.push(format!(
                    "{} at offset {o}: before the market's first trading day",
                    win.scenario_id
                )),
            }
        }
    }
    let dates: BTreeSet<NaiveDate> = queries.iter().map(|q| q.2).collect();

    // Backfill the states of those dates (numeric, then joint).
    progress.start("dates", Some(dates.len() as u64));
    progress.message(&format!("{stab_model} and {} states", spec.joint_model_id));
    // A profile-augmented model has no states before its first profile.
    let first_profile = match &profile_model {
        Some(pm) => earliest_profile_date(db, pm).await?,
        None => None,
    };
    for &d in &dates {
        progress.advance(1);
        if let Some(pm) = &profile_model {
            if first_profile.is_none_or(|first| d < first) {
                skipped.push(format!("states on {d}: no {pm} profile on or before it"));
                continue;
            }
        }
        let numeric = backfill_numeric_embeddings(
            db,
            &NumericBackfill {
                as_of: d,
                window_days: spec.window_days,
                horizon_days: horizon,
                market_id: spec.market_id.clone(),
                limit: None,
                model_id: stab_model.clone(),
            },
            progress,
        )
        .await?;
        if numeric.encoded == 0 {
            continue;
        }
        backfill_joint_states(
            db,
            &StateBackfill {
                as_of: d,
                market_id: spec.market_id.clone(),
                region: None,
                stab_model_id: stab_model.clone(),
                profile_model_id: profile_model.clone(),
                joint_model_id: spec.joint_model_id.clone(),
                weights,
                limit: None,
                replace: false,
            },
            progress,
        )
        .await?;
    }
    progress.finish();

    // The equal-weight market portfolio of each date.
    let members: BTreeSet<String> = market_instruments(db, &spec.market_id, None)
        .await?
        .into_iter()
        .collect();
    let mut portfolios: BTreeMap<NaiveDate, (Vec<f32>, usize)> = BTreeMap::new();
    for &d in &dates {
        let rows = joint_states(db, &spec.joint_model_id, d, d, None, None, None).await?;
        let mut states = BTreeMap::new();
        for r in rows.iter().filter(|r| members.contains(&r.instrument_id)) {
            same.check(
                || format!("the STAB state of {} on {d}", r.instrument_id),
                r.feature_space.as_deref(),
            )?;
            let z = vector::from_bytes(&r.vector, &format!("STAB state of {} on {d}", r.instrument_id))?;
            states.insert(r.instrument_id.clone(), z);
        }
        let weights: BTreeMap<String, f64> = states.keys().map(|id| (id.clone(), 1.0)).collect();
        if let Ok(p) = portfolio_vector(&weights, |id| states.get(id).map(Vec::as_slice)) {
            portfolios.insert(d, (p.vector, p.used));
        }
    }

    // Rank every scenario of the set for each query.
    let n = space.len();
    let mut ranks = Vec::new();
    // Scenarios ranked per query when a filter narrows them.
    let mut competitors: Vec<usize> = Vec::new();
    for &(w, offset, d) in &queries {
        let win = &windows[w];
        let Some((v, used)) = portfolios.get(&d) else {
            skipped.push(format!(
                "{} at offset {offset}: no {stab_model} states of market {} on {d} (not enough history?)",
                win.scenario_id, spec.market_id
            ));
            continue;
        };
        let mut hits = space.search(v, n)?;
        if !spec.search.filter.is_empty() {
            // The window evaluated always competes; the others only when the
            // filter admits them on the query's date (point-in-time: known before it).
            let admitted: std::collections::HashSet<String> = space
                .search_filtered(v, n, &spec.search.filter.at(d))?
                .hits
                .into_iter()
                .map(|h| h.scenario_id)
                .collect();
            hits.retain(|h| h.scenario_id == win.scenario_id || admitted.contains(&h.scenario_id));
            competitors.push(hits.len());
        }
        let pos = hits.iter().position(|h| h.scenario_id == win.scenario_id);
        ranks.push(WindowRank {
            scenario_id: win.scenario_id.clone(),
            offset,
            as_of: d,
            rank: pos.map(|p| p + 1),
            cosine: pos.map(|p| hits[p].cosine),
            top_scenario_id: hits[0].scenario_id.clone(),
            top_cosine: hits[0].cosine,
            instruments_used: *used,
        });
    }
    if ranks.is_empty() {
        return Err(Error::Invalid(format!(
            "nothing could be evaluated: {}",
            list_or(&skipped, "no windows")
        )));
    }
    // Chance is computed for the scenarios a query ranks: with a filter, the mean of them.
    let ranked = if competitors.is_empty() {
        n
    } else {
        (competitors.iter().sum::<usize>() as f64 / competitors.len() as f64).round() as usize
    };
    let scores = spec
        .offsets
        .iter()
        .map(|&o| score(o, ranks.iter().filter(|r| r.offset == o), ranked))
        .collect();
    Ok(EvalReport {
        scenario_set_id: set.to_string(),
        joint_model_id: spec.joint_model_id.clone(),
        stab_model_id: stab_model,
        feature_space: space.feature_space.clone(),
        market_id: spec.market_id.clone(),
        scenarios: n,
        filter: (!spec.search.filter.is_empty()).then(|| spec.search.filter.describe()),
        windows: windows.len(),
        scores,
        ranks,
        skipped,
    })
}

fn score<'a>(offset: usize, ranks: impl Iterator<Item = &'a WindowRank>, scenarios: usize) -> OffsetScore {
    let (mut windows, mut h1, mut h3, mut rr) = (0usize, 0usize, 0usize, 0f64);
    for r in ranks {
        windows += 1;
        if let Some(k) = r.rank {
            h1 += usize::from(k == 1);
            h3 += usize::from(k <= 3);
            rr += 1.0 / k as f64;
        }
    }
    let frac = |x: f64| if windows == 0 { 0.0 } else { x / windows as f64 };
    OffsetScore {
        offset,
        windows,
        hit_at_1: frac(h1 as f64),
        hit_at_3: frac(h3 as f64),
        mrr: frac(rr),
        chance_at_3: (3.0 / scenarios.max(1) as f64).min(1.0),
    }
}

/// The set's historical windows with their length (days of their paths).
async fn historical_windows(db: &Db, set: &str) -> Result<Vec<Window>> {
    let rows = scenarios_with_days(db, set, HISTORICAL_WINDOW).await?;
    if rows.is_empty() {
        let types = shock_types(db, set).await?;
        let sets = sets_with_shock_type(db, HISTORICAL_WINDOW).await?;
        return Err(Error::Invalid(format!(
            "scenario set {set:?} has no scenarios with shock_type {HISTORICAL_WINDOW:?} (its shock types: {}); \
             sets with historical windows: {}",
            list_or(&types, "none, the set has no scenarios"),
            list_or(&sets, "none")
        )));
    }
    rows.into_iter()
        .map(|r| match r.days {
            Some(d) if d > 0 => Ok(Window {
                scenario_id: r.scenario_id,
                start: r.scenario_date,
                days: d as usize,
            }),
            _ => Err(Error::Invalid(format!(
                "scenario {:?} of set {set:?} has no scenario_paths: its length is unknown",
                r.scenario_id
            ))),
        })
        .collect()
}

/// The market's trading days: the dates with a price of any of its instruments.
async fn market_calendar(db: &Db, market: &str) -> Result<Vec<NaiveDate>> {
    let days = prices::market_calendar(db, market).await?;
    if days.is_empty() {
        let markets = markets(db).await?;
        return Err(Error::Invalid(format!(
            "market {market:?} has no prices; markets: {}",
            list_or(&markets, "none (import instruments first)")
        )));
    }
    Ok(days)
}
