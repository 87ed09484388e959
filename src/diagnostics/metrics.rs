//! `backfill-portfolio-stab-scenario-metrics`: nearest-scenario metrics of
//! every risk report in a date range, merged into `risk_metrics`.
//!
//! Reads in bulk (reports, then weights and states: see [`super::vectors`]),
//! searches all portfolio-days at once on every core, and writes the merges in
//! batched statements inside one transaction: an error leaves every report as
//! it was, and a re-run changes nothing. With `recall_sample`, a share of the
//! days' searches is checked against an exact scan and the mean recall
//! recorded in `partition_recall_observations` in the same transaction.

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::NaiveDate;
use serde_json::json;

use super::exposure::no_vector;
use super::vectors::{portfolio_vectors, DaySkip};
use crate::error::{Error, Result};
use crate::joint::list_or;
use crate::nearest::{ScenarioHit, ScenarioSpace, SearchOpts};
use crate::portfolio::NoVector;
use crate::progress::Progress;
use crate::storage::merge::merge_risk_metrics;
use crate::storage::recall::{record_tx, RecallObservation};
use crate::storage::reports::{report_days, report_portfolio_ids, report_span};
use crate::storage::Db;

/// Scenarios ranked per day: the closest one and the top-3 mean.
const TOP: usize = 3;
/// Portfolio-days searched per step of the progress bar.
const SEARCH_BLOCK: usize = 2048;

#[derive(Clone, Debug)]
pub struct MetricsBackfill {
    /// One portfolio, or every portfolio with reports in range.
    pub portfolio_id: Option<String>,
    pub scenario_set_id: String,
    pub model_id: String,
    pub start: NaiveDate,
    pub end: NaiveDate,
    pub search: SearchOpts,
    /// Days whose holdings with a state carry less of the absolute weight are skipped.
    pub min_coverage: f64,
    /// Share of the portfolio-days whose search is checked against an exact
    /// scan of the same rows (0: none), recorded in
    /// `partition_recall_observations` with the metrics.
    pub recall_sample: f64,
}

/// The recall the sampled portfolio-days found, against an exact scan.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum SampledRecall {
    /// No sampling asked (`--recall-sample 0`).
    #[default]
    Off,
    /// The answers were exact already: nothing to check.
    Exact,
    /// No portfolio-day was picked (a small run at a small share).
    NonePicked,
    Observed {
        samples: usize,
        /// Mean recall@k (k = the 3 nearest the metrics keep).
        recall: f64,
        /// The recall the breadth was chosen for (`None`: `--ef` given).
        target: Option<f64>,
        seconds: f64,
    },
}

/// What a metrics backfill did.
#[derive(Clone, Debug, Default)]
pub struct MetricsSummary {
    pub reports: usize,
    pub computed: usize,
    /// Reports whose stored metrics changed (0 on an identical re-run).
    pub changed: u64,
    /// Skipped reports by reason: (portfolio, date) pairs.
    pub skipped: BTreeMap<String, Vec<(String, NaiveDate)>>,
    pub scenarios: usize,
    /// Scored days on which some holdings had no state, and the lowest share
    /// of weight covered among them.
    pub partial: usize,
    pub min_covered: f64,
    /// How the scenarios were searched.
    pub engine: String,
    /// The filter of the scenarios each day could see (`None`: every scenario).
    pub filter: Option<String>,
    /// `--recall-sample`: the recall of the sampled days' searches.
    pub recall: SampledRecall,
    pub seconds: f64,
}

