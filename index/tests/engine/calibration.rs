//! The recall calibration on given queries (the users' kind of query): it
//! delivers its recall on held-out queries of that kind, it can be redone in
//! place without touching the graph, and appends keep or redo it by the
//! rows they add. Every recall is measured against brute force.

use std::path::Path;

use stabspace_index::format::{kind, Header};
use stabspace_index::{BuildParams, CalibrationQueries, Partition, PartitionBuilder, CALIBRATION_QUERIES};

use crate::common::{factor_model, iid, recall};

const SEED: u64 = 20_261_207;
const DIM: usize = 128;

fn params() -> BuildParams {
    BuildParams {
        m: 12,
        ef_construction: 100,
        seed: SEED,
        deterministic: true,
        flat_threshold: 0,
        ..BuildParams::default()
    }
}

/// Rows shaped like scenario vectors, and queries that sit off them (each a
/// row of the same model pushed by as much isotropic noise), as instrument
/// states sit off the scenario rows in the joint space.
fn rows_and_off_queries(rows: usize, queries: usize) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let all = factor_model(SEED, rows + queries, DIM, 48);
    let noise = iid(SEED + 1, queries, DIM);
    let off = all[rows..]
        .iter()
        .zip(&noise)
        .map(|(v, z)| {
            let zn = z.iter().map(|x| x * x).sum::<f32>().sqrt();
            let mut q: Vec<f32> = v.iter().zip(z).map(|(a, b)| a + 0.9 * b / zn).collect();
            let n = q.iter().map(|x| x * x).sum::<f32>().sqrt();
            q.iter_mut().for_each(|x| *x /= n);
            q
        })
        .collect();
    (all[..rows].to_vec(), off)
}

fn flat(v: &[Vec<f32>]) -> Vec<f32> {
    v.iter().flatten().copied().collect()
}

fn build_with(path: &Path, base: &[Vec<f32>], queries: Option<&[Vec<f32>]>) {
    let mut b = PartitionBuilder::with_capacity(DIM, base.len()).unwrap();
    for (i, v) in base.iter().enumerate() {
        b.add(&format!("r{i}"), v, &[]).unwrap();
    }
    if let Some(q) = queries {
        assert_eq!(b.calibrate_on(&flat(q)).unwrap(), q.len());
    }
    b.write(path, &params(), "{}", &mut |_, _| {}).unwrap();
}

#[test]
fn a_calibration_on_given_queries_delivers_its_recall_on_held_out_queries_of_their_kind() {
    let (base, off) = rows_and_off_queries(10_000, 1_300);
    let (calibrate_on, held_out) = off.split_at(800);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p");
    build_with(&path, &base, Some(calibrate_on));
    let p = Partition::open(&path).unwrap();
    let all = p.calibrations().unwrap();
    assert_eq!(all.len(), 2, "held-out rows and given queries: {all:?}");
    assert_eq!(all[0].queries, CalibrationQueries::HeldOutRows);
    let c = p.calibration().unwrap().unwrap();
    assert_eq!(
        c.queries,
        CalibrationQueries::Given,
        "queries use the given queries' calibration"
    );
    assert_eq!(c.sample, CALIBRATION_QUERIES.min(calibrate_on.len()));
    assert_eq!(c.near.len(), c.points.len());
    assert!(
        c.points.iter().zip(&c.near).all(|(p, &n)| n >= p.1),
        "near recall counts more: {c:?}"
    );
    for target in [0.90, 0.95] {
        let ef = c
            .ef_for(target)
            .unwrap_or_else(|| panic!("no breadth reaches {target}: {c:?}"));
        let got = recall(&p, &base, held_out, 10, ef);
        let rows_ef = all[0].ef_for(target).unwrap();
        let rows_got = recall(&p, &base, held_out, 10, rows_ef);
        println!(
            "target {target}: given queries' ef {ef} gives {got:.4}; held-out rows' ef {rows_ef} gives {rows_got:.4}"
        );
        assert!(
            got >= target - 0.01,
            "ef {ef} calibrated for {target} gives {got:.4} on held-out queries"
        );
        // The breadth is not wasteful: one rung below it misses the target
        // on the sample it was measured on.
        let below = c.points.iter().rev().find(|p| p.0 < ef);
        assert!(below.is_none_or(|p| p.1 < target), "{c:?}");
    }
}

/// The bytes of every section of `kind` in the file at `path`.
fn section(path: &Path, k: u32) -> Option<Vec<u8>> {
    let bytes = std::fs::read(path).unwrap();
    let header = Header::read(&bytes);
    header.sections[..header.section_count as usize]
        .iter()
        .find(|s| s.kind == k)
        .map(|s| bytes[s.offset as usize..(s.offset + s.len) as usize].to_vec())
}

