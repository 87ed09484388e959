//! Index partitions of the STAB scenario vectors: one memory-mapped file per
//! (joint model, scenario set) under `<data-dir>/index/`, built from
//! `joint_embeddings` and kept in step with it.
//!
//! Each file's provenance (a JSON object in its header, see `index/FORMAT.md`)
//! records the model, the set, the rows, the build parameters and time, and the
//! *fingerprint* of the source rows: their count, the set's change counters
//! and their latest `created_at`. Database triggers keep two counters per
//! (model, set) in `joint_scenario_versions`, whoever writes: `version`, bumped
//! on every insert, update or delete of a scenario vector (migration 0002), and
//! `rewrites`, bumped only on updates and deletes (migration 0006). A partition
//! is fresh when it is from this database and its recorded `version` is the
//! database's: one indexed row lookup ([`counters`]), never a scan of the set,
//! so queries stay O(1) at any set size. When `version` moved but `rewrites`
//! did not, the set only gained rows since the build ([`Fingerprint::change_since`]).

use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use stabspace_index::{
    BuildParams, Calibration, GraphBuilder, Partition, PartitionBuilder, Quantization, RECALL_TARGETS,
};

use crate::error::{Error, Result};
use crate::progress::{Progress, Quiet};
use crate::storage::{partition_counters, Db};
use crate::vector::DIM;

/// File extension of partition files.
pub const EXTENSION: &str = "stabidx";
/// Search breadth used when `--ef` is not given and the partition records no
/// recall calibration (format version 1): recall@10 0.91 on 100k vectors made
/// from real daily returns, 0.98 on the synthetic generator (README,
/// Benchmarks). Calibrated partitions use the breadth of `--recall`.
pub const DEFAULT_EF: usize = 128;

/// Where partitions live.
pub fn index_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("index")
}

/// A file-name-safe form of an id: unchanged when it is made of `[A-Za-z0-9._-]`,
/// otherwise the unsafe characters replaced and a hash of the id appended.
fn safe(id: &str) -> String {
    let clean: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean == id && !id.starts_with('.') && !id.is_empty() {
        clean
    } else {
        format!("{clean}~{:08x}", fnv1a(id.as_bytes()))
    }
}

fn fnv1a(b: &[u8]) -> u32 {
    // FNV-1a: stable across builds and platforms, enough to tell names apart.
    b.iter().fold(0x811c_9dc5u32, |h, &x| {
        (h ^ u32::from(x)).wrapping_mul(0x0100_0193)
    })
}

/// The partition file of (joint model, scenario set).
pub fn partition_path(index_dir: &Path, model: &str, set: &str) -> PathBuf {
    index_dir
        .join(safe(model))
        .join(format!("{}.{EXTENSION}", safe(set)))
}

/// What the database holds for a partition's source rows right now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub rows: i64,
    /// The set's `version` counter: every insert, update or delete.
    pub version: i64,
    pub latest_created_at: Option<String>,
    /// The set's `rewrites` counter: every update or delete, no insert
    /// (`None` in partitions built before it was recorded).
    #[serde(default)]
    pub rewrites: Option<i64>,
}

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} rows, change #{}", self.rows, self.version)?;
        if let Some(r) = self.rewrites {
            write!(f, " (rewrite #{r})")?;
        }
        write!(
            f,
            ", last written {}",
            self.latest_created_at.as_deref().unwrap_or("never")
        )
    }
}

/// The trigger-kept change counters of one (model, set) in
/// `joint_scenario_versions`; both 0 when the set has never been written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Bumped by every insert, update or delete of a STAB scenario vector.
    pub version: i64,
    /// Bumped by every update or delete, never by an insert.
    pub rewrites: i64,
}

impl std::fmt::Display for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "change #{} (rewrite #{})", self.version, self.rewrites)
    }
}

