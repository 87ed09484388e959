//! The exact batched scan: one pass over the rows' int8 codes per block of
//! queries, scored tile by tile by [`kernel::tile_u8_i16`] with the candidate
//! selection fused into the pass (no score matrix is stored), then every
//! candidate re-ranked in f64. The answer is provably the f64 answer: the
//! code scores carry a bound on their error, and only rows that the bound
//! proves are outside the top-k are left out.
//!
//! # The bound
//!
//! A row's normalised vector `x` and its codes `c` satisfy, per dimension,
//! `x[d] = offset[d] + scale[d]·c[d] + ε[d]` with `|ε[d]| ≤ scale[d]/2`
//! (`quantize.rs` rounds to the nearest code within the fitted range). For a
//! unit query `q`, with weights `w[d] = q[d]·scale[d]` rounded to integers
//! `W[d] = round(w[d]·F)` and `δ[d] = w[d] − W[d]/F`:
//!
//! `q·x = Σ q·offset + (Σ W·c)/F + 127.5·Σ δ + Σ δ·(c − 127.5) + Σ q·ε`.
//!
//! The first and third terms are the same for every row; the last two are at
//! most `E = 127.5·Σ|δ| + Σ|q|·scale/2` in magnitude. So with `A = (Σ W·c)/F`,
//! a row scores `q·x` within `E` of `A` plus a constant: any row whose `A` is
//! below the k-th best `A` by more than `2E` is beaten by k rows and cannot be
//! in the top-k. A slack of 1e-5 covers the f32 rounding of the query, of the
//! fit and of the re-rank's division by the stored norm. The scan keeps every
//! row within `2E` of the running k-th best (a lower bound of the final one),
//! then re-ranks those in f64 as [`rerank`] does.
//!
//! On 100,000 real-return scenario vectors (`scenario_vectors.py`, 1,000
//! queries) `E` is about 0.03 in cosine, and the window keeps a median of
//! about 35 rows per query (10 to 250) of the 100,000 for the re-rank.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rayon::prelude::*;

use crate::error::Result;
use crate::kernel::{self, TILE_QUERIES, TILE_ROWS};
use crate::quantize::QuantizedView;
use crate::search::{exact, exact_batch, rerank, Hit, Query, Rows};

/// Queries scanned together: each row's codes are read once per block.
pub(crate) const SCAN_BLOCK: usize = 8 * TILE_QUERIES;

/// Rows per stretch of the pass: a stretch's codes (24 KiB at 384
/// dimensions) stay in L1 while every query tile of the block goes over them.
const STRETCH: usize = 64;

/// Slack on the bound for the f32 roundings (see the module doc).
const SLACK: f64 = 1e-5;

/// Batches smaller than this scan the f32 vectors when the rows have no
/// codes of their own (fitting codes costs about two passes over the vectors;
/// partitions and flat indexes keep the codes they fit).
pub(crate) const FIT_CODES_FROM: usize = 64;

/// A query's integer weights and how far apart two code scores must be for
/// the lower to be provably lower in f64.
struct Weights {
    w: Vec<i16>,
    /// `2E·F`, rounded up, in the units of `Σ W·c`.
    margin: i64,
}

impl Weights {
    /// `None` when the query has no usable weights (all zero after scaling,
    /// or a damaged section's non-finite scales).
    fn new(codes: &QuantizedView<'_>, q: &[f32]) -> Option<Weights> {
        let dim = codes.dim;
        let w: Vec<f64> = q
            .iter()
            .zip(codes.scale)
            .map(|(&x, &s)| f64::from(x) * f64::from(s))
            .collect();
        let top = w.iter().fold(0f64, |a, x| a.max(x.abs()));
        if !(top.is_finite() && top > 0.0) || codes.scale.iter().any(|s| !(s.is_finite() && *s >= 0.0)) {
            return None;
        }
        // No sum of `dim` products of codes up to 255 overflows an i32.
        let limit = (i32::MAX as usize / (255 * dim.max(1))).min(i16::MAX as usize) as f64;
        let f = limit / top;
        let wi: Vec<i16> = w
            .iter()
            .map(|x| (x * f).round().clamp(-limit, limit) as i16)
            .collect();
        let rounding: f64 = w
            .iter()
            .zip(&wi)
            .map(|(x, &i)| (x - f64::from(i) / f).abs())
            .sum::<f64>()
            * 127.5;
        let coding: f64 = q
            .iter()
            .zip(codes.scale)
            .map(|(&x, &s)| f64::from(x).abs() * f64::from(s) * 0.5)
            .sum();
        let e = (rounding + coding) * (1.0 + 1e-6) + SLACK;
        Some(Weights {
            w: wi,
            margin: (2.0 * e * f).ceil() as i64,
        })
    }
}

