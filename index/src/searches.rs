//! The partition's searches: by the graph (HNSW, then an exact re-rank),
//! exact (one query, or a batch on the codes by `scan.rs`), and filtered.

use rayon::prelude::*;

use crate::error::{IndexError, Result};
use crate::filter::{FilterPath, RowFilter};
use crate::graph::GraphView;
use crate::partition::Partition;
use crate::scan::{exact_batch_coded, exact_one};
use crate::search::{
    exact, exact_batch, rerank, rerank_breadth, traverse, Filtered, Hit, Query, Scored, Visited,
};

impl Partition {
    /// Approximate top-k: HNSW search with breadth `ef` (at least k), then the
    /// candidate pool re-ranked exactly. Flat partitions answer exactly.
    /// Sorted by cosine, descending; ties by row. `k` and `ef` above the row
    /// count mean every row: they are clamped to it before anything is
    /// allocated, and a breadth of every row is an exact scan.
    pub fn search(&self, query: &[f32], k: usize, ef: usize) -> Result<Vec<Hit>> {
        let (k, ef) = (k.min(self.len()), ef.min(self.len()));
        let q = Query::new(self.dim(), query)?;
        if k == 0 || self.is_empty() {
            return Ok(Vec::new());
        }
        let Some(g) = self.graph() else {
            return exact(self, &q, k);
        };
        // A breadth of every row costs what a scan costs; the scan also
        // reaches any row the graph does not link to.
        if ef.max(k) >= self.len() {
            return exact_one(self, self.codes(), &q, k);
        }
        let pool = self.with_visited(|v| self.hnsw(&g, &q.unit, ef.max(k), v))?;
        let rows: Vec<u32> = pool
            .iter()
            .take(rerank_breadth(self.traversal_codes().is_some(), k, pool.len()))
            .map(|s| s.1)
            .collect();
        rerank(self, &q, &rows, k)
    }

    /// Exact top-k by scanning every row (the reference the graph is measured
    /// against): on the codes with the bound of `scan.rs` when the file has
    /// them, else on the f32 vectors; re-ranked in f64 either way. `k` is
    /// clamped to the row count.
    pub fn search_exact(&self, query: &[f32], k: usize) -> Result<Vec<Hit>> {
        let k = k.min(self.len());
        let q = Query::new(self.dim(), query)?;
        if k == 0 || self.is_empty() {
            return Ok(Vec::new());
        }
        exact_one(self, self.codes(), &q, k)
    }

    /// Many queries at once, spread over the rayon thread pool. `ef = None`
    /// (or a partition without a graph) scans exactly, in blocks of queries
    /// that share each pass over the rows. `k` and `ef` are clamped to the row count.
    pub fn search_batch(&self, queries: &[Vec<f32>], k: usize, ef: Option<usize>) -> Result<Vec<Vec<Hit>>> {
        let (k, ef) = (k.min(self.len()), ef.map(|ef| ef.min(self.len())));
        match ef {
            Some(ef) if self.has_graph() => queries.par_iter().map(|q| self.search(q, k, ef)).collect(),
            _ => {
                let qs = self.queries(queries)?;
                if k == 0 || self.is_empty() {
                    return Ok(vec![Vec::new(); qs.len()]);
                }
                exact_batch_coded(self, self.scan_codes(qs.len()), &qs, k)
            }
        }
    }

    /// The f32 batched exact scan (blocks of 16 queries, eight at a time
    /// through the f32 kernel) that [`search_batch`](Self::search_batch) ran
    /// before the scan on the codes: for benchmarks and tests comparing the two.
    #[doc(hidden)]
    pub fn search_batch_f32(&self, queries: &[Vec<f32>], k: usize) -> Result<Vec<Vec<Hit>>> {
        let k = k.min(self.len());
        let qs = self.queries(queries)?;
        if k == 0 || self.is_empty() {
            return Ok(vec![Vec::new(); qs.len()]);
        }
        exact_batch(self, &qs, k)
    }

    /// Every query checked and normalised (the first bad one is the error).
    fn queries(&self, queries: &[Vec<f32>]) -> Result<Vec<Query>> {
        queries.iter().map(|q| Query::new(self.dim(), q)).collect()
    }

    /// HNSW search over this partition's graph (on the quantised codes when
    /// the partition has them and quantised traversal is on), mapping a damaged link to a
    /// [`IndexError::Corrupt`] naming the file.
    fn hnsw(&self, g: &GraphView<'_>, q: &[f32], ef: usize, visited: &mut Visited) -> Result<Vec<Scored>> {
        traverse(g, self.traversal_codes(), q, ef, visited).map_err(|reason| self.corrupt(reason))
    }

    /// Approximate top-k among the rows `filter` admits, re-ranked exactly:
    /// the graph traversed until it holds the best `ef` admitted rows it can
    /// reach (filtered-out rows guide it but are never returned), or, when
    /// few rows are admitted or the traversal runs over the cost of a scan,
    /// those rows scanned (on the int8 codes when the partition has them,
    /// the best re-ranked in f64); the rule is `filter::plan`'s. `ef = None`
    /// scans the admitted rows exactly. Needs the `ATTRIBUTES` section
    /// ([`IndexError::NoAttributes`] without it).
    pub fn search_filtered(
        &self,
        query: &[f32],
        k: usize,
        ef: Option<usize>,
        filter: &RowFilter,
    ) -> Result<Filtered> {
        let cols = self.columns().ok_or_else(|| IndexError::NoAttributes {
            path: self.path().to_path_buf(),
        })?;
        let q = Query::new(self.dim(), query)?;
        if filter.is_empty() {
            let hits = match ef {
                Some(ef) => self.search(query, k, ef)?,
                None => self.search_exact(query, k)?,
            };
            let path = match ef.map(|ef| ef.max(k)) {
                Some(beam) if self.has_graph() && beam < self.len() => FilterPath::Graph { beam },
                _ => FilterPath::Exact,
            };
            let admitted = self.len();
            return Ok(Filtered { hits, admitted, path });
        }
        self.with_visited(|visited| {
            let corrupt = |reason| self.corrupt(reason);
            let (g, codes) = (self.graph(), self.traversal_codes());
            crate::filtered::search_filtered(self, g, codes, cols, &q, k, ef, filter, visited, &corrupt)
        })
    }

    /// [`search_filtered`](Self::search_filtered) of many queries, each with
    /// its own filter, spread over the rayon thread pool.
    pub fn search_batch_filtered(
        &self,
        queries: &[Vec<f32>],
        filters: &[RowFilter],
        k: usize,
        ef: Option<usize>,
    ) -> Result<Vec<Filtered>> {
        if queries.len() != filters.len() {
            return Err(IndexError::BadQuery(format!(
                "{} queries and {} filters",
                queries.len(),
                filters.len()
            )));
        }
        queries
            .par_iter()
            .zip(filters)
            .map(|(q, f)| self.search_filtered(q, k, ef, f))
            .collect()
    }
}
