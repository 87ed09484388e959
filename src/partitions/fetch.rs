//! The local cache of partitions fetched from a remote store: one file per
//! version under `<cache-dir>/objects/`, named by its SHA-256, least recently
//! used versions evicted past a budget of bytes.
//!
//! A file enters the cache only whole and verified: it is downloaded to a
//! temporary file beside its final name, its length and SHA-256 compared
//! with what the manifest recorded at publish ([`Verifier`]), and only then
//! renamed into place ([`ObjectCache::admit`]). A file whose content does not
//! match is deleted and refused. What a killed download left behind is
//! removed when the cache is next opened.
//!
//! Eviction unlinks a file; a process that has it mapped keeps reading it
//! (the pages stay until the last map drops), and the next lookup of an
//! evicted version fetches it again.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use sha2::{Digest, Sha256};

use super::store::{CacheStats, EXTENSION};
use crate::error::{Error, Result};

/// Suffix of downloads in progress.
const PART: &str = "part";

struct Entry {
    bytes: u64,
    /// Higher is more recent.
    used: u64,
}

#[derive(Default)]
struct Resident {
    files: HashMap<String, Entry>,
    tick: u64,
}

/// Downloaded partition versions on this machine.
pub struct ObjectCache {
    dir: PathBuf,
    budget: u64,
    resident: Mutex<Resident>,
    /// One download at a time per version: a second asker waits for the first.
    fetching: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    hits: AtomicU64,
    fetches: AtomicU64,
    fetched_bytes: AtomicU64,
    failures: AtomicU64,
    evictions: AtomicU64,
    last_fetch_micros: AtomicU64,
}

impl std::fmt::Debug for ObjectCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ObjectCache({}, budget {} bytes)",
            self.dir.display(),
            self.budget
        )
    }
}

