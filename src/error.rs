//! The one error type of the `stabspace` library.
//!
//! Every variant carries what a user needs to fix the problem: the file, line
//! and column of bad input, the database (with its password hidden), the known
//! alternatives to an unknown name.

use std::path::PathBuf;

/// Result alias used throughout the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database server could not be reached at all.
    #[error("cannot connect to {db}: {reason}")]
    Unreachable { db: String, reason: String },

    /// A query failed on a reachable database.
    #[error("database error on {db}: {source}")]
    Database {
        db: String,
        #[source]
        source: sqlx::Error,
    },

    #[error("applying migrations to {db} failed: {source}")]
    Migrate {
        db: String,
        #[source]
        source: sqlx::migrate::MigrateError,
    },

    #[error("unsupported database URL {url:?}: expected postgres://… or sqlite://…")]
    UnsupportedUrl { url: String },

    /// A command that only reads was pointed at a SQLite file that does not exist.
    #[error(
        "no database at {}; run `stabspace import …` or `stabspace demo` first, or pass \
         --database-url (or --data-dir) to use another one",
        path.display()
    )]
    NoDatabase { path: PathBuf },

    /// A file is to be written into a directory that does not exist (it is not created).
    #[error("cannot write {}: the directory {} does not exist", path.display(), dir.display())]
    MissingDirectory { path: PathBuf, dir: PathBuf },

    /// The database lacks migrations and cannot be written to apply them.
    #[error(
        "{db} is read-only and lacks migrations {}; run `stabspace migrate` once with write access to it",
        versions.join(", ")
    )]
    ReadOnlyNeedsMigration { db: String, versions: Vec<String> },

    /// A command that writes was pointed at a PostgreSQL standby (a read
    /// replica in recovery), which refuses every write.
    #[error(
        "{db} is a read-only standby (a replica in recovery) and refuses writes; give the primary as \
         --database-url (DATABASE_URL) and the replica as --read-database-url \
         (STABSPACE_READ_DATABASE_URL), which queries read"
    )]
    Standby { db: String },

    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A CSV file lacks a required column in its header.
    #[error("{}: missing required column {column:?} (header has: {found})", file.display())]
    MissingColumn {
        file: PathBuf,
        column: String,
        found: String,
    },

    /// One field of one row is bad. `line` is the 1-based line in the file.
    #[error("{}:{line}: column {column:?}: {message}", file.display())]
    BadField {
        file: PathBuf,
        line: u64,
        column: String,
        message: String,
    },

    /// The CSV itself cannot be read (bad UTF-8, wrong field count, …).
    #[error("{}:{line}: {message}", file.display())]
    BadRow {
        file: PathBuf,
        line: u64,
        message: String,
    },

    #[error("unknown model id {got:?} for {what}; known: {}", known.join(", "))]
    UnknownModel {
        what: &'static str,
        got: String,
        known: Vec<String>,
    },

    /// The index engine failed (a corrupt partition, a bad query vector, …).
    #[error(transparent)]
    Index(#[from] stabspace_index::IndexError),

    /// Two vectors of different feature spaces were about to be compared or
    /// combined (v1 states with v2 scenarios, say). Each side names what it is.
    #[error(
        "feature spaces differ: {left} → {}; {right} → {}. Vectors of different spaces cannot be \
         compared or combined: backfill both with encoders of one space (v1: num-stab-core-v1 + \
         num-scenario-core-v1; v2: num-stab-core-v2 + num-scenario-core-v2 with the same --horizon-days)",
        crate::spaces::describe_space(left_space),
        crate::spaces::describe_space(right_space)
    )]
    MixedSpaces {
        left: String,
        left_space: String,
        right: String,
        right_space: String,
    },

    /// Input that is well-formed but cannot be used (nothing stored, a gap in a panel, …).
    #[error("{0}")]
    Invalid(String),

    /// What was asked for is stored only under other joint models, and vectors
    /// of different joint models are never compared. `what` says what is
    /// missing under `asked` and which joint models have it; the hint names
    /// `other`, the joint model to ask for. Python and the server show this
    /// text; the CLI ends it with the command line that asks for `other`.
    #[error("{what}; {}: ask for joint model {other}", NEVER_COMPARED)]
    OtherJointModel {
        what: String,
        /// The joint model asked for.
        asked: String,
        /// The joint model that has it.
        other: String,
    },
}

/// The reason [`Error::OtherJointModel`] gives before its hint.
pub const NEVER_COMPARED: &str = "vectors of different joint models are never compared";

impl Error {
    /// `Err(MixedSpaces)` when both spaces are recorded and differ.
    pub fn check_spaces(
        left: impl FnOnce() -> String,
        left_space: Option<&str>,
        right: impl FnOnce() -> String,
        right_space: Option<&str>,
    ) -> Result<()> {
        match (left_space, right_space) {
            (Some(a), Some(b)) if a != b => Err(Error::MixedSpaces {
                left: left(),
                left_space: a.to_string(),
                right: right(),
                right_space: b.to_string(),
            }),
            _ => Ok(()),
        }
    }

    /// This error with `prefix` put before its message: an
    /// [`Error::OtherJointModel`] keeps its fields (the prefix goes into
    /// `what`), any other error becomes [`Error::Invalid`] with the prefixed text.
    pub fn prefixed(self, prefix: &str) -> Error {
        match self {
            Error::OtherJointModel { what, asked, other } => Error::OtherJointModel {
                what: format!("{prefix}{what}"),
                asked,
                other,
            },
            other => Error::Invalid(format!("{prefix}{other}")),
        }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
