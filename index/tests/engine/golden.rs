//! A format-version-1 file committed to the repository must keep opening and
//! answering the same way. Regenerate (only on purpose, with a format bump) with
//! `cargo test -p stabspace-index --test engine -- --ignored regenerate_golden`.

use std::path::PathBuf;

use stabspace_index::{BuildParams, Partition, PartitionBuilder};

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
    };
    b.write(
        &data_dir().join("golden_v1.stabidx"),
        &params,
        r#"{"golden":1}"#,
        &mut |_, _| {},
    )
    .unwrap();
    let p = Partition::open(data_dir().join("golden_v1.stabidx")).unwrap();
    let ids: Vec<String> = p
        .search(&query(), 5, 32)
        .unwrap()
        .into_iter()
        .map(|h| h.id)
        .collect();
    std::fs::write(
        data_dir().join("golden_v1.expected.json"),
        serde_json::to_string_pretty(&ids).unwrap(),
    )
    .unwrap();
}

#[test]
fn golden_v1_file_opens_verifies_and_answers_as_recorded() {
    let p = Partition::open(data_dir().join("golden_v1.stabidx")).expect("format v1 must stay readable");
    p.verify().unwrap();
    assert_eq!(p.header().version, 1);
    assert!(p.has_graph());
    assert_eq!((p.len(), p.dim()), (300, 8));
    assert_eq!(p.provenance().unwrap(), r#"{"golden":1}"#);
    assert_eq!((p.id(7).unwrap(), p.payload(7).unwrap()), ("S007", &b"p7"[..]));
    let expected: Vec<String> =
        serde_json::from_str(&std::fs::read_to_string(data_dir().join("golden_v1.expected.json")).unwrap())
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
}
