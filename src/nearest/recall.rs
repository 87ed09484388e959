//! Recall observed on live queries: a query answered by a graph search, run
//! again as an exact scan of the same rows, and the share of the exact top-k
//! its answer found.
//!
//! [`ScenarioSpace::exact_check`] takes, from the space that answered, what
//! the exact run needs: the same partition map and the same delta (the rows a
//! stale partition lacks, scanned exactly beside it), so an `index+delta`
//! answer is checked against the exact top-k of partition and delta together,
//! as fair a comparison as for a fresh partition. An answer that was already
//! exact (a flat partition, `exact`, a breadth covering every row, a scan of
//! the database) has no check: it is skipped, not counted as a recall of 1.
//! A filtered answer is checked whichever plan the engine chose for it (its
//! scan of the admitted rows reads the int8 codes, so it too may miss).
//!
//! Recall is tie-aware, as the build's calibration and `stabspace bench`
//! count it ([`recall_at_k`]).

use std::sync::Arc;

use super::{Engine, ScenarioHit, ScenarioSpace};
use crate::error::Result;
use crate::pointintime::ScenarioFilter;

/// The recall@k of `served` (cosines, best first) against the exact top-k
/// (cosines, best first): the share of served hits whose cosine is at least
/// the exact k-th one minus 1e-6, over the exact hits there are (fewer than
/// `k` when a filter admits fewer rows). `None` when the exact run found
/// nothing (no row admitted): there is nothing to miss.
pub fn recall_at_k(served: &[f64], exact: &[f64], k: usize) -> Option<f64> {
    let want = exact.len().min(k);
    if want == 0 {
        return None;
    }
    let kth = exact[want - 1];
    let found = served.iter().take(k).filter(|&&c| c >= kth - 1e-6).count();
    Some(found.min(want) as f64 / want as f64)
}

/// What re-running a query exactly needs: the space that answered it, as an
/// exact scan of the same rows, and the recall the answer was asked for.
#[derive(Clone)]
pub struct ExactCheck {
    exact: Arc<ScenarioSpace>,
    /// The recall the breadth was chosen for (`None`: `ef` given).
    pub target: Option<f64>,
}

impl std::fmt::Debug for ExactCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ExactCheck({} / {}, target {:?})",
            self.exact.model_id, self.exact.set_id, self.target
        )
    }
}

impl ExactCheck {
    pub fn model_id(&self) -> &str {
        &self.exact.model_id
    }

    pub fn set_id(&self) -> &str {
        &self.exact.set_id
    }

    /// Whether `other` checks against the same rows (the same partition map
    /// and delta): their queries can share each pass of the exact scan.
    pub fn same_rows(&self, other: &ExactCheck) -> bool {
        match (&self.exact.engine, &other.exact.engine) {
            (Engine::Partition { p, delta }, Engine::Partition { p: q, delta: d }) => {
                Arc::ptr_eq(p, q)
                    && match (delta, d) {
                        (None, None) => true,
                        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                        _ => false,
                    }
            }
            _ => false,
        }
    }

    /// The exact top-k of `query` among the rows `filter` admits (`None`: every row).
    pub fn exact_hits(
        &self,
        query: &[f32],
        k: usize,
        filter: Option<&ScenarioFilter>,
    ) -> Result<Vec<ScenarioHit>> {
        match filter {
            Some(f) if !f.is_empty() => Ok(self.exact.search_filtered(query, k, f)?.hits),
            _ => self.exact.search(query, k),
        }
    }

    /// The recall@k of the hits `served` for `query` (`None`: nothing to miss).
    pub fn recall(
        &self,
        query: &[f32],
        k: usize,
        filter: Option<&ScenarioFilter>,
        served: &[f64],
    ) -> Result<Option<f64>> {
        let exact: Vec<f64> = self
            .exact_hits(query, k, filter)?
            .iter()
            .map(|h| h.cosine)
            .collect();
        Ok(recall_at_k(served, &exact, k))
    }

    /// [`recall`](Self::recall) of many queries (each with its filter, or
    /// none), the exact scans sharing each pass over the rows where no
    /// query filters, on all cores.
    pub fn recall_batch(
        &self,
        queries: &[Vec<f32>],
        k: usize,
        filters: Option<&[ScenarioFilter]>,
        served: &[Vec<f64>],
    ) -> Result<Vec<Option<f64>>> {
        let exact = match filters {
            Some(f) => self
                .exact
                .search_batch_filtered(queries, f, k)?
                .into_iter()
                .map(|f| f.hits)
                .collect(),
            None => self.exact.search_batch(queries, k)?,
        };
        Ok(exact
            .iter()
            .zip(served)
            .map(|(e, s)| recall_at_k(s, &e.iter().map(|h| h.cosine).collect::<Vec<_>>(), k))
            .collect())
    }
}

impl ScenarioSpace {
    /// How to check this space's answers for `k` hits against an exact scan
    /// of the same rows; `None` when they are exact already (no graph
    /// search: nothing to check).
    pub fn exact_check(&self, k: usize) -> Option<ExactCheck> {
        self.breadth(k)?;
        let Engine::Partition { p, delta } = &self.engine else {
            return None;
        };
        let exact = ScenarioSpace {
            model_id: self.model_id.clone(),
            set_id: self.set_id.clone(),
            engine: Engine::Partition {
                p: Arc::clone(p),
                delta: delta.clone(),
            },
            ef: None,
            recall: None,
            zero_vectors: Vec::new(),
            feature_space: None,
            partition_stale: self.partition_stale,
        };
        Some(ExactCheck {
            exact: Arc::new(exact),
            target: self.recall,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::recall_at_k;

    #[test]
    fn recall_counts_ties_at_the_kth_exact_cosine() {
        let exact = [0.9, 0.8, 0.7];
        assert_eq!(recall_at_k(&[0.9, 0.8, 0.7], &exact, 3), Some(1.0));
        // Another row tied with the k-th exact one counts.
        assert_eq!(recall_at_k(&[0.9, 0.8, 0.7 - 1e-7], &exact, 3), Some(1.0));
        assert_eq!(recall_at_k(&[0.9, 0.8, 0.6], &exact, 3), Some(2.0 / 3.0));
        assert_eq!(recall_at_k(&[0.9], &exact, 3), Some(1.0 / 3.0));
        // A filter admitting fewer than k rows: over the rows there are.
        assert_eq!(recall_at_k(&[0.9, 0.8], &exact[..2], 3), Some(1.0));
        assert_eq!(recall_at_k(&[], &[], 3), None);
    }
}
