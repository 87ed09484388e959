//! Progress bars on stderr. indicatif draws nothing when stderr is not a
//! terminal, so piped and CI output stays clean.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressState, ProgressStyle};

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
pub fn bytes(len: u64, msg: String) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template(
            "{spinner} {msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    pb.set_message(msg);
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}
