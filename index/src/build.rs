//! Building a partition: validate and normalise rows, build the HNSW graph with
//! `hnsw_rs`, extract it through its public accessors into our layout, write.

use std::path::Path;
use std::time::Instant;

use hnsw_rs::anndists::dist::Distance;
use hnsw_rs::hnsw::Hnsw;

use crate::error::{IndexError, Result};
use crate::format::{kind, Header, FLAG_DETERMINISTIC, FLAG_GRAPH, METRIC_COSINE, SECTION_OPTIONAL};
use crate::kernel;
use crate::write::{write_partition, Section};

/// Below this many rows a partition is written flat (no graph) and searched by
/// exact scan: the measured crossover (`cargo bench -p stabspace-index --bench
/// engine -- crossover`; 384 dims, M 16, ef 64), table in `index/FORMAT.md`.
pub const FLAT_THRESHOLD: usize = 2_000;

/// Largest M accepted (hnsw_rs allows at most 256 slots per level).
pub const MAX_M: usize = 128;

/// How to build a partition.
#[derive(Clone, Debug)]
pub struct BuildParams {
    /// Neighbours per node on upper levels; level 0 keeps 2·M.
    pub m: usize,
    /// Breadth of the candidate search while inserting.
    pub ef_construction: usize,
    /// Seed of the insertion order.
    pub seed: u64,
    /// Insert serially so equal inputs give byte-identical files (slower: one core).
    pub deterministic: bool,
    /// Partitions with fewer rows are written without a graph.
    pub flat_threshold: usize,
}

impl Default for BuildParams {
    fn default() -> Self {
        BuildParams {
            m: 16,
            ef_construction: 200,
            seed: 0x5EED,
            deterministic: false,
            flat_threshold: FLAT_THRESHOLD,
        }
    }
}

/// What a build did.
#[derive(Clone, Debug, PartialEq)]
pub struct BuildStats {
    pub rows: usize,
    pub graph: bool,
    pub max_level: u32,
    pub file_bytes: u64,
    pub graph_seconds: f64,
    pub total_seconds: f64,
}

/// Collects rows, then builds and writes one partition file.
pub struct PartitionBuilder {
    dim: usize,
    vectors: Vec<f32>,
    norms: Vec<f64>,
    id_offsets: Vec<u64>,
    id_bytes: Vec<u8>,
    payload_offsets: Vec<u64>,
    payload_bytes: Vec<u8>,
}

/// hnsw_rs distance over normalised vectors: 1 − dot, with our kernel.
struct DotDistance;

impl Distance<f32> for DotDistance {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        (1.0 - kernel::dot(a, b)).max(0.0)
    }
}

/// Check a vector and return its L2 norm (f64).
pub(crate) fn checked_norm(row: usize, dim: usize, v: &[f32]) -> Result<f64> {
    if v.len() != dim {
        return Err(IndexError::WrongDimension {
            row,
            expected: dim,
            got: v.len(),
        });
    }
    if let Some((component, &value)) = v.iter().enumerate().find(|(_, x)| !x.is_finite()) {
        return Err(IndexError::NonFinite {
            row,
            component,
            value,
        });
    }
    let norm = v.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>().sqrt();
    if norm == 0.0 || !norm.is_finite() {
        return Err(IndexError::ZeroVector { row });
    }
    Ok(norm)
}

impl PartitionBuilder {
    pub fn new(dim: usize) -> Result<Self> {
        if dim == 0 || dim > 65_536 {
            return Err(IndexError::BadParams(format!(
                "dimension {dim} is not between 1 and 65536"
            )));
        }
        Ok(PartitionBuilder {
            dim,
            vectors: Vec::new(),
            norms: Vec::new(),
            id_offsets: vec![0],
            id_bytes: Vec::new(),
            payload_offsets: vec![0],
            payload_bytes: Vec::new(),
        })
    }

