//! Recall calibration: the recall@10 of a graph at a ladder of search
//! breadths, measured against an exact scan, so that a query can ask for a
//! recall rather than a breadth. Two kinds of query are measured:
//!
//! - **Held-out rows** ([`calibrate`]): a sample of the partition's own rows,
//!   each *held out from being its own answer*: the row is removed from the
//!   exact top-k, and the graph search treats it as already seen (never
//!   scored, never expanded), so the query asks for its 10 nearest *other*
//!   rows without the shortcut of its own links. Every graph has this one.
//! - **Given queries** ([`calibrate_on`]): vectors the caller passes, the
//!   kind of query users send (stabspace gives the most recent instrument
//!   states of the joint model). They sit elsewhere in the space than the
//!   rows (in generated markets a state needs twice the breadth of a
//!   scenario row for the same recall, or a twentieth of it where the
//!   scenarios are crowded), so when a file has this calibration queries
//!   take their breadth from it.
//!
//! Both record the strict recall (a returned row counts when its similarity
//! is at least the exact k-th minus [`TIE_COSINE`], float rounding) and the
//! near recall (within [`NEAR_COSINE`] of the exact k-th). The ladder is
//! refined: between the last breadth that missed a target and the first
//! that met it, the midpoint is measured too, so the breadth chosen for a
//! target is within about 1.25× of the smallest that meets it on the sample.
//!
//! Stored in the `CALIBRATION` and `CALIBRATIONS` sections (`FORMAT.md`).

use rayon::prelude::*;

use crate::calibration::{Calibration, CalibrationQueries, NEAR_COSINE, TIE_COSINE};
use crate::graph::GraphView;
use crate::kernel;
use crate::quantize::QuantizedView;
use crate::rng::splitmix64;
use crate::search::{rerank_breadth, traverse, Visited};

/// Neighbours per query in the calibration.
pub const CALIBRATION_K: usize = 10;
/// Rows sampled as held-out queries (2,000 query-neighbours: a recall of
/// 0.95 is measured to about ±0.005).
pub const CALIBRATION_SAMPLE: usize = 200;
/// Given queries measured at most (a larger set is sampled down to this).
pub const CALIBRATION_QUERIES: usize = 500;
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

/// One query of a calibration: its vector, and the row held out from being
/// its own answer (a sampled row), if any.
struct Probe<'a> {
    q: &'a [f32],
    held_out: Option<u32>,
}

/// Measure the graph on a sample of its own rows, held out. Needs more than
/// k + 1 rows. The graph is searched as queries search it: on the quantised
/// codes when given, and the pool (as much of it as queries re-rank)
/// re-ranked by the exact (f32) similarity.
pub(crate) fn calibrate(
    view: &GraphView<'_>,
    codes: Option<QuantizedView<'_>>,
    seed: u64,
) -> Option<Calibration> {
    let n = view.count;
    if n <= CALIBRATION_K + 1 {
        return None;
    }
    let dim = view.dim;
    let probes: Vec<Probe<'_>> = sample_rows(n, CALIBRATION_SAMPLE.min(n), seed)
        .into_iter()
        .map(|r| Probe {
            q: &view.vectors[r * dim..(r + 1) * dim],
            held_out: Some(r as u32),
        })
        .collect();
    Some(measure(view, codes, &probes, CalibrationQueries::HeldOutRows))
}

/// Measure the graph on `queries` (normalised, row-major; at most
/// [`CALIBRATION_QUERIES`] of them are used, a seeded sample of a larger
/// set). `None` with no query or a graph of k + 1 rows or fewer.
pub(crate) fn calibrate_on(
    view: &GraphView<'_>,
    codes: Option<QuantizedView<'_>>,
    queries: &[f32],
    seed: u64,
) -> Option<Calibration> {
    let dim = view.dim;
    let count = queries.len() / dim;
    if count == 0 || view.count <= CALIBRATION_K + 1 {
        return None;
    }
    let mut picked = sample_rows(count, CALIBRATION_QUERIES.min(count), seed ^ 0x9E37_79B9);
    picked.sort_unstable();
    let probes: Vec<Probe<'_>> = picked
        .into_iter()
        .map(|i| Probe {
            q: &queries[i * dim..(i + 1) * dim],
            held_out: None,
        })
        .collect();
    Some(measure(view, codes, &probes, CalibrationQueries::Given))
}

