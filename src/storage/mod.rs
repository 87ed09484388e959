//! Storage: one [`Db`] handle over PostgreSQL (production) or an embedded SQLite
//! file (the zero-setup default), with the same table names on both.
//!
//! Most statements are written once: both backends accept `$N` placeholders,
//! ISO dates, `ON CONFLICT … DO UPDATE` and window functions, so the
//! [`with_pool!`] macro runs one query text on whichever pool is open. Where the
//! backends differ (bulk writes: `COPY` against batched inserts) the code is
//! split per backend in [`bulk`].

pub mod bulk;
pub mod demo;
pub mod joint;
pub mod manifest;
pub mod market;
pub mod merge;
pub mod meta;
pub mod partition_counters;
pub mod prices;
pub mod prune;
pub mod recall;
pub mod registry;
pub mod reports;
pub mod scenarios;
pub mod sql;
pub mod tables;
pub mod vectors;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool, Postgres, Sqlite, SqlitePool};

use crate::error::{Error, Result};

/// Name of the embedded database file inside the data directory.
pub const SQLITE_FILE: &str = "stabspace.db";

/// Runs `$body` with `$p` bound to the open pool, whichever backend it is.
/// The body is compiled once per backend, so it must only use APIs both share.
#[macro_export]
macro_rules! with_pool {
    ($db:expr, $p:ident => $body:expr) => {
        match $db.pool() {
            $crate::storage::Pool::Postgres($p) => $body,
            $crate::storage::Pool::Sqlite($p) => $body,
        }
    };
}

/// Runs `$body` with `$c` bound to the open transaction's connection,
/// whichever backend it is (like [`with_pool!`]).
#[macro_export]
macro_rules! on_tx {
    ($tx:expr, $c:ident => $body:expr) => {
        match $tx {
            $crate::storage::Tx::Postgres(t) => {
                let $c = &mut **t;
                $body
            }
            $crate::storage::Tx::Sqlite(t) => {
                let $c = &mut **t;
                $body
            }
        }
    };
}

#[derive(Clone, Debug)]
pub enum Pool {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// An open, migrated database.
#[derive(Clone, Debug)]
pub struct Db {
    pool: Pool,
    label: String,
    /// `stabspace_meta.database_id`, once read: it never changes after the
    /// first migration, and every partition query compares it.
    database_id: std::sync::Arc<tokio::sync::OnceCell<String>>,
}

/// An open transaction on either backend. Dropping it without [`Tx::commit`] rolls back.
pub enum Tx {
    Postgres(sqlx::Transaction<'static, Postgres>),
    Sqlite(sqlx::Transaction<'static, Sqlite>),
}

impl Tx {
    pub fn backend(&self) -> Backend {
        match self {
            Tx::Postgres(_) => Backend::Postgres,
            Tx::Sqlite(_) => Backend::Sqlite,
        }
    }
}

/// Where the database lives: an explicit URL, or the embedded default in `data_dir`.
pub fn resolve_url(database_url: Option<&str>, data_dir: &Path) -> String {
    match database_url {
        Some(u) if !u.trim().is_empty() => u.trim().to_string(),
        _ => format!("sqlite://{}", data_dir.join(SQLITE_FILE).display()),
    }
}

/// The URL with any password replaced by `***`, for messages.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// One line saying why a connection failed, without a backtrace or nested debug output.
fn reason(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Io(io) => io_reason(io),
        sqlx::Error::PoolTimedOut => "timed out waiting for the server".into(),
        sqlx::Error::Database(d) => d.message().to_string(),
        other => other.to_string(),
    }
}

fn io_reason(io: &std::io::Error) -> String {
    match io.kind() {
        std::io::ErrorKind::ConnectionRefused => {
            "connection refused (is the server running and listening on that host and port?)".into()
        }
        _ => io.to_string(),
    }
}

/// What a command will do with the database: only commands that write may
/// create a SQLite file; a command that reads needs an existing one and never
/// writes unless migrations are missing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// How long to wait for a lock held by another process before telling the user.
const LOCK_NOTICE_AFTER: Duration = Duration::from_millis(500);
/// How long a statement waits for a locked SQLite file before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait for the PostgreSQL server to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The file of a `sqlite:` URL (without its `?query`), or `None` for another scheme.
pub fn sqlite_path(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("sqlite:")?;
    let path = rest.trim_start_matches("//");
    Some(path.split('?').next().unwrap_or(path))
}

/// True when a driver error says the database cannot be written (SQLite
/// `SQLITE_READONLY*`, PostgreSQL `read_only_sql_transaction`).
fn is_read_only(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => {
            d.code().is_some_and(|c| c == "25006") || d.message().contains("readonly database")
        }
        _ => false,
    }
}

/// True when a driver error is SQLite's `SQLITE_BUSY` (another process holds the lock).
fn is_busy(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => d.message().contains("database is locked"),
        _ => false,
    }
}

