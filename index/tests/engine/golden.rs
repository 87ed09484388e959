//! Format files committed to the repository (version 1, written by the
//! hnsw_rs-based builder; version 2 without quantised codes; version 2 with
//! the optional `QUANTIZED` section) must keep opening and answering the
//! same way. Regenerate the current writer's file, [`CURRENT`] (only on
//! purpose, when the format changes; then name it after the change and keep
//! the old one) with
//! `cargo test -p stabspace-index --test engine -- --ignored regenerate_golden`.

use std::path::PathBuf;

use stabspace_index::{row_hash, BuildParams, Partition, PartitionBuilder};

/// The file the current writer makes.
const CURRENT: &str = "golden_v2_quantized";

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// 300 deterministic 8-dim vectors (no RNG crate, so they never change).
fn vectors() -> Vec<Vec<f32>> {
    (0..300u32)
        .map(|i| {
            (0..8u32)
                .map(|j| ((i * 31 + j * 17) % 97) as f32 / 97.0 - 0.5 + (j == i % 8) as u32 as f32)
                .collect()
        })
        .collect()
}

fn query() -> Vec<f32> {
    vec![0.9, -0.1, 0.2, 0.0, 0.3, -0.4, 0.1, 0.05]
}

#[test]
#[ignore = "writes the golden file; run only when the format version changes"]
fn regenerate_golden() {
    let mut b = PartitionBuilder::new(8).unwrap();
    for (i, v) in vectors().iter().enumerate() {
        b.add(&format!("S{i:03}"), v, format!("p{i}").as_bytes()).unwrap();
    }
    let params = BuildParams {
        m: 8,
        ef_construction: 64,
        seed: 1,
        deterministic: true,
        flat_threshold: 0,
        ..BuildParams::default()
    };
    b.write(
        &data_dir().join(format!("{CURRENT}.stabidx")),
        &params,
        r#"{"golden":1}"#,
        &mut |_, _| {},
    )
    .unwrap();
    let p = Partition::open(data_dir().join(format!("{CURRENT}.stabidx"))).unwrap();
    let ids: Vec<String> = p
        .search(&query(), 5, 32)
        .unwrap()
        .into_iter()
        .map(|h| h.id)
        .collect();
    std::fs::write(
        data_dir().join(format!("{CURRENT}.expected.json")),
        serde_json::to_string_pretty(&ids).unwrap(),
    )
    .unwrap();
}

fn check_golden(stem: &str, version: u32) -> Partition {
    let file = data_dir().join(format!("{stem}.stabidx"));
    let p = Partition::open(&file).unwrap_or_else(|e| panic!("{stem} must stay readable: {e}"));
    p.verify().unwrap();
    assert_eq!(p.header().version, version);
    assert!(p.has_graph());
    assert_eq!((p.len(), p.dim()), (300, 8));
    assert_eq!(p.provenance().unwrap(), r#"{"golden":1}"#);
    assert_eq!((p.id(7).unwrap(), p.payload(7).unwrap()), ("S007", &b"p7"[..]));
    let expected: Vec<String> = serde_json::from_str(
        &std::fs::read_to_string(data_dir().join(format!("{stem}.expected.json"))).unwrap(),
    )
    .unwrap();
    let ids: Vec<String> = p
        .search(&query(), 5, 32)
        .unwrap()
        .into_iter()
        .map(|h| h.id)
        .collect();
    assert_eq!(ids, expected);
    // The graph answer is also the exact answer on this small set.
    let exact: Vec<String> = p
        .search_exact(&query(), 5)
        .unwrap()
        .into_iter()
        .map(|h| h.id)
        .collect();
    assert_eq!(exact, expected);
    p
}

#[test]
fn golden_v1_file_opens_verifies_and_answers_as_recorded() {
    let p = check_golden("golden_v1", 1);
    assert!(!p.has_quantized());
    assert!(p.row_hashes().is_none(), "version 1 has no row hashes");
    assert!(p.calibration().unwrap().is_none());
    assert!(
        PartitionBuilder::extending(&p, 0).is_err(),
        "a version-1 file cannot be extended: nothing says its rows are unchanged"
    );
}

#[test]
fn golden_v2_file_opens_verifies_and_answers_as_recorded() {
    // Written before quantised codes: searched on the f32 vectors, as then.
    let p = check_golden("golden_v2", 2);
    assert!(!p.has_quantized() && !p.quantized_traversal());
    let hashes = p.row_hashes().expect("version 2 has row hashes");
    let v = &vectors()[7];
    assert_eq!(hashes[7], row_hash("S007", v, b"p7"), "row hash of row 7");
    let c = p.calibration().unwrap().expect("a graph has a calibration");
    assert_eq!((c.k, c.sample, c.rows), (10, 200, 300));
}

#[test]
fn golden_v2_file_with_codes_opens_verifies_and_answers_as_recorded() {
    let p = check_golden(CURRENT, 2);
    assert!(p.quantized_traversal());
    assert_eq!(p.info().quantized, Some("int8-per-dimension"));
    let mut f32_path = Partition::open(data_dir().join(format!("{CURRENT}.stabidx"))).unwrap();
    f32_path.set_quantized(false);
    assert_eq!(
        p.search(&query(), 5, 32).unwrap(),
        f32_path.search(&query(), 5, 32).unwrap()
    );
}
