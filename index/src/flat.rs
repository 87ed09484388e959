//! An in-memory exact index: the exact scan and f64 re-rank of a flat
//! partition, over vectors held in memory rather than mapped from a file.
//! For callers that have the vectors at hand and no partition file (a query
//! against a set that has not been indexed yet).

use crate::error::{IndexError, Result};
use crate::filter::{AttrVecs, FilterPath, RowAttrs, RowFilter};
use std::sync::OnceLock;

use crate::quantize::{Quantization, Quantized};
use crate::scan::{exact_batch_coded, FIT_CODES_FROM};
use crate::search::{exact, exact_among, Filtered, Hit, Query, Rows};
use crate::vector::checked_norm;

/// Rows added one by one, searched exactly.
#[derive(Clone, Debug, Default)]
pub struct FlatIndex {
    dim: usize,
    unit: Vec<f32>,
    norms: Vec<f64>,
    ids: Vec<String>,
    /// Per-row attributes ([`RowAttrs::NONE`] for rows added without).
    attrs: AttrVecs,
    /// Int8 codes of the rows for exact batched scans, fitted at the first
    /// batch large enough to pay for them; dropped when a row is added.
    codes: OnceLock<Option<Quantized>>,
}

impl FlatIndex {
    pub fn new(dim: usize) -> Result<FlatIndex> {
        Self::with_capacity(dim, 0)
    }

    pub fn with_capacity(dim: usize, rows: usize) -> Result<FlatIndex> {
        if dim == 0 || dim > 65_536 {
            return Err(IndexError::BadParams(format!(
                "dimension {dim} is not between 1 and 65536"
            )));
        }
        Ok(FlatIndex {
            dim,
            unit: Vec::with_capacity(rows * dim),
            norms: Vec::with_capacity(rows),
            ids: Vec::with_capacity(rows),
            attrs: AttrVecs::default(),
            codes: OnceLock::new(),
        })
    }

    /// Add a row; returns its row number. Rejects wrong dimensions, NaN,
    /// infinite and all-zero vectors, as [`crate::PartitionBuilder::add`] does.
    pub fn add(&mut self, id: &str, vector: &[f32]) -> Result<u32> {
        self.add_with(id, vector, RowAttrs::NONE)
    }

