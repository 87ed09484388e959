//! HNSW graphs in the file's layout (`FORMAT.md`: `LEVEL0`, `UPPER_INDEX`,
//! `UPPER`): borrowed for searching ([`GraphView`], from a mapped partition
//! or from memory), and owned in memory ([`Graph`]) as the builders produce
//! it and the writer stores it.

/// An HNSW graph borrowed for one search: the slices of a mapped partition or
/// of an in-memory [`Graph`], and the normalised vectors of its rows.
pub(crate) struct GraphView<'a> {
    pub vectors: &'a [f32],
    pub dim: usize,
    pub entry_point: u32,
    pub max_level: u32,
    pub level0: &'a [u32],
    pub upper_index: &'a [u32],
    pub upper: &'a [u32],
    pub m: usize,
    pub m0: usize,
    pub count: usize,
}

/// The graph of `n` rows: level-0 blocks of `m0 + 1` words (degree, then
/// slots), and for rows above level 0 a block in `upper` (`L`, then per level
/// 1..=L the degree and `m` slots).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Graph {
    pub m: usize,
    pub m0: usize,
    pub level0: Vec<u32>,
    pub upper_index: Vec<u32>,
    pub upper: Vec<u32>,
    pub entry_point: u32,
    pub max_level: u32,
}

impl Graph {
    /// Rows in the graph.
    pub fn len(&self) -> usize {
        self.upper_index.len()
    }

    /// The top level of a row.
    pub fn level(&self, row: usize) -> usize {
        match self.upper_index[row] {
            u32::MAX => 0,
            off => self.upper[off as usize] as usize,
        }
    }

    /// A view for searching, over the normalised `vectors` of the graph's rows.
    pub fn view<'a>(&'a self, vectors: &'a [f32], dim: usize) -> GraphView<'a> {
        GraphView {
            vectors,
            dim,
            entry_point: self.entry_point,
            max_level: self.max_level,
            level0: &self.level0,
            upper_index: &self.upper_index,
            upper: &self.upper,
            m: self.m,
            m0: self.m0,
            count: self.len(),
        }
    }

    /// A copy of a mapped partition's graph.
    pub fn of(g: &GraphView<'_>) -> Graph {
        Graph {
            m: g.m,
            m0: g.m0,
            level0: g.level0.to_vec(),
            upper_index: g.upper_index.to_vec(),
            upper: g.upper.to_vec(),
            entry_point: g.entry_point,
            max_level: g.max_level,
        }
    }
}