#[test]
fn recalibrating_in_place_changes_the_breadth_and_not_the_graph() {
    let (base, off) = rows_and_off_queries(6_000, 600);
    let dir = tempfile::tempdir().unwrap();
    let (path, out) = (dir.path().join("p"), dir.path().join("q"));
    build_with(&path, &base, None);
    let p = Partition::open(&path).unwrap();
    let before = p.calibration().unwrap().unwrap();
    assert_eq!(before.queries, CalibrationQueries::HeldOutRows);
    assert_eq!(p.calibrations().unwrap().len(), 1);
    let written = p
        .recalibrate(&out, &flat(&off), SEED, |all| {
            format!("{{\"calibrations\":{}}}", all.len())
        })
        .unwrap();
    assert_eq!(written.len(), 2);
    let q = Partition::open(&out).unwrap();
    q.verify().unwrap();
    assert_eq!(q.provenance().unwrap(), "{\"calibrations\":2}");
    let after = q.calibration().unwrap().unwrap();
    assert_eq!(after.queries, CalibrationQueries::Given);
    assert_eq!(
        q.calibrations().unwrap()[0],
        before,
        "the held-out rows' calibration is kept"
    );
    println!("before {:?}\nafter {:?}", before.points, after.points);
    assert_ne!(
        after.ef_for(0.95),
        before.ef_for(0.95),
        "the off-row queries need another breadth"
    );
    for k in [
        kind::VECTORS,
        kind::NORMS,
        kind::LEVEL0,
        kind::UPPER_INDEX,
        kind::UPPER,
        kind::QUANTIZED,
        kind::ID_BYTES,
        kind::ROW_HASHES,
        kind::CALIBRATION,
    ] {
        let (a, b) = (section(&path, k), section(&out, k));
        assert!(a.is_some(), "section {k} written");
        assert!(a == b, "section {k} changed by recalibrating");
    }
    // Searches answer the same rows at the same breadth.
    for v in off.iter().take(20) {
        assert_eq!(p.search(v, 10, 64).unwrap(), q.search(v, 10, 64).unwrap());
    }
    // In place: the file recalibrated over itself, while mapped.
    q.recalibrate(&path, &flat(&off[..100]), SEED, |_| "{}".into())
        .unwrap();
    let r = Partition::open(&path).unwrap();
    assert_eq!(r.calibration().unwrap().unwrap().sample, 100);
    assert!(section(&path, kind::LEVEL0) == section(&out, kind::LEVEL0));
    // Bad queries are refused, naming the row.
    let mut bad = flat(&off[..3]);
    bad[DIM + 5] = f32::NAN;
    let e = r
        .recalibrate(&out, &bad, SEED, |_| "{}".into())
        .unwrap_err()
        .to_string();
    assert!(e.contains("row 1"), "{e}");
    let e = r
        .recalibrate(&out, &bad[..DIM + 3], SEED, |_| "{}".into())
        .unwrap_err()
        .to_string();
    assert!(e.contains("dimension") || e.contains("expected"), "{e}");
}

#[test]
fn appends_keep_the_given_queries_calibration_when_small_and_redo_it_when_not() {
    let (all, off) = rows_and_off_queries(7_000, 300);
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (dir.path().join("a"), dir.path().join("b"), dir.path().join("c"));
    build_with(&a, &all[..5_000], Some(&off));
    let base = Partition::open(&a).unwrap().calibrations().unwrap();
    let extend = |from: &Path, to: &Path, rows: std::ops::Range<usize>, queries: Option<&[Vec<f32>]>| {
        let p = Partition::open(from).unwrap();
        let mut x = PartitionBuilder::extending(&p, rows.len()).unwrap();
        for i in rows {
            x.add(&format!("r{i}"), &all[i], &[]).unwrap();
        }
        if let Some(q) = queries {
            x.calibrate_on(&flat(q)).unwrap();
        }
        x.write(to, &params(), "{}", &mut |_, _| {}).unwrap()
    };
    // 4% more rows: both calibrations carried as they were.
    let stats = extend(&a, &b, 5_000..5_200, Some(&off));
    assert_eq!(stats.appended, Some(200));
    assert_eq!(stats.calibrations, base);
    assert_eq!(Partition::open(&b).unwrap().calibrations().unwrap(), base);
    // 40% more rows with the queries: both measured anew on 7,000 rows.
    let stats = extend(&a, &c, 5_000..7_000, Some(&off));
    assert_eq!(
        stats.calibrations.iter().map(|c| c.rows).collect::<Vec<_>>(),
        vec![7_000, 7_000]
    );
    assert_eq!(stats.calibration.unwrap().queries, CalibrationQueries::Given);
    // Without them: only the held-out rows can be measured anew.
    let stats = extend(&a, &c, 5_000..7_000, None);
    assert_eq!(stats.calibrations.len(), 1);
    assert_eq!(
        stats.calibration.unwrap().queries,
        CalibrationQueries::HeldOutRows
    );
}