impl std::fmt::Display for MetricsSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rate = if self.seconds > 0.0 {
            self.computed as f64 / self.seconds
        } else {
            0.0
        };
        writeln!(
            f,
            "{} of {} risk reports scored against {} scenarios ({}), {} changed, in {:.2} s \
             ({rate:.0} portfolio-days/s)",
            self.computed, self.reports, self.scenarios, self.engine, self.changed, self.seconds
        )?;
        match &self.filter {
            Some(filter) => writeln!(f, "  scenarios each day could see: {filter}")?,
            None => writeln!(
                f,
                "  note: not point-in-time: each day was compared with every scenario of the set, including \
                 scenarios known only after it (--point-in-time for backtests)"
            )?,
        }
        if self.partial > 0 {
            writeln!(
                f,
                "  warning: {} scored day(s) had holdings without a STAB state (lowest weight covered {:.4}; \
                 stab_weight_covered in risk_metrics says which)",
                self.partial, self.min_covered
            )?;
        }
        match &self.recall {
            SampledRecall::Off => {}
            SampledRecall::Exact => writeln!(f, "  recall: not sampled: the answers were exact")?,
            SampledRecall::NonePicked => writeln!(
                f,
                "  recall: no portfolio-day was picked at this --recall-sample (raise it for a small run)"
            )?,
            SampledRecall::Observed {
                samples,
                recall,
                target,
                seconds,
            } => writeln!(
                f,
                "  observed recall@{TOP} {recall:.4} over {samples} sampled portfolio-day(s), against an exact \
                 scan ({}; checked in {seconds:.2} s)",
                target.map_or("no target: --ef given".into(), |t| format!(
                    "the breadth was chosen for recall@10 {t}"
                )),
            )?,
        }
        for (why, days) in &self.skipped {
            let shown: Vec<String> = days.iter().take(3).map(|(p, d)| format!("{p} {d}")).collect();
            writeln!(
                f,
                "  skipped {} ({why}): {}{}",
                days.len(),
                shown.join(", "),
                more(days.len(), 3)
            )?;
        }
        Ok(())
    }
}

fn more(n: usize, shown: usize) -> String {
    if n > shown {
        format!(", … {} more", n - shown)
    } else {
        String::new()
    }
}

