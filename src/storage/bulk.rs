//! Bulk upserts inside a caller's transaction.
//!
//! A [`TableSpec`] says which columns a table takes and which of them form its
//! key. A [`BulkWriter`] buffers rows and writes them in chunks:
//!
//! * PostgreSQL: each chunk is streamed with `COPY … FROM STDIN (FORMAT csv)` into
//!   a temporary staging table; [`BulkWriter::finish`] moves the staged rows into
//!   the target with one `INSERT … SELECT DISTINCT ON (key) … ON CONFLICT`, the
//!   last row of a key winning, as on SQLite.
//! * SQLite: multi-row `INSERT … VALUES (…),(…) ON CONFLICT DO UPDATE` statements
//!   of a few hundred rows, prepared once and cached by the driver.
//!
//! Either way the rows become visible only when the caller commits, so a failure
//! part-way leaves the table exactly as it was, and writing the same rows twice
//! leaves one copy.

use std::fmt::Write as _;

use chrono::NaiveDate;
use sqlx::Arguments as _;

use super::Tx;

/// How a column is typed in both backends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Col {
    Text,
    Date,
    Float,
    Int,
    /// JSON text (JSONB on PostgreSQL, TEXT on SQLite).
    Json,
    Bytes,
}

/// What to do when a row's key already exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnConflict {
    /// Replace the non-key columns (idempotent re-import, re-run backfill).
    Update,
    /// Keep the existing row (e.g. markets created on the side of an instrument import).
    Ignore,
}

#[derive(Debug)]
pub struct TableSpec {
    pub table: &'static str,
    pub columns: &'static [(&'static str, Col)],
    pub key: &'static [&'static str],
    pub on_conflict: OnConflict,
    /// Set `created_at` to the current time when a row is replaced.
    pub touch_created_at: bool,
}

/// One cell of a row, typed as its column.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Text(String),
    Date(NaiveDate),
    Float(f64),
    Int(i64),
    /// Serialised JSON.
    Json(String),
    Bytes(Vec<u8>),
}

/// Rows buffered before a chunk is sent.
const CHUNK_ROWS: usize = 4096;
/// SQLite's limit on bound parameters per statement is 32766.
const SQLITE_MAX_PARAMS: usize = 32_000;
/// Rows per SQLite statement, at most.
const SQLITE_ROWS_PER_STATEMENT: usize = 256;

impl TableSpec {
    fn column_list(&self) -> String {
        self.columns
            .iter()
            .map(|(c, _)| *c)
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn conflict_clause(&self) -> String {
        let key = self.key.join(", ");
        let mut sets: Vec<String> = self
            .columns
            .iter()
            .map(|(c, _)| *c)
            .filter(|c| !self.key.contains(c))
            .map(|c| format!("{c} = excluded.{c}"))
            .collect();
        if self.touch_created_at {
            sets.push("created_at = CURRENT_TIMESTAMP".into());
        }
        if self.on_conflict == OnConflict::Ignore || sets.is_empty() {
            format!("ON CONFLICT ({key}) DO NOTHING")
        } else {
            format!("ON CONFLICT ({key}) DO UPDATE SET {}", sets.join(", "))
        }
    }
}

/// Buffers rows for one table and writes them in chunks inside a transaction.
pub struct BulkWriter {
    spec: &'static TableSpec,
    buf: Vec<Vec<Value>>,
    /// PostgreSQL: name of the staging table once created.
    stage: Option<String>,
    rows: u64,
}

impl BulkWriter {
    pub fn new(spec: &'static TableSpec) -> Self {
        BulkWriter {
            spec,
            buf: Vec::with_capacity(CHUNK_ROWS),
            stage: None,
            rows: 0,
        }
    }

    /// Queue one row (cells in the order of `spec.columns`); writes a chunk when the buffer fills.
    pub async fn push(&mut self, tx: &mut Tx, row: Vec<Value>) -> Result<(), sqlx::Error> {
        debug_assert_eq!(row.len(), self.spec.columns.len(), "{}", self.spec.table);
        self.buf.push(row);
        if self.buf.len() >= CHUNK_ROWS {
            self.flush(tx).await?;
        }
        Ok(())
    }

    /// Send the buffered rows.
    pub async fn flush(&mut self, tx: &mut Tx) -> Result<(), sqlx::Error> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.rows += self.buf.len() as u64;
        match tx {
            Tx::Postgres(t) => self.flush_postgres(t).await?,
            Tx::Sqlite(t) => self.flush_sqlite(t).await?,
        }
        self.buf.clear();
        Ok(())
    }

    /// Flush and, on PostgreSQL, move the staged rows into the table. Returns the rows written.
    pub async fn finish(mut self, tx: &mut Tx) -> Result<u64, sqlx::Error> {
        self.flush(tx).await?;
        if let (Tx::Postgres(t), Some(stage)) = (tx, self.stage.take()) {
            let cols = self.spec.column_list();
            let key = self.spec.key.join(", ");
            let sql = format!(
                "INSERT INTO {table} ({cols}) SELECT DISTINCT ON ({key}) {cols} FROM {stage} \
                 ORDER BY {key}, _seq DESC {conflict}",
                table = self.spec.table,
                conflict = self.spec.conflict_clause(),
            );
            sqlx::query(&sql).execute(&mut **t).await?;
            sqlx::query(&format!("DROP TABLE {stage}"))
                .execute(&mut **t)
                .await?;
        }
        Ok(self.rows)
    }

