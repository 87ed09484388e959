//! Temporary files that atomic writes leave behind when their process dies.
//!
//! [`write_atomic`](crate::write_atomic) (and the partition writer) writes
//! `.{NAME}.tmp.{PID}.{N}` in the directory of `NAME`, then renames it over
//! `NAME`; a process killed in between (`kill -9`, a power cut) leaves the
//! temporary file for ever, and nothing reads it. [`sweep`] removes those whose
//! writer is gone.
//!
//! Whether a writer is gone is decided on Linux by `/proc/<PID>`: absent means
//! no process has that id. A live process that reused the id keeps the file
//! until it exits (harmless: the next sweep after that removes it). Where there
//! is no `/proc` nothing is removed. A file of this process is never removed,
//! nor a name that does not parse as one of ours (it is not ours to delete),
//! nor anything but a regular file. Writers in another pid namespace sharing
//! the directory (two containers over one volume) are outside this contract:
//! their pids mean nothing here.

use std::path::{Path, PathBuf};

use crate::error::{IndexError, Result};

/// A temporary file of an atomic write, as its name describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TempFile {
    pub path: PathBuf,
    /// The name of the file the write would have replaced.
    pub target: String,
    /// The writer's process id.
    pub pid: u32,
}

/// The target name and writer pid of a temporary file name
/// `.{NAME}.tmp.{PID}.{N}`; `None` for any other name.
pub fn parse(file_name: &str) -> Option<(&str, u32)> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let rest = file_name.strip_prefix('.')?;
    let (rest, n) = rest.rsplit_once('.')?;
    let (rest, pid) = rest.rsplit_once('.')?;
    let target = rest.strip_suffix(".tmp")?;
    if target.is_empty() || !digits(n) || !digits(pid) {
        return None;
    }
    Some((target, pid.parse().ok()?))
}

/// Whether a process with this id exists: `None` when this system cannot
/// tell (no `/proc`).
pub fn process_exists(pid: u32) -> Option<bool> {
    if !Path::new("/proc/self").exists() {
        return None;
    }
    Some(Path::new("/proc").join(pid.to_string()).exists())
}

/// The temporary files in `dir` whose writer is gone (see the module
/// documentation), sorted by path. A missing directory has none.
pub fn orphaned(dir: &Path) -> Result<Vec<TempFile>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(IndexError::io(dir, e)),
    };
    let me = std::process::id();
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| IndexError::io(dir, e))?;
        let name = entry.file_name();
        let Some((target, pid)) = name.to_str().and_then(parse) else {
            continue;
        };
        if pid == me || process_exists(pid) != Some(false) {
            continue;
        }
        let path = entry.path();
        let is_file = std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_file());
        if is_file {
            out.push(TempFile {
                target: target.to_string(),
                pid,
                path,
            });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Remove the temporary files of `dir` whose writer is gone; returns the
/// paths removed. One that disappears meanwhile (another sweep) is skipped.
pub fn sweep(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    for t in orphaned(dir)? {
        match std::fs::remove_file(&t.path) {
            Ok(()) => removed.push(t.path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(IndexError::io(&t.path, e)),
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Above Linux's largest pid (2^22), so no process has it.
    const DEAD_PID: u32 = 0x7fff_ffff;

    #[test]
    fn names_parse_only_in_the_writers_form() {
        assert_eq!(parse(".S.stabidx.tmp.123.0"), Some(("S.stabidx", 123)));
        assert_eq!(parse(".a.b.tmp.tmp.7.42"), Some(("a.b.tmp", 7)));
        for not_ours in [
            "S.stabidx",
            "S.stabidx.tmp.1.0",
            ".S.stabidx.tmp.1",
            ".S.stabidx.tmp.x.0",
            ".S.stabidx.tmp.1.0x",
            "..tmp.1.0",
            ".S.stabidx.tmp..0",
            ".S.stabidx.tmp.99999999999.0",
            ".S.stabidx.temp.1.0",
        ] {
            assert_eq!(parse(not_ours), None, "{not_ours}");
        }
    }

    #[test]
    fn sweep_removes_files_of_dead_writers_only() {
        assert_eq!(process_exists(std::process::id()), Some(true));
        assert_eq!(process_exists(DEAD_PID), Some(false));
        let dir = tempfile::tempdir().unwrap();
        let me = std::process::id();
        let write = |name: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, b"x").unwrap();
            p
        };
        let dead = write(&format!(".S.stabidx.tmp.{DEAD_PID}.3"));
        let mine = write(&format!(".S.stabidx.tmp.{me}.0"));
        let partition = write("S.stabidx");
        let foreign = write(".S.stabidx.tmp.notapid.0");
        // A directory under a temporary file's name is not ours to remove.
        let subdir = dir.path().join(format!(".T.stabidx.tmp.{DEAD_PID}.0"));
        std::fs::create_dir(&subdir).unwrap();

        let found = orphaned(dir.path()).unwrap();
        assert_eq!(
            found,
            [TempFile {
                path: dead.clone(),
                target: "S.stabidx".into(),
                pid: DEAD_PID
            }]
        );
        assert_eq!(sweep(dir.path()).unwrap(), std::slice::from_ref(&dead));
        assert!(!dead.exists());
        for kept in [&mine, &partition, &foreign, &subdir] {
            assert!(kept.exists(), "{} was removed", kept.display());
        }
        assert!(
            sweep(dir.path()).unwrap().is_empty(),
            "a second sweep removes nothing"
        );
        assert!(sweep(&dir.path().join("missing")).unwrap().is_empty());
    }

    /// The parser reads the names the writer really makes: a write that
    /// looks into its directory before the rename sees its own temporary file.
    #[test]
    fn the_writers_temporary_file_parses_as_this_process() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("P.stabidx");
        let (mut seen, mut orphans) = (Vec::new(), None);
        crate::write::write_atomic(&target, |w| {
            use std::io::Write;
            w.write_all(b"data")?;
            for e in std::fs::read_dir(dir.path())? {
                let name = e?.file_name().to_string_lossy().into_owned();
                seen.push(parse(&name).map(|(t, pid)| (t.to_string(), pid)));
            }
            orphans = Some(orphaned(dir.path()).map(|o| o.len()));
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, [Some(("P.stabidx".to_string(), std::process::id()))]);
        // A sweep while it was being written leaves it alone.
        assert_eq!(orphans.unwrap().unwrap(), 0);
        assert_eq!(std::fs::read(&target).unwrap(), b"data");
    }
}
