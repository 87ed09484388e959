//! `GET /v1/partitions`: the rows of `index status`, in constant work per
//! partition.
//!
//! `index status` opens every partition file and checks every section's
//! checksum, which reads the whole file (85 MB for a 20,000-row set, 1.7 GB
//! at a million rows): on a route anyone can call, that is a denial of
//! service. Here each version of a file (its store's [`Version`]: for a local
//! directory its device, inode, length and modification time) is opened once, in constant work (header, section table,
//! provenance), and its checksums are verified once, off the request path, by
//! one background thread taking one file at a time. Until then its row says
//! `"checksums": "pending"`; then `"ok"`, or the file is `unreadable` with
//! what failed and `"checksums": "bad"`. On the database's side a call reads
//! the change counters of every set (one row each); a set's row count, and
//! the list of sets, are read again only when some counter moved.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus_client::metrics::counter::Counter;

use crate::error::Result;
use crate::partitions::{
    self, Counters, FileSummary, Fingerprint, PartitionStore, Provenance, Status, Version,
};
use crate::storage::Db;

/// What a file version's checksums said.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Checks {
    Pending,
    Ok,
    Bad(String),
}

impl Checks {
    fn label(&self) -> &'static str {
        match self {
            Checks::Pending => "pending",
            Checks::Ok => "ok",
            Checks::Bad(_) => "bad",
        }
    }
}

/// What opening one file version told, in constant work.
#[derive(Clone)]
enum Head {
    /// The header or the section table is refused.
    Unopenable(String),
    /// Opened, but its provenance is not a stabspace partition record.
    NoProvenance(String),
    Read(Arc<FileSummary>),
}

/// One version of one partition file.
struct FileVersion {
    version: Version,
    head: Head,
    /// `None` for a file that cannot be opened (nothing to verify).
    checks: Option<Arc<Mutex<Checks>>>,
}

type SetCounters = HashMap<(String, String), Counters>;

/// A file's current version as a row needs it: what opening it told, and its checksums.
type Seen = (Head, Option<Arc<Mutex<Checks>>>);

/// What the database said, with the counters it was read at.
#[derive(Default)]
struct DbView {
    /// The counters of every set when `sources` was read (`None`: never read).
    counters: Option<SetCounters>,
    sources: Vec<(String, String)>,
    fingerprints: HashMap<(String, String), Fingerprint>,
}

/// A checksum verification waiting for the background thread.
struct Job {
    store: Arc<dyn PartitionStore>,
    path: PathBuf,
    version: Version,
    checks: Arc<Mutex<Checks>>,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// Whether the background thread is running (it stops when the queue is empty).
    running: bool,
}

/// One row of `GET /v1/partitions`: the status, and what the checksums said
/// (`None`: no file, or one that cannot be opened).
pub struct Row {
    pub status: Status,
    pub checksums: Option<&'static str>,
}

