//! The `stabspace._stabspace` extension module: the engine and the query
//! workflows for Python (the package `stabspace` re-exports it; see
//! `python/README.md`). Bad input raises `ValueError`, a damaged partition
//! `stabspace.IndexError`, a database failure `stabspace.DatabaseError`.

#![forbid(unsafe_code)]

mod arrays;
mod build;
mod connect;
mod errors;
mod filters;
mod partition;

use pyo3::prelude::*;

#[pymodule]
fn _stabspace(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("Error", py.get_type::<errors::Error>())?;
    m.add("IndexError", py.get_type::<errors::IndexError>())?;
    m.add("DatabaseError", py.get_type::<errors::DatabaseError>())?;
    m.add_class::<partition::Partition>()?;
    m.add_class::<partition::Hits>()?;
    m.add_class::<connect::Connection>()?;
    m.add_function(wrap_pyfunction!(build::build, m)?)?;
    m.add_function(wrap_pyfunction!(connect::connect, m)?)?;
    Ok(())
}
