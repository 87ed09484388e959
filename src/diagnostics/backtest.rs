//! `backfill-backtest-stab-scenario-metrics`: run-level summaries of the daily
//! STAB metrics, merged into `backtest_runs.metrics_json`.

use std::collections::BTreeMap;

use serde_json::{json, Value as Json};

use crate::error::{Error, Result};
use crate::joint::list_or;
use crate::storage::merge::merge_backtest_metrics;
use crate::storage::reports::{backtest_runs, risk_metrics, strategies};
use crate::storage::Db;

/// The summary of one run's daily metrics.
#[derive(Clone, Debug, PartialEq)]
pub struct BacktestMetrics {
    pub run_id: String,
    pub portfolio_id: String,
    pub patch: Json,
}

#[derive(Clone, Debug, Default)]
pub struct BacktestSummary {
    pub runs: Vec<BacktestMetrics>,
    /// (run id, reason) of runs left alone.
    pub skipped: Vec<(String, String)>,
    pub changed: u64,
}

impl std::fmt::Display for BacktestSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} backtest run(s) summarised, {} changed, {} skipped",
            self.runs.len(),
            self.changed,
            self.skipped.len()
        )?;
        for r in &self.runs {
            writeln!(
                f,
                "  {} ({}): {} days, closest-scenario cosine mean {:.6}",
                r.run_id,
                r.portfolio_id,
                r.patch["stab_num_days"],
                r.patch["stab_closest_scenario_cosine_mean"]
                    .as_f64()
                    .unwrap_or(f64::NAN)
            )?;
            let not_pit = r.patch["stab_num_days_not_point_in_time"].as_u64().unwrap_or(0);
            if not_pit > 0 {
                writeln!(
                    f,
                    "    warning: {not_pit} of its {} days were not scored point-in-time: they were compared with \
                     scenarios known only after the day (look-ahead); re-run \
                     `backfill-portfolio-stab-scenario-metrics --point-in-time` over the run's dates",
                    r.patch["stab_num_days"]
                )?;
            }
        }
        for (run, why) in &self.skipped {
            writeln!(f, "  skipped {run}: {why}")?;
        }
        Ok(())
    }
}

/// Summarise the runs of `strategy`, or the run `run`.
pub async fn backfill_backtest_metrics(
    db: &Db,
    strategy: Option<&str>,
    run: Option<&str>,
) -> Result<BacktestSummary> {
    let runs = backtest_runs(db, strategy, run).await?;
    if runs.is_empty() {
        let known = strategies(db).await?;
        let what = match (strategy, run) {
            (_, Some(r)) => format!("no backtest run {r:?}"),
            (Some(s), None) => format!("no backtest runs of strategy {s:?}"),
            (None, None) => "no backtest runs".into(),
        };
        return Err(Error::Invalid(format!(
            "{what}; strategies with runs: {}",
            list_or(&known, "none (import backtest-runs first)")
        )));
    }
    let mut out = BacktestSummary::default();
    for r in &runs {
        let config: Json = serde_json::from_str(&r.config_json).map_err(|e| {
            Error::Invalid(format!("backtest run {}: config_json is not JSON: {e}", r.run_id))
        })?;
        let Some(pid) = config.get("portfolio_id").and_then(Json::as_str) else {
            out.skipped.push((
                r.run_id.clone(),
                "config_json has no \"portfolio_id\" string".into(),
            ));
            continue;
        };
        let mut cos = Vec::new();
        let mut norms = Vec::new();
        let mut sets: BTreeMap<String, usize> = BTreeMap::new();
        // Days scored against every scenario (metrics written before
        // point-in-time search record no flag: not point-in-time either).
        let mut not_pit = 0usize;
        for (date, text) in risk_metrics(db, pid, r.start_date, r.end_date).await? {
            let m: Json = serde_json::from_str(&text).map_err(|e| {
                Error::Invalid(format!(
                    "portfolio_risk_reports ({pid}, {date}): risk_metrics is not JSON: {e}"
                ))
            })?;
            let Some(c) = m.get("stab_closest_scenario_cosine").and_then(Json::as_f64) else {
                continue;
            };
            cos.push(c);
            if m.get("stab_point_in_time").and_then(Json::as_bool) != Some(true) {
                not_pit += 1;
            }
            if let Some(n) = m.get("stab_portfolio_ctx_norm").and_then(Json::as_f64) {
                norms.push(n);
            }
            if let Some(s) = m.get("stab_scenario_set_id").and_then(Json::as_str) {
                *sets.entry(s.to_string()).or_default() += 1;
            }
        }
        if cos.is_empty() {
            out.skipped.push((
                r.run_id.clone(),
                format!(
                    "no risk reports of {pid} {} carry STAB metrics; run \
                     `stabspace backfill-portfolio-stab-scenario-metrics --portfolio-id {pid} --start {} --end {} \
                     --scenario-set-id <set>` first",
                    crate::output::span(r.start_date, r.end_date),
                    r.start_date,
                    r.end_date
                ),
            ));
            continue;
        }
        // Most common set; ties go to the first in name order.
        let set = sets
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
            .map(|(s, _)| s.clone());
        let mean = |xs: &[f64]| (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64);
        let fold = |xs: &[f64], f: fn(f64, f64) -> f64| xs.iter().copied().reduce(f);
        let patch = json!({
            "stab_scenario_set_id": set,
            "stab_closest_scenario_cosine_mean": mean(&cos),
            "stab_closest_scenario_cosine_min": fold(&cos, f64::min),
            "stab_closest_scenario_cosine_max": fold(&cos, f64::max),
            "stab_portfolio_ctx_norm_mean": mean(&norms),
            "stab_portfolio_ctx_norm_max": fold(&norms, f64::max),
            "stab_num_days": cos.len(),
            "stab_point_in_time": not_pit == 0,
            "stab_num_days_not_point_in_time": not_pit,
        });
        out.runs.push(BacktestMetrics {
            run_id: r.run_id.clone(),
            portfolio_id: pid.to_string(),
            patch,
        });
    }
    if out.runs.is_empty() {
        let reasons: Vec<String> = out.skipped.iter().map(|(r, w)| format!("{r}: {w}")).collect();
        return Err(Error::Invalid(format!(
            "no backtest run could be summarised: {}",
            reasons.join("; ")
        )));
    }
    let rows: Vec<(String, Json)> = out
        .runs
        .iter()
        .map(|r| (r.run_id.clone(), r.patch.clone()))
        .collect();
    let mut tx = db.begin().await?;
    out.changed = merge_backtest_metrics(&mut tx, &rows)
        .await
        .map_err(|e| db.err(e))?;
    db.commit(tx).await?;
    Ok(out)
}
