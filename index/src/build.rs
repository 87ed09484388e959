//! Building a partition: validate and normalise rows, build the HNSW graph
//! (ours, `insert.rs`; or the reference, `reference.rs`) or extend the graph
//! of an existing partition with new rows, calibrate its recall, write.

use std::path::Path;
use std::time::Instant;

use crate::calibrate::{calibrate, calibrate_on, RECALIBRATE_AFTER};
use crate::calibration::{self, Calibration, CalibrationQueries};
use crate::error::{IndexError, Result};
use crate::filter::{self, AttrVecs, RowAttrs};
use crate::format::{kind, Header, FLAG_DETERMINISTIC, FLAG_GRAPH, METRIC_COSINE, SECTION_OPTIONAL};
use crate::graph::Graph;
use crate::insert::{self, InsertParams};
use crate::partition::Partition;
use crate::quantize::{Quantization, Quantized, QuantizedView};
use crate::rng::splitmix64;
use crate::vector::{checked_norm, normalised_queries};
use crate::write::{write_partition, Section};

/// Below this many rows a partition is written flat (no graph) and searched by
/// exact scan: near the measured crossover of a single query (the int8 graph
/// is 1.3× faster at 1,000–2,000 rows, under 0.1 ms either way) and of a
/// batch (the blocked exact scan wins below about 2,500 rows); `cargo bench
/// -p stabspace-index --bench engine -- "crossover|exact_batch"`, table in
/// `index/FORMAT.md`.
pub const FLAT_THRESHOLD: usize = 2_000;

/// Largest M accepted (hnsw_rs allows at most 256 slots per level).
pub const MAX_M: usize = 128;

/// Which code builds the graph.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GraphBuilder {
    /// Ours: parallel insertion with per-node locks (`insert.rs`).
    #[default]
    Native,
    /// hnsw_rs, the reference ours is tested against (no appends).
    HnswRs,
}

impl GraphBuilder {
    pub fn name(self) -> &'static str {
        match self {
            GraphBuilder::Native => "stabspace",
            GraphBuilder::HnswRs => "hnsw_rs",
        }
    }
}

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
    /// Which code builds the graph.
    pub builder: GraphBuilder,
    /// The quantised copy of the vectors that graph searches traverse
    /// (graphs only; `Quantization::None` writes none).
    pub quantization: Quantization,
    /// Whether our builder's insertions search the graph on those codes
    /// (the pool each search ends with is scored again in f32 before links
    /// are chosen); `false` searches in f32 throughout. Measured in
    /// `index/FORMAT.md`, "Building on the codes".
    pub build_on_codes: bool,
}

impl Default for BuildParams {
    fn default() -> Self {
        BuildParams {
            m: 16,
            ef_construction: 200,
            seed: 0x5EED,
            deterministic: false,
            flat_threshold: FLAT_THRESHOLD,
            builder: GraphBuilder::Native,
            quantization: Quantization::PerDimension,
            build_on_codes: true,
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
    /// Rows inserted into the graph of the partition this one extends
    /// (`None`: the graph was built from scratch, or there is none).
    pub appended: Option<usize>,
    /// Recall per search breadth, measured on the built graph.
    pub calibration: Option<Calibration>,
    /// Every calibration recorded: the held-out rows', then the given
    /// queries' when there is one ([`PartitionBuilder::calibrate_on`]).
    pub calibrations: Vec<Calibration>,
    /// Seconds the calibration took (within `total_seconds`).
    pub calibration_seconds: f64,
}

/// The hash stored per row in `ROW_HASHES`: xxh3-64 of the id, the payload
/// and the vector as given (little-endian f32 bits), each length-prefixed.
/// Equal hashes mean an unchanged row (an accidental 64-bit collision is a
/// one-in-10^19 event per changed row).
pub fn row_hash(id: &str, vector: &[f32], payload: &[u8]) -> u64 {
    row_hash_with(id, vector, payload, None)
}

/// [`row_hash`] of a row added with attributes ([`PartitionBuilder::add_with`]):
/// the attributes' bytes are hashed after the vector, so a row whose
/// attributes changed is a changed row.
pub fn row_hash_with(id: &str, vector: &[f32], payload: &[u8], attrs: Option<&RowAttrs>) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&(id.len() as u64).to_le_bytes());
    h.update(id.as_bytes());
    h.update(&(payload.len() as u64).to_le_bytes());
    h.update(payload);
    h.update(&(vector.len() as u64).to_le_bytes());
    h.update(bytemuck::cast_slice(vector));
    if let Some(a) = attrs {
        h.update(bytemuck::bytes_of(a));
    }
    h.digest()
}

