//! Nearest scenarios: the STAB scenario vectors of one (joint model, scenario
//! set), searched by cosine, with each hit's scenario date.
//!
//! When the (model, set) has an index partition (see [`crate::partitions`]),
//! queries run against the memory-mapped file: approximate top-k on the HNSW
//! graph with breadth `ef`, then an exact f64 re-rank (or an exact scan of the
//! file with `--exact`). A stale partition is used with a warning; a missing or
//! unreadable one falls back to reading the vectors from `joint_embeddings`
//! and scanning them exactly, with a note. Hits look the same either way.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::NaiveDate;
use stabspace_index::{FlatIndex, Partition};

use crate::encoders::describe_space;
use crate::error::{Error, Result};
use crate::partitions::{
    self, counters, fingerprint, partition_path, scenario_as_of, Change, Counters, Provenance, SpaceTally,
    DEFAULT_EF,
};
use crate::storage::joint::{
    joint_scenario_keys, joint_scenarios_by_ids, joint_scenarios_page, scenario_spaces,
};
use crate::storage::Db;
use crate::vector::{self, DIM};

/// A partition file opened for searching, with its provenance (`None`: a
/// file the index commands did not write). Derefs to the [`Partition`].
pub struct OpenPartition {
    pub partition: Partition,
    pub provenance: Option<Provenance>,
    /// The rows the database has gained since this file was built, as last
    /// read (keyed by the set's change counter): shared by the queries that
    /// open this file through one [`PartitionSource`].
    delta: std::sync::Mutex<Option<Arc<Delta>>>,
}

impl OpenPartition {
    /// Open `path`; `quantized = false` traverses its graph on the f32 vectors.
    pub fn open(path: &Path, quantized: bool) -> Result<OpenPartition> {
        let mut partition = Partition::open(path)?;
        partition.set_quantized(quantized);
        let provenance = Provenance::of(&partition).ok();
        Ok(OpenPartition {
            partition,
            provenance,
            delta: std::sync::Mutex::new(None),
        })
    }

    /// The provenance, when the file holds the scenario vectors of (model, set)
    /// in the joint space's dimension: what [`open_checked`] checks.
    pub fn checked(&self, model: &str, set: &str) -> Result<&Provenance> {
        let path = self.partition.path();
        let Some(prov) = &self.provenance else {
            return Err(Error::Invalid(format!(
                "{}: records no scenario set (not written by `stabspace index build`)",
                path.display()
            )));
        };
        check_holds(path, &self.partition, prov, model, set)?;
        Ok(prov)
    }
}

impl std::fmt::Debug for OpenPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OpenPartition({})", self.partition.path().display())
    }
}

impl std::ops::Deref for OpenPartition {
    type Target = Partition;
    fn deref(&self) -> &Partition {
        &self.partition
    }
}

/// Where partition files come from: opened by each query (the CLI), or from
/// a cache shared by many queries (`stabspace serve`).
pub trait PartitionSource: Send + Sync + std::fmt::Debug {
    /// The current file at `path`, traversed on int8 codes when `quantized`.
    fn open(&self, path: &Path, quantized: bool) -> Result<std::sync::Arc<OpenPartition>>;
}

/// How queries search: where partitions live (none: always from the
/// database), the search breadth, and whether to scan exactly.
#[derive(Clone, Debug, Default)]
pub struct SearchOpts {
    /// Where partition files are opened from (`None`: each query opens its own).
    pub source: Option<std::sync::Arc<dyn PartitionSource>>,
    pub index_dir: Option<PathBuf>,
    pub ef: Option<usize>,
    /// Target recall@10 when `ef` is not given (`None`: [`DEFAULT_RECALL`]).
    pub recall: Option<f64>,
    pub exact: bool,
    /// Traverse the graph on the f32 vectors even where the partition has int8 codes.
    pub no_quantized: bool,
}

/// The recall@10 a graph search aims at when neither `--ef` nor `--recall` is given.
pub const DEFAULT_RECALL: f64 = 0.95;

