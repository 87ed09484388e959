//! The CSV text below the parser: physical line numbers for the reader's byte
//! positions, the line-length limit and unbalanced quotes found while the
//! bytes stream past ([`Lines`]), and the errors of the CSV reader.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::Read;
use std::path::Path;

use super::text::{excerpt, quote};
use super::MAX_LINE_BYTES;
use crate::error::Error;

/// The error for a failure of the CSV reader: a row with the wrong number of
/// fields, bad UTF-8, or what [`Lines`] found (a line over the limit, an
/// unbalanced quote). `header` is `None` while the header itself is read.
pub(super) fn csv_error<R>(
    path: &Path,
    e: &csv::Error,
    lines: &mut Lines<R>,
    header: Option<&csv::StringRecord>,
) -> Error {
    if let csv::ErrorKind::Io(io) = e.kind() {
        if let Some(input) = io.get_ref().and_then(|r| r.downcast_ref::<InputError>()) {
            return input.to_error(path, header);
        }
    }
    let line = lines.line_at(e.position().map_or(u64::MAX, |p| p.byte()));
    let message = match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => {
            let mut m = format!("row has {len} fields, the header has {expected_len}");
            if let Some((quote_line, field)) =
                lines.quoted_break_at(e.position().map_or(u64::MAX, |p| p.byte()))
            {
                let _ = write!(
                    m,
                    "; the quote opening {} on line {quote_line} spans a line break: is it unbalanced?",
                    field_name(header, field)
                );
            }
            m
        }
        csv::ErrorKind::Utf8 { .. } => "row is not valid UTF-8".to_string(),
        _ => excerpt(&e.to_string()).0,
    };
    Error::BadRow {
        file: path.to_path_buf(),
        line,
        message,
    }
}

/// "field 2 (\"trade_date\")", or "field 2" when the header has no name for it.
pub(super) fn field_name(header: Option<&csv::StringRecord>, field: usize) -> String {
    match header.and_then(|h| h.get(field)).filter(|n| !n.is_empty()) {
        Some(name) => format!("field {} ({})", field + 1, quote(name)),
        None => format!("field {}", field + 1),
    }
}

/// What [`Lines`] finds wrong with the CSV text itself, before the parser
/// holds it: passed through the `csv` reader as an I/O error.
#[derive(Debug)]
pub(super) enum InputError {
    /// A header or row longer than [`MAX_LINE_BYTES`]: the line where it
    /// starts, and the quote still open where it was cut (line, field).
    TooLong {
        line: u64,
        open_quote: Option<(u64, usize)>,
    },
    /// The file ends inside a quoted field: the line where its row starts and
    /// where the quote opened (line, field).
    UnbalancedQuote { row_line: u64, quote: (u64, usize) },
}

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InputError::TooLong { line, .. } => {
                write!(f, "line {line} is longer than {MAX_LINE_BYTES} bytes")
            }
            InputError::UnbalancedQuote { quote, .. } => write!(f, "unbalanced quote on line {}", quote.0),
        }
    }
}

impl std::error::Error for InputError {}

impl InputError {
    pub(super) fn to_error(&self, path: &Path, header: Option<&csv::StringRecord>) -> Error {
        let (line, message) = match *self {
            InputError::TooLong { line, open_quote } => {
                let mut m = format!(
                    "{} is longer than {MAX_LINE_BYTES} bytes (1 MiB), the most one header or row \
                     may hold; it was not read further",
                    if header.is_some() {
                        "this row"
                    } else {
                        "the header"
                    }
                );
                if let Some((quote_line, field)) = open_quote {
                    let _ = write!(
                        m,
                        "; it is inside the quoted {} opened on line {quote_line}: is that quote unbalanced?",
                        field_name(header, field)
                    );
                }
                (line, m)
            }
            InputError::UnbalancedQuote {
                row_line,
                quote: (quote_line, field),
            } => {
                let mut m = format!(
                    "unbalanced quote: the quote opening {} on line {quote_line} is never closed \
                     (the file ends inside it)",
                    field_name(header, field)
                );
                if row_line != quote_line {
                    let _ = write!(m, "; its row starts on line {row_line}");
                }
                (quote_line, m)
            }
        };
        Error::BadRow {
            file: path.to_path_buf(),
            line,
            message,
        }
    }
}

