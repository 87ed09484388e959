//! Partitions opened once and shared across queries, swapped when the store
//! publishes a new version: how the CLI, every route of `stabspace serve` and
//! every call of a Python connection open partitions.
//!
//! Each lookup asks the [`PartitionStore`] for the current version of the
//! (model, set) (for a local directory, a `stat`: a rebuild renames a new file
//! over the old one, so a new inode, size or modification time means a new
//! version) and maps it when it is new. Queries in flight keep their `Arc` to
//! the old map and finish on it; the old map is unmapped when the last of them
//! drops it. Opening is O(1) (the header and section table), done outside the
//! lock. A new version that cannot be opened leaves the old map in service,
//! with a warning.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::breadth::{calibrated_ef, DEFAULT_RECALL};
use super::open::OpenPartition;
use crate::error::Result;
use crate::partitions::{LocalDir, PartitionStore, Version};

/// One mapped version of a partition.
struct Loaded {
    open: Arc<OpenPartition>,
    version: Version,
}

/// A partition's location, and whether its graph is traversed on int8 codes.
type Key = (PathBuf, bool);

/// The open partitions of one store.
pub struct PartitionCache {
    store: Arc<dyn PartitionStore>,
    open: Mutex<HashMap<Key, Arc<Loaded>>>,
    /// Called for each partition found replaced and opened again (the server counts them).
    on_reload: Option<Box<dyn Fn() + Send + Sync>>,
}

impl std::fmt::Debug for PartitionCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PartitionCache({}, {} open)",
            self.store.describe(),
            self.len()
        )
    }
}

impl PartitionCache {
    pub fn new(store: Arc<dyn PartitionStore>) -> Self {
        PartitionCache {
            store,
            open: Mutex::new(HashMap::new()),
            on_reload: None,
        }
    }

    /// The partitions of a local directory (`<data-dir>/index`).
    pub fn local(index_dir: impl Into<PathBuf>) -> Self {
        PartitionCache::new(Arc::new(LocalDir::new(index_dir)))
    }

    /// Call `f` each time a partition found replaced is opened again.
    pub fn on_reload(mut self, f: impl Fn() + Send + Sync + 'static) -> Self {
        self.on_reload = Some(Box::new(f));
        self
    }

    /// The store the partitions come from.
    pub fn store(&self) -> &Arc<dyn PartitionStore> {
        &self.store
    }

    /// Partitions currently open.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The current version of (model, set)'s partition, traversed on int8
    /// codes when `quantized` (`None`: the store has none).
    pub fn get(&self, model: &str, set: &str, quantized: bool) -> Result<Option<Arc<OpenPartition>>> {
        self.get_at(&self.store.locate(model, set), quantized)
    }

    /// As [`PartitionCache::get`], for a check before the query proper (it
    /// fetches and maps what is needed, and is not counted as a use: the
    /// query's own lookup is).
    pub fn prepare(&self, model: &str, set: &str, quantized: bool) -> Result<Option<Arc<OpenPartition>>> {
        self.lookup(&self.store.locate(model, set), quantized, false)
    }

    /// The current version of the partition at `location`.
    pub fn get_at(&self, location: &Path, quantized: bool) -> Result<Option<Arc<OpenPartition>>> {
        self.lookup(location, quantized, true)
    }

    fn lookup(&self, location: &Path, quantized: bool, used: bool) -> Result<Option<Arc<OpenPartition>>> {
        let key = (location.to_path_buf(), quantized);
        let version = if used {
            self.store.version(location)?
        } else {
            self.store.peek_version(location)?
        };
        let Some(version) = version else {
            self.lock().remove(&key);
            return Ok(None);
        };
        let cached = self.lock().get(&key).cloned();
        if let Some(l) = &cached {
            if l.version == version {
                return Ok(Some(Arc::clone(&l.open)));
            }
        }
        // The version the map holds (the store may have published again since
        // the lookup above: then a later lookup sees a newer one and maps it).
        let opened = self.store.open(location).and_then(|(p, version)| {
            let open = OpenPartition::new(p, quantized);
            // A calibration that cannot be read refuses the file here, once.
            calibrated_ef(&open, DEFAULT_RECALL)?;
            Ok(Arc::new(Loaded {
                open: Arc::new(open),
                version,
            }))
        });
        let loaded = match (opened, cached) {
            (Ok(l), _) => l,
            (Err(e), Some(old)) => {
                eprintln!("warning: {e}; still serving the partition opened before");
                return Ok(Some(Arc::clone(&old.open)));
            }
            (Err(e), None) => return Err(e),
        };
        let mut map = self.lock();
        match map.get(&key) {
            // Another query opened this version first: share its map.
            Some(l) if l.version == loaded.version => Ok(Some(Arc::clone(&l.open))),
            previous => {
                if let (Some(_), Some(f)) = (previous, &self.on_reload) {
                    f();
                }
                map.insert(key, Arc::clone(&loaded));
                Ok(Some(Arc::clone(&loaded.open)))
            }
        }
    }

    /// Let go of every map whose version the store no longer serves from
    /// here: a partition dropped, replaced, or (a remote store's cache)
    /// evicted. Queries in flight finish on their maps; the next lookup maps
    /// the current version. `serve` calls it after each refresh of the store.
    pub fn retain_current(&self) {
        let held: Vec<(Key, Version)> = self
            .lock()
            .iter()
            .map(|(k, l)| (k.clone(), l.version.clone()))
            .collect();
        for (key, version) in held {
            let current = self.store.peek_version(&key.0).ok().flatten();
            if current.as_ref() != Some(&version) {
                let mut map = self.lock();
                if map.get(&key).is_some_and(|l| l.version == version) {
                    map.remove(&key);
                }
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Key, Arc<Loaded>>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }
}
