//! Our graph builder against the reference (hnsw_rs), appends against fresh
//! builds, and the recall calibration against held-out queries. Every recall
//! is measured against brute force; builds are deterministic so that a
//! failure reproduces.

use std::path::Path;

use stabspace_index::{row_hash, BuildParams, BuildStats, GraphBuilder, Partition, PartitionBuilder};

use crate::common::{build, factor_model, recall};

const SEED: u64 = 20_261_201;

/// Vectors shaped like our users' (a factor model: few dominant directions,
/// decaying variance, noise), in 128 dimensions; a graph needs a real search
/// breadth to reach 0.95 on them.
fn data(n: usize) -> Vec<Vec<f32>> {
    factor_model(SEED, n, 128, 64)
}

fn params(deterministic: bool) -> BuildParams {
    BuildParams {
        m: 12,
        ef_construction: 100,
        seed: SEED,
        deterministic,
        flat_threshold: 0,
        ..BuildParams::default()
    }
}

/// Extend the partition at `from` with `rows` (ids continuing "r{row}") and write `to`.
fn append(from: &Path, to: &Path, rows: &[Vec<f32>], first: usize, params: &BuildParams) -> BuildStats {
    let p = Partition::open(from).unwrap();
    let mut b = PartitionBuilder::extending(&p, rows.len()).unwrap();
    drop(p);
    for (i, v) in rows.iter().enumerate() {
        let row = first + i;
        b.add(&format!("r{row}"), v, &(row as u32).to_le_bytes()).unwrap();
    }
    b.write(to, params, r#"{"test":true}"#, &mut |_, _| {}).unwrap()
}

#[test]
fn our_builder_reaches_the_reference_recall_at_ef_64_and_256() {
    let all = data(12_000);
    let (base, queries) = all.split_at(10_000);
    let dir = tempfile::tempdir().unwrap();
    let (ours, theirs) = (dir.path().join("ours"), dir.path().join("ref"));
    build(&ours, base, &params(true));
    build(
        &theirs,
        base,
        &BuildParams {
            builder: GraphBuilder::HnswRs,
            ..params(true)
        },
    );
    let (ours, theirs) = (Partition::open(&ours).unwrap(), Partition::open(&theirs).unwrap());
    for ef in [64, 256] {
        let (a, b) = (
            recall(&ours, base, queries, 10, ef),
            recall(&theirs, base, queries, 10, ef),
        );
        println!("ef {ef}: ours {a:.4}, hnsw_rs {b:.4}");
        // Absolute floors against brute force, about 0.03 below what the
        // builds measured (ours 0.9868 and 0.9997, hnsw_rs 0.9843 and 0.9988
        // at ef 64 and 256): two builds that both lost recall do not pass.
        let floor = if ef == 64 { 0.95 } else { 0.97 };
        assert!(a >= floor, "ef {ef}: our recall {a:.4} < {floor}");
        assert!(b >= floor, "ef {ef}: hnsw_rs recall {b:.4} < {floor}");
        assert!(
            a >= b - 0.005,
            "ef {ef}: our recall {a:.4} < hnsw_rs {b:.4} − 0.005"
        );
    }
}

#[test]
fn parallel_builds_reach_the_serial_recall() {
    let all = data(12_000);
    let (base, queries) = all.split_at(10_000);
    let dir = tempfile::tempdir().unwrap();
    let (par, ser) = (dir.path().join("par"), dir.path().join("ser"));
    build(&par, base, &params(false));
    build(&ser, base, &params(true));
    let (par, ser) = (Partition::open(&par).unwrap(), Partition::open(&ser).unwrap());
    let (a, b) = (
        recall(&par, base, queries, 10, 64),
        recall(&ser, base, queries, 10, 64),
    );
    println!("ef 64: parallel {a:.4}, serial {b:.4}");
    // Absolute floor against brute force, about 0.03 below what the builds
    // measured (parallel 0.9857 and 0.9869 in two runs, serial 0.9868).
    assert!(a >= 0.95, "parallel recall {a:.4} < 0.95");
    assert!(b >= 0.95, "serial recall {b:.4} < 0.95");
    assert!(a >= b - 0.01, "parallel recall {a:.4} < serial {b:.4} − 0.01");
}

#[test]
fn ten_one_percent_appends_keep_the_recall_of_a_fresh_build() {
    let all = data(13_000);
    let (rows, queries) = all.split_at(11_000);
    let dir = tempfile::tempdir().unwrap();
    let mut path = dir.path().join("step0");
    build(&path, &rows[..10_000], &params(true));
    for step in 1..=10 {
        let next = dir.path().join(format!("step{step}"));
        let first = 10_000 + (step - 1) * 100;
        let stats = append(&path, &next, &rows[first..first + 100], first, &params(true));
        assert_eq!(stats.appended, Some(100), "step {step} inserts only the new rows");
        // Up to a tenth more rows than calibrated, the calibration is carried.
        assert_eq!(stats.calibration.map(|c| c.rows), Some(10_000), "step {step}");
        path = next;
    }
    let fresh = dir.path().join("fresh");
    build(&fresh, rows, &params(true));
    let (appended, fresh) = (Partition::open(&path).unwrap(), Partition::open(&fresh).unwrap());
    assert_eq!(appended.len(), rows.len());
    for ef in [32, 64, 128] {
        let (a, f) = (
            recall(&appended, rows, queries, 10, ef),
            recall(&fresh, rows, queries, 10, ef),
        );
        println!("ef {ef}: after ten appends {a:.4}, fresh build {f:.4}");
        // Absolute floors against brute force, about 0.03 below what the
        // builds measured (appended / fresh: 0.9378 / 0.9378 at ef 32,
        // 0.9836 / 0.9843 at 64, 0.9968 / 0.9970 at 128).
        let floor = match ef {
            32 => 0.90,
            64 => 0.95,
            _ => 0.96,
        };
        assert!(a >= floor, "ef {ef}: appended recall {a:.4} < {floor}");
        assert!(f >= floor, "ef {ef}: fresh recall {f:.4} < {floor}");
        assert!(
            a >= f - 0.005,
            "ef {ef}: appended recall {a:.4} < fresh {f:.4} − 0.005"
        );
    }
}

#[test]
fn an_append_keeps_rows_ids_and_payloads_and_hashes_the_new_rows() {
    let all = data(3_000);
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (dir.path().join("a"), dir.path().join("b"), dir.path().join("c"));
    build(&a, &all[..2_500], &params(true));
    let stats = append(&a, &b, &all[2_500..], 2_500, &params(true));
    assert_eq!(stats.appended, Some(500));
    // A fifth more rows: calibrated anew.
    assert_eq!(stats.calibration.map(|c| c.rows), Some(3_000));
    let (old, new) = (Partition::open(&a).unwrap(), Partition::open(&b).unwrap());
    assert_eq!(new.len(), 3_000);
    assert_eq!(&new.vectors()[..old.vectors().len()], old.vectors());
    assert_eq!(&new.row_hashes().unwrap()[..2_500], old.row_hashes().unwrap());
    for row in [0, 2_499, 2_500, 2_999] {
        assert_eq!(new.id(row).unwrap(), format!("r{row}"));
        assert_eq!(new.payload(row).unwrap(), (row as u32).to_le_bytes());
        assert_eq!(
            new.row_hashes().unwrap()[row],
            row_hash(&format!("r{row}"), &all[row], &(row as u32).to_le_bytes()),
            "row {row}"
        );
    }
    // Every new row is reachable: searching for its own vector finds it.
    for (row, v) in all.iter().enumerate().skip(2_500) {
        let hit = &new.search(v, 1, 64).unwrap()[0];
        assert!(
            hit.cosine > 0.999_999,
            "row {row} not found by its own vector: {hit:?}"
        );
    }
    // The same append twice gives the same bytes (deterministic).
    append(&a, &c, &all[2_500..], 2_500, &params(true));
    assert!(
        std::fs::read(&b).unwrap() == std::fs::read(&c).unwrap(),
        "deterministic appends differ"
    );
    // Another M cannot extend the graph: a full build.
    let other_m = BuildParams { m: 8, ..params(true) };
    let stats = append(&a, &c, &all[2_500..], 2_500, &other_m);
    assert_eq!(stats.appended, None);
    assert_eq!(Partition::open(&c).unwrap().header().m, 8);
}

#[test]
fn the_calibrated_breadth_delivers_its_recall_on_held_out_queries() {
    let all = data(12_000);
    let (base, queries) = all.split_at(10_000);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p");
    let stats = build(&path, base, &params(false));
    let p = Partition::open(&path).unwrap();
    let c = p.calibration().unwrap().expect("a graph is calibrated");
    assert_eq!(Some(&c), stats.calibration.as_ref());
    println!("calibration: {:?}", c.points);
    assert!(c.points.windows(2).all(|w| w[0].0 < w[1].0));
    for target in [0.90, 0.95] {
        let ef = c
            .ef_for(target)
            .unwrap_or_else(|| panic!("no breadth reaches {target}: {:?}", c.points));
        let r = recall(&p, base, queries, 10, ef);
        println!("target {target}: ef {ef} gives {r:.4} on held-out queries");
        assert!(
            r >= target - 0.02,
            "ef {ef} calibrated for {target} gives {r:.4} on held-out queries"
        );
    }
}
