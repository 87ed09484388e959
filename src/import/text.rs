//! Input text in messages: excerpts with control characters escaped, and the
//! checks every id and label passes.

use super::MAX_ID_BYTES;
pub(crate) use crate::text::{excerpt, quote};

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