/// The running selection of one query: the best k code scores seen so far
/// and every row within the margin of the k-th of them.
struct Selection {
    k: usize,
    margin: i64,
    best: BinaryHeap<Reverse<i32>>,
    /// Rows scoring below this are out: the k-th best so far less the margin.
    floor: i64,
    candidates: Vec<(i32, u32)>,
    /// Prune the candidates when they reach this many.
    prune_at: usize,
}

impl Selection {
    fn new(k: usize, margin: i64) -> Selection {
        Selection {
            k,
            margin,
            best: BinaryHeap::with_capacity(k + 1),
            floor: i64::MIN,
            candidates: Vec::new(),
            prune_at: 4 * k + 256,
        }
    }

    /// A score at or above the floor (the caller checked).
    #[inline(never)]
    fn admit(&mut self, s: i32, row: u32) {
        self.candidates.push((s, row));
        if self.best.len() < self.k {
            self.best.push(Reverse(s));
            if self.best.len() == self.k {
                self.floor = self.kth() - self.margin;
            }
        } else if s > self.best.peek().expect("k > 0").0 {
            self.best.pop();
            self.best.push(Reverse(s));
            self.floor = self.kth() - self.margin;
        }
        if self.candidates.len() >= self.prune_at {
            self.prune();
            self.prune_at = self.prune_at.max(2 * self.candidates.len());
        }
    }

    fn kth(&self) -> i64 {
        i64::from(self.best.peek().expect("k > 0").0)
    }

    fn prune(&mut self) {
        let floor = self.floor;
        self.candidates.retain(|c| i64::from(c.0) >= floor);
    }

    /// The rows that may be in the top-k.
    fn rows(mut self) -> Vec<u32> {
        self.prune();
        self.candidates.into_iter().map(|c| c.1).collect()
    }
}

/// Exact top-k of many queries (k at most the row count): on `codes` (the
/// rows' codes) when given, else (and for a query the codes cannot score) by
/// the f32 scan of [`exact_batch`].
pub(crate) fn exact_batch_coded<R: Rows + Sync + ?Sized>(
    rows: &R,
    codes: Option<QuantizedView<'_>>,
    queries: &[Query],
    k: usize,
) -> Result<Vec<Vec<Hit>>> {
    if k == 0 {
        return Ok(vec![Vec::new(); queries.len()]);
    }
    let Some(codes) = codes else {
        return exact_batch(rows, queries, k);
    };
    let blocks: Vec<Result<Vec<Vec<Hit>>>> = queries
        .par_chunks(SCAN_BLOCK)
        .map(|block| scan_block(rows, &codes, block, k))
        .collect();
    let mut out = Vec::with_capacity(queries.len());
    for b in blocks {
        out.extend(b?);
    }
    Ok(out)
}

/// Exact top-k of one query (k at most the row count) on `codes`: the same
/// bound, one row at a time, reading a quarter of the bytes of the f32 scan;
/// without codes, or for a query the codes cannot score, the f32 scan.
pub(crate) fn exact_one<R: Rows + ?Sized>(
    rows: &R,
    codes: Option<QuantizedView<'_>>,
    q: &Query,
    k: usize,
) -> Result<Vec<Hit>> {
    let (Some(codes), true) = (codes, k > 0) else {
        return exact(rows, q, k);
    };
    let Some(w) = Weights::new(&codes, &q.unit) else {
        return exact(rows, q, k);
    };
    let mut sel = Selection::new(k, w.margin);
    for (r, c) in codes.codes.chunks_exact(codes.dim).enumerate() {
        let v = kernel::dot_u8_i16(c, &w.w);
        if i64::from(v) >= sel.floor {
            sel.admit(v, r as u32);
        }
    }
    rerank(rows, q, &sel.rows(), k)
}

