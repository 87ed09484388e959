//! Building a partition: read the set's scenario vectors from the database,
//! build (or extend) the graph, calibrate it, and publish the file through
//! the [`PartitionStore`].

use std::path::PathBuf;
use std::time::Instant;

use chrono::Utc;
use stabspace_index::{BuildParams, CalibrationQueries as CalQueries, Partition, PartitionBuilder, RowAttrs};

use super::catalog::{not_extendable, recorded_params, FileSummary};
use super::provenance::{fingerprint, BuildKind, CalibrationRecord, Provenance, RecordedParams};
use super::queries::recent_state_queries;
use super::scan::scan_scenarios;
use super::store::PartitionStore;
use crate::error::Result;
use crate::pointintime::ShockTypes;
use crate::progress::{Progress, Quiet};
use crate::storage::joint::ScenarioVector;
use crate::storage::Db;
use crate::vector::DIM;

/// Whether a rebuild may insert only the new rows into the existing graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuildMode {
    /// Build the graph from every row.
    Full,
    /// Append when the set has only gained rows since the partition was
    /// built (see [`build`]); else build in full.
    AppendIfOnlyGained,
}

/// What a build did.
#[derive(Clone, Debug)]
pub struct Built {
    pub path: PathBuf,
    pub provenance: Provenance,
    pub file_bytes: u64,
    /// What killed builds left behind, removed first ([`PartitionStore::sweep`]).
    pub swept: Vec<PathBuf>,
}

/// What [`PartitionStore::sweep`] removed, in words: one line, or none.
pub fn swept_note(removed: &[PathBuf]) -> Option<String> {
    let paths: Vec<String> = removed.iter().map(|p| p.display().to_string()).collect();
    match paths.len() {
        0 => None,
        1 => Some(format!(
            "removed 1 temporary file left by a killed build: {}",
            paths[0]
        )),
        n => Some(format!(
            "removed {n} temporary files left by killed builds: {}",
            paths.join(", ")
        )),
    }
}

/// Read the STAB scenario vectors of (model, set) and write its partition
/// atomically. `progress` follows the read, then the graph insertions.
///
/// With [`BuildMode::AppendIfOnlyGained`] and an existing partition of this
/// database built with the same parameters, every row read is hashed
/// ([`stabspace_index::row_hash`] of its id, date and vector) and compared
/// with the hashes the partition stores. When every stored row is still
/// there, unchanged, the rows the partition lacks are inserted into its graph
/// and the whole file is written anew (atomically); when any stored row was
/// changed or removed, the graph is built in full, so a changed or deleted
/// vector never survives. The change counters only predict which it will be
/// (`index status`); the hashes decide.
pub async fn build(
    db: &Db,
    store: &dyn PartitionStore,
    model: &str,
    set: &str,
    params: &BuildParams,
    mode: BuildMode,
    progress: &dyn Progress,
) -> Result<Built> {
    progress.start("vectors", None);
    progress.message(&format!("index {model} / {set}: reading the vectors"));
    let built = build_partition(db, store, model, set, params, mode, progress).await;
    progress.finish();
    built
}