/// The breadth that meets `recall` on partition `p` by its build-time
/// calibration, and a note when it cannot be met or was not measured.
pub fn calibrated_ef(p: &Partition, recall: f64) -> Result<(usize, Option<String>)> {
    let Some(c) = p.calibration()? else {
        return Ok((
            DEFAULT_EF,
            p.has_graph().then(|| {
                format!(
                    "note: index partition {} records no recall calibration (format version {}); searching \
                     with ef {DEFAULT_EF} — rebuild it with `stabspace index rebuild --full` to calibrate",
                    p.path().display(),
                    p.info().version
                )
            }),
        ));
    };
    match c.ef_for(recall) {
        Some(ef) => Ok((ef, None)),
        None => {
            let (ef, best) = c.points.last().copied().unwrap_or((DEFAULT_EF, 0.0));
            Ok((
                ef,
                Some(format!(
                    "warning: no breadth measured on index partition {} reaches recall@{} {recall} (the best, ef \
                     {ef}, reached {best:.3}); searching with ef {ef} — pass --exact for exact answers",
                    p.path().display(),
                    c.k
                )),
            ))
        }
    }
}

/// How an answer was produced: what every front end reports with its hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AnsweredBy {
    /// The partition alone: it holds what the database holds.
    Index,
    /// The partition, and an exact scan of the rows the database gained since
    /// it was built, merged and ranked together.
    IndexDelta,
    /// An exact scan of every row (the database's, or with `--exact` on a
    /// raw partition route, of the set as the database holds it).
    ExactScan,
}

impl AnsweredBy {
    pub fn label(self) -> &'static str {
        match self {
            AnsweredBy::Index => "index",
            AnsweredBy::IndexDelta => "index+delta",
            AnsweredBy::ExactScan => "exact-scan",
        }
    }
}

impl std::fmt::Display for AnsweredBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// How a query was answered, and whether the set's partition was stale: the
/// two trailing columns of every answer (`answered_by`, `partition_stale`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answer {
    pub by: AnsweredBy,
    pub partition_stale: bool,
}

/// The most rows a stale partition's delta may hold before queries stop
/// scanning it next to the graph and scan the whole set from the database
/// instead: a tenth of the partition's rows, and at least [`DELTA_MIN`]. Past
/// a tenth a rebuild appends no more (it builds in full), and the delta scan
/// costs more than the graph search it accompanies.
pub fn delta_limit(partition_rows: usize) -> usize {
    (partition_rows / 10).max(DELTA_MIN)
}

/// The smallest delta limit: an exact scan of 2,000 rows costs about as much
/// as one graph search at a wide breadth.
pub const DELTA_MIN: usize = 2_000;

/// The scenario vectors a partition lacks: rows the database gained since
/// it was built, scanned exactly.
pub struct Delta {
    /// The set's change counter the delta was read at.
    version: i64,
    index: FlatIndex,
    as_of: Vec<NaiveDate>,
}

impl Delta {
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }
}

/// Why a stale partition is not searched, or how many rows its delta adds.
enum DeltaRead {
    Delta(Arc<Delta>),
    /// More rows are missing than [`delta_limit`] allows.
    TooMany {
        missing: usize,
        limit: usize,
    },
}