fn measure(
    view: &GraphView<'_>,
    codes: Option<QuantizedView<'_>>,
    probes: &[Probe<'_>],
    queries: CalibrationQueries,
) -> Calibration {
    let (n, dim, k) = (view.count, view.dim, CALIBRATION_K);
    let row = |r: usize| &view.vectors[r * dim..(r + 1) * dim];
    // Exact: the k-th best similarity among the rows (the held-out row
    // excluded), per query, in groups of eight queries per pass over the rows.
    let kth: Vec<f32> = probes
        .par_chunks(kernel::DOT8_QUERIES)
        .flat_map_iter(|group| {
            let mut tops: Vec<Vec<f32>> = vec![Vec::with_capacity(k + 1); group.len()];
            let full: [&[f32]; kernel::DOT8_QUERIES] =
                std::array::from_fn(|j| group[j.min(group.len() - 1)].q);
            for (r, v) in view.vectors.chunks_exact(dim).enumerate() {
                let sims = kernel::dot8(v, &full);
                for (j, p) in group.iter().enumerate() {
                    if p.held_out != Some(r as u32) {
                        push_top(&mut tops[j], sims[j], k);
                    }
                }
            }
            tops.into_iter().map(|t| t[t.len().min(k) - 1])
        })
        .collect();
    // (strict, near) recall at breadth `ef`, rounded to f32 as stored, so
    // the stats and the file agree.
    let at = |ef: usize| -> (f64, f64) {
        let (strict, near) = probes
            .par_iter()
            .zip(&kth)
            .map_init(
                || Visited::new(n),
                |visited, (p, &kth)| {
                    visited.reset();
                    if let Some(r) = p.held_out {
                        // Marked as seen, the row is neither scored nor
                        // expanded: its own links are no shortcut to its neighbours.
                        visited.insert(r);
                    }
                    let pool = traverse(view, codes, p.q, ef.max(k + 1), visited)
                        .expect("a graph built or opened here links only its own rows");
                    let mut exact: Vec<f32> = pool
                        .iter()
                        .take(rerank_breadth(codes.is_some(), k, pool.len()))
                        .filter(|s| Some(s.1) != p.held_out)
                        .map(|s| kernel::dot(p.q, row(s.1 as usize)))
                        .collect();
                    exact.sort_by(|a, b| b.total_cmp(a));
                    let top = &exact[..k.min(exact.len())];
                    let count = |tol: f64| {
                        top.iter()
                            .filter(|&&s| f64::from(s) >= f64::from(kth) - tol)
                            .count()
                    };
                    (count(TIE_COSINE), count(NEAR_COSINE))
                },
            )
            .reduce(|| (0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        let share = |hits: usize| f64::from((hits as f64 / (probes.len() * k) as f64) as f32);
        (share(strict), share(near))
    };
    let mut points: Vec<(usize, (f64, f64))> = Vec::new();
    let top_target = RECALL_TARGETS[RECALL_TARGETS.len() - 1];
    for &ef in LADDER.iter().take_while(|&&ef| ef < 2 * n) {
        let r = at(ef);
        points.push((ef, r));
        if r.0 >= top_target || ef >= n {
            break;
        }
    }
    // Refine: the midpoint below each breadth that first meets a target.
    for t in RECALL_TARGETS {
        let Some(i) = points.iter().position(|p| p.1 .0 >= t) else {
            continue;
        };
        if i == 0 {
            continue;
        }
        let (lo, hi) = (points[i - 1].0, points[i].0);
        let mid = (lo + hi) / 2;
        if mid > lo && mid < hi && !points.iter().any(|p| p.0 == mid) {
            let r = at(mid);
            points.insert(i, (mid, r));
        }
    }
    Calibration {
        queries,
        k,
        sample: probes.len(),
        rows: n,
        near: points.iter().map(|p| p.1 .1).collect(),
        points: points.into_iter().map(|(ef, r)| (ef, r.0)).collect(),
    }
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
