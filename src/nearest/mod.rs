//! Nearest scenarios: the STAB scenario vectors of one (joint model, scenario
//! set), searched by cosine, with each hit's scenario date.
//!
//! When the (model, set) has an index partition (see [`crate::partitions`]),
//! queries run against the memory-mapped file: approximate top-k on the HNSW
//! graph with a breadth chosen by [`breadth`], then an exact f64 re-rank (or
//! an exact scan of the file). A partition the database has moved past is
//! searched with its [`delta`] while the set only gained a few rows, else the
//! set is scanned exactly from the database; a missing or unreadable one falls
//! back to that scan too, with a note. Every answer says which
//! ([`AnsweredBy`]).
//!
//! - [`breadth`]: the one choice of search breadth, and the checks of `k`,
//!   `ef` and `recall` every front end applies.
//! - [`open`]: a partition opened for searching.
//! - [`cache`]: partitions opened once through the store and shared.
//! - [`delta`]: the rows a stale partition lacks.
//! - [`recall`]: an answer checked against an exact scan of the same rows
//!   (the recall `serve` observes on live queries).

pub mod breadth;
pub mod cache;
pub mod delta;
pub mod open;
pub mod recall;

use std::sync::Arc;

use chrono::NaiveDate;
use stabspace_index::{FlatIndex, Partition};

pub use breadth::{calibrated_ef, Breadth, DEFAULT_EF, DEFAULT_RECALL};
pub use cache::PartitionCache;
pub use delta::{delta_limit, Delta, DELTA_MIN};
pub use open::{open_checked, OpenPartition};
pub use recall::{recall_at_k, ExactCheck};

use crate::error::{Error, Result};
use crate::partitions::{
    self, counters, fingerprint, no_scenarios, scan_scenarios, scenario_as_of, Change, SpaceTally,
};
use crate::pointintime::{key_day, QueryFilter, ScenarioFilter, ShockTypes};
use crate::storage::joint::scenario_spaces;
use crate::storage::Db;
use crate::vector::DIM;
use delta::{read_delta, DeltaRead};

/// How queries search: where partitions live (none: always from the
/// database), the search breadth, and whether to scan exactly.
#[derive(Clone, Debug, Default)]
pub struct SearchOpts {
    /// Where partitions are opened from (`None`: no partitions, every query
    /// scans the database).
    pub partitions: Option<Arc<PartitionCache>>,
    pub ef: Option<usize>,
    /// Target recall@10 when `ef` is not given (`None`: [`DEFAULT_RECALL`]).
    pub recall: Option<f64>,
    pub exact: bool,
    /// Traverse the graph on the f32 vectors even where the partition has int8 codes.
    pub no_quantized: bool,
    /// Which scenarios the queries may return ([`ScenarioSpace::search_filtered`]).
    /// When it filters, a partition without per-row attributes is not used
    /// (the set is scanned exactly from the database instead, with a note).
    pub filter: QueryFilter,
}

impl SearchOpts {
    /// Search the partitions of `cache`, breadth and the rest by default.
    pub fn with_partitions(cache: Arc<PartitionCache>) -> SearchOpts {
        SearchOpts {
            partitions: Some(cache),
            ..SearchOpts::default()
        }
    }

