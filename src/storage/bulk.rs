//! Bulk upserts inside a caller's transaction.
//!
//! A [`TableSpec`] says which columns a table takes and which of them form its
//! key. A [`BulkWriter`] buffers rows and writes them in chunks:
//!
//! * PostgreSQL: each chunk is streamed with binary `COPY … FROM STDIN` into a
//!   temporary staging table typed as the spec says, then moved into the target
//!   with `INSERT … SELECT DISTINCT ON (key) … ON CONFLICT`, the last row of a key
//!   winning, as on SQLite. Assignment casts
//!   let the target's own column types differ (a table another tool created with
//!   `NUMERIC` prices still takes our `DOUBLE PRECISION` values).
//! * SQLite: multi-row `INSERT … VALUES (…),(…) ON CONFLICT DO UPDATE` statements
//!   of a few hundred rows, prepared once and cached by the driver.
//!
//! Either way the rows become visible only when the caller commits, so a failure
//! part-way leaves the table exactly as it was, and writing the same rows twice
//! leaves one copy.

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

impl Value {
    /// Bytes the cell takes in a chunk, about.
    fn size(&self) -> usize {
        match self {
            Value::Text(s) | Value::Json(s) => s.len() + 8,
            Value::Bytes(b) => b.len() + 8,
            _ => 8,
        }
    }

    /// The kind of value in words, for messages.
    fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Text(_) => "text",
            Value::Date(_) => "date",
            Value::Float(_) => "float",
            Value::Int(_) => "integer",
            Value::Json(_) => "JSON",
            Value::Bytes(_) => "bytes",
        }
    }
}

/// Rows buffered before a chunk is sent.
const CHUNK_ROWS: usize = 4096;
/// Bytes of cell data buffered before a chunk is sent, whatever its rows: a
/// chunk of 4096 rows of 1 MiB JSON would otherwise hold 4 GiB. 4096 vectors
/// (6 MiB) stay one chunk.
const CHUNK_BYTES: usize = 8 << 20;
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
        let values: Vec<&str> = self
            .columns
            .iter()
            .map(|(c, _)| *c)
            .filter(|c| !self.key.contains(c))
            .collect();
        if self.on_conflict == OnConflict::Ignore || values.is_empty() {
            return format!("ON CONFLICT ({key}) DO NOTHING");
        }
        let mut sets: Vec<String> = values.iter().map(|c| format!("{c} = excluded.{c}")).collect();
        if self.touch_created_at {
            sets.push("created_at = CURRENT_TIMESTAMP".into());
        }
        // Rows that would not change are left alone: an identical re-run writes
        // nothing (no new row versions on PostgreSQL, created_at kept).
        let changed: Vec<String> = values
            .iter()
            .map(|c| format!("{t}.{c} IS DISTINCT FROM excluded.{c}", t = self.table))
            .collect();
        format!(
            "ON CONFLICT ({key}) DO UPDATE SET {} WHERE {}",
            sets.join(", "),
            changed.join(" OR ")
        )
    }
}

/// Buffers rows for one table and writes them in chunks inside a transaction.
pub struct BulkWriter {
    spec: &'static TableSpec,
    buf: Vec<Vec<Value>>,
    /// [`Value::size`] of the buffered rows.
    buf_bytes: usize,
    /// PostgreSQL: name of the staging table once created.
    stage: Option<String>,
    rows: u64,
}

impl BulkWriter {
    pub fn new(spec: &'static TableSpec) -> Self {
        BulkWriter {
            spec,
            buf: Vec::with_capacity(CHUNK_ROWS),
            buf_bytes: 0,
            stage: None,
            rows: 0,
        }
    }

