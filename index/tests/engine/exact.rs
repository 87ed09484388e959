//! Exactness of the exact scan and of the re-ranking, build validation,
//! ids and payloads, determinism.

use stabspace_index::{BuildParams, IndexError, Partition, PartitionBuilder};

use crate::common::{brute_force, build, cos64, iid};

fn euclid64(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
        .sum::<f64>()
        .sqrt()
}

#[test]
fn search_exact_equals_f64_brute_force_and_reranked_scores_match() {
    let all = iid(7, 3_050, 384);
    let (base, queries) = all.split_at(3_000);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.stabidx");
    build(
        &path,
        base,
        &BuildParams {
            seed: 7,
            flat_threshold: 0,
            ..BuildParams::default()
        },
    );
    let p = Partition::open(&path).unwrap();
    assert!(p.has_graph());
    for q in queries {
        let truth = brute_force(base, q, 10);
        let exact = p.search_exact(q, 10).unwrap();
        let rows: Vec<u32> = exact.iter().map(|h| h.row).collect();
        let truth_rows: Vec<u32> = truth.iter().map(|t| t.0).collect();
        assert_eq!(rows, truth_rows);
        for (h, t) in exact.iter().zip(&truth) {
            assert!((h.cosine - t.1).abs() < 1e-6, "{} vs {}", h.cosine, t.1);
            let e = euclid64(q, &base[h.row as usize]);
            assert!(
                (h.euclidean - e).abs() < 1e-6 * e.max(1.0),
                "{} vs {e}",
                h.euclidean
            );
            assert_eq!(h.id, format!("r{}", h.row));
        }
        // The graph's answers carry exact scores too, sorted by cosine then row.
        let approx = p.search(q, 10, 128).unwrap();
        for h in &approx {
            assert!((h.cosine - cos64(q, &base[h.row as usize])).abs() < 1e-6);
        }
        assert!(approx
            .windows(2)
            .all(|w| w[0].cosine > w[1].cosine || (w[0].cosine == w[1].cosine && w[0].row < w[1].row)));
    }
    let batch = p.search_batch(queries, 10, Some(128)).unwrap();
    for (q, hits) in queries.iter().zip(&batch) {
        assert_eq!(hits, &p.search(q, 10, 128).unwrap());
    }
}

#[test]
fn batched_exact_scans_answer_as_one_query_at_a_time_with_ties_and_a_partial_block() {
    // Every vector twice (exact ties in f32 and f64), 37 queries: two full
    // blocks of 16 and a partial one; one query is a base vector itself.
    let mut base = iid(11, 1_200, 384);
    base.extend(base.clone());
    let mut queries = iid(12, 36, 384);
    queries.push(base[5].clone());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.stabidx");
    // No graph: the exact paths do not use it, and the build would be the test's cost.
    build(
        &path,
        &base,
        &BuildParams {
            flat_threshold: usize::MAX,
            ..BuildParams::default()
        },
    );
    let p = Partition::open(&path).unwrap();
    assert!(!p.has_graph());
    let batch = p.search_batch(&queries, 10, None).unwrap();
    assert_eq!(
        batch,
        p.search_batch(&queries, 10, Some(64)).unwrap(),
        "flat: ef is moot"
    );
    assert_eq!(batch.len(), queries.len());
    let mut flat = stabspace_index::FlatIndex::new(384).unwrap();
    for (i, v) in base.iter().enumerate() {
        flat.add(&format!("r{i}"), v).unwrap();
    }
    let flat_batch = flat.search_batch(&queries, 10).unwrap();
    for ((q, hits), flat_hits) in queries.iter().zip(&batch).zip(&flat_batch) {
        let one = p.search_exact(q, 10).unwrap();
        assert_eq!(hits, &one);
        assert_eq!(flat_hits, &one);
        let truth: Vec<u32> = brute_force(&base, q, 10).iter().map(|t| t.0).collect();
        assert_eq!(hits.iter().map(|h| h.row).collect::<Vec<_>>(), truth);
    }
    // The query equal to row 5 finds it and its duplicate first, lower row first.
    let last = batch.last().unwrap();
    assert_eq!((last[0].row, last[1].row), (5, 1_205));
    assert!((last[0].cosine - 1.0).abs() < 1e-12);
    // Bad queries are refused as a whole; k = 0 gives empty answers.
    assert!(p.search_batch(&[vec![0.0; 384]], 10, None).is_err());
    assert!(p
        .search_batch(&queries, 0, None)
        .unwrap()
        .iter()
        .all(Vec::is_empty));
}