/// The rows of (model, set) that partition `p` lacks, when the set has only
/// gained rows since `p` was built (`Change::OnlyAdded`): the set's keys are
/// read without their vectors, compared with the partition's ids and dates,
/// and only the missing rows' vectors are read. Kept on the partition for
/// the next query at the same counter.
async fn read_delta(
    db: &Db,
    p: &OpenPartition,
    prov: &Provenance,
    model: &str,
    set: &str,
    now: Counters,
) -> Result<DeltaRead> {
    if let Some(d) = p.delta.lock().expect("delta lock").as_ref() {
        if d.version == now.version {
            return Ok(DeltaRead::Delta(Arc::clone(d)));
        }
    }
    let part = &p.partition;
    let limit = delta_limit(part.len());
    // With no update or delete since the build, every bump of the change
    // counter is one inserted row: a delta too large is known without a read.
    let gained = usize::try_from(now.version - prov.fingerprint.version).unwrap_or(0);
    if gained > limit {
        return Ok(DeltaRead::TooMany {
            missing: gained,
            limit,
        });
    }
    let keys = joint_scenario_keys(db, model, set).await?;
    let mut have: std::collections::HashSet<(&str, &[u8])> =
        std::collections::HashSet::with_capacity(part.len());
    for row in 0..part.len() {
        have.insert((part.id(row)?, part.payload(row)?));
    }
    // Rows the build left out (all-zero or unusable vectors) are not missing.
    let skipped: std::collections::HashSet<&str> = prov
        .skipped_zero
        .iter()
        .map(String::as_str)
        .chain(prov.skipped_unusable.iter().map(|(id, _)| id.as_str()))
        .collect();
    let mut missing: Vec<String> = keys
        .iter()
        .filter(|(id, date)| {
            !skipped.contains(id.as_str()) && !have.contains(&(id.as_str(), date.to_string().as_bytes()))
        })
        .map(|(id, _)| id.clone())
        .collect();
    if missing.len() > limit {
        return Ok(DeltaRead::TooMany {
            missing: missing.len(),
            limit,
        });
    }
    missing.sort_unstable();
    missing.dedup();
    let mut index = FlatIndex::with_capacity(DIM, missing.len())?;
    let mut as_of = Vec::with_capacity(missing.len());
    let mut spaces = SpaceTally::default();
    if let Some(space) = &prov.feature_space {
        spaces.add(Some(space), part.len());
    }
    for s in joint_scenarios_by_ids(db, model, set, &missing).await? {
        if have.contains(&(s.scenario_id.as_str(), s.as_of.to_string().as_bytes())) {
            continue;
        }
        spaces.add(s.feature_space.as_deref(), 1);
        match vector::usable(&s.vector) {
            Ok(v) => {
                index.add(&s.scenario_id, &v).map_err(|e| {
                    Error::Invalid(format!(
                        "scenario {} of set {set} under {model}: {e}",
                        s.scenario_id
                    ))
                })?;
                as_of.push(s.as_of);
            }
            Err(why) => eprintln!(
                "note: scenario {} of {set}, added since the partition was built, is left out: {why}",
                s.scenario_id
            ),
        }
    }
    // A gained row of another feature space is the mixed-space error.
    spaces.one(model, set)?;
    let d = Arc::new(Delta {
        version: now.version,
        index,
        as_of,
    });
    *p.delta.lock().expect("delta lock") = Some(Arc::clone(&d));
    Ok(DeltaRead::Delta(d))
}

enum Engine {
    Partition {
        p: Arc<OpenPartition>,
        /// The rows the database gained since the partition was built.
        delta: Option<Arc<Delta>>,
    },
    Flat {
        index: FlatIndex,
        as_of: Vec<NaiveDate>,
    },
}

/// One nearest scenario.
#[derive(Clone, Debug, PartialEq)]
pub struct ScenarioHit {
    pub scenario_id: String,
    pub scenario_as_of: NaiveDate,
    pub cosine: f64,
    pub euclidean: f64,
}

/// The searchable scenarios of one set under one joint model.
pub struct ScenarioSpace {
    pub model_id: String,
    pub set_id: String,
    engine: Engine,
    ef: Option<usize>,
    /// The recall the breadth was chosen for (`None`: `--ef` given).
    recall: Option<f64>,
    /// Scenarios left out because their vector is all zeros (no direction).
    pub zero_vectors: Vec<String>,
    /// The feature space of the scenario vectors (`None`: not recorded).
    pub feature_space: Option<String>,
    /// Whether the set's partition file holds less than, or other rows than,
    /// the database does now (answered with a delta scan or an exact scan).
    pub partition_stale: bool,
}

