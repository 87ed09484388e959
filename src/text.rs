//! Input text in messages: excerpts with control characters escaped and
//! long input cut, so that an error never floods a terminal or a log.

use std::fmt::Write as _;

/// Characters of input quoted in an error message, at most.
pub const EXCERPT_CHARS: usize = 80;

/// At most [`EXCERPT_CHARS`] characters of `s`, control characters escaped
/// (`\n`, `\t`, `\x00`, …), and whether it was cut.
pub fn escaped(s: &str) -> (String, bool) {
    let mut out = String::with_capacity(s.len().min(4 * EXCERPT_CHARS));
    for (n, c) in s.chars().enumerate() {
        if n == EXCERPT_CHARS {
            return (out, true);
        }
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    (out, false)
}

/// Input text for a message, unquoted: cut to [`EXCERPT_CHARS`] characters with
/// "…" and the full length in bytes. Returns the text and whether it was cut.
pub fn excerpt(s: &str) -> (String, bool) {
    match escaped(s) {
        (e, false) => (e, false),
        (e, true) => (format!("{e}… ({} bytes)", s.len()), true),
    }
}

/// Input text for a message, in double quotes, cut as [`excerpt`] cuts.
pub fn quote(s: &str) -> String {
    match escaped(s) {
        (e, false) => format!("\"{e}\""),
        (e, true) => format!("\"{e}…\" ({} bytes)", s.len()),
    }
}