/// What a build did, for the provenance made by [`PartitionBuilder::write_with`].
#[derive(Clone, Copy, Debug)]
pub struct BuildOutcome<'a> {
    /// Rows inserted into the extended partition's graph (`None`: a full build).
    pub appended: Option<usize>,
    /// The graph's recall calibration queries use (`None` without a graph).
    pub calibration: Option<&'a Calibration>,
    /// Every calibration recorded (held-out rows first).
    pub calibrations: &'a [Calibration],
}

/// Collects rows, then builds and writes one partition file.
pub struct PartitionBuilder {
    dim: usize,
    vectors: Vec<f32>,
    norms: Vec<f64>,
    hashes: Vec<u64>,
    id_offsets: Vec<u64>,
    id_bytes: Vec<u8>,
    payload_offsets: Vec<u64>,
    payload_bytes: Vec<u8>,
    /// Per-row attributes, written when any row was added with some.
    attrs: AttrVecs,
    attrs_given: bool,
    /// The graph of the first rows, when extending a partition.
    base: Option<Graph>,
    /// The calibrations of the partition extended.
    base_calibrations: Vec<Calibration>,
    /// Queries to calibrate on besides held-out rows (normalised, row-major).
    calibration_queries: Vec<f32>,
    /// The quantisation of the partition extended (`None` without codes).
    base_quantization: Quantization,
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
            hashes: Vec::new(),
            id_offsets: vec![0],
            id_bytes: Vec::new(),
            payload_offsets: vec![0],
            payload_bytes: Vec::new(),
            attrs: AttrVecs::default(),
            attrs_given: false,
            base: None,
            base_calibrations: Vec::new(),
            calibration_queries: Vec::new(),
            base_quantization: Quantization::None,
        })
    }

    pub fn with_capacity(dim: usize, rows: usize) -> Result<Self> {
        let mut b = Self::new(dim)?;
        b.vectors.reserve(rows * dim);
        b.norms.reserve(rows);
        b.hashes.reserve(rows);
        b.id_offsets.reserve(rows);
        b.payload_offsets.reserve(rows);
        Ok(b)
    }

    /// A builder holding every row of `p` and, when `p` has a graph, that
    /// graph: rows added next are inserted into it rather than the graph
    /// being rebuilt (if the build parameters keep its M and builder).
    /// Needs a version-2 file (row hashes); `extra` reserves room for new rows.
    pub fn extending(p: &Partition, extra: usize) -> Result<Self> {
        let hashes = p.row_hashes().ok_or_else(|| {
            IndexError::BadParams(format!(
                "{} is a version-{} partition without row hashes; it cannot be extended, only rebuilt",
                p.path().display(),
                p.info().version
            ))
        })?;
        let n = p.len();
        let mut b = Self::with_capacity(p.dim(), n + extra)?;
        b.vectors.extend_from_slice(p.vectors());
        b.norms.extend_from_slice(p.norms());
        b.hashes.extend_from_slice(hashes);
        for row in 0..n {
            b.id_bytes.extend_from_slice(p.id(row)?.as_bytes());
            b.id_offsets.push(b.id_bytes.len() as u64);
            b.payload_bytes.extend_from_slice(p.payload(row)?);
            b.payload_offsets.push(b.payload_bytes.len() as u64);
        }
        if p.has_attrs() {
            b.attrs_given = true;
            for row in 0..n {
                b.attrs.push(p.attrs(row).unwrap_or_default());
            }
        } else {
            for _ in 0..n {
                b.attrs.push(RowAttrs::NONE);
            }
        }
        b.base = p.graph().map(|g| Graph::of(&g));
        b.base_calibrations = p.calibrations()?;
        b.base_quantization = p.quantization();
        Ok(b)
    }

    /// Rows that came with the partition being extended (0 for a new one).
    pub fn base_rows(&self) -> usize {
        self.base.as_ref().map_or(0, Graph::len)
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

    /// Calibrate the graph on `queries` (row-major, `dim` columns: the kind
    /// of query users send) besides the held-out rows; queries then take
    /// their breadth from this calibration. At most
    /// [`crate::CALIBRATION_QUERIES`] are measured (a seeded sample). Rejects
    /// a length that is not whole rows and NaN, infinite or all-zero rows.
    /// Returns the number of queries given.
    pub fn calibrate_on(&mut self, queries: &[f32]) -> Result<usize> {
        self.calibration_queries = normalised_queries(queries, self.dim)?;
        Ok(self.calibration_queries.len() / self.dim)
    }

    /// Add a row; returns its row number. Rejects wrong dimensions, NaN,
    /// infinite and all-zero vectors.
    pub fn add(&mut self, id: &str, vector: &[f32], payload: &[u8]) -> Result<u32> {
        self.push(id, vector, payload, None)
    }

    /// [`add`](Self::add) with the row's attributes for filtered search: the
    /// file gets the `ATTRIBUTES` section (rows added without are
    /// [`RowAttrs::NONE`]), and the row's hash covers them.
    pub fn add_with(&mut self, id: &str, vector: &[f32], payload: &[u8], attrs: RowAttrs) -> Result<u32> {
        self.push(id, vector, payload, Some(attrs))
    }

    fn push(&mut self, id: &str, vector: &[f32], payload: &[u8], attrs: Option<RowAttrs>) -> Result<u32> {
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
        self.hashes
            .push(row_hash_with(id, vector, payload, attrs.as_ref()));
        self.attrs_given |= attrs.is_some();
        self.attrs.push(attrs.unwrap_or(RowAttrs::NONE));
        self.id_bytes.extend_from_slice(id.as_bytes());
        self.id_offsets.push(self.id_bytes.len() as u64);
        self.payload_bytes.extend_from_slice(payload);
        self.payload_offsets.push(self.payload_bytes.len() as u64);
        Ok(row as u32)
    }

    /// Build the graph (unless the partition is small) and write the file at
    /// `path` atomically. `provenance` is stored verbatim; `progress(done, total)`
    /// is called as rows are inserted into the graph.
    ///
    /// A builder made by [`PartitionBuilder::extending`] inserts only the rows
    /// added since into the existing graph when it can: the graph exists,
    /// `params` keep its M and ask for our builder, and the partition is still
    /// above the flat threshold. Otherwise the graph is built from scratch.
    pub fn write(
        self,
        path: &Path,
        params: &BuildParams,
        provenance: &str,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<BuildStats> {
        self.write_with(path, params, |_| provenance.to_string(), progress)
    }

    /// [`PartitionBuilder::write`], with the provenance made once the graph
    /// is built and calibrated, so that it can record what the build did.
    pub fn write_with(
        mut self,
        path: &Path,
        params: &BuildParams,
        provenance: impl FnOnce(&BuildOutcome<'_>) -> String,
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
        // Fitted before the graph (whose insertions may search on the codes),
        // and on every write, appends too: encoding is a small share of a build.
        let quantized = graph
            .then(|| Quantized::fit(&self.vectors, self.dim, params.quantization))
            .flatten();
        let base = self
            .base
            .take()
            .filter(|g| graph && g.m == params.m && params.builder == GraphBuilder::Native);
        let appended = base.as_ref().map(|g| n - g.len());
        let layout = if graph {
            header.flags |= FLAG_GRAPH;
            let codes = quantized
                .as_ref()
                .filter(|_| params.build_on_codes)
                .map(Quantized::view);
            let g = self.build_graph(base, codes, params, progress)?;
            header.entry_point = g.entry_point;
            header.max_level = g.max_level;
            Some(g)
        } else {
            progress(n, n);
            None
        };
        let graph_seconds = graph_started.elapsed().as_secs_f64();
        let calibration_started = Instant::now();
        // An append adding under RECALIBRATE_AFTER of the rows calibrated keeps
        // that calibration if queries traverse the graph as they did when it
        // was measured (the same quantisation); anything else is measured anew.
        let same_path =
            self.base_quantization == quantized.as_ref().map_or(Quantization::None, Quantized::how);
        let small_append = |c: &Calibration| {
            appended.is_some() && same_path && (n - c.rows.min(n)) as f64 <= RECALIBRATE_AFTER * c.rows as f64
        };
        let base = std::mem::take(&mut self.base_calibrations);
        let carried = |which: CalibrationQueries| {
            base.iter()
                .find(|c| c.queries == which && small_append(c))
                .cloned()
        };
        let view = layout.as_ref().map(|g| g.view(&self.vectors, self.dim));
        let codes = quantized.as_ref().map(Quantized::view);
        let mut calibrations: Vec<Calibration> = Vec::new();
        if let Some(view) = &view {
            calibrations.extend(
                carried(CalibrationQueries::HeldOutRows).or_else(|| calibrate(view, codes, params.seed)),
            );
            calibrations.extend(
                carried(CalibrationQueries::Given)
                    .or_else(|| calibrate_on(view, codes, &self.calibration_queries, params.seed)),
            );
        }
        let calibration = calibration::preferred(&calibrations).cloned();
        let calibration_seconds = calibration_started.elapsed().as_secs_f64();
        // The first layout holds the held-out rows' (for readers that know
        // only it); `CALIBRATIONS` holds them all.
        let calibration_bytes = calibrations.first().map(Calibration::encode);
        let calibrations_bytes = (!calibrations.is_empty()).then(|| calibration::encode_all(&calibrations));
        let quantized_bytes = quantized.as_ref().map(Quantized::section);
        let provenance = provenance(&BuildOutcome {
            appended,
            calibration: calibration.as_ref(),
            calibrations: &calibrations,
        });

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
        if let Some(bytes) = &quantized_bytes {
            sections.push(Section {
                kind: kind::QUANTIZED,
                flags: SECTION_OPTIONAL,
                bytes,
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
                kind: kind::ROW_HASHES,
                flags: 0,
                bytes: bytemuck::cast_slice(&self.hashes),
            },
        ]);
        let attr_bytes = self.attrs_given.then(|| filter::encode(&self.attrs.rows()));
        if let Some(bytes) = &attr_bytes {
            sections.push(Section {
                kind: kind::ATTRIBUTES,
                flags: SECTION_OPTIONAL,
                bytes,
            });
        }
        if let Some(bytes) = &calibration_bytes {
            sections.push(Section {
                kind: kind::CALIBRATION,
                flags: 0,
                bytes,
            });
        }
        if let Some(bytes) = &calibrations_bytes {
            sections.push(Section {
                kind: kind::CALIBRATIONS,
                flags: SECTION_OPTIONAL,
                bytes,
            });
        }
        // Last: the caller's provenance varies in length (times, durations),
        // and no other section's offset should move with it.
        sections.push(Section {
            kind: kind::PROVENANCE,
            flags: 0,
            bytes: provenance.as_bytes(),
        });
        let file_bytes = write_partition(path, header, &sections)?;
        Ok(BuildStats {
            rows: n,
            graph,
            max_level: header.max_level,
            file_bytes,
            graph_seconds,
            total_seconds: started.elapsed().as_secs_f64(),
            appended,
            calibration,
            calibrations,
            calibration_seconds,
        })
    }

    /// The graph: `base` extended with the rows after it, or built from
    /// scratch in the seeded insertion order.
    fn build_graph(
        &self,
        base: Option<Graph>,
        codes: Option<QuantizedView<'_>>,
        params: &BuildParams,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Graph> {
        let n = self.len();
        let insert = InsertParams {
            m: params.m,
            ef_construction: params.ef_construction,
            seed: params.seed,
            deterministic: params.deterministic,
            new_links0: params.m + params.m / 2,
        };
        if let Some(base) = base {
            let order: Vec<usize> = (base.len()..n).collect();
            return Ok(insert::build(
                &self.vectors,
                self.dim,
                codes,
                Some(base),
                &order,
                &insert,
                progress,
            ));
        }
        let order = permutation(n, params.seed);
        match params.builder {
            GraphBuilder::Native => Ok(insert::build(
                &self.vectors,
                self.dim,
                codes,
                None,
                &order,
                &insert,
                progress,
            )),
            GraphBuilder::HnswRs => crate::reference::build(
                &self.vectors,
                self.dim,
                &order,
                params.m,
                params.ef_construction,
                params.deterministic,
                progress,
            ),
        }
    }
}

/// 0..n shuffled by `seed` (Fisher–Yates over splitmix64): the insertion order.
fn permutation(n: usize, seed: u64) -> Vec<usize> {
    // The splitmix64 stream: the state advances by the increment the mix adds.
    let mut state = seed;
    let mut next = move || {
        let z = splitmix64(state);
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z
    };
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}
