//! Checking a vector as given (its dimension, finite components, a non-zero
//! norm), for the builders and for queries.

use crate::error::{IndexError, Result};

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

/// Query vectors (row-major, `dim` columns) normalised, each checked as a
/// row is: a length that is not whole rows, NaN, infinite and all-zero rows
/// are refused, naming the query's row.
pub(crate) fn normalised_queries(queries: &[f32], dim: usize) -> Result<Vec<f32>> {
    if !queries.len().is_multiple_of(dim) {
        return Err(IndexError::WrongDimension {
            row: queries.len() / dim,
            expected: dim,
            got: queries.len() % dim,
        });
    }
    let mut out = Vec::with_capacity(queries.len());
    for (row, v) in queries.chunks_exact(dim).enumerate() {
        let norm = checked_norm(row, dim, v)?;
        out.extend(v.iter().map(|&x| (f64::from(x) / norm) as f32));
    }
    Ok(out)
}
