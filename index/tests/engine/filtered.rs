//! Filtered search: the `ATTRIBUTES` section, exactness of the filtered scan,
//! filtered recall@10 at the calibrated breadth for 0.95 against a brute-force
//! ranking of the admitted rows, appends, and the in-memory index.

use std::path::Path;

use rand::Rng;
use stabspace_index::{
    BuildParams, FilterPath, FlatIndex, IndexError, Partition, PartitionBuilder, RowAttrs, RowFilter,
};

use crate::common::{build, clustered, cos64, factor_model, gaussian, rng};

const SEED: u64 = 20_261_207;

/// Days a key ranges over (20 years).
const DAYS: i32 = 7_300;

/// `n` normalised vectors around `clusters` centres, generated cluster by
/// cluster (rows of one cluster are consecutive), so that a key increasing
/// with row order is correlated with the vectors.
fn clustered_in_order(seed: u64, n: usize, dim: usize, clusters: usize, spread: f32) -> Vec<Vec<f32>> {
    let mut r = rng(seed);
    let unit = |mut v: Vec<f32>| {
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= norm);
        v
    };
    let centres: Vec<Vec<f32>> = (0..clusters).map(|_| unit(gaussian(&mut r, dim))).collect();
    (0..n)
        .map(|i| {
            let c = &centres[i * clusters / n];
            let noise = gaussian(&mut r, dim);
            unit(
                c.iter()
                    .zip(&noise)
                    .map(|(a, z)| a + spread * z / (dim as f32).sqrt())
                    .collect(),
            )
        })
        .collect()
}

/// Uniformly random days, seeded; tags 0..8; values in [0, 1).
fn random_attrs(seed: u64, n: usize) -> Vec<RowAttrs> {
    let mut r = rng(seed);
    (0..n)
        .map(|_| RowAttrs {
            key: r.random_range(0..DAYS),
            tag: r.random_range(0..8),
            value: r.random::<f32>(),
        })
        .collect()
}

/// Days increasing with row order.
fn ordered_attrs(n: usize) -> Vec<RowAttrs> {
    (0..n)
        .map(|i| RowAttrs {
            key: (i as i64 * DAYS as i64 / n as i64) as i32,
            tag: (i % 8) as u32,
            value: i as f32 / n as f32,
        })
        .collect()
}

/// The smallest bound admitting at least `pct` % of the rows (`key < bound`).
fn key_cut(attrs: &[RowAttrs], pct: usize) -> i32 {
    let mut keys: Vec<i32> = attrs.iter().map(|a| a.key).collect();
    keys.sort_unstable();
    let want = (keys.len() * pct).div_ceil(100).clamp(1, keys.len());
    keys[want - 1] + 1
}