impl Db {
    /// The memo of [`meta::database_id`].
    pub(crate) fn database_id_memo(&self) -> &tokio::sync::OnceCell<String> {
        &self.database_id
    }

    /// Connect for writing (creating the SQLite file, never its directory) and
    /// apply missing migrations.
    pub async fn open(url: &str) -> Result<Db> {
        Self::open_for(url, Access::Write).await
    }

    /// Connect for `access` and apply missing migrations. A database that
    /// already has every migration is not written to.
    pub async fn open_for(url: &str, access: Access) -> Result<Db> {
        let db = Self::connect_for(url, access).await?;
        db.migrate().await?;
        Ok(db)
    }

    /// Connect for writing without migrating.
    pub async fn connect(url: &str) -> Result<Db> {
        Self::connect_for(url, Access::Write).await
    }

    /// Connect without migrating. For [`Access::Read`] a SQLite file must exist
    /// and its journal mode is left as it is; for [`Access::Write`] a missing
    /// file is created (its directory must exist) in WAL mode. Nothing creates
    /// directories here.
    pub async fn connect_for(url: &str, access: Access) -> Result<Db> {
        let label = redact(url);
        let unreachable = |e: sqlx::Error| Error::Unreachable {
            db: label.clone(),
            reason: reason(&e),
        };
        let pool = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let opts = PgConnectOptions::from_str(url).map_err(unreachable)?;
            // One direct connection first: the pool retries a failed connect until
            // its timeout and then reports only that it timed out, hiding
            // "connection refused" or "password authentication failed".
            let probe = tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&opts))
                .await
                .map_err(|_| Error::Unreachable {
                    db: label.clone(),
                    reason: format!("no answer from the server within {} s", CONNECT_TIMEOUT.as_secs()),
                })?
                .map_err(unreachable)?;
            let _ = probe.close().await;
            let pool = PgPoolOptions::new()
                .max_connections(8)
                .acquire_timeout(CONNECT_TIMEOUT)
                .connect_with(opts)
                .await
                .map_err(unreachable)?;
            Pool::Postgres(pool)
        } else if let Some(path) = sqlite_path(url) {
            if path.is_empty() || path == ":memory:" {
                return Err(Error::UnsupportedUrl { url: label });
            }
            let file = Path::new(path);
            let exists = file.exists();
            if !exists {
                if access == Access::Read {
                    return Err(Error::NoDatabase { path: file.into() });
                }
                let dir = file
                    .parent()
                    .filter(|d| !d.as_os_str().is_empty())
                    .unwrap_or(Path::new("."));
                if !dir.is_dir() {
                    return Err(Error::MissingDirectory {
                        path: file.into(),
                        dir: dir.into(),
                    });
                }
            }
            let opts = SqliteConnectOptions::from_str(url)
                .map_err(unreachable)?
                .create_if_missing(access == Access::Write)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(false);
            if exists && access == Access::Write {
                warn_if_locked(&opts, &label).await;
            }
            let opts = match access {
                // Setting the journal mode writes the file header: only writers do.
                Access::Write => opts.journal_mode(SqliteJournalMode::Wal),
                Access::Read => opts,
            };
            let pool = SqlitePoolOptions::new()
                .max_connections(4)
                .connect_with(opts.busy_timeout(BUSY_TIMEOUT))
                .await
                .map_err(unreachable)?;
            Pool::Sqlite(pool)
        } else {
            return Err(Error::UnsupportedUrl { url: label });
        };
        let db = Db {
            pool,
            label,
            database_id: Default::default(),
        };
        if access == Access::Write && db.is_standby().await? {
            db.close().await;
            return Err(Error::Standby { db: db.label });
        }
        Ok(db)
    }

    /// Whether the database is a PostgreSQL standby (a read replica in
    /// recovery), which refuses writes: asked before a command that writes
    /// starts, so that it fails naming the replica rather than midway with
    /// "cannot execute INSERT in a read-only transaction". SQLite never is.
    pub async fn is_standby(&self) -> Result<bool> {
        match &self.pool {
            Pool::Postgres(p) => {
                let (standby,): (bool,) = sqlx::query_as("SELECT pg_is_in_recovery()")
                    .fetch_one(p)
                    .await
                    .map_err(|e| self.err(e))?;
                Ok(standby)
            }
            Pool::Sqlite(_) => Ok(false),
        }
    }

    /// The embedded migrations of this backend.
    fn migrator(&self) -> sqlx::migrate::Migrator {
        match &self.pool {
            Pool::Postgres(_) => sqlx::migrate!("migrations/postgres"),
            Pool::Sqlite(_) => sqlx::migrate!("migrations/sqlite"),
        }
    }

    /// Versions of the embedded migrations that the database lacks (not
    /// applied, failed, or applied with another checksum), read without writing.
    pub async fn missing_migrations(&self) -> Vec<i64> {
        let migrator = self.migrator();
        let sql = "SELECT version, checksum, success FROM _sqlx_migrations";
        // No table (or an unreadable one): everything is missing; the migrator will say more.
        let applied: Vec<(i64, Vec<u8>, bool)> =
            with_pool!(self, p => sqlx::query_as(sql).fetch_all(p).await).unwrap_or_default();
        migrator
            .iter()
            .filter(|m| !m.migration_type.is_down_migration())
            .filter(|m| {
                !applied
                    .iter()
                    .any(|(v, sum, ok)| *v == m.version && *ok && sum.as_slice() == &*m.checksum)
            })
            .map(|m| m.version)
            .collect()
    }

    /// Apply the embedded migrations of this backend that the database lacks.
    /// A database that has them all is only read, so commands work on a
    /// read-only database; one that lacks some and is read-only is an error
    /// saying so.
    pub async fn migrate(&self) -> Result<()> {
        let missing = self.missing_migrations().await;
        if missing.is_empty() {
            return Ok(());
        }
        let migrator = self.migrator();
        let res = match &self.pool {
            Pool::Postgres(p) => migrator.run(p).await,
            Pool::Sqlite(p) => migrator.run(p).await,
        };
        res.map_err(|source| match &source {
            sqlx::migrate::MigrateError::Execute(e) if is_read_only(e) => Error::ReadOnlyNeedsMigration {
                db: self.label.clone(),
                versions: missing.iter().map(|v| format!("{v:04}")).collect(),
            },
            _ => Error::Migrate {
                db: self.label.clone(),
                source,
            },
        })
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Postgres(_) => Backend::Postgres,
            Pool::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// The database URL with its password hidden.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Wrap a driver error with the database name.
    pub fn err(&self, source: sqlx::Error) -> Error {
        if is_busy(&source) {
            return Error::Invalid(format!(
                "{} is locked by another process and stayed locked for {} s; try again when it has finished",
                self.label,
                BUSY_TIMEOUT.as_secs()
            ));
        }
        Error::Database {
            db: self.label.clone(),
            source,
        }
    }

    pub async fn begin(&self) -> Result<Tx> {
        Ok(match &self.pool {
            Pool::Postgres(p) => Tx::Postgres(p.begin().await.map_err(|e| self.err(e))?),
            Pool::Sqlite(p) => Tx::Sqlite(p.begin().await.map_err(|e| self.err(e))?),
        })
    }

    pub async fn commit(&self, tx: Tx) -> Result<()> {
        match tx {
            Tx::Postgres(t) => t.commit().await,
            Tx::Sqlite(t) => t.commit().await,
        }
        .map_err(|e| self.err(e))
    }

    pub async fn close(&self) {
        match &self.pool {
            Pool::Postgres(p) => p.close().await,
            Pool::Sqlite(p) => p.close().await,
        }
    }
}

