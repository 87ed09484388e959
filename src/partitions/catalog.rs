//! The catalog: which partitions there are, and each one's state against the
//! database (fresh, stale, missing, unreadable, orphaned, another database's),
//! what the next rebuild will do with it, and the parameters it was built
//! with. Reads files only through a [`PartitionStore`].

use std::path::PathBuf;

use stabspace_index::{BuildParams, GraphBuilder, Partition, Quantization};

use super::provenance::{counters, fingerprint, Change, Counters, Fingerprint, Provenance};
use super::store::{PartitionStore, Recorded};
use crate::error::Result;
use crate::storage::recall::{latest, RecallObservation};
use crate::storage::{partition_counters, Db};

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

impl FileSummary {
    /// What a store recorded of a file at publish ([`PartitionStore::recorded`]).
    pub fn of_recorded(r: &Recorded) -> Result<FileSummary> {
        let prov: Provenance = serde_json::from_value(r.provenance.clone()).map_err(|e| {
            crate::error::Error::Invalid(format!("a recorded provenance cannot be read: {e}"))
        })?;
        let traversal = r.graph.then(|| match r.quantized.as_deref() {
            None => "f32",
            Some(q) => [
                Quantization::PerDimension,
                Quantization::Global,
                Quantization::None,
            ]
            .into_iter()
            .map(Quantization::name)
            .find(|n| *n == q)
            .unwrap_or("int8"),
        });
        Ok(FileSummary {
            prov,
            file_bytes: r.file_bytes,
            version: r.format_version,
            traversal,
            row_hashes: r.row_hashes,
            graph: r.graph,
        })
    }
}

/// The provenance of the partition at `location`: recorded by the store, else read from the file.
fn provenance_at(store: &dyn PartitionStore, location: &std::path::Path) -> Result<Provenance> {
    match store.recorded(location)? {
        Some(r) => Ok(FileSummary::of_recorded(&r)?.prov),
        None => store.open(location).and_then(|(p, _)| Provenance::of(&p)),
    }
}

/// Why the existing partition cannot be extended with `params`; `None` when
/// it can (its rows must still be compared with the database's).
pub(super) fn not_extendable(f: &FileSummary, database_id: &str, params: &BuildParams) -> Option<String> {
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

/// The build parameters (model, set)'s partition records (its provenance's,
/// or its header's when the provenance is not a stabspace record), for a
/// rebuild that keeps them. `None` when there is no file or it cannot be opened.
pub fn recorded_params(store: &dyn PartitionStore, model: &str, set: &str) -> Option<BuildParams> {
    let at = store.locate(model, set);
    if let Ok(Some(r)) = store.recorded(&at) {
        let params = FileSummary::of_recorded(&r).ok()?.prov.params.build_params();
        let usable = (2..=stabspace_index::MAX_M).contains(&params.m) && params.ef_construction >= 1;
        return usable.then_some(params);
    }
    let (p, _) = store.open(&at).ok()?;
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
    /// The database read is behind the partition (its change counter is
    /// below the recorded one): a replica that has not yet replayed what the
    /// primary the partition was built from had. Queries answer from the
    /// partition; nothing rebuilds it from the reader.
    Ahead,
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
            Freshness::Ahead => "ahead-of-database",
        }
    }
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
    /// The latest recall observed on sampled queries (`serve`, the metrics
    /// backfill), once [`with_observations`] has read them.
    pub observed: Option<RecallObservation>,
}

impl Status {
    /// (model, set) with no partition file at `path`, the database holding `now`.
    pub fn missing(model: &str, set: &str, path: PathBuf, now: Fingerprint) -> Status {
        Status {
            model_id: model.to_string(),
            scenario_set_id: set.to_string(),
            state: Freshness::Missing,
            path,
            provenance: None,
            file_bytes: None,
            detail: format!("no file; the database has {now}"),
            database: Some(now),
            format_version: None,
            traversal: None,
            next_rebuild: "full: no partition".into(),
            observed: None,
        }
    }

    /// A file at `path` that no (model, set) maps to, or that cannot be opened.
    pub fn unlisted(path: PathBuf, detail: String) -> Status {
        Status {
            model_id: String::new(),
            scenario_set_id: String::new(),
            state: Freshness::Unreadable,
            path,
            provenance: None,
            file_bytes: None,
            database: None,
            detail,
            format_version: None,
            traversal: None,
            next_rebuild: "none: not a partition of this database".into(),
            observed: None,
        }
    }

    /// The file exists but cannot be read (`detail` says why).
    pub fn unreadable(&mut self, detail: String) {
        self.state = Freshness::Unreadable;
        self.detail = detail;
        self.next_rebuild = "full: the file cannot be read".into();
    }
}

