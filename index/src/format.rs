//! The partition file format, version 2 (reads 1). `FORMAT.md` beside this
//! crate's `Cargo.toml` is the specification with byte offsets; this module is
//! its code.
//!
//! A file is a 1024-byte header (512 in version 1) followed by sections, each starting at a 64-byte
//! aligned offset so that the mapped bytes can be cast in place. All integers
//! and floats are little-endian (the crate refuses to compile elsewhere).

use bytemuck::{Pod, Zeroable};

#[cfg(not(target_endian = "little"))]
compile_error!("stabspace-index maps little-endian files in place and needs a little-endian target");

/// The first 8 bytes of every partition file.
pub const MAGIC: [u8; 8] = *b"STABIDX\0";
/// The version this build writes.
pub const VERSION: u32 = 2;
/// The oldest version this build reads.
pub const MIN_VERSION: u32 = 1;
/// Bytes of the fixed header.
pub const HEADER_LEN: usize = 1024;
/// Bytes of the version-1 header (a 12-entry section table).
pub const HEADER_LEN_V1: usize = 512;
/// Section alignment in bytes.
pub const ALIGN: usize = 64;
/// Section table slots in the header.
pub const MAX_SECTIONS: usize = 28;
/// Section table slots in a version-1 header.
pub const MAX_SECTIONS_V1: usize = 12;

/// Metric of the stored vectors: cosine (vectors stored L2-normalised).
pub const METRIC_COSINE: u32 = 1;

/// Header flag: the file carries an HNSW graph (else it is flat: exact scans only).
pub const FLAG_GRAPH: u32 = 1;
/// Header flag: built deterministically (serial insertion).
pub const FLAG_DETERMINISTIC: u32 = 2;

/// Section flag: a reader that does not know this kind may ignore the section.
pub const SECTION_OPTIONAL: u32 = 1;

/// Section kinds. Kinds below 0x100 are core; a reader must know them.
pub mod kind {
    /// `f32[count × dim]`: the L2-normalised vectors, row-major.
    pub const VECTORS: u32 = 1;
    /// `f64[count]`: the L2 norms of the vectors as given (for Euclidean distances).
    pub const NORMS: u32 = 2;
    /// `u32[count × (m0 + 1)]`: per row, the level-0 degree then `m0` neighbour slots.
    pub const LEVEL0: u32 = 3;
    /// `u32[count]`: per row, the offset (in u32 words) of its block in `UPPER`, or `u32::MAX`.
    pub const UPPER_INDEX: u32 = 4;
    /// `u32[…]`: per row with level L ≥ 1: `L`, then for each level 1..=L the degree and `m` slots.
    pub const UPPER: u32 = 5;
    /// `u64[count + 1]`: byte offsets of each id in `ID_BYTES`.
    pub const ID_OFFSETS: u32 = 6;
    /// UTF-8 ids, concatenated.
    pub const ID_BYTES: u32 = 7;
    /// `u64[count + 1]`: byte offsets of each payload in `PAYLOAD_BYTES`.
    pub const PAYLOAD_OFFSETS: u32 = 8;
    /// Opaque payloads, concatenated.
    pub const PAYLOAD_BYTES: u32 = 9;
    /// The caller's provenance, UTF-8 JSON.
    pub const PROVENANCE: u32 = 10;
    /// `u64[count]`: per row, the xxh3 hash of its id, payload and vector as
    /// given (`row_hash`), to tell whether a source row is unchanged (version 2).
    pub const ROW_HASHES: u32 = 11;
    /// The recall calibration of the graph (`Calibration::encode`; version 2, graph only).
    pub const CALIBRATION: u32 = 12;
    /// Per-row attributes for filtered search (optional section): `i32[count]`
    /// keys, then `u32[count]` tags, then `f32[count]` values (`filter.rs`).
    pub const ATTRIBUTES: u32 = 13;
    /// Every recall calibration of the graph, with its query source and near
    /// recall (`calibration::encode_all`; optional section, graph only).
    pub const CALIBRATIONS: u32 = 14;
    /// Reserved for a later revision: a quantised copy of the vectors (optional section).
    pub const QUANTIZED: u32 = 0x101;
}