/// If another process holds the write lock on the SQLite file, say so on
/// stderr at once (statements then wait up to [`BUSY_TIMEOUT`] for it): a
/// short-timeout probe that starts and rolls back a write transaction.
async fn warn_if_locked(opts: &SqliteConnectOptions, label: &str) {
    let probe = opts
        .clone()
        .create_if_missing(false)
        .busy_timeout(LOCK_NOTICE_AFTER)
        .connect()
        .await;
    let Ok(mut conn) = probe else {
        // Opening failed: the real connection will report why.
        return;
    };
    let res = sqlx::query("BEGIN IMMEDIATE").execute(&mut conn).await;
    match res {
        Ok(_) => {
            let _ = sqlx::query("ROLLBACK").execute(&mut conn).await;
        }
        Err(e) if is_busy(&e) => eprintln!(
            "waiting for the database {label}, locked by another process (up to {} s)…",
            BUSY_TIMEOUT.as_secs()
        ),
        Err(_) => {}
    }
    let _ = conn.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(
            redact("postgres://alice:s3cret@db.example:5432/risk"),
            "postgres://alice:***@db.example:5432/risk"
        );
        assert_eq!(redact("postgres://alice@db/risk"), "postgres://alice@db/risk");
        assert_eq!(redact("sqlite:///tmp/x.db"), "sqlite:///tmp/x.db");
    }

    #[test]
    fn default_is_sqlite_in_data_dir() {
        assert_eq!(
            resolve_url(None, Path::new("/d")),
            format!("sqlite:///d/{SQLITE_FILE}")
        );
        assert_eq!(
            resolve_url(Some("postgres://x/y"), Path::new("/d")),
            "postgres://x/y"
        );
    }
}