/// One block: a pass over the codes, then each query's candidates re-ranked.
fn scan_block<R: Rows + Sync + ?Sized>(
    rows: &R,
    codes: &QuantizedView<'_>,
    block: &[Query],
    k: usize,
) -> Result<Vec<Vec<Hit>>> {
    let weights: Vec<Option<Weights>> = block.iter().map(|q| Weights::new(codes, &q.unit)).collect();
    // Queries the codes cannot score go through the f32 scan.
    let (coded, plain): (Vec<usize>, Vec<usize>) = (0..block.len()).partition(|&i| weights[i].is_some());
    let mut out: Vec<Option<Vec<Hit>>> = vec![None; block.len()];
    if !plain.is_empty() {
        let qs: Vec<Query> = plain.iter().map(|&i| block[i].clone()).collect();
        for (i, hits) in plain.iter().zip(exact_batch(rows, &qs, k)?) {
            out[*i] = Some(hits);
        }
    }
    let ws: Vec<&Weights> = coded
        .iter()
        .map(|&i| weights[i].as_ref().expect("coded"))
        .collect();
    let selections = select(codes, &ws, k);
    for (&i, s) in coded.iter().zip(selections) {
        out[i] = Some(rerank(rows, &block[i], &s.rows(), k)?);
    }
    Ok(out
        .into_iter()
        .map(|h| h.expect("every query answered"))
        .collect())
}

/// The pass: every row's code score against every query, tile by tile, each
/// score compared with its query's floor as it is made.
fn select(codes: &QuantizedView<'_>, ws: &[&Weights], k: usize) -> Vec<Selection> {
    let dim = codes.dim;
    let n = codes.codes.len() / dim.max(1);
    let mut sel: Vec<Selection> = ws.iter().map(|w| Selection::new(k, w.margin)).collect();
    let zero = vec![0i16; dim];
    // Query tiles, the last padded with zero weights (their scores are ignored).
    let tiles: Vec<[&[i16]; TILE_QUERIES]> = ws
        .chunks(TILE_QUERIES)
        .map(|t| std::array::from_fn(|j| t.get(j).map_or(zero.as_slice(), |w| w.w.as_slice())))
        .collect();
    let whole = n / TILE_ROWS * TILE_ROWS;
    for start in (0..whole).step_by(STRETCH) {
        let end = (start + STRETCH).min(whole);
        for (t, tile) in tiles.iter().enumerate() {
            let first = t * TILE_QUERIES;
            let live = (ws.len() - first).min(TILE_QUERIES);
            let mut floors = [i64::MAX; TILE_QUERIES];
            for (j, f) in floors.iter_mut().enumerate().take(live) {
                *f = sel[first + j].floor;
            }
            for r in (start..end).step_by(TILE_ROWS) {
                let s = kernel::tile_u8_i16(&codes.codes[r * dim..(r + TILE_ROWS) * dim], dim, tile);
                for (i, row) in s.iter().enumerate() {
                    for (j, &v) in row.iter().enumerate() {
                        if i64::from(v) >= floors[j] {
                            let q = &mut sel[first + j];
                            q.admit(v, (r + i) as u32);
                            floors[j] = q.floor;
                        }
                    }
                }
            }
        }
    }
    // The last rows, fewer than a tile.
    for r in whole..n {
        let c = &codes.codes[r * dim..(r + 1) * dim];
        for (q, w) in sel.iter_mut().zip(ws) {
            let v = kernel::dot_u8_i16(c, &w.w);
            if i64::from(v) >= q.floor {
                q.admit(v, r as u32);
            }
        }
    }
    sel
}
