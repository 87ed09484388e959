//! A partition store in object storage, through the S3 API
//! (`--partition-store s3://BUCKET/PREFIX`): the `object_store` crate, set up
//! by the standard variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_REGION`, `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP=true` for a plain-HTTP
//! endpoint such as a local moto or MinIO).
//!
//! **Publish.** A build writes its file into a staging directory on this
//! machine, uploads it (multipart) under a content-addressed key,
//! `PREFIX/<model>/<set>/<sha256>.stabidx`, and then commits a row of
//! `partition_manifest` (model, set, generation, key, size, SHA-256, database
//! id, change counters, rows, format version, built at) in the primary
//! database. The database is the commit point: no reader sees a version whose
//! upload did not finish, and of two builders that started from the same
//! generation only the first commits; the other's object is left unused for
//! `index gc`, and its build fails saying so.
//!
//! **Read.** The store keeps a view of the manifest's current rows (one query
//! at first use, then [`PartitionStore::refresh`]: `serve` polls every
//! `--refresh-secs`, the CLI reads it once, Python at most every
//! `refresh_secs`). Opening a partition downloads its version once into the
//! local cache ([`super::fetch`]: length and SHA-256 verified, least recently
//! used versions evicted past `--cache-max-gb`) and maps it. A refresh
//! downloads the new version of every partition this machine holds before it
//! swaps the view, so a query never waits on a download after a publish; a
//! download that fails or does not verify leaves the previous version serving.
//! With the object store down, every cached version keeps serving, and a
//! partition never fetched is reported unreadable, which queries answer by
//! an exact scan of the database, saying so.
//!
//! Polling rather than `LISTEN/NOTIFY`: a notification reaches only
//! listeners on the primary (a hot standby cannot `LISTEN`), and query nodes
//! read from replicas; a poll is one indexed query per interval per node.
//!
//! The store runs its network and database work on a small runtime of its
//! own, so that its synchronous lookups can be called from any thread,
//! including the async tasks of callers, without entering their runtime.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::{ClientConfigKey, ObjectStore, RetryConfig};
use stabspace_index::Partition;

use super::fetch::{sha256_file, ObjectCache};
use super::provenance::Provenance;
use super::store::{
    safe, Base, CacheStats, Collected, PartitionStore, Published, Recorded, Refreshed, StoredVersion,
    Version, EXTENSION,
};
use super::transfer::{collect, download, upload};
use crate::error::{Error, Result};
use crate::storage::manifest::{self, ManifestRow};
use crate::storage::{Access, Db};

/// Where a remote store is and how it caches.
#[derive(Clone, Debug)]
pub struct RemoteSettings {
    pub bucket: String,
    /// Key prefix, without leading or trailing `/` (may be empty).
    pub prefix: String,
    /// Downloads and staged builds live here.
    pub cache_dir: PathBuf,
    pub cache_max_bytes: u64,
    /// How old the manifest view may grow before a lookup reads it again
    /// (`None`: only [`PartitionStore::refresh`] reads it, after the first use).
    pub refresh_every: Option<Duration>,
    /// The primary database (publish, drop, gc) and the one lookups read.
    pub primary_url: String,
    pub read_url: String,
    /// S3 settings over the environment's, as (variable, value): `AWS_ENDPOINT_URL`, ….
    pub s3_overrides: Vec<(String, String)>,
}

/// Partitions in an S3 bucket, their versions in `partition_manifest`.
pub struct RemoteStore {
    inner: Arc<Inner>,
    rt: Option<tokio::runtime::Runtime>,
}

struct Inner {
    url: String,
    prefix: String,
    objects: Arc<dyn ObjectStore>,
    primary_url: String,
    read_url: String,
    primary: tokio::sync::OnceCell<Db>,
    read: tokio::sync::OnceCell<Db>,
    cache: ObjectCache,
    staging: PathBuf,
    view: RwLock<View>,
    refresh_every: Option<Duration>,
    /// Downloads that failed lately, by SHA-256: asked again within
    /// [`RETRY_AFTER`], the failure is answered at once (a store that is down
    /// costs each query nothing).
    failed: std::sync::Mutex<std::collections::HashMap<String, (Instant, String)>>,
}

/// How long a download that failed is not tried again: a store that is down
/// (briefly), an object that failed verification (it is immutable: for long).
const RETRY_AFTER: Duration = Duration::from_secs(5);
const REFUSED_FOR: Duration = Duration::from_secs(600);