/// The status of every partition of one store, cached per file version.
pub struct StatusCache {
    store: Arc<dyn PartitionStore>,
    files: Mutex<HashMap<PathBuf, FileVersion>>,
    db: Mutex<DbView>,
    queue: Arc<Mutex<Queue>>,
    /// File versions whose checksums were verified.
    verifications: Counter,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl StatusCache {
    pub fn new(store: Arc<dyn PartitionStore>, verifications: Counter) -> Self {
        StatusCache {
            store,
            files: Mutex::new(HashMap::new()),
            db: Mutex::new(DbView::default()),
            queue: Arc::new(Mutex::new(Queue::default())),
            verifications,
        }
    }

    /// The rows of `index status` (`partitions::status_all`), without reading
    /// any file in full.
    pub async fn rows(&self, db: &Db) -> Result<Vec<Row>> {
        let database_id = crate::storage::meta::database_id(db).await?;
        let counters = all_counters(db).await?;
        let sources = self.sources(db, &counters).await?;
        let on_disk = self.store.list()?;
        let versions = self.versions(&on_disk);
        let mut pairs = sources;
        for v in versions.values() {
            if let Head::Read(h) = &v.0 {
                pairs.push((h.prov.model_id.clone(), h.prov.scenario_set_id.clone()));
            }
        }
        pairs.sort();
        pairs.dedup();
        let mut out = Vec::with_capacity(pairs.len());
        for (model, set) in &pairs {
            let c = counters
                .get(&(model.clone(), set.clone()))
                .copied()
                .unwrap_or_default();
            let now = self.fingerprint(db, model, set, c).await?;
            let path = self.store.locate(model, set);
            let version = versions.get(&path);
            out.push(row(model, set, path, version, now, &database_id));
        }
        self.forget_fingerprints_but(&pairs);
        // Files that cannot even be opened, under names no (model, set) maps to.
        for f in on_disk {
            if out.iter().any(|r| r.status.path == f) {
                continue;
            }
            let detail = match versions.get(&f) {
                Some((Head::Unopenable(e), _)) => e.clone(),
                _ => "not a partition of this database".into(),
            };
            out.push(Row {
                status: Status::unlisted(f, detail),
                checksums: None,
            });
        }
        Ok(out)
    }

    /// The (model, set) pairs with scenario vectors, read again only when a
    /// set's counters moved (every insert, update or delete moves them).
    async fn sources(&self, db: &Db, counters: &SetCounters) -> Result<Vec<(String, String)>> {
        {
            let view = lock(&self.db);
            if view.counters.as_ref() == Some(counters) {
                return Ok(view.sources.clone());
            }
        }
        let sources = partitions::sources(db).await?;
        let mut view = lock(&self.db);
        view.counters = Some(counters.clone());
        view.sources = sources.clone();
        Ok(sources)
    }

    /// The set's fingerprint (its rows counted), counted again only when its
    /// counters moved.
    async fn fingerprint(&self, db: &Db, model: &str, set: &str, now: Counters) -> Result<Fingerprint> {
        let key = (model.to_string(), set.to_string());
        if let Some(fp) = lock(&self.db).fingerprints.get(&key) {
            if fp.version == now.version && fp.rewrites == Some(now.rewrites) {
                return Ok(fp.clone());
            }
        }
        let fp = partitions::fingerprint(db, model, set).await?;
        lock(&self.db).fingerprints.insert(key, fp.clone());
        Ok(fp)
    }

    fn forget_fingerprints_but(&self, pairs: &[(String, String)]) {
        let keep: HashSet<&(String, String)> = pairs.iter().collect();
        lock(&self.db).fingerprints.retain(|k, _| keep.contains(k));
    }

    /// Each file's current version: opened when first seen (constant work),
    /// its checksums queued for the background thread.
    fn versions(&self, on_disk: &[PathBuf]) -> HashMap<PathBuf, Seen> {
        let mut files = lock(&self.files);
        let listed: HashSet<&PathBuf> = on_disk.iter().collect();
        files.retain(|p, _| listed.contains(p));
        let mut out = HashMap::with_capacity(on_disk.len());
        for path in on_disk {
            // Gone since the listing: as if it had not been listed.
            let Ok(Some(version)) = self.store.peek_version(path) else {
                continue;
            };
            if files.get(path).is_none_or(|v| v.version != version) {
                let v = open_version(&*self.store, path, version.clone());
                if let Some(checks) = &v.checks {
                    self.enqueue(Job {
                        store: Arc::clone(&self.store),
                        path: path.clone(),
                        version,
                        checks: Arc::clone(checks),
                    });
                }
                files.insert(path.clone(), v);
            }
            if let Some(v) = files.get(path) {
                out.insert(path.clone(), (v.head.clone(), v.checks.clone()));
            }
        }
        out
    }

    /// Queue a verification; start the background thread when none runs.
    fn enqueue(&self, job: Job) {
        let mut q = lock(&self.queue);
        q.jobs.push_back(job);
        if q.running {
            return;
        }
        let queue = Arc::clone(&self.queue);
        let counter = self.verifications.clone();
        // A thread of its own, not the runtime's blocking pool: a shutdown
        // never waits for a verification to finish.
        let started = std::thread::Builder::new()
            .name("verify-partitions".into())
            .spawn(move || loop {
                let job = {
                    let mut q = lock(&queue);
                    match q.jobs.pop_front() {
                        Some(j) => j,
                        None => {
                            q.running = false;
                            return;
                        }
                    }
                };
                if let Some(result) = verify(&job) {
                    *lock(&job.checks) = result;
                    counter.inc();
                }
            });
        match started {
            Ok(_) => q.running = true,
            // The jobs stay queued (their rows "pending") for the next start.
            Err(e) => eprintln!("warning: cannot start the partition verification thread: {e}"),
        }
    }
}

/// The counters of every set that has ever had a scenario vector written
/// (one row per set).
async fn all_counters(db: &Db) -> Result<SetCounters> {
    Ok(crate::storage::partition_counters::all_counters(db)
        .await?
        .into_iter()
        .map(|(m, s, c)| {
            (
                (m, s),
                Counters {
                    version: c.version,
                    rewrites: c.rewrites,
                },
            )
        })
        .collect())
}

/// Open one file version: header, section table and provenance only.
fn open_version(store: &dyn PartitionStore, path: &std::path::Path, version: Version) -> FileVersion {
    // A remote store's summary, recorded at publish: nothing is fetched, and
    // there is nothing here to verify (a download checks the SHA-256).
    match store.recorded(path) {
        Ok(Some(r)) => {
            let head = match FileSummary::of_recorded(&r) {
                Ok(f) => Head::Read(Arc::new(f)),
                Err(e) => Head::NoProvenance(e.to_string()),
            };
            return FileVersion {
                version,
                head,
                checks: None,
            };
        }
        Ok(None) => {}
        Err(e) => {
            return FileVersion {
                version,
                head: Head::Unopenable(e.to_string()),
                checks: None,
            }
        }
    }
    let p = match store.open(path) {
        Ok((p, _)) => p,
        Err(e) => {
            return FileVersion {
                version,
                head: Head::Unopenable(e.to_string()),
                checks: None,
            }
        }
    };
    let head = match Provenance::of(&p) {
        Err(e) => Head::NoProvenance(e.to_string()),
        Ok(prov) => Head::Read(Arc::new(FileSummary::of(&p, prov))),
    };
    FileVersion {
        version,
        head,
        checks: Some(Arc::new(Mutex::new(Checks::Pending))),
    }
}

/// Check every section's checksum of one file version; `None` when the file
/// at its path is another version by now (that one has a job of its own).
fn verify(job: &Job) -> Option<Checks> {
    let current = || job.store.peek_version(&job.path).ok().flatten();
    if current().as_ref() != Some(&job.version) {
        return None;
    }
    let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        job.store
            .open(&job.path)
            .and_then(|(p, _)| Ok(p.verify()?))
            .map_err(|e| e.to_string())
    }))
    .unwrap_or_else(|_| {
        Err(format!(
            "{}: the checksum verification failed",
            job.path.display()
        ))
    });
    if current().as_ref() != Some(&job.version) {
        return None;
    }
    Some(match checked {
        Ok(()) => Checks::Ok,
        Err(e) => Checks::Bad(e),
    })
}

/// One (model, set)'s row, as `partitions::status_of` makes it, with the
/// checksums as verified so far.
fn row(
    model: &str,
    set: &str,
    path: PathBuf,
    version: Option<&Seen>,
    now: Fingerprint,
    database_id: &str,
) -> Row {
    let mut st = Status::missing(model, set, path, now.clone());
    let Some((head, checks)) = version else {
        return Row {
            status: st,
            checksums: None,
        };
    };
    let checks = checks.as_ref().map(|c| lock(c).clone());
    let checksums = checks.as_ref().map(Checks::label);
    let unreadable = |mut st: Status, detail: String| {
        st.unreadable(detail);
        Row {
            status: st,
            checksums,
        }
    };
    // The order of `status_of`: open, checksums, provenance.
    let h = match (head, checks) {
        (Head::Unopenable(e), _) => return unreadable(st, e.clone()),
        (_, Some(Checks::Bad(e))) => return unreadable(st, e),
        (Head::NoProvenance(e), _) => return unreadable(st, e.clone()),
        (Head::Read(h), _) => h,
    };
    partitions::readable_status(&mut st, h, &now, database_id);
    Row {
        status: st,
        checksums,
    }
}
