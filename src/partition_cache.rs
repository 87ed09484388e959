//! Partitions opened once and shared across requests, swapped when their file
//! is replaced.
//!
//! Each lookup `stat`s the file: a rebuild renames a new file over the old
//! one, so a new inode (or size, or modification time) means a new file, and
//! the lookup opens it. Requests in flight keep their `Arc` to the old map and
//! finish on it; the old map is unmapped when the last of them drops it.
//! Opening is O(1) (the header and section table), done outside the lock. A
//! new file that cannot be opened leaves the old map in service, with a
//! warning. The cache also serves the query workflows (it is their
//! [`PartitionSource`]), so every query shares the same maps: each route of
//! `stabspace serve`, each call of a Python connection.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use crate::error::{Error, Result};
use crate::nearest::{calibrated_ef, OpenPartition, PartitionSource, DEFAULT_RECALL};

/// What identifies one version of a partition file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    modified: Option<SystemTime>,
}

impl Stamp {
    pub fn of(meta: &std::fs::Metadata) -> Stamp {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            modified: meta.modified().ok(),
        }
    }
}

/// One opened partition file and what every search of it needs.
pub struct Loaded {
    pub open: Arc<OpenPartition>,
    /// The breadth calibrated for the default recall target.
    pub default_ef: usize,
    stamp: Stamp,
}

type Key = (PathBuf, bool);

/// The open partitions of one index directory.
pub struct PartitionCache {
    index_dir: PathBuf,
    open: Mutex<HashMap<Key, Arc<Loaded>>>,
    /// Called for each file found replaced and opened again (the server counts them).
    on_reload: Option<Box<dyn Fn() + Send + Sync>>,
}

impl std::fmt::Debug for PartitionCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PartitionCache({}, {} open)",
            self.index_dir.display(),
            self.len()
        )
    }
}

impl PartitionCache {
    pub fn new(index_dir: PathBuf) -> Self {
        PartitionCache {
            index_dir,
            open: Mutex::new(HashMap::new()),
            on_reload: None,
        }
    }

    /// Call `f` each time a file found replaced is opened again.
    pub fn on_reload(mut self, f: impl Fn() + Send + Sync + 'static) -> Self {
        self.on_reload = Some(Box::new(f));
        self
    }

    pub fn index_dir(&self) -> &Path {
        &self.index_dir
    }

    /// Partition files currently open.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The current file at `path` (`None`: there is none).
    pub fn get(&self, path: &Path, quantized: bool) -> Result<Option<Arc<Loaded>>> {
        let key = (path.to_path_buf(), quantized);
        let stamp = match std::fs::metadata(path) {
            Ok(m) => Stamp::of(&m),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.lock().remove(&key);
                return Ok(None);
            }
            Err(e) => return Err(Error::io(path, e)),
        };
        let cached = self.lock().get(&key).cloned();
        if let Some(l) = &cached {
            if l.stamp == stamp {
                return Ok(Some(Arc::clone(l)));
            }
        }
        let opened = OpenPartition::open(path, quantized)
            .and_then(|open| Ok((calibrated_ef(&open, DEFAULT_RECALL)?.0, open)));
        let (default_ef, open) = match (opened, cached) {
            (Ok(o), _) => o,
            (Err(e), Some(old)) => {
                eprintln!("warning: {e}; still serving the partition file opened before");
                return Ok(Some(old));
            }
            (Err(e), None) => return Err(e),
        };
        // The file may have been replaced again between the stat and the open:
        // then a later lookup sees a newer stamp and opens it.
        let loaded = Arc::new(Loaded {
            open: Arc::new(open),
            default_ef,
            stamp,
        });
        let mut map = self.lock();
        match map.get(&key) {
            // Another request opened this version first: share its map.
            Some(l) if l.stamp == stamp => Ok(Some(Arc::clone(l))),
            previous => {
                if let (Some(_), Some(f)) = (previous, &self.on_reload) {
                    f();
                }
                map.insert(key, Arc::clone(&loaded));
                Ok(Some(loaded))
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Key, Arc<Loaded>>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl PartitionSource for PartitionCache {
    fn open(&self, path: &Path, quantized: bool) -> Result<Arc<OpenPartition>> {
        match self.get(path, quantized)? {
            Some(l) => Ok(Arc::clone(&l.open)),
            None => Err(Error::io(path, std::io::ErrorKind::NotFound.into())),
        }
    }
}