/// What happened to a set's scenario vectors since a partition was built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Nothing: the partition holds what the database holds.
    None,
    /// Rows were inserted and none was updated or deleted.
    OnlyAdded,
    /// Some row was updated or deleted (or the partition does not record
    /// `rewrites`, so that cannot be ruled out).
    Rewritten,
}

impl Fingerprint {
    /// Whether a partition built from `self` holds what the database holds
    /// now: the same `version` counter. (Whether it is from this database is
    /// [`Provenance::is_from`].)
    pub fn is_current(&self, now: Counters) -> bool {
        self.version == now.version
    }

    /// What changed since the partition was built, in O(1): a `version` that
    /// moved while `rewrites` did not means only inserts happened.
    pub fn change_since(&self, now: Counters) -> Change {
        if self.is_current(now) {
            Change::None
        } else if self.rewrites == Some(now.rewrites) {
            Change::OnlyAdded
        } else {
            Change::Rewritten
        }
    }
}

/// The change counters of (model, set): one indexed row lookup.
pub async fn counters(db: &Db, model: &str, set: &str) -> Result<Counters> {
    let row = partition_counters::counters(db, model, set).await?;
    Ok(row.map_or(Counters::default(), |r| Counters {
        version: r.version,
        rewrites: r.rewrites,
    }))
}

/// The counters and a count of the set's rows: a scan of the set, for builds
/// and `index status`, never for queries of a fresh partition.
pub async fn fingerprint(db: &Db, model: &str, set: &str) -> Result<Fingerprint> {
    // The counters first: a write between the two reads makes the
    // fingerprint look older, never newer, than the rows counted.
    let now = counters(db, model, set).await?;
    let (rows, latest) = partition_counters::scenario_rows(db, model, set).await?;
    Ok(Fingerprint {
        rows,
        version: now.version,
        latest_created_at: latest,
        rewrites: Some(now.rewrites),
    })
}

/// The build parameters as recorded in the provenance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedParams {
    pub m: usize,
    pub ef_construction: usize,
    pub seed: u64,
    pub deterministic: bool,
    /// `stabspace` or `hnsw_rs` (`None`: built before it was recorded, by hnsw_rs).
    #[serde(default)]
    pub builder: Option<String>,
    /// `int8-per-dimension`, `int8-global` or `none` (`None`: built before it
    /// was recorded, without quantised codes; rebuilt with the default).
    #[serde(default)]
    pub quantization: Option<String>,
}

impl RecordedParams {
    /// The parameters to build with again (an unrecorded builder: ours).
    pub fn build_params(&self) -> BuildParams {
        BuildParams {
            m: self.m,
            ef_construction: self.ef_construction,
            seed: self.seed,
            deterministic: self.deterministic,
            builder: match self.builder.as_deref() {
                Some("hnsw_rs") => GraphBuilder::HnswRs,
                _ => GraphBuilder::Native,
            },
            quantization: self
                .quantization
                .as_deref()
                .and_then(Quantization::parse)
                .unwrap_or_default(),
            ..BuildParams::default()
        }
    }

    pub fn of(p: &BuildParams) -> RecordedParams {
        RecordedParams {
            m: p.m,
            ef_construction: p.ef_construction,
            seed: p.seed,
            deterministic: p.deterministic,
            builder: Some(p.builder.name().to_string()),
            quantization: Some(p.quantization.name().to_string()),
        }
    }
}

/// How a partition was made from its predecessor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BuildKind {
    /// Every row inserted into a new graph.
    Full,
    /// The rows new since the previous partition inserted into its graph.
    Append,
}

/// The recall calibration as the provenance records it: the smallest
/// measured `ef` reaching each target recall@k (`None`: not reached by the
/// largest breadth measured), and every measured point.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CalibrationRecord {
    pub k: usize,
    /// Rows of the partition used as held-out queries.
    pub sample: usize,
    /// Rows in the graph when it was measured (a small append keeps the
    /// calibration of the graph it extends).
    #[serde(default)]
    pub rows: usize,
    /// Target recall ("0.90") → smallest ef reaching it.
    pub ef_for_recall: std::collections::BTreeMap<String, Option<usize>>,
    /// (ef, recall) measured.
    pub points: Vec<(usize, f64)>,
}

