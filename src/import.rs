//! `stabspace import KIND FILE.csv`: CSV files into the tables.
//!
//! Every file is read as a stream and written in one transaction: a bad row
//! anywhere aborts the whole file with an error naming file, line and column,
//! and the database is left exactly as before. Rows are upserted on the table
//! key, so importing the same file twice changes nothing.
//!
//! Input is checked at the door, the same way for both backends: ids and labels
//! (at most [`MAX_ID_BYTES`] bytes, no control characters), dates (exactly
//! `YYYY-MM-DD`, years 0001–9999: [`crate::config::parse_date`]), value ranges (a
//! positive close, a whole volume from 0 to [`MAX_VOLUME`], a day index from 0
//! to [`MAX_DAY_INDEX`], a return above −1), the instrument status
//! ([`STATUSES`]), instruments that prices and paths name and scenarios that
//! paths name (they must already be imported), JSON objects (no key twice, no
//! integer beyond 64 bits, weights whose absolute values sum to a finite
//! number), and keys repeated within one file. Risk reports naming portfolios
//! without target weights and fundamentals naming unknown issuers are imported
//! with a warning listing them. Error messages quote at most [`EXCERPT_CHARS`]
//! characters of the input.
//!
//! Memory is bounded at the door: a header or row longer than
//! [`MAX_LINE_BYTES`] (1 MiB, line breaks inside quoted fields included) is an
//! error at its line, found without holding it; rows go to the database in
//! chunks of at most 4096 rows or about 8 MiB. What grows with the file is the
//! duplicate-key check, 24 bytes a row (plus the hash table's slack), and what
//! grows with the database is the ids read to check names against: every
//! instrument id (prices, paths, portfolios), the scenario ids of the sets a
//! paths file names (16 bytes each), every portfolio id (risk reports) or
//! issuer id (fundamentals). Measured with `/usr/bin/time -v stabspace import
//! prices FILE` on SQLite and PostgreSQL (debug build): a 200 MB one-line
//! header or a 200 MB row is rejected at 22 MB peak RSS (840 MB and 488 MB
//! before the line limit, when both imported), 200 rows of 1 MB JSON import at
//! 57 MB (620 MB before the chunks' byte bound), 2 million path rows at 179 MB.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::fs::File;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::{Map, Value as Json};

use crate::error::{Error, Result};
use crate::progress::{Progress, BYTES};
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

/// The longest header or row, in bytes: 1 MiB. Line breaks inside quoted
/// fields count, the line end does not. A longer one is an error at the line
/// where it starts, found as its bytes stream past: it is never held whole.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// The largest volume: 2⁵³. Volumes are stored as doubles (`DOUBLE PRECISION`,
/// SQLite `REAL`), which hold every whole number exactly only up to 2⁵³.
pub const MAX_VOLUME: u64 = 1 << 53;

/// The largest day index: 2³¹ − 1, the most an `INTEGER` column holds on PostgreSQL.
pub const MAX_DAY_INDEX: u64 = i32::MAX as u64;

/// Distinct unknown ids a warning names before "and N more".
const WARN_NAMES: usize = 5;

/// What a CSV file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
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

    /// The ids that rows of this kind name and that must (prices and paths:
    /// instruments) or should (portfolio weights: instruments; risk reports:
    /// portfolios with target weights; fundamentals: issuers) be in the
    /// database already: the query reading them.
    fn known_ids(self) -> Option<&'static str> {
        match self {
            ImportKind::Prices | ImportKind::ScenarioPaths | ImportKind::Portfolios => {
                Some("SELECT instrument_id FROM instruments")
            }
            ImportKind::RiskReports => Some("SELECT DISTINCT portfolio_id FROM target_portfolios"),
            ImportKind::Fundamentals => Some("SELECT issuer_id FROM issuers"),
            _ => None,
        }
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
                f.noted_id("portfolio_id", door)?,
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
                f.noted_id("issuer_id", door)?,
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
    /// The distinct ids that rows name and the database does not know, sorted:
    /// instruments in portfolio weights (not in `instruments`), portfolios in
    /// risk reports (no target weights in `target_portfolios`), issuers in
    /// fundamentals (not in `issuers`). The import stores the rows anyway and
    /// warns on stderr, listing them. Empty for the other kinds.
    pub unknown: Vec<String>,
}

