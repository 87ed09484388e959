//! `stabspace import KIND FILE.csv`: CSV files into the tables.
//!
//! Every file is read as a stream and written in one transaction: a bad row
//! anywhere aborts the whole file with an error naming file, line and column,
//! and the database is left exactly as before. Rows are upserted on the table
//! key, so importing the same file twice changes nothing.
//!
//! Input is checked at the door, the same way for both backends: ids and labels
//! (at most [`MAX_ID_BYTES`] bytes, no control characters), value ranges (a
//! positive close, a whole non-negative volume, a return above −1), the
//! instrument status ([`STATUSES`]), instruments that prices and paths name
//! (they must already be imported), and keys repeated within one file. Error
//! messages quote at most [`EXCERPT_CHARS`] characters of the input.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::fs::File;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::NaiveDate;
use serde_json::{Map, Value as Json};

use crate::error::{Error, Result};
use crate::progress;
use crate::storage::bulk::{BulkWriter, TableSpec, Value};
use crate::storage::tables::*;
use crate::storage::{Db, Tx};

/// The longest id or label, in bytes (UTF-8). Real identifiers are far shorter
/// (ISIN and FIGI 12, ticker with exchange suffix about 20, UUID 36); 128 leaves
/// room for composed ids while keeping every table key (up to six text columns)
/// well inside PostgreSQL's limit of about 2700 bytes for one index entry, so an
/// id that fits one backend fits the other.
pub const MAX_ID_BYTES: usize = 128;

/// Characters of input quoted in an error message, at most.
pub const EXCERPT_CHARS: usize = 80;

/// The instrument statuses an import accepts, compared without regard to case
/// and stored as written. Backfills encode only `active` instruments (they
/// compare `lower(status)`); the generator writes `active` and `delisted`.
pub const STATUSES: &[&str] = &["active", "delisted", "suspended"];

/// Distinct unknown instruments a warning names before "and N more".
const WARN_NAMES: usize = 5;

/// What a CSV file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ImportKind {
    /// instrument_id,issuer_id,market_id,region,status (creates missing markets and issuers)
    Instruments,
    /// instrument_id,trade_date,close,volume
    Prices,
    /// scenario_set_id,scenario_id,scenario_date,shock_type,severity
    Scenarios,
    /// scenario_set_id,scenario_id,day_index,instrument_id,return
    ScenarioPaths,
    /// portfolio_id,as_of_date,weights_json
    Portfolios,
    /// portfolio_id,as_of_date,risk_metrics_json
    RiskReports,
    /// run_id,strategy_id,start_date,end_date,config_json,metrics_json
    BacktestRuns,
    /// issuer_id,as_of_date,fundamentals_json
    Fundamentals,
}

