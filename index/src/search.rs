//! Searching: HNSW traversal of a graph view (mapped from a partition or in
//! memory), then an exact re-rank of the candidate pool in f64; or an exact
//! scan. Over any [`Rows`] (a partition, a [`FlatIndex`]); the partition's
//! search methods, which call these, are in `partition.rs`.
//!
//! [`FlatIndex`]: crate::FlatIndex

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use rayon::prelude::*;

use crate::error::{IndexError, Result};
use crate::graph::GraphView;
use crate::kernel;
use crate::quantize::QuantizedView;
use crate::vector::checked_norm;

/// One result: the row, its id, and its cosine similarity and Euclidean
/// distance to the query (on the vectors as given, not the normalised ones).
#[derive(Clone, Debug, PartialEq)]
pub struct Hit {
    pub row: u32,
    pub id: String,
    pub cosine: f64,
    pub euclidean: f64,
}

/// The answer of a filtered search.
#[derive(Clone, Debug, PartialEq)]
pub struct Filtered {
    /// The best admitted rows, best first.
    pub hits: Vec<Hit>,
    /// How many rows the filter admits.
    pub admitted: usize,
    /// How the rows were searched.
    pub path: crate::filter::FilterPath,
}

/// Rows seen during one search: one bit per row. A bit set keeps the marks
/// of 100,000 rows in 12.5 KB (L1), where u32 epoch marks took 400 KB and
/// missed the cache on most neighbour checks. Reset clears only the words
/// marked since the last one (a search touches a few thousand rows), or the
/// whole set when that is cheaper.
pub(crate) struct Visited {
    bits: Vec<u64>,
    /// Words that went from zero to non-zero since the last reset.
    touched: Vec<u32>,
}

impl Visited {
    pub(crate) fn new(n: usize) -> Self {
        Visited {
            bits: vec![0; n.div_ceil(64)],
            touched: Vec::new(),
        }
    }

    pub(crate) fn reset(&mut self) {
        if self.touched.len() * 16 < self.bits.len() {
            for &w in &self.touched {
                self.bits[w as usize] = 0;
            }
        } else {
            self.bits.fill(0);
        }
        self.touched.clear();
    }

    /// Whether a row is marked.
    #[inline]
    pub(crate) fn contains(&self, row: u32) -> bool {
        self.bits[(row / 64) as usize] & (1u64 << (row % 64)) != 0
    }

    /// Mark a row; true if it was not marked yet.
    #[inline]
    pub(crate) fn insert(&mut self, row: u32) -> bool {
        let (w, b) = ((row / 64) as usize, 1u64 << (row % 64));
        let word = &mut self.bits[w];
        if *word == 0 {
            self.touched.push(w as u32);
        }
        let fresh = *word & b == 0;
        *word |= b;
        fresh
    }
}

/// A similarity and a row, ordered by similarity then by row (lower row first on ties).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Scored(pub f32, pub u32);

impl Eq for Scored {}
impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0).then_with(|| other.1.cmp(&self.1))
    }
}

/// A validated query: normalised in f32 for the graph and in f64 for re-ranking.
#[derive(Clone)]
pub(crate) struct Query {
    pub(crate) unit: Vec<f32>,
    unit64: Vec<f64>,
    norm: f64,
}

/// What an exact scan and a re-rank read: normalised rows, their original
/// norms and their ids. A mapped partition and an in-memory [`FlatIndex`] both are.
///
/// [`FlatIndex`]: crate::FlatIndex
pub(crate) trait Rows {
    fn dim(&self) -> usize;
    fn len(&self) -> usize;
    /// Normalised vectors, row-major.
    fn vectors(&self) -> &[f32];
    /// Norms of the vectors as given.
    fn norms(&self) -> &[f64];
    fn id(&self, row: usize) -> Result<&str>;

    fn vector(&self, row: usize) -> &[f32] {
        &self.vectors()[row * self.dim()..(row + 1) * self.dim()]
    }
}

impl Query {
    pub(crate) fn new(dim: usize, q: &[f32]) -> Result<Query> {
        let norm = checked_norm(0, dim, q).map_err(|e| match e {
            IndexError::WrongDimension { got, expected, .. } => {
                IndexError::BadQuery(format!("{got} dimensions, the partition has {expected}"))
            }
            IndexError::NonFinite { component, value, .. } => {
                IndexError::BadQuery(format!("component {component} is {value}"))
            }
            _ => IndexError::BadQuery("all-zero vector".into()),
        })?;
        let unit64: Vec<f64> = q.iter().map(|&x| f64::from(x) / norm).collect();
        Ok(Query {
            unit: unit64.iter().map(|&x| x as f32).collect(),
            unit64,
            norm,
        })
    }
}