impl CalibrationRecord {
    pub fn of(c: &Calibration) -> CalibrationRecord {
        CalibrationRecord {
            k: c.k,
            sample: c.sample,
            rows: c.rows,
            ef_for_recall: RECALL_TARGETS
                .iter()
                .map(|&t| (format!("{t:.2}"), c.ef_for(t)))
                .collect(),
            points: c
                .points
                .iter()
                .map(|&(ef, r)| (ef, (r * 1e4).round() / 1e4))
                .collect(),
        }
    }

    /// "ef 24/48/128/256 for recall@10 0.90/0.95/0.98/0.99".
    pub fn summary(&self) -> String {
        let efs: Vec<String> = self
            .ef_for_recall
            .values()
            .map(|e| e.map_or("-".into(), |e| e.to_string()))
            .collect();
        let targets: Vec<&str> = self.ef_for_recall.keys().map(String::as_str).collect();
        format!("ef {} for recall@{} {}", efs.join("/"), self.k, targets.join("/"))
    }
}

/// The provenance JSON stored in each partition's header.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    pub model_id: String,
    pub scenario_set_id: String,
    pub rows: usize,
    /// Scenarios left out for an all-zero vector.
    pub skipped_zero: Vec<String>,
    /// Scenarios left out for a vector that cannot be used (a stored blob of
    /// another length, a non-finite value), with the reason.
    #[serde(default)]
    pub skipped_unusable: Vec<(String, String)>,
    /// The feature space of the vectors (`None`: not recorded).
    #[serde(default)]
    pub feature_space: Option<String>,
    /// Whether the build read the rows' feature spaces, so that a `None`
    /// above means the rows record none. False in partitions built before
    /// that was recorded: queries then ask the database (a scan of the set).
    #[serde(default)]
    pub spaces_read: bool,
    pub fingerprint: Fingerprint,
    pub params: RecordedParams,
    pub built_at: String,
    pub build_seconds: f64,
    /// The id of the database the rows came from (`stabspace_meta`); `None`
    /// in partitions built before it was recorded, which are never used.
    #[serde(default)]
    pub database_id: Option<String>,
    /// Full build or append (`None`: built before it was recorded, full).
    #[serde(default)]
    pub build: Option<BuildKind>,
    /// Rows inserted by an append.
    #[serde(default)]
    pub appended_rows: Option<usize>,
    /// Why the build was full when an append was allowed.
    #[serde(default)]
    pub full_build_reason: Option<String>,
    /// Recall of the graph per search breadth, measured at build time.
    #[serde(default)]
    pub calibration: Option<CalibrationRecord>,
}

impl Provenance {
    /// Whether the partition was built from the database with this id.
    pub fn is_from(&self, database_id: &str) -> bool {
        self.database_id.as_deref() == Some(database_id)
    }

    pub fn of(p: &Partition) -> Result<Provenance> {
        let text = p.provenance()?;
        serde_json::from_str(text).map_err(|e| {
            Error::Invalid(format!(
                "{}: provenance is not a stabspace partition record ({e}); rebuild it with `stabspace index build`",
                p.path().display()
            ))
        })
    }
}

/// The feature spaces recorded on a set's scenario vectors, counted.
#[derive(Default)]
pub struct SpaceTally(std::collections::BTreeMap<String, usize>);

impl SpaceTally {
    /// Count `rows` vectors of `space` (`None`: not recorded, not counted).
    pub fn add(&mut self, space: Option<&str>, rows: usize) {
        if let Some(s) = space {
            *self.0.entry(s.to_string()).or_default() += rows;
        }
    }