impl ImportKind {
    /// Columns the CSV header must have.
    pub fn required_columns(self) -> &'static [&'static str] {
        match self {
            ImportKind::Instruments => &["instrument_id", "issuer_id", "market_id", "region", "status"],
            ImportKind::Prices => &["instrument_id", "trade_date", "close", "volume"],
            ImportKind::Scenarios => &[
                "scenario_set_id",
                "scenario_id",
                "scenario_date",
                "shock_type",
                "severity",
            ],
            ImportKind::ScenarioPaths => &[
                "scenario_set_id",
                "scenario_id",
                "day_index",
                "instrument_id",
                "return",
            ],
            ImportKind::Portfolios => &["portfolio_id", "as_of_date", "weights_json"],
            ImportKind::RiskReports => &["portfolio_id", "as_of_date", "risk_metrics_json"],
            ImportKind::BacktestRuns => &[
                "run_id",
                "strategy_id",
                "start_date",
                "end_date",
                "config_json",
                "metrics_json",
            ],
            ImportKind::Fundamentals => &["issuer_id", "as_of_date", "fundamentals_json"],
        }
    }

    /// The table the rows go to.
    pub fn spec(self) -> &'static TableSpec {
        match self {
            ImportKind::Instruments => &INSTRUMENTS,
            ImportKind::Prices => &PRICES,
            ImportKind::Scenarios => &SCENARIOS,
            ImportKind::ScenarioPaths => &SCENARIO_PATHS,
            ImportKind::Portfolios => &PORTFOLIOS,
            ImportKind::RiskReports => &RISK_REPORTS,
            ImportKind::BacktestRuns => &BACKTEST_RUNS,
            ImportKind::Fundamentals => &FUNDAMENTALS,
        }
    }

    /// The kebab-case name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ImportKind::Instruments => "instruments",
            ImportKind::Prices => "prices",
            ImportKind::Scenarios => "scenarios",
            ImportKind::ScenarioPaths => "scenario-paths",
            ImportKind::Portfolios => "portfolios",
            ImportKind::RiskReports => "risk-reports",
            ImportKind::BacktestRuns => "backtest-runs",
            ImportKind::Fundamentals => "fundamentals",
        }
    }

    /// Whether rows of this kind name instruments that must (prices, paths) or
    /// should (portfolio weights) already be in `instruments`.
    fn names_instruments(self) -> bool {
        matches!(
            self,
            ImportKind::Prices | ImportKind::ScenarioPaths | ImportKind::Portfolios
        )
    }

    /// Convert one validated record to the cells of [`ImportKind::spec`].
    fn row(self, f: &Fields<'_>, door: &mut Door) -> Result<Vec<Value>> {
        Ok(match self {
            ImportKind::Instruments => vec![
                f.id("instrument_id")?,
                f.opt_label("issuer_id")?,
                f.id("market_id")?,
                f.opt_label("region")?,
                f.status("status")?,
            ],
            ImportKind::Prices => vec![
                f.instrument("instrument_id", door)?,
                f.date("trade_date")?,
                f.close("close")?,
                f.volume("volume")?,
            ],
            ImportKind::Scenarios => vec![
                f.id("scenario_set_id")?,
                f.id("scenario_id")?,
                f.date("scenario_date")?,
                f.opt_label("shock_type")?,
                f.opt_label("severity")?,
            ],
            ImportKind::ScenarioPaths => vec![
                f.id("scenario_set_id")?,
                f.id("scenario_id")?,
                f.day_index("day_index")?,
                f.instrument("instrument_id", door)?,
                f.path_return("return")?,
            ],
            ImportKind::Portfolios => {
                let weights = f.weights("weights_json", door)?;
                let positions = serde_json::json!({ "weights": weights });
                vec![
                    f.id("portfolio_id")?,
                    f.date("as_of_date")?,
                    Value::Json(positions.to_string()),
                ]
            }
            ImportKind::RiskReports => vec![
                f.id("portfolio_id")?,
                f.date("as_of_date")?,
                f.json_object("risk_metrics_json")?,
            ],
            ImportKind::BacktestRuns => {
                let start = f.date("start_date")?;
                let end = f.date("end_date")?;
                if let (Value::Date(s), Value::Date(e)) = (&start, &end) {
                    if e < s {
                        return Err(f.bad("end_date", format!("{e} is before start_date {s}")));
                    }
                }
                vec![
                    f.id("run_id")?,
                    f.id("strategy_id")?,
                    start,
                    end,
                    f.json_object("config_json")?,
                    f.json_object("metrics_json")?,
                ]
            }
            ImportKind::Fundamentals => vec![
                f.id("issuer_id")?,
                f.date("as_of_date")?,
                f.json_object("fundamentals_json")?,
            ],
        })
    }
}

/// What an import did.
#[derive(Clone, Debug)]
pub struct ImportSummary {
    pub kind: ImportKind,
    pub file: PathBuf,
    pub rows: u64,
    pub seconds: f64,
    /// Portfolios only: the distinct instrument ids in weights that are not in
    /// `instruments`, sorted. The import stores them anyway and warns on stderr.
    pub unknown_instruments: Vec<String>,
}

