//! Filtered searches over rows with attribute columns: the plan
//! (`filter::plan`) picks an exact scan of the admitted rows or a graph
//! traversal in which filtered-out rows guide the search but only admitted
//! rows are results; a traversal that runs over the cost of the scan falls
//! back to the scan. `Partition::search_filtered` calls [`search_filtered`].

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::error::{IndexError, Result};
use crate::filter::{plan, AttrColumns, FilterPath, RowFilter, BUDGET_PERCENT};
use crate::graph::GraphView;
use crate::quantize::QuantizedView;
use crate::search::{
    descend, exact_among, expand, rerank, rerank_breadth, F32Score, Filtered, Hit, I8Score, Query, Rows,
    Score, Scored, TopK, Visited, EXACT_EXTRA,
};

/// Candidates an exact scan on the int8 codes re-ranks in f64 beyond k (the
/// int8 ranking puts the true top 10 within the best k + 32 in our
/// measurements, `rerank_breadth`; twice that for margin, at ~80 rows of re-rank).
const CODE_SCAN_EXTRA: usize = 2 * EXACT_EXTRA;

/// Approximate (or, with `ef = None`, exact) top-k among the rows `filter`
/// admits. `corrupt` names the file of a damaged graph.
#[allow(clippy::too_many_arguments)]
pub(crate) fn search_filtered<R: Rows + ?Sized>(
    rows: &R,
    graph: Option<GraphView<'_>>,
    codes: Option<QuantizedView<'_>>,
    cols: AttrColumns<'_>,
    q: &Query,
    k: usize,
    ef: Option<usize>,
    filter: &RowFilter,
    visited: &mut Visited,
    corrupt: &dyn Fn(String) -> IndexError,
) -> Result<Filtered> {
    let admitted = cols.count(filter);
    let k = k.min(admitted);
    let path = plan(rows.len(), admitted, ef, k, graph.is_some());
    let done = |hits| Filtered { hits, admitted, path };
    if k == 0 {
        return Ok(done(Vec::new()));
    }
    let ef_k = ef.map(|ef| ef.max(k));
    if let (FilterPath::Graph { .. }, Some(g), Some(ef)) = (path, &graph, ef_k) {
        let admit = |row: u32| cols.admits(filter, row);
        let budget = admitted.saturating_mul(BUDGET_PERCENT) / 100;
        let pool = traverse_filtered(g, codes, &q.unit, ef, budget, &admit, visited).map_err(corrupt)?;
        if let Some(pool) = pool {
            let take = rerank_breadth(codes.is_some(), k, pool.len());
            let kept: Vec<u32> = pool.iter().take(take).map(|s| s.1).collect();
            return Ok(done(rerank(rows, q, &kept, k)?));
        }
        // Over budget: the admitted rows are far from the query in the
        // graph (a filter correlated with the vectors); scan them instead.
    }
    let hits = match (ef, codes) {
        (Some(_), Some(codes)) => scan_codes(rows, codes, cols, filter, q, k)?,
        _ => exact_among(rows, q, &cols.admitted(filter), k)?,
    };
    Ok(Filtered {
        hits,
        admitted,
        path: FilterPath::Exact,
    })
}

/// Top-k among the admitted rows by the int8 codes (a quarter of the bytes
/// of the f32 vectors), the best k + [`CODE_SCAN_EXTRA`] re-ranked in f64.
fn scan_codes<R: Rows + ?Sized>(
    rows: &R,
    codes: QuantizedView<'_>,
    cols: AttrColumns<'_>,
    filter: &RowFilter,
    q: &Query,
    k: usize,
) -> Result<Vec<Hit>> {
    let s = I8Score::new(codes, &q.unit);
    let admitted = cols.admitted(filter);
    let mut top = TopK::new(k + CODE_SCAN_EXTRA);
    // Admitted rows are scattered: keep a few rows' loads in flight.
    const AHEAD: usize = 8;
    admitted.iter().take(AHEAD).for_each(|&r| s.prefetch(r));
    for (i, &row) in admitted.iter().enumerate() {
        if let Some(&next) = admitted.get(i + AHEAD) {
            s.prefetch(next);
        }
        top.push(Scored(s.score(row), row));
    }
    let kept: Vec<u32> = top.heap.into_iter().map(|r| r.0 .1).collect();
    rerank(rows, q, &kept, k)
}

/// [`hnsw_filtered`] on the quantised codes when given, else on the f32 vectors.
pub(crate) fn traverse_filtered(
    g: &GraphView<'_>,
    codes: Option<QuantizedView<'_>>,
    q: &[f32],
    ef: usize,
    budget: usize,
    admit: &dyn Fn(u32) -> bool,
    visited: &mut Visited,
) -> std::result::Result<Option<Vec<Scored>>, String> {
    match codes {
        Some(codes) => hnsw_filtered(g, &I8Score::new(codes, q), ef, budget, admit, visited),
        None => hnsw_filtered(
            g,
            &F32Score {
                q,
                vectors: g.vectors,
                dim: g.dim,
            },
            ef,
            budget,
            admit,
            visited,
        ),
    }
}

/// Filtered HNSW search: the greedy descent of `hnsw`, then a best-first
/// search of level 0 in which every row reached may guide the search but
/// only rows `admit` accepts enter the results (the best `ef`). A row is
/// followed while fewer than `ef` admitted rows are known or it beats the
/// worst of them, so the search widens by itself as admitted rows thin out
/// around the query (hnswlib's rule). With a filter that admits every row
/// it is `hnsw`. `None` once more than `budget` rows were scored.
pub(crate) fn hnsw_filtered<S: Score>(
    g: &GraphView<'_>,
    s: &S,
    ef: usize,
    budget: usize,
    admit: &dyn Fn(u32) -> bool,
    visited: &mut Visited,
) -> std::result::Result<Option<Vec<Scored>>, String> {
    let ef = ef.max(1);
    let (cur, cur_score) = descend(g, s)?;
    let mut fresh: Vec<u32> = Vec::with_capacity(g.m0);
    let mut candidates: BinaryHeap<Scored> = BinaryHeap::with_capacity(ef * 4);
    let mut results: BinaryHeap<Reverse<Scored>> = BinaryHeap::with_capacity(ef + 1);
    visited.insert(cur);
    candidates.push(Scored(cur_score, cur));
    if admit(cur) {
        results.push(Reverse(Scored(cur_score, cur)));
    }
    let mut scored = 0usize;
    while let Some(c) = candidates.pop() {
        if results.len() >= ef && c < results.peek().expect("non-empty").0 {
            break;
        }
        expand(g, s, c.1, candidates.peek().map(|n| n.1), visited, &mut fresh)?;
        scored += fresh.len();
        for &n in fresh.iter() {
            let sn = Scored(s.score(n), n);
            if results.len() < ef || sn > results.peek().expect("non-empty").0 {
                candidates.push(sn);
                if admit(n) {
                    results.push(Reverse(sn));
                    if results.len() > ef {
                        results.pop();
                    }
                }
            }
        }
        if scored > budget {
            return Ok(None);
        }
    }
    let mut pool: Vec<Scored> = results.into_iter().map(|r| r.0).collect();
    pool.sort_by(|a, b| b.cmp(a));
    Ok(Some(pool))
}
