//! `stabspace.build`: write a partition file from numpy arrays.

use std::collections::HashMap;
use std::path::PathBuf;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use stabspace_index::{BuildParams, Calibration, PartitionBuilder, Quantization};

use crate::arrays::{self, Shape};
use crate::errors;

/// Build a partition file at `path` from `ids` (n strings, distinct) and `vectors` (n × dim,
/// float32 or float64; any non-zero finite vectors: they are stored L2-normalised with their
/// norms). The file is written to a temporary name and renamed over `path`, so readers see
/// the old file or the new one, never a half-written one. Partitions of up to 2,000 rows are
/// flat (searched exactly); larger ones get an HNSW graph with `m` links per row and breadth
/// `ef_construction`, int8 codes for the traversal (`quantized`), and a recall calibration.
/// `deterministic=True` builds on one thread, the same file for the same input.
/// `provenance` (any JSON-serialisable value) is stored in the file. `calibration_queries`
/// (q × dim, the kind of query you will send) calibrates the recall on those queries besides
/// the file's own held-out rows, and searches then take their breadth from it. Returns the
/// build's figures as a dict.
#[pyfunction]
#[pyo3(signature = (path, ids, vectors, m = 16, ef_construction = 200, deterministic = false, quantized = true, provenance = None, calibration_queries = None))]
#[allow(
    clippy::too_many_arguments,
    reason = "the keyword arguments of one Python function"
)]
pub fn build<'py>(
    py: Python<'py>,
    path: PathBuf,
    ids: Vec<String>,
    vectors: &Bound<'py, PyAny>,
    m: i64,
    ef_construction: i64,
    deterministic: bool,
    quantized: bool,
    provenance: Option<&Bound<'py, PyAny>>,
    calibration_queries: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let v = arrays::read(vectors, "vectors", Shape::Many, None)?;
    let queries = calibration_queries
        .map(|q| arrays::read(q, "calibration_queries", Shape::Many, Some(v.dim)))
        .transpose()?
        .map(|q| q.flat().to_vec());
    if ids.len() != v.rows {
        return Err(PyValueError::new_err(format!(
            "{} ids for {} vectors: give one id per row",
            ids.len(),
            v.rows
        )));
    }
    let mut seen = HashMap::with_capacity(ids.len());
    for (i, id) in ids.iter().enumerate() {
        if let Some(first) = seen.insert(id.as_str(), i) {
            return Err(PyValueError::new_err(format!(
                "ids[{i}] {id:?} repeats ids[{first}]"
            )));
        }
    }
    let params = BuildParams {
        m: arrays::positive("m", m)?,
        ef_construction: arrays::positive("ef_construction", ef_construction)?,
        deterministic,
        quantization: if quantized {
            Quantization::default()
        } else {
            Quantization::None
        },
        ..BuildParams::default()
    };
    let provenance: String = match provenance {
        Some(p) => py.import("json")?.call_method1("dumps", (p,))?.extract()?,
        None => serde_json::json!({
            "built_by": concat!("stabspace-python ", env!("CARGO_PKG_VERSION")),
            "rows": v.rows,
        })
        .to_string(),
    };
    let (flat, dim, rows) = (v.flat(), v.dim, v.rows);
    let stats = py
        .detach(|| {
            let mut b = PartitionBuilder::with_capacity(dim, rows)?;
            for (id, row) in ids.iter().zip(flat.chunks_exact(dim)) {
                b.add(id, row, b"")?;
            }
            if let Some(q) = &queries {
                b.calibrate_on(q)?;
            }
            b.write(&path, &params, &provenance, &mut |_, _| {})
        })
        .map_err(errors::engine)?;
    let d = PyDict::new(py);
    d.set_item("path", path)?;
    d.set_item("rows", stats.rows)?;
    d.set_item("dim", v.dim)?;
    d.set_item("graph", stats.graph)?;
    d.set_item("max_level", stats.max_level)?;
    d.set_item("file_bytes", stats.file_bytes)?;
    d.set_item("graph_seconds", stats.graph_seconds)?;
    d.set_item("calibration_seconds", stats.calibration_seconds)?;
    d.set_item("total_seconds", stats.total_seconds)?;
    d.set_item("calibration", stats.calibration.as_ref().map(points))?;
    d.set_item(
        "calibrated_on",
        stats.calibration.as_ref().map(|c| c.queries.name()),
    )?;
    Ok(d)
}

/// A calibration's (ef, recall@10) points, the recalls (measured as f32) rounded to
/// six decimals so that 0.95 reads as 0.95.
pub fn points(c: &Calibration) -> Vec<(usize, f64)> {
    c.points
        .iter()
        .map(|&(ef, r)| (ef, (r * 1e6).round() / 1e6))
        .collect()
}