    /// [`add`](Self::add) with the row's attributes for [`search_filtered`](Self::search_filtered).
    pub fn add_with(&mut self, id: &str, vector: &[f32], attrs: RowAttrs) -> Result<u32> {
        let row = self.ids.len();
        if row >= u32::MAX as usize {
            return Err(IndexError::BadParams(
                "an index holds fewer than 2^32 rows".into(),
            ));
        }
        let norm = checked_norm(row, self.dim, vector)?;
        self.unit
            .extend(vector.iter().map(|&x| (f64::from(x) / norm) as f32));
        self.norms.push(norm);
        self.ids.push(id.to_string());
        self.attrs.push(attrs);
        self.codes = OnceLock::new();
        Ok(row as u32)
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The attributes of a row (panics if out of range).
    pub fn attrs_of(&self, row: usize) -> RowAttrs {
        self.attrs.columns().get(row)
    }

    /// Exact top-k among the rows `filter` admits.
    pub fn search_filtered(&self, query: &[f32], k: usize, filter: &RowFilter) -> Result<Filtered> {
        let q = Query::new(self.dim, query)?;
        let admitted = if filter.is_empty() {
            (0..self.len() as u32).collect()
        } else {
            self.attrs.columns().admitted(filter)
        };
        let k = k.min(admitted.len());
        let hits = if k == 0 {
            Vec::new()
        } else {
            exact_among(self, &q, &admitted, k)?
        };
        Ok(Filtered {
            hits,
            admitted: admitted.len(),
            path: FilterPath::Exact,
        })
    }

    /// The id of a row (panics if out of range).
    pub fn id_of(&self, row: usize) -> &str {
        &self.ids[row]
    }

    /// Exact top-k by cosine, descending; ties by row. `k` above the row
    /// count means every row: it is clamped before anything is allocated.
    pub fn search(&self, query: &[f32], k: usize) -> Result<Vec<Hit>> {
        let k = k.min(self.len());
        let q = Query::new(self.dim, query)?;
        if k == 0 || self.is_empty() {
            return Ok(Vec::new());
        }
        exact(self, &q, k)
    }

    /// Many queries at once: blocks of queries share each pass over the rows,
    /// blocks are spread over the rayon thread pool. `k` is clamped to the row count.
    pub fn search_batch(&self, queries: &[Vec<f32>], k: usize) -> Result<Vec<Vec<Hit>>> {
        let k = k.min(self.len());
        let qs = queries
            .iter()
            .map(|q| Query::new(self.dim, q))
            .collect::<Result<Vec<_>>>()?;
        if k == 0 || self.is_empty() {
            return Ok(vec![Vec::new(); qs.len()]);
        }
        let codes = (qs.len() >= FIT_CODES_FROM).then(|| {
            self.codes
                .get_or_init(|| Quantized::fit(&self.unit, self.dim, Quantization::PerDimension))
                .as_ref()
                .map(Quantized::view)
        });
        exact_batch_coded(self, codes.flatten(), &qs, k)
    }
}

impl Rows for FlatIndex {
    fn dim(&self) -> usize {
        self.dim
    }
    fn len(&self) -> usize {
        self.ids.len()
    }
    fn vectors(&self) -> &[f32] {
        &self.unit
    }
    fn norms(&self) -> &[f64] {
        &self.norms
    }
    fn id(&self, row: usize) -> Result<&str> {
        self.ids
            .get(row)
            .map(String::as_str)
            .ok_or_else(|| IndexError::BadQuery(format!("row {row} of {}", self.ids.len())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_same_rows_as_a_direct_computation() {
        let mut f = FlatIndex::new(3).unwrap();
        f.add("x", &[1.0, 0.0, 0.0]).unwrap();
        f.add("y", &[0.0, 2.0, 0.0]).unwrap();
        f.add("xy", &[1.0, 1.0, 0.0]).unwrap();
        let hits = f.search(&[2.0, 1.0, 0.0], 2).unwrap();
        let ids: Vec<&str> = hits.iter().map(|h| h.id.as_str()).collect();
        assert_eq!(ids, ["xy", "x"]);
        let cos = 3.0 / (5f64.sqrt() * 2f64.sqrt());
        assert!((hits[0].cosine - cos).abs() < 1e-7, "{}", hits[0].cosine);
        // |(2,1,0) − (1,1,0)| = 1
        assert!((hits[0].euclidean - 1.0).abs() < 1e-6, "{}", hits[0].euclidean);
        assert!(f.add("zero", &[0.0; 3]).is_err());
        assert!(f.add("short", &[1.0]).is_err());
        assert!(f.search(&[0.0; 3], 1).is_err());
    }

    #[test]
    fn k_above_the_row_count_returns_every_row_without_allocating_for_k() {
        let mut f = FlatIndex::new(2).unwrap();
        for (i, v) in [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]].iter().enumerate() {
            f.add(&format!("r{i}"), v).unwrap();
        }
        for k in [3, 4, 100_000_000_000, usize::MAX] {
            let hits = f.search(&[1.0, 0.2], k).unwrap();
            let ids: Vec<&str> = hits.iter().map(|h| h.id.as_str()).collect();
            assert_eq!(ids, ["r0", "r2", "r1"], "k {k}");
            let batch = f.search_batch(&[vec![1.0, 0.2], vec![0.0, 1.0]], k).unwrap();
            assert_eq!(batch[0], hits, "k {k}");
            assert_eq!(batch[1].len(), 3, "k {k}");
        }
    }
}
