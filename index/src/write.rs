//! Serialising a partition and replacing the file atomically.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{IndexError, Result};
use crate::format::{align_up, Header, SectionEntry, HEADER_LEN, MAGIC, MAX_SECTIONS, VERSION};

/// A section to write: its kind, flags and bytes.
pub(crate) struct Section<'a> {
    pub kind: u32,
    pub flags: u32,
    pub bytes: &'a [u8],
}

/// Lay out the sections after the header, fill in offsets and CRCs, and write
/// the file atomically. `header` carries everything but the layout fields.
pub(crate) fn write_partition(path: &Path, mut header: Header, sections: &[Section<'_>]) -> Result<u64> {
    assert!(sections.len() <= MAX_SECTIONS, "too many sections");
    let mut offset = HEADER_LEN as u64;
    header.sections = bytemuck::Zeroable::zeroed();
    for (slot, s) in header.sections.iter_mut().zip(sections) {
        offset = align_up(offset);
        *slot = SectionEntry {
            kind: s.kind,
            flags: s.flags,
            offset,
            len: s.bytes.len() as u64,
            crc32: crc32fast::hash(s.bytes),
            reserved: 0,
        };
        offset += s.bytes.len() as u64;
    }
    header.magic = MAGIC;
    header.version = VERSION;
    header.header_len = HEADER_LEN as u32;
    header.file_len = offset;
    header.section_count = sections.len() as u32;
    header.header_crc32 = 0;
    header.header_crc32 = header.compute_crc();

    let written = |w: &mut BufWriter<File>| {
        w.write_all(bytemuck::bytes_of(&header))?;
        let mut at = HEADER_LEN as u64;
        let zeros = [0u8; 64];
        for (entry, s) in header.sections.iter().zip(sections) {
            w.write_all(&zeros[..(entry.offset - at) as usize])?;
            w.write_all(s.bytes)?;
            at = entry.offset + entry.len;
        }
        Ok(())
    };
    write_atomic_then(path, written, || {
        crate::faults::pause_point("index-build:temp-written")
    })?;
    Ok(offset)
}

/// Write `path` by writing a temporary file in the same directory, syncing it,
/// renaming it over `path` and syncing the directory. Readers see the old file
/// or the new one, whole; one holding a map of the old file keeps it.
pub fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> Result<()> {
    write_atomic_then(path, write, || {})
}

/// [`write_atomic`], calling `before_rename` once the temporary file is
/// written and synced, just before it is renamed over `path`.
fn write_atomic_then(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
    before_rename: impl FnOnce(),
) -> Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.tmp.{}.{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let file = File::create(&tmp).map_err(|e| IndexError::io(&tmp, e))?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        write(&mut w).map_err(|e| IndexError::io(&tmp, e))?;
        let file = w.into_inner().map_err(|e| IndexError::io(&tmp, e.into_error()))?;
        file.sync_all().map_err(|e| IndexError::io(&tmp, e))?;
        drop(file);
        before_rename();
        fs::rename(&tmp, path).map_err(|e| IndexError::io(path, e))?;
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| IndexError::io(&dir, e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}
