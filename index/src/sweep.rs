//! Recall and latency of a partition over a set of queries, per `ef`: the
//! measurement behind `stabspace bench`, in the columns of
//! `shared/bench/peer_ann.py` so the outputs can be concatenated.

use std::time::Instant;

use crate::error::Result;
use crate::filter::RowFilter;
use crate::kernel;
use crate::partition::Partition;
use crate::search::Hit;

/// Exact answers: per query, the top-k rows and the k-th cosine.
pub struct Truth {
    pub k: usize,
    pub rows: Vec<Vec<u32>>,
    pub kth: Vec<f64>,
}

/// One measured setting.
#[derive(Clone, Debug, PartialEq)]
pub struct SweepRow {
    /// `None` for the exact scan.
    pub ef: Option<usize>,
    pub recall: f64,
    /// Queries per second on one thread.
    pub qps: f64,
    /// Queries per second with the whole rayon pool.
    pub qps_all_threads: f64,
    pub p50_us: f64,
    pub p95_us: f64,
    pub p99_us: f64,
}

/// Exact top-k of every query (in parallel).
pub fn truth(p: &Partition, queries: &[Vec<f32>], k: usize) -> Result<Truth> {
    Ok(truth_of(k, p.search_batch(queries, k, None)?))
}

/// Exact top-k among the rows `filter` admits, for every query (in parallel).
pub fn truth_filtered(p: &Partition, queries: &[Vec<f32>], k: usize, filter: &RowFilter) -> Result<Truth> {
    let filters = vec![filter.clone(); queries.len()];
    let all = p.search_batch_filtered(queries, &filters, k, None)?;
    Ok(truth_of(k, all.into_iter().map(|f| f.hits).collect()))
}

fn truth_of(k: usize, all: Vec<Vec<Hit>>) -> Truth {
    Truth {
        k,
        kth: all
            .iter()
            .map(|h| h.last().map_or(f64::NEG_INFINITY, |h| h.cosine))
            .collect(),
        rows: all
            .into_iter()
            .map(|h| h.into_iter().map(|h| h.row).collect())
            .collect(),
    }
}

/// The query as an f64 unit vector.
fn unit64(q: &[f32]) -> Vec<f64> {
    let norm: f64 = q.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>().sqrt();
    q.iter().map(|&x| f64::from(x) / norm).collect()
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Measure one setting (`ef = None`: exact scan). Recall is tie-aware, as in
/// peer_ann.py: a returned row counts when its cosine is at least the k-th
/// exact cosine minus 1e-6.
pub fn measure(p: &Partition, queries: &[Vec<f32>], truth: &Truth, ef: Option<usize>) -> Result<SweepRow> {
    measure_filtered(p, queries, truth, ef, None)
}

/// [`measure`] of `Partition::search_filtered` with `filter` (`None`: of
/// `search`), against a [`truth_filtered`] with the same filter.
pub fn measure_filtered(
    p: &Partition,
    queries: &[Vec<f32>],
    truth: &Truth,
    ef: Option<usize>,
    filter: Option<&RowFilter>,
) -> Result<SweepRow> {
    let k = truth.k;
    let run = |q: &[f32]| match (filter, ef) {
        (Some(f), ef) => p.search_filtered(q, k, ef, f).map(|r| r.hits),
        (None, Some(ef)) => p.search(q, k, ef),
        (None, None) => p.search_exact(q, k),
    };
    // Warm-up: touch the pages and the visited pool.
    for q in queries.iter().take(10) {
        run(q)?;
    }
    let mut lat = Vec::with_capacity(queries.len());
    let mut found = Vec::with_capacity(queries.len());
    let started = Instant::now();
    for q in queries {
        let t = Instant::now();
        found.push(run(q)?);
        lat.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let single = started.elapsed().as_secs_f64();
    let hits: usize = queries
        .iter()
        .zip(&found)
        .enumerate()
        .map(|(i, (q, hits))| {
            let q64 = unit64(q);
            hits.iter()
                .filter(|h| kernel::dot_f64(p.vector(h.row as usize), &q64) >= truth.kth[i] - 1e-6)
                .count()
        })
        .sum();
    let started = Instant::now();
    match filter {
        Some(f) => {
            let filters = vec![f.clone(); queries.len()];
            p.search_batch_filtered(queries, &filters, k, ef)?;
        }
        None => {
            p.search_batch(queries, k, ef)?;
        }
    }
    let parallel = started.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    let n = queries.len().max(1) as f64;
    Ok(SweepRow {
        ef,
        // Out of the exact answers' rows (k each, unless a filter admits fewer).
        recall: hits as f64 / truth.rows.iter().map(Vec::len).sum::<usize>().max(1) as f64,
        qps: n / single.max(1e-12),
        qps_all_threads: n / parallel.max(1e-12),
        p50_us: percentile(&lat, 0.50),
        p95_us: percentile(&lat, 0.95),
        p99_us: percentile(&lat, 0.99),
    })
}

/// Recall@k of `Partition::search_batch` at breadth `ef` on `queries`
/// against `truth`, untimed: (strict, near), the strict one tie-aware as in
/// [`measure`], the near one counting hits within
/// [`crate::calibration::NEAR_COSINE`] of the exact k-th.
pub fn recall_at(p: &Partition, queries: &[Vec<f32>], truth: &Truth, ef: usize) -> Result<(f64, f64)> {
    let found = p.search_batch(queries, truth.k, Some(ef))?;
    let (mut strict, mut near) = (0usize, 0usize);
    for (i, (q, hits)) in queries.iter().zip(&found).enumerate() {
        let q64 = unit64(q);
        for h in hits {
            let s = kernel::dot_f64(p.vector(h.row as usize), &q64);
            strict += usize::from(s >= truth.kth[i] - crate::calibration::TIE_COSINE);
            near += usize::from(s >= truth.kth[i] - crate::calibration::NEAR_COSINE);
        }
    }
    let all = truth.rows.iter().map(Vec::len).sum::<usize>().max(1) as f64;
    Ok((strict as f64 / all, near as f64 / all))
}

/// The smallest breadth in `lo..=hi` whose strict [`recall_at`] reaches
/// `target`, by bisection (recall grows with the breadth, up to noise);
/// `None` when `hi` does not reach it.
pub fn smallest_ef(
    p: &Partition,
    queries: &[Vec<f32>],
    truth: &Truth,
    target: f64,
    lo: usize,
    hi: usize,
) -> Result<Option<usize>> {
    if recall_at(p, queries, truth, hi)?.0 < target {
        return Ok(None);
    }
    let (mut lo, mut hi) = (lo.max(truth.k), hi);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if recall_at(p, queries, truth, mid)?.0 >= target {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Ok(Some(lo))
}