    async fn flush_postgres(
        &mut self,
        t: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    ) -> Result<(), sqlx::Error> {
        let cols = self.spec.column_list();
        let stage = match &self.stage {
            Some(s) => s.clone(),
            None => {
                let name = format!("stage_{}", self.spec.table);
                sqlx::query(&format!(
                    "CREATE TEMP TABLE {name} ON COMMIT DROP AS SELECT {cols} FROM {} WITH NO DATA",
                    self.spec.table
                ))
                .execute(&mut **t)
                .await?;
                sqlx::query(&format!("ALTER TABLE {name} ADD COLUMN _seq BIGSERIAL"))
                    .execute(&mut **t)
                    .await?;
                self.stage = Some(name.clone());
                name
            }
        };
        let mut csv = String::with_capacity(self.buf.len() * 64);
        for row in &self.buf {
            for (i, v) in row.iter().enumerate() {
                if i > 0 {
                    csv.push(',');
                }
                write_csv_cell(&mut csv, v);
            }
            csv.push('\n');
        }
        let mut copy = t
            .copy_in_raw(&format!("COPY {stage} ({cols}) FROM STDIN (FORMAT csv)"))
            .await?;
        copy.send(csv.into_bytes()).await?;
        copy.finish().await?;
        Ok(())
    }

    async fn flush_sqlite(
        &mut self,
        t: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    ) -> Result<(), sqlx::Error> {
        let ncols = self.spec.columns.len();
        let per_stmt = (SQLITE_MAX_PARAMS / ncols).clamp(1, SQLITE_ROWS_PER_STATEMENT);
        let placeholders = format!("({})", vec!["?"; ncols].join(","));
        for group in self.buf.chunks(per_stmt) {
            let sql = format!(
                "INSERT INTO {} ({}) VALUES {} {}",
                self.spec.table,
                self.spec.column_list(),
                vec![placeholders.as_str(); group.len()].join(","),
                self.spec.conflict_clause()
            );
            let mut args = sqlx::sqlite::SqliteArguments::default();
            for row in group {
                for v in row {
                    let r = match v {
                        Value::Null => args.add(None::<String>),
                        Value::Text(s) | Value::Json(s) => args.add(s.clone()),
                        Value::Date(d) => args.add(*d),
                        Value::Float(f) => args.add(*f),
                        Value::Int(i) => args.add(*i),
                        Value::Bytes(b) => args.add(b.clone()),
                    };
                    r.map_err(sqlx::Error::Encode)?;
                }
            }
            sqlx::query_with(&sql, args).execute(&mut **t).await?;
        }
        Ok(())
    }
}

/// One cell in PostgreSQL's CSV `COPY` format: NULL is an unquoted empty field,
/// text is always quoted (so an empty string stays an empty string), bytes use
/// the `\x` hex form of `bytea`.
fn write_csv_cell(out: &mut String, v: &Value) {
    match v {
        Value::Null => {}
        Value::Text(s) | Value::Json(s) => {
            out.push('"');
            for ch in s.chars() {
                if ch == '"' {
                    out.push('"');
                }
                out.push(ch);
            }
            out.push('"');
        }
        Value::Date(d) => {
            let _ = write!(out, "{}", d.format("%Y-%m-%d"));
        }
        Value::Float(f) => {
            let _ = write!(out, "{f:?}");
        }
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Bytes(b) => {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.reserve(2 + 2 * b.len());
            out.push_str("\\x");
            for byte in b {
                out.push(HEX[(byte >> 4) as usize] as char);
                out.push(HEX[(byte & 0xf) as usize] as char);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(v: Value) -> String {
        let mut s = String::new();
        write_csv_cell(&mut s, &v);
        s
    }

    #[test]
    fn csv_cells_follow_postgres_copy_rules() {
        assert_eq!(cell(Value::Null), "");
        assert_eq!(cell(Value::Text(String::new())), "\"\"");
        assert_eq!(cell(Value::Text("a\"b,c".into())), "\"a\"\"b,c\"");
        assert_eq!(cell(Value::Bytes(vec![0x00, 0xab, 0xff])), "\\x00abff");
        assert_eq!(cell(Value::Float(0.1)), "0.1");
        assert_eq!(cell(Value::Float(1e-7)), "1e-7");
        assert_eq!(
            cell(Value::Date(NaiveDate::from_ymd_opt(2025, 1, 31).unwrap())),
            "2025-01-31"
        );
    }

    #[test]
    fn conflict_clause_updates_non_key_columns() {
        static SPEC: TableSpec = TableSpec {
            table: "t",
            columns: &[("a", Col::Text), ("b", Col::Float)],
            key: &["a"],
            on_conflict: OnConflict::Update,
            touch_created_at: true,
        };
        assert_eq!(
            SPEC.conflict_clause(),
            "ON CONFLICT (a) DO UPDATE SET b = excluded.b, created_at = CURRENT_TIMESTAMP"
        );
    }
}
