//! Storage: one [`Db`] handle over PostgreSQL (production) or an embedded SQLite
//! file (the zero-setup default), with the same table names on both.
//!
//! Most statements are written once: both backends accept `$N` placeholders,
//! ISO dates, `ON CONFLICT … DO UPDATE` and window functions, so the
//! [`with_pool!`] macro runs one query text on whichever pool is open. Where the
//! backends differ (bulk writes: `COPY` against batched inserts) the code is
//! split per backend in [`bulk`].

pub mod bulk;
pub mod joint;
pub mod merge;
pub mod meta;
pub mod prune;
pub mod queries;
pub mod tables;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, Postgres, Sqlite, SqlitePool};

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
        sqlx::Error::Io(io) => io.to_string(),
        sqlx::Error::PoolTimedOut => "timed out waiting for the server".into(),
        sqlx::Error::Database(d) => d.message().to_string(),
        other => other.to_string(),
    }
}

impl Db {
    /// Connect (creating the SQLite file and its directory when needed) and apply migrations.
    pub async fn open(url: &str) -> Result<Db> {
        let db = Self::connect(url).await?;
        db.migrate().await?;
        Ok(db)
    }

    /// Connect without migrating.
    pub async fn connect(url: &str) -> Result<Db> {
        let label = redact(url);
        let unreachable = |e: sqlx::Error| Error::Unreachable {
            db: label.clone(),
            reason: reason(&e),
        };
        let pool = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let opts = PgConnectOptions::from_str(url).map_err(unreachable)?;
            let pool = PgPoolOptions::new()
                .max_connections(8)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(opts)
                .await
                .map_err(unreachable)?;
            Pool::Postgres(pool)
        } else if let Some(rest) = url.strip_prefix("sqlite:") {
            let path = rest.trim_start_matches("//");
            let path = path.split('?').next().unwrap_or(path);
            if path.is_empty() || path == ":memory:" {
                return Err(Error::UnsupportedUrl { url: label });
            }
            if let Some(dir) = Path::new(path).parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            }
            let opts = SqliteConnectOptions::from_str(url)
                .map_err(unreachable)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(30))
                .foreign_keys(false);
            let pool = SqlitePoolOptions::new()
                .max_connections(4)
                .connect_with(opts)
                .await
                .map_err(unreachable)?;
            Pool::Sqlite(pool)
        } else {
            return Err(Error::UnsupportedUrl { url: label });
        };
        Ok(Db { pool, label })
    }

    /// Apply the embedded migrations of this backend; idempotent.
    pub async fn migrate(&self) -> Result<()> {
        let res = match &self.pool {
            Pool::Postgres(p) => sqlx::migrate!("migrations/postgres").run(p).await,
            Pool::Sqlite(p) => sqlx::migrate!("migrations/sqlite").run(p).await,
        };
        res.map_err(|source| Error::Migrate {
            db: self.label.clone(),
            source,
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
