//! `stabspace import KIND FILE.csv`: CSV files into the tables.
//!
//! Every file is read as a stream and written in one transaction: a bad row
//! anywhere aborts the whole file with an error naming file, line and column,
//! and the database is left exactly as before. Rows are upserted on the table
//! key, so importing the same file twice changes nothing.
//!
//! Input is checked at the door, the same way for both backends: ids and labels
//! (at most [`MAX_ID_BYTES`] bytes, no control characters), dates (exactly
//! `YYYY-MM-DD`, years 0001–9999: [`crate::parse::parse_date`]), value ranges (a
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

mod csv_reader;
mod door;
mod fields;
mod strict;
mod text;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::Instant;

use csv_reader::{csv_error, Lines};
use door::{Door, Keys};
use fields::Fields;
use text::excerpt;
pub(crate) use text::quote;

use crate::error::{Error, Result};
use crate::progress::{Progress, BYTES};
use crate::storage::bulk::{BulkWriter, TableSpec, Value};
use crate::storage::market::{known_ids, KnownIds};
use crate::storage::tables::*;
use crate::storage::Db;

/// The longest id or label, in bytes (UTF-8). Real identifiers are far shorter
/// (ISIN and FIGI 12, ticker with exchange suffix about 20, UUID 36); 128 leaves
/// room for composed ids while keeping every table key (up to six text columns)
/// well inside PostgreSQL's limit of about 2700 bytes for one index entry, so an
/// id that fits one backend fits the other.
pub const MAX_ID_BYTES: usize = 128;

pub use crate::text::EXCERPT_CHARS;

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
    /// scenario_set_id,scenario_id,scenario_date,shock_type,severity[,known_from]
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
    /// Columns the CSV header may have (read when present).
    pub fn optional_columns(self) -> &'static [&'static str] {
        match self {
            ImportKind::Scenarios => &["known_from"],
            _ => &[],
        }
    }

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
    /// database already.
    fn known_ids(self) -> Option<KnownIds> {
        match self {
            ImportKind::Prices | ImportKind::ScenarioPaths | ImportKind::Portfolios => {
                Some(KnownIds::Instruments)
            }
            ImportKind::RiskReports => Some(KnownIds::TargetPortfolios),
            ImportKind::Fundamentals => Some(KnownIds::Issuers),
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
                f.opt_date("known_from")?,
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
    for &c in kind.optional_columns() {
        if let Some(&i) = index.get(c) {
            columns.insert(c, i);
        }
    }

    progress.start(BYTES, Some(len));
    progress.message(&format!("importing {}", path.display()));
    let mut tx = db.begin().await?;
    let known = match kind.known_ids() {
        Some(which) => Some(known_ids(&mut tx, which).await.map_err(|e| db.err(e))?),
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
                    let ids = door.keys.scenario_ids(db, &mut tx, set).await?;
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
        if rows.is_multiple_of(4096) {
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
