//! Opening a partition file: map it, validate the header and section table
//! (constant work), then hand out typed slices of the map; and searching it
//! (the graph or an exact scan, by the functions of `search.rs`).

use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use memmap2::Mmap;

use crate::error::{IndexError, Result};
use crate::filter::{self, AttrColumns, RowAttrs};
use crate::format::{
    kind, Header, FLAG_GRAPH, HEADER_LEN_V1, MAGIC, METRIC_COSINE, MIN_VERSION, SECTION_OPTIONAL, VERSION,
};
use crate::graph::GraphView;
use crate::quantize::{self, Parsed, Quantization, Quantized, QuantizedView};
use crate::scan::FIT_CODES_FROM;
use crate::search::{Rows, Visited};

/// An open, memory-mapped partition. `Send + Sync`: many threads may search it at once.
pub struct Partition {
    path: PathBuf,
    map: Mmap,
    header: Header,
    dim: usize,
    count: usize,
    vectors: Range<usize>,
    norms: Range<usize>,
    graph: Option<GraphRanges>,
    id_offsets: Range<usize>,
    id_bytes: Range<usize>,
    payload_offsets: Range<usize>,
    payload_bytes: Range<usize>,
    provenance: Range<usize>,
    /// Version 2 on: per-row content hashes.
    row_hashes: Option<Range<usize>>,
    /// Version 2 on, graphs only: the held-out rows' recall calibration.
    calibration: Option<Range<usize>>,
    /// Optional, graphs only: every recall calibration.
    calibrations: Option<Range<usize>>,
    /// The quantised codes and their parameters (optional section, graphs only).
    quantized: Option<QuantizedRanges>,
    /// Per-row attributes (optional section): keys, tags, values.
    attrs: Option<[Range<usize>; 3]>,
    /// Whether graph searches traverse the quantised codes when there are some.
    use_quantized: bool,
    /// Reusable visited sets, one per concurrent search.
    visited: Mutex<Vec<Visited>>,
    /// Codes fitted in memory for exact batched scans of a file without a
    /// `QUANTIZED` section (flat partitions, `Quantization::None`).
    fitted: OnceLock<Option<Quantized>>,
}

#[derive(Clone, Debug)]
struct QuantizedRanges {
    scheme: Quantization,
    scale: Range<usize>,
    codes: Range<usize>,
}

#[derive(Clone, Debug)]
struct GraphRanges {
    level0: Range<usize>,
    upper_index: Range<usize>,
    upper: Range<usize>,
}

/// A description of an open partition, for status tables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionInfo {
    pub rows: usize,
    pub dim: usize,
    pub m: u32,
    pub ef_construction: u32,
    pub graph: bool,
    pub deterministic: bool,
    pub max_level: u32,
    pub seed: u64,
    pub version: u32,
    pub file_bytes: u64,
    /// The quantisation of the codes graph searches traverse (`None`: no
    /// quantised section; searches read the f32 vectors).
    pub quantized: Option<&'static str>,
}