    /// The one recorded space, none, or an error when the set mixes spaces.
    pub fn one(self, model: &str, set: &str) -> Result<Option<String>> {
        if self.0.len() > 1 {
            let parts: Vec<String> = self.0.iter().map(|(s, n)| format!("{n} in {s}")).collect();
            return Err(Error::Invalid(format!(
                "the scenario vectors of set {set:?} under {model} mix feature spaces ({}); re-run \
                 `stabspace backfill-numeric-scenario-embeddings` and `backfill-joint-stab-fragility-scenarios` \
                 for the whole set with one scenario encoder",
                parts.join(", ")
            )));
        }
        Ok(self.0.into_keys().next())
    }
}

/// What a build did.
#[derive(Clone, Debug)]
pub struct Built {
    pub path: PathBuf,
    pub provenance: Provenance,
    pub file_bytes: u64,
    /// Temporary files of killed builds removed first ([`sweep_temp_files`]).
    pub swept: Vec<PathBuf>,
}

/// Remove the temporary files that builds killed part-way left in any model
/// directory under `index_dir` (`.SET.stabidx.tmp.PID.N` of a process that
/// is gone; see `stabspace_index::tempfiles`). Returns the paths removed.
pub fn sweep_temp_files(index_dir: &Path) -> Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    let models = match std::fs::read_dir(index_dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(removed),
        Err(e) => return Err(Error::io(index_dir, e)),
    };
    for m in models {
        let m = m.map_err(|e| Error::io(index_dir, e))?.path();
        if m.is_dir() {
            removed.extend(stabspace_index::tempfiles::sweep(&m)?);
        }
    }
    removed.sort();
    Ok(removed)
}

/// What [`sweep_temp_files`] removed, in words: one line, or none.
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

/// The build parameters a partition file records (its provenance's, or its
/// header's when the provenance is not a stabspace record), for a rebuild
/// that keeps them. `None` when there is no file or it cannot be opened.
pub fn recorded_params(path: &Path) -> Option<BuildParams> {
    let p = Partition::open(path).ok()?;
    let params = match Provenance::of(&p) {
        Ok(prov) => prov.params.build_params(),
        Err(_) => {
            let i = p.info();
            BuildParams {
                m: i.m as usize,
                ef_construction: i.ef_construction as usize,
                seed: i.seed,
                deterministic: i.deterministic,
                ..BuildParams::default()
            }
        }
    };
    let usable = (2..=stabspace_index::MAX_M).contains(&params.m) && params.ef_construction >= 1;
    usable.then_some(params)
}

/// Whether a rebuild may insert only the new rows into the existing graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuildMode {
    /// Build the graph from every row.
    Full,
    /// Append when the set has only gained rows since the partition was
    /// built (see [`build`]); else build in full.
    AppendIfOnlyGained,
}

/// What a status or a rebuild needs of a readable partition file, read once
/// (header, section table, provenance: constant work).
#[derive(Clone, Debug)]
pub struct FileSummary {
    pub prov: Provenance,
    pub file_bytes: u64,
    /// The format version.
    pub version: u32,
    /// What graph searches traverse (`None`: no graph).
    pub traversal: Option<&'static str>,
    pub row_hashes: bool,
    pub graph: bool,
}

impl FileSummary {
    pub fn of(p: &Partition, prov: Provenance) -> FileSummary {
        let info = p.info();
        FileSummary {
            prov,
            file_bytes: info.file_bytes,
            version: info.version,
            traversal: p.has_graph().then(|| info.quantized.unwrap_or("f32")),
            row_hashes: p.row_hashes().is_some(),
            graph: p.has_graph(),
        }
    }
}