/// f32 values per 64-byte cache line.
pub(crate) const PREFETCH_STRIDE: usize = 16;
/// Cache lines of each neighbour's vector to prefetch (the hardware streamer follows).
pub(crate) const PREFETCH_LINES: usize = 4;

/// Extra candidates an exact scan keeps in f32 before re-ranking in f64, and
/// an int8 graph search re-ranks beyond k.
pub(crate) const EXACT_EXTRA: usize = 32;

/// How many of a graph search's pool (best first by the traversal's score) are
/// re-ranked exactly: all of it after f32 traversal; the best `k + 32` by
/// int8 score after int8 traversal. The int8 ranking is close enough that the
/// rest of the pool never held a top-k row in our measurements (recall@10
/// identical to re-ranking all ef rows at every ef from 32 to 512 on 100,000
/// real-return scenario vectors, and on text-like and clustered sets), while
/// re-ranking the whole pool read `ef` rows of 1,536 bytes from memory.
pub(crate) fn rerank_breadth(int8: bool, k: usize, pool: usize) -> usize {
    if int8 {
        (k + EXACT_EXTRA).min(pool)
    } else {
        pool
    }
}
/// Bound on the f32 kernel's error for unit vectors of the dimensions we use.
const F32_MARGIN: f32 = 1e-4;

/// How a graph search scores a row against the query: larger is nearer.
pub(crate) trait Score {
    fn score(&self, row: u32) -> f32;
    /// Start loading what [`Score::score`] will read for `row`.
    fn prefetch(&self, row: u32);
}

/// The f32 dot product with the normalised vectors.
pub(crate) struct F32Score<'a> {
    pub q: &'a [f32],
    pub vectors: &'a [f32],
    pub dim: usize,
}

impl Score for F32Score<'_> {
    #[inline]
    fn score(&self, row: u32) -> f32 {
        let r = row as usize;
        kernel::dot(self.q, &self.vectors[r * self.dim..(r + 1) * self.dim])
    }

    #[inline]
    fn prefetch(&self, row: u32) {
        let r = row as usize;
        let v = &self.vectors[r * self.dim..(r + 1) * self.dim];
        for line in v.chunks(PREFETCH_STRIDE).take(PREFETCH_LINES) {
            prefetch(&line[0]);
        }
    }
}

/// The quantised dot product (`quantize.rs`): a row's codes against the
/// query's i16 weights. Ranks rows as the dot product with the decoded
/// vectors does, less a constant per query.
pub(crate) struct I8Score<'a> {
    pub weights: Vec<i16>,
    pub codes: QuantizedView<'a>,
}

/// Cache lines of a row's codes to prefetch (384 codes are 6 lines).
const PREFETCH_CODE_LINES: usize = 8;

impl<'a> I8Score<'a> {
    pub(crate) fn new(codes: QuantizedView<'a>, q: &[f32]) -> Self {
        I8Score {
            weights: codes.weights(q),
            codes,
        }
    }
}

impl Score for I8Score<'_> {
    #[inline]
    fn score(&self, row: u32) -> f32 {
        kernel::dot_u8_i16(self.codes.row(row), &self.weights) as f32
    }

    #[inline]
    fn prefetch(&self, row: u32) {
        for line in self.codes.row(row).chunks(64).take(PREFETCH_CODE_LINES) {
            prefetch(&line[0]);
        }
    }
}

/// HNSW search on the quantised codes when given, else on the f32 vectors.
pub(crate) fn traverse(
    g: &GraphView<'_>,
    codes: Option<QuantizedView<'_>>,
    q: &[f32],
    ef: usize,
    visited: &mut Visited,
) -> std::result::Result<Vec<Scored>, String> {
    match codes {
        Some(codes) => hnsw(g, &I8Score::new(codes, q), ef, visited),
        None => hnsw(
            g,
            &F32Score {
                q,
                vectors: g.vectors,
                dim: g.dim,
            },
            ef,
            visited,
        ),
    }
}

/// The greedy descent through the upper levels: the level-0 entry row and its score.
pub(crate) fn descend<S: Score>(g: &GraphView<'_>, s: &S) -> std::result::Result<(u32, f32), String> {
    let mut cur = g.entry_point;
    check_row(g, cur)?;
    let mut cur_score = s.score(cur);
    for level in (1..=g.max_level as usize).rev() {
        loop {
            let mut improved = false;
            for &n in upper_neighbours(g, cur, level)? {
                check_row(g, n)?;
                let sn = s.score(n);
                if sn > cur_score || (sn == cur_score && n < cur) {
                    (cur, cur_score) = (n, sn);
                    improved = true;
                }
            }
            if !improved {
                break;
            }
        }
    }
    Ok((cur, cur_score))
}

