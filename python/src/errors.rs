//! The package's exceptions, and how the engine's and the library's errors
//! map onto them: bad input is a `ValueError`, a damaged partition file a
//! `stabspace.IndexError`, a database failure a `stabspace.DatabaseError`.

use pyo3::exceptions::{PyException, PyFileNotFoundError, PyOSError, PyValueError};
use pyo3::{create_exception, PyErr};
use stabspace_index::IndexError as EngineError;

create_exception!(
    stabspace,
    Error,
    PyException,
    "Base class of the errors stabspace raises itself (bad input raises ValueError)."
);
create_exception!(
    stabspace,
    IndexError,
    Error,
    "A partition file that cannot be used: not an index, an unsupported format version, \
     truncated or corrupt. The message names the file; rebuild it with `stabspace index rebuild`."
);
create_exception!(
    stabspace,
    DatabaseError,
    Error,
    "The database cannot be reached, lacks migrations, or a query on it failed."
);

/// The engine's error as a Python exception.
pub fn engine(e: EngineError) -> PyErr {
    let msg = e.to_string();
    match e {
        EngineError::Io { source, .. } => os_error(&source, msg),
        EngineError::WrongDimension { .. }
        | EngineError::NonFinite { .. }
        | EngineError::ZeroVector { .. }
        | EngineError::BadQuery(_)
        | EngineError::BadParams(_)
        | EngineError::BadVectorFile { .. } => PyValueError::new_err(msg),
        EngineError::NotAnIndex { .. }
        | EngineError::UnsupportedVersion { .. }
        | EngineError::NoAttributes { .. }
        | EngineError::Corrupt { .. } => IndexError::new_err(msg),
    }
}

/// The library's error as a Python exception.
pub fn library(e: stabspace::Error) -> PyErr {
    use stabspace::Error as E;
    let msg = e.to_string();
    match e {
        E::Index(e) => engine(e),
        E::Unreachable { .. }
        | E::Database { .. }
        | E::Migrate { .. }
        | E::NoDatabase { .. }
        | E::ReadOnlyNeedsMigration { .. }
        | E::Standby { .. } => DatabaseError::new_err(msg),
        E::Io { source, .. } => os_error(&source, msg),
        E::MissingDirectory { .. } => PyFileNotFoundError::new_err(msg),
        E::UnsupportedUrl { .. }
        | E::MissingColumn { .. }
        | E::BadField { .. }
        | E::BadRow { .. }
        | E::UnknownModel { .. }
        | E::MixedSpaces { .. }
        | E::Invalid(_)
        | E::OtherJointModel { .. } => PyValueError::new_err(msg),
    }
}

/// An I/O error as the OSError subclass of its errno (FileNotFoundError,
/// PermissionError, IsADirectoryError, …), with the message naming the path.
fn os_error(source: &std::io::Error, msg: String) -> PyErr {
    match source.raw_os_error() {
        Some(errno) => PyOSError::new_err((errno, msg)),
        None => PyOSError::new_err(msg),
    }
}