/// Import one CSV file in one transaction.
pub async fn import_file(db: &Db, kind: ImportKind, path: &Path) -> Result<ImportSummary> {
    let started = Instant::now();
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut rdr = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(Lines::new(BufReader::with_capacity(1 << 20, file)));
    let header = rdr.headers().cloned();
    let header = header.map_err(|e| csv_error(path, &e, rdr.get_mut()))?;
    let header_line = rdr.get_mut().line_at(header.position().map_or(0, |p| p.byte()));
    let mut index: HashMap<String, usize> = HashMap::new();
    for (i, h) in header.iter().enumerate() {
        let name = h.trim().to_ascii_lowercase();
        if name.is_empty() {
            continue;
        }
        if let Some(first) = index.insert(name, i) {
            return Err(Error::BadField {
                file: path.to_path_buf(),
                line: header_line,
                column: excerpt(h).0,
                message: format!(
                    "the header names this column twice (fields {} and {}); rename or remove one",
                    first + 1,
                    i + 1
                ),
            });
        }
    }
    let mut columns = HashMap::new();
    for &c in kind.required_columns() {
        let i = *index.get(c).ok_or_else(|| Error::MissingColumn {
            file: path.to_path_buf(),
            column: c.to_string(),
            found: excerpt(&header.iter().collect::<Vec<_>>().join(",")).0,
        })?;
        columns.insert(c, i);
    }

    let pb = progress::bytes(len, format!("importing {}", path.display()));
    let mut tx = db.begin().await?;
    let known = if kind.names_instruments() {
        Some(known_instruments(&mut tx).await.map_err(|e| db.err(e))?)
    } else {
        None
    };
    let mut door = Door {
        known,
        unknown: BTreeSet::new(),
        keys: Keys::new(kind.spec()),
    };
    let mut writer = BulkWriter::new(kind.spec());
    // Instruments create their markets and issuers; first region seen wins.
    let mut markets: BTreeMap<String, Value> = BTreeMap::new();
    let mut issuers: BTreeMap<String, Value> = BTreeMap::new();
    let mut record = csv::StringRecord::new();
    let mut rows = 0u64;
    while rdr
        .read_record(&mut record)
        .map_err(|e| csv_error(path, &e, rdr.get_mut()))?
    {
        let line = rdr
            .get_mut()
            .line_at(record.position().map_or(u64::MAX, |p| p.byte()));
        let fields = Fields {
            file: path,
            line,
            record: &record,
            columns: &columns,
        };
        let row = kind.row(&fields, &mut door)?;
        if let Some(earlier) = door.keys.first_line(&row, line) {
            return Err(Error::BadRow {
                file: path.to_path_buf(),
                line,
                message: format!(
                    "line {earlier} has the same key ({}); a key may appear only once in a file",
                    door.keys.describe(&row)
                ),
            });
        }
        if kind == ImportKind::Instruments {
            if let Value::Text(m) = &row[2] {
                markets.entry(m.clone()).or_insert_with(|| row[3].clone());
            }
            if let Value::Text(i) = &row[1] {
                issuers.entry(i.clone()).or_insert(Value::Null);
            }
        }
        writer.push(&mut tx, row).await.map_err(|e| db.err(e))?;
        rows += 1;
        if rows % 4096 == 0 {
            pb.set_position(rdr.position().byte());
        }
    }
    writer.finish(&mut tx).await.map_err(|e| db.err(e))?;
    for (spec, entries) in [(&MARKETS, markets), (&ISSUERS, issuers)] {
        let mut w = BulkWriter::new(spec);
        for (id, second) in entries {
            w.push(&mut tx, vec![Value::Text(id), second])
                .await
                .map_err(|e| db.err(e))?;
        }
        w.finish(&mut tx).await.map_err(|e| db.err(e))?;
    }
    db.commit(tx).await?;
    pb.finish_and_clear();
    let unknown_instruments: Vec<String> = door.unknown.into_iter().collect();
    if !unknown_instruments.is_empty() {
        eprintln!("warning: {}", unknown_warning(path, &unknown_instruments));
    }
    Ok(ImportSummary {
        kind,
        file: path.to_path_buf(),
        rows,
        seconds: started.elapsed().as_secs_f64(),
        unknown_instruments,
    })
}

/// The warning for portfolio weights naming instruments not in `instruments`.
fn unknown_warning(path: &Path, ids: &[String]) -> String {
    let mut names: Vec<String> = ids.iter().take(WARN_NAMES).map(|s| quote(s)).collect();
    if ids.len() > WARN_NAMES {
        names.push(format!("and {} more", ids.len() - WARN_NAMES));
    }
    format!(
        "{}: weights name {} instrument{} not in the instruments table (imported anyway; \
         they get no vector): {}",
        path.display(),
        ids.len(),
        if ids.len() == 1 { "" } else { "s" },
        names.join(", ")
    )
}

/// Every instrument id in the database, read inside the import's transaction.
async fn known_instruments(tx: &mut Tx) -> Result<HashSet<String>, sqlx::Error> {
    const SQL: &str = "SELECT instrument_id FROM instruments";
    let ids: Vec<String> = match tx {
        Tx::Postgres(t) => sqlx::query_scalar(SQL).fetch_all(&mut **t).await?,
        Tx::Sqlite(t) => sqlx::query_scalar(SQL).fetch_all(&mut **t).await?,
    };
    Ok(ids.into_iter().collect())
}

