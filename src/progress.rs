//! Progress of the long workflows (imports, backfills, index builds), told
//! to an observer. The library draws nothing: the CLI's observer draws bars
//! on a terminal, Python and the server pass [`Quiet`].

/// What a workflow tells about its progress. Every method does nothing
/// unless implemented.
pub trait Progress: Send + Sync {
    /// Work of `total` units begins (`None`: not known yet); `unit` names them
    /// ("instruments", "scenarios", [`BYTES`], …). Work may start inside other
    /// work (the backfills of each date inside `eval-retrieval`), and
    /// [`finish`](Progress::finish) ends the innermost; a `start` in the
    /// innermost work's own unit is a new stage of it, its total and clock
    /// counted again (an index build: reading the vectors, then the graph).
    fn start(&self, _unit: &str, _total: Option<u64>) {}
    /// What is being done now.
    fn message(&self, _message: &str) {}
    /// `n` more units done.
    fn advance(&self, _n: u64) {}
    /// `done` units done in all.
    fn set_position(&self, _done: u64) {}
    /// The work is done.
    fn finish(&self) {}
}

/// The unit of work that reads a file: its bytes.
pub const BYTES: &str = "bytes";

/// The observer that shows nothing (Python, the server, tests).
#[derive(Clone, Copy, Debug, Default)]
pub struct Quiet;

impl Progress for Quiet {}