/// One entry of the section table (32 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct SectionEntry {
    pub kind: u32,
    pub flags: u32,
    pub offset: u64,
    pub len: u64,
    pub crc32: u32,
    pub reserved: u32,
}

/// The fixed header at byte 0 (1024 bytes; a version-1 file has 512, the
/// first 12 slots of the table, and is read into this struct zero-extended).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct Header {
    /// 0: [`MAGIC`].
    pub magic: [u8; 8],
    /// 8: format version.
    pub version: u32,
    /// 12: [`HEADER_LEN`].
    pub header_len: u32,
    /// 16: total file length in bytes (detects truncation).
    pub file_len: u64,
    /// 24: vector dimension.
    pub dim: u32,
    /// 28: [`METRIC_COSINE`].
    pub metric: u32,
    /// 32: number of rows.
    pub count: u64,
    /// 40: neighbour slots per upper level (M).
    pub m: u32,
    /// 44: neighbour slots on level 0 (2·M).
    pub m0: u32,
    /// 48: ef_construction used to build.
    pub ef_construction: u32,
    /// 52: `FLAG_*` bits.
    pub flags: u32,
    /// 56: row of the graph entry point (on the top level).
    pub entry_point: u32,
    /// 60: top level of the graph.
    pub max_level: u32,
    /// 64: seed of the insertion order.
    pub seed: u64,
    /// 72: used entries of `sections`.
    pub section_count: u32,
    /// 76: CRC32 of the 512 header bytes with this field set to zero.
    pub header_crc32: u32,
    /// 80: zero.
    pub reserved: [u8; 48],
    /// 128: the section table.
    pub sections: [SectionEntry; MAX_SECTIONS],
}

const _: () = assert!(std::mem::size_of::<Header>() == HEADER_LEN);
const _: () = assert!(128 + 32 * MAX_SECTIONS_V1 == HEADER_LEN_V1);
const _: () = assert!(std::mem::size_of::<SectionEntry>() == 32);

impl Header {
    /// CRC32 of the header's `header_len` bytes (512 in version 1, else
    /// 1024) with `header_crc32` zeroed.
    pub fn compute_crc(&self) -> u32 {
        let mut h = *self;
        h.header_crc32 = 0;
        crc32fast::hash(&bytemuck::bytes_of(&h)[..self.len_on_disk()])
    }

    /// Bytes the header takes in its file: 512 for version 1, else 1024.
    pub fn len_on_disk(&self) -> usize {
        if self.version <= 1 {
            HEADER_LEN_V1
        } else {
            HEADER_LEN
        }
    }

    /// Section table slots of the header's version.
    pub fn max_sections(&self) -> usize {
        if self.version <= 1 {
            MAX_SECTIONS_V1
        } else {
            MAX_SECTIONS
        }
    }

    /// Read a header from the start of a file of any supported version
    /// (`bytes` at least [`HEADER_LEN_V1`] long; a version-1 header is zero-extended).
    pub fn read(bytes: &[u8]) -> Header {
        let mut buf = [0u8; HEADER_LEN];
        let n = bytes.len().min(HEADER_LEN);
        buf[..n].copy_from_slice(&bytes[..n]);
        let mut h: Header = bytemuck::pod_read_unaligned(&buf);
        if h.version <= 1 {
            // Bytes 512.. belong to the first section of a version-1 file.
            for s in &mut h.sections[MAX_SECTIONS_V1..] {
                *s = SectionEntry::default();
            }
        }
        h
    }

    pub fn section(&self, kind: u32) -> Option<&SectionEntry> {
        self.sections[..(self.section_count as usize).min(self.max_sections())]
            .iter()
            .find(|s| s.kind == kind)
    }

    pub fn has_graph(&self) -> bool {
        self.flags & FLAG_GRAPH != 0
    }
}

/// `n` rounded up to the section alignment.
pub fn align_up(n: u64) -> u64 {
    n.div_ceil(ALIGN as u64) * ALIGN as u64
}