#[test]
fn small_partitions_are_flat_and_exact() {
    let all = iid(11, 520, 64);
    let (base, queries) = all.split_at(500);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flat.stabidx");
    let stats = build(&path, base, &BuildParams::default());
    assert!(!stats.graph, "500 rows is below the flat threshold");
    let p = Partition::open(&path).unwrap();
    assert!(!p.has_graph());
    for q in queries {
        let rows: Vec<u32> = p.search(q, 5, 16).unwrap().iter().map(|h| h.row).collect();
        let truth: Vec<u32> = brute_force(base, q, 5).iter().map(|t| t.0).collect();
        assert_eq!(rows, truth);
    }
}

#[test]
fn bad_rows_and_queries_are_structured_errors() {
    let mut b = PartitionBuilder::new(3).unwrap();
    b.add("ok", &[1.0, 2.0, 3.0], b"").unwrap();
    assert!(matches!(
        b.add("x", &[1.0, 2.0], b""),
        Err(IndexError::WrongDimension {
            row: 1,
            expected: 3,
            got: 2
        })
    ));
    assert!(matches!(
        b.add("x", &[1.0, f32::NAN, 0.0], b""),
        Err(IndexError::NonFinite {
            row: 1,
            component: 1,
            ..
        })
    ));
    assert!(matches!(
        b.add("x", &[f32::INFINITY, 0.0, 0.0], b""),
        Err(IndexError::NonFinite { component: 0, .. })
    ));
    assert!(matches!(
        b.add("x", &[0.0, 0.0, 0.0], b""),
        Err(IndexError::ZeroVector { row: 1 })
    ));
    assert_eq!(b.len(), 1, "rejected rows are not added");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.stabidx");
    b.write(&path, &BuildParams::default(), "{}", &mut |_, _| {})
        .unwrap();
    let p = Partition::open(&path).unwrap();
    assert!(matches!(
        p.search(&[1.0, 0.0], 1, 8),
        Err(IndexError::BadQuery(_))
    ));
    assert!(matches!(
        p.search(&[0.0, 0.0, 0.0], 1, 8),
        Err(IndexError::BadQuery(_))
    ));
    assert!(matches!(
        p.search_exact(&[f32::NAN, 0.0, 0.0], 1),
        Err(IndexError::BadQuery(_))
    ));
    assert!(p.search(&[1.0, 0.0, 0.0], 0, 8).unwrap().is_empty());
}

