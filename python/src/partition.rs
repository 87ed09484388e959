//! `stabspace.Partition`: one memory-mapped index partition, searched from
//! numpy with the GIL released; and `stabspace.Hits`, what a search returns.

use std::ffi::CString;
use std::path::PathBuf;
use std::time::Instant;

use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray1};
use pyo3::exceptions::PyUserWarning;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use rayon::prelude::*;
use stabspace::nearest::breadth::{calibrated_ef, graph_breadth, Breadth, DEFAULT_RECALL};
use stabspace_index::{Hit, Partition as Engine};

use crate::arrays::{self, Shape, Vectors};
use crate::{errors, filters};
use stabspace::partitions::Provenance;
use stabspace::pointintime::{ScenarioFilter, ShockTypes};

/// An index partition file, memory-mapped (opening it reads only its header
/// and section table). Safe to share between threads; searches release the GIL.
#[pyclass(frozen, module = "stabspace")]
pub struct Partition {
    inner: Engine,
    /// The breadth for the default recall target, and a note when the
    /// partition cannot promise it.
    default_ef: (usize, Option<String>),
}

/// How one search call searches.
#[derive(Clone, Copy)]
enum How {
    Graph(usize),
    Exact,
}

#[pymethods]
impl Partition {
    /// Open the partition file at `path`. `quantized=False` traverses the graph on the f32
    /// vectors even where the file has int8 codes (slower; for comparison: the hits'
    /// cosines are exact either way).
    #[new]
    #[pyo3(signature = (path, quantized = true))]
    fn new(py: Python<'_>, path: PathBuf, quantized: bool) -> PyResult<Self> {
        let mut inner = py.detach(|| Engine::open(&path)).map_err(errors::engine)?;
        inner.set_quantized(quantized);
        let default_ef = calibrated_ef(&inner, DEFAULT_RECALL).map_err(errors::library)?;
        Ok(Partition { inner, default_ef })
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    fn __repr__(&self) -> String {
        format!(
            "stabspace.Partition({:?}, rows={}, dim={}, {})",
            self.inner.path().display().to_string(),
            self.inner.len(),
            self.inner.dim(),
            if self.inner.has_graph() {
                if self.inner.quantized_traversal() {
                    "graph, int8 traversal"
                } else {
                    "graph, f32 traversal"
                }
            } else {
                "flat (exact scans)"
            }
        )
    }

    /// Components per vector.
    #[getter]
    fn dim(&self) -> usize {
        self.inner.dim()
    }

    /// The file this partition was opened from.
    #[getter]
    fn path(&self) -> PathBuf {
        self.inner.path().to_path_buf()
    }

    /// The rows' ids, in row order.
    #[getter]
    fn ids<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let ids = (0..self.inner.len())
            .map(|r| self.inner.id(r))
            .collect::<Result<Vec<_>, _>>()
            .map_err(errors::engine)?;
        PyList::new(py, ids)
    }

