//! Pause points: a test hook for fault injection, with no effect unless the
//! environment variable `STABSPACE_PAUSE_AT` is set.
//!
//! `tests/integration/faults.rs` runs the binary with
//! `STABSPACE_PAUSE_AT=<name>`; at the pause point `<name>` the process prints
//! `paused at <name>` on stderr and sleeps until the test kills it (`SIGKILL`),
//! and the test then checks that the database and the partition directory are
//! each as before the command or as after it, and that a re-run gives what an
//! uninterrupted run gives. In ordinary runs a pause point is one environment
//! lookup, outside every per-row loop. The implementation lives in the engine
//! crate (`stabspace_index::faults`), which has a pause point of its own.
//!
//! The pause points, in the order a run reaches them:
//!
//! | name | where |
//! |---|---|
//! | `scenario-backfill:before-write` | scenario backfill: input read and checked, no transaction yet |
//! | `scenario-backfill:mid-write` | scenario backfill: half the vectors written into the open transaction |
//! | `scenario-backfill:before-commit` | scenario backfill: every vector written, not committed |
//! | `joint-scenarios:before-commit` | scenario projection: every joint vector written, not committed |
//! | `joint-scenarios:committed` | `backfill-joint-stab-fragility-scenarios`: projection committed, partition not yet rebuilt |
//! | `index-build:before-write` | partition build: rows read, nothing written |
//! | `index-build:temp-written` | partition write: temporary file written and synced, not renamed |
//! | `index-build:renamed` | partition build: new file renamed into place, command not returned |

pub use stabspace_index::faults::{armed, pause_point, PAUSE_AT_ENV};

/// Not a pause point but a *hold*: with `STABSPACE_PAUSE_AT=serve:search-held`,
/// `stabspace serve` prints `held at serve:search-held` on stderr when a search
/// request arrives and holds it for [`HOLD`] before answering, so that a test
/// can stop the server with a request known to be in flight (graceful shutdown).
/// Read once at start; not in [`POINTS`].
pub const SERVE_SEARCH_HELD: &str = "serve:search-held";

/// How long a held request waits.
pub const HOLD: std::time::Duration = std::time::Duration::from_secs(2);

/// Every pause point, in the order a run reaches them.
pub const POINTS: &[&str] = &[
    SCENARIO_BEFORE_WRITE,
    SCENARIO_MID_WRITE,
    SCENARIO_BEFORE_COMMIT,
    JOINT_BEFORE_COMMIT,
    JOINT_COMMITTED,
    INDEX_BEFORE_WRITE,
    INDEX_TEMP_WRITTEN,
    INDEX_RENAMED,
];

pub const SCENARIO_BEFORE_WRITE: &str = "scenario-backfill:before-write";
pub const SCENARIO_MID_WRITE: &str = "scenario-backfill:mid-write";
pub const SCENARIO_BEFORE_COMMIT: &str = "scenario-backfill:before-commit";
pub const JOINT_BEFORE_COMMIT: &str = "joint-scenarios:before-commit";
pub const JOINT_COMMITTED: &str = "joint-scenarios:committed";
pub const INDEX_BEFORE_WRITE: &str = "index-build:before-write";
/// In the engine's partition writer (`index/src/write.rs`).
pub const INDEX_TEMP_WRITTEN: &str = "index-build:temp-written";
pub const INDEX_RENAMED: &str = "index-build:renamed";