/// Import one CSV file in one transaction.
pub async fn import_file(
    db: &Db,
    kind: ImportKind,
    path: &Path,
    progress: &dyn Progress,
) -> Result<ImportSummary> {
    let started = Instant::now();
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut rdr = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(Lines::new(BufReader::with_capacity(1 << 20, file)));
    let header = rdr.headers().cloned();
    let header = header.map_err(|e| csv_error(path, &e, rdr.get_mut(), None))?;
    let header_line = rdr.get_mut().line_at(header.position().map_or(0, |p| p.byte()));
    if header.is_empty() {
        return Err(Error::BadRow {
            file: path.to_path_buf(),
            line: 1,
            message: format!(
                "empty file{}: expected a header row naming the columns {}",
                if len > 0 { " (only blank lines)" } else { "" },
                kind.required_columns().join(",")
            ),
        });
    }
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
            found: if index.is_empty() {
                "no column names".to_string()
            } else {
                excerpt(&header.iter().collect::<Vec<_>>().join(",")).0
            },
        })?;
        columns.insert(c, i);
    }

    progress.start(BYTES, Some(len));
    progress.message(&format!("importing {}", path.display()));
    let mut tx = db.begin().await?;
    let known = match kind.known_ids() {
        Some(sql) => Some(known_ids(&mut tx, sql).await.map_err(|e| db.err(e))?),
        None => None,
    };
    let mut door = Door {
        known,
        unknown: BTreeSet::new(),
        keys: Keys::new(kind.spec()),
        sets: HashMap::new(),
        last_scenario: None,
    };
    let mut writer = BulkWriter::new(kind.spec());
    // Instruments create their markets and issuers; first region seen wins.
    let mut markets: BTreeMap<String, Value> = BTreeMap::new();
    let mut issuers: BTreeMap<String, Value> = BTreeMap::new();
    let mut record = csv::StringRecord::new();
    let mut rows = 0u64;
    while rdr
        .read_record(&mut record)
        .map_err(|e| csv_error(path, &e, rdr.get_mut(), Some(&header)))?
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
        if let (ImportKind::ScenarioPaths, Value::Text(set), Value::Text(scenario)) = (kind, &row[0], &row[1])
        {
            // Paths come grouped by scenario: the row before's is known already.
            if !matches!(&door.last_scenario, Some((s, c)) if s == set && c == scenario) {
                if !door.sets.contains_key(set) {
                    let ids = door
                        .keys
                        .scenario_ids(&mut tx, set)
                        .await
                        .map_err(|e| db.err(e))?;
                    door.sets.insert(set.clone(), ids);
                }
                fields.known_scenario(&door, set, scenario)?;
                door.last_scenario = Some((set.clone(), scenario.clone()));
            }
        }
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
            progress.set_position(rdr.position().byte());
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
    progress.finish();
    let unknown: Vec<String> = door.unknown.into_iter().collect();
    if !unknown.is_empty() {
        eprintln!("warning: {}", unknown_warning(kind, path, &unknown));
    }
    Ok(ImportSummary {
        kind,
        file: path.to_path_buf(),
        rows,
        seconds: started.elapsed().as_secs_f64(),
        unknown,
    })
}

/// The warning for rows naming ids the database does not know (see
/// [`ImportSummary::unknown`]).
fn unknown_warning(kind: ImportKind, path: &Path, ids: &[String]) -> String {
    let mut names: Vec<String> = ids.iter().take(WARN_NAMES).map(|s| quote(s)).collect();
    if ids.len() > WARN_NAMES {
        names.push(format!("and {} more", ids.len() - WARN_NAMES));
    }
    let n = ids.len();
    let s = if n == 1 { "" } else { "s" };
    let what = match kind {
        ImportKind::RiskReports => format!(
            "risk reports name {n} portfolio{s} with no target weights in target_portfolios \
             (imported anyway; import their weights with `stabspace import portfolios`)"
        ),
        ImportKind::Fundamentals => format!(
            "fundamentals name {n} issuer{s} not in the issuers table (imported anyway; no \
             instrument links to them until instruments naming them are imported)"
        ),
        _ => format!(
            "weights name {n} instrument{s} not in the instruments table (imported anyway; \
             they get no vector)"
        ),
    };
    format!("{}: {what}: {}", path.display(), names.join(", "))
}

/// The ids one query reads, inside the import's transaction.
async fn known_ids(tx: &mut Tx, sql: &str) -> Result<HashSet<String>, sqlx::Error> {
    let ids: Vec<String> = match tx {
        Tx::Postgres(t) => sqlx::query_scalar(sql).fetch_all(&mut **t).await?,
        Tx::Sqlite(t) => sqlx::query_scalar(sql).fetch_all(&mut **t).await?,
    };
    Ok(ids.into_iter().collect())
}