    pub fn with_capacity(dim: usize, rows: usize) -> Result<Self> {
        let mut b = Self::new(dim)?;
        b.vectors.reserve(rows * dim);
        b.norms.reserve(rows);
        b.id_offsets.reserve(rows);
        b.payload_offsets.reserve(rows);
        Ok(b)
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn len(&self) -> usize {
        self.norms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.norms.is_empty()
    }

    /// Add a row; returns its row number. Rejects wrong dimensions, NaN,
    /// infinite and all-zero vectors.
    pub fn add(&mut self, id: &str, vector: &[f32], payload: &[u8]) -> Result<u32> {
        let row = self.len();
        if row >= u32::MAX as usize {
            return Err(IndexError::BadParams(
                "a partition holds fewer than 2^32 rows".into(),
            ));
        }
        let norm = checked_norm(row, self.dim, vector)?;
        self.vectors
            .extend(vector.iter().map(|&x| (f64::from(x) / norm) as f32));
        self.norms.push(norm);
        self.id_bytes.extend_from_slice(id.as_bytes());
        self.id_offsets.push(self.id_bytes.len() as u64);
        self.payload_bytes.extend_from_slice(payload);
        self.payload_offsets.push(self.payload_bytes.len() as u64);
        Ok(row as u32)
    }

    /// Build the graph (unless the partition is small) and write the file at
    /// `path` atomically. `provenance` is stored verbatim; `progress(done, total)`
    /// is called as rows are inserted into the graph.
    pub fn write(
        self,
        path: &Path,
        params: &BuildParams,
        provenance: &str,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<BuildStats> {
        let started = Instant::now();
        if params.m < 2 || params.m > MAX_M {
            return Err(IndexError::BadParams(format!(
                "M = {} is not between 2 and {MAX_M}",
                params.m
            )));
        }
        if params.ef_construction < params.m {
            return Err(IndexError::BadParams(format!(
                "ef_construction = {} is below M = {}",
                params.ef_construction, params.m
            )));
        }
        let n = self.len();
        let m0 = 2 * params.m;
        let graph = n >= params.flat_threshold.max(1);
        let mut header = Header {
            dim: self.dim as u32,
            metric: METRIC_COSINE,
            count: n as u64,
            m: params.m as u32,
            m0: m0 as u32,
            ef_construction: params.ef_construction as u32,
            flags: if params.deterministic {
                FLAG_DETERMINISTIC
            } else {
                0
            },
            seed: params.seed,
            ..bytemuck::Zeroable::zeroed()
        };
        let graph_started = Instant::now();
        let layout = if graph {
            header.flags |= FLAG_GRAPH;
            let g = self.build_graph(params, progress)?;
            header.entry_point = g.entry_point;
            header.max_level = g.max_level;
            Some(g)
        } else {
            progress(n, n);
            None
        };
        let graph_seconds = graph_started.elapsed().as_secs_f64();

        let mut sections = vec![
            Section {
                kind: kind::VECTORS,
                flags: 0,
                bytes: bytemuck::cast_slice(&self.vectors),
            },
            Section {
                kind: kind::NORMS,
                flags: 0,
                bytes: bytemuck::cast_slice(&self.norms),
            },
        ];
        if let Some(g) = &layout {
            sections.push(Section {
                kind: kind::LEVEL0,
                flags: 0,
                bytes: bytemuck::cast_slice(&g.level0),
            });
            sections.push(Section {
                kind: kind::UPPER_INDEX,
                flags: 0,
                bytes: bytemuck::cast_slice(&g.upper_index),
            });
            sections.push(Section {
                kind: kind::UPPER,
                flags: 0,
                bytes: bytemuck::cast_slice(&g.upper),
            });
        }
        sections.extend([
            Section {
                kind: kind::ID_OFFSETS,
                flags: 0,
                bytes: bytemuck::cast_slice(&self.id_offsets),
            },
            Section {
                kind: kind::ID_BYTES,
                flags: 0,
                bytes: &self.id_bytes,
            },
            Section {
                kind: kind::PAYLOAD_OFFSETS,
                flags: 0,
                bytes: bytemuck::cast_slice(&self.payload_offsets),
            },
            Section {
                kind: kind::PAYLOAD_BYTES,
                flags: 0,
                bytes: &self.payload_bytes,
            },
            Section {
                kind: kind::PROVENANCE,
                flags: 0,
                bytes: provenance.as_bytes(),
            },
        ]);
        debug_assert!(sections.iter().all(|s| s.flags & SECTION_OPTIONAL == 0));
        let file_bytes = write_partition(path, header, &sections)?;
        Ok(BuildStats {
            rows: n,
            graph,
            max_level: header.max_level,
            file_bytes,
            graph_seconds,
            total_seconds: started.elapsed().as_secs_f64(),
        })
    }

    fn row(&self, r: usize) -> &[f32] {
        &self.vectors[r * self.dim..(r + 1) * self.dim]
    }

    fn build_graph(&self, params: &BuildParams, progress: &mut dyn FnMut(usize, usize)) -> Result<Graph> {
        let n = self.len();
        let (m, m0) = (params.m, 2 * params.m);
        let order = permutation(n, params.seed);
        let hnsw: Hnsw<f32, DotDistance> = Hnsw::new(m, n, 16, params.ef_construction, DotDistance);
        let batch = 10_000;
        for (i, chunk) in order.chunks(batch).enumerate() {
            if params.deterministic {
                for &r in chunk {
                    hnsw.insert_slice((self.row(r), r));
                }
            } else {
                let data: Vec<(&[f32], usize)> = chunk.iter().map(|&r| (self.row(r), r)).collect();
                hnsw.parallel_insert_slice(&data);
            }
            progress((i * batch + chunk.len()).min(n), n);
        }

        // Extract: per row its level and neighbour rows on each level.
        let mut level0 = vec![0u32; n * (m0 + 1)];
        let mut levels = vec![0u8; n];
        let mut uppers: Vec<Vec<Vec<u32>>> = vec![Vec::new(); n];
        let mut seen = 0usize;
        for point in hnsw.get_point_indexation() {
            let row = point.get_origin_id();
            let level = point.get_point_id().0 as usize;
            let hood = point.get_neighborhood_id();
            let neighbours = |l: usize, cap: usize| -> Vec<u32> {
                let mut ns = hood.get(l).cloned().unwrap_or_default();
                ns.sort_by(|a, b| a.distance.total_cmp(&b.distance).then(a.d_id.cmp(&b.d_id)));
                ns.iter()
                    .filter(|nb| nb.d_id != row)
                    .take(cap)
                    .map(|nb| nb.d_id as u32)
                    .collect()
            };
            let l0 = neighbours(0, m0);
            let block = &mut level0[row * (m0 + 1)..(row + 1) * (m0 + 1)];
            block[0] = l0.len() as u32;
            block[1..=l0.len()].copy_from_slice(&l0);
            levels[row] = level as u8;
            uppers[row] = (1..=level).map(|l| neighbours(l, m)).collect();
            seen += 1;
        }
        if seen != n {
            return Err(IndexError::BadParams(format!("graph holds {seen} of {n} rows")));
        }
        // Entry point: the first row, in insertion order, on the top level.
        let max_level = levels.iter().copied().max().unwrap_or(0);
        let entry_point = order
            .iter()
            .copied()
            .find(|&r| levels[r] == max_level)
            .unwrap_or(0) as u32;
        let mut upper_index = vec![u32::MAX; n];
        let mut upper: Vec<u32> = Vec::new();
        for (row, lists) in uppers.iter().enumerate() {
            if lists.is_empty() {
                continue;
            }
            upper_index[row] = u32::try_from(upper.len())
                .map_err(|_| IndexError::BadParams("upper levels exceed 2^32 words".into()))?;
            upper.push(lists.len() as u32);
            for list in lists {
                upper.push(list.len() as u32);
                upper.extend_from_slice(list);
                upper.extend(std::iter::repeat_n(0u32, m - list.len()));
            }
        }
        Ok(Graph {
            level0,
            upper_index,
            upper,
            entry_point,
            max_level: u32::from(max_level),
        })
    }
}

struct Graph {
    level0: Vec<u32>,
    upper_index: Vec<u32>,
    upper: Vec<u32>,
    entry_point: u32,
    max_level: u32,
}

/// 0..n shuffled by `seed` (Fisher–Yates over splitmix64): the insertion order.
fn permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}
