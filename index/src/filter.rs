//! Per-row attributes and the filters over them: what filtered searches
//! (`Partition::search_filtered`, `FlatIndex::search_filtered`) admit.
//!
//! The engine knows three attributes per row and nothing of what they mean:
//! an ordered integer `key` (stabspace stores a day number), a `tag` (a
//! category number) and a `value` (an ordered float). A [`RowFilter`] admits
//! a row when its key is below a bound, its tag is one of a list and its
//! value is at least a floor, each only when asked. The `ATTRIBUTES` section
//! of a partition holds the three as columns (`FORMAT.md`).

use std::ops::Range;

use bytemuck::{Pod, Zeroable};

/// A row's attributes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct RowAttrs {
    /// An ordered key ([`RowAttrs::NO_KEY`]: none; no `key_below` admits it).
    pub key: i32,
    /// A category ([`RowAttrs::NO_TAG`]: none; no tag list admits it).
    pub tag: u32,
    /// An ordered value (NaN: none; no `value_at_least` admits it).
    pub value: f32,
}

impl RowAttrs {
    /// The key of a row that has none: above every bound.
    pub const NO_KEY: i32 = i32::MAX;
    /// The tag of a row that has none.
    pub const NO_TAG: u32 = u32::MAX;
    /// A row with no attributes: admitted only by a filter that asks nothing.
    pub const NONE: RowAttrs = RowAttrs {
        key: Self::NO_KEY,
        tag: Self::NO_TAG,
        value: f32::NAN,
    };
}

impl Default for RowAttrs {
    fn default() -> Self {
        RowAttrs::NONE
    }
}

/// Which rows a filtered search may return. The default admits every row.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RowFilter {
    /// Only rows whose key is strictly below this.
    pub key_below: Option<i32>,
    /// Only rows whose tag is one of these (an empty list admits nothing).
    pub tags: Option<Vec<u32>>,
    /// Only rows whose value is at least this.
    pub value_at_least: Option<f32>,
}

impl RowFilter {
    /// Whether the filter asks nothing (every row is admitted).
    pub fn is_empty(&self) -> bool {
        self.key_below.is_none() && self.tags.is_none() && self.value_at_least.is_none()
    }

    /// Whether a row with these attributes is admitted.
    #[inline]
    pub fn admits(&self, a: &RowAttrs) -> bool {
        self.key_below.is_none_or(|b| a.key < b)
            && self.tags.as_ref().is_none_or(|t| t.contains(&a.tag))
            && self.value_at_least.is_none_or(|v| a.value >= v)
    }
}

/// The attribute columns of a set of rows (mapped from a partition, or held
/// by a [`crate::FlatIndex`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct AttrColumns<'a> {
    pub keys: &'a [i32],
    pub tags: &'a [u32],
    pub values: &'a [f32],
}

impl AttrColumns<'_> {
    /// Whether row `row` is admitted by `f`, reading only the columns `f` asks about.
    #[inline]
    pub fn admits(&self, f: &RowFilter, row: u32) -> bool {
        let r = row as usize;
        f.key_below.is_none_or(|b| self.keys[r] < b)
            && f.tags.as_ref().is_none_or(|t| t.contains(&self.tags[r]))
            && f.value_at_least.is_none_or(|v| self.values[r] >= v)
    }

    /// The attributes of row `row`.
    pub fn get(&self, row: usize) -> RowAttrs {
        RowAttrs {
            key: self.keys[row],
            tag: self.tags[row],
            value: self.values[row],
        }
    }

    /// How many rows `f` admits (one vectorised pass for a single key bound or value floor).
    pub fn count(&self, f: &RowFilter) -> usize {
        match f {
            RowFilter {
                key_below: Some(b),
                tags: None,
                value_at_least: None,
            } => self.keys.iter().map(|&k| usize::from(k < *b)).sum(),
            RowFilter {
                key_below: None,
                tags: None,
                value_at_least: Some(v),
            } => self.values.iter().map(|&x| usize::from(x >= *v)).sum(),
            _ => (0..self.keys.len() as u32).filter(|&r| self.admits(f, r)).count(),
        }
    }

    /// The rows `f` admits, in row order.
    pub fn admitted(&self, f: &RowFilter) -> Vec<u32> {
        // Branch-free for a single key bound or value floor: every row is
        // written, and the end advances past it only when it is admitted (a
        // filter uncorrelated with row order mispredicts a branch per row).
        fn compact(n: usize, admit: impl Fn(usize) -> bool) -> Vec<u32> {
            let mut out = vec![0u32; n];
            let mut len = 0;
            for r in 0..n {
                out[len] = r as u32;
                len += usize::from(admit(r));
                if len == n {
                    break;
                }
            }
            out.truncate(len);
            out
        }
        let n = self.keys.len();
        match f {
            RowFilter {
                key_below: Some(b),
                tags: None,
                value_at_least: None,
            } => compact(n, |r| self.keys[r] < *b),
            RowFilter {
                key_below: None,
                tags: None,
                value_at_least: Some(v),
            } => compact(n, |r| self.values[r] >= *v),
            _ => (0..n as u32).filter(|&r| self.admits(f, r)).collect(),
        }
    }
}

/// The bytes of the `ATTRIBUTES` section for these rows: the keys (`i32`),
/// then the tags (`u32`), then the values (`f32`), `count` of each.
pub(crate) fn encode(attrs: &[RowAttrs]) -> Vec<u8> {
    let mut out = Vec::with_capacity(attrs.len() * 12);
    for a in attrs {
        out.extend_from_slice(&a.key.to_le_bytes());
    }
    for a in attrs {
        out.extend_from_slice(&a.tag.to_le_bytes());
    }
    for a in attrs {
        out.extend_from_slice(&a.value.to_le_bytes());
    }
    out
}