/// The error for a failure of the CSV reader: a row with the wrong number of
/// fields, bad UTF-8, or what [`Lines`] found (a line over the limit, an
/// unbalanced quote). `header` is `None` while the header itself is read.
fn csv_error<R>(
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
fn field_name(header: Option<&csv::StringRecord>, field: usize) -> String {
    match header.and_then(|h| h.get(field)).filter(|n| !n.is_empty()) {
        Some(name) => format!("field {} ({})", field + 1, quote(name)),
        None => format!("field {}", field + 1),
    }
}

/// What [`Lines`] finds wrong with the CSV text itself, before the parser
/// holds it: passed through the `csv` reader as an I/O error.
#[derive(Debug)]
enum InputError {
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
    fn to_error(&self, path: &Path, header: Option<&csv::StringRecord>) -> Error {
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
enum Csv {
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
    fn new(inner: R) -> Self {
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
    fn line_at(&mut self, byte: u64) -> u64 {
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
    fn quoted_break_at(&mut self, byte: u64) -> Option<(u64, usize)> {
        self.line_at(byte);
        let offset = self.starts.front().map_or(self.offset, |&(o, _)| o);
        self.breaks
            .front()
            .filter(|&&(o, _, _)| o == offset)
            .map(|&(_, line, field)| (line, field))
    }

    /// Follow the parser over one byte (see [`Csv`]).
    fn step(&mut self, b: u8) -> Result<(), InputError> {
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

/// State kept across the rows of one file.
struct Door {
    /// The ids in the database that rows of this kind name
    /// ([`ImportKind::known_ids`]).
    known: Option<HashSet<String>>,
    /// Ids named that are not in `known`, where that is a warning.
    unknown: BTreeSet<String>,
    keys: Keys,
    /// Scenario paths: the scenario ids of each set named so far, as hashes
    /// (empty for a set with no scenarios), read when a set is first named.
    sets: HashMap<String, IdHashes>,
    /// Scenario paths: the (set, scenario) of the last row, known to be in `scenarios`.
    last_scenario: Option<(String, String)>,
}

/// A set of ids as 128-bit hashes ([`Keys::id_hash`]): 16 bytes an id.
type IdHashes = HashSet<KeyHash, BuildHasherDefault<FirstWord>>;

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

    /// The 128-bit hash of one id, keyed as the row keys are.
    fn id_hash(&self, id: &str) -> KeyHash {
        let [a, b] = self.hashers.each_ref().map(|s| s.hash_one(id));
        KeyHash(a, b)
    }

    /// The scenario ids of one set, hashed, streamed from the database inside
    /// the import's transaction (never all held as text).
    async fn scenario_ids(&self, tx: &mut Tx, set: &str) -> Result<IdHashes, sqlx::Error> {
        use futures_util::TryStreamExt as _;
        const SQL: &str = "SELECT scenario_id FROM scenarios WHERE scenario_set_id = $1";
        let mut ids = IdHashes::default();
        match tx {
            Tx::Postgres(t) => {
                let mut rows = sqlx::query_scalar::<_, String>(SQL).bind(set).fetch(&mut **t);
                while let Some(id) = rows.try_next().await? {
                    ids.insert(self.id_hash(&id));
                }
            }
            Tx::Sqlite(t) => {
                let mut rows = sqlx::query_scalar::<_, String>(SQL).bind(set).fetch(&mut **t);
                while let Some(id) = rows.try_next().await? {
                    ids.insert(self.id_hash(&id));
                }
            }
        }
        Ok(ids)
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
pub(crate) fn quote(s: &str) -> String {
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

    /// An id that should be in the database ([`ImportKind::known_ids`]): one
    /// that is not is noted in `door` for the warning, not an error.
    fn noted_id(&self, col: &str, door: &mut Door) -> Result<Value> {
        let v = self.id(col)?;
        let s = self.raw(col);
        if door.known.as_ref().is_some_and(|k| !k.contains(s)) && !door.unknown.contains(s) {
            door.unknown.insert(s.to_string());
        }
        Ok(v)
    }

    /// A scenario path's set and scenario must be in `scenarios` (the set's ids
    /// are in `door.sets`).
    fn known_scenario(&self, door: &Door, set: &str, scenario: &str) -> Result<()> {
        let ids = &door.sets[set];
        if ids.is_empty() {
            return Err(self.bad(
                "scenario_set_id",
                format!(
                    "unknown scenario set {}: it has no scenarios in the scenarios table; import \
                     them with `stabspace import scenarios` first",
                    quote(set)
                ),
            ));
        }
        if !ids.contains(&door.keys.id_hash(scenario)) {
            return Err(self.bad(
                "scenario_id",
                format!(
                    "unknown scenario {} of set {}: it is not in the scenarios table; import it \
                     with `stabspace import scenarios` first",
                    quote(scenario),
                    quote(set)
                ),
            ));
        }
        Ok(())
    }

    /// A date, exactly `YYYY-MM-DD` with a year from 0001 to 9999 ([`crate::config::parse_date`]).
    fn date(&self, col: &str) -> Result<Value> {
        crate::config::parse_date(self.raw(col))
            .map(Value::Date)
            .map_err(|m| self.bad(col, m))
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

    /// A traded volume: a whole number from 0 to [`MAX_VOLUME`] as written
    /// (`1000`, `1000.0` and `1e3` are the same value; `1000.5` is not a volume,
    /// nor is `9007199254740993`, which a double would round).
    fn volume(&self, col: &str) -> Result<Value> {
        self.number(col)?;
        let s = self.raw(col);
        match whole(s) {
            Some(Whole::Int(n)) if n <= u128::from(MAX_VOLUME) => Ok(Value::Float(n as f64)),
            Some(Whole::Int(_) | Whole::TooLarge) => Err(self.bad(
                col,
                format!(
                    "{} is above the largest volume, 2^53 = {MAX_VOLUME}: volumes are stored as \
                     doubles, which hold every whole number exactly only up to there",
                    quote(s)
                ),
            )),
            _ => Err(self.bad(
                col,
                format!(
                    "{} is not a volume: expected a whole number of 0 or more",
                    quote(s)
                ),
            )),
        }
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

    /// A day index: an integer from 0 to [`MAX_DAY_INDEX`].
    fn day_index(&self, col: &str) -> Result<Value> {
        let s = self.raw(col);
        let (negative, digits) = match s.as_bytes().first() {
            Some(b'-') => (true, &s[1..]),
            Some(b'+') => (false, &s[1..]),
            _ => (false, s),
        };
        if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
            return Err(self.bad(
                col,
                format!(
                    "invalid day index {}, expected an integer from 0 to {MAX_DAY_INDEX}",
                    quote(s)
                ),
            ));
        }
        let significant = digits.trim_start_matches('0');
        let value = if significant.len() > 19 {
            u64::MAX
        } else {
            significant.parse::<u64>().unwrap_or(0)
        };
        if negative && value > 0 {
            return Err(self.bad(
                col,
                format!(
                    "day index {} is negative: expected an integer from 0 to {MAX_DAY_INDEX}",
                    quote(s)
                ),
            ));
        }
        if value > MAX_DAY_INDEX {
            return Err(self.bad(
                col,
                format!(
                    "day index {} is above the limit {MAX_DAY_INDEX} (2^31 - 1, the largest an \
                     INTEGER column holds)",
                    quote(s)
                ),
            ));
        }
        Ok(Value::Int(value as i64))
    }

    /// A JSON object, strictly: no key twice in any object, no integer that
    /// does not fit 64 bits (it would be rounded to a double), no NUL.
    fn object(&self, col: &str) -> Result<Map<String, Json>> {
        let s = self.raw(col);
        let v = serde_json::from_str::<StrictJson>(s)
            .map_err(|e| self.bad(col, json_error(s, &e)))?
            .0;
        if let Some((at, integer)) = long_integer(s) {
            let (line, column) = json_position(s, at);
            return Err(self.bad(
                col,
                format!(
                    "the integer {} at line {line} column {column} of the JSON does not fit 64 bits: \
                     JSON integers are stored exactly from -2^63 to 2^64 - 1; write it with a \
                     decimal point or an exponent to store it as a double",
                    excerpt(integer).0
                ),
            ));
        }
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

    /// A JSON object of instrument_id → finite numeric weight, the absolute
    /// weights summing to a finite number (the portfolio vector divides by
    /// that sum). Ids follow the id rule; ids not in `instruments` are noted in
    /// `door` (a warning, not an error).
    fn weights(&self, col: &str, door: &mut Door) -> Result<Map<String, Json>> {
        let m = self.object(col)?;
        let mut total = 0f64;
        for (k, v) in &m {
            if k.is_empty() {
                return Err(self.bad(col, "a weight has an empty instrument id".into()));
            }
            if let Some(p) = id_problem(k) {
                return Err(self.bad(col, format!("instrument id {p}")));
            }
            let Some(w) = v.as_f64().filter(|w| w.is_finite()) else {
                return Err(self.bad(
                    col,
                    format!("weight of {} is {}, expected a number", quote(k), json_kind(v)),
                ));
            };
            total += w.abs();
            if !total.is_finite() {
                return Err(self.bad(
                    col,
                    format!(
                        "the absolute weights overflow a double (above about 1.8e308) when \
                         summed, at the weight of {}; scale them down: only their ratios matter",
                        quote(k)
                    ),
                ));
            }
            if door.known.as_ref().is_some_and(|known| !known.contains(k)) {
                door.unknown.insert(k.clone());
            }
        }
        Ok(m)
    }
}

/// The exact value of a decimal number as written, when it is whole.
#[derive(Debug, PartialEq, Eq)]
enum Whole {
    Int(u128),
    /// Whole and positive, beyond 2¹²⁸.
    TooLarge,
    /// Not a whole number.
    Fraction,
    /// Below zero.
    Negative,
}

/// What the decimal text `s` (`12`, `+1.5e3`, `-0.0`, `.5`) is exactly, without
/// rounding through a double: `9007199254740993` is that integer, not 2⁵³, and
/// `5000000000000000.3` is not whole. `None` if `s` is not a decimal number.
fn whole(s: &str) -> Option<Whole> {
    let (negative, s) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if (int.is_empty() && frac.is_empty()) || !int.bytes().chain(frac.bytes()).all(|c| c.is_ascii_digit()) {
        return None;
    }
    // The power of ten, saturated far beyond any meaningful range.
    let mut exp: i64 = match exponent {
        None => 0,
        Some(e) => {
            let (sign, digits) = match e.as_bytes().first() {
                Some(b'-') => (-1, &e[1..]),
                Some(b'+') => (1, &e[1..]),
                _ => (1, e),
            };
            if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let digits = digits.trim_start_matches('0');
            sign * if digits.len() > 12 {
                1_000_000_000_000
            } else {
                digits.parse::<i64>().unwrap_or(0)
            }
        }
    };
    exp -= frac.len() as i64;
    let digits = format!("{int}{frac}");
    let digits = digits.trim_start_matches('0');
    if digits.is_empty() {
        return Some(Whole::Int(0));
    }
    if negative {
        return Some(Whole::Negative);
    }
    let significant = digits.trim_end_matches('0');
    exp += (digits.len() - significant.len()) as i64;
    if exp < 0 {
        return Some(Whole::Fraction);
    }
    if significant.len() as i64 + exp > 39 {
        return Some(Whole::TooLarge);
    }
    let n = significant.parse::<u128>().ok();
    let n = n.and_then(|n| 10u128.checked_pow(exp as u32).and_then(|p| n.checked_mul(p)));
    Some(n.map_or(Whole::TooLarge, Whole::Int))
}

/// A JSON value parsed as `serde_json::Value` is, except that a key given
/// twice in one object is an error (serde_json keeps the last silently).
struct StrictJson(Json);

impl<'de> serde::Deserialize<'de> for StrictJson {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(StrictJson)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> std::result::Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_bool<E>(self, b: bool) -> std::result::Result<Json, E> {
        Ok(Json::Bool(b))
    }
    fn visit_i64<E>(self, n: i64) -> std::result::Result<Json, E> {
        Ok(Json::from(n))
    }
    fn visit_u64<E>(self, n: u64) -> std::result::Result<Json, E> {
        Ok(Json::from(n))
    }
    fn visit_f64<E: serde::de::Error>(self, x: f64) -> std::result::Result<Json, E> {
        serde_json::Number::from_f64(x)
            .map(Json::Number)
            .ok_or_else(|| E::custom("a number that is not finite"))
    }
    fn visit_str<E>(self, s: &str) -> std::result::Result<Json, E> {
        Ok(Json::String(s.to_string()))
    }
    fn visit_string<E>(self, s: String) -> std::result::Result<Json, E> {
        Ok(Json::String(s))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Json, A::Error> {
        let mut out = Vec::new();
        while let Some(StrictJson(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Json::Array(out))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> std::result::Result<Json, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(serde::de::Error::custom(format!(
                    "the key {} is given twice in one object",
                    quote(&key)
                )));
            }
            let StrictJson(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Json::Object(out))
    }
}

/// The message for JSON that does not parse, with a hint where it holds
/// `NaN` or `Infinity` (which JSON does not have).
fn json_error(text: &str, e: &serde_json::Error) -> String {
    // serde_json's messages are short and quote no input; ours quote keys cut short.
    let mut m = format!("invalid JSON: {e}");
    if e.is_syntax() {
        let at = text
            .split_inclusive('\n')
            .take(e.line().saturating_sub(1))
            .map(str::len)
            .sum::<usize>()
            + e.column().saturating_sub(1);
        let rest = text.get(at..).unwrap_or("").trim_start_matches('-');
        if ["NaN", "nan", "Infinity", "inf"]
            .iter()
            .any(|w| rest.starts_with(w))
        {
            m.push_str(" (JSON has no NaN or Infinity: numbers must be finite)");
        }
    }
    m
}

/// Line and column (1-based, in characters) of byte `at` of `text`.
fn json_position(text: &str, at: usize) -> (usize, usize) {
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[start..].chars().count() + 1)
}

/// The first integer in JSON text (already parsed) that fits neither `i64`
/// nor `u64`, which serde_json would round to a double: its byte offset and text.
fn long_integer(text: &str) -> Option<(usize, &str)> {
    let b = text.as_bytes();
    let (mut i, mut in_string) = (0, false);
    while i < b.len() {
        let c = b[i];
        if in_string {
            match c {
                b'\\' => i += 1,
                b'"' => in_string = false,
                _ => {}
            }
        } else if c == b'"' {
            in_string = true;
        } else if c == b'-' || c.is_ascii_digit() {
            let start = i;
            while i < b.len() && matches!(b[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') {
                i += 1;
            }
            let token = &text[start..i];
            if !token.contains(['.', 'e', 'E'])
                && token.parse::<i64>().is_err()
                && token.parse::<u64>().is_err()
            {
                return Some((start, token));
            }
            continue;
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_reads_decimal_text_exactly() {
        assert_eq!(whole("1000"), Some(Whole::Int(1000)));
        assert_eq!(whole("1000.0"), Some(Whole::Int(1000)));
        assert_eq!(whole("1e3"), Some(Whole::Int(1000)));
        assert_eq!(whole("+1.5E3"), Some(Whole::Int(1500)));
        assert_eq!(whole("12000e-3"), Some(Whole::Int(12)));
        assert_eq!(whole("-0.0"), Some(Whole::Int(0)));
        assert_eq!(whole("0e999999999999999999999"), Some(Whole::Int(0)));
        assert_eq!(whole(".5"), Some(Whole::Fraction));
        assert_eq!(whole("1000.5"), Some(Whole::Fraction));
        assert_eq!(whole("1e-3"), Some(Whole::Fraction));
        assert_eq!(whole("5000000000000000.3"), Some(Whole::Fraction));
        assert_eq!(whole("1.0000000000000000001"), Some(Whole::Fraction));
        assert_eq!(whole("-1"), Some(Whole::Negative));
        assert_eq!(whole("9007199254740993"), Some(Whole::Int(9_007_199_254_740_993)));
        assert_eq!(whole("1e39"), Some(Whole::TooLarge));
        assert_eq!(whole("1e999999999999999999999"), Some(Whole::TooLarge));
        assert_eq!(whole("1e38"), Some(Whole::Int(10u128.pow(38))));
        for bad in ["", ".", "e5", "1e", "1e+", "x", "1.2.3", "inf", "NaN", "--1"] {
            assert_eq!(whole(bad), None, "{bad}");
        }
    }

    #[test]
    fn long_integers_are_found_outside_strings_only() {
        assert_eq!(
            long_integer(r#"{"a": 18446744073709551615, "b": -9223372036854775808}"#),
            None
        );
        let t = r#"{"a": "123456789012345678901234", "b": [1.5e300, 18446744073709551616]}"#;
        assert_eq!(long_integer(t), Some((49, "18446744073709551616")));
        assert_eq!(
            long_integer(r#"{"a\"1": -9223372036854775809}"#).map(|x| x.1),
            Some("-9223372036854775809")
        );
        assert_eq!(long_integer(r#"{"a": 123456789012345678901234.0}"#), None);
    }
}
