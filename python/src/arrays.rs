//! Vectors from Python: a numpy array of float32 is read in place when it is
//! C-contiguous; float64, strided arrays and anything `numpy.asarray` accepts
//! (lists, say) are converted once. Every vector is checked here, so that a
//! bad one is a `ValueError` naming its row and component.

use numpy::{PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// The shapes an argument may have.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One vector, `(dim,)`.
    One,
    /// A matrix of vectors, `(n, dim)`.
    Many,
    /// Either.
    Either,
}

/// Rows of float32 vectors read from a Python object.
pub struct Vectors<'py> {
    data: Data<'py>,
    /// Rows: 1 for a 1-D argument.
    pub rows: usize,
    pub dim: usize,
    /// Whether the argument was 2-D.
    pub matrix: bool,
}

enum Data<'py> {
    Borrowed(PyReadonlyArrayDyn<'py, f32>),
    Owned(Vec<f32>),
}

impl Vectors<'_> {
    /// The rows, one after another.
    pub fn flat(&self) -> &[f32] {
        match &self.data {
            Data::Borrowed(a) => a.as_slice().expect("checked C-contiguous when read"),
            Data::Owned(v) => v,
        }
    }
}

/// Read `obj` (named `name` in messages) as vectors of `dim` components
/// (`None`: any, as in a build). Each must be finite; with `nonzero`, not all zeros.
pub fn read<'py>(
    obj: &Bound<'py, PyAny>,
    name: &str,
    shape: Shape,
    dim: Option<usize>,
    nonzero: bool,
) -> PyResult<Vectors<'py>> {
    let py = obj.py();
    let arr: Bound<'py, PyUntypedArray> = match obj.cast::<PyUntypedArray>() {
        Ok(a) => a.clone(),
        Err(_) => py
            .import("numpy")?
            .call_method1("asarray", (obj,))?
            .cast_into::<PyUntypedArray>()
            .map_err(|_| PyValueError::new_err(format!("{name} is not an array of numbers")))?,
    };
    let dims = arr.shape().to_vec();
    let expected = match shape {
        Shape::One => "a 1-D array (one vector)",
        Shape::Many => "a 2-D array (one vector per row)",
        Shape::Either => "a 1-D array (one vector) or a 2-D array (one vector per row)",
    };
    let matrix = match (dims.len(), shape) {
        (1, Shape::One | Shape::Either) => false,
        (2, Shape::Many | Shape::Either) => true,
        _ => {
            return Err(PyValueError::new_err(format!(
                "{name} must be {expected}; got an array of shape {}",
                shape_text(&dims)
            )))
        }
    };
    let (rows, cols) = if matrix { (dims[0], dims[1]) } else { (1, dims[0]) };
    if let Some(dim) = dim {
        if cols != dim {
            return Err(PyValueError::new_err(format!(
                "{name} has {cols} components per vector (shape {}); the partition's vectors have {dim}",
                shape_text(&dims)
            )));
        }
    } else if cols == 0 {
        return Err(PyValueError::new_err(format!(
            "{name} has vectors of 0 components (shape {})",
            shape_text(&dims)
        )));
    }
    let data = if let Ok(a) = arr.cast::<PyArrayDyn<f32>>() {
        let ro = a.readonly();
        // Row-major only: numpy calls a Fortran-ordered array contiguous too.
        if arr.is_c_contiguous() {
            Data::Borrowed(ro)
        } else {
            Data::Owned(ro.as_array().iter().copied().collect())
        }
    } else if let Ok(a) = arr.cast::<PyArrayDyn<f64>>() {
        let ro = a.readonly();
        let mut out = Vec::with_capacity(rows * cols);
        for (i, &x) in ro.as_array().iter().enumerate() {
            let y = x as f32;
            if x.is_finite() && !y.is_finite() {
                return Err(PyValueError::new_err(format!(
                    "{}component {} is {x}, beyond float32's range",
                    row_label(name, matrix, i / cols),
                    i % cols
                )));
            }
            out.push(y);
        }
        Data::Owned(out)
    } else {
        return Err(PyValueError::new_err(format!(
            "{name} has dtype {}; expected float32 or float64",
            arr.dtype()
        )));
    };
    let v = Vectors {
        data,
        rows,
        dim: cols,
        matrix,
    };
    check(&v, name, nonzero)?;
    Ok(v)
}

fn check(v: &Vectors<'_>, name: &str, nonzero: bool) -> PyResult<()> {
    if v.dim == 0 {
        return Ok(());
    }
    for (r, row) in v.flat().chunks_exact(v.dim).enumerate() {
        if let Some(c) = row.iter().position(|x| !x.is_finite()) {
            return Err(PyValueError::new_err(format!(
                "{}component {c} is {}, not a finite number",
                row_label(name, v.matrix, r),
                row[c]
            )));
        }
        if nonzero && row.iter().all(|&x| x == 0.0) {
            return Err(PyValueError::new_err(format!(
                "{}is all zeros: it has no direction, so no cosine",
                row_label(name, v.matrix, r)
            )));
        }
    }
    Ok(())
}

fn row_label(name: &str, matrix: bool, row: usize) -> String {
    if matrix {
        format!("{name}[{row}]: ")
    } else {
        format!("{name}: ")
    }
}

fn shape_text(dims: &[usize]) -> String {
    match dims {
        [d] => format!("({d},)"),
        _ => format!(
            "({})",
            dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// `k`, `ef` and `top_k` arrive as Python ints: at least 1.
pub fn positive(name: &str, v: i64) -> PyResult<usize> {
    if v < 1 {
        return Err(PyValueError::new_err(format!(
            "{name} must be at least 1, got {v}"
        )));
    }
    Ok(usize::try_from(v).unwrap_or(usize::MAX))
}

/// A target recall: in (0, 1].
pub fn recall(v: f64) -> PyResult<f64> {
    if v > 0.0 && v <= 1.0 {
        Ok(v)
    } else {
        Err(PyValueError::new_err(format!(
            "recall must be between 0 (exclusive) and 1, got {v}"
        )))
    }
}