async fn build_partition(
    db: &Db,
    store: &dyn PartitionStore,
    model: &str,
    set: &str,
    params: &BuildParams,
    mode: BuildMode,
    progress: &dyn Progress,
) -> Result<Built> {
    let started = Instant::now();
    // What this build replaces, before anything is read: a publish committed
    // meanwhile by another builder makes this one lose.
    let base = store.base(model, set)?;
    let swept = store.sweep()?;
    let database_id = crate::storage::meta::database_id(db).await?;
    // The fingerprint first: a write during the read makes the partition look
    // stale (and be rebuilt), never fresh with old content.
    let fp = fingerprint(db, model, set).await?;
    let path = store.locate(model, set);
    let mut full_reason = None;
    let existing: Option<(Partition, Provenance)> = match mode {
        BuildMode::Full => None,
        BuildMode::AppendIfOnlyGained if !store.exists(&path) => None,
        BuildMode::AppendIfOnlyGained => {
            match store.open(&path).and_then(|(p, _)| {
                let prov = Provenance::of(&p)?;
                Ok((p, prov))
            }) {
                Err(e) => {
                    full_reason = Some(format!("the partition cannot be read ({e})"));
                    None
                }
                Ok((p, prov)) => {
                    match not_extendable(&FileSummary::of(&p, prov.clone()), &database_id, params) {
                        Some(why) => {
                            full_reason = Some(why);
                            None
                        }
                        None if !p.has_attrs() || prov.shock_types.is_none() => {
                            full_reason = Some(
                            "the partition has no per-row point-in-time attributes (built before point-in-time \
                             search)"
                                .into(),
                        );
                            None
                        }
                        None => Some((p, prov)),
                    }
                }
            }
        }
    };

    let mut b = None;
    let mut scan = None;
    // The shock types numbered by the rows' tags: an append keeps the numbers.
    let mut types = ShockTypes::default();
    // What the partition extended recorded of its calibrations: a small
    // append keeps them, with their query sources.
    let mut base_records: Vec<CalibrationRecord> = Vec::new();
    if let Some((p, prov)) = existing {
        types = ShockTypes(prov.shock_types.clone().unwrap_or_default());
        base_records = prov.calibrations.clone();
        // Rows of the partition still in the database unchanged, and the new ones.
        let stored: std::collections::HashSet<u64> =
            p.row_hashes().expect("checked").iter().copied().collect();
        let mut matched = 0usize;
        let mut fresh: Vec<(String, String, Vec<f32>, RowAttrs)> = Vec::new();
        let s = scan_scenarios(db, model, set, |row, v| {
            let date = row.as_of.to_string();
            let attrs = row_attrs(&mut types, row);
            if stored.contains(&stabspace_index::row_hash_with(
                &row.scenario_id,
                v,
                date.as_bytes(),
                Some(&attrs),
            )) {
                matched += 1;
            } else {
                fresh.push((row.scenario_id.clone(), date, v.to_vec(), attrs));
            }
            Ok(())
        })
        .await?;
        if matched == p.len() && stored.len() == p.len() {
            let mut ext = PartitionBuilder::extending(&p, fresh.len())?;
            for (id, date, v, attrs) in &fresh {
                ext.add_with(id, v, date.as_bytes(), *attrs)?;
            }
            b = Some(ext);
            scan = Some(s);
        } else {
            types = ShockTypes::default();
            full_reason = Some(format!(
                "{} of the partition's {} rows were changed or removed in the database",
                p.len() - matched.min(p.len()),
                p.len()
            ));
        }
    }
    let (mut b, scan) = match (b, scan) {
        (Some(b), Some(s)) => (b, s),
        _ => {
            let mut b = PartitionBuilder::with_capacity(DIM, fp.rows.max(0) as usize)?;
            let s = scan_scenarios(db, model, set, |row, v| {
                let attrs = row_attrs(&mut types, row);
                b.add_with(&row.scenario_id, v, row.as_of.to_string().as_bytes(), attrs)
                    .map(|_| ())
            })
            .await?;
            (b, s)
        }
    };
    // The users' kind of query: the joint model's most recent states.
    let queries = recent_state_queries(db, model, None).await?;
    if let Some(q) = &queries {
        b.calibrate_on(&q.vectors)?;
    }
    let calibration_note = queries.is_none().then(|| no_states_note(model));
    crate::faults::pause_point(crate::faults::INDEX_BEFORE_WRITE);
    let mut provenance = Provenance {
        model_id: model.to_string(),
        scenario_set_id: set.to_string(),
        rows: b.len(),
        skipped_zero: scan.zero,
        skipped_unusable: scan.unusable,
        feature_space: scan.feature_space,
        spaces_read: true,
        fingerprint: fp,
        params: RecordedParams::of(params),
        built_at: Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        build_seconds: 0.0,
        database_id: Some(database_id),
        build: None,
        appended_rows: None,
        full_build_reason: None,
        calibration: None,
        calibrations: Vec::new(),
        calibration_note,
        calibrated_at: None,
        shock_types: Some(types.0),
    };
    // Filled in once the engine has built (or extended) and calibrated the graph.
    let provenance_of = |outcome: &stabspace_index::BuildOutcome<'_>| {
        let p = &mut provenance;
        p.build = Some(if outcome.appended.is_some() {
            BuildKind::Append
        } else {
            BuildKind::Full
        });
        p.appended_rows = outcome.appended;
        p.full_build_reason = match (outcome.appended, mode) {
            (None, BuildMode::AppendIfOnlyGained) => {
                full_reason.or_else(|| Some("there was no partition to extend".into()))
            }
            _ => None,
        };
        p.calibrations = outcome
            .calibrations
            .iter()
            .map(|c| record_of(c, &base_records, queries.as_ref().map(|q| q.source.as_str())))
            .collect();
        p.calibration = outcome
            .calibration
            .map(|c| record_of(c, &base_records, queries.as_ref().map(|q| q.source.as_str())));
        if outcome
            .calibration
            .is_some_and(|c| c.queries == CalQueries::Given)
        {
            p.calibration_note = None;
        }
        p.build_seconds = started.elapsed().as_secs_f64();
        serde_json::to_string(p).expect("provenance serialises")
    };
    // The graph build is CPU-bound: off the async runtime.
    let label = format!("index {model} / {set}: graph");
    let mut graph_rows = 0;
    let mut inserted = |done: usize, total: usize| {
        if total != graph_rows {
            graph_rows = total;
            progress.start("vectors", Some(total as u64));
            progress.message(&label);
        }
        progress.set_position(done as u64);
    };
    let mut job = Some((b, provenance_of));
    let published = store.publish(model, set, base, &mut |at| {
        let (b, provenance_of) = job.take().expect("a store writes a version once");
        tokio::task::block_in_place(|| b.write_with(at, params, provenance_of, &mut inserted))?;
        Ok(())
    })?;
    crate::faults::pause_point(crate::faults::INDEX_RENAMED);
    provenance.build_seconds = started.elapsed().as_secs_f64();
    Ok(Built {
        path: published.location,
        provenance,
        file_bytes: published.file_bytes,
        swept,
    })
}