#[test]
fn ids_payloads_and_provenance_round_trip() {
    let mut b = PartitionBuilder::new(2).unwrap();
    b.add("SCN_001", &[3.0, 4.0], b"2020-03-23").unwrap();
    b.add("", &[0.0, 2.0], b"").unwrap();
    b.add("scénario ✓", &[-1.0, 0.5], &[0, 255, 7]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.stabidx");
    let provenance = r#"{"model_id":"joint-stab-fragility-v1","rows":3}"#;
    b.write(&path, &BuildParams::default(), provenance, &mut |_, _| {})
        .unwrap();
    let p = Partition::open(&path).unwrap();
    assert_eq!(p.len(), 3);
    assert_eq!(
        (p.id(0).unwrap(), p.payload(0).unwrap()),
        ("SCN_001", &b"2020-03-23"[..])
    );
    assert_eq!((p.id(1).unwrap(), p.payload(1).unwrap()), ("", &b""[..]));
    assert_eq!(
        (p.id(2).unwrap(), p.payload(2).unwrap()),
        ("scénario ✓", &[0u8, 255, 7][..])
    );
    assert_eq!(p.provenance().unwrap(), provenance);
    assert_eq!(p.norms()[0], 5.0);
    let hit = &p.search(&[3.0, 4.0], 1, 8).unwrap()[0];
    assert_eq!(hit.id, "SCN_001");
    assert!(hit.cosine <= 1.0 && 1.0 - hit.cosine < 1e-12, "{}", hit.cosine);
    assert!(hit.euclidean.abs() < 1e-6, "{}", hit.euclidean);
    p.verify().unwrap();
}

#[test]
fn deterministic_builds_are_byte_identical() {
    let base = iid(5, 2_500, 32);
    let dir = tempfile::tempdir().unwrap();
    let params = BuildParams {
        deterministic: true,
        seed: 42,
        flat_threshold: 0,
        ..BuildParams::default()
    };
    let (a, b, c) = (dir.path().join("a"), dir.path().join("b"), dir.path().join("c"));
    build(&a, &base, &params);
    build(&b, &base, &params);
    build(&c, &base, &BuildParams { seed: 43, ..params });
    let (a, b, c) = (
        std::fs::read(a).unwrap(),
        std::fs::read(b).unwrap(),
        std::fs::read(c).unwrap(),
    );
    assert_eq!(a, b, "same input, same seed: same bytes");
    assert_ne!(a, c, "another seed gives another graph");
}

#[test]
fn an_empty_partition_answers_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.stabidx");
    PartitionBuilder::new(4)
        .unwrap()
        .write(&path, &BuildParams::default(), "{}", &mut |_, _| {})
        .unwrap();
    let p = Partition::open(&path).unwrap();
    assert!(p.is_empty());
    assert!(p.search(&[1.0, 0.0, 0.0, 0.0], 3, 8).unwrap().is_empty());
    p.verify().unwrap();
}

/// `k` and `ef` far above the row count (a user's `--top-k 100000000000`)
/// are clamped to it: every row comes back, best first, and nothing tries to
/// allocate room for usize::MAX candidates.
#[test]
fn k_and_ef_of_usize_max_return_every_row_on_graph_and_flat_partitions() {
    let all = iid(13, 305, 16);
    let (base, queries) = all.split_at(300);
    let every: Vec<u32> = (0..base.len() as u32).collect();
    let rows = |h: &[stabspace_index::Hit]| h.iter().map(|h| h.row).collect::<Vec<u32>>();
    // Every row once, by cosine descending.
    let all_rows_best_first = |h: &[stabspace_index::Hit], what: &str| {
        let mut sorted = rows(h);
        sorted.sort_unstable();
        assert_eq!(sorted, every, "{what}");
        assert!(h.windows(2).all(|w| w[0].cosine >= w[1].cosine), "{what}");
    };
    let dir = tempfile::tempdir().unwrap();
    for (name, flat_threshold) in [("graph", 0), ("flat", usize::MAX)] {
        let path = dir.path().join(format!("{name}.stabidx"));
        let params = BuildParams {
            m: 8,
            ef_construction: 32,
            flat_threshold,
            ..BuildParams::default()
        };
        let stats = build(&path, base, &params);
        assert_eq!(stats.graph, name == "graph");
        let p = Partition::open(&path).unwrap();
        for q in queries {
            let exact = p.search_exact(q, usize::MAX).unwrap();
            all_rows_best_first(&exact, &format!("{name}: exact, k usize::MAX"));
            for (k, ef) in [
                (usize::MAX, usize::MAX),
                (100_000_000_000, 100_000_000_000),
                (usize::MAX, 1),
            ] {
                let what = format!("{name}: k {k} ef {ef}");
                let got = p.search(q, k, ef).unwrap();
                all_rows_best_first(&got, &what);
                assert_eq!(rows(&got), rows(&exact), "{what}");
            }
        }
        for ef in [Some(usize::MAX), None] {
            let batch = p.search_batch(queries, usize::MAX, ef).unwrap();
            assert_eq!(batch.len(), queries.len());
            for h in &batch {
                all_rows_best_first(h, &format!("{name}: batch, ef {ef:?}"));
            }
        }
    }
}