pub async fn backfill_portfolio_metrics(
    db: &Db,
    p: &MetricsBackfill,
    progress: &dyn Progress,
) -> Result<MetricsSummary> {
    let started = Instant::now();
    if p.start > p.end {
        return Err(Error::Invalid(format!(
            "--start {} is after --end {}",
            p.start, p.end
        )));
    }
    let days = report_days(db, p.portfolio_id.as_deref(), p.start, p.end).await?;
    if days.is_empty() {
        return Err(no_reports(db, p).await);
    }
    let space = ScenarioSpace::open(db, &p.search, &p.model_id, &p.scenario_set_id).await?;
    progress.start("portfolio-days", Some(days.len() as u64));
    progress.message("reading weights and STAB states");
    let vectors = portfolio_vectors(db, &p.model_id, &days, Some(&space), p.min_coverage).await?;

    let mut summary = MetricsSummary {
        reports: days.len(),
        scenarios: space.len(),
        engine: format!("{}; answered by {}", space.describe(), space.answered_by()),
        ..Default::default()
    };
    let mut queries = Vec::new();
    let mut scored = Vec::new();
    summary.min_covered = 1.0;
    for (day, v) in days.iter().zip(vectors) {
        match v {
            Ok(v) => {
                if !v.vector.missing.is_empty() {
                    summary.partial += 1;
                    summary.min_covered = summary.min_covered.min(v.vector.weight_covered);
                }
                queries.push(v.vector.vector);
                scored.push((day, v.vector.ctx_norm, v.vector.weight_covered));
            }
            Err(skip) => {
                let why = match &skip {
                    DaySkip::NoTarget { .. } => "no target weights on or before the date".to_string(),
                    DaySkip::NoVector(NoVector::NoStates { .. }) => {
                        format!("no STAB state of {} for any holding", p.model_id)
                    }
                    DaySkip::NoVector(NoVector::ZeroWeights { .. }) => {
                        "the holdings with a STAB state have zero weights".to_string()
                    }
                    DaySkip::NoVector(NoVector::Unusable { .. }) => {
                        "the portfolio vector is all zeros or non-finite (constant-price holdings)"
                            .to_string()
                    }
                    DaySkip::NoVector(NoVector::LowCoverage { .. }) => format!(
                        "holdings with a STAB state carry less than --min-coverage {} of the weight",
                        p.min_coverage
                    ),
                };
                summary.skipped.entry(why).or_default().push(day.clone());
            }
        }
    }
    if queries.is_empty() {
        let (pid, date) = &days[0];
        let first = vectors_reason(db, pid, *date, &p.model_id, p.min_coverage).await;
        return Err(first.prefixed(&format!(
            "none of the {} risk reports {} has a portfolio STAB vector; the first: ",
            days.len(),
            crate::output::span(p.start, p.end)
        )));
    }

    // In blocks, so the bar moves; each block still runs on every core.
    progress.set_position((days.len() - queries.len()) as u64);
    progress.message(&format!("nearest scenarios in {}", p.scenario_set_id));
    let filter = &p.search.filter;
    let hits = tokio::task::block_in_place(|| {
        let mut hits = Vec::with_capacity(queries.len());
        for (block, days) in queries.chunks(SEARCH_BLOCK).zip(scored.chunks(SEARCH_BLOCK)) {
            if filter.is_empty() {
                hits.extend(space.search_batch(block, TOP)?);
            } else {
                let filters: Vec<_> = days.iter().map(|((_, d), _, _)| filter.at(*d)).collect();
                hits.extend(
                    space
                        .search_batch_filtered(block, &filters, TOP)?
                        .into_iter()
                        .map(|f| f.hits),
                );
            }
            progress.advance(block.len() as u64);
        }
        Ok::<_, Error>(hits)
    })?;
    progress.finish();
    let recall = sample_recall(&space, p.recall_sample, filter, &queries, &scored, &hits)?;
    let answer = space.answer();
    // Days the filter left without a scenario are skipped, by name.
    let mut kept = Vec::with_capacity(scored.len());
    for (day, hits) in scored.iter().zip(&hits) {
        if hits.is_empty() {
            summary
                .skipped
                .entry(skip_reason(filter))
                .or_default()
                .push(day.0.clone());
        } else {
            kept.push((day, hits));
        }
    }
    summary.filter = (!filter.is_empty()).then(|| filter.describe());
    let scenario_filter = filter_record(filter);
    let patches: Vec<(String, NaiveDate, serde_json::Value)> = kept
        .into_iter()
        .map(|(((pid, date), ctx_norm, covered), hits)| {
            let top = &hits[0];
            let mean = hits.iter().map(|h| h.cosine).sum::<f64>() / hits.len() as f64;
            let patch = json!({
                "stab_scenario_set_id": p.scenario_set_id,
                "stab_closest_scenario_id": top.scenario_id,
                "stab_closest_scenario_cosine": top.cosine,
                "stab_closest_scenario_distance": top.euclidean,
                "stab_portfolio_ctx_norm": ctx_norm,
                "stab_top3_scenario_cosine_mean": mean,
                "stab_weight_covered": covered,
                "stab_answered_by": answer.by.label(),
                "stab_partition_stale": answer.partition_stale,
                "stab_point_in_time": filter.point_in_time,
                "stab_scenario_filter": scenario_filter,
                "stab_closest_scenario_known_from": top.known_from,
            });
            (pid.clone(), *date, patch)
        })
        .collect();
    summary.computed = patches.len();

    let mut tx = db.begin().await?;
    summary.changed = merge_risk_metrics(&mut tx, &patches)
        .await
        .map_err(|e| db.err(e))?;
    if let SampledRecall::Observed {
        samples,
        recall,
        target,
        ..
    } = recall
    {
        let row = RecallObservation {
            model_id: p.model_id.clone(),
            scenario_set_id: p.scenario_set_id.clone(),
            observed_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            source: "metrics-backfill".into(),
            samples: samples as i64,
            observed_recall: recall,
            target_recall: target,
        };
        record_tx(&mut tx, &row).await.map_err(|e| db.err(e))?;
    }
    summary.recall = recall;
    db.commit(tx).await?;
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// `--recall-sample`: a share of the days' searches run again as exact
/// scans of the same rows (each day with its own filter), in blocks sharing
/// each pass over the rows; their mean recall@k. Days are picked by a fixed
/// seed, so a re-run checks the same days.
fn sample_recall(
    space: &ScenarioSpace,
    share: f64,
    filter: &crate::pointintime::QueryFilter,
    queries: &[Vec<f32>],
    scored: &[(&(String, NaiveDate), f64, f64)],
    hits: &[Vec<ScenarioHit>],
) -> Result<SampledRecall> {
    if share <= 0.0 {
        return Ok(SampledRecall::Off);
    }
    let Some(check) = space.exact_check(TOP) else {
        return Ok(SampledRecall::Exact);
    };
    let started = Instant::now();
    let picked: Vec<usize> = (0..queries.len()).filter(|&i| unit(i as u64) < share).collect();
    if picked.is_empty() {
        return Ok(SampledRecall::NonePicked);
    }
    let qs: Vec<Vec<f32>> = picked.iter().map(|&i| queries[i].clone()).collect();
    let served: Vec<Vec<f64>> = picked
        .iter()
        .map(|&i| hits[i].iter().map(|h| h.cosine).collect())
        .collect();
    let filters: Option<Vec<_>> =
        (!filter.is_empty()).then(|| picked.iter().map(|&i| filter.at(scored[i].0 .1)).collect());
    let found = tokio::task::block_in_place(|| check.recall_batch(&qs, TOP, filters.as_deref(), &served))?;
    let found: Vec<f64> = found.into_iter().flatten().collect();
    if found.is_empty() {
        return Ok(SampledRecall::NonePicked);
    }
    Ok(SampledRecall::Observed {
        samples: found.len(),
        recall: found.iter().sum::<f64>() / found.len() as f64,
        target: check.target,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// A uniform draw in [0, 1) for `i`: splitmix64 of a fixed seed and `i`.
fn unit(i: u64) -> f64 {
    let mut z = (0x5EED_2700_0000_0002_u64 ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// Why a day's filter admitted no scenario, the same words for every day
/// (so that the summary groups them).
fn skip_reason(f: &crate::pointintime::QueryFilter) -> String {
    match (f.point_in_time, f.filter.is_empty()) {
        (true, true) => "point-in-time: no scenario of the set was known before the day".into(),
        (true, false) => format!(
            "point-in-time: no scenario of the set known before the day is {}",
            f.filter.describe()
        ),
        (false, _) => format!("no scenario of the set is {}", f.filter.describe()),
    }
}

/// What `risk_metrics` records of the filter besides `stab_point_in_time`:
/// the fixed bounds (`null`: none).
fn filter_record(f: &crate::pointintime::QueryFilter) -> serde_json::Value {
    if f.filter.is_empty() {
        return serde_json::Value::Null;
    }
    json!({
        "known_before": f.filter.known_before,
        "shock_types": f.filter.shock_types,
        "min_severity": f.filter.min_severity,
    })
}

/// The full explanation for one day without a vector.
async fn vectors_reason(db: &Db, pid: &str, date: NaiveDate, model: &str, min_coverage: f64) -> Error {
    let day = [(pid.to_string(), date)];
    match portfolio_vectors(db, model, &day, None, min_coverage).await {
        Ok(mut v) => match v.pop() {
            Some(Err(skip)) => no_vector(db, pid, date, model, skip).await,
            _ => Error::Invalid("it has one now".into()),
        },
        Err(e) => e,
    }
}

async fn no_reports(db: &Db, p: &MetricsBackfill) -> Error {
    let explain = async {
        Ok(match &p.portfolio_id {
            Some(pid) => match report_span(db, pid).await? {
                (Some(a), Some(b)) => format!(
                    "portfolio {pid:?} has no risk reports {}; its reports run {}",
                    crate::output::span(p.start, p.end),
                    crate::output::span(a, b)
                ),
                _ => {
                    let known = report_portfolio_ids(db).await?;
                    format!(
                        "portfolio {pid:?} has no risk reports; portfolios with reports: {}",
                        list_or(&known, "none (import risk-reports first)")
                    )
                }
            },
            None => format!(
                "no portfolio has risk reports {}",
                crate::output::span(p.start, p.end)
            ),
        })
    };
    explain.await.map_or_else(|e| e, Error::Invalid)
}
