//! Damaged, truncated, foreign and future files are errors, never panics.

use std::fs;
use std::path::Path;

use stabspace_index::format::{kind, Header, HEADER_LEN, VERSION};
use stabspace_index::{BuildParams, IndexError, Partition};

use crate::common::{build, iid};

fn fixture(dir: &Path) -> (std::path::PathBuf, Vec<u8>) {
    let base = iid(3, 2_200, 16);
    let path = dir.join("good.stabidx");
    build(
        &path,
        &base,
        &BuildParams {
            flat_threshold: 0,
            ..BuildParams::default()
        },
    );
    let bytes = fs::read(&path).unwrap();
    (path, bytes)
}

fn open_bytes(dir: &Path, name: &str, bytes: &[u8]) -> Result<Partition, IndexError> {
    let path = dir.join(name);
    fs::write(&path, bytes).unwrap();
    Partition::open(&path)
}

fn header(bytes: &[u8]) -> Header {
    bytemuck::pod_read_unaligned(&bytes[..HEADER_LEN])
}

fn with_header(bytes: &[u8], h: &Header, fix_crc: bool) -> Vec<u8> {
    let mut h = *h;
    if fix_crc {
        h.header_crc32 = h.compute_crc();
    }
    let mut out = bytes.to_vec();
    out[..HEADER_LEN].copy_from_slice(bytemuck::bytes_of(&h));
    out
}

#[test]
fn truncated_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (_, bytes) = fixture(dir.path());
    for len in [
        0,
        7,
        100,
        HEADER_LEN - 1,
        HEADER_LEN,
        HEADER_LEN + 64,
        bytes.len() / 2,
        bytes.len() - 1,
    ] {
        let err = open_bytes(dir.path(), "t", &bytes[..len])
            .err()
            .unwrap_or_else(|| panic!("len {len} opened"));
        assert!(
            matches!(err, IndexError::Corrupt { .. } | IndexError::NotAnIndex { .. }),
            "{len}: {err}"
        );
    }
}

#[test]
fn every_flipped_header_byte_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let (_, bytes) = fixture(dir.path());
    for i in 0..HEADER_LEN {
        let mut b = bytes.clone();
        b[i] ^= 0x5a;
        assert!(
            open_bytes(dir.path(), "f", &b).is_err(),
            "flipped byte {i} went unnoticed"
        );
    }
}

#[test]
fn wrong_magic_and_future_versions_say_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let (_, bytes) = fixture(dir.path());
    let mut b = bytes.clone();
    b[..8].copy_from_slice(b"NOTANIDX");
    assert!(matches!(
        open_bytes(dir.path(), "m", &b),
        Err(IndexError::NotAnIndex { .. })
    ));

    let mut h = header(&bytes);
    h.version = VERSION + 1;
    let err = open_bytes(dir.path(), "v", &with_header(&bytes, &h, true))
        .err()
        .unwrap();
    assert!(
        matches!(err, IndexError::UnsupportedVersion { found, .. } if found == VERSION + 1),
        "{err}"
    );
    assert!(err.to_string().contains("stabspace index rebuild"), "{err}");
}

#[test]
fn offsets_past_the_end_and_bad_lengths_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (_, bytes) = fixture(dir.path());
    let h = header(&bytes);
    for slot in 0..h.section_count as usize {
        for (offset, len) in [
            (1u64 << 40, 64u64),
            (h.sections[slot].offset, 1 << 40),
            (h.sections[slot].offset + 4, 8),
            (u64::MAX - 8, 64),
        ] {
            let mut bad = h;
            bad.sections[slot].offset = offset;
            bad.sections[slot].len = len;
            let err = open_bytes(dir.path(), "o", &with_header(&bytes, &bad, true)).err();
            assert!(
                matches!(err, Some(IndexError::Corrupt { .. })),
                "slot {slot}: {err:?}"
            );
        }
    }
    // An unknown required section kind is refused; an unknown optional one is ignored.
    let mut bad = h;
    bad.sections[0].kind = 0x42;
    assert!(open_bytes(dir.path(), "k", &with_header(&bytes, &bad, true)).is_err());
    let mut bad = h;
    let slot = h.section_count as usize;
    bad.sections[slot] = stabspace_index::format::SectionEntry {
        kind: 0x1ff,
        flags: 1,
        offset: h.sections[0].offset,
        len: 64,
        crc32: 0,
        reserved: 0,
    };
    bad.section_count += 1;
    let p =
        open_bytes(dir.path(), "q", &with_header(&bytes, &bad, true)).expect("optional sections are skipped");
    assert_eq!(p.len(), 2_200);
}

#[test]
fn damaged_sections_fail_verify_and_never_panic_in_search() {
    let dir = tempfile::tempdir().unwrap();
    let (_, bytes) = fixture(dir.path());
    let h = header(&bytes);
    let query: Vec<f32> = (0..16).map(|i| i as f32 - 7.5).collect();
    for slot in 0..h.section_count as usize {
        let s = h.sections[slot];
        if s.len == 0 {
            continue;
        }
        for at in [0, s.len / 2, s.len - 1] {
            for pattern in [0xffu8, 0x80] {
                let mut b = bytes.clone();
                b[(s.offset + at) as usize] ^= pattern;
                let p = open_bytes(dir.path(), "s", &b);
                let Ok(p) = p else { continue };
                let err = p.verify().expect_err("checksum must catch the flip");
                assert!(err.to_string().contains("checksum mismatch"), "{err}");
                // Searching may succeed or fail cleanly; it must not panic.
                let _ = p.search(&query, 10, 64);
                let _ = p.search_exact(&query, 10);
            }
        }
    }
    // Neighbour rows far out of range (fixed up so the header is consistent) are errors.
    let l0 = h.section(kind::LEVEL0).unwrap();
    let mut b = bytes.clone();
    for w in b[l0.offset as usize..(l0.offset + l0.len) as usize].chunks_exact_mut(4) {
        w.copy_from_slice(&(u32::MAX - 1).to_le_bytes());
    }
    let p = open_bytes(dir.path(), "n", &b).unwrap();
    assert!(matches!(
        p.search(&query, 10, 64),
        Err(IndexError::Corrupt { .. })
    ));
}