/// Why the existing partition cannot be extended with `params`; `None` when
/// it can (its rows must still be compared with the database's).
fn not_extendable(f: &FileSummary, database_id: &str, params: &BuildParams) -> Option<String> {
    let (prov, recorded) = (&f.prov, &f.prov.params);
    if !prov.is_from(database_id) {
        Some("the partition was built from another database".into())
    } else if !f.row_hashes {
        Some(format!(
            "the partition is in format version {}, without row hashes",
            f.version
        ))
    } else if !f.graph {
        Some("the partition has no graph (it was below the graph threshold)".into())
    } else if params.builder != GraphBuilder::Native {
        Some(format!(
            "the {} builder always builds in full",
            params.builder.name()
        ))
    } else if recorded.m != params.m
        || recorded.ef_construction != params.ef_construction
        || recorded.deterministic != params.deterministic
        || recorded.seed != params.seed
    {
        Some(format!(
            "the build parameters changed (M {} ef_construction {} deterministic {} → M {} ef_construction {} \
             deterministic {})",
            recorded.m,
            recorded.ef_construction,
            recorded.deterministic,
            params.m,
            params.ef_construction,
            params.deterministic
        ))
    } else {
        None
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
    index_dir: &Path,
    model: &str,
    set: &str,
    params: &BuildParams,
    mode: BuildMode,
    progress: &dyn Progress,
) -> Result<Built> {
    progress.start("vectors", None);
    progress.message(&format!("index {model} / {set}: reading the vectors"));
    let built = build_partition(db, index_dir, model, set, params, mode, progress).await;
    progress.finish();
    built
}

async fn build_partition(
    db: &Db,
    index_dir: &Path,
    model: &str,
    set: &str,
    params: &BuildParams,
    mode: BuildMode,
    progress: &dyn Progress,
) -> Result<Built> {
    let started = Instant::now();
    let swept = sweep_temp_files(index_dir)?;
    let database_id = crate::storage::meta::database_id(db).await?;
    // The fingerprint first: a write during the read makes the partition look
    // stale (and be rebuilt), never fresh with old content.
    let fp = fingerprint(db, model, set).await?;
    let path = partition_path(index_dir, model, set);
    let mut full_reason = None;
    let existing = match mode {
        BuildMode::Full => None,
        BuildMode::AppendIfOnlyGained if !path.exists() => None,
        BuildMode::AppendIfOnlyGained => {
            match Partition::open(&path).map_err(Error::from).and_then(|p| {
                let prov = Provenance::of(&p)?;
                Ok((p, prov))
            }) {
                Err(e) => {
                    full_reason = Some(format!("the partition cannot be read ({e})"));
                    None
                }
                Ok((p, prov)) => match not_extendable(&FileSummary::of(&p, prov), &database_id, params) {
                    Some(why) => {
                        full_reason = Some(why);
                        None
                    }
                    None => Some(p),
                },
            }
        }
    };

    let mut b = None;
    let mut scan = None;
    if let Some(p) = existing {
        // Rows of the partition still in the database unchanged, and the new ones.
        let stored: std::collections::HashSet<u64> =
            p.row_hashes().expect("checked").iter().copied().collect();
        let mut matched = 0usize;
        let mut fresh: Vec<(String, String, Vec<f32>)> = Vec::new();
        let s = crate::nearest::scan_scenarios(db, model, set, |id, as_of, v| {
            let date = as_of.to_string();
            if stored.contains(&stabspace_index::row_hash(id, v, date.as_bytes())) {
                matched += 1;
            } else {
                fresh.push((id.to_string(), date, v.to_vec()));
            }
            Ok(())
        })
        .await?;
        if matched == p.len() && stored.len() == p.len() {
            let mut ext = PartitionBuilder::extending(&p, fresh.len())?;
            for (id, date, v) in &fresh {
                ext.add(id, v, date.as_bytes())?;
            }
            b = Some(ext);
            scan = Some(s);
        } else {
            full_reason = Some(format!(
                "{} of the partition's {} rows were changed or removed in the database",
                p.len() - matched.min(p.len()),
                p.len()
            ));
        }
    }
    let (b, scan) = match (b, scan) {
        (Some(b), Some(s)) => (b, s),
        _ => {
            let mut b = PartitionBuilder::with_capacity(DIM, fp.rows.max(0) as usize)?;
            let s = crate::nearest::scan_scenarios(db, model, set, |id, as_of, v| {
                b.add(id, v, as_of.to_string().as_bytes()).map(|_| ())
            })
            .await?;
            (b, s)
        }
    };
    crate::faults::pause_point(crate::faults::INDEX_BEFORE_WRITE);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
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
    };
    let (path2, params2) = (path.clone(), params.clone());
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
        p.calibration = outcome.calibration.map(CalibrationRecord::of);
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
    tokio::task::block_in_place(|| b.write_with(&path2, &params2, provenance_of, &mut inserted))?;
    crate::faults::pause_point(crate::faults::INDEX_RENAMED);
    provenance.build_seconds = started.elapsed().as_secs_f64();
    let file_bytes = std::fs::metadata(&path).map_err(|e| Error::io(&path, e))?.len();
    Ok(Built {
        path,
        provenance,
        file_bytes,
        swept,
    })
}