    /// Queue one row (cells in the order of `spec.columns`); writes a chunk
    /// when the buffer holds [`CHUNK_ROWS`] rows or [`CHUNK_BYTES`] bytes.
    pub async fn push(&mut self, tx: &mut Tx, row: Vec<Value>) -> Result<(), sqlx::Error> {
        debug_assert_eq!(row.len(), self.spec.columns.len(), "{}", self.spec.table);
        self.buf_bytes += row.iter().map(Value::size).sum::<usize>();
        self.buf.push(row);
        if self.buf.len() >= CHUNK_ROWS || self.buf_bytes >= CHUNK_BYTES {
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
        self.buf_bytes = 0;
        Ok(())
    }

    /// Flush the last rows (each flush moves its chunk into the table) and, on
    /// PostgreSQL, drop the staging table. Returns the rows written.
    pub async fn finish(mut self, tx: &mut Tx) -> Result<u64, sqlx::Error> {
        self.flush(tx).await?;
        if let (Tx::Postgres(t), Some(stage)) = (tx, self.stage.take()) {
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
        let stage = match &self.stage {
            Some(s) => s.clone(),
            None => {
                let name = format!("stage_{}", self.spec.table);
                let cols: Vec<String> = self
                    .spec
                    .columns
                    .iter()
                    .map(|(c, ty)| format!("{c} {}", pg_type(*ty)))
                    .collect();
                sqlx::query(&format!(
                    "CREATE TEMP TABLE {name} ({}, _seq BIGSERIAL) ON COMMIT DROP",
                    cols.join(", ")
                ))
                .execute(&mut **t)
                .await?;
                // The DISTINCT ON sort of a chunk holds whole rows (6 MB for 4096
                // vectors): enough memory for this transaction so it does not spill.
                sqlx::query("SET LOCAL work_mem = '64MB'")
                    .execute(&mut **t)
                    .await?;
                self.stage = Some(name.clone());
                name
            }
        };
        let mut buf = Vec::with_capacity(self.buf.len() * 128 + 32);
        buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        buf.extend_from_slice(&0i32.to_be_bytes()); // flags
        buf.extend_from_slice(&0i32.to_be_bytes()); // header extension length
        for row in &self.buf {
            buf.extend_from_slice(&(row.len() as i16).to_be_bytes());
            for (v, (col, ty)) in row.iter().zip(self.spec.columns) {
                write_binary_cell(&mut buf, v, *ty)
                    .map_err(|m| sqlx::Error::Encode(format!("{}.{col}: {m}", self.spec.table).into()))?;
            }
        }
        buf.extend_from_slice(&(-1i16).to_be_bytes());
        let mut copy = t
            .copy_in_raw(&format!(
                "COPY {stage} ({}) FROM STDIN (FORMAT binary)",
                self.spec.column_list()
            ))
            .await?;
        copy.send(buf).await?;
        copy.finish().await?;
        // Move the chunk into the table. A key may repeat within a chunk (the last
        // row wins, as on SQLite); a later chunk may update what an earlier one wrote.
        let cols = self.spec.column_list();
        let key = self.spec.key.join(", ");
        let sql = format!(
            "INSERT INTO {table} ({cols}) SELECT DISTINCT ON ({key}) {cols} FROM {stage} \
             ORDER BY {key}, _seq DESC {conflict}",
            table = self.spec.table,
            conflict = self.spec.conflict_clause(),
        );
        sqlx::query(&sql).execute(&mut **t).await?;
        sqlx::query(&format!("TRUNCATE {stage}"))
            .execute(&mut **t)
            .await?;
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

/// The PostgreSQL type of a staging column.
fn pg_type(ty: Col) -> &'static str {
    match ty {
        Col::Text => "TEXT",
        Col::Date => "DATE",
        Col::Float => "DOUBLE PRECISION",
        Col::Int => "BIGINT",
        Col::Json => "JSONB",
        Col::Bytes => "BYTEA",
    }
}

/// Days from the Unix epoch to PostgreSQL's epoch, 2000-01-01.
const PG_EPOCH_DAYS: i32 = 10_957;

/// One field of PostgreSQL's binary `COPY` format: a big-endian i32 length
/// (-1 for NULL) and the value in the type's binary send format.
fn write_binary_cell(out: &mut Vec<u8>, v: &Value, ty: Col) -> Result<(), String> {
    let field = |out: &mut Vec<u8>, bytes: &[u8]| {
        out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
        out.extend_from_slice(bytes);
    };
    match (v, ty) {
        (Value::Null, _) => out.extend_from_slice(&(-1i32).to_be_bytes()),
        (Value::Text(s), Col::Text) => field(out, s.as_bytes()),
        (Value::Json(s), Col::Json) => {
            // jsonb's binary format: a version byte (1), then the JSON text.
            out.extend_from_slice(&(s.len() as i32 + 1).to_be_bytes());
            out.push(1);
            out.extend_from_slice(s.as_bytes());
        }
        (Value::Date(d), Col::Date) => {
            let days = d
                .signed_duration_since(chrono::DateTime::UNIX_EPOCH.date_naive())
                .num_days();
            let pg = i32::try_from(days).map_err(|_| format!("date {d} out of range"))? - PG_EPOCH_DAYS;
            field(out, &pg.to_be_bytes());
        }
        (Value::Float(f), Col::Float) => field(out, &f.to_be_bytes()),
        (Value::Int(i), Col::Int) => field(out, &i.to_be_bytes()),
        (Value::Bytes(b), Col::Bytes) => field(out, b),
        (v, ty) => {
            return Err(format!(
                "a {} value does not fit a {} column",
                v.kind(),
                format!("{ty:?}").to_lowercase()
            ))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(v: Value, ty: Col) -> Vec<u8> {
        let mut out = Vec::new();
        write_binary_cell(&mut out, &v, ty).unwrap();
        out
    }

    #[test]
    fn binary_cells_follow_postgres_send_formats() {
        assert_eq!(cell(Value::Null, Col::Text), [0xff, 0xff, 0xff, 0xff]);
        assert_eq!(
            cell(Value::Text("ab".into()), Col::Text),
            [0, 0, 0, 2, b'a', b'b']
        );
        assert_eq!(
            cell(Value::Json("{}".into()), Col::Json),
            [0, 0, 0, 3, 1, b'{', b'}']
        );
        assert_eq!(
            cell(Value::Int(7), Col::Int),
            [0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 7]
        );
        let date = |y, m, d| Value::Date(NaiveDate::from_ymd_opt(y, m, d).unwrap());
        assert_eq!(cell(date(2000, 1, 1), Col::Date), [0, 0, 0, 4, 0, 0, 0, 0]);
        assert_eq!(
            cell(date(1999, 12, 31), Col::Date),
            [0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff]
        );
        assert_eq!(
            cell(Value::Float(1.0), Col::Float),
            [0, 0, 0, 8, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0]
        );
        let mut wrong = Vec::new();
        assert!(write_binary_cell(&mut wrong, &Value::Float(1.0), Col::Text).is_err());
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
            "ON CONFLICT (a) DO UPDATE SET b = excluded.b, created_at = CURRENT_TIMESTAMP \
             WHERE t.b IS DISTINCT FROM excluded.b"
        );
    }
}
