//! Portfolio STAB vectors for many (portfolio, date) pairs, read in bulk.
//!
//! All target weights of the portfolios up to the last date come in one query.
//! The days are then taken in date order, in chunks: for each chunk, one query
//! gets every held instrument's latest state on or before the chunk's first day
//! and one more the states inside the chunk, so the number of queries grows
//! with the number of chunks, not of days.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::NaiveDate;

use crate::error::Result;
use crate::joint::STAB_JOINT_TYPE;
use crate::nearest::{SameSpace, ScenarioSpace};
use crate::portfolio::{portfolio_vector, NoVector, PortfolioVector, Weights};
use crate::storage::joint::{joint_between, latest_joint};
use crate::storage::reports::targets;
use crate::storage::Db;
use crate::vector;

/// One instrument's states by date; `None`: stored but unreadable.
type Dated = Vec<(NaiveDate, Option<Vec<f32>>)>;

/// Distinct dates per chunk of states held in memory.
const DATES_PER_CHUNK: usize = 32;

/// Why a day has no portfolio vector.
#[derive(Clone, Debug, PartialEq)]
pub enum DaySkip {
    /// No `target_portfolios` row on or before the day.
    NoTarget {
        earliest: Option<NaiveDate>,
    },
    NoVector(NoVector),
}

impl std::fmt::Display for DaySkip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DaySkip::NoTarget { earliest: Some(d) } => {
                write!(
                    f,
                    "no target weights on or before this date (the earliest are from {d})"
                )
            }
            DaySkip::NoTarget { earliest: None } => write!(f, "no target_portfolios rows at all"),
            DaySkip::NoVector(n) => n.fmt(f),
        }
    }
}

/// The portfolio vector of one (portfolio, date), with the weights' date.
#[derive(Clone, Debug, PartialEq)]
pub struct DayVector {
    pub weights_as_of: NaiveDate,
    pub vector: PortfolioVector,
}

/// The portfolio vectors of `days` under the STAB states of joint model
/// `model`, in the order of `days`. Malformed weights are an error, and so is
/// a state from another feature space than `against`'s scenarios or than the
/// other states. A day whose holdings with a state carry less than
/// `min_coverage` of the absolute weight is skipped; a state that cannot be
/// read (another length, a non-finite value: written by another tool) counts
/// as missing and is named on stderr.
pub async fn portfolio_vectors(
    db: &Db,
    model: &str,
    days: &[(String, NaiveDate)],
    against: Option<&ScenarioSpace>,
    min_coverage: f64,
) -> Result<Vec<Result<DayVector, DaySkip>>> {
    let mut out: Vec<Option<Result<DayVector, DaySkip>>> = vec![None; days.len()];
    let Some(last) = days.iter().map(|d| d.1).max() else {
        return Ok(Vec::new());
    };
    let portfolios: Vec<String> = days
        .iter()
        .map(|d| d.0.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    // portfolio → [(date, target_positions text)], by date.
    let mut book: HashMap<String, Vec<(NaiveDate, String)>> = HashMap::new();
    for (pid, date, text) in targets(db, &portfolios, last).await? {
        book.entry(pid).or_default().push((date, text));
    }
    let mut parsed: HashMap<(String, NaiveDate), Weights> = HashMap::new();

    // Which target applies to each day; days without one are settled now.
    let mut pending: BTreeMap<NaiveDate, Vec<(usize, String, NaiveDate)>> = BTreeMap::new();
    for (i, (pid, day)) in days.iter().enumerate() {
        let rows = book.get(pid).map(Vec::as_slice).unwrap_or_default();
        let n = rows.partition_point(|(d, _)| d <= day);
        if n == 0 {
            out[i] = Some(Err(DaySkip::NoTarget {
                earliest: rows.first().map(|r| r.0),
            }));
            continue;
        }
        let (tdate, text) = &rows[n - 1];
        let key = (pid.clone(), *tdate);
        if let std::collections::hash_map::Entry::Vacant(e) = parsed.entry(key) {
            e.insert(Weights::parse(pid, *tdate, text)?);
        }
        pending.entry(*day).or_default().push((i, pid.clone(), *tdate));
    }

    let dates: Vec<NaiveDate> = pending.keys().copied().collect();
    let mut same = against.map_or_else(SameSpace::default, ScenarioSpace::same_space);
    for chunk in dates.chunks(DATES_PER_CHUNK) {
        let (first, last) = (chunk[0], chunk[chunk.len() - 1]);
        let work: Vec<&(usize, String, NaiveDate)> = chunk.iter().flat_map(|d| &pending[d]).collect();
        let ids: Vec<String> = work
            .iter()
            .flat_map(|(_, pid, td)| parsed[&(pid.clone(), *td)].weights.keys().cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        // instrument → [(date, vector)] by date: the floor state, then the chunk's.
        // A state that cannot be read is kept as None: the holding has no
        // usable state from that date on.
        let mut states: HashMap<String, Dated> = HashMap::new();
        let floor = latest_joint(db, STAB_JOINT_TYPE, model, "INSTRUMENT", &ids, first).await?;
        let inside = joint_between(db, STAB_JOINT_TYPE, model, "INSTRUMENT", &ids, first, last).await?;
        for v in floor.into_values().chain(inside) {
            let what = format!("STAB state of {} on {}", v.entity_id, v.as_of_date);
            same.check(
                || format!("the {what} (joint model {model})"),
                v.feature_space.as_deref(),
            )?;
            // An all-zero state (a holding in cash, a suspended stock) is a
            // real, directionless state; an unreadable one is left out.
            let z = match vector::finite(&v.vector) {
                Ok(z) => Some(z),
                Err(why) => {
                    eprintln!("warning: the {what} is left out: {why}");
                    None
                }
            };
            states.entry(v.entity_id).or_default().push((v.as_of_date, z));
        }
        for (i, pid, tdate) in work {
            let day = days[*i].1;
            let w = &parsed[&(pid.clone(), *tdate)];
            let state = |id: &str| {
                let s = states.get(id)?;
                let n = s.partition_point(|(d, _)| *d <= day);
                (n > 0).then(|| s[n - 1].1.as_deref()).flatten()
            };
            out[*i] = Some(
                portfolio_vector(&w.weights, state)
                    .and_then(|vector| {
                        if vector.weight_covered < min_coverage {
                            Err(NoVector::LowCoverage {
                                covered: vector.weight_covered,
                                min: min_coverage,
                                missing: vector.missing,
                            })
                        } else {
                            Ok(DayVector {
                                weights_as_of: *tdate,
                                vector,
                            })
                        }
                    })
                    .map_err(DaySkip::NoVector),
            );
        }
    }
    Ok(out
        .into_iter()
        .map(|o| o.expect("every day is settled above"))
        .collect())
}