impl Partition {
    /// Map and validate a partition file. The work does not depend on the row count.
    pub fn open(path: impl AsRef<Path>) -> Result<Partition> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|e| IndexError::io(&path, e))?;
        let len = file.metadata().map_err(|e| IndexError::io(&path, e))?.len();
        if len < 8 {
            return Err(IndexError::NotAnIndex {
                path,
                reason: format!("{len} bytes long"),
            });
        }
        // SAFETY: partition files are never modified in place: writers build a
        // temporary file and rename it over the old one, so the bytes behind this
        // map stay as they are for as long as it lives (a replaced file lives on,
        // unlinked, until the last map of it goes). Everything read from the map
        // is validated before use; a file changed behind our back by another
        // program is outside that contract.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| IndexError::io(&path, e))?;
        Self::from_map(path, map)
    }

    fn from_map(path: PathBuf, map: Mmap) -> Result<Partition> {
        let corrupt = |reason: String| IndexError::Corrupt {
            path: path.clone(),
            reason,
        };
        if map.len() < 8 || map[..8] != MAGIC {
            return Err(IndexError::NotAnIndex {
                path: path.clone(),
                reason: if map.len() < 8 {
                    "shorter than 8 bytes".into()
                } else {
                    "wrong magic bytes".into()
                },
            });
        }
        if map.len() < HEADER_LEN_V1 {
            return Err(corrupt(format!(
                "{} bytes, shorter than the {HEADER_LEN_V1}-byte header",
                map.len()
            )));
        }
        let header = Header::read(&map);
        if header.version < MIN_VERSION || header.version > VERSION {
            return Err(IndexError::UnsupportedVersion {
                path: path.clone(),
                found: header.version,
                min: MIN_VERSION,
                max: VERSION,
            });
        }
        let header_len = header.len_on_disk();
        if map.len() < header_len {
            return Err(corrupt(format!(
                "{} bytes, shorter than the {header_len}-byte header",
                map.len()
            )));
        }
        if header.compute_crc() != header.header_crc32 {
            return Err(corrupt("header checksum mismatch".into()));
        }
        if header.header_len as usize != header_len {
            return Err(corrupt(format!("header length {}", header.header_len)));
        }
        if header.file_len != map.len() as u64 {
            return Err(corrupt(format!(
                "file is {} bytes, header says {} (truncated or extended)",
                map.len(),
                header.file_len
            )));
        }
        if header.metric != METRIC_COSINE {
            return Err(corrupt(format!("unknown metric {}", header.metric)));
        }
        if header.dim == 0 || header.dim > 65_536 {
            return Err(corrupt(format!("dimension {}", header.dim)));
        }
        if header.count >= u64::from(u32::MAX) {
            return Err(corrupt(format!("row count {}", header.count)));
        }
        if header.section_count as usize > header.max_sections() {
            return Err(corrupt(format!("{} sections", header.section_count)));
        }
        let dim = header.dim as usize;
        let count = header.count as usize;
        let file_len = map.len() as u64;

        // Every listed section must lie inside the file, 64-aligned, and be known
        // unless it is marked optional.
        for s in &header.sections[..header.section_count as usize] {
            let end = s.offset.checked_add(s.len);
            if s.offset < header_len as u64 || s.offset % 64 != 0 || end.is_none_or(|e| e > file_len) {
                return Err(corrupt(format!(
                    "section {:#x} at offset {} with length {} lies outside the file",
                    s.kind, s.offset, s.len
                )));
            }
            let known = (kind::VECTORS..=kind::CALIBRATIONS).contains(&s.kind);
            if !known && s.flags & SECTION_OPTIONAL == 0 {
                return Err(corrupt(format!(
                    "required section kind {:#x} is unknown to this build (written by a newer stabspace?)",
                    s.kind
                )));
            }
        }
        let section = |k: u32, expected: Option<u64>| -> Result<Range<usize>> {
            let s = header
                .section(k)
                .ok_or_else(|| corrupt(format!("missing section {k}")))?;
            if let Some(e) = expected {
                if s.len != e {
                    return Err(corrupt(format!("section {k} has {} bytes, expected {e}", s.len)));
                }
            }
            Ok(s.offset as usize..(s.offset + s.len) as usize)
        };
        let n = count as u64;
        let size = |a: u64, b: u64, c: u64| a.checked_mul(b).and_then(|x| x.checked_mul(c));
        let vectors = section(
            kind::VECTORS,
            Some(size(n, dim as u64, 4).ok_or_else(|| corrupt("size".into()))?),
        )?;
        let norms = section(kind::NORMS, Some(n * 8))?;
        let id_offsets = section(kind::ID_OFFSETS, Some((n + 1) * 8))?;
        let id_bytes = section(kind::ID_BYTES, None)?;
        let payload_offsets = section(kind::PAYLOAD_OFFSETS, Some((n + 1) * 8))?;
        let payload_bytes = section(kind::PAYLOAD_BYTES, None)?;
        let provenance = section(kind::PROVENANCE, None)?;
        let row_hashes = if header.version >= 2 {
            Some(section(kind::ROW_HASHES, Some(n * 8))?)
        } else {
            None
        };
        let calibration = header
            .section(kind::CALIBRATION)
            .map(|s| s.offset as usize..(s.offset + s.len) as usize);
        let calibrations = header
            .section(kind::CALIBRATIONS)
            .map(|s| s.offset as usize..(s.offset + s.len) as usize);
        // Optional: an unknown scheme is skipped, as an unknown optional
        // section is; a known one must have the partition's shape.
        let quantized = match header.section(kind::QUANTIZED) {
            None => None,
            Some(s) => {
                let at = s.offset as usize;
                match quantize::parse(&map[at..at + s.len as usize], dim, count).map_err(corrupt)? {
                    Parsed::Known { scheme, scale, codes } => Some(QuantizedRanges {
                        scheme,
                        scale: at + scale.start..at + scale.end,
                        codes: at + codes.start..at + codes.end,
                    }),
                    Parsed::UnknownScheme => None,
                }
            }
        };
        let attrs = match header.section(kind::ATTRIBUTES) {
            None => None,
            Some(s) => {
                Some(filter::section_ranges(s.offset as usize, s.len as usize, count).map_err(corrupt)?)
            }
        };
        let graph = if header.flags & FLAG_GRAPH != 0 {
            if header.m < 2 || header.m > 256 || header.m0 < header.m || header.m0 > 512 {
                return Err(corrupt(format!(
                    "graph degrees M {} / M0 {}",
                    header.m, header.m0
                )));
            }
            if count > 0 && header.entry_point as usize >= count {
                return Err(corrupt(format!(
                    "entry point {} of {count} rows",
                    header.entry_point
                )));
            }
            if header.max_level > 64 {
                return Err(corrupt(format!("max level {}", header.max_level)));
            }
            Some(GraphRanges {
                level0: section(kind::LEVEL0, Some(n * (u64::from(header.m0) + 1) * 4))?,
                upper_index: section(kind::UPPER_INDEX, Some(n * 4))?,
                upper: section(kind::UPPER, None)?,
            })
        } else {
            None
        };

        let p = Partition {
            path,
            map,
            header,
            dim,
            count,
            vectors,
            norms,
            graph,
            id_offsets,
            id_bytes,
            payload_offsets,
            payload_bytes,
            provenance,
            row_hashes,
            calibration,
            calibrations,
            quantized,
            attrs,
            use_quantized: true,
            visited: Mutex::new(Vec::new()),
            fitted: OnceLock::new(),
        };
        // Ends of the variable-length sections (constant work).
        for (offsets, bytes, what) in [
            (p.u64s(&p.id_offsets), p.id_bytes.len(), "id"),
            (p.u64s(&p.payload_offsets), p.payload_bytes.len(), "payload"),
        ] {
            if offsets[0] != 0 || offsets[count] != bytes as u64 {
                return Err(p.corrupt(format!("{what} offsets do not span their bytes")));
            }
        }
        if p.graph.is_some() && !p.upper().len().is_multiple_of(4) {
            return Err(p.corrupt("upper-level section is not whole u32 words".into()));
        }
        Ok(p)
    }

    pub(crate) fn corrupt(&self, reason: String) -> IndexError {
        IndexError::Corrupt {
            path: self.path.clone(),
            reason,
        }
    }

    fn u64s(&self, r: &Range<usize>) -> &[u64] {
        bytemuck::cast_slice(&self.map[r.clone()])
    }

    fn u32s(&self, r: &Range<usize>) -> &[u32] {
        bytemuck::cast_slice(&self.map[r.clone()])
    }

    fn upper(&self) -> &[u8] {
        self.graph.as_ref().map_or(&[], |g| &self.map[g.upper.clone()])
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn has_graph(&self) -> bool {
        self.graph.is_some()
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn info(&self) -> PartitionInfo {
        PartitionInfo {
            rows: self.count,
            dim: self.dim,
            m: self.header.m,
            ef_construction: self.header.ef_construction,
            graph: self.graph.is_some(),
            deterministic: self.header.flags & crate::format::FLAG_DETERMINISTIC != 0,
            max_level: self.header.max_level,
            seed: self.header.seed,
            version: self.header.version,
            file_bytes: self.map.len() as u64,
            quantized: self.quantized.as_ref().map(|q| q.scheme.name()),
        }
    }

    /// All normalised vectors, row-major.
    pub fn vectors(&self) -> &[f32] {
        bytemuck::cast_slice(&self.map[self.vectors.clone()])
    }

    /// The normalised vector of a row.
    pub fn vector(&self, row: usize) -> &[f32] {
        &self.vectors()[row * self.dim..(row + 1) * self.dim]
    }

    /// The L2 norms of the vectors as given.
    pub fn norms(&self) -> &[f64] {
        bytemuck::cast_slice(&self.map[self.norms.clone()])
    }

    fn var_bytes(
        &self,
        offsets: &Range<usize>,
        bytes: &Range<usize>,
        row: usize,
        what: &str,
    ) -> Result<&[u8]> {
        let offs = self.u64s(offsets);
        let (a, b) = (offs[row], offs[row + 1]);
        if a > b || b > bytes.len() as u64 {
            return Err(self.corrupt(format!("{what} offsets of row {row} out of range")));
        }
        Ok(&self.map[bytes.start + a as usize..bytes.start + b as usize])
    }

    /// The id of a row.
    pub fn id(&self, row: usize) -> Result<&str> {
        if row >= self.count {
            return Err(self.corrupt(format!("row {row} of {}", self.count)));
        }
        let b = self.var_bytes(&self.id_offsets, &self.id_bytes, row, "id")?;
        std::str::from_utf8(b).map_err(|_| self.corrupt(format!("id of row {row} is not UTF-8")))
    }

    /// The payload of a row.
    pub fn payload(&self, row: usize) -> Result<&[u8]> {
        if row >= self.count {
            return Err(self.corrupt(format!("row {row} of {}", self.count)));
        }
        self.var_bytes(&self.payload_offsets, &self.payload_bytes, row, "payload")
    }

    /// The provenance JSON the builder was given.
    pub fn provenance(&self) -> Result<&str> {
        std::str::from_utf8(&self.map[self.provenance.clone()])
            .map_err(|_| self.corrupt("provenance is not UTF-8".into()))
    }

    /// Per row, the hash of its id, payload and vector as given
    /// ([`crate::row_hash`]); `None` in version-1 files.
    pub fn row_hashes(&self) -> Option<&[u64]> {
        self.row_hashes.as_ref().map(|r| self.u64s(r))
    }

    /// The bytes of the `CALIBRATION` and `CALIBRATIONS` sections, when present.
    pub(crate) fn calibration_sections(&self) -> (Option<&[u8]>, Option<&[u8]>) {
        let at = |r: &Option<Range<usize>>| r.as_ref().map(|r| &self.map[r.clone()]);
        (at(&self.calibration), at(&self.calibrations))
    }

    /// The bytes of a section of this file's table.
    pub(crate) fn section_bytes(&self, s: &crate::format::SectionEntry) -> &[u8] {
        &self.map[s.offset as usize..(s.offset + s.len) as usize]
    }

    /// Whether the file has per-row attributes (the `ATTRIBUTES` section),
    /// which filtered searches need.
    pub fn has_attrs(&self) -> bool {
        self.attrs.is_some()
    }

    /// The attributes of a row (`None` without the section).
    pub fn attrs(&self, row: usize) -> Option<RowAttrs> {
        self.columns().filter(|_| row < self.count).map(|c| c.get(row))
    }

    pub(crate) fn columns(&self) -> Option<AttrColumns<'_>> {
        let [k, t, v] = self.attrs.as_ref()?;
        Some(AttrColumns {
            keys: bytemuck::cast_slice(&self.map[k.clone()]),
            tags: bytemuck::cast_slice(&self.map[t.clone()]),
            values: bytemuck::cast_slice(&self.map[v.clone()]),
        })
    }

    /// Whether the file has a quantised copy of its vectors (the `QUANTIZED`
    /// section, in a scheme this build knows).
    pub fn has_quantized(&self) -> bool {
        self.quantized.is_some()
    }

    /// The quantisation of the file's codes (`Quantization::None` without codes).
    pub fn quantization(&self) -> Quantization {
        self.quantized.as_ref().map_or(Quantization::None, |q| q.scheme)
    }

    /// Turn quantised traversal on (the default) or off for graph searches
    /// through this handle. Off, the beam scores rows with the f32 vectors,
    /// as partitions without the section always do. Answers are re-ranked
    /// exactly either way.
    pub fn set_quantized(&mut self, on: bool) {
        self.use_quantized = on;
    }

    /// Whether graph searches through this handle traverse quantised codes.
    pub fn quantized_traversal(&self) -> bool {
        self.use_quantized && self.has_graph() && self.has_quantized()
    }

    /// The codes graph searches traverse, if they traverse codes.
    pub(crate) fn traversal_codes(&self) -> Option<QuantizedView<'_>> {
        self.codes().filter(|_| self.use_quantized)
    }

    /// The file's codes, if it has any (exact batched scans read them whether
    /// graph searches traverse them or not).
    pub(crate) fn codes(&self) -> Option<QuantizedView<'_>> {
        let r = self.quantized.as_ref()?;
        Some(QuantizedView {
            dim: self.dim,
            scale: bytemuck::cast_slice(&self.map[r.scale.clone()]),
            codes: &self.map[r.codes.clone()],
        })
    }

    /// The codes an exact scan of `batch` queries reads: the file's, or codes
    /// fitted in memory once a batch is large enough to pay for them.
    pub(crate) fn scan_codes(&self, batch: usize) -> Option<QuantizedView<'_>> {
        self.codes().or_else(|| {
            if batch < FIT_CODES_FROM {
                return None;
            }
            self.fitted
                .get_or_init(|| Quantized::fit(self.vectors(), self.dim, Quantization::PerDimension))
                .as_ref()
                .map(Quantized::view)
        })
    }

    pub(crate) fn graph(&self) -> Option<GraphView<'_>> {
        let g = self.graph.as_ref()?;
        Some(GraphView {
            vectors: self.vectors(),
            dim: self.dim,
            entry_point: self.header.entry_point,
            max_level: self.header.max_level,
            level0: self.u32s(&g.level0),
            upper_index: self.u32s(&g.upper_index),
            upper: bytemuck::cast_slice(&self.map[g.upper.clone()]),
            m: self.header.m as usize,
            m0: self.header.m0 as usize,
            count: self.count,
        })
    }

    /// Tell the kernel that this map is read at random (HNSW hops from row to
    /// row), so that a page fault on a cold file reads that page and not the
    /// read-around window: with a large device read-ahead (8 MB on some
    /// virtual disks) a few dozen faults otherwise read the whole file. For
    /// maps searched on the graph; exact scans and [`verify`](Self::verify)
    /// read sequentially and are better without it. A hint: errors are ignored.
    pub fn advise_random(&self) {
        #[cfg(unix)]
        let _ = self.map.advise(memmap2::Advice::Random);
    }

    /// Check every section's CRC32 (reads the whole file).
    pub fn verify(&self) -> Result<()> {
        for s in &self.header.sections[..self.header.section_count as usize] {
            let bytes = &self.map[s.offset as usize..(s.offset + s.len) as usize];
            let crc = crc32fast::hash(bytes);
            if crc != s.crc32 {
                return Err(self.corrupt(format!(
                    "checksum mismatch in section {:#x} (stored {:08x}, computed {crc:08x})",
                    s.kind, s.crc32
                )));
            }
        }
        Ok(())
    }
}

impl Rows for Partition {
    fn dim(&self) -> usize {
        Partition::dim(self)
    }
    fn len(&self) -> usize {
        Partition::len(self)
    }
    fn vectors(&self) -> &[f32] {
        Partition::vectors(self)
    }
    fn norms(&self) -> &[f64] {
        Partition::norms(self)
    }
    fn id(&self, row: usize) -> Result<&str> {
        Partition::id(self, row)
    }
}

impl Partition {
    /// Run `f` with a cleared visited set from the pool (returned to it after).
    pub(crate) fn with_visited<T>(&self, f: impl FnOnce(&mut Visited) -> T) -> T {
        let pool = || self.visited.lock().unwrap_or_else(|e| e.into_inner());
        let mut v = pool().pop().unwrap_or_else(|| Visited::new(self.len()));
        v.reset();
        let r = f(&mut v);
        pool().push(v);
        r
    }
}
