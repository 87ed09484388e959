//! Input text in messages: excerpts with control characters escaped, and the
//! checks every id and label passes.

use std::fmt::Write as _;

use super::{EXCERPT_CHARS, MAX_ID_BYTES};

/// At most [`EXCERPT_CHARS`] characters of `s`, control characters escaped
/// (`\n`, `\t`, `\x00`, …), and whether it was cut.
pub(super) fn escaped(s: &str) -> (String, bool) {
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
pub(super) fn excerpt(s: &str) -> (String, bool) {
    match escaped(s) {
        (e, false) => (e, false),
        (e, true) => (format!("{e}… ({} bytes)", s.len()), true),
    }
}

/// Input text for a message, in double quotes, cut as [`excerpt`] cuts.
pub(crate) fn quote(s: &str) -> String {
    match escaped(s) {
        (e, false) => format!("\"{e}\""),
        (e, true) => format!("\"{e}…\" ({} bytes)", s.len()),
    }
}

/// A control character by name, for messages.
pub(super) fn char_name(c: char) -> String {
    match c {
        '\0' => "NUL".into(),
        '\t' => "tab".into(),
        '\n' => "line feed".into(),
        '\r' => "carriage return".into(),
        c => format!("U+{:04X}", u32::from(c)),
    }
}

/// What is wrong with a non-empty id or label, if anything: longer than
/// [`MAX_ID_BYTES`], a control character, or whitespace at either end.
pub(super) fn id_problem(s: &str) -> Option<String> {
    if s.len() > MAX_ID_BYTES {
        return Some(format!(
            "{} is {} bytes long; ids and labels are at most {MAX_ID_BYTES} bytes",
            quote(s),
            s.len()
        ));
    }
    if let Some(c) = s.chars().find(|c| c.is_control()) {
        return Some(format!(
            "{} holds a control character ({}); ids and labels may not",
            quote(s),
            char_name(c)
        ));
    }
    if s.trim() != s {
        return Some(format!(
            "{} has whitespace at its start or end; ids and labels may not",
            quote(s)
        ));
    }
    None
}
