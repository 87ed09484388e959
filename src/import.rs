//! `stabspace import KIND FILE.csv`: CSV files into the tables.
//!
//! Every file is read as a stream and written in one transaction: a bad row
//! anywhere aborts the whole file with an error naming file, line and column,
//! and the database is left exactly as before. Rows are upserted on the table
//! key, so importing the same file twice changes nothing.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::NaiveDate;
use serde_json::{Map, Value as Json};

use crate::error::{Error, Result};
use crate::progress;
use crate::storage::bulk::{BulkWriter, TableSpec, Value};
use crate::storage::tables::*;
use crate::storage::Db;

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

    /// Convert one validated record to the cells of [`ImportKind::spec`].
    fn row(self, f: &Fields<'_>) -> Result<Vec<Value>> {
        Ok(match self {
            ImportKind::Instruments => vec![
                f.id("instrument_id")?,
                f.opt_text("issuer_id"),
                f.id("market_id")?,
                f.opt_text("region"),
                f.id("status")?,
            ],
            ImportKind::Prices => vec![
                f.id("instrument_id")?,
                f.date("trade_date")?,
                f.float("close")?,
                f.float("volume")?,
            ],
            ImportKind::Scenarios => vec![
                f.id("scenario_set_id")?,
                f.id("scenario_id")?,
                f.date("scenario_date")?,
                f.opt_text("shock_type"),
                f.opt_text("severity"),
            ],
            ImportKind::ScenarioPaths => vec![
                f.id("scenario_set_id")?,
                f.id("scenario_id")?,
                f.day_index("day_index")?,
                f.id("instrument_id")?,
                f.float("return")?,
            ],
            ImportKind::Portfolios => {
                let weights = f.weights("weights_json")?;
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
}

/// Import one CSV file in one transaction.
pub async fn import_file(db: &Db, kind: ImportKind, path: &Path) -> Result<ImportSummary> {
    let started = Instant::now();
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut rdr = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(BufReader::with_capacity(1 << 20, file));
    let header = rdr.headers().map_err(|e| csv_error(path, &e))?.clone();
    let index: HashMap<String, usize> = header
        .iter()
        .enumerate()
        .map(|(i, h)| (h.trim().to_ascii_lowercase(), i))
        .collect();
    let mut columns = HashMap::new();
    for &c in kind.required_columns() {
        let i = *index.get(c).ok_or_else(|| Error::MissingColumn {
            file: path.to_path_buf(),
            column: c.to_string(),
            found: header.iter().collect::<Vec<_>>().join(","),
        })?;
        columns.insert(c, i);
    }

    let pb = progress::bytes(len, format!("importing {}", path.display()));
    let mut tx = db.begin().await?;
    let mut writer = BulkWriter::new(kind.spec());
    // Instruments create their markets and issuers; first region seen wins.
    let mut markets: BTreeMap<String, Value> = BTreeMap::new();
    let mut issuers: BTreeMap<String, Value> = BTreeMap::new();
    let mut record = csv::StringRecord::new();
    let mut rows = 0u64;
    while rdr.read_record(&mut record).map_err(|e| csv_error(path, &e))? {
        let fields = Fields {
            file: path,
            line: record.position().map_or(0, |p| p.line()),
            record: &record,
            columns: &columns,
        };
        let row = kind.row(&fields)?;
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
    Ok(ImportSummary {
        kind,
        file: path.to_path_buf(),
        rows,
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn csv_error(path: &Path, e: &csv::Error) -> Error {
    let line = e.position().map_or(0, |p| p.line());
    let message = match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => {
            format!("row has {len} fields, the header has {expected_len}")
        }
        csv::ErrorKind::Utf8 { .. } => "row is not valid UTF-8".to_string(),
        _ => e.to_string(),
    };
    Error::BadRow {
        file: path.to_path_buf(),
        line,
        message,
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

    /// A required, non-empty identifier or label.
    fn id(&self, col: &str) -> Result<Value> {
        let s = self.raw(col);
        if s.is_empty() {
            return Err(self.bad(col, "empty value".into()));
        }
        Ok(Value::Text(s.to_string()))
    }

    fn opt_text(&self, col: &str) -> Value {
        match self.raw(col) {
            "" => Value::Null,
            s => Value::Text(s.to_string()),
        }
    }

    fn date(&self, col: &str) -> Result<Value> {
        let s = self.raw(col);
        NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .map(Value::Date)
            .map_err(|_| self.bad(col, format!("invalid date {s:?}, expected YYYY-MM-DD")))
    }

    fn float(&self, col: &str) -> Result<Value> {
        let s = self.raw(col);
        let x: f64 = s
            .parse()
            .map_err(|_| self.bad(col, format!("invalid number {s:?}")))?;
        if !x.is_finite() {
            return Err(self.bad(col, format!("{s:?} is not a finite number")));
        }
        Ok(Value::Float(x))
    }

    fn day_index(&self, col: &str) -> Result<Value> {
        let s = self.raw(col);
        match s.parse::<i32>() {
            Ok(i) if i >= 0 => Ok(Value::Int(i64::from(i))),
            _ => Err(self.bad(col, format!("invalid day index {s:?}, expected an integer ≥ 0"))),
        }
    }

    fn object(&self, col: &str) -> Result<Map<String, Json>> {
        let s = self.raw(col);
        match serde_json::from_str::<Json>(s) {
            Ok(Json::Object(m)) => Ok(m),
            Ok(other) => Err(self.bad(col, format!("expected a JSON object, got {other}"))),
            Err(e) => Err(self.bad(col, format!("invalid JSON: {e}"))),
        }
    }

    fn json_object(&self, col: &str) -> Result<Value> {
        Ok(Value::Json(Json::Object(self.object(col)?).to_string()))
    }

    /// A JSON object of instrument_id → finite numeric weight.
    fn weights(&self, col: &str) -> Result<Map<String, Json>> {
        let m = self.object(col)?;
        for (k, v) in &m {
            if !v.as_f64().is_some_and(f64::is_finite) {
                return Err(self.bad(col, format!("weight of {k:?} is {v}, expected a number")));
            }
        }
        Ok(m)
    }
}
