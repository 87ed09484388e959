//! The partition store: where partition files live, behind one seam.
//!
//! Every reader and writer of partition files goes through a
//! [`PartitionStore`]: the catalog lists and opens them, the build publishes
//! new versions, `index drop` removes them, and the query side's cache
//! ([`crate::nearest::cache`]) asks for the current version of a (model, set)
//! before it maps it. The one implementation today is [`LocalDir`], a
//! directory on this machine (`<data-dir>/index`, one subdirectory per joint
//! model); a store elsewhere (object storage) implements the same trait.
//!
//! A partition is named by its *location*, a path: where it is shown in
//! messages and status rows, and what [`PartitionStore::open`] and
//! [`PartitionStore::remove`] take. [`PartitionStore::locate`] gives the
//! location of a (model, set); [`PartitionStore::list`] every location held,
//! including files no (model, set) maps to (`index status` shows them as
//! unreadable).

use std::path::{Path, PathBuf};

use stabspace_index::Partition;

use crate::error::{Error, Result};

/// File extension of partition files.
pub const EXTENSION: &str = "stabidx";

/// One version of one partition as the store holds it: a new version means a
/// new publish, and a cache maps it anew. Opaque to callers; compare it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Version(String);

impl Version {
    /// A version named by `id` (a store's own notion: a file's identity, a checksum).
    pub fn new(id: impl Into<String>) -> Version {
        Version(id.into())
    }
}

/// The version a build replaces, taken when it starts ([`PartitionStore::base`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Base(pub i64);

/// What a store recorded of a partition when it was published (a remote
/// store's manifest): enough for its status, its parameters and its
/// freshness without fetching the file. Its integrity is the SHA-256, checked
/// whenever the file is downloaded.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Recorded {
    /// The file's provenance, as it records it.
    pub provenance: serde_json::Value,
    pub file_bytes: u64,
    pub format_version: u32,
    /// The quantisation of the codes graph searches traverse (`None`: none).
    pub quantized: Option<String>,
    pub graph: bool,
    pub row_hashes: bool,
}

impl Recorded {
    /// What `p`, with provenance `provenance`, records.
    pub fn of(p: &Partition, provenance: serde_json::Value) -> Recorded {
        let info = p.info();
        Recorded {
            provenance,
            file_bytes: info.file_bytes,
            format_version: info.version,
            quantized: info.quantized.map(str::to_string),
            graph: p.has_graph(),
            row_hashes: p.row_hashes().is_some(),
        }
    }
}

/// What [`PartitionStore::refresh`] did.
#[derive(Clone, Debug, Default)]
pub struct Refreshed {
    /// (model, set) pairs now answering from a newer version.
    pub swapped: Vec<(String, String)>,
    /// New versions downloaded before they were swapped in.
    pub prefetched: usize,
    /// New versions refused (a failed download or checksum): the one before
    /// keeps serving. One message each.
    pub refused: Vec<String>,
}

/// One version a store holds (`index status` lists them for a remote store).
#[derive(Clone, Debug, serde::Serialize)]
pub struct StoredVersion {
    pub model_id: String,
    pub scenario_set_id: String,
    pub generation: i64,
    /// Where the object is (`s3://bucket/prefix/…`).
    pub object: String,
    pub size_bytes: i64,
    pub sha256: String,
    pub rows: i64,
    pub built_at: String,
    pub published_at: String,
    /// Whether this is the version queries are served from.
    pub current: bool,
    /// Whether this machine's cache holds it.
    pub cached: bool,
}

/// What [`PartitionStore::gc`] removed (or, on a dry run, would remove).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Collected {
    /// Superseded versions forgotten: "model / set generation N".
    pub versions: Vec<String>,
    /// Objects (or files) deleted, with their sizes.
    pub objects: Vec<(String, u64)>,
    /// Objects no version names that are younger than the grace period: kept.
    pub kept_young: usize,
}

/// What a store's local cache of fetched partitions holds and has done.
#[derive(Clone, Copy, Debug, Default)]
pub struct CacheStats {
    pub resident_bytes: u64,
    pub resident_files: u64,
    pub budget_bytes: u64,
    /// Lookups of a version this machine holds (one per query).
    pub hits: u64,
    /// Objects downloaded (cold fetches and prefetches).
    pub fetches: u64,
    pub fetched_bytes: u64,
    pub fetch_failures: u64,
    pub evictions: u64,
    /// Seconds the last download took.
    pub last_fetch_seconds: f64,
}

/// What publishing wrote.
#[derive(Clone, Debug)]
pub struct Published {
    pub location: PathBuf,
    pub version: Version,
    pub file_bytes: u64,
}