/// A partition's state against the database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freshness {
    Fresh,
    Stale,
    /// The database has scenario vectors but no partition file exists.
    Missing,
    /// The file exists but cannot be read.
    Unreadable,
    /// A partition of a (model, set) with no rows left in the database.
    Orphaned,
    /// A partition built from another database (or one that does not record
    /// its database): never used by queries here.
    Foreign,
}

impl Freshness {
    pub fn label(self) -> &'static str {
        match self {
            Freshness::Fresh => "fresh",
            Freshness::Stale => "stale",
            Freshness::Missing => "missing",
            Freshness::Unreadable => "unreadable",
            Freshness::Orphaned => "orphaned",
            Freshness::Foreign => "other-database",
        }
    }
}

/// The scenario date of a row, from the partition's payload.
pub fn scenario_as_of(p: &Partition, row: usize) -> Result<NaiveDate> {
    let bytes = p.payload(row)?;
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
        .ok_or_else(|| {
            Error::Invalid(format!(
                "{}: row {row} has no scenario date in its payload; rebuild it with `stabspace index build`",
                p.path().display()
            ))
        })
}

/// Every partition file under `index_dir`, sorted.
pub fn files(index_dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let Ok(models) = std::fs::read_dir(index_dir) else {
        return Ok(out);
    };
    for m in models {
        let m = m.map_err(|e| Error::io(index_dir, e))?.path();
        if !m.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&m).map_err(|e| Error::io(&m, e))? {
            let f = f.map_err(|e| Error::io(&m, e))?.path();
            if f.extension().is_some_and(|e| e == EXTENSION) {
                out.push(f);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// (model, set) pairs with STAB scenario vectors in the database.
pub async fn sources(db: &Db) -> Result<Vec<(String, String)>> {
    partition_counters::sources(db).await
}

/// One line of `index status`.
#[derive(Clone, Debug)]
pub struct Status {
    pub model_id: String,
    pub scenario_set_id: String,
    pub state: Freshness,
    pub path: PathBuf,
    pub provenance: Option<Provenance>,
    pub file_bytes: Option<u64>,
    pub database: Option<Fingerprint>,
    pub detail: String,
    /// Format version of the file.
    pub format_version: Option<u32>,
    /// What graph searches traverse: the quantisation of the file's codes,
    /// or `f32` without them (`None`: no readable file, or no graph).
    pub traversal: Option<&'static str>,
    /// What `index rebuild` (without `--full`) will do: "none", "append N
    /// rows" or "full: why".
    pub next_rebuild: String,
}

/// The state of one (model, set) partition against the database.
pub async fn status_of(db: &Db, index_dir: &Path, model: &str, set: &str) -> Result<Status> {
    let path = partition_path(index_dir, model, set);
    let now = fingerprint(db, model, set).await?;
    let database_id = crate::storage::meta::database_id(db).await?;
    let mut st = Status {
        model_id: model.to_string(),
        scenario_set_id: set.to_string(),
        state: Freshness::Missing,
        path: path.clone(),
        provenance: None,
        file_bytes: None,
        database: Some(now.clone()),
        detail: String::new(),
        format_version: None,
        traversal: None,
        next_rebuild: "full: no partition".into(),
    };
    if !path.exists() {
        st.detail = format!("no file; the database has {}", now);
        return Ok(st);
    }
    // Checksums too: a damaged file is not fresh, whatever its header says.
    match Partition::open(&path).map_err(Error::from).and_then(|p| {
        p.verify()?;
        let prov = Provenance::of(&p)?;
        Ok((p, prov))
    }) {
        Err(e) => {
            st.state = Freshness::Unreadable;
            st.detail = e.to_string();
            st.next_rebuild = "full: the file cannot be read".into();
        }
        Ok((p, prov)) => readable_status(&mut st, &FileSummary::of(&p, prov), &now, &database_id),
    }
    Ok(st)
}

/// Fill in `st` for a readable partition file against the database's
/// fingerprint `now`: its state, detail and next rebuild (`index status`,
/// and the server's `GET /v1/partitions` from the summary it read once).
pub fn readable_status(st: &mut Status, f: &FileSummary, now: &Fingerprint, database_id: &str) {
    let prov = &f.prov;
    st.file_bytes = Some(f.file_bytes);
    st.format_version = Some(f.version);
    st.traversal = f.traversal;
    st.state = if !prov.is_from(database_id) {
        Freshness::Foreign
    } else if now.rows == 0 {
        Freshness::Orphaned
    } else if prov.fingerprint.version == now.version {
        // The rule of `Fingerprint::is_current`, which queries use.
        Freshness::Fresh
    } else {
        Freshness::Stale
    };
    st.detail = match st.state {
        Freshness::Fresh => String::new(),
        Freshness::Orphaned => "the database has no scenario vectors of this (model, set)".into(),
        Freshness::Foreign => format!(
            "{}; queries scan the database exactly until it is rebuilt",
            foreign_reason(prov, database_id)
        ),
        _ => format!("built from {}; the database has {}", prov.fingerprint, now),
    };
    st.next_rebuild = next_rebuild(f, st.state, now, database_id);
    st.provenance = Some(prov.clone());
}

/// What `index rebuild` will do with a readable partition in `state`,
/// predicted from the change counters in O(1) (the rebuild itself decides by
/// comparing row hashes).
fn next_rebuild(f: &FileSummary, state: Freshness, now: &Fingerprint, database_id: &str) -> String {
    let prov = &f.prov;
    let counters = Counters {
        version: now.version,
        rewrites: now.rewrites.unwrap_or(0),
    };
    // `index rebuild` keeps the recorded parameters: the rules of `build`.
    let not_extendable = not_extendable(f, database_id, &prov.params.build_params());
    match (state, not_extendable) {
        (Freshness::Fresh, _) => "none".into(),
        (Freshness::Orphaned, _) => "none: no rows left (drop it with `index drop`)".into(),
        (_, Some(why)) => format!("full: {why}"),
        (_, None) => match prov.fingerprint.change_since(counters) {
            Change::None => "none".into(),
            Change::OnlyAdded => format!("append {} row(s)", (now.rows - prov.fingerprint.rows).max(0)),
            Change::Rewritten => "full: rows were changed or removed".into(),
        },
    }
}

/// Why a partition is not this database's: "built from another database (…)".
pub fn foreign_reason(prov: &Provenance, database_id: &str) -> String {
    match &prov.database_id {
        Some(id) => format!("built from another database (id {id}; this database is {database_id})"),
        None => "built before partitions recorded their database, so it cannot be matched to this one".into(),
    }
}

/// Status of every partition on disk and every (model, set) in the database.
pub async fn status_all(db: &Db, index_dir: &Path) -> Result<Vec<Status>> {
    let mut pairs = sources(db).await?;
    for f in files(index_dir)? {
        if let Ok(prov) = Partition::open(&f)
            .map_err(Error::from)
            .and_then(|p| Provenance::of(&p))
        {
            pairs.push((prov.model_id, prov.scenario_set_id));
        }
    }
    pairs.sort();
    pairs.dedup();
    let mut out = Vec::new();
    for (m, s) in pairs {
        out.push(status_of(db, index_dir, &m, &s).await?);
    }
    // Files that cannot even be opened, under names no (model, set) maps to.
    for f in files(index_dir)? {
        if !out.iter().any(|s| s.path == f) {
            let e = Partition::open(&f)
                .err()
                .map_or("not a partition of this database".into(), |e| e.to_string());
            out.push(Status {
                model_id: String::new(),
                scenario_set_id: String::new(),
                state: Freshness::Unreadable,
                path: f,
                provenance: None,
                file_bytes: None,
                database: None,
                detail: e,
                format_version: None,
                traversal: None,
                next_rebuild: "none: not a partition of this database".into(),
            });
        }
    }
    Ok(out)
}

/// The partitions of this database that the database has moved past: a
/// readable file whose set's change counter differs from the one it was
/// built at. Constant work per partition (header, provenance, one counter
/// row), so `serve --rebuild-stale` can ask often.
pub async fn stale_partitions(db: &Db, index_dir: &Path) -> Result<Vec<(String, String)>> {
    let database_id = crate::storage::meta::database_id(db).await?;
    let mut out = Vec::new();
    for (model, set) in sources(db).await? {
        let path = partition_path(index_dir, &model, &set);
        if !path.exists() {
            continue;
        }
        let Ok(prov) = Partition::open(&path)
            .map_err(Error::from)
            .and_then(|p| Provenance::of(&p))
        else {
            continue;
        };
        if prov.is_from(&database_id) && !prov.fingerprint.is_current(counters(db, &model, &set).await?) {
            out.push((model, set));
        }
    }
    Ok(out)
}

/// Rebuild one partition as `index rebuild` does, with its recorded
/// parameters: an append when the set only gained rows, else in full.
pub async fn rebuild(db: &Db, index_dir: &Path, model: &str, set: &str) -> Result<Built> {
    let params = recorded_params(&partition_path(index_dir, model, set)).unwrap_or_default();
    build(
        db,
        index_dir,
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
        if let Some(c) = &p.calibration {
            writeln!(
                f,
                "  recall calibration ({} rows as held-out queries): {}",
                c.sample,
                c.summary()
            )?;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A provenance as partitions built before `rewrites` and `spaces_read`
    /// write it still reads: the counter unrecorded (so no append can be
    /// assumed), the spaces not read (so queries ask the database).
    #[test]
    fn provenance_of_earlier_partitions_still_reads() {
        let old = r#"{"model_id":"m","scenario_set_id":"s","rows":2,"skipped_zero":[],
            "skipped_unusable":[],"feature_space":null,
            "fingerprint":{"rows":2,"version":7,"latest_created_at":"2025-01-01 00:00:00"},
            "params":{"m":16,"ef_construction":200,"seed":24301,"deterministic":false},
            "built_at":"2025-01-01T00:00:00Z","build_seconds":0.1,"database_id":"abc"}"#;
        let p: Provenance = serde_json::from_str(old).unwrap();
        assert_eq!((p.fingerprint.rewrites, p.spaces_read), (None, false));
        let now = Counters {
            version: 7,
            rewrites: 3,
        };
        assert!(p.fingerprint.is_current(now));
        assert_eq!(p.fingerprint.change_since(now), Change::None);
        let later = Counters { version: 9, ..now };
        assert_eq!(p.fingerprint.change_since(later), Change::Rewritten);
    }

    #[test]
    fn paths_keep_safe_ids_and_disambiguate_others() {
        let d = Path::new("/d");
        assert_eq!(
            partition_path(d, "joint-stab-fragility-v1", "MC_STRESS_V0"),
            Path::new("/d/joint-stab-fragility-v1/MC_STRESS_V0.stabidx")
        );
        let a = partition_path(d, "m", "a/b");
        let b = partition_path(d, "m", "a_b");
        assert_ne!(a, b);
        assert!(a.parent() == Some(Path::new("/d/m")), "{}", a.display());
        assert!(!partition_path(d, "m", "..").starts_with("/d/.."));
    }
}