    /// What the builder recorded about the partition's source (a dict).
    #[getter]
    fn provenance<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let text = self.inner.provenance().map_err(errors::engine)?;
        py.import("json")?.call_method1("loads", (text,)).map_err(|e| {
            errors::IndexError::new_err(format!(
                "{}: corrupt index: its provenance is not JSON ({})",
                self.inner.path().display(),
                e.value(py)
            ))
        })
    }

    /// The file's build parameters and recall calibration (a dict).
    #[getter]
    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let i = self.inner.info();
        let d = PyDict::new(py);
        d.set_item("rows", i.rows)?;
        d.set_item("dim", i.dim)?;
        d.set_item("graph", i.graph)?;
        d.set_item("m", i.m)?;
        d.set_item("ef_construction", i.ef_construction)?;
        d.set_item("max_level", i.max_level)?;
        d.set_item("deterministic", i.deterministic)?;
        d.set_item("seed", i.seed)?;
        d.set_item("format_version", i.version)?;
        d.set_item("file_bytes", i.file_bytes)?;
        d.set_item("quantized", i.quantized)?;
        d.set_item("traversal", self.traversal())?;
        let calibration = self.inner.calibration().map_err(errors::engine)?;
        d.set_item("calibrated_on", calibration.as_ref().map(|c| c.queries.name()))?;
        d.set_item("calibration", calibration.map(|c| crate::build::points(&c)))?;
        d.set_item("default_ef", self.inner.has_graph().then_some(self.default_ef.0))?;
        Ok(d)
    }

    /// How graph searches traverse: "int8-per-dimension", "f32", or None for a flat partition.
    #[getter]
    fn traversal(&self) -> Option<&'static str> {
        if !self.inner.has_graph() {
            None
        } else if self.inner.quantized_traversal() {
            self.inner.info().quantized
        } else {
            Some("f32")
        }
    }

    /// Check every section's checksum (reads the whole file). Raises stabspace.IndexError
    /// naming the file and the damage.
    fn verify(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.inner.verify()).map_err(errors::engine)
    }

    /// The smallest breadth that reached `recall` (recall@10) when the partition was built, or
    /// None for a flat partition (searches on it are exact).
    fn ef_for(&self, recall: f64) -> PyResult<Option<usize>> {
        let recall = arrays::recall(recall)?;
        if !self.inner.has_graph() {
            return Ok(None);
        }
        Ok(Some(
            calibrated_ef(&self.inner, recall).map_err(errors::library)?.0,
        ))
    }

    /// The `k` nearest rows to one vector `q` (1-D, float32 or float64): approximate top-k on
    /// the graph with breadth `ef`, then an exact re-rank. Without `ef`, the breadth is the
    /// one calibrated for `recall` (default 0.95). Returns Hits with 1-D arrays.
    ///
    /// `known_before` (a date) returns only rows known strictly before it (point-in-time),
    /// `shock_type` (a string or list) only those shock types, `min_severity` (a number or
    /// LOW … EXTREME) only rows at least that severe; the graph is searched with its beam
    /// widened as fewer rows are admitted, at the same calibrated recall. Hits then carry
    /// `admitted`, how many rows the filter admitted (0: none was known before the date).
    #[pyo3(signature = (q, k = 10, ef = None, recall = None, *, known_before = None, shock_type = None, min_severity = None))]
    #[allow(clippy::too_many_arguments, reason = "a search call's arguments")]
    fn search(
        &self,
        py: Python<'_>,
        q: &Bound<'_, PyAny>,
        k: i64,
        ef: Option<i64>,
        recall: Option<f64>,
        known_before: Option<&Bound<'_, PyAny>>,
        shock_type: Option<&Bound<'_, PyAny>>,
        min_severity: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Hits> {
        let (k, how, v) = self.query(py, q, "q", Shape::One, k, ef, recall)?;
        let q = v.flat();
        if let Some(filters) = filters::per_query(known_before, shock_type, min_severity, 1, false)? {
            let f = self.row_filters(&filters)?;
            let found = py
                .detach(|| self.inner.search_filtered(q, k, ef_of(how), &f[0]))
                .map_err(errors::engine)?;
            let admitted = vec![found.admitted];
            return Hits::new(py, vec![found.hits], k.min(self.inner.len()), false, how)?
                .with_admitted(py, admitted, false);
        }
        let hits = py
            .detach(|| match how {
                How::Graph(ef) => self.inner.search(q, k, ef),
                How::Exact => self.inner.search_exact(q, k),
            })
            .map_err(errors::engine)?;
        Hits::new(py, vec![hits], k.min(self.inner.len()), false, how)
    }

    /// The `k` nearest rows to each row of `Q` (2-D, n × dim), searched in parallel on the
    /// thread pool (RAYON_NUM_THREADS sets its size) with the GIL released. Returns Hits with
    /// `ids` a list of n lists and `rows`, `cosine`, `euclidean` arrays of shape (n, k).
    /// `known_before` is one date for every row of `Q` or a sequence of n dates (each query
    /// sees only rows known strictly before its own); `shock_type` and `min_severity` as in
    /// `search`. Filtered Hits carry `admitted`, an int64 array of n counts.
    #[pyo3(signature = (Q, k = 10, ef = None, recall = None, *, known_before = None, shock_type = None, min_severity = None))]
    #[allow(non_snake_case, reason = "a matrix, as numpy users write it")]
    #[allow(clippy::too_many_arguments, reason = "a search call's arguments")]
    fn search_batch(
        &self,
        py: Python<'_>,
        Q: &Bound<'_, PyAny>,
        k: i64,
        ef: Option<i64>,
        recall: Option<f64>,
        known_before: Option<&Bound<'_, PyAny>>,
        shock_type: Option<&Bound<'_, PyAny>>,
        min_severity: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Hits> {
        let (k, how, v) = self.query(py, Q, "Q", Shape::Many, k, ef, recall)?;
        let flat = v.flat();
        let n = flat.len() / self.inner.dim().max(1);
        if let Some(filters) = filters::per_query(known_before, shock_type, min_severity, n, true)? {
            let f = self.row_filters(&filters)?;
            let queries: Vec<Vec<f32>> = flat
                .chunks_exact(self.inner.dim().max(1))
                .map(<[f32]>::to_vec)
                .collect();
            let found = py
                .detach(|| self.inner.search_batch_filtered(&queries, &f, k, ef_of(how)))
                .map_err(errors::engine)?;
            let admitted: Vec<usize> = found.iter().map(|f| f.admitted).collect();
            let hits = found.into_iter().map(|f| f.hits).collect();
            return Hits::new(py, hits, k.min(self.inner.len()), true, how)?
                .with_admitted(py, admitted, true);
        }
        let hits = py.detach(|| self.batch(flat, k, how)).map_err(errors::engine)?;
        Hits::new(py, hits, k.min(self.inner.len()), true, how)
    }

    /// Exact top-k by scanning every row: for one vector (1-D, like `search`) or a matrix of
    /// them (2-D, like `search_batch`, scanned in blocks of queries that share each pass).
    #[pyo3(signature = (q, k = 10))]
    fn search_exact(&self, py: Python<'_>, q: &Bound<'_, PyAny>, k: i64) -> PyResult<Hits> {
        let k = arrays::positive("k", k)?;
        let v = arrays::read(q, "q", Shape::Either, Some(self.inner.dim()))?;
        let flat = v.flat();
        let hits = py
            .detach(|| self.batch(flat, k, How::Exact))
            .map_err(errors::engine)?;
        Hits::new(py, hits, k.min(self.inner.len()), v.matrix, How::Exact)
    }

    /// For benchmarks: seconds that `repeat` searches of `q` take inside Rust, with no Python
    /// in the loop (what `search` costs without the binding).
    #[pyo3(signature = (q, k = 10, ef = None, repeat = 1000))]
    fn _time_search(
        &self,
        py: Python<'_>,
        q: &Bound<'_, PyAny>,
        k: i64,
        ef: Option<i64>,
        repeat: u32,
    ) -> PyResult<f64> {
        let (k, how, v) = self.query(py, q, "q", Shape::One, k, ef, None)?;
        let q = v.flat();
        py.detach(|| {
            let started = Instant::now();
            for _ in 0..repeat {
                match how {
                    How::Graph(ef) => std::hint::black_box(self.inner.search(q, k, ef)?),
                    How::Exact => std::hint::black_box(self.inner.search_exact(q, k)?),
                };
            }
            Ok(started.elapsed().as_secs_f64())
        })
        .map_err(errors::engine)
    }
}

impl Partition {
    /// The engine's filters of `filters`: shock types numbered as the
    /// partition's provenance records them.
    fn row_filters(&self, filters: &[ScenarioFilter]) -> PyResult<Vec<stabspace_index::RowFilter>> {
        if !self.inner.has_attrs() {
            return Err(errors::engine(stabspace_index::IndexError::NoAttributes {
                path: self.inner.path().to_path_buf(),
            }));
        }
        let types = ShockTypes(
            Provenance::of(&self.inner)
                .ok()
                .and_then(|p| p.shock_types)
                .unwrap_or_default(),
        );
        Ok(filters.iter().map(|f| f.row_filter(&types)).collect())
    }

    /// What every search checks first: `k`, the breadth, and the query vectors.
    #[allow(clippy::too_many_arguments, reason = "a search call's arguments, passed on")]
    fn query<'py>(
        &self,
        py: Python<'py>,
        q: &Bound<'py, PyAny>,
        name: &str,
        shape: Shape,
        k: i64,
        ef: Option<i64>,
        recall: Option<f64>,
    ) -> PyResult<(usize, How, Vectors<'py>)> {
        let k = arrays::positive("k", k)?;
        let how = self.how(py, k, ef, recall)?;
        let v = arrays::read(q, name, shape, Some(self.inner.dim()))?;
        Ok((k, how, v))
    }

    /// The search breadth from `ef` or `recall`; an exact scan for a flat partition or when
    /// the breadth covers every row (the engine scans then).
    fn how(&self, py: Python<'_>, k: usize, ef: Option<i64>, recall: Option<f64>) -> PyResult<How> {
        let asked = Breadth::checked(ef, recall, false, None).map_err(arrays::refused)?;
        if !self.inner.has_graph() {
            return Ok(How::Exact);
        }
        let (ef, note) = match (asked.ef, asked.recall) {
            (None, None) => (Some(self.default_ef.0), self.default_ef.1.clone()),
            _ => asked.ef_on(&self.inner).map_err(errors::library)?,
        };
        if let Some(note) = note {
            let msg = CString::new(note).unwrap_or_default();
            // Stack level 1: the caller's line (a builtin has no frame of its own).
            PyErr::warn(py, &py.get_type::<PyUserWarning>(), &msg, 1)?;
        }
        Ok(graph_breadth(&self.inner, ef, k).map_or(How::Exact, How::Graph))
    }

    /// Search each of the vectors laid end to end in `flat` (the partition's dimension each).
    fn batch(&self, flat: &[f32], k: usize, how: How) -> stabspace_index::Result<Vec<Vec<Hit>>> {
        let rows = flat.par_chunks_exact(self.inner.dim().max(1));
        match how {
            How::Graph(ef) => rows.map(|q| self.inner.search(q, k, ef)).collect(),
            How::Exact => {
                let queries: Vec<Vec<f32>> = rows.map(<[f32]>::to_vec).collect();
                self.inner.search_batch(&queries, k, None)
            }
        }
    }
}