/// HNSW search: greedy descent through the upper levels, then a beam search
/// of breadth `ef` on level 0, scoring rows with `s`. Returns the pool, best
/// first (by `s`). A link that points outside the graph is an error (the
/// reason), never a panic.
pub(crate) fn hnsw<S: Score>(
    g: &GraphView<'_>,
    s: &S,
    ef: usize,
    visited: &mut Visited,
) -> std::result::Result<Vec<Scored>, String> {
    let (cur, cur_score) = descend(g, s)?;

    let mut fresh: Vec<u32> = Vec::with_capacity(g.m0);
    let mut candidates: BinaryHeap<Scored> = BinaryHeap::with_capacity(ef * 2);
    let mut results: BinaryHeap<Reverse<Scored>> = BinaryHeap::with_capacity(ef + 1);
    visited.insert(cur);
    candidates.push(Scored(cur_score, cur));
    results.push(Reverse(Scored(cur_score, cur)));
    while let Some(c) = candidates.pop() {
        let worst = results.peek().expect("non-empty").0;
        if results.len() >= ef && c.0 < worst.0 {
            break;
        }
        expand(g, s, c.1, candidates.peek().map(|n| n.1), visited, &mut fresh)?;
        for &n in fresh.iter() {
            let sn = Scored(s.score(n), n);
            let worst = results.peek().expect("non-empty").0;
            if results.len() < ef || sn > worst {
                candidates.push(sn);
                results.push(Reverse(sn));
                if results.len() > ef {
                    results.pop();
                }
            }
        }
    }
    let mut pool: Vec<Scored> = results.into_iter().map(|r| r.0).collect();
    pool.sort_by(|a, b| b.cmp(a));
    Ok(pool)
}

/// Expand candidate `c` of a level-0 beam: its unvisited neighbours are
/// marked and collected in `fresh`, with what scoring them reads prefetched
/// so that the memory loads overlap. The likely next candidate's links, and
/// speculatively its unvisited neighbours (not marked: only their loads
/// start), are prefetched too, so that they arrive while this candidate's
/// are scored rather than after.
#[inline(always)]
pub(crate) fn expand<S: Score>(
    g: &GraphView<'_>,
    s: &S,
    c: u32,
    next: Option<u32>,
    visited: &mut Visited,
    fresh: &mut Vec<u32>,
) -> std::result::Result<(), String> {
    if let Some(next) = next {
        prefetch_links(g, next);
    }
    fresh.clear();
    for &n in level0_neighbours(g, c)? {
        check_row(g, n)?;
        if visited.insert(n) {
            s.prefetch(n);
            fresh.push(n);
        }
    }
    if let Some(next) = next {
        if let Ok(ns) = level0_neighbours(g, next) {
            for &n in ns {
                if (n as usize) < g.count && !visited.contains(n) {
                    s.prefetch(n);
                }
            }
        }
    }
    Ok(())
}

#[inline]
pub(crate) fn check_row(g: &GraphView<'_>, row: u32) -> std::result::Result<(), String> {
    if (row as usize) < g.count {
        Ok(())
    } else {
        Err(format!("neighbour row {row} of {} rows", g.count))
    }
}

/// Start loading a row's level-0 block (a hint: out-of-range rows are skipped).
#[inline]
pub(crate) fn prefetch_links(g: &GraphView<'_>, row: u32) {
    let stride = g.m0 + 1;
    if let Some(block) = g.level0.get(row as usize * stride..(row as usize + 1) * stride) {
        for line in block.chunks(PREFETCH_STRIDE) {
            prefetch(&line[0]);
        }
    }
}

pub(crate) fn level0_neighbours<'a>(g: &GraphView<'a>, row: u32) -> std::result::Result<&'a [u32], String> {
    let stride = g.m0 + 1;
    let block = &g.level0[row as usize * stride..(row as usize + 1) * stride];
    let deg = block[0] as usize;
    if deg > g.m0 {
        return Err(format!("row {row} has level-0 degree {deg} > {}", g.m0));
    }
    Ok(&block[1..=deg])
}

