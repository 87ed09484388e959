//! The one error type of `stabspace-index`.

use std::path::PathBuf;

pub type Result<T, E = IndexError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A vector has the wrong number of components.
    #[error("row {row}: vector has {got} dimensions, expected {expected}")]
    WrongDimension { row: usize, expected: usize, got: usize },

    /// A vector has a NaN or infinite component.
    #[error("row {row}: component {component} is {value}, not a finite number")]
    NonFinite {
        row: usize,
        component: usize,
        value: f32,
    },

    /// A vector is all zeros (it has no direction, so no cosine).
    #[error("row {row}: vector is all zeros")]
    ZeroVector { row: usize },

    /// A query has the wrong dimension or is not a usable vector.
    #[error("query: {0}")]
    BadQuery(String),

    #[error("invalid build parameters: {0}")]
    BadParams(String),

    /// A vector file (`.npy`, `.fvecs`, raw `.f32`) cannot be used as a matrix of vectors.
    #[error("{}: cannot read vectors: {reason}", path.display())]
    BadVectorFile { path: PathBuf, reason: String },

    /// The file is not a stabspace index at all.
    #[error("{}: not a stabspace index file ({reason})", path.display())]
    NotAnIndex { path: PathBuf, reason: String },

    /// The file was written in a format version this build cannot read.
    #[error(
        "{}: index format version {found}, this build reads versions {min} to {max}; \
         rebuild it with `stabspace index rebuild`",
        path.display()
    )]
    UnsupportedVersion {
        path: PathBuf,
        found: u32,
        min: u32,
        max: u32,
    },

    /// A filtered search of a partition written without per-row attributes.
    #[error(
        "{}: the partition has no per-row attributes (it was built before filtered search); \
         rebuild it with `stabspace index rebuild`",
        path.display()
    )]
    NoAttributes { path: PathBuf },

    /// The file is damaged: truncated, a checksum mismatch, an offset out of range.
    #[error("{}: corrupt index: {reason}; rebuild it with `stabspace index rebuild`", path.display())]
    Corrupt { path: PathBuf, reason: String },
}

impl IndexError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        IndexError::Io {
            path: path.into(),
            source,
        }
    }
}