/// What a search returns: the hits' `ids`, `rows` (row numbers in the file, int64),
/// `cosine` and `euclidean` (float64, on the vectors as given), best first. One query gives
/// 1-D arrays of length k; a batch gives arrays of shape (n, k) and a list of n id lists,
/// k clamped to the row count. Places a search left empty hold None, -1 and NaN.
#[pyclass(frozen, module = "stabspace")]
pub struct Hits {
    #[pyo3(get)]
    ids: Py<PyAny>,
    #[pyo3(get)]
    rows: Py<PyAny>,
    #[pyo3(get)]
    cosine: Py<PyAny>,
    #[pyo3(get)]
    euclidean: Py<PyAny>,
    /// The breadth the graph search used, or None for an exact scan.
    #[pyo3(get)]
    ef: Option<usize>,
    /// How the hits were found: "index" (the graph) or "exact-scan" (every row of the file).
    #[pyo3(get)]
    answered_by: &'static str,
    /// Whether the partition was behind its database: None, since a partition file opened
    /// on its own knows no database (a Connection's frames carry the column).
    #[pyo3(get)]
    partition_stale: Option<bool>,
    /// With a filter (`known_before`, `shock_type`, `min_severity`): how many rows it
    /// admitted (an int for one query, an int64 array for a batch); else None.
    #[pyo3(get)]
    admitted: Option<Py<PyAny>>,
    queries: usize,
}

