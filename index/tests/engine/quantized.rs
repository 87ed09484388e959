//! Int8 traversal (the `QUANTIZED` section): recall against brute force and
//! against f32 traversal of the same graph, the same answers as f32 where it
//! is off or absent, and damaged or unknown sections.

use std::fs;

use stabspace_index::format::{kind, Header, HEADER_LEN};
use stabspace_index::{BuildParams, IndexError, Partition, Quantization};

use crate::common::{build, factor_model, recall};

const SEED: u64 = 20_261_213;

fn params() -> BuildParams {
    BuildParams {
        seed: SEED,
        deterministic: true,
        flat_threshold: 0,
        ..BuildParams::default()
    }
}

#[test]
fn int8_traversal_keeps_the_recall_of_f32_traversal_against_brute_force() {
    // Factor-model vectors (anisotropic, like scenario vectors) in 384 dims.
    let all = factor_model(SEED, 10_200, 384, 64);
    let (base, queries) = all.split_at(10_000);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.stabidx");
    build(&path, base, &params());
    let p = Partition::open(&path).unwrap();
    assert!(p.has_quantized() && p.quantized_traversal());
    assert_eq!(p.info().quantized, Some("int8-per-dimension"));
    let mut f32_path = Partition::open(&path).unwrap();
    f32_path.set_quantized(false);
    assert!(!f32_path.quantized_traversal());
    for (ef, floor) in [(32, 0.92), (64, 0.975), (128, 0.99)] {
        let (r8, r32) = (
            recall(&p, base, queries, 10, ef),
            recall(&f32_path, base, queries, 10, ef),
        );
        println!("ef {ef}: recall@10 int8 {r8:.4}, f32 {r32:.4}");
        assert!(r8 >= floor, "ef {ef}: int8 recall@10 {r8:.4} < {floor}");
        assert!(r8 >= r32 - 0.01, "ef {ef}: int8 {r8:.4} vs f32 {r32:.4}");
    }
    // Answers carry exact cosines either way: a hit found by both has the
    // same cosine to the last bit.
    for q in queries.iter().take(20) {
        let (a, b) = (
            p.search(q, 10, 128).unwrap(),
            f32_path.search(q, 10, 128).unwrap(),
        );
        for h in &a {
            if let Some(g) = b.iter().find(|g| g.row == h.row) {
                assert_eq!(h.cosine.to_bits(), g.cosine.to_bits());
                assert_eq!(h.euclidean.to_bits(), g.euclidean.to_bits());
            }
        }
    }
}

#[test]
fn the_calibration_measures_the_int8_path_and_holds_on_held_out_queries() {
    let all = factor_model(SEED + 1, 8_200, 384, 64);
    let (base, queries) = all.split_at(8_000);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.stabidx");
    let stats = build(&path, base, &params());
    let c = stats.calibration.expect("a graph is calibrated");
    let p = Partition::open(&path).unwrap();
    let ef = c.ef_for(0.95).expect("reaches 0.95 on the ladder");
    let r = recall(&p, base, queries, 10, ef);
    println!("calibrated ef {ef} for 0.95; held-out queries: {r:.4}");
    assert!(
        r >= 0.95 - 0.02,
        "held-out recall {r:.4} at the calibrated ef {ef}"
    );
}

#[test]
fn without_codes_the_search_is_the_f32_search() {
    let all = factor_model(SEED + 2, 3_050, 64, 16);
    let (base, queries) = all.split_at(3_000);
    let dir = tempfile::tempdir().unwrap();
    let (with, without) = (dir.path().join("with"), dir.path().join("without"));
    build(&with, base, &params());
    build(
        &without,
        base,
        &BuildParams {
            quantization: Quantization::None,
            ..params()
        },
    );
    let mut off = Partition::open(&with).unwrap();
    off.set_quantized(false);
    let plain = Partition::open(&without).unwrap();
    assert!(!plain.has_quantized() && !plain.quantized_traversal());
    assert_eq!(plain.info().quantized, None);
    // The same deterministic graph: traversal off answers as no codes at all.
    for q in queries {
        assert_eq!(off.search(q, 10, 48).unwrap(), plain.search(q, 10, 48).unwrap());
    }
    let (a, b) = (
        fs::metadata(&with).unwrap().len(),
        fs::metadata(&without).unwrap().len(),
    );
    assert!(
        a > b && a - b >= 3_000 * 64,
        "the codes take a byte per component: {a} vs {b}"
    );
}

/// Build a partition of `base` at `path`: its bytes, and where its quantised section lies.
fn built_bytes(path: &std::path::Path, base: &[Vec<f32>]) -> (Vec<u8>, usize, usize) {
    build(path, base, &params());
    let bytes = fs::read(path).unwrap();
    let (at, len) = section_bytes(&bytes);
    (bytes, at, len)
}