    /// How the breadth is chosen.
    pub fn breadth(&self) -> Breadth {
        Breadth {
            ef: self.ef,
            recall: self.recall,
            exact: self.exact,
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

enum Engine {
    Partition {
        p: Arc<OpenPartition>,
        /// The rows the database gained since the partition was built.
        delta: Option<Arc<Delta>>,
    },
    Flat {
        index: Box<FlatIndex>,
        as_of: Vec<NaiveDate>,
        /// The shock types numbered by the rows' tags.
        types: ShockTypes,
    },
}

/// One nearest scenario.
#[derive(Clone, Debug, PartialEq)]
pub struct ScenarioHit {
    pub scenario_id: String,
    pub scenario_as_of: NaiveDate,
    pub cosine: f64,
    pub euclidean: f64,
    /// The first date the scenario could have been known (`None`: not
    /// stored yet; re-run its scenario backfill).
    pub known_from: Option<NaiveDate>,
}

/// The answer of a filtered query: the best admitted scenarios, and how many
/// scenarios the filter admitted (0: none was known before the date asked).
#[derive(Clone, Debug, PartialEq)]
pub struct FilteredHits {
    pub hits: Vec<ScenarioHit>,
    pub admitted: usize,
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
        let Some(cache) = opts.partitions.as_ref().filter(|_| !opts.exact) else {
            return Self::load(db, model, set, ef).await;
        };
        let rebuild = format!("stabspace index build --model-id {model} --scenario-set-id {set}");
        let opened = match cache.get(model, set, !opts.no_quantized) {
            Ok(None) => {
                eprintln!(
                    "note: no index partition for {model} / {set}; scanning exactly from the database \
                     (`{rebuild}` makes queries fast)"
                );
                return Self::load(db, model, set, ef).await;
            }
            Ok(Some(p)) => p.checked(model, set).cloned().map(|prov| (p, prov)),
            Err(e) => Err(e),
        };
        let (p, prov) = match opened {
            Err(e) => {
                eprintln!("warning: {e}; scanning exactly from the database instead");
                return Self::load(db, model, set, ef).await;
            }
            Ok(opened) => opened,
        };
        let path = p.path().to_path_buf();
        if !opts.filter.is_empty() && (!p.has_attrs() || prov.shock_types.is_none()) {
            eprintln!(
                "note: index partition {} has no per-row known-from dates, shock types and severities (built \
                 before point-in-time search); answering by an exact filtered scan of the database instead — \
                 rebuild it with `{rebuild}`",
                path.display()
            );
            return Self::load(db, model, set, ef).await;
        }
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
            // A replica behind the primary the partition was built from: the
            // partition is the newer of the two, so it answers as it is (no
            // delta: there is nothing the reader has that it lacks).
            Change::ReaderBehind => {
                note_reader_behind(&path, &prov.fingerprint, now);
                None
            }
            Change::OnlyAdded => {
                match read_delta(db, &p.partition, &p.delta, &prov, model, set, now).await? {
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
                }
            }
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
                let (ef, note) = opts.breadth().ef_on(&p)?;
                let ef = ef.unwrap_or(DEFAULT_EF);
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
            recall: opts.breadth().target_recall(),
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
        let mut types = ShockTypes::default();
        let scan = scan_scenarios(db, model, set, |row, v| {
            let attrs =
                types.attrs_adding(row.known_from, row.shock_type.as_deref(), row.severity.as_deref());
            index.add_with(&row.scenario_id, v, attrs)?;
            as_of.push(row.as_of);
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
            engine: Engine::Flat {
                index: Box::new(index),
                as_of,
                types,
            },
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
        match &self.engine {
            Engine::Partition { p, .. } => breadth::graph_breadth(p, self.ef, k),
            Engine::Flat { .. } => None,
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
            Engine::Flat { index, as_of, .. } => Ok(flat_hits(index, as_of, index.search(query, k)?)),
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
            Engine::Flat { index, as_of, .. } => Ok(index
                .search_batch(queries, k)?
                .into_iter()
                .map(|h| flat_hits(index, as_of, h))
                .collect()),
        }
    }

    fn partition_hits(&self, p: &Partition, hits: Vec<stabspace_index::Hit>) -> Result<Vec<ScenarioHit>> {
        hits.into_iter()
            .map(|h| {
                Ok(ScenarioHit {
                    scenario_as_of: scenario_as_of(p, h.row as usize)?,
                    known_from: p.attrs(h.row as usize).and_then(|a| key_day(a.key)),
                    scenario_id: h.id,
                    cosine: h.cosine,
                    euclidean: h.euclidean,
                })
            })
            .collect()
    }

    /// The k scenarios nearest `query` among those `filter` admits, best
    /// first, with how many it admits. The breadth chosen for the set (its
    /// calibrated recall) holds: the engine widens its beam as fewer rows are
    /// admitted, and scans the admitted rows exactly when they are few.
    pub fn search_filtered(&self, query: &[f32], k: usize, filter: &ScenarioFilter) -> Result<FilteredHits> {
        if filter.is_empty() {
            return Ok(FilteredHits {
                hits: self.search(query, k)?,
                admitted: self.len(),
            });
        }
        match &self.engine {
            Engine::Partition { p, delta } => {
                let f = p.search_filtered(query, k, self.ef, &filter.row_filter(&p.shock_types))?;
                let hits = self.partition_hits(p, f.hits)?;
                match delta {
                    Some(d) if !d.is_empty() => {
                        let more = d.index.search_filtered(query, k, &filter.row_filter(&d.types))?;
                        Ok(FilteredHits {
                            admitted: f.admitted + more.admitted,
                            hits: merge(hits, delta_hits(d, more.hits), k),
                        })
                    }
                    _ => Ok(FilteredHits {
                        hits,
                        admitted: f.admitted,
                    }),
                }
            }
            Engine::Flat { index, as_of, types } => {
                let f = index.search_filtered(query, k, &filter.row_filter(types))?;
                Ok(FilteredHits {
                    hits: flat_hits(index, as_of, f.hits),
                    admitted: f.admitted,
                })
            }
        }
    }

    /// [`search_filtered`](Self::search_filtered) of many queries, each with
    /// its own filter (a backtest's days, each known before its own date), on all cores.
    pub fn search_batch_filtered(
        &self,
        queries: &[Vec<f32>],
        filters: &[ScenarioFilter],
        k: usize,
    ) -> Result<Vec<FilteredHits>> {
        if queries.len() != filters.len() {
            return Err(Error::Invalid(format!(
                "{} queries and {} filters",
                queries.len(),
                filters.len()
            )));
        }
        if filters.iter().all(ScenarioFilter::is_empty) {
            let n = self.len();
            return Ok(self
                .search_batch(queries, k)?
                .into_iter()
                .map(|hits| FilteredHits { hits, admitted: n })
                .collect());
        }
        use rayon::prelude::*;
        queries
            .par_iter()
            .zip(filters)
            .map(|(q, f)| self.search_filtered(q, k, f))
            .collect()
    }
}

/// Say once per process and partition file version that the database read
/// is behind the partition (a lagging replica), not at every query of a
/// server or a Python loop.
fn note_reader_behind(path: &std::path::Path, built: &partitions::Fingerprint, now: partitions::Counters) {
    static NOTED: std::sync::Mutex<Vec<(std::path::PathBuf, i64)>> = std::sync::Mutex::new(Vec::new());
    let key = (path.to_path_buf(), built.version);
    let mut noted = NOTED.lock().unwrap_or_else(|e| e.into_inner());
    if noted.contains(&key) {
        return;
    }
    noted.push(key);
    eprintln!(
        "note: the database read is behind index partition {} (a lagging replica: the partition was built \
         at change #{} of the set, the database read has change #{}); answering from the partition, which \
         holds the newer rows",
        path.display(),
        built.version,
        now.version
    );
}

fn flat_hits(index: &FlatIndex, as_of: &[NaiveDate], hits: Vec<stabspace_index::Hit>) -> Vec<ScenarioHit> {
    hits.into_iter()
        .map(|h| ScenarioHit {
            known_from: key_day(index.attrs_of(h.row as usize).key),
            scenario_as_of: as_of[h.row as usize],
            scenario_id: h.id,
            cosine: h.cosine,
            euclidean: h.euclidean,
        })
        .collect()
}

fn delta_hits(d: &Delta, hits: Vec<stabspace_index::Hit>) -> Vec<ScenarioHit> {
    flat_hits(&d.index, &d.as_of, hits)
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
