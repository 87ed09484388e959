//! Filtered-search benchmark: recall@10 against the exact filtered top-10 and
//! single-thread queries/s of `Partition::search_filtered`, per selectivity,
//! beside the unfiltered `search` at the same breadth (the numbers in the
//! doc comment of `filter::plan` and in `FORMAT.md`, section ATTRIBUTES).
//!
//!   cargo run --release -p stabspace-index --example filterbench -- \
//!       --base /work/bench-data/scen_100000.f32 --queries /work/bench-data/scen_q_1000.f32 \
//!       --dim 384 --index /tmp/filt.stabidx [--reuse] [--sel 1,10,50,100] [--ef 64,128]
//!
//! One file holds both key sets: `key` increases with row order (correlated
//! with the vectors when rows come in time order) and `value` is minus a
//! uniformly random day over 7,300 days (seeded), so `value_at_least = -(cut - 1)`
//! admits the rows whose uniform key is below `cut`. Without `--ef` the
//! breadth is the partition's calibrated `ef_for(0.95)`.

#[path = "common/flags.rs"]
mod flags;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use stabspace_index::vecfile::read_matrix;
use stabspace_index::{BuildParams, FilterPath, Partition, PartitionBuilder, RowAttrs, RowFilter};

const DAYS: i32 = 7_300;

fn args() -> HashMap<String, String> {
    flags::flags(std::env::args().skip(1))
}

fn list(f: &HashMap<String, String>, key: &str, default: &str) -> Vec<usize> {
    f.get(key)
        .map_or(default, String::as_str)
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect()
}

/// The smallest bound admitting at least `pct` % of `keys` (`key < bound`).
fn cut_at(keys: &[i32], pct: usize) -> i32 {
    let mut s = keys.to_vec();
    s.sort_unstable();
    let want = (s.len() * pct).div_ceil(100).clamp(1, s.len());
    s[want - 1] + 1
}

fn main() {
    let f = args();
    let dim = f.get("dim").and_then(|d| d.parse().ok());
    let base = read_matrix(f.get("base").expect("--base").as_ref(), dim).unwrap();
    let mut queries = read_matrix(f.get("queries").expect("--queries").as_ref(), Some(base.dim))
        .unwrap()
        .to_rows();
    if let Some(nq) = f.get("nq").and_then(|s| s.parse().ok()) {
        queries.truncate(nq);
    }
    let n = base.rows();
    let mut rng = ChaCha8Rng::seed_from_u64(20_261_207);
    let ordered: Vec<i32> = (0..n)
        .map(|r| (r as i64 * DAYS as i64 / n as i64) as i32)
        .collect();
    let uniform: Vec<i32> = (0..n).map(|_| rng.random_range(0..DAYS)).collect();
    let path = f
        .get("index")
        .map_or_else(|| std::env::temp_dir().join("filterbench.stabidx"), PathBuf::from);
    if !(f.contains_key("reuse") && path.exists()) {
        let t = Instant::now();
        let mut b = PartitionBuilder::with_capacity(base.dim, n).unwrap();
        for r in 0..n {
            let a = RowAttrs {
                key: ordered[r],
                tag: 0,
                value: -(uniform[r] as f32),
            };
            b.add_with(&r.to_string(), base.row(r), &[], a).unwrap();
        }
        b.write(&path, &BuildParams::default(), "{}", &mut |_, _| {})
            .unwrap();
        eprintln!("# build {:.1} s", t.elapsed().as_secs_f64());
    }
    let p = Partition::open(&path).unwrap();
    let cal = p.calibration().unwrap().expect("calibrated");
    eprintln!("# calibration {:?}", cal.points);
    let efs = match f.get("ef") {
        Some(_) => list(&f, "ef", ""),
        None => vec![cal.ef_for(0.95).expect("reaches 0.95")],
    };
    let sels = list(&f, "sel", "1,10,50,100");
    let k = 10;
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    println!("keys,sel,ef,admitted,graph_share,beam_mean,recall,qps,unfiltered_recall,unfiltered_qps,ratio");
    for &ef in &efs {
        // Unfiltered at the same breadth (recall against the unfiltered truth).
        let truth_all = p.search_batch(&queries, k, None).unwrap();
        let (ur, uqps) = one.install(|| {
            let t = Instant::now();
            let found: Vec<_> = queries.iter().map(|q| p.search(q, k, ef).unwrap()).collect();
            let qps = queries.len() as f64 / t.elapsed().as_secs_f64();
            (recall(&found, &truth_all, k), qps)
        });
        for (name, filter_of) in [
            (
                "correlated",
                Box::new(|pct| RowFilter {
                    key_below: Some(cut_at(&ordered, pct)),
                    ..RowFilter::default()
                }) as Box<dyn Fn(usize) -> RowFilter>,
            ),
            (
                "uniform",
                Box::new(|pct| RowFilter {
                    value_at_least: Some(-((cut_at(&uniform, pct) - 1) as f32)),
                    ..RowFilter::default()
                }),
            ),
        ] {
            for &sel in &sels {
                let filter = filter_of(sel);
                let filters = vec![filter.clone(); queries.len()];
                let truth: Vec<_> = p
                    .search_batch_filtered(&queries, &filters, k, None)
                    .unwrap()
                    .into_iter()
                    .map(|r| r.hits)
                    .collect();
                let (res, secs) = one.install(|| {
                    for q in queries.iter().take(10) {
                        p.search_filtered(q, k, Some(ef), &filter).unwrap();
                    }
                    let t = Instant::now();
                    let res: Vec<_> = queries
                        .iter()
                        .map(|q| p.search_filtered(q, k, Some(ef), &filter).unwrap())
                        .collect();
                    (res, t.elapsed().as_secs_f64())
                });
                let graph = res
                    .iter()
                    .filter(|r| matches!(r.path, FilterPath::Graph { .. }))
                    .count();
                let beam: usize = res
                    .iter()
                    .map(|r| match r.path {
                        FilterPath::Graph { beam } => beam,
                        FilterPath::Exact => 0,
                    })
                    .sum();
                let found: Vec<_> = res.iter().map(|r| r.hits.clone()).collect();
                let qps = queries.len() as f64 / secs;
                println!(
                    "{name},{sel},{ef},{},{:.2},{:.0},{:.4},{:.1},{:.4},{:.1},{:.2}",
                    res[0].admitted,
                    graph as f64 / res.len() as f64,
                    beam as f64 / graph.max(1) as f64,
                    recall(&found, &truth, k),
                    qps,
                    ur,
                    uqps,
                    qps / uqps
                );
            }
        }
    }
}

/// Tie-aware recall@k: a hit counts when its cosine is at least the k-th exact one minus 1e-6.
fn recall(found: &[Vec<stabspace_index::Hit>], truth: &[Vec<stabspace_index::Hit>], k: usize) -> f64 {
    let mut hits = 0;
    let mut want = 0;
    for (f, t) in found.iter().zip(truth) {
        let kth = t.last().map_or(f64::NEG_INFINITY, |h| h.cosine);
        hits += f.iter().take(k).filter(|h| h.cosine >= kth - 1e-6).count();
        want += t.len().min(k);
    }
    hits as f64 / want.max(1) as f64
}