impl ObjectCache {
    /// The cache in `cache_dir` (created when missing), holding at most
    /// `budget` bytes; what it already holds is kept, oldest first to go.
    pub fn open(cache_dir: &Path, budget: u64) -> Result<ObjectCache> {
        let dir = cache_dir.join("objects");
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let mut found = Vec::new();
        for f in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
            let path = f.map_err(|e| Error::io(&dir, e))?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            if name.ends_with(PART) {
                // A download a killed process left: never renamed, never used.
                // One of a live process (another command sharing the cache) stays.
                if !part_of_live_process(&name) {
                    let _ = std::fs::remove_file(&path);
                }
                continue;
            }
            let Some(sha) = name.strip_suffix(&format!(".{EXTENSION}")) else {
                continue;
            };
            let meta = std::fs::metadata(&path).map_err(|e| Error::io(&path, e))?;
            let mtime = meta.modified().ok().unwrap_or(std::time::UNIX_EPOCH);
            found.push((mtime, sha.to_string(), meta.len()));
        }
        found.sort();
        let mut resident = Resident::default();
        for (_, sha, bytes) in found {
            resident.tick += 1;
            let used = resident.tick;
            resident.files.insert(sha, Entry { bytes, used });
        }
        Ok(ObjectCache {
            dir,
            budget,
            resident: Mutex::new(resident),
            fetching: Mutex::new(HashMap::new()),
            hits: AtomicU64::new(0),
            fetches: AtomicU64::new(0),
            fetched_bytes: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            last_fetch_micros: AtomicU64::new(0),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the version with this checksum lives once fetched.
    pub fn path(&self, sha: &str) -> PathBuf {
        self.dir.join(format!("{sha}.{EXTENSION}"))
    }

    /// Whether the version is here (counted as a use).
    pub fn touch(&self, sha: &str) -> bool {
        let mut r = self.lock();
        r.tick += 1;
        let tick = r.tick;
        match r.files.get_mut(sha) {
            Some(e) => {
                e.used = tick;
                true
            }
            None => false,
        }
    }

    /// Whether the version is here, not counted as a use.
    pub fn holds(&self, sha: &str) -> bool {
        self.lock().files.contains_key(sha)
    }

    /// Count a lookup answered from the cache.
    pub fn hit(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
    }

    /// The lock a download of `sha` holds: whoever takes it second finds the
    /// file there.
    pub fn download_lock(&self, sha: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut m = self.fetching.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(m.entry(sha.to_string()).or_default())
    }

    /// A temporary file for a download of `sha`, unique to this process and call.
    pub fn part_path(&self, sha: &str) -> PathBuf {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        self.dir.join(format!(".{sha}.{}.{n}.{PART}", std::process::id()))
    }

    /// Take a verified download (`from`, on the same file system) into the
    /// cache as `sha`, then evict the least recently used others past the budget.
    pub fn admit(&self, sha: &str, from: &Path, bytes: u64, seconds: f64) -> Result<PathBuf> {
        let to = self.place(sha, from, bytes)?;
        self.fetches.fetch_add(1, Ordering::Relaxed);
        self.fetched_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.last_fetch_micros
            .store((seconds * 1e6) as u64, Ordering::Relaxed);
        Ok(to)
    }

    /// Take a file this machine built and published into the cache (not a fetch).
    pub fn keep(&self, sha: &str, from: &Path, bytes: u64) -> Result<PathBuf> {
        self.place(sha, from, bytes)
    }

    /// Forget `sha` (its file is gone: evicted by another process sharing the cache).
    pub fn forget(&self, sha: &str) {
        self.lock().files.remove(sha);
    }

    fn place(&self, sha: &str, from: &Path, bytes: u64) -> Result<PathBuf> {
        let to = self.path(sha);
        std::fs::rename(from, &to).map_err(|e| {
            Error::Invalid(format!("cannot move {} to {}: {e}", from.display(), to.display()))
        })?;
        let mut r = self.lock();
        r.tick += 1;
        let used = r.tick;
        r.files.insert(sha.to_string(), Entry { bytes, used });
        self.evict(&mut r, sha);
        Ok(to)
    }

    /// Count a download refused or failed.
    pub fn failed(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
    }

    fn evict(&self, r: &mut Resident, keep: &str) {
        let mut total: u64 = r.files.values().map(|e| e.bytes).sum();
        while total > self.budget {
            let Some(oldest) = r
                .files
                .iter()
                .filter(|(s, _)| s.as_str() != keep)
                .min_by_key(|(_, e)| e.used)
                .map(|(s, _)| s.clone())
            else {
                break;
            };
            let e = r.files.remove(&oldest).expect("listed");
            let _ = std::fs::remove_file(self.path(&oldest));
            total -= e.bytes;
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn stats(&self) -> CacheStats {
        let r = self.lock();
        CacheStats {
            resident_bytes: r.files.values().map(|e| e.bytes).sum(),
            resident_files: r.files.len() as u64,
            budget_bytes: self.budget,
            hits: self.hits.load(Ordering::Relaxed),
            fetches: self.fetches.load(Ordering::Relaxed),
            fetched_bytes: self.fetched_bytes.load(Ordering::Relaxed),
            fetch_failures: self.failures.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            last_fetch_seconds: self.last_fetch_micros.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Resident> {
        self.resident.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A download being written to its temporary file, its length and SHA-256
/// counted as it goes.
pub struct Verifier {
    file: std::io::BufWriter<std::fs::File>,
    path: PathBuf,
    hash: Sha256,
    bytes: u64,
}

impl Verifier {
    pub fn create(path: PathBuf) -> Result<Verifier> {
        let file = std::fs::File::create(&path).map_err(|e| Error::io(&path, e))?;
        Ok(Verifier {
            file: std::io::BufWriter::with_capacity(1 << 20, file),
            path,
            hash: Sha256::new(),
            bytes: 0,
        })
    }

    pub fn write(&mut self, chunk: &[u8]) -> Result<()> {
        self.hash.update(chunk);
        self.bytes += chunk.len() as u64;
        self.file.write_all(chunk).map_err(|e| Error::io(&self.path, e))
    }

    /// The file, flushed to disk, when it is `want_bytes` long with SHA-256
    /// `want_sha`; else it is deleted and refused, naming `what`.
    pub fn finish(self, what: &str, want_bytes: u64, want_sha: &str) -> Result<PathBuf> {
        let Verifier {
            file,
            path,
            hash,
            bytes,
        } = self;
        let got = hex(&hash.finalize());
        let flushed = file
            .into_inner()
            .map_err(|e| e.into_error())
            .and_then(|f| f.sync_all());
        let refused = if bytes != want_bytes {
            Some(format!(
                "{what} is truncated or corrupted: {bytes} bytes where the manifest records {want_bytes}; refused"
            ))
        } else if got != want_sha {
            Some(format!(
                "{what} is corrupted: its SHA-256 is {got} where the manifest records {want_sha}; refused"
            ))
        } else {
            None
        };
        if let Some(why) = refused {
            let _ = std::fs::remove_file(&path);
            return Err(Error::Invalid(why));
        }
        if let Err(e) = flushed {
            let _ = std::fs::remove_file(&path);
            return Err(Error::io(&path, e));
        }
        Ok(path)
    }

    /// Delete the temporary file (a download that failed part-way).
    pub fn discard(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether a download file (`.SHA.PID.N.part`) belongs to a process still running.
fn part_of_live_process(name: &str) -> bool {
    let pid = name.rsplit('.').nth(2).and_then(|p| p.parse::<u32>().ok());
    pid.is_some_and(|p| p == std::process::id() || Path::new(&format!("/proc/{p}")).exists())
}

/// SHA-256 and length of a whole file.
pub fn sha256_file(path: &Path) -> Result<(String, u64)> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok((hex(&hash.finalize()), bytes))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(c: &ObjectCache, sha: &str, bytes: usize) {
        let tmp = c.part_path(sha);
        std::fs::write(&tmp, vec![7u8; bytes]).unwrap();
        c.admit(sha, &tmp, bytes as u64, 0.0).unwrap();
    }

    /// Past the budget the least recently used version goes, never the one
    /// just fetched; a reopened cache keeps what is on disk.
    #[test]
    fn least_recently_used_versions_are_evicted_past_the_budget() {
        let tmp = tempfile::tempdir().unwrap();
        let c = ObjectCache::open(tmp.path(), 250).unwrap();
        put(&c, "a", 100);
        put(&c, "b", 100);
        assert!(c.touch("a"), "a is used after b");
        put(&c, "c", 100);
        assert!(
            c.holds("a") && c.holds("c") && !c.holds("b"),
            "b was least recently used"
        );
        assert!(!c.path("b").exists());
        put(&c, "d", 300);
        assert!(
            c.holds("d") && !c.holds("a") && !c.holds("c"),
            "the one fetched stays"
        );
        assert_eq!(c.stats().evictions, 3);
        // PID 0 is never a user process: a download of a killed process.
        std::fs::write(c.dir().join(".x.0.1.part"), b"half").unwrap();
        let live = format!(".y.{}.1.part", std::process::id());
        std::fs::write(c.dir().join(&live), b"in progress").unwrap();
        drop(c);
        let again = ObjectCache::open(tmp.path(), 1000).unwrap();
        assert!(again.holds("d"));
        assert!(
            !again.dir().join(".x.0.1.part").exists(),
            "a killed download is swept"
        );
        assert!(
            again.dir().join(&live).exists(),
            "a live process's download stays"
        );
    }

    /// A download is taken only when its length and checksum match.
    #[test]
    fn downloads_are_refused_unless_length_and_checksum_match() {
        let tmp = tempfile::tempdir().unwrap();
        let whole = tmp.path().join("whole");
        std::fs::write(&whole, b"partition bytes").unwrap();
        let (sha, len) = sha256_file(&whole).unwrap();
        let write = |name: &str, content: &[u8]| {
            let mut v = Verifier::create(tmp.path().join(name)).unwrap();
            v.write(content).unwrap();
            v
        };
        let e = write("short", b"partition")
            .finish("s3://b/k", len, &sha)
            .unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
        assert!(!tmp.path().join("short").exists());
        let e = write("flip", b"partition bytez")
            .finish("s3://b/k", len, &sha)
            .unwrap_err();
        assert!(e.to_string().contains("SHA-256"), "{e}");
        let ok = write("ok", b"partition bytes")
            .finish("s3://b/k", len, &sha)
            .unwrap();
        assert_eq!(std::fs::read(ok).unwrap(), b"partition bytes");
    }
}