fn upper_neighbours<'a>(g: &GraphView<'a>, row: u32, level: usize) -> std::result::Result<&'a [u32], String> {
    let off = g.upper_index[row as usize];
    if off == u32::MAX {
        return Ok(&[]);
    }
    let bad = || format!("upper-level block of row {row} out of range");
    let off = off as usize;
    let top = *g.upper.get(off).ok_or_else(bad)? as usize;
    if level > top {
        return Ok(&[]);
    }
    let base = off + 1 + (level - 1) * (g.m + 1);
    let deg = *g.upper.get(base).ok_or_else(bad)? as usize;
    if deg > g.m {
        return Err(bad());
    }
    g.upper.get(base + 1..base + 1 + deg).ok_or_else(bad)
}

#[inline(always)]
pub(crate) fn prefetch<T>(x: &T) {
    #[cfg(target_arch = "x86_64")]
    kernel::x86::prefetch(x as *const T);
    #[cfg(not(target_arch = "x86_64"))]
    let _ = x;
}

/// Queries scanned together by [`exact_batch`]: each row is read from memory
/// once per block and dotted with every query of the block (eight at a time,
/// [`kernel::dot8`]) while it is in L1. 16 unit queries of 384 f32 are 24 KiB,
/// within L1 beside the row. Measured on 19,160 queries against 100,000 rows
/// on 2 threads: one query at a time 97 s; blocks of 16: 21 s; 32 or 64: 27 s
/// (the block no longer fits in L1).
pub(crate) const EXACT_BLOCK: usize = 16;

/// The best `keep` rows of one query by f32 score, with the current floor
/// cached so that most rows cost one comparison.
pub(crate) struct TopK {
    pub(crate) keep: usize,
    pub(crate) heap: BinaryHeap<Reverse<Scored>>,
    pub(crate) floor: Option<Scored>,
}

impl TopK {
    pub(crate) fn new(keep: usize) -> TopK {
        TopK {
            keep,
            heap: BinaryHeap::with_capacity(keep + 1),
            floor: None,
        }
    }

    #[inline]
    pub(crate) fn push(&mut self, s: Scored) {
        match self.floor {
            Some(floor) if s <= floor => {}
            Some(_) => {
                self.heap.pop();
                self.heap.push(Reverse(s));
                self.floor = self.heap.peek().map(|r| r.0);
            }
            None => {
                self.heap.push(Reverse(s));
                if self.heap.len() == self.keep {
                    self.floor = self.heap.peek().map(|r| r.0);
                }
            }
        }
    }
}

/// Exact top-k of one query: an f32 scan keeping k + 32 candidates, re-ranked in f64.
pub(crate) fn exact<R: Rows + ?Sized>(rows: &R, q: &Query, k: usize) -> Result<Vec<Hit>> {
    let top = scan(rows, std::slice::from_ref(q), k + EXACT_EXTRA)
        .pop()
        .expect("one query in, one out");
    finish(rows, q, top, k)
}

/// Exact top-k of many queries: blocks of [`EXACT_BLOCK`] queries scanned
/// together, blocks spread over the rayon pool. The same answers as [`exact`]
/// query by query.
pub(crate) fn exact_batch<R: Rows + Sync + ?Sized>(
    rows: &R,
    queries: &[Query],
    k: usize,
) -> Result<Vec<Vec<Hit>>> {
    let blocks: Vec<Result<Vec<Vec<Hit>>>> = queries
        .par_chunks(EXACT_BLOCK)
        .map(|block| {
            scan(rows, block, k + EXACT_EXTRA)
                .into_iter()
                .zip(block)
                .map(|(top, q)| finish(rows, q, top, k))
                .collect()
        })
        .collect();
    let mut out = Vec::with_capacity(queries.len());
    for b in blocks {
        out.extend(b?);
    }
    Ok(out)
}

/// One pass over the rows for a block of queries: the best `keep` of each by
/// f32. Groups of eight queries go through the multi-query kernel.
fn scan<R: Rows + ?Sized>(rows: &R, block: &[Query], keep: usize) -> Vec<TopK> {
    const G: usize = kernel::DOT8_QUERIES;
    let mut tops: Vec<TopK> = block.iter().map(|_| TopK::new(keep)).collect();
    let groups: Vec<[&[f32]; G]> = block
        .chunks_exact(G)
        .map(|g| std::array::from_fn(|j| g[j].unit.as_slice()))
        .collect();
    let rest = &block[groups.len() * G..];
    for (row, v) in rows.vectors().chunks_exact(rows.dim()).enumerate() {
        let row = row as u32;
        for (g, qs) in groups.iter().enumerate() {
            for (j, s) in kernel::dot8(v, qs).into_iter().enumerate() {
                tops[g * G + j].push(Scored(s, row));
            }
        }
        for (q, top) in rest.iter().zip(&mut tops[groups.len() * G..]) {
            top.push(Scored(kernel::dot(&q.unit, v), row));
        }
    }
    tops
}

