//! Recall calibration: at build time, the recall@10 of the graph at a ladder
//! of search breadths, measured against an exact scan on a sample of the
//! partition's own rows, so that a query can ask for a recall rather than a
//! breadth.
//!
//! Each sampled row is a query *held out from being its own answer*: the row
//! itself is removed from the exact top-k, and the graph search treats it as
//! already seen (never scored, never expanded), so the query asks for its 10
//! nearest *other* rows without the shortcut of its own links (a row's own
//! vector would be a free hit at cosine 1, and its links lead straight to its
//! neighbours: either would make every breadth look better than it is on
//! queries from outside the partition).
//! Recall is tie-aware as in `stabspace bench` and `peer_ann.py`: a returned
//! row counts when its similarity is at least the k-th exact one minus 1e-6.
//!
//! Stored in the `CALIBRATION` section (`FORMAT.md`).

use rayon::prelude::*;

use crate::calibration::Calibration;
use crate::graph::Graph;
use crate::kernel;
use crate::quantize::Quantized;
use crate::rng::splitmix64;
use crate::search::{rerank_breadth, traverse, Visited};

/// Neighbours per query in the calibration.
pub const CALIBRATION_K: usize = 10;
/// Rows sampled as queries (2,000 query-neighbours: a recall of 0.95 is
/// measured to about ±0.005).
pub const CALIBRATION_SAMPLE: usize = 200;
/// An append smaller than this fraction of the rows calibrated keeps the
/// calibration it extends (recall at a breadth moves by less than the
/// measurement's own noise), so a small append does not pay for a new one.
pub const RECALIBRATE_AFTER: f64 = 0.10;
/// The recall targets reported and chosen from.
pub const RECALL_TARGETS: [f64; 4] = [0.90, 0.95, 0.98, 0.99];
/// Breadths measured, smallest first (steps of 1.33–1.6×); the ladder stops
/// at the first that reaches the highest target.
const LADDER: [usize; 15] = [
    10, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 2048,
];

/// Measure `graph` over its normalised `vectors`. Needs more than k + 1 rows.
/// The graph is searched as queries search it: on the quantised codes when
/// given, and the pool (as much of it as queries re-rank) re-ranked by the
/// exact (f32) similarity.
pub(crate) fn calibrate(
    graph: &Graph,
    vectors: &[f32],
    dim: usize,
    codes: Option<&Quantized>,
    seed: u64,
) -> Option<Calibration> {
    let n = graph.len();
    let k = CALIBRATION_K;
    if n <= k + 1 {
        return None;
    }
    let sample = sample_rows(n, CALIBRATION_SAMPLE.min(n), seed);
    let row = |r: usize| &vectors[r * dim..(r + 1) * dim];
    // Exact: the k-th best similarity among the other rows, per query, in
    // groups of eight queries per pass over the rows.
    let kth: Vec<f32> = sample
        .par_chunks(kernel::DOT8_QUERIES)
        .flat_map_iter(|group| {
            let mut tops: Vec<Vec<f32>> = vec![Vec::with_capacity(k + 1); group.len()];
            let full: [&[f32]; kernel::DOT8_QUERIES] =
                std::array::from_fn(|j| row(group[j.min(group.len() - 1)]));
            for (r, v) in vectors.chunks_exact(dim).enumerate() {
                let sims = kernel::dot8(v, &full);
                for (j, &q) in group.iter().enumerate() {
                    if r != q {
                        push_top(&mut tops[j], sims[j], k);
                    }
                }
            }
            tops.into_iter().map(|t| t[k - 1])
        })
        .collect();
    let view = graph.view(vectors, dim);
    let mut points = Vec::new();
    for &ef in LADDER.iter().take_while(|&&ef| ef < 2 * n) {
        let hits: usize = sample
            .par_iter()
            .zip(&kth)
            .map_init(
                || Visited::new(n),
                |visited, (&q, &kth)| {
                    visited.reset();
                    // Marked as seen, the row is neither scored nor expanded:
                    // its own links are no shortcut to its neighbours.
                    visited.insert(q as u32);
                    let pool = traverse(&view, codes.map(Quantized::view), row(q), ef.max(k + 1), visited)
                        .expect("a graph built here links only its own rows");
                    let mut exact: Vec<f32> = pool
                        .iter()
                        .take(rerank_breadth(codes.is_some(), k, pool.len()))
                        .filter(|s| s.1 as usize != q)
                        .map(|s| kernel::dot(row(q), row(s.1 as usize)))
                        .collect();
                    exact.sort_by(|a, b| b.total_cmp(a));
                    exact.iter().take(k).filter(|&&s| s >= kth - 1e-6).count()
                },
            )
            .sum();
        // Rounded to f32, as stored, so the stats and the file agree.
        let recall = f64::from((hits as f64 / (sample.len() * k) as f64) as f32);
        points.push((ef, recall));
        if recall >= RECALL_TARGETS[RECALL_TARGETS.len() - 1] || ef >= n {
            break;
        }
    }
    Some(Calibration {
        k,
        sample: sample.len(),
        rows: n,
        points,
    })
}

/// Keep the `k` largest values of a stream, descending.
fn push_top(top: &mut Vec<f32>, s: f32, k: usize) {
    if top.len() == k && s <= top[k - 1] {
        return;
    }
    let at = top.partition_point(|&x| x >= s);
    top.insert(at, s);
    top.truncate(k);
}

/// `count` distinct rows of `0..n`, spread evenly by a seeded stride.
fn sample_rows(n: usize, count: usize, seed: u64) -> Vec<usize> {
    let mut picked: Vec<usize> = Vec::with_capacity(count);
    let mut seen = std::collections::HashSet::with_capacity(count);
    let mut z = seed ^ 0xCA11_B8A7_E5EE_D000;
    while picked.len() < count {
        z = splitmix64(z);
        let r = (z % n as u64) as usize;
        if seen.insert(r) {
            picked.push(r);
        }
    }
    picked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_keeps_the_largest() {
        let mut t = Vec::new();
        for s in [0.1, 0.9, 0.5, 0.7, 0.3, 0.8] {
            push_top(&mut t, s, 3);
        }
        assert_eq!(t, vec![0.9, 0.8, 0.7]);
    }
}
