//! The report rows every front end renders: the CLI as CSV, JSON or text,
//! `stabspace serve` as JSON, Python as a DataFrame. One function per report,
//! so the columns and their order are written once.

use chrono::NaiveDate;

use crate::diagnostics::{Exposure, SimilarScenarios};
use crate::output::{Cell, Table};
use crate::partitions::{BuildKind, Status};

/// `find-similar-stab-scenarios`' rows: one per hit (also the answer of
/// `POST /v1/similar-scenarios` and of Python's `similar_scenarios`).
pub fn similar_scenarios(set: &str, instrument: &str, as_of: NaiveDate, found: SimilarScenarios) -> Table {
    let mut t = Table::new(&[
        "rank",
        "cosine",
        "euclidean",
        "scenario_set_id",
        "scenario_id",
        "scenario_as_of",
        "instrument_id",
        "as_of_date",
        "answered_by",
        "partition_stale",
        "scenario_known_from",
    ]);
    let answer = found.answer;
    for (i, h) in found.hits.into_iter().enumerate() {
        t.push(vec![
            (i + 1).into(),
            h.cosine.into(),
            h.euclidean.into(),
            set.to_string().into(),
            h.scenario_id.into(),
            h.scenario_as_of.into(),
            instrument.to_string().into(),
            as_of.into(),
            answer.by.label().into(),
            answer.partition_stale.into(),
            h.known_from.into(),
        ]);
    }
    t
}

/// `show-portfolio-stab-scenario-exposure`'s rows: one per hit (also the answer of
/// `POST /v1/portfolio-exposure` and of Python's `portfolio_exposure`).
pub fn portfolio_exposure(set: &str, portfolio: &str, e: Exposure) -> Table {
    let mut t = Table::new(&[
        "cosine",
        "euclidean",
        "scenario_set_id",
        "scenario_id",
        "scenario_as_of",
        "portfolio_id",
        "portfolio_ctx_norm",
        "num_instruments_used",
        "weight_covered",
        "answered_by",
        "partition_stale",
        "scenario_known_from",
    ]);
    for h in e.hits {
        t.push(vec![
            h.cosine.into(),
            h.euclidean.into(),
            set.to_string().into(),
            h.scenario_id.into(),
            h.scenario_as_of.into(),
            portfolio.to_string().into(),
            e.vector.ctx_norm.into(),
            e.vector.used.into(),
            e.vector.weight_covered.into(),
            e.answer.by.label().into(),
            e.answer.partition_stale.into(),
            h.known_from.into(),
        ]);
    }
    t
}

/// `index status --versions`: every version a remote partition store holds.
pub fn stored_versions(rows: &[crate::partitions::StoredVersion]) -> Table {
    let mut t = Table::new(&[
        "model_id",
        "scenario_set_id",
        "generation",
        "current",
        "cached_here",
        "vectors",
        "size_mb",
        "sha256",
        "built_at",
        "published_at",
        "object",
    ]);
    for v in rows {
        t.push(vec![
            v.model_id.clone().into(),
            v.scenario_set_id.clone().into(),
            Cell::Int(v.generation),
            Cell::Bool(v.current),
            Cell::Bool(v.cached),
            Cell::Int(v.rows),
            Cell::Float(v.size_bytes as f64 / 1e6),
            v.sha256.clone().into(),
            v.built_at.clone().into(),
            v.published_at.clone().into(),
            v.object.clone().into(),
        ]);
    }
    t
}

/// `index status`'s rows: one per partition (also `GET /v1/partitions`),
/// with the latest recall observed on sampled queries (`last_*`: `serve
/// --recall-sample`, `backfill-portfolio-stab-scenario-metrics --recall-sample`).
pub fn partition_status(rows: &[Status]) -> Table {
    let mut t = Table::new(&[
        "model_id",
        "scenario_set_id",
        "state",
        "vectors",
        "size_mb",
        "m",
        "ef_construction",
        "feature_space",
        "built_at",
        "format",
        "traversal",
        "build",
        "recall_calibration",
        "calibrated_on",
        "next_rebuild",
        "detail",
        "last_observed_recall",
        "last_recall_samples",
        "last_recall_target",
        "last_observed_at",
        "last_observed_by",
    ]);
    for s in rows {
        let p = s.provenance.as_ref();
        let o = s.observed.as_ref();
        t.push(vec![
            s.model_id.clone().into(),
            s.scenario_set_id.clone().into(),
            s.state.label().into(),
            p.map_or(Cell::Null, |p| p.rows.into()),
            s.file_bytes.map_or(Cell::Null, |b| Cell::Float(b as f64 / 1e6)),
            p.map_or(Cell::Null, |p| p.params.m.into()),
            p.map_or(Cell::Null, |p| p.params.ef_construction.into()),
            p.and_then(|p| p.feature_space.clone()).into(),
            p.map_or(Cell::Null, |p| p.built_at.clone().into()),
            s.format_version.map_or(Cell::Null, |v| {
                if v < stabspace_index::format::VERSION {
                    format!("v{v} (old: rebuild to upgrade)").into()
                } else {
                    format!("v{v}").into()
                }
            }),
            s.traversal.map_or(Cell::Null, |t| t.into()),
            p.map_or(Cell::Null, |p| match (p.build, p.appended_rows) {
                (Some(BuildKind::Append), Some(n)) => format!("append +{n}").into(),
                _ => "full".into(),
            }),
            p.and_then(|p| p.calibration.as_ref())
                .map_or(Cell::Null, |c| c.summary().into()),
            p.and_then(|p| p.calibration.as_ref())
                .map_or(Cell::Null, |c| c.describe().into()),
            s.next_rebuild.clone().into(),
            s.detail.clone().into(),
            o.map_or(Cell::Null, |o| Cell::Float(o.observed_recall)),
            o.map_or(Cell::Null, |o| Cell::Int(o.samples)),
            o.and_then(|o| o.target_recall).map_or(Cell::Null, Cell::Float),
            o.map_or(Cell::Null, |o| o.observed_at.clone().into()),
            o.map_or(Cell::Null, |o| o.source.clone().into()),
        ]);
    }
    t
}