/// Exact top-k of one query among `subset` (rows in any order): an f32 pass
/// over those rows keeping k + 32, re-ranked in f64, with the fallback of
/// [`exact`] (every row of the subset re-ranked) when the f32 floor is too close.
pub(crate) fn exact_among<R: Rows + ?Sized>(
    src: &R,
    q: &Query,
    subset: &[u32],
    k: usize,
) -> Result<Vec<Hit>> {
    let keep = k + EXACT_EXTRA;
    if subset.len() <= keep {
        return rerank(src, q, subset, k);
    }
    let mut top = TopK::new(keep);
    for &row in subset {
        top.push(Scored(kernel::dot(&q.unit, src.vector(row as usize)), row));
    }
    let floor = top.floor.map(|s| s.0);
    let kept: Vec<u32> = top.heap.into_iter().map(|r| r.0 .1).collect();
    let hits = rerank(src, q, &kept, k)?;
    match (floor, hits.last()) {
        (Some(floor), Some(kth)) if f64::from(floor + F32_MARGIN) >= kth.cosine => rerank(src, q, subset, k),
        _ => Ok(hits),
    }
}

/// Re-rank a query's f32 candidates in f64; exact unless a row left out in
/// f32 could still beat the k-th in f64, in which case every row is re-ranked.
fn finish<R: Rows + ?Sized>(rows: &R, q: &Query, top: TopK, k: usize) -> Result<Vec<Hit>> {
    let floor = top.floor.map(|s| s.0);
    let full = top.heap.len() == top.keep && rows.len() > top.keep;
    let kept: Vec<u32> = top.heap.into_iter().map(|r| r.0 .1).collect();
    let hits = rerank(rows, q, &kept, k)?;
    match (full, floor, hits.last()) {
        (true, Some(floor), Some(kth)) if f64::from(floor + F32_MARGIN) >= kth.cosine => {
            let all: Vec<u32> = (0..rows.len() as u32).collect();
            rerank(rows, q, &all, k)
        }
        _ => Ok(hits),
    }
}

/// Exact cosines (f64) of `rows`, best k by cosine then row.
pub(crate) fn rerank<R: Rows + ?Sized>(src: &R, q: &Query, rows: &[u32], k: usize) -> Result<Vec<Hit>> {
    let norms = src.norms();
    // Divide by the f64 norm of the stored f32 unit vector (1 ± 1e-7), so the
    // identical vector scores 1.0 rather than 1.00000002.
    // The pool's rows are scattered: keep a few rows' loads in flight.
    const AHEAD: usize = 4;
    let ahead = |r: u32| {
        for line in src
            .vector(r as usize)
            .chunks(PREFETCH_STRIDE)
            .take(PREFETCH_LINES)
        {
            prefetch(&line[0]);
        }
    };
    rows.iter().take(AHEAD).for_each(|&r| ahead(r));
    let mut scored: Vec<(f64, u32)> = rows
        .iter()
        .enumerate()
        .map(|(i, &r)| {
            if let Some(&next) = rows.get(i + AHEAD) {
                ahead(next);
            }
            let (dot, n2) = kernel::dot_and_norm_f64(src.vector(r as usize), &q.unit64);
            ((dot / n2.sqrt()).clamp(-1.0, 1.0), r)
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.truncate(k);
    scored
        .into_iter()
        .map(|(cosine, row)| {
            let vn = norms[row as usize];
            let d2 = q.norm * q.norm + vn * vn - 2.0 * q.norm * vn * cosine;
            Ok(Hit {
                row,
                id: src.id(row as usize)?.to_string(),
                cosine,
                euclidean: d2.max(0.0).sqrt(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::Visited;

    #[test]
    fn visited_marks_once_and_forgets_everything_on_reset() {
        let mut v = Visited::new(10_000);
        for round in 0..3 {
            // Few rows (cleared word by word), then most rows (cleared whole).
            let rows: Vec<u32> = if round == 1 {
                (0..10_000).step_by(3).collect()
            } else {
                vec![0, 63, 64, 9_999, 5_000, 64]
            };
            for (i, &r) in rows.iter().enumerate() {
                let first = !rows[..i].contains(&r);
                assert_eq!(v.insert(r), first, "round {round} row {r}");
                assert!(v.contains(r));
            }
            v.reset();
            assert!(
                (0..10_000).all(|r| !v.contains(r)),
                "round {round}: reset forgets"
            );
        }
    }
}