fn csv_error<R>(path: &Path, e: &csv::Error, lines: &mut Lines<R>) -> Error {
    let line = lines.line_at(e.position().map_or(u64::MAX, |p| p.byte()));
    let message = match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => {
            format!("row has {len} fields, the header has {expected_len}")
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

/// Physical line numbers for the CSV reader's byte positions.
///
/// The `csv` crate counts `\n` bytes read so far, and a CRLF record ends at its
/// `\r`: the `\n` is read with the next record, whose position then still has
/// the previous line's number (and skipped blank lines are not counted either).
/// This reader sits below the parser and notes, for each line that has content,
/// where it starts and its number, counting `\n`, `\r\n` and a lone `\r` each as
/// one line end. A record's line is that of the first line with content at or
/// after the record's byte position. Only lines read ahead of the parser are
/// held, so memory stays bounded by the parser's buffer.
struct Lines<R> {
    inner: R,
    /// Bytes read so far.
    offset: u64,
    /// Number of the line the next byte belongs to.
    line: u64,
    at_line_start: bool,
    after_cr: bool,
    /// (byte offset, line number) of lines with content not yet asked about.
    starts: VecDeque<(u64, u64)>,
}

impl<R> Lines<R> {
    fn new(inner: R) -> Self {
        Lines {
            inner,
            offset: 0,
            line: 1,
            at_line_start: true,
            after_cr: false,
            starts: VecDeque::new(),
        }
    }

    /// The line of the first content at or after `byte`. Calls must not go back.
    fn line_at(&mut self, byte: u64) -> u64 {
        while self.starts.front().is_some_and(|&(o, _)| o < byte) {
            self.starts.pop_front();
        }
        self.starts.front().map_or(self.line, |&(_, l)| l)
    }
}

impl<R: Read> Read for Lines<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        for &b in &buf[..n] {
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

/// State kept across the rows of one file.
struct Door {
    /// Instrument ids in the database, for kinds that name instruments.
    known: Option<HashSet<String>>,
    /// Weights naming instruments not in `known`.
    unknown: BTreeSet<String>,
    keys: Keys,
}

/// The table keys seen so far in a file, as 128-bit hashes mapped to the line
/// that first had them: 24 bytes a row (about 100 MB at the hash table's worst
/// load for 2 million rows), never the keys themselves. Two independently keyed
/// SipHash functions give the 128 bits; a false match is about as likely as
/// 2⁻¹²⁸ per pair of rows.
struct Keys {
    spec: &'static TableSpec,
    /// Positions of the key columns in a row.
    cols: Vec<usize>,
    hashers: [RandomState; 2],
    seen: HashMap<KeyHash, u64, BuildHasherDefault<FirstWord>>,
}

/// 128 bits of key hash; the map's own hash is the first word, already random.
#[derive(PartialEq, Eq)]
struct KeyHash(u64, u64);

impl Hash for KeyHash {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.0);
    }
}

/// A hasher that passes through the one u64 it is given.
#[derive(Default)]
struct FirstWord(u64);

impl Hasher for FirstWord {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl Keys {
    fn new(spec: &'static TableSpec) -> Self {
        let cols = spec
            .key
            .iter()
            .filter_map(|k| spec.columns.iter().position(|(c, _)| c == k))
            .collect();
        Keys {
            spec,
            cols,
            hashers: [RandomState::new(), RandomState::new()],
            seen: HashMap::default(),
        }
    }

    fn hash(&self, row: &[Value]) -> KeyHash {
        let [a, b] = self.hashers.each_ref().map(|s| {
            let mut h = s.build_hasher();
            for &i in &self.cols {
                match &row[i] {
                    Value::Null => h.write_u8(0),
                    Value::Text(s) | Value::Json(s) => {
                        h.write_u8(1);
                        s.hash(&mut h);
                    }
                    Value::Date(d) => {
                        h.write_u8(2);
                        d.hash(&mut h);
                    }
                    Value::Int(n) => {
                        h.write_u8(3);
                        n.hash(&mut h);
                    }
                    Value::Float(x) => {
                        h.write_u8(4);
                        x.to_bits().hash(&mut h);
                    }
                    Value::Bytes(v) => {
                        h.write_u8(5);
                        v.hash(&mut h);
                    }
                }
            }
            h.finish()
        });
        KeyHash(a, b)
    }

    /// Record the row's key at `line`; the line that had it first, if any.
    fn first_line(&mut self, row: &[Value], line: u64) -> Option<u64> {
        let key = self.hash(row);
        match self.seen.entry(key) {
            std::collections::hash_map::Entry::Occupied(e) => Some(*e.get()),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(line);
                None
            }
        }
    }

    /// The key of a row as `column value` pairs.
    fn describe(&self, row: &[Value]) -> String {
        self.cols
            .iter()
            .map(|&i| {
                let value = match &row[i] {
                    Value::Text(s) | Value::Json(s) => quote(s),
                    Value::Date(d) => d.to_string(),
                    Value::Int(n) => n.to_string(),
                    Value::Float(x) => x.to_string(),
                    Value::Null => "empty".to_string(),
                    Value::Bytes(v) => format!("{} bytes", v.len()),
                };
                format!("{} {value}", self.spec.columns[i].0)
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// At most [`EXCERPT_CHARS`] characters of `s`, control characters escaped
/// (`\n`, `\t`, `\x00`, …), and whether it was cut.
fn escaped(s: &str) -> (String, bool) {
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
fn excerpt(s: &str) -> (String, bool) {
    match escaped(s) {
        (e, false) => (e, false),
        (e, true) => (format!("{e}… ({} bytes)", s.len()), true),
    }
}

/// Input text for a message, in double quotes, cut as [`excerpt`] cuts.
fn quote(s: &str) -> String {
    match escaped(s) {
        (e, false) => format!("\"{e}\""),
        (e, true) => format!("\"{e}…\" ({} bytes)", s.len()),
    }
}

/// A control character by name, for messages.
fn char_name(c: char) -> String {
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
fn id_problem(s: &str) -> Option<String> {
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

/// "an array", "a string", …: what a JSON value is, without quoting it.
fn json_kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

/// The first string (key or value) in a JSON value that holds U+0000, which
/// PostgreSQL's JSONB cannot store.
fn json_nul(v: &Json) -> Option<&str> {
    match v {
        Json::String(s) if s.contains('\0') => Some(s),
        Json::Array(a) => a.iter().find_map(json_nul),
        Json::Object(m) => m.iter().find_map(|(k, v)| {
            if k.contains('\0') {
                Some(k.as_str())
            } else {
                json_nul(v)
            }
        }),
        _ => None,
    }
}

/// Typed access to the fields of one record, with errors that name the place.
struct Fields<'a> {
    file: &'a Path,
    line: u64,
    record: &'a csv::StringRecord,
    columns: &'a HashMap<&'static str, usize>,
}

impl Fields<'_> {
    fn raw(&self, col: &str) -> &str {
        self.columns
            .get(col)
            .and_then(|&i| self.record.get(i))
            .unwrap_or("")
    }

    fn bad(&self, col: &str, message: String) -> Error {
        Error::BadField {
            file: self.file.to_path_buf(),
            line: self.line,
            column: col.to_string(),
            message,
        }
    }

    /// A required, non-empty identifier following the id rule.
    fn id(&self, col: &str) -> Result<Value> {
        let s = self.raw(col);
        if s.is_empty() {
            return Err(self.bad(col, "empty value".into()));
        }
        if let Some(p) = id_problem(s) {
            return Err(self.bad(col, p));
        }
        Ok(Value::Text(s.to_string()))
    }

    /// An optional id or label: empty is NULL, anything else follows the id rule.
    fn opt_label(&self, col: &str) -> Result<Value> {
        match self.raw(col) {
            "" => Ok(Value::Null),
            _ => self.id(col),
        }
    }

    /// An instrument status from [`STATUSES`], any case, stored as written.
    fn status(&self, col: &str) -> Result<Value> {
        let v = self.id(col)?;
        let s = self.raw(col);
        if STATUSES.iter().any(|k| k.eq_ignore_ascii_case(s)) {
            return Ok(v);
        }
        Err(self.bad(
            col,
            format!(
                "unknown status {}; expected one of {} (any case)",
                quote(s),
                STATUSES.join(", ")
            ),
        ))
    }

    /// An instrument id that is in the `instruments` table.
    fn instrument(&self, col: &str, door: &Door) -> Result<Value> {
        let v = self.id(col)?;
        let s = self.raw(col);
        if door.known.as_ref().is_some_and(|k| !k.contains(s)) {
            return Err(self.bad(
                col,
                format!(
                    "unknown instrument {}: it is not in the instruments table; import it with \
                     `stabspace import instruments` first",
                    quote(s)
                ),
            ));
        }
        Ok(v)
    }

    fn date(&self, col: &str) -> Result<Value> {
        let s = self.raw(col);
        NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .map(Value::Date)
            .map_err(|_| self.bad(col, format!("invalid date {}, expected YYYY-MM-DD", quote(s))))
    }

    fn number(&self, col: &str) -> Result<f64> {
        let s = self.raw(col);
        let x: f64 = s
            .parse()
            .map_err(|_| self.bad(col, format!("invalid number {}", quote(s))))?;
        if !x.is_finite() {
            return Err(self.bad(col, format!("{} is not a finite number", quote(s))));
        }
        Ok(x)
    }

    /// A closing price: a number greater than 0.
    fn close(&self, col: &str) -> Result<Value> {
        let x = self.number(col)?;
        if x <= 0.0 {
            let s = quote(self.raw(col));
            return Err(self.bad(col, format!("{s} is not a price: a close must be greater than 0")));
        }
        Ok(Value::Float(x))
    }

    /// A traded volume: a whole number of 0 or more (`1000`, `1000.0` and `1e3`
    /// are the same value; `1000.5` is not a volume).
    fn volume(&self, col: &str) -> Result<Value> {
        let x = self.number(col)?;
        if x < 0.0 || x.fract() != 0.0 {
            let s = quote(self.raw(col));
            return Err(self.bad(
                col,
                format!("{s} is not a volume: expected a whole number of 0 or more"),
            ));
        }
        // -0 is stored as 0.
        Ok(Value::Float(x + 0.0))
    }

    /// A simple return over one day: greater than −1 (a loss of at most the whole position).
    fn path_return(&self, col: &str) -> Result<Value> {
        let x = self.number(col)?;
        if x <= -1.0 {
            let s = quote(self.raw(col));
            return Err(self.bad(
                col,
                format!("{s} loses the whole position or more: a return must be greater than -1"),
            ));
        }
        Ok(Value::Float(x))
    }

    fn day_index(&self, col: &str) -> Result<Value> {
        let s = self.raw(col);
        match s.parse::<i32>() {
            Ok(i) if i >= 0 => Ok(Value::Int(i64::from(i))),
            _ => Err(self.bad(
                col,
                format!("invalid day index {}, expected an integer ≥ 0", quote(s)),
            )),
        }
    }

    fn object(&self, col: &str) -> Result<Map<String, Json>> {
        let s = self.raw(col);
        let v = serde_json::from_str::<Json>(s)
            .map_err(|e| self.bad(col, format!("invalid JSON: {}", excerpt(&e.to_string()).0)))?;
        if let Some(nul) = json_nul(&v) {
            return Err(self.bad(
                col,
                format!(
                    "the JSON string {} holds a NUL character, which PostgreSQL cannot store",
                    quote(nul)
                ),
            ));
        }
        match v {
            Json::Object(m) => Ok(m),
            other => Err(self.bad(col, format!("expected a JSON object, got {}", json_kind(&other)))),
        }
    }

    fn json_object(&self, col: &str) -> Result<Value> {
        Ok(Value::Json(Json::Object(self.object(col)?).to_string()))
    }

    /// A JSON object of instrument_id → finite numeric weight. Ids follow the
    /// id rule; ids not in `instruments` are noted in `door` (a warning, not an error).
    fn weights(&self, col: &str, door: &mut Door) -> Result<Map<String, Json>> {
        let m = self.object(col)?;
        for (k, v) in &m {
            if k.is_empty() {
                return Err(self.bad(col, "a weight has an empty instrument id".into()));
            }
            if let Some(p) = id_problem(k) {
                return Err(self.bad(col, format!("instrument id {p}")));
            }
            if !v.as_f64().is_some_and(f64::is_finite) {
                return Err(self.bad(
                    col,
                    format!("weight of {} is {}, expected a number", quote(k), json_kind(v)),
                ));
            }
            if door.known.as_ref().is_some_and(|known| !known.contains(k)) {
                door.unknown.insert(k.clone());
            }
        }
        Ok(m)
    }
}