impl Hits {
    fn new(py: Python<'_>, hits: Vec<Vec<Hit>>, k: usize, matrix: bool, how: How) -> PyResult<Hits> {
        let n = hits.len();
        let mut rows = vec![-1i64; n * k];
        let mut cosine = vec![f64::NAN; n * k];
        let mut euclidean = vec![f64::NAN; n * k];
        let ids = PyList::empty(py);
        for (i, hs) in hits.iter().enumerate() {
            let mut names: Vec<Option<&str>> = vec![None; k];
            for (j, h) in hs.iter().take(k).enumerate() {
                rows[i * k + j] = i64::from(h.row);
                cosine[i * k + j] = h.cosine;
                euclidean[i * k + j] = h.euclidean;
                names[j] = Some(&h.id);
            }
            let names = PyList::new(py, names)?;
            if matrix {
                ids.append(names)?;
            } else {
                return Ok(Hits {
                    ids: names.into_any().unbind(),
                    rows: PyArray1::from_vec(py, rows).into_any().unbind(),
                    cosine: PyArray1::from_vec(py, cosine).into_any().unbind(),
                    euclidean: PyArray1::from_vec(py, euclidean).into_any().unbind(),
                    ef: ef_of(how),
                    answered_by: answered_by(how),
                    partition_stale: None,
                    admitted: None,
                    queries: 1,
                });
            }
        }
        let shaped = |v: Vec<f64>| {
            Array2::from_shape_vec((n, k), v)
                .expect("n × k values")
                .into_pyarray(py)
        };
        Ok(Hits {
            ids: ids.into_any().unbind(),
            rows: Array2::from_shape_vec((n, k), rows)
                .expect("n × k rows")
                .into_pyarray(py)
                .into_any()
                .unbind(),
            cosine: shaped(cosine).into_any().unbind(),
            euclidean: shaped(euclidean).into_any().unbind(),
            ef: ef_of(how),
            answered_by: answered_by(how),
            partition_stale: None,
            admitted: None,
            queries: n,
        })
    }
}