fn build_with(path: &Path, base: &[Vec<f32>], attrs: &[RowAttrs], params: &BuildParams) {
    let mut b = PartitionBuilder::with_capacity(base[0].len(), base.len()).unwrap();
    for (i, (v, a)) in base.iter().zip(attrs).enumerate() {
        b.add_with(&format!("r{i}"), v, &(i as u32).to_le_bytes(), *a)
            .unwrap();
    }
    b.write(path, params, r#"{"test":true}"#, &mut |_, _| {}).unwrap();
}

/// Exact top-k among the admitted rows in f64: (row, cosine), ties by row.
fn brute_filtered(
    base: &[Vec<f32>],
    attrs: &[RowAttrs],
    f: &RowFilter,
    q: &[f32],
    k: usize,
) -> Vec<(u32, f64)> {
    let mut all: Vec<(u32, f64)> = base
        .iter()
        .enumerate()
        .filter(|(i, _)| f.admits(&attrs[*i]))
        .map(|(i, v)| (i as u32, cos64(q, v)))
        .collect();
    all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    all.truncate(k);
    all
}

fn params() -> BuildParams {
    BuildParams {
        seed: SEED,
        flat_threshold: 0,
        ..BuildParams::default()
    }
}

#[test]
fn attributes_round_trip_and_a_file_without_them_refuses_filtered_search() {
    let base = clustered(SEED, 3_000, 32, 20, 0.4);
    let attrs = random_attrs(SEED, base.len());
    let dir = tempfile::tempdir().unwrap();
    let (with, without) = (dir.path().join("with"), dir.path().join("without"));
    build_with(&with, &base, &attrs, &params());
    build(&without, &base, &params());

    let p = Partition::open(&with).unwrap();
    assert!(p.has_attrs());
    for (row, a) in attrs.iter().enumerate() {
        assert_eq!(p.attrs(row), Some(*a), "row {row}");
    }
    assert_eq!(p.attrs(base.len()), None);

    let p = Partition::open(&without).unwrap();
    assert!(!p.has_attrs());
    assert_eq!(p.attrs(0), None);
    for ef in [None, Some(64)] {
        let f = RowFilter {
            key_below: Some(100),
            ..RowFilter::default()
        };
        match p.search_filtered(&base[0], 10, ef, &f) {
            Err(IndexError::NoAttributes { .. }) => {}
            other => panic!("ef {ef:?}: expected NoAttributes, got {other:?}"),
        }
    }
}

#[test]
fn filtered_search_returns_only_admitted_rows_and_exactly_the_brute_force_ones_at_ef_none() {
    let all = clustered(SEED + 1, 6_050, 48, 40, 0.4);
    let (base, queries) = all.split_at(6_000);
    let attrs = random_attrs(SEED + 1, base.len());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p");
    build_with(&path, base, &attrs, &params());
    let p = Partition::open(&path).unwrap();
    let filters = [
        RowFilter::default(),
        RowFilter {
            key_below: Some(key_cut(&attrs, 1)),
            ..RowFilter::default()
        },
        RowFilter {
            key_below: Some(key_cut(&attrs, 30)),
            ..RowFilter::default()
        },
        RowFilter {
            tags: Some(vec![1, 5]),
            value_at_least: Some(0.5),
            ..RowFilter::default()
        },
        RowFilter {
            key_below: Some(key_cut(&attrs, 90)),
            tags: Some(vec![0, 1, 2, 3, 4, 5, 6]),
            value_at_least: Some(0.1),
        },
        // Admits nothing.
        RowFilter {
            tags: Some(vec![]),
            ..RowFilter::default()
        },
    ];
    for (fi, f) in filters.iter().enumerate() {
        let admitted = attrs.iter().filter(|a| f.admits(a)).count();
        for q in queries {
            let want = brute_filtered(base, &attrs, f, q, 10);
            let exact = p.search_filtered(q, 10, None, f).unwrap();
            assert_eq!(exact.admitted, admitted, "filter {fi}");
            assert_eq!(exact.path, FilterPath::Exact, "filter {fi}");
            let got: Vec<u32> = exact.hits.iter().map(|h| h.row).collect();
            let want_rows: Vec<u32> = want.iter().map(|w| w.0).collect();
            assert_eq!(got, want_rows, "filter {fi}");
            for (h, w) in exact.hits.iter().zip(&want) {
                assert!(
                    (h.cosine - w.1).abs() < 1e-7,
                    "filter {fi}: {} vs {}",
                    h.cosine,
                    w.1
                );
                assert_eq!(h.id, format!("r{}", h.row));
            }
            for ef in [10, 64, 256] {
                let approx = p.search_filtered(q, 10, Some(ef), f).unwrap();
                assert_eq!(approx.admitted, admitted);
                assert_eq!(approx.hits.len(), admitted.min(10), "filter {fi} ef {ef}");
                for h in &approx.hits {
                    assert!(
                        f.admits(&attrs[h.row as usize]),
                        "filter {fi} ef {ef}: row {} not admitted",
                        h.row
                    );
                }
            }
        }
    }
}

/// Filtered recall@10 (tie-aware) at `ef` over `queries`, per selectivity;
/// also the share of queries that went through the graph.
fn filtered_recall(
    p: &Partition,
    base: &[Vec<f32>],
    attrs: &[RowAttrs],
    queries: &[Vec<f32>],
    pct: usize,
    ef: usize,
) -> (f64, f64) {
    let f = RowFilter {
        key_below: Some(key_cut(attrs, pct)),
        ..RowFilter::default()
    };
    let (mut hits, mut want, mut graph) = (0, 0, 0);
    for q in queries {
        let truth = brute_filtered(base, attrs, &f, q, 10);
        let kth = truth.last().unwrap().1;
        let found = p.search_filtered(q, 10, Some(ef), &f).unwrap();
        graph += usize::from(matches!(found.path, FilterPath::Graph { .. }));
        assert_eq!(found.hits.len(), truth.len());
        want += truth.len();
        hits += found
            .hits
            .iter()
            .filter(|h| f.admits(&attrs[h.row as usize]) && cos64(q, &base[h.row as usize]) >= kth - 1e-6)
            .count();
    }
    (hits as f64 / want as f64, graph as f64 / queries.len() as f64)
}

fn recall_at_every_selectivity(name: &str, base: &[Vec<f32>], queries: &[Vec<f32>], attrs: &[RowAttrs]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p");
    build_with(&path, base, attrs, &params());
    let p = Partition::open(&path).unwrap();
    let ef = p.calibration().unwrap().unwrap().ef_for(0.95).unwrap();
    for pct in [1, 10, 50, 100] {
        let (r, graph) = filtered_recall(&p, base, attrs, queries, pct, ef);
        println!("{name}: {pct}% admitted, ef {ef}: recall@10 {r:.4}, graph share {graph:.2}");
        if pct >= 50 {
            // The traversal, not only the scan, is what is measured here.
            assert!(graph > 0.5, "{name}: {pct}% admitted: graph share {graph:.2}");
        }
        assert!(
            r >= 0.95,
            "{name}: {pct}% admitted, ef {ef}: recall@10 {r:.4} < 0.95 (seed {SEED})"
        );
    }
}

#[test]
fn filtered_recall_reaches_0_95_at_the_calibrated_breadth_with_uncorrelated_keys() {
    let all = factor_model(SEED + 2, 20_200, 64, 32);
    let (base, queries) = all.split_at(20_000);
    recall_at_every_selectivity(
        "factor model, random keys",
        base,
        queries,
        &random_attrs(SEED + 2, base.len()),
    );
}

#[test]
fn filtered_recall_reaches_0_95_at_the_calibrated_breadth_with_keys_in_cluster_order() {
    // Rows come cluster by cluster and keys increase with row order: a
    // query's nearest clusters are often entirely filtered out.
    let all = clustered_in_order(SEED + 3, 20_200, 64, 100, 0.6);
    // Every 101st row is a query (200 of them); the rest stay in cluster order.
    let (mut base, mut queries) = (Vec::new(), Vec::new());
    for (i, v) in all.into_iter().enumerate() {
        if i % 101 == 50 {
            queries.push(v);
        } else {
            base.push(v);
        }
    }
    recall_at_every_selectivity(
        "clusters in key order",
        &base,
        &queries,
        &ordered_attrs(base.len()),
    );
}

#[test]
fn an_append_keeps_the_old_rows_attributes() {
    let all = clustered(SEED + 5, 3_500, 32, 20, 0.4);
    let (first, more) = all.split_at(3_000);
    let attrs = random_attrs(SEED + 5, all.len());
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    build_with(&a, first, &attrs[..3_000], &params());
    let p = Partition::open(&a).unwrap();
    let mut builder = PartitionBuilder::extending(&p, more.len()).unwrap();
    drop(p);
    for (i, v) in more.iter().enumerate() {
        let row = 3_000 + i;
        builder
            .add_with(&format!("r{row}"), v, &(row as u32).to_le_bytes(), attrs[row])
            .unwrap();
    }
    let stats = builder
        .write(&b, &params(), r#"{"test":true}"#, &mut |_, _| {})
        .unwrap();
    assert_eq!(stats.appended, Some(more.len()));
    let p = Partition::open(&b).unwrap();
    assert!(p.has_attrs());
    for (row, want) in attrs.iter().enumerate() {
        assert_eq!(p.attrs(row), Some(*want), "row {row}");
    }
    let f = RowFilter {
        key_below: Some(key_cut(&attrs, 20)),
        ..RowFilter::default()
    };
    for q in all.iter().step_by(97) {
        let want: Vec<u32> = brute_filtered(&all, &attrs, &f, q, 10)
            .iter()
            .map(|w| w.0)
            .collect();
        let got: Vec<u32> = p
            .search_filtered(q, 10, None, &f)
            .unwrap()
            .hits
            .iter()
            .map(|h| h.row)
            .collect();
        assert_eq!(got, want);
    }
}

#[test]
fn flat_index_filtered_search_equals_brute_force() {
    let all = clustered(SEED + 6, 2_020, 24, 10, 0.5);
    let (base, queries) = all.split_at(2_000);
    let mut attrs = random_attrs(SEED + 6, base.len());
    let mut flat = FlatIndex::new(24).unwrap();
    for (i, v) in base.iter().enumerate() {
        // Every tenth row without attributes: only an empty filter admits it.
        if i % 10 == 0 {
            attrs[i] = RowAttrs::NONE;
            flat.add(&format!("r{i}"), v).unwrap();
        } else {
            flat.add_with(&format!("r{i}"), v, attrs[i]).unwrap();
        }
        let (got, want) = (flat.attrs_of(i), attrs[i]);
        assert_eq!(
            (got.key, got.tag, got.value.to_bits()),
            (want.key, want.tag, want.value.to_bits())
        );
    }
    let filters = [
        RowFilter::default(),
        RowFilter {
            key_below: Some(key_cut(&attrs, 5)),
            ..RowFilter::default()
        },
        RowFilter {
            key_below: Some(DAYS),
            tags: Some(vec![2]),
            value_at_least: Some(0.25),
        },
    ];
    for (fi, f) in filters.iter().enumerate() {
        let admitted = attrs.iter().filter(|a| f.admits(a)).count();
        if fi > 0 {
            assert!(
                admitted < base.len() * 9 / 10,
                "filter {fi} excludes the rows without attributes"
            );
        }
        for q in queries {
            let want = brute_filtered(base, &attrs, f, q, 10);
            let got = flat.search_filtered(q, 10, f).unwrap();
            assert_eq!(got.admitted, admitted, "filter {fi}");
            assert_eq!(got.path, FilterPath::Exact);
            let rows: Vec<(u32, String)> = got.hits.iter().map(|h| (h.row, h.id.clone())).collect();
            let want_rows: Vec<(u32, String)> = want.iter().map(|w| (w.0, format!("r{}", w.0))).collect();
            assert_eq!(rows, want_rows, "filter {fi}");
            for (h, w) in got.hits.iter().zip(&want) {
                assert!((h.cosine - w.1).abs() < 1e-7);
            }
        }
    }
}
