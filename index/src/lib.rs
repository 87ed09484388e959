//! `stabspace-index`: the approximate-nearest-neighbour engine of stabspace.
//!
//! It knows vectors, string ids, opaque per-row payloads and files, and nothing
//! of SQL or finance. A *partition* is one memory-mapped file (format in
//! `FORMAT.md`): L2-normalised f32 vectors, their original norms, an HNSW graph
//! built by our own parallel builder (`insert.rs`; hnsw_rs is kept as the
//! reference, `reference.rs`), ids, payloads, row hashes for appends and the
//! graph's recall calibration.
//!
//! ```no_run
//! use stabspace_index::{BuildParams, Partition, PartitionBuilder};
//! # fn main() -> stabspace_index::Result<()> {
//! let mut b = PartitionBuilder::new(3)?;
//! b.add("a", &[1.0, 0.0, 0.0], b"payload")?;
//! b.add("b", &[0.0, 1.0, 0.0], b"")?;
//! b.write("p.stabidx".as_ref(), &BuildParams::default(), "{}", &mut |_, _| {})?;
//! let p = Partition::open("p.stabidx")?;
//! let hits = p.search(&[0.9, 0.1, 0.0], 1, 64)?;
//! assert_eq!(hits[0].id, "a");
//! # Ok(()) }
//! ```
//!
//! `unsafe` is confined to the memory map (`partition.rs`) and the SIMD kernels
//! (`kernel/x86.rs`, `kernel/avx512.rs`), each block with a `// SAFETY:` comment.
//!
//! # Layers
//!
//! A module imports only modules of lower layers, never its own layer or one
//! above (`tests/engine/layers.rs` reads the `use crate::…`, `crate::…::` and
//! `super::…` paths of `src/` and fails otherwise; a new module goes on one of
//! these lines):
//!
//! 1. `error`, `faults`, `format`, `kernel`: the leaves (the error type, fault
//!    injection, the file format's header and constants, the dot kernels).
//! 2. `calibration`, `filter`, `rng`, `vector`, `write`: the calibration record
//!    and its bytes, per-row attributes and the filters over them (and the
//!    plan of a filtered search), splitmix64, checking a vector as given,
//!    writing a file atomically.
//! 3. `graph`, `quantize`, `tempfiles`, `vecfile`: graph views and in-memory
//!    graphs, quantised codes; temporary-file names, vector files.
//! 4. `search`: traversal of a graph view, exact scans and re-ranks over rows.
//! 5. `filtered`, `insert`, `reference`, `scan`: filtered searches (scan or
//!    traversal by the plan); the graph builders (ours, and hnsw_rs as the
//!    reference); the exact batched scan on the codes.
//! 6. `calibrate`, `flat`: measuring a built graph's recall per search
//!    breadth; the in-memory exact index.
//! 7. `partition`: the mapped file and its typed slices.
//! 8. `adaptive`, `build`, `recalibrate`, `searches`, `sweep`: the
//!    adaptive-stop experiment; building a partition file (new or extending
//!    one); recalibrating one in place; the partition's search methods;
//!    recall and speed sweeps over one.

mod adaptive;
mod build;
mod calibrate;
mod calibration;
mod error;
pub mod faults;
mod filter;
mod filtered;
mod flat;
pub mod format;
mod graph;
mod insert;
pub mod kernel;
mod partition;
mod quantize;
mod recalibrate;
mod reference;
mod rng;
mod scan;
mod search;
mod searches;
pub mod sweep;
pub mod tempfiles;
pub mod vecfile;
mod vector;
mod write;

pub use build::{
    row_hash, row_hash_with, BuildOutcome, BuildParams, BuildStats, GraphBuilder, PartitionBuilder,
    FLAT_THRESHOLD, MAX_M,
};
pub use calibrate::{
    CALIBRATION_K, CALIBRATION_QUERIES, CALIBRATION_SAMPLE, RECALIBRATE_AFTER, RECALL_TARGETS,
};
pub use calibration::{
    preferred as preferred_calibration, Calibration, CalibrationQueries, NEAR_COSINE, TIE_COSINE,
};
pub use error::{IndexError, Result};
pub use filter::{FilterPath, RowAttrs, RowFilter};
pub use flat::FlatIndex;
pub use partition::{Partition, PartitionInfo};
pub use quantize::Quantization;
pub use search::{Filtered, Hit};
pub use write::write_atomic;

#[cfg(test)]
mod send_sync {
    fn assert_send_sync<T: Send + Sync>() {}
    #[test]
    fn partition_is_send_and_sync() {
        assert_send_sync::<super::Partition>();
    }
}
