//! Tables that the show/find commands print: CSV (the default, as in the design
//! documents) or JSON, to stdout or to a file written atomically.

use std::io::Write;
use std::path::Path;

use chrono::NaiveDate;
use serde_json::{Map, Value as Json};

use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Format {
    /// Comma-separated values with a header row; floats with 6 decimals.
    #[default]
    Csv,
    /// A JSON array of objects, one per row, floats at full precision.
    Json,
    /// Aligned columns for reading in a terminal.
    Text,
}

/// A date range in words: "on D" for one day, else "from A to B".
pub fn span(from: NaiveDate, to: NaiveDate) -> String {
    if from == to {
        format!("on {from}")
    } else {
        format!("from {from} to {to}")
    }
}

/// One cell.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    Text(String),
    Null,
    Date(NaiveDate),
    Int(i64),
    /// Printed with 6 decimals in CSV.
    Float(f64),
    /// `true` / `false` (a JSON boolean).
    Bool(bool),
}

impl From<&str> for Cell {
    fn from(s: &str) -> Self {
        Cell::Text(s.to_string())
    }
}
impl From<String> for Cell {
    fn from(s: String) -> Self {
        Cell::Text(s)
    }
}
impl From<Option<String>> for Cell {
    fn from(s: Option<String>) -> Self {
        s.map_or(Cell::Null, Cell::Text)
    }
}
impl From<Option<NaiveDate>> for Cell {
    fn from(d: Option<NaiveDate>) -> Self {
        d.map_or(Cell::Null, Cell::from)
    }
}

impl From<NaiveDate> for Cell {
    fn from(d: NaiveDate) -> Self {
        Cell::Date(d)
    }
}
impl From<f64> for Cell {
    fn from(x: f64) -> Self {
        Cell::Float(x)
    }
}
impl From<bool> for Cell {
    fn from(b: bool) -> Self {
        Cell::Bool(b)
    }
}
impl From<usize> for Cell {
    fn from(x: usize) -> Self {
        Cell::Int(x as i64)
    }
}

impl Cell {
    fn csv(&self) -> String {
        match self {
            Cell::Text(s) => s.clone(),
            Cell::Null => String::new(),
            Cell::Date(d) => d.to_string(),
            Cell::Int(i) => i.to_string(),
            Cell::Float(x) => format!("{x:.6}"),
            Cell::Bool(b) => b.to_string(),
        }
    }

    fn text(&self) -> String {
        match self {
            Cell::Null => "-".into(),
            Cell::Float(x) if x.abs() >= 1000.0 => format!("{x:.1}"),
            Cell::Float(x) => format!("{x:.4}"),
            other => other.csv(),
        }
    }

    fn json(&self) -> Json {
        match self {
            Cell::Text(s) => Json::String(s.clone()),
            Cell::Null => Json::Null,
            Cell::Date(d) => Json::String(d.to_string()),
            Cell::Int(i) => Json::from(*i),
            Cell::Float(x) => serde_json::Number::from_f64(*x).map_or(Json::Null, Json::Number),
            Cell::Bool(b) => Json::Bool(*b),
        }
    }
}

/// A header and rows of cells.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    pub columns: &'static [&'static str],
    pub rows: Vec<Vec<Cell>>,
}

impl Table {
    pub fn new(columns: &'static [&'static str]) -> Table {
        Table {
            columns,
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, row: Vec<Cell>) {
        debug_assert_eq!(row.len(), self.columns.len());
        self.rows.push(row);
    }

    /// One JSON object per row, the columns as its fields (what `--format json` prints).
    pub fn json_rows(&self) -> Vec<Json> {
        self.rows
            .iter()
            .map(|row| {
                Json::Object(
                    self.columns
                        .iter()
                        .zip(row)
                        .map(|(c, v)| (c.to_string(), v.json()))
                        .collect::<Map<_, _>>(),
                )
            })
            .collect()
    }

    /// The table as bytes in `format`.
    pub fn render(&self, format: Format) -> Vec<u8> {
        match format {
            Format::Csv => {
                let mut w = csv::Writer::from_writer(Vec::new());
                // Writing to memory cannot fail.
                let _ = w.write_record(self.columns);
                for row in &self.rows {
                    let _ = w.write_record(row.iter().map(Cell::csv));
                }
                w.into_inner().unwrap_or_default()
            }
            Format::Text => {
                let cells: Vec<Vec<String>> =
                    std::iter::once(self.columns.iter().map(|c| c.to_string()).collect())
                        .chain(self.rows.iter().map(|r| r.iter().map(Cell::text).collect()))
                        .collect();
                let widths: Vec<usize> = (0..self.columns.len())
                    .map(|i| cells.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
                    .collect();
                let mut out = String::new();
                for row in &cells {
                    let line: Vec<String> =
                        row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
                    out.push_str(line.join("  ").trim_end());
                    out.push('\n');
                }
                out.into_bytes()
            }
            Format::Json => {
                let mut out = serde_json::to_vec_pretty(&self.json_rows()).unwrap_or_default();
                out.push(b'\n');
                out
            }
        }
    }

    /// Print `format` to stdout, or write it to `output` atomically.
    pub fn emit_to(&self, format: Format, output: Option<&Path>) -> Result<()> {
        let bytes = self.render(format);
        match output {
            None => {
                let mut stdout = std::io::stdout().lock();
                stdout
                    .write_all(&bytes)
                    .and_then(|()| stdout.flush())
                    .map_err(|e| Error::io("<stdout>", e))
            }
            Some(path) => write_file_atomically(path, &bytes),
        }
    }
}

/// `Err(MissingDirectory)` unless the directory `path` would be written into
/// exists: output files go into existing directories only, so a mistyped
/// path is an error rather than a new directory tree.
pub fn check_output_dir(path: &Path) -> Result<()> {
    let dir = output_dir(path);
    if dir.is_dir() {
        Ok(())
    } else {
        Err(Error::MissingDirectory {
            path: path.to_path_buf(),
            dir: dir.to_path_buf(),
        })
    }
}

fn output_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Write `bytes` to a temporary file beside `path`, then rename it over `path`.
/// The directory must exist.
pub fn write_file_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    check_output_dir(path)?;
    let dir = output_dir(path);
    let name = path
        .file_name()
        .map_or("out".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_has_six_decimals_and_json_keeps_types() {
        let mut t = Table::new(&["id", "cosine", "n", "when", "none"]);
        let d = NaiveDate::from_ymd_opt(2025, 1, 31).unwrap();
        t.push(vec![
            "a,b".into(),
            0.5f64.into(),
            3usize.into(),
            d.into(),
            Cell::Null,
        ]);
        let csv = String::from_utf8(t.render(Format::Csv)).unwrap();
        assert_eq!(csv, "id,cosine,n,when,none\n\"a,b\",0.500000,3,2025-01-31,\n");
        let json: Json = serde_json::from_slice(&t.render(Format::Json)).unwrap();
        assert_eq!(
            json,
            serde_json::json!([{"id": "a,b", "cosine": 0.5, "n": 3, "when": "2025-01-31", "none": null}])
        );
    }
}