fn section_bytes(bytes: &[u8]) -> (usize, usize) {
    let h: Header = bytemuck::pod_read_unaligned(&bytes[..HEADER_LEN]);
    let s = h.section(kind::QUANTIZED).expect("a quantised section");
    (s.offset as usize, s.len as usize)
}

#[test]
fn damaged_codes_fail_verify_and_searches_still_answer_exactly() {
    let all = factor_model(SEED + 3, 2_520, 32, 8);
    let (base, queries) = all.split_at(2_500);
    let dir = tempfile::tempdir().unwrap();
    let (good, at, len) = built_bytes(&dir.path().join("d.stabidx"), base);
    // Scales set to NaN, then every code flipped: verify names the section;
    // searches return k hits whose cosines are still the exact ones.
    let params_at = at + 64 + 4 * 32;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("NaN scales", {
            let mut b = good.clone();
            b[params_at..params_at + 4 * 32].fill(0xff);
            b
        }),
        ("flipped codes", {
            let mut b = good.clone();
            let codes = at + len - 2_500 * 32;
            b[codes..at + len].iter_mut().for_each(|c| *c ^= 0x5a);
            b
        }),
    ];
    for (what, bytes) in cases {
        let damaged = dir.path().join("damaged.stabidx");
        fs::write(&damaged, &bytes).unwrap();
        let p = Partition::open(&damaged).unwrap();
        let err = p.verify().expect_err(what);
        assert!(
            err.to_string().contains("checksum mismatch in section 0x101"),
            "{what}: {err}"
        );
        for q in queries {
            let hits = p.search(q, 10, 64).unwrap();
            assert_eq!(hits.len(), 10, "{what}");
            for h in &hits {
                let exact = crate::common::cos64(q, &base[h.row as usize]);
                assert!((h.cosine - exact).abs() < 1e-6, "{what}: {} vs {exact}", h.cosine);
            }
        }
    }
}

#[test]
fn a_malformed_quantised_section_is_refused_and_an_unknown_scheme_skipped() {
    let all = factor_model(SEED + 4, 2_020, 16, 4);
    let (base, queries) = all.split_at(2_000);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.stabidx");
    let (good, at, _) = built_bytes(&path, base);
    // The section says 17 dimensions: refused at open, naming the file.
    let mut b = good.clone();
    b[at + 4..at + 8].copy_from_slice(&17u32.to_le_bytes());
    let bad = dir.path().join("bad.stabidx");
    fs::write(&bad, &b).unwrap();
    match Partition::open(&bad) {
        Err(IndexError::Corrupt { path, reason }) => {
            assert_eq!(path, bad);
            assert!(reason.contains("quantised section"), "{reason}");
        }
        other => panic!("expected a corrupt-file error, got {:?}", other.map(|p| p.len())),
    }
    // A scheme from a later version: skipped like an unknown optional section.
    let mut b = good.clone();
    b[at..at + 4].copy_from_slice(&99u32.to_le_bytes());
    let future = dir.path().join("future.stabidx");
    fs::write(&future, &b).unwrap();
    let p = Partition::open(&future).unwrap();
    assert!(!p.has_quantized());
    let mut f32_path = Partition::open(&path).unwrap();
    f32_path.set_quantized(false);
    for q in queries {
        assert_eq!(p.search(q, 5, 32).unwrap(), f32_path.search(q, 5, 32).unwrap());
    }
}

#[test]
fn an_append_keeps_its_calibration_only_if_the_quantisation_is_unchanged() {
    let all = factor_model(SEED + 5, 3_100, 32, 8);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.stabidx");
    build(&path, &all[..3_000], &params());
    let append = |how: Quantization| {
        let p = Partition::open(&path).unwrap();
        let mut b = stabspace_index::PartitionBuilder::extending(&p, 100).unwrap();
        drop(p);
        for (i, v) in all[3_000..].iter().enumerate() {
            b.add(&format!("r{}", 3_000 + i), v, &[]).unwrap();
        }
        let to = dir.path().join(format!("{how:?}.stabidx"));
        let stats = b
            .write(
                &to,
                &BuildParams {
                    quantization: how,
                    ..params()
                },
                "{}",
                &mut |_, _| {},
            )
            .unwrap();
        assert_eq!(stats.appended, Some(100), "{how:?}");
        (stats.calibration.unwrap().rows, Partition::open(&to).unwrap())
    };
    // Same codes: the 3,000-row calibration is carried (a 3% append).
    let (rows, p) = append(Quantization::PerDimension);
    assert_eq!(rows, 3_000);
    assert!(p.has_quantized());
    // Codes dropped: queries now take the f32 path, so it is measured again.
    let (rows, p) = append(Quantization::None);
    assert_eq!(rows, 3_100);
    assert_eq!(p.quantization(), Quantization::None);
}