/// Where partition files live: list, open for search, publish a new version
/// atomically, remove, sweep what killed writers left.
pub trait PartitionStore: Send + Sync + std::fmt::Debug {
    /// Where the store is, for messages: a directory or a URL.
    fn describe(&self) -> String;

    /// The location of (model, set)'s partition, whether it exists or not.
    fn locate(&self, model: &str, set: &str) -> PathBuf;

    /// Every partition location the store holds, sorted.
    fn list(&self) -> Result<Vec<PathBuf>>;

    /// The current version at `location`; `None`: there is no partition there.
    /// Cheap (a `stat`): the query side asks on every lookup.
    fn version(&self, location: &Path) -> Result<Option<Version>>;

    /// Whether there is a partition at `location`: one whose version cannot
    /// even be read counts as none, as [`Path::exists`] counts it.
    fn exists(&self, location: &Path) -> bool {
        self.version(location).ok().flatten().is_some()
    }

    /// Map the partition at `location` for reading (its header and section
    /// table validated: constant work), with the version mapped.
    fn open(&self, location: &Path) -> Result<(Partition, Version)>;

    /// What a build of (model, set) starting now replaces: taken before it
    /// reads the rows, handed to [`PartitionStore::publish`]. A store that
    /// builders on several machines share refuses a publish whose base
    /// another publish has moved past (the database is the commit point). A
    /// directory has one writer per machine and takes any.
    fn base(&self, model: &str, set: &str) -> Result<Base> {
        let _ = (model, set);
        Ok(Base::default())
    }

    /// Publish a new version of (model, set) built from `base`: `write`
    /// writes the file at the path it is given, and readers see either the
    /// old version or the whole new one, never a part.
    fn publish(
        &self,
        model: &str,
        set: &str,
        base: Base,
        write: &mut dyn FnMut(&Path) -> Result<()>,
    ) -> Result<Published>;

    /// Remove the partition at `location`; `false` when there was none.
    fn remove(&self, location: &Path) -> Result<bool>;

    /// Remove what writers killed part-way left behind; the locations removed.
    fn sweep(&self) -> Result<Vec<PathBuf>>;

    /// Catch up with what was published elsewhere. A remote store reads its
    /// manifest and downloads the new version of each partition this machine
    /// holds *before* it swaps it in, so no query waits on a download after a
    /// publish. A local directory has nothing to do: every lookup sees the file.
    fn refresh(&self) -> Result<Refreshed> {
        Ok(Refreshed::default())
    }

    /// Every version the store holds, oldest first per (model, set); `None`
    /// when the store keeps only the current file of each (a directory).
    fn versions(&self) -> Result<Option<Vec<StoredVersion>>> {
        Ok(None)
    }

    /// Remove what no current version needs and is older than `grace`
    /// (`index gc`); with `dry_run`, only say what. A directory holds nothing
    /// but current files: its temporary files of killed writers go.
    fn gc(&self, grace: std::time::Duration, dry_run: bool) -> Result<Collected> {
        let _ = grace;
        let objects = if dry_run { Vec::new() } else { self.sweep()? };
        Ok(Collected {
            objects: objects
                .into_iter()
                .map(|p| (p.display().to_string(), 0))
                .collect(),
            ..Collected::default()
        })
    }

    /// The current version at `location` for bookkeeping (a cache checking
    /// what it holds): as [`PartitionStore::version`], but not counted as a
    /// use of the partition.
    fn peek_version(&self, location: &Path) -> Result<Option<Version>> {
        self.version(location)
    }

    /// What was recorded of the partition at `location` when it was
    /// published, without reading the file (`None`: nothing recorded apart
    /// from the file: read it).
    fn recorded(&self, location: &Path) -> Result<Option<Recorded>> {
        let _ = location;
        Ok(None)
    }

    /// The local cache of a store that fetches partitions; `None` for a directory.
    fn cache_stats(&self) -> Option<CacheStats> {
        None
    }
}

/// Partition files in a local directory: `DIR/<model>/<set>.stabidx`, ids
/// made file-name safe ([`partition_path`]). A new version is written to a
/// temporary file beside the old one and renamed over it (the engine's
/// `PartitionBuilder::write` does both), so publishing is atomic and a
/// reader's map of the old file stays valid until it drops it.
#[derive(Clone, Debug)]
pub struct LocalDir {
    dir: PathBuf,
}

impl LocalDir {
    pub fn new(dir: impl Into<PathBuf>) -> LocalDir {
        LocalDir { dir: dir.into() }
    }

