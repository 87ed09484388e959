//! An adaptive stop for the level-0 beam, measured against the fixed
//! calibrated breadth (issue #27, part 3) by `examples/adaptive.rs`; queries
//! do not use it (the measurement, in [`Partition::search_patience`], did
//! not pay).
//!
//! The rule ("patience", after Teofili & Lin, 2025): search with a large
//! breadth `ef_max`, and stop as soon as `patience` candidates in a row were
//! expanded without changing the best `k` found. Easy queries (their top-k
//! settles fast) stop early; hard ones run on towards `ef_max`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::error::Result;
use crate::graph::GraphView;
use crate::partition::Partition;
use crate::search::{
    descend, expand, rerank, rerank_breadth, F32Score, Hit, I8Score, Query, Score, Scored, Visited,
};

/// The beam of [`crate::search::hnsw`], stopped by patience as well: the
/// pool best first, and the number of rows scored.
fn beam<S: Score>(
    g: &GraphView<'_>,
    s: &S,
    k: usize,
    ef_max: usize,
    patience: usize,
    visited: &mut Visited,
) -> std::result::Result<(Vec<Scored>, usize), String> {
    let (cur, cur_score) = descend(g, s)?;
    let mut scored = 1usize;
    let mut fresh: Vec<u32> = Vec::with_capacity(g.m0);
    let mut candidates: BinaryHeap<Scored> = BinaryHeap::with_capacity(ef_max * 2);
    let mut results: BinaryHeap<Reverse<Scored>> = BinaryHeap::with_capacity(ef_max + 1);
    // The k best scores found, ascending: [0] is the k-th.
    let mut top: Vec<f32> = vec![cur_score];
    let mut calm = 0usize;
    visited.insert(cur);
    candidates.push(Scored(cur_score, cur));
    results.push(Reverse(Scored(cur_score, cur)));
    while let Some(c) = candidates.pop() {
        let worst = results.peek().expect("non-empty").0;
        if results.len() >= ef_max && c.0 < worst.0 {
            break;
        }
        if top.len() >= k && calm >= patience {
            break;
        }
        expand(g, s, c.1, candidates.peek().map(|n| n.1), visited, &mut fresh)?;
        let mut changed = false;
        for &n in fresh.iter() {
            let sn = Scored(s.score(n), n);
            scored += 1;
            if top.len() < k || sn.0 > top[0] {
                let at = top.partition_point(|&x| x < sn.0);
                top.insert(at, sn.0);
                if top.len() > k {
                    top.remove(0);
                }
                changed = true;
            }
            let worst = results.peek().expect("non-empty").0;
            if results.len() < ef_max || sn > worst {
                candidates.push(sn);
                results.push(Reverse(sn));
                if results.len() > ef_max {
                    results.pop();
                }
            }
        }
        calm = if changed { 0 } else { calm + 1 };
    }
    let mut pool: Vec<Scored> = results.into_iter().map(|r| r.0).collect();
    pool.sort_by(|a, b| b.cmp(a));
    Ok((pool, scored))
}

impl Partition {
    /// Approximate top-k with the patience stop (see the module): the beam
    /// of breadth at most `ef_max` stops once `patience` expansions in a row
    /// left the best `k` unchanged; re-ranked as [`Partition::search`] does.
    /// Also returns the rows scored. Experimental: for the measurement in
    /// `examples/adaptive.rs`.
    ///
    /// Measured 2026-12-07, int8 traversal, rows scored per query at equal
    /// strict recall@10 (interpolated on the fixed breadths' curve):
    ///
    /// - 100,000 real-return scenario vectors (`scenario_vectors.py`), 500
    ///   of its queries: 10–18% fewer than the fixed breadth (0.941 at 3,257
    ///   rows against about 3,900; 0.962 at 4,929 against 5,505; 0.971 at
    ///   5,433 against 6,630).
    /// - The 288 last-day states of a generated market (seed 5, v3, 30,000
    ///   Monte Carlo scenarios), the queries users send: 0–6% (0.944 at 542
    ///   rows against 544; 0.981 at 781 against 829; 0.993 at 1,101 against
    ///   1,101).
    ///
    /// It does not pay on the users' queries, so queries keep the fixed
    /// calibrated breadth.
    #[doc(hidden)]
    pub fn search_patience(
        &self,
        query: &[f32],
        k: usize,
        ef_max: usize,
        patience: usize,
    ) -> Result<(Vec<Hit>, usize)> {
        let q = Query::new(self.dim(), query)?;
        let g = self.graph().expect("a graph");
        let k = k.min(self.len());
        let run = |v: &mut Visited| match self.traversal_codes() {
            Some(codes) => beam(&g, &I8Score::new(codes, &q.unit), k, ef_max, patience, v),
            None => beam(
                &g,
                &F32Score {
                    q: &q.unit,
                    vectors: g.vectors,
                    dim: g.dim,
                },
                k,
                ef_max,
                patience,
                v,
            ),
        };
        let (pool, scored) = self.with_visited(|v| run(v).map_err(|r| self.corrupt(r)))?;
        let rows: Vec<u32> = pool
            .iter()
            .take(rerank_breadth(self.traversal_codes().is_some(), k, pool.len()))
            .map(|s| s.1)
            .collect();
        Ok((rerank(self, &q, &rows, k)?, scored))
    }
}