/// The byte ranges of the three columns of an `ATTRIBUTES` section of `len`
/// bytes at `offset` in a file of `count` rows.
pub(crate) fn section_ranges(offset: usize, len: usize, count: usize) -> Result<[Range<usize>; 3], String> {
    if len != count * 12 {
        return Err(format!(
            "attributes section has {len} bytes, expected {}",
            count * 12
        ));
    }
    let col = count * 4;
    Ok([
        offset..offset + col,
        offset + col..offset + 2 * col,
        offset + 2 * col..offset + 3 * col,
    ])
}

/// Columns as owned vectors (for builders and in-memory indexes).
#[derive(Clone, Debug, Default)]
pub(crate) struct AttrVecs {
    pub keys: Vec<i32>,
    pub tags: Vec<u32>,
    pub values: Vec<f32>,
}

impl AttrVecs {
    pub fn push(&mut self, a: RowAttrs) {
        self.keys.push(a.key);
        self.tags.push(a.tag);
        self.values.push(a.value);
    }

    pub fn columns(&self) -> AttrColumns<'_> {
        AttrColumns {
            keys: &self.keys,
            tags: &self.tags,
            values: &self.values,
        }
    }

    pub fn rows(&self) -> Vec<RowAttrs> {
        (0..self.keys.len()).map(|r| self.columns().get(r)).collect()
    }
}

/// How a filtered search ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterPath {
    /// Every admitted row scored exactly (few rows admitted, no graph, or no breadth).
    Exact,
    /// The graph traversed with a beam of this many rows, admitted or not.
    Graph { beam: usize },
}

/// The scan/graph crossover: a filtered search scans the admitted rows when
/// `admitted ≤ EXACT_FACTOR · beam`, i.e. `admitted² ≤ 48 · ef · rows` (see [`plan`]).
pub(crate) const EXACT_FACTOR: usize = 48;

/// A filtered traversal that has scored more rows than this percentage of
/// the admitted rows gives up and scans the admitted rows (`filtered.rs`):
/// a row scored in the graph costs about three scanned in row order, so
/// past half the admitted rows the scan would have been cheaper.
pub(crate) const BUDGET_PERCENT: usize = 50;

/// How to search `admitted` of `rows` rows at breadth `ef` (`None`: exactly).
///
/// The rule: scan exactly when `ef` is `None`, there is no graph, nothing is
/// admitted, or `admitted ≤ EXACT_FACTOR · beam` with `beam = ef · rows /
/// admitted` (the rows a traversal reaches before it holds `ef` admitted
/// ones), i.e. `admitted² ≤ 48 · ef · rows`; else traverse the graph
/// (`Graph { beam }`, the beam reported as that estimate). The scan reads the
/// int8 codes of the admitted rows (a quarter of the f32 bytes) and re-ranks
/// the best k + 64 in f64 (the f32 vectors and an exact f64 re-rank when
/// there are no codes or `ef` is `None`). The traversal keeps going until it
/// holds the best `ef` admitted rows it can reach (hnswlib's rule: it widens
/// by itself when admitted rows are rare near the query, as with keys
/// correlated with the vectors), and falls back to the scan past
/// [`BUDGET_PERCENT`] % of the admitted rows scored.
///
/// Measured (`cargo run --release -p stabspace-index --example filterbench --
/// --base /work/bench-data/scen_100000.f32 --queries
/// /work/bench-data/scen_q_1000.f32 --dim 384 --nq 300 --sel 1,5,10,20,30,50,100`,
/// 100,000 scenario vectors from real returns, default `BuildParams`, ef =
/// calibrated `ef_for(0.95)` = 192, one thread, a noisy shared 2-core
/// machine; unfiltered `search` 1,600–1,750 q/s at recall 0.952), q/s of the
/// int8 scan against the traversal forced at each selectivity:
///
/// | admitted | keys by row order: scan / graph | uniform keys: scan / graph |
/// |---:|---:|---:|
/// | 10% | 2,635 / 280 | 1,548 / 272 |
/// | 20% | 1,372 / 543 | 1,327 / 596 |
/// | 30% | 1,182 / 758 | 449 / 624 |
/// | 50% | 652 / 1,136 | 417 / 1,130 |
/// | 100% | 262 / 2,182 | 401 / 1,481 |
///
/// The crossover is near 30% at ef 192 (`0.3² · 100,000 / 192 ≈ 47`). The
/// traversal's recall@10 against the exact filtered top-10 was 0.975–0.997
/// below 100% (it reaches further than an unfiltered search at the same
/// ef), the scan's 1.000. The previous rule (a fixed beam of `ef / s`, scan
/// below `admitted ≤ 4 · beam`) ran 10% through the graph at 0.11× the
/// unfiltered q/s; this one scans at 0.9–1.5×.
pub(crate) fn plan(rows: usize, admitted: usize, ef: Option<usize>, k: usize, graph: bool) -> FilterPath {
    let Some(ef) = ef.filter(|_| graph && admitted > 0) else {
        return FilterPath::Exact;
    };
    let ef = ef.max(k);
    // The beam holds about `ef` admitted rows when it settles.
    let beam = (ef as u128 * rows as u128).div_ceil(admitted as u128) as usize;
    if beam >= rows || admitted <= beam.saturating_mul(EXACT_FACTOR) {
        FilterPath::Exact
    } else {
        FilterPath::Graph { beam }
    }
}