    /// The partitions of a data directory: `<data_dir>/index`.
    pub fn of_data_dir(data_dir: &Path) -> LocalDir {
        LocalDir::new(index_dir(data_dir))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Where a data directory's partitions live.
pub fn index_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("index")
}

/// The partition file of (joint model, scenario set) under `index_dir`.
pub fn partition_path(index_dir: &Path, model: &str, set: &str) -> PathBuf {
    index_dir
        .join(safe(model))
        .join(format!("{}.{EXTENSION}", safe(set)))
}

/// A file-name-safe form of an id: unchanged when it is made of `[A-Za-z0-9._-]`,
/// otherwise the unsafe characters replaced and a hash of the id appended.
pub(crate) fn safe(id: &str) -> String {
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

/// A local file's version: device, inode, length and modification time. A
/// rename over the file gives a new inode, so every publish is a new version.
fn file_version(meta: &std::fs::Metadata) -> Version {
    use std::os::unix::fs::MetadataExt;
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    Version(format!("{}:{}:{}:{modified}", meta.dev(), meta.ino(), meta.len()))
}

impl PartitionStore for LocalDir {
    fn describe(&self) -> String {
        self.dir.display().to_string()
    }

    fn locate(&self, model: &str, set: &str) -> PathBuf {
        partition_path(&self.dir, model, set)
    }

    fn list(&self) -> Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        let Ok(models) = std::fs::read_dir(&self.dir) else {
            return Ok(out);
        };
        for m in models {
            let m = m.map_err(|e| Error::io(&self.dir, e))?.path();
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

    fn version(&self, location: &Path) -> Result<Option<Version>> {
        match std::fs::metadata(location) {
            Ok(m) => Ok(Some(file_version(&m))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(location, e)),
        }
    }

    fn open(&self, location: &Path) -> Result<(Partition, Version)> {
        // The version before the map: a publish in between makes the map
        // newer than its version, so the next lookup maps it again.
        let version = self
            .version(location)?
            .ok_or_else(|| Error::io(location, std::io::ErrorKind::NotFound.into()))?;
        Ok((Partition::open(location)?, version))
    }

    fn publish(
        &self,
        model: &str,
        set: &str,
        _base: Base,
        write: &mut dyn FnMut(&Path) -> Result<()>,
    ) -> Result<Published> {
        let path = self.locate(model, set);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        // The engine writes a temporary file beside `path` and renames it over.
        write(&path)?;
        let meta = std::fs::metadata(&path).map_err(|e| Error::io(&path, e))?;
        Ok(Published {
            location: path,
            version: file_version(&meta),
            file_bytes: meta.len(),
        })
    }

    fn remove(&self, location: &Path) -> Result<bool> {
        match std::fs::remove_file(location) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io(location, e)),
        }
    }

    /// The temporary files (`.SET.stabidx.tmp.PID.N`) of writers that are
    /// gone, in any model directory (see `stabspace_index::tempfiles`).
    fn sweep(&self) -> Result<Vec<PathBuf>> {
        let mut removed = Vec::new();
        let models = match std::fs::read_dir(&self.dir) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(removed),
            Err(e) => return Err(Error::io(&self.dir, e)),
        };
        for m in models {
            let m = m.map_err(|e| Error::io(&self.dir, e))?.path();
            if m.is_dir() {
                removed.extend(stabspace_index::tempfiles::sweep(&m)?);
            }
        }
        removed.sort();
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// A publish is a new version; a remove leaves none; the listing holds
    /// only partition files.
    #[test]
    fn local_dir_publishes_new_versions_and_removes() {
        let tmp = tempfile::tempdir().unwrap();
        let store = LocalDir::new(tmp.path().join("index"));
        assert!(store.list().unwrap().is_empty());
        let at = store.locate("m", "s");
        assert_eq!(store.version(&at).unwrap(), None);
        let first = store
            .publish("m", "s", Base::default(), &mut |p| {
                std::fs::write(p, b"one").map_err(|e| Error::io(p, e))
            })
            .unwrap();
        assert_eq!((first.location.as_path(), first.file_bytes), (at.as_path(), 3));
        assert_eq!(store.version(&at).unwrap(), Some(first.version.clone()));
        // A new file renamed over the old one, as the engine writes.
        let second = store
            .publish("m", "s", Base::default(), &mut |p| {
                let tmp = p.with_extension("new");
                std::fs::write(&tmp, b"second").map_err(|e| Error::io(&tmp, e))?;
                std::fs::rename(&tmp, p).map_err(|e| Error::io(p, e))
            })
            .unwrap();
        assert_ne!(first.version, second.version);
        std::fs::write(at.with_extension("txt"), b"not a partition").unwrap();
        assert_eq!(store.list().unwrap(), vec![at.clone()]);
        assert!(store.remove(&at).unwrap());
        assert!(!store.remove(&at).unwrap());
        assert_eq!(store.version(&at).unwrap(), None);
    }
}
