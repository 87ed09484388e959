//! The exact batched scan on the int8 codes (`scan.rs`): its answers are the
//! f64 brute force's, row for row, on rows built to sit inside its error
//! bound (near-ties, duplicates, rows with equal codes), on every kind of
//! row store (codes in the file, codes fitted in memory, a `FlatIndex`), and
//! for queries the codes cannot score.

use stabspace_index::{BuildParams, FlatIndex, Hit, Partition, Quantization};

use crate::common::{brute_force, build, factor_model};

/// Scenario-like rows, then near-ties of some of them: an exact duplicate,
/// a copy moved by 1e-7 (the same codes, a different f64 cosine), and a copy
/// moved by a tenth of a typical code step in one dimension.
fn rows_with_near_ties() -> Vec<Vec<f32>> {
    let mut base = factor_model(31, 3_003, 384, 12);
    for r in (0..3_003).step_by(97) {
        let v = base[r].clone();
        base.push(v.clone());
        base.push(
            v.iter()
                .enumerate()
                .map(|(d, x)| x + if d % 7 == 0 { 1e-7 } else { 0.0 })
                .collect(),
        );
        let mut w = v;
        w[r % 384] += 3e-4;
        base.push(w);
    }
    base
}

/// Queries: fresh rows of the same model and some base rows themselves (their
/// near-ties are then the top hits): 101 of them, past one block of 48 and
/// ending on a partial tile of queries.
fn queries(base: &[Vec<f32>]) -> Vec<Vec<f32>> {
    let mut q = factor_model(32, 80, 384, 12);
    q.extend((0..21).map(|i| base[i * 97 * 3 % 3_003].clone()));
    q
}

/// The rows as a partition stores them: normalised in f64, rounded to f32.
/// Near-ties are ranked on these (a copy moved by 1e-7 may round to the row).
fn stored(base: &[Vec<f32>]) -> Vec<Vec<f32>> {
    base.iter()
        .map(|v| {
            let norm = v.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>().sqrt();
            v.iter().map(|&x| (f64::from(x) / norm) as f32).collect()
        })
        .collect()
}

/// `got` is the f64 brute force over the stored rows, row for row.
fn assert_brute_force(what: &str, base: &[Vec<f32>], queries: &[Vec<f32>], got: &[Vec<Hit>], k: usize) {
    assert_eq!(got.len(), queries.len(), "{what}");
    let base = stored(base);
    for (i, (q, hits)) in queries.iter().zip(got).enumerate() {
        let truth = brute_force(&base, q, k);
        let rows: Vec<u32> = hits.iter().map(|h| h.row).collect();
        let want: Vec<u32> = truth.iter().map(|t| t.0).collect();
        assert_eq!(rows, want, "{what}: query {i}");
        for (h, t) in hits.iter().zip(&truth) {
            assert!(
                (h.cosine - t.1).abs() < 1e-6,
                "{what}: query {i} row {}: {} vs {}",
                h.row,
                h.cosine,
                t.1
            );
        }
    }
}

#[test]
fn the_scan_on_the_codes_returns_the_f64_brute_force_answer() {
    let base = rows_with_near_ties();
    let queries = queries(&base);
    let dir = tempfile::tempdir().unwrap();
    let k = 10;

    // Codes in the file (a graph partition).
    let coded = dir.path().join("coded.stabidx");
    build(&coded, &base, &BuildParams::default());
    let p = Partition::open(&coded).unwrap();
    assert!(p.has_quantized());
    let on_codes = p.search_batch(&queries, k, None).unwrap();
    assert_brute_force("codes in the file", &base, &queries, &on_codes, k);
    assert_eq!(
        on_codes,
        p.search_batch_f32(&queries, k).unwrap(),
        "the f32 scan agrees exactly"
    );
    // k above the tile and block sizes, and every row.
    assert_brute_force(
        "k 100",
        &base,
        &queries[..70],
        &p.search_batch(&queries[..70], 100, None).unwrap(),
        100,
    );
    let all = p.search_batch(&queries[..64], usize::MAX, None).unwrap();
    assert!(all.iter().all(|h| h.len() == base.len()));
    assert_brute_force("every row", &base, &queries[..64], &all, base.len());

    // No codes in the file: a flat partition and a graph without codes fit them in memory.
    for (name, params) in [
        (
            "flat",
            BuildParams {
                flat_threshold: usize::MAX,
                ..BuildParams::default()
            },
        ),
        (
            "uncoded graph",
            BuildParams {
                quantization: Quantization::None,
                ..BuildParams::default()
            },
        ),
    ] {
        let path = dir.path().join(format!("{name}.stabidx"));
        build(&path, &base, &params);
        let p = Partition::open(&path).unwrap();
        assert!(!p.has_quantized(), "{name}");
        let got = p.search_batch(&queries, k, None).unwrap();
        assert_eq!(got, on_codes, "{name}");
        // A second batch reads the codes fitted by the first.
        assert_eq!(
            p.search_batch(&queries, k, None).unwrap(),
            on_codes,
            "{name}, again"
        );
    }

    // A FlatIndex fits codes too, and drops them when a row is added.
    let mut flat = FlatIndex::new(384).unwrap();
    for (i, v) in base.iter().enumerate() {
        flat.add(&format!("r{i}"), v).unwrap();
    }
    assert_eq!(flat.search_batch(&queries, k).unwrap(), on_codes, "FlatIndex");
    let scaled: Vec<f32> = queries[3].iter().map(|x| x * 2.0).collect();
    flat.add("new", &scaled).unwrap();
    let after = flat.search_batch(&queries, k).unwrap();
    assert_eq!(
        after[3][0].id, "new",
        "the row added after the codes were fitted is found"
    );
    let mut grown = base.clone();
    grown.push(scaled);
    assert_brute_force("FlatIndex after an add", &grown, &queries, &after, k);
}

#[test]
fn queries_the_codes_cannot_score_fall_back_to_the_f32_scan() {
    // Dimension 0 is zero in every row, so its code scale is 0: a query along
    // it alone has no integer weights at all (and ties with every row).
    let mut base = factor_model(33, 2_501, 384, 8);
    for v in &mut base {
        v[0] = 0.0;
    }
    let mut queries = factor_model(34, 70, 384, 8);
    let mut axis = vec![0.0f32; 384];
    axis[0] = 1.0;
    queries[5] = axis.clone();
    queries[40] = axis;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.stabidx");
    build(&path, &base, &BuildParams::default());
    let p = Partition::open(&path).unwrap();
    assert!(p.has_quantized());
    let got = p.search_batch(&queries, 10, None).unwrap();
    assert_brute_force("degenerate queries", &base, &queries, &got, 10);
    assert_eq!(got, p.search_batch_f32(&queries, 10).unwrap());
    for (i, q) in queries.iter().enumerate() {
        assert_eq!(p.search_exact(q, 10).unwrap(), got[i], "search_exact, query {i}");
    }
}
