//! Progress bars on stderr. indicatif draws nothing when stderr is not a
//! terminal, so piped and CI output stays clean. [`Bars`] is the CLI's
//! observer of the library's workflows.

use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressState, ProgressStyle};

use crate::progress::{Progress, BYTES};

/// Items per second as a whole number ("954/s"), or "–" before the first item.
fn rate(state: &ProgressState, w: &mut dyn std::fmt::Write) {
    let r = state.per_sec();
    let _ = if state.pos() == 0 || !r.is_finite() {
        write!(w, "–/s")
    } else if r >= 10.0 {
        write!(w, "{r:.0}/s")
    } else {
        write!(w, "{r:.1}/s")
    };
}

/// A bar counting items (`what`: "instruments", "scenarios", …) with a rate
/// in whole items per second and an estimate of the time left.
pub fn items(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template(&format!(
            "{{spinner}} {{msg}} [{{bar:30}}] {{pos}}/{{len}} {what} ({{rate}}, eta {{eta}})"
        ))
        .expect("valid template")
        .with_key("rate", rate)
        .progress_chars("=> "),
    );
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}

/// A bar over the `len` steps of a job whose steps differ in size (a build,
/// then a sweep): the step's name, its number, and the time so far.
pub fn steps(len: u64) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{spinner} step {pos}/{len} [{bar:30}] {msg} ({elapsed})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}

/// A bar over the bytes of a file being read.
pub fn bytes(len: u64) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template(
            "{spinner} {msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}

/// The CLI's observer: a bar per piece of work, [`bytes`] for [`BYTES`],
/// else [`items`] counting the unit. Work started inside other work (the
/// backfills of each date `eval-retrieval` runs) gets a bar of its own while
/// it lasts, as each workflow drew its own bar before. A bar left unfinished
/// (the work failed) stays as drawn.
#[derive(Default)]
pub struct Bars {
    /// The bars of the work under way, innermost last, with the unit each counts.
    bars: Mutex<Vec<(String, ProgressBar)>>,
}

impl Bars {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(String, ProgressBar)>> {
        self.bars.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `f` on the innermost bar.
    fn with(&self, f: impl FnOnce(&ProgressBar)) {
        if let Some((_, pb)) = self.lock().last() {
            f(pb);
        }
    }
}

impl Progress for Bars {
    fn start(&self, unit: &str, total: Option<u64>) {
        let len = total.unwrap_or(0);
        let mut bars = self.lock();
        match bars.last() {
            // A new stage of the same work: its bar, counted again.
            Some((u, pb)) if u == unit => {
                pb.set_length(len);
                pb.reset_elapsed();
            }
            _ => {
                let pb = if unit == BYTES {
                    bytes(len)
                } else {
                    items(len, unit)
                };
                bars.push((unit.to_string(), pb));
            }
        }
    }

    fn message(&self, message: &str) {
        self.with(|pb| pb.set_message(message.to_string()));
    }

    fn advance(&self, n: u64) {
        self.with(|pb| pb.inc(n));
    }

    fn set_position(&self, done: u64) {
        self.with(|pb| pb.set_position(done));
    }

    fn finish(&self) {
        if let Some((_, pb)) = self.lock().pop() {
            pb.finish_and_clear();
        }
    }
}