/// Physical line numbers for the CSV reader's byte positions, and the checks
/// that must happen before the parser holds a row.
///
/// The `csv` crate counts `\n` bytes read so far, and a CRLF record ends at its
/// `\r`: the `\n` is read with the next record, whose position then still has
/// the previous line's number (and skipped blank lines are not counted either).
/// This reader sits below the parser and notes, for each line that has content,
/// where it starts and its number, counting `\n`, `\r\n` and a lone `\r` each as
/// one line end. A record's line is that of the first line with content at or
/// after the record's byte position. Only lines read ahead of the parser are
/// held, so memory stays bounded by the parser's buffer.
///
/// It also follows the records as the parser will split them (the `csv`
/// crate's defaults: `,` between fields, `"` opening a field quotes it up to
/// the next lone `"`, `""` inside is a quote, CR, LF or CRLF ends a record,
/// blank lines are skipped), to stop a record longer than [`MAX_LINE_BYTES`]
/// while it streams past, and to say where an unbalanced quote opened: the
/// parser itself takes it for a field running to the end of the file.
pub(super) struct Lines<R> {
    inner: R,
    /// Bytes read so far.
    offset: u64,
    /// Number of the line the next byte belongs to.
    line: u64,
    at_line_start: bool,
    after_cr: bool,
    /// (byte offset, line number) of lines with content not yet asked about.
    starts: VecDeque<(u64, u64)>,
    /// Where in a record the next byte is.
    state: Csv,
    /// Line where the current record starts, and its bytes so far.
    row_line: u64,
    row_offset: u64,
    row_bytes: usize,
    /// The current record's field (0-based).
    field: usize,
    /// (line, field) of the quote that opened the last quoted field.
    quote: (u64, usize),
    /// Whether the current record is in `breaks` already.
    row_broken: bool,
    /// (record offset, quote line, field) of records, not yet asked about,
    /// with a line break inside a quoted field: the first such field.
    breaks: VecDeque<(u64, u64, usize)>,
}

/// The states of the `csv` crate's record parser that matter here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Csv {
    /// Between records: line ends are skipped.
    StartRecord,
    StartField,
    /// In an unquoted field (a `"` there is an ordinary character).
    InField,
    InQuoted,
    /// Just after a `"` inside a quoted field: a second `"` is a quote,
    /// anything else ends the quoting.
    AfterQuote,
}

impl<R> Lines<R> {
    pub(super) fn new(inner: R) -> Self {
        Lines {
            inner,
            offset: 0,
            line: 1,
            at_line_start: true,
            after_cr: false,
            starts: VecDeque::new(),
            state: Csv::StartRecord,
            row_line: 1,
            row_offset: 0,
            row_bytes: 0,
            field: 0,
            quote: (1, 0),
            row_broken: false,
            breaks: VecDeque::new(),
        }
    }

    /// The line of the first content at or after `byte`. Calls must not go back.
    pub(super) fn line_at(&mut self, byte: u64) -> u64 {
        while self.starts.front().is_some_and(|&(o, _)| o < byte) {
            self.starts.pop_front();
        }
        let (offset, line) = self.starts.front().copied().unwrap_or((self.offset, self.line));
        while self.breaks.front().is_some_and(|&(o, _, _)| o < offset) {
            self.breaks.pop_front();
        }
        line
    }

    /// For the record at `byte`: where the first quoted field holding a line
    /// break opened (line, field), if any. Calls must not go back.
    pub(super) fn quoted_break_at(&mut self, byte: u64) -> Option<(u64, usize)> {
        self.line_at(byte);
        let offset = self.starts.front().map_or(self.offset, |&(o, _)| o);
        self.breaks
            .front()
            .filter(|&&(o, _, _)| o == offset)
            .map(|&(_, line, field)| (line, field))
    }

    /// Follow the parser over one byte (see [`Csv`]).
    pub(super) fn step(&mut self, b: u8) -> Result<(), InputError> {
        let end = b == b'\n' || b == b'\r';
        if self.state == Csv::StartRecord {
            if end {
                return Ok(());
            }
            self.state = Csv::StartField;
            self.row_line = self.line;
            self.row_offset = self.offset;
            self.row_bytes = 0;
            self.field = 0;
            self.row_broken = false;
        }
        self.state = match (self.state, b) {
            (Csv::StartField, b'"') => {
                self.quote = (self.line, self.field);
                Csv::InQuoted
            }
            (Csv::InQuoted, b'"') => Csv::AfterQuote,
            (Csv::InQuoted, _) => {
                if end && !self.row_broken {
                    self.row_broken = true;
                    self.breaks
                        .push_back((self.row_offset, self.quote.0, self.quote.1));
                }
                Csv::InQuoted
            }
            (Csv::AfterQuote, b'"') => Csv::InQuoted,
            (_, b',') => {
                self.field += 1;
                Csv::StartField
            }
            _ if end => Csv::StartRecord,
            _ => Csv::InField,
        };
        if self.state != Csv::StartRecord {
            self.row_bytes += 1;
            if self.row_bytes > MAX_LINE_BYTES {
                return Err(InputError::TooLong {
                    line: self.row_line,
                    open_quote: (self.state == Csv::InQuoted).then_some(self.quote),
                });
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for Lines<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() && self.state == Csv::InQuoted {
            return Err(std::io::Error::other(InputError::UnbalancedQuote {
                row_line: self.row_line,
                quote: self.quote,
            }));
        }
        for &b in &buf[..n] {
            self.step(b).map_err(std::io::Error::other)?;
            match b {
                b'\n' => {
                    if !self.after_cr {
                        self.line += 1;
                    }
                    self.after_cr = false;
                    self.at_line_start = true;
                }
                b'\r' => {
                    self.line += 1;
                    self.after_cr = true;
                    self.at_line_start = true;
                }
                _ => {
                    if self.at_line_start {
                        self.starts.push_back((self.offset, self.line));
                        self.at_line_start = false;
                    }
                    self.after_cr = false;
                }
            }
            self.offset += 1;
        }
        Ok(n)
    }
}
