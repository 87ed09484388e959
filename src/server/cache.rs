//! Partitions opened once and shared across requests, swapped when their file
//! is replaced.
//!
//! Each request looks its partition up by (joint model, scenario set) and
//! `stat`s the file: a rebuild renames a new file over the old one, so a new
//! inode (or size, or modification time) means a new file, and the next
//! request opens it. Requests in flight keep their `Arc` to the old map and
//! finish on it; the old map is unmapped when the last of them drops it. No
//! request waits for another's open: opening a partition is O(1).

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use stabspace_index::Partition;

use crate::error::{Error, Result};
use crate::nearest::{calibrated_ef, DEFAULT_RECALL};
use crate::partitions::partition_path;

/// What identifies one version of a partition file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    modified: Option<SystemTime>,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
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
    pub partition: Partition,
    /// The breadth calibrated for the default recall target (and a note when
    /// it cannot be promised).
    pub default_ef: (usize, Option<String>),
    stamp: Stamp,
}

/// The open partitions of one index directory.
pub struct PartitionCache {
    index_dir: PathBuf,
    open: Mutex<HashMap<(String, String), Arc<Loaded>>>,
}

/// What a lookup found.
pub enum Lookup {
    /// The partition, and whether this lookup replaced an older open file.
    Found { loaded: Arc<Loaded>, reloaded: bool },
    /// No file for (model, set).
    Missing,
}

impl PartitionCache {
    pub fn new(index_dir: PathBuf) -> Self {
        PartitionCache {
            index_dir,
            open: Mutex::new(HashMap::new()),
        }
    }

    pub fn index_dir(&self) -> &Path {
        &self.index_dir
    }

    /// Partitions currently open.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The current file of (model, set): the open one when its file is
    /// unchanged, else the file opened now.
    pub fn get(&self, model: &str, set: &str) -> Result<Lookup> {
        let path = partition_path(&self.index_dir, model, set);
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.lock().remove(&(model.to_string(), set.to_string()));
                return Ok(Lookup::Missing);
            }
            Err(e) => return Err(Error::io(&path, e)),
        };
        let stamp = Stamp::of(&meta);
        let key = (model.to_string(), set.to_string());
        if let Some(l) = self.lock().get(&key) {
            if l.stamp == stamp {
                return Ok(Lookup::Found {
                    loaded: Arc::clone(l),
                    reloaded: false,
                });
            }
        }
        // Opened outside the lock: a slow disk delays only this request.
        let partition = Partition::open(&path)?;
        // The file may have been replaced between the stat and the open: stamp
        // what was opened as the stat saw it; a later request sees the newer
        // stamp and opens again.
        let default_ef = calibrated_ef(&partition, DEFAULT_RECALL)?;
        let loaded = Arc::new(Loaded {
            partition,
            default_ef,
            stamp,
        });
        let reloaded = self.lock().insert(key, Arc::clone(&loaded)).is_some();
        Ok(Lookup::Found { loaded, reloaded })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Arc<Loaded>>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }
}