/// The state of one (model, set) partition against the database.
pub async fn status_of(db: &Db, store: &dyn PartitionStore, model: &str, set: &str) -> Result<Status> {
    let path = store.locate(model, set);
    let now = fingerprint(db, model, set).await?;
    let database_id = crate::storage::meta::database_id(db).await?;
    if !store.exists(&path) {
        return Ok(Status::missing(model, set, path, now));
    }
    let mut st = Status::missing(model, set, path.clone(), now.clone());
    // A remote store's summary, recorded at publish: no download (the file's
    // integrity is its SHA-256, checked whenever it is fetched).
    if let Some(r) = store.recorded(&path)? {
        match FileSummary::of_recorded(&r) {
            Ok(f) => readable_status(&mut st, &f, &now, &database_id),
            Err(e) => st.unreadable(e.to_string()),
        }
        return Ok(st);
    }
    // Checksums too: a damaged file is not fresh, whatever its header says.
    match store.open(&path).and_then(|(p, _)| {
        p.verify()?;
        let prov = Provenance::of(&p)?;
        Ok((p, prov))
    }) {
        Err(e) => st.unreadable(e.to_string()),
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
    // The rules of `Fingerprint::change_since`, which queries use; a reader
    // behind the partition before "no rows": a replica that has not yet
    // replayed a new set holds none of it, and the partition is not orphaned.
    let change = prov.fingerprint.change_since(counters_of(now));
    st.state = if !prov.is_from(database_id) {
        Freshness::Foreign
    } else if change == Change::ReaderBehind {
        Freshness::Ahead
    } else if now.rows == 0 {
        Freshness::Orphaned
    } else if change == Change::None {
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
        Freshness::Ahead => format!(
            "the database read is behind this partition (a lagging replica): built from {}; the database \
             read has {}; queries answer from the partition",
            prov.fingerprint, now
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
    // `index rebuild` keeps the recorded parameters: the rules of `build`.
    let not_extendable = not_extendable(f, database_id, &prov.params.build_params());
    match (state, not_extendable) {
        (Freshness::Fresh, _) => "none".into(),
        (Freshness::Ahead, _) => "none: the database read is behind the partition".into(),
        (Freshness::Orphaned, _) => "none: no rows left (drop it with `index drop`)".into(),
        (_, Some(why)) => format!("full: {why}"),
        (_, None) => match prov.fingerprint.change_since(counters_of(now)) {
            Change::None | Change::ReaderBehind => "none".into(),
            Change::OnlyAdded => format!("append {} row(s)", (now.rows - prov.fingerprint.rows).max(0)),
            Change::Rewritten => "full: rows were changed or removed".into(),
        },
    }
}

/// The counters a fingerprint of the database holds.
fn counters_of(now: &Fingerprint) -> Counters {
    Counters {
        version: now.version,
        rewrites: now.rewrites.unwrap_or(0),
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
pub async fn status_all(db: &Db, store: &dyn PartitionStore) -> Result<Vec<Status>> {
    let mut pairs = sources(db).await?;
    let listed = store.list()?;
    for f in &listed {
        if let Ok(prov) = provenance_at(store, f) {
            pairs.push((prov.model_id, prov.scenario_set_id));
        }
    }
    pairs.sort();
    pairs.dedup();
    let mut out = Vec::new();
    for (m, s) in pairs {
        out.push(status_of(db, store, &m, &s).await?);
    }
    // Files that cannot even be opened, under names no (model, set) maps to.
    for f in listed {
        if !out.iter().any(|s| s.path == f) {
            let e = store
                .open(&f)
                .err()
                .map_or("not a partition of this database".into(), |e| e.to_string());
            out.push(Status::unlisted(f, e));
        }
    }
    with_observations(db, &mut out).await?;
    Ok(out)
}

/// Attach to each row the latest recall observed on its (model, set) (one read).
pub async fn with_observations(db: &Db, rows: &mut [Status]) -> Result<()> {
    let mut seen = latest(db).await?;
    for r in rows.iter_mut() {
        let at = seen
            .iter()
            .position(|o| o.model_id == r.model_id && o.scenario_set_id == r.scenario_set_id);
        r.observed = at.map(|i| seen.swap_remove(i));
    }
    Ok(())
}

/// The partitions of this database that the database has moved past: a
/// readable file whose set's change counter is above the one it was built
/// at. One whose counter is below it is not listed: `db` is then behind the
/// partition (a lagging replica), which is newer than the rows `db` holds and
/// must not be rebuilt from them. Constant work per partition (header,
/// provenance, one counter row), so `serve --rebuild-stale` can ask often.
pub async fn stale_partitions(db: &Db, store: &dyn PartitionStore) -> Result<Vec<(String, String)>> {
    let database_id = crate::storage::meta::database_id(db).await?;
    let mut out = Vec::new();
    for (model, set) in sources(db).await? {
        let path = store.locate(&model, &set);
        if !store.exists(&path) {
            continue;
        }
        let Ok(prov) = provenance_at(store, &path) else {
            continue;
        };
        if prov.is_from(&database_id) && prov.fingerprint.is_stale(counters(db, &model, &set).await?) {
            out.push((model, set));
        }
    }
    Ok(out)
}