/// Rows read per query when loading.
const PAGE: u64 = 10_000;

impl ScenarioSpace {
    /// The partition of (model, set) when there is a readable one that holds
    /// what the database holds (or holds all of it but rows added since,
    /// which are scanned exactly beside it), else the vectors from the
    /// database. A query answers for the set as the database holds it now.
    pub async fn open(db: &Db, opts: &SearchOpts, model: &str, set: &str) -> Result<ScenarioSpace> {
        if let Some(ef) = opts.ef {
            if ef == 0 {
                return Err(Error::Invalid("--ef must be at least 1".into()));
            }
        }
        let ef = if opts.exact {
            None
        } else {
            Some(opts.ef.unwrap_or(DEFAULT_EF))
        };
        // --exact answers from the database's own vectors, never from a file.
        let Some(dir) = opts.index_dir.as_ref().filter(|_| !opts.exact) else {
            return Self::load(db, model, set, ef).await;
        };
        let path = partition_path(dir, model, set);
        let rebuild = format!("stabspace index build --model-id {model} --scenario-set-id {set}");
        if !path.exists() {
            eprintln!(
                "note: no index partition for {model} / {set}; scanning exactly from the database \
                 (`{rebuild}` makes queries fast)"
            );
            return Self::load(db, model, set, ef).await;
        }
        let opened = match &opts.source {
            Some(source) => source.open(&path, !opts.no_quantized),
            None => OpenPartition::open(&path, !opts.no_quantized).map(Arc::new),
        }
        .and_then(|p| {
            let prov = p.checked(model, set)?.clone();
            Ok((p, prov))
        });
        let (p, prov) = match opened {
            Err(e) => {
                eprintln!("warning: {e}; scanning exactly from the database instead");
                return Self::load(db, model, set, ef).await;
            }
            Ok(opened) => opened,
        };
        let database_id = crate::storage::meta::database_id(db).await?;
        if !prov.is_from(&database_id) {
            eprintln!(
                "warning: index partition {} was {}; not using it: scanning exactly from the database \
                 instead — rebuild it with `{rebuild}`",
                path.display(),
                partitions::foreign_reason(&prov, &database_id)
            );
            return Self::load(db, model, set, ef).await;
        }
        // Freshness from the trigger-kept counters: one row, not a scan of
        // the set. A set that only gained rows is searched with its delta; one
        // whose rows were changed or removed is scanned from the database.
        let now = counters(db, model, set).await?;
        let delta = match prov.fingerprint.change_since(now) {
            Change::None => None,
            Change::OnlyAdded => match read_delta(db, &p, &prov, model, set, now).await? {
                DeltaRead::Delta(d) => {
                    eprintln!(
                        "note: index partition {} is stale: the set gained {} row(s) since it was built ({}; \
                         now {now}); they are scanned exactly beside it — rebuild it with `{rebuild}`",
                        path.display(),
                        d.len(),
                        prov.fingerprint
                    );
                    Some(d)
                }
                DeltaRead::TooMany { missing, limit } => {
                    eprintln!(
                        "warning: index partition {} is stale: the set gained {missing} row(s) since it was \
                         built, more than the {limit} scanned beside a partition; answering by an exact scan \
                         of the database — rebuild it with `{rebuild}`",
                        path.display()
                    );
                    return Ok(Self::load(db, model, set, ef).await?.stale());
                }
            },
            Change::Rewritten => {
                let now = fingerprint(db, model, set).await?;
                if now.rows == 0 {
                    return Err(no_scenarios(db, model, set, 0).await);
                }
                eprintln!(
                    "warning: index partition {} is stale: rows were changed or removed since it was built \
                     ({}; the database has {now}); not using it: answering by an exact scan of the database \
                     — rebuild it with `{rebuild}`",
                    path.display(),
                    prov.fingerprint
                );
                return Ok(Self::load(db, model, set, ef).await?.stale());
            }
        };
        // The breadth: --ef, else the calibrated one for the recall asked.
        let ef = match ef {
            Some(_) if opts.ef.is_none() => {
                let recall = opts.recall.unwrap_or(DEFAULT_RECALL);
                let (ef, note) = calibrated_ef(&p, recall)?;
                match note {
                    Some(note) => eprintln!("{note}"),
                    // On a terminal, say what the default means here.
                    None if std::io::IsTerminal::is_terminal(&std::io::stderr()) => eprintln!(
                        "note: searching with ef {ef}, the smallest breadth that reached recall@10 \
                         {recall} when this partition was built (--recall R, or --ef N)"
                    ),
                    None => {}
                }
                Some(ef)
            }
            ef => ef,
        };
        // A graph search touches a few thousand rows scattered over the
        // file: read those pages, not the read-around window.
        if ef.is_some() && p.has_graph() {
            p.advise_random();
        }
        // Partitions built before spaces were recorded: ask the database
        // (a scan of the set; a partition built since records them).
        let feature_space = match prov.feature_space {
            Some(s) => Some(s),
            None if prov.spaces_read => None,
            None => {
                let mut tally = SpaceTally::default();
                for (space, rows) in scenario_spaces(db, model, set).await? {
                    tally.add(space.as_deref(), rows.max(0) as usize);
                }
                tally.one(model, set)?
            }
        };
        Ok(ScenarioSpace {
            model_id: model.to_string(),
            set_id: set.to_string(),
            partition_stale: delta.is_some(),
            engine: Engine::Partition { p, delta },
            ef,
            recall: opts.ef.is_none().then(|| opts.recall.unwrap_or(DEFAULT_RECALL)),
            zero_vectors: prov.skipped_zero,
            feature_space,
        })
    }