/// The record of a calibration: one carried from the partition extended
/// keeps the query source it recorded; a new one on given queries names
/// `source`.
pub(crate) fn record_of(
    c: &stabspace_index::Calibration,
    base: &[CalibrationRecord],
    source: Option<&str>,
) -> CalibrationRecord {
    let new = CalibrationRecord::of(c, source);
    base.iter()
        .find(|r| {
            r.points == new.points
                && r.sample == new.sample
                && r.rows == new.rows
                && r.on_rows() == new.on_rows()
        })
        .cloned()
        .unwrap_or(new)
}

/// Said when a joint model has no states to calibrate on.
pub(crate) fn no_states_note(model: &str) -> String {
    format!(
        "no instrument states of {model} in the database: recall calibrated on held-out scenario rows only \
         (states are what users query with; after backfill-joint-stab-fragility-states, run `stabspace index \
         calibrate`)"
    )
}

/// A row's point-in-time attributes: its known-from day, shock type and severity.
fn row_attrs(types: &mut ShockTypes, row: &ScenarioVector) -> RowAttrs {
    types.attrs_adding(row.known_from, row.shock_type.as_deref(), row.severity.as_deref())
}

/// Rebuild one partition as `index rebuild` does, with its recorded
/// parameters: an append when the set only gained rows, else in full.
pub async fn rebuild(db: &Db, store: &dyn PartitionStore, model: &str, set: &str) -> Result<Built> {
    let params = recorded_params(store, model, set).unwrap_or_default();
    build(
        db,
        store,
        model,
        set,
        &params,
        BuildMode::AppendIfOnlyGained,
        &Quiet,
    )
    .await
}

impl std::fmt::Display for Built {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = &self.provenance;
        if let Some(note) = swept_note(&self.swept) {
            writeln!(f, "{note}")?;
        }
        writeln!(
            f,
            "index {} / {}: {} vectors, {:.1} MB, M {} ef_construction {}, built in {:.2} s → {}",
            p.model_id,
            p.scenario_set_id,
            p.rows,
            self.file_bytes as f64 / 1e6,
            p.params.m,
            p.params.ef_construction,
            p.build_seconds,
            self.path.display()
        )?;
        match (p.build, p.appended_rows, &p.full_build_reason) {
            (Some(BuildKind::Append), Some(n), _) => writeln!(
                f,
                "  appended {n} new row(s) to the existing graph (no row of it was changed or removed)"
            )?,
            (_, _, Some(why)) => writeln!(f, "  full build: {why}")?,
            _ => {}
        }
        write!(f, "{}", calibration_lines(p))?;
        if !p.skipped_zero.is_empty() {
            writeln!(f, "  left out {} all-zero vector(s)", p.skipped_zero.len())?;
        }
        for (id, why) in p.skipped_unusable.iter().take(5) {
            writeln!(f, "  left out scenario {id}: {why}")?;
        }
        if p.skipped_unusable.len() > 5 {
            writeln!(
                f,
                "  … and {} more unusable vector(s)",
                p.skipped_unusable.len() - 5
            )?;
        }
        Ok(())
    }
}

/// The calibrations a provenance records, one line each, the one queries
/// use marked; and why there is none on users' queries, when there is none.
pub fn calibration_lines(p: &Provenance) -> String {
    let mut out = String::new();
    let all: Vec<&CalibrationRecord> = if p.calibrations.is_empty() {
        p.calibration.iter().collect()
    } else {
        p.calibrations.iter().collect()
    };
    for c in all {
        let used = p.calibration.as_ref() == Some(c);
        out += &format!(
            "  recall calibration on {}: {}{}\n",
            c.describe(),
            c.summary(),
            if used { " (queries use it)" } else { "" }
        );
    }
    if let Some(note) = &p.calibration_note {
        out += &format!("  {note}\n");
    }
    out
}
