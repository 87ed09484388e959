//! Vectors from Python: a numpy array of native float32 is read in place when
//! it is C-contiguous and aligned; other float arrays (float64, strided,
//! unaligned, big-endian) are copied once by numpy, and sequences (lists) are
//! read as float64. Other dtypes are refused. Every vector is checked here, so that a
//! bad one is a `ValueError` naming its row and component.

use numpy::{
    PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArray,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use stabspace::nearest::breadth::{self, Refused};
use stabspace::vector::{self, Unusable};

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
            // Checked aligned and C-contiguous when read; an empty slice otherwise
            // (unreachable) rather than a panic across the FFI boundary.
            Data::Borrowed(a) => a.as_slice().unwrap_or(&[]),
            Data::Owned(v) => v,
        }
    }
}

/// Read `obj` (named `name` in messages) as vectors of `dim` components
/// (`None`: any, as in a build). Each must be finite and not all zeros.
pub fn read<'py>(
    obj: &Bound<'py, PyAny>,
    name: &str,
    shape: Shape,
    dim: Option<usize>,
) -> PyResult<Vectors<'py>> {
    let py = obj.py();
    // Sequences (lists, tuples) become float64 arrays; arrays keep their dtype
    // so that a wrong one is named.
    let arr: Bound<'py, PyUntypedArray> = match obj.cast::<PyUntypedArray>() {
        Ok(a) => a.clone(),
        Err(_) => py
            .import("numpy")?
            .call_method1("asarray", (obj, "float64"))
            .map_err(|e| {
                PyValueError::new_err(format!("{name} is not an array of numbers: {}", e.value(py)))
            })?
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
    let dtype = arr.dtype();
    if dtype.kind() != b'f' {
        return Err(PyValueError::new_err(format!(
            "{name} has dtype {dtype}; expected float32 or float64"
        )));
    }
    let data = match in_place(&arr) {
        Some(ro) => Data::Borrowed(ro),
        None => {
            // Anything else (float64 or float16, strided, unaligned, other byte
            // order): numpy copies it into a fresh aligned, native, row-major array
            // (`numpy.array` copies always; `ascontiguousarray` keeps an unaligned
            // array as it is). A float32 copy is then read in place.
            let np = py.import("numpy")?;
            let wide = dtype.itemsize() > 4;
            let kwargs = pyo3::types::PyDict::new(py);
            kwargs.set_item("dtype", np.getattr(if wide { "float64" } else { "float32" })?)?;
            kwargs.set_item("order", "C")?;
            let copy = np.call_method("array", (&arr,), Some(&kwargs))?;
            let unreadable = || PyValueError::new_err(format!("{name}: numpy's copy cannot be read"));
            if wide {
                let a = copy
                    .cast::<PyArrayDyn<f64>>()
                    .map_err(|_| unreadable())?
                    .readonly();
                Data::Owned(narrow(
                    a.as_slice().map_err(|_| unreadable())?,
                    name,
                    matrix,
                    cols,
                )?)
            } else {
                Data::Borrowed(
                    in_place(copy.cast::<PyUntypedArray>().map_err(|_| unreadable())?)
                        .ok_or_else(unreadable)?,
                )
            }
        }
    };
    let v = Vectors {
        data,
        rows,
        dim: cols,
        matrix,
    };
    check(&v, name)?;
    Ok(v)
}

/// The array as it is, when it is native float32, row-major and aligned (`as_slice`
/// checks alignment and contiguity; numpy calls a Fortran-ordered array contiguous too).
fn in_place<'py>(arr: &Bound<'py, PyUntypedArray>) -> Option<PyReadonlyArrayDyn<'py, f32>> {
    let ro = arr.cast::<PyArrayDyn<f32>>().ok()?.readonly();
    (arr.is_c_contiguous() && ro.as_slice().is_ok()).then_some(ro)
}

/// float64 components as float32, refusing one beyond float32's range.
fn narrow(xs: &[f64], name: &str, matrix: bool, cols: usize) -> PyResult<Vec<f32>> {
    xs.iter()
        .enumerate()
        .map(|(i, &x)| {
            let y = x as f32;
            if x.is_finite() && !y.is_finite() {
                return Err(PyValueError::new_err(format!(
                    "{}component {} is {x}, beyond float32's range",
                    row_label(name, matrix, i / cols),
                    i % cols
                )));
            }
            Ok(y)
        })
        .collect()
}

/// Every row usable for a cosine: the library's own test ([`vector::unusable`]).
fn check(v: &Vectors<'_>, name: &str) -> PyResult<()> {
    if v.dim == 0 {
        return Ok(());
    }
    for (r, row) in v.flat().chunks_exact(v.dim).enumerate() {
        let label = || row_label(name, v.matrix, r);
        match vector::unusable(row) {
            None => {}
            Some(Unusable::NonFinite { position, value }) => {
                return Err(PyValueError::new_err(format!(
                    "{}component {position} is {value}, not a finite number",
                    label()
                )))
            }
            Some(_) => {
                return Err(PyValueError::new_err(format!(
                    "{}is all zeros: it has no direction, so no cosine",
                    label()
                )))
            }
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
pub fn positive(name: &'static str, v: i64) -> PyResult<usize> {
    breadth::positive(name, v, None).map_err(refused)
}

/// A target recall: in (0, 1].
pub fn recall(v: f64) -> PyResult<f64> {
    breadth::recall(v).map_err(refused)
}

/// A search argument the library refused, as Python's ValueError.
pub fn refused(r: Refused) -> PyErr {
    PyValueError::new_err(r.to_string())
}