    /// Marks an exact scan that stands in for a stale partition.
    fn stale(mut self) -> ScenarioSpace {
        self.partition_stale = true;
        self
    }

    /// Read every STAB scenario vector of `set` under `model` from the database.
    pub async fn load(db: &Db, model: &str, set: &str, ef: Option<usize>) -> Result<ScenarioSpace> {
        let mut index = FlatIndex::new(DIM)?;
        let mut as_of = Vec::new();
        let scan = scan_scenarios(db, model, set, |id, date, v| {
            index.add(id, v)?;
            as_of.push(date);
            Ok(())
        })
        .await?;
        let (zero_vectors, unusable, feature_space) = (scan.zero, scan.unusable, scan.feature_space);
        if !zero_vectors.is_empty() {
            eprintln!(
                "note: {} scenario(s) of {set} have an all-zero vector and cannot be ranked by cosine: {}",
                zero_vectors.len(),
                zero_vectors
                    .iter()
                    .take(5)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        for (id, why) in unusable.iter().take(5) {
            eprintln!("note: scenario {id} of {set} is left out: {why}");
        }
        if unusable.len() > 5 {
            eprintln!(
                "note: … and {} more scenario(s) of {set} with unusable vectors",
                unusable.len() - 5
            );
        }
        Ok(ScenarioSpace {
            model_id: model.to_string(),
            set_id: set.to_string(),
            engine: Engine::Flat { index, as_of },
            ef,
            recall: None,
            zero_vectors,
            feature_space,
            partition_stale: false,
        })
    }

    pub fn len(&self) -> usize {
        match &self.engine {
            Engine::Partition { p, delta } => p.len() + delta.as_ref().map_or(0, |d| d.len()),
            Engine::Flat { index, .. } => index.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How this space's queries are answered.
    pub fn answered_by(&self) -> AnsweredBy {
        match &self.engine {
            Engine::Partition { delta: Some(_), .. } => AnsweredBy::IndexDelta,
            Engine::Partition { .. } => AnsweredBy::Index,
            Engine::Flat { .. } => AnsweredBy::ExactScan,
        }
    }

    /// How this space's queries are answered, and whether its partition was stale.
    pub fn answer(&self) -> Answer {
        Answer {
            by: self.answered_by(),
            partition_stale: self.partition_stale,
        }
    }

    /// The partition searched (`None`: an exact scan from the database).
    pub fn partition(&self) -> Option<&Arc<OpenPartition>> {
        match &self.engine {
            Engine::Partition { p, .. } => Some(p),
            Engine::Flat { .. } => None,
        }
    }

    /// The graph breadth searched for `k` hits: `None` for an exact scan
    /// (no graph, `--exact`, or a breadth that covers every row).
    pub fn breadth(&self, k: usize) -> Option<usize> {
        match (&self.engine, self.ef) {
            (Engine::Partition { p, .. }, Some(ef)) if p.has_graph() && ef.max(k) < p.len() => {
                Some(ef.max(k))
            }
            _ => None,
        }
    }

    /// A guard for the vectors about to be compared with these scenarios.
    pub fn same_space(&self) -> SameSpace {
        SameSpace {
            first: self.feature_space.clone().map(|s| {
                (
                    format!("the scenarios of set {} under {}", self.set_id, self.model_id),
                    s,
                )
            }),
        }
    }

    /// How queries run, for summaries.
    pub fn describe(&self) -> String {
        let delta = match &self.engine {
            Engine::Partition { delta: Some(d), .. } => {
                format!(", with {} row(s) added since its build scanned exactly", d.len())
            }
            _ => String::new(),
        };
        let stale = if self.partition_stale && matches!(self.engine, Engine::Flat { .. }) {
            " (the partition is stale)"
        } else {
            ""
        };
        match (&self.engine, self.ef) {
            (Engine::Partition { p, .. }, Some(ef)) if p.has_graph() => {
                let on = if p.quantized_traversal() {
                    "int8 traversal, exact re-rank"
                } else {
                    "f32 traversal, exact re-rank"
                };
                match self.recall {
                    Some(r) => format!(
                        "index partition, ef {} (calibrated for recall@10 {r}), {on}{delta}",
                        ef.min(p.len())
                    ),
                    None => format!("index partition, ef {}, {on}{delta}", ef.min(p.len())),
                }
            }
            (Engine::Partition { .. }, _) => format!("index partition, exact scan{delta}"),
            (Engine::Flat { .. }, _) => format!("exact scan from the database{stale}"),
        }
    }

    /// The k scenarios nearest `query` by cosine, best first.
    pub fn search(&self, query: &[f32], k: usize) -> Result<Vec<ScenarioHit>> {
        match &self.engine {
            Engine::Partition { p, delta } => {
                let hits = match self.ef {
                    Some(ef) => p.search(query, k, ef)?,
                    None => p.search_exact(query, k)?,
                };
                let hits = self.partition_hits(p, hits)?;
                match delta {
                    Some(d) if !d.is_empty() => Ok(merge(hits, delta_hits(d, d.index.search(query, k)?), k)),
                    _ => Ok(hits),
                }
            }
            Engine::Flat { index, as_of } => Ok(flat_hits(as_of, index.search(query, k)?)),
        }
    }

    /// Many queries at once, on all cores.
    pub fn search_batch(&self, queries: &[Vec<f32>], k: usize) -> Result<Vec<Vec<ScenarioHit>>> {
        match &self.engine {
            Engine::Partition { p, delta } => {
                let all = p.search_batch(queries, k, self.ef)?;
                let extra = match delta {
                    Some(d) if !d.is_empty() => Some((d, d.index.search_batch(queries, k)?)),
                    _ => None,
                };
                let mut out = Vec::with_capacity(all.len());
                match extra {
                    Some((d, extra)) => {
                        for (hits, more) in all.into_iter().zip(extra) {
                            out.push(merge(self.partition_hits(p, hits)?, delta_hits(d, more), k));
                        }
                    }
                    None => {
                        for hits in all {
                            out.push(self.partition_hits(p, hits)?);
                        }
                    }
                }
                Ok(out)
            }
            Engine::Flat { index, as_of } => Ok(index
                .search_batch(queries, k)?
                .into_iter()
                .map(|h| flat_hits(as_of, h))
                .collect()),
        }
    }

    fn partition_hits(&self, p: &Partition, hits: Vec<stabspace_index::Hit>) -> Result<Vec<ScenarioHit>> {
        hits.into_iter()
            .map(|h| {
                Ok(ScenarioHit {
                    scenario_as_of: scenario_as_of(p, h.row as usize)?,
                    scenario_id: h.id,
                    cosine: h.cosine,
                    euclidean: h.euclidean,
                })
            })
            .collect()
    }
}

fn flat_hits(as_of: &[NaiveDate], hits: Vec<stabspace_index::Hit>) -> Vec<ScenarioHit> {
    hits.into_iter()
        .map(|h| ScenarioHit {
            scenario_as_of: as_of[h.row as usize],
            scenario_id: h.id,
            cosine: h.cosine,
            euclidean: h.euclidean,
        })
        .collect()
}

fn delta_hits(d: &Delta, hits: Vec<stabspace_index::Hit>) -> Vec<ScenarioHit> {
    flat_hits(&d.as_of, hits)
}

/// The `k` best of two ranked lists of exact cosines: by cosine, then id.
fn merge(mut a: Vec<ScenarioHit>, b: Vec<ScenarioHit>, k: usize) -> Vec<ScenarioHit> {
    a.extend(b);
    a.sort_by(|x, y| {
        y.cosine
            .total_cmp(&x.cosine)
            .then_with(|| x.scenario_id.cmp(&y.scenario_id))
    });
    a.truncate(k);
    a
}

/// What reading a set's scenario vectors left out, and their feature space.
pub struct ScenarioScan {
    /// Scenarios with an all-zero vector (no direction to rank by cosine).
    pub zero: Vec<String>,
    /// Scenarios with a vector that cannot be used (another length, a
    /// non-finite value), with the reason.
    pub unusable: Vec<(String, String)>,
    /// The one recorded feature space of the set (`None`: not recorded).
    pub feature_space: Option<String>,
}

/// Hand every STAB scenario vector of (model, set) that can be ranked by
/// cosine to `add(id, scenario date, vector)`, in id order, a page at a time;
/// the others are counted in the scan. A set with nothing to add is the
/// [`no_scenarios`] error, one that mixes feature spaces an error too. The
/// partition build and the exact scan from the database both read this way.
pub async fn scan_scenarios(
    db: &Db,
    model: &str,
    set: &str,
    mut add: impl FnMut(&str, NaiveDate, &[f32]) -> std::result::Result<(), stabspace_index::IndexError>,
) -> Result<ScenarioScan> {
    let (mut zero, mut unusable, mut added) = (Vec::new(), Vec::new(), 0usize);
    let mut spaces = SpaceTally::default();
    let mut after: Option<String> = None;
    loop {
        let page = joint_scenarios_page(db, model, set, after.as_deref(), PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.scenario_id.clone());
        for s in &page {
            spaces.add(s.feature_space.as_deref(), 1);
            match vector::usable(&s.vector) {
                Ok(v) => {
                    add(&s.scenario_id, s.as_of, &v).map_err(|e| {
                        Error::Invalid(format!(
                            "scenario {} of set {set} under {model}: {e}",
                            s.scenario_id
                        ))
                    })?;
                    added += 1;
                }
                Err(vector::Unusable::Zero) => zero.push(s.scenario_id.clone()),
                Err(why) => unusable.push((s.scenario_id.clone(), why.to_string())),
            }
        }
        if (page.len() as u64) < PAGE {
            break;
        }
    }
    if added == 0 {
        return Err(no_scenarios(db, model, set, zero.len() + unusable.len()).await);
    }
    Ok(ScenarioScan {
        feature_space: spaces.one(model, set)?,
        zero,
        unusable,
    })
}

/// Vectors that are compared with one scenario set, or averaged together,
/// must share one feature space: the scenarios' own when it is recorded, else
/// the first recorded one seen. Unrecorded spaces are not checked.
#[derive(Default)]
pub struct SameSpace {
    /// What set the space, and the space.
    first: Option<(String, String)>,
}

impl SameSpace {
    /// `Err(MixedSpaces)` when `space` (of the vector described by `what`)
    /// differs from the space so far.
    pub fn check(&mut self, what: impl FnOnce() -> String, space: Option<&str>) -> Result<()> {
        match (&self.first, space) {
            (None, Some(s)) => {
                self.first = Some((what(), s.to_string()));
                Ok(())
            }
            (Some((first, s0)), s1) => Error::check_spaces(what, s1, || first.clone(), Some(s0)),
            (None, None) => Ok(()),
        }
    }
}

/// Open a partition for a query and check that it holds (model, set): the
/// header and section table are validated (constant work, as
/// [`Partition::open`] does; rows are bounds-checked when a search reads
/// them), but the section checksums are not, since that reads the whole file.
/// `index verify` and `index status` check them.
pub fn open_checked(path: &Path, model: &str, set: &str) -> Result<(Partition, Provenance)> {
    let p = Partition::open(path)?;
    let prov = Provenance::of(&p)?;
    check_holds(path, &p, &prov, model, set)?;
    Ok((p, prov))
}

/// Whether partition `p` at `path` holds (model, set) in the joint dimension.
fn check_holds(path: &Path, p: &Partition, prov: &Provenance, model: &str, set: &str) -> Result<()> {
    if prov.model_id != model || prov.scenario_set_id != set {
        return Err(Error::Invalid(format!(
            "{}: holds {} / {}, not {model} / {set}",
            path.display(),
            prov.model_id,
            prov.scenario_set_id
        )));
    }
    if p.dim() != DIM {
        return Err(Error::Invalid(format!(
            "{}: {} dimensions, expected {DIM}",
            path.display(),
            p.dim()
        )));
    }
    Ok(())
}

pub async fn no_scenarios(db: &Db, model: &str, set: &str, zero: usize) -> Error {
    if zero > 0 {
        return Error::Invalid(format!(
            "every scenario vector of set {set:?} under {model} is all zeros or unusable (wrong length, \
             non-finite values); nothing can be ranked by cosine"
        ));
    }
    let sets = crate::storage::joint::scenario_sets_of_model(db, model).await;
    let models = crate::storage::joint::scenario_models(db).await;
    let elsewhere = match crate::storage::joint::scenario_models_of_set(db, set).await {
        Ok(v) => v.into_iter().filter(|(m, _)| m != model).collect::<Vec<_>>(),
        Err(e) => return e,
    };
    let registered = match crate::joint::registry::note(db, model).await {
        Ok(n) => format!(" ({n})"),
        Err(e) => return e,
    };
    if let Some((other, _)) = elsewhere.first() {
        let listed: Vec<String> = elsewhere
            .iter()
            .map(|(m, s)| {
                format!(
                    "{m} ({})",
                    s.as_deref()
                        .map_or("feature space not recorded".into(), describe_space)
                )
            })
            .collect();
        return Error::OtherJointModel {
            what: format!(
                "no STAB scenario vectors of set {set:?} under joint model {model}{registered}, but the set \
                 has them under {}",
                listed.join(", ")
            ),
            asked: model.to_string(),
            other: other.clone(),
        };
    }
    match (sets, models) {
        (Ok(sets), Ok(models)) => Error::Invalid(format!(
            "no STAB scenario vectors of set {set:?} under joint model {model:?}{registered}; sets under \
             {model}: {}; \
             joint models with scenario vectors: {}; run `stabspace backfill-joint-stab-fragility-scenarios \
             --scenario-set-id {set} --joint-model-id {model}` first",
            crate::joint::list_or(&sets, "none"),
            crate::joint::list_or(&models, "none"),
        )),
        (Err(e), _) | (_, Err(e)) => e,
    }
}
