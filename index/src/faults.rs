//! Pause points: a test hook for fault injection, with no effect unless the
//! environment variable `STABSPACE_PAUSE_AT` is set.
//!
//! A fault-injection test spawns a process with `STABSPACE_PAUSE_AT=<name>`;
//! when that process reaches the pause point `<name>` it prints
//! `paused at <name>` on stderr and sleeps until it is killed, so the test can
//! `SIGKILL` it at a known place and check what it left behind (stabspace's
//! `tests/integration/faults.rs`). In every other run a pause point costs one
//! environment lookup; none sits in a per-row loop.
//!
//! The engine has one: `index-build:temp-written`, in the partition writer
//! after the temporary file is written and synced, before it is renamed over
//! the partition. stabspace's `src/faults.rs` lists all of them.

use std::io::Write;
use std::time::Duration;

/// The environment variable naming the pause point to stop at.
pub const PAUSE_AT_ENV: &str = "STABSPACE_PAUSE_AT";

/// Whether `STABSPACE_PAUSE_AT` names this pause point.
pub fn armed(name: &str) -> bool {
    std::env::var_os(PAUSE_AT_ENV).is_some_and(|v| v == name)
}

/// When `STABSPACE_PAUSE_AT` is `name`: say `paused at <name>` on stderr and
/// sleep forever (the test kills the process). Otherwise return at once.
pub fn pause_point(name: &str) {
    if !armed(name) {
        return;
    }
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "paused at {name}");
    let _ = err.flush();
    drop(err);
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