#[derive(Default)]
struct View {
    rows: BTreeMap<PathBuf, ManifestRow>,
    loaded: Option<Instant>,
    /// The manifest's [`manifest::signature`] when `rows` were read.
    signature: Option<manifest::Signature>,
    /// A new version was refused: read the rows again next time, whatever
    /// the signature says.
    retry: bool,
}

impl std::fmt::Debug for RemoteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RemoteStore({}, {:?})", self.inner.url, self.inner.cache)
    }
}

impl Drop for RemoteStore {
    fn drop(&mut self) {
        // Dropping a runtime blocks; callers may be async tasks.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl RemoteStore {
    /// The store `settings` name. Nothing is contacted yet: the manifest is
    /// read at first use, the bucket at the first download or upload.
    pub fn open(settings: RemoteSettings) -> Result<RemoteStore> {
        let RemoteSettings {
            bucket,
            prefix,
            cache_dir,
            cache_max_bytes,
            refresh_every,
            primary_url,
            read_url,
            s3_overrides,
        } = settings;
        let url = if prefix.is_empty() {
            format!("s3://{bucket}")
        } else {
            format!("s3://{bucket}/{prefix}")
        };
        let mut builder = AmazonS3Builder::from_env();
        for (k, v) in &s3_overrides {
            let key: AmazonS3ConfigKey = k
                .to_ascii_lowercase()
                .parse()
                .map_err(|e| Error::Invalid(format!("partition store {url}: {k}: {e}")))?;
            builder = builder.with_config(key, v);
        }
        let objects = builder
            .with_bucket_name(&bucket)
            // As config keys, not `with_client_options`, which would replace
            // what the environment set (AWS_ALLOW_HTTP among them).
            .with_config(AmazonS3ConfigKey::Client(ClientConfigKey::ConnectTimeout), "5s")
            .with_config(AmazonS3ConfigKey::Client(ClientConfigKey::Timeout), "300s")
            .with_retry(RetryConfig {
                max_retries: 3,
                retry_timeout: Duration::from_secs(20),
                ..RetryConfig::default()
            })
            .build()
            .map_err(|e| Error::Invalid(format!("partition store {url}: {e}")))?;
        let staging = cache_dir.join("staging");
        let cache = ObjectCache::open(&cache_dir, cache_max_bytes)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("stabspace-store")
            .enable_all()
            .build()
            .map_err(|e| Error::io(&cache_dir, e))?;
        Ok(RemoteStore {
            inner: Arc::new(Inner {
                url,
                prefix,
                objects: Arc::new(objects),
                primary_url,
                read_url,
                primary: tokio::sync::OnceCell::new(),
                read: tokio::sync::OnceCell::new(),
                cache,
                staging,
                view: RwLock::new(View::default()),
                refresh_every,
                failed: Default::default(),
            }),
            rt: Some(rt),
        })
    }

    /// Run `f` on the store's runtime and wait for it: callable from any
    /// thread, async or not. On a worker of a multi-threaded runtime (the
    /// server's) the wait is declared blocking, so that the worker's other
    /// tasks (`/healthz`, cached searches) move on while a download runs.
    fn run<T: Send + 'static>(&self, f: impl Future<Output = T> + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.rt.as_ref().expect("runtime until drop").spawn(async move {
            let _ = tx.send(f.await);
        });
        let wait = move || rx.recv();
        let got = match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(wait)
            }
            _ => wait(),
        };
        // The task sends unless it panicked: carry the panic on.
        got.unwrap_or_else(|_| panic!("a partition store task panicked (see above)"))
    }

    /// Read the manifest when it was never read, or when the view is older
    /// than `refresh_every`.
    fn ensure_view(&self) -> Result<()> {
        let due = {
            let v = self.inner.read_view();
            match (v.loaded, self.inner.refresh_every) {
                (None, _) => true,
                (Some(at), Some(every)) => at.elapsed() >= every,
                (Some(_), None) => false,
            }
        };
        if due {
            let first = self.inner.read_view().loaded.is_none();
            match self.refresh() {
                Ok(r) => {
                    for why in r.refused {
                        eprintln!("warning: {why}");
                    }
                }
                // A view once read keeps serving through a database outage.
                Err(e) if !first => eprintln!("warning: {e}; still serving the partitions known before"),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn row_at(&self, location: &Path) -> Result<Option<ManifestRow>> {
        self.ensure_view()?;
        Ok(self.inner.read_view().rows.get(location).cloned())
    }
}

impl Inner {
    fn read_view(&self) -> std::sync::RwLockReadGuard<'_, View> {
        self.view.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_view(&self) -> std::sync::RwLockWriteGuard<'_, View> {
        self.view.write().unwrap_or_else(|e| e.into_inner())
    }

    async fn primary(&self) -> Result<&Db> {
        self.primary
            .get_or_try_init(|| Db::open_for(&self.primary_url, Access::Write))
            .await
    }

    async fn reader(&self) -> Result<&Db> {
        self.read
            .get_or_try_init(|| Db::open_for(&self.read_url, Access::Read))
            .await
    }

    /// Where (model, set)'s partition is shown: `s3://bucket/prefix/<model>/<set>.stabidx`.
    fn location(&self, model: &str, set: &str) -> PathBuf {
        PathBuf::from(format!("{}/{}/{}.{EXTENSION}", self.url, safe(model), safe(set)))
    }

    fn shown(&self, key: &str) -> String {
        let bucket = self
            .url
            .trim_start_matches("s3://")
            .split('/')
            .next()
            .unwrap_or_default();
        format!("s3://{bucket}/{key}")
    }

    /// Where this database's objects are: `PREFIX/<database id>`, so that
    /// databases sharing a bucket (staging and production) never collect
    /// each other's objects.
    fn key_root(&self, database_id: &str) -> String {
        if self.prefix.is_empty() {
            safe(database_id)
        } else {
            format!("{}/{}", self.prefix, safe(database_id))
        }
    }

    fn key_for(&self, database_id: &str, model: &str, set: &str, sha: &str) -> String {
        format!(
            "{}/{}/{}/{sha}.{EXTENSION}",
            self.key_root(database_id),
            safe(model),
            safe(set)
        )
    }

    /// The cached file of `row`'s version, downloaded and verified first when
    /// it is not here.
    async fn fetch(self: Arc<Self>, row: ManifestRow) -> Result<PathBuf> {
        if self.cache.touch(&row.sha256) {
            return Ok(self.cache.path(&row.sha256));
        }
        let lock = self.cache.download_lock(&row.sha256);
        let _one_at_a_time = lock.lock().await;
        if self.cache.holds(&row.sha256) {
            return Ok(self.cache.path(&row.sha256));
        }
        let recent = {
            let failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
            failed
                .get(&row.sha256)
                .filter(|(at, why)| {
                    at.elapsed()
                        < if why.ends_with("refused") {
                            REFUSED_FOR
                        } else {
                            RETRY_AFTER
                        }
                })
                .map(|(_, why)| why.clone())
        };
        if let Some(why) = recent {
            return Err(Error::Invalid(why));
        }
        let got = download(&*self.objects, &self.cache, &row, &self.shown(&row.object_key)).await;
        let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        match &got {
            Ok(_) => {
                failed.remove(&row.sha256);
            }
            Err(e) => {
                self.cache.failed();
                failed.insert(row.sha256.clone(), (Instant::now(), e.to_string()));
            }
        }
        got
    }

    async fn refresh(self: Arc<Self>) -> Result<Refreshed> {
        let db = self.reader().await?;
        let signature = manifest::signature(db).await?;
        {
            let mut v = self.write_view();
            if v.loaded.is_some() && !v.retry && v.signature.as_ref() == Some(&signature) {
                v.loaded = Some(Instant::now());
                return Ok(Refreshed::default());
            }
        }
        let rows = manifest::current(db).await?;
        let mut out = Refreshed::default();
        let mut next = BTreeMap::new();
        for row in rows {
            let at = self.location(&row.model_id, &row.scenario_set_id);
            let old = self.read_view().rows.get(&at).cloned();
            let row = match old {
                Some(old) if old.sha256 != row.sha256 && self.cache.holds(&old.sha256) => {
                    // This machine serves the set: have the new version here first.
                    match Arc::clone(&self).fetch(row.clone()).await {
                        Ok(_) => {
                            out.prefetched += 1;
                            out.swapped
                                .push((row.model_id.clone(), row.scenario_set_id.clone()));
                            row
                        }
                        Err(e) => {
                            out.refused.push(format!(
                                "{e}; {} / {} keeps serving generation {}",
                                row.model_id, row.scenario_set_id, old.generation
                            ));
                            old
                        }
                    }
                }
                Some(old) if old.sha256 != row.sha256 => {
                    out.swapped
                        .push((row.model_id.clone(), row.scenario_set_id.clone()));
                    row
                }
                _ => row,
            };
            next.insert(at, row);
        }
        let mut v = self.write_view();
        v.rows = next;
        v.loaded = Some(Instant::now());
        v.signature = Some(signature);
        v.retry = !out.refused.is_empty();
        Ok(out)
    }

    async fn base(&self, model: &str, set: &str) -> Result<Base> {
        Ok(Base(
            manifest::generation(self.primary().await?, model, set).await?,
        ))
    }

    async fn publish_staged(
        self: Arc<Self>,
        model: String,
        set: String,
        base: Base,
        staged: PathBuf,
    ) -> Result<ManifestRow> {
        let (sha, bytes) = sha256_file(&staged)?;
        let p = Partition::open(&staged)?;
        let prov = Provenance::of(&p)?;
        let format_version = i64::from(p.info().version);
        let recorded = Recorded::of(&p, serde_json::to_value(&prov).expect("provenance serialises"));
        let summary = serde_json::to_string(&recorded).expect("a summary serialises");
        drop(p);
        let db = self.primary().await?;
        let database_id = crate::storage::meta::database_id(db).await?;
        let key = self.key_for(&database_id, &model, &set, &sha);
        upload(&*self.objects, &key, &staged, &self.shown(&key)).await?;
        let row = ManifestRow {
            model_id: model.clone(),
            scenario_set_id: set.clone(),
            generation: base.0 + 1,
            object_key: key.clone(),
            size_bytes: bytes as i64,
            sha256: sha.clone(),
            database_id,
            scenario_version: prov.fingerprint.version,
            scenario_rewrites: prov.fingerprint.rewrites.unwrap_or(0),
            row_count: prov.rows as i64,
            format_version,
            built_at: prov.built_at.clone(),
            published_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            summary,
        };
        let row = if manifest::commit(db, &row).await? {
            row
        } else {
            let won = manifest::current(db)
                .await?
                .into_iter()
                .find(|r| r.model_id == model && r.scenario_set_id == set);
            match won {
                // Another build published the very same file: it is the version.
                Some(won) if won.sha256 == sha => won,
                _ => {
                    return Err(Error::Invalid(format!(
                        "another build published {model} / {set} first (generation {}), after this build \
                         started; this build's object {} is unused and `stabspace index gc` removes it — run \
                         the build again if the set changed since",
                        row.generation,
                        self.shown(&key)
                    )))
                }
            }
        };
        // The builder's machine keeps the version it built: no download. The
        // version is committed whatever happens here.
        if let Err(e) = self.cache.keep(&sha, &staged, bytes) {
            eprintln!("warning: {e}; the published version will be downloaded when it is needed here");
        }
        let at = self.location(&model, &set);
        self.write_view().rows.insert(at, row.clone());
        Ok(row)
    }
}

/// A fresh directory for one publish's staged file.
fn staging_dir(staging: &Path) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    staging.join(format!("{}.{n}", std::process::id()))
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

impl PartitionStore for RemoteStore {
    fn describe(&self) -> String {
        self.inner.url.clone()
    }

    fn locate(&self, model: &str, set: &str) -> PathBuf {
        self.inner.location(model, set)
    }

    fn list(&self) -> Result<Vec<PathBuf>> {
        self.ensure_view()?;
        Ok(self.inner.read_view().rows.keys().cloned().collect())
    }

    /// The version's SHA-256 while this machine holds it; once evicted, a
    /// different version, so that a cache of maps lets it go and the next
    /// open fetches it again.
    fn version(&self, location: &Path) -> Result<Option<Version>> {
        Ok(self.row_at(location)?.map(|r| {
            if self.inner.cache.touch(&r.sha256) {
                // A lookup answered from what this machine holds.
                self.inner.cache.hit();
                Version::new(r.sha256)
            } else {
                Version::new(format!("{}@store", r.sha256))
            }
        }))
    }

    fn peek_version(&self, location: &Path) -> Result<Option<Version>> {
        Ok(self.row_at(location)?.map(|r| {
            if self.inner.cache.holds(&r.sha256) {
                Version::new(r.sha256)
            } else {
                Version::new(format!("{}@store", r.sha256))
            }
        }))
    }

    fn open(&self, location: &Path) -> Result<(Partition, Version)> {
        let row = self
            .row_at(location)?
            .ok_or_else(|| Error::io(location, std::io::ErrorKind::NotFound.into()))?;
        let sha = row.sha256.clone();
        let path = self.run(Arc::clone(&self.inner).fetch(row.clone()))?;
        match Partition::open(&path) {
            Ok(p) => Ok((p, Version::new(sha))),
            // Evicted meanwhile (by another process sharing the cache, or a
            // download that needed the room): fetched again, once.
            Err(_) if !path.exists() => {
                self.inner.cache.forget(&sha);
                let path = self.run(Arc::clone(&self.inner).fetch(row))?;
                Ok((Partition::open(&path)?, Version::new(sha)))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The summary the manifest recorded at publish: `index status`, the
    /// freshness checks and `serve`'s `GET /v1/partitions` need no download.
    fn recorded(&self, location: &Path) -> Result<Option<Recorded>> {
        let Some(row) = self.row_at(location)? else {
            return Ok(None);
        };
        serde_json::from_str(&row.summary).map(Some).map_err(|e| {
            Error::Invalid(format!(
                "the manifest's summary of {} generation {} cannot be read: {e}",
                location.display(),
                row.generation
            ))
        })
    }

    fn base(&self, model: &str, set: &str) -> Result<Base> {
        let (m, s, inner) = (model.to_string(), set.to_string(), Arc::clone(&self.inner));
        self.run(async move { inner.base(&m, &s).await })
    }

    fn publish(
        &self,
        model: &str,
        set: &str,
        base: Base,
        write: &mut dyn FnMut(&Path) -> Result<()>,
    ) -> Result<Published> {
        let dir = staging_dir(&self.inner.staging);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let staged = dir.join(format!("{}.{EXTENSION}", safe(set)));
        let published = write(&staged).and_then(|()| {
            let job = Arc::clone(&self.inner).publish_staged(model.into(), set.into(), base, staged);
            self.run(job)
        });
        let _ = std::fs::remove_dir_all(&dir);
        let row = published?;
        Ok(Published {
            location: self.locate(model, set),
            version: Version::new(row.sha256),
            file_bytes: row.size_bytes as u64,
        })
    }

    /// Forget every version of the partition at `location` in the manifest;
    /// the objects stay until `index gc` (nodes may still be fetching them).
    fn remove(&self, location: &Path) -> Result<bool> {
        let Some(row) = self.row_at(location)? else {
            return Ok(false);
        };
        let inner = Arc::clone(&self.inner);
        let (m, s) = (row.model_id.clone(), row.scenario_set_id.clone());
        let n = self.run(async move { manifest::remove(inner.primary().await?, &m, &s).await })?;
        self.inner.write_view().rows.remove(location);
        Ok(n > 0)
    }

    /// Staged builds of processes that are gone.
    fn sweep(&self) -> Result<Vec<PathBuf>> {
        let mut removed = Vec::new();
        let Ok(dirs) = std::fs::read_dir(&self.inner.staging) else {
            return Ok(removed);
        };
        for d in dirs.flatten() {
            let path = d.path();
            let pid = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.split('.').next())
                .and_then(|p| p.parse::<u32>().ok());
            if pid.is_some_and(|p| !pid_alive(p)) && std::fs::remove_dir_all(&path).is_ok() {
                removed.push(path);
            }
        }
        removed.sort();
        Ok(removed)
    }

    fn refresh(&self) -> Result<Refreshed> {
        self.run(Arc::clone(&self.inner).refresh())
    }

    fn versions(&self) -> Result<Option<Vec<StoredVersion>>> {
        let inner = Arc::clone(&self.inner);
        let rows = self.run(async move { manifest::all(inner.reader().await?).await })?;
        let mut newest: BTreeMap<(String, String), i64> = BTreeMap::new();
        for r in &rows {
            let g = newest
                .entry((r.model_id.clone(), r.scenario_set_id.clone()))
                .or_default();
            *g = (*g).max(r.generation);
        }
        Ok(Some(
            rows.into_iter()
                .map(|r| StoredVersion {
                    current: newest[&(r.model_id.clone(), r.scenario_set_id.clone())] == r.generation,
                    cached: self.inner.cache.holds(&r.sha256),
                    object: self.inner.shown(&r.object_key),
                    model_id: r.model_id,
                    scenario_set_id: r.scenario_set_id,
                    generation: r.generation,
                    size_bytes: r.size_bytes,
                    sha256: r.sha256,
                    rows: r.row_count,
                    built_at: r.built_at,
                    published_at: r.published_at,
                })
                .collect(),
        ))
    }

    fn gc(&self, grace: Duration, dry_run: bool) -> Result<Collected> {
        let inner = Arc::clone(&self.inner);
        self.run(async move { inner.gc(grace, dry_run).await })
    }

    fn cache_stats(&self) -> Option<CacheStats> {
        Some(self.inner.cache.stats())
    }
}

impl Inner {
    async fn gc(&self, grace: Duration, dry_run: bool) -> Result<Collected> {
        let db = self.primary().await?;
        let root = self.key_root(&crate::storage::meta::database_id(db).await?);
        let bucket = self.shown("");
        collect(
            &*self.objects,
            db,
            &root,
            bucket.trim_end_matches('/'),
            grace,
            dry_run,
        )
        .await
    }
}