impl Hits {
    /// These hits with the filter's admitted counts.
    fn with_admitted(mut self, py: Python<'_>, admitted: Vec<usize>, matrix: bool) -> PyResult<Hits> {
        self.admitted = Some(if matrix {
            let counts: Vec<i64> = admitted.iter().map(|&a| a as i64).collect();
            PyArray1::from_vec(py, counts).into_any().unbind()
        } else {
            admitted[0].into_pyobject(py)?.into_any().unbind()
        });
        Ok(self)
    }
}

fn answered_by(how: How) -> &'static str {
    match how {
        How::Graph(_) => stabspace::nearest::AnsweredBy::Index.label(),
        How::Exact => stabspace::nearest::AnsweredBy::ExactScan.label(),
    }
}

fn ef_of(how: How) -> Option<usize> {
    match how {
        How::Graph(ef) => Some(ef),
        How::Exact => None,
    }
}

#[pymethods]
impl Hits {
    /// Queries answered (1 for a single vector).
    fn __len__(&self) -> usize {
        self.queries
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "stabspace.Hits(ids={}, cosine={}, ef={}, answered_by={:?})",
            self.ids.bind(py).repr()?,
            self.cosine.bind(py).repr()?,
            self.ef.map_or("None (exact)".to_string(), |e| e.to_string()),
            self.answered_by
        ))
    }
}
