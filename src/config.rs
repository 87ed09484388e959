//! Configuration: where the database (and its read replica), the data
//! directory and the partitions are, with the environment's defaults. Plain functions and structs, no
//! clap. The parsers of values users type are [`crate::parse`]'s, re-exported
//! here.

use std::path::PathBuf;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::nearest::{PartitionCache, SearchOpts};
pub use crate::parse::{
    parse_clamped, parse_date, parse_gigabytes, parse_partition_store, parse_positive, parse_recall,
    parse_sample_share, parse_share, StoreUrl,
};
use crate::partitions::{LocalDir, PartitionStore, RemoteSettings, RemoteStore};
use crate::storage::{redact, resolve_url, Access, Db};

/// The environment variable naming the database (`--database-url`'s default).
pub const DATABASE_URL_ENV: &str = "DATABASE_URL";
/// The environment variable naming the database queries read
/// (`--read-database-url`'s default): a read replica of the primary.
pub const READ_DATABASE_URL_ENV: &str = "STABSPACE_READ_DATABASE_URL";
/// The environment variable naming the data directory (`--data-dir`'s default).
pub const DATA_DIR_ENV: &str = "STABSPACE_DATA_DIR";
/// The environment variable naming the partition store (`--partition-store`'s default).
pub const PARTITION_STORE_ENV: &str = "STABSPACE_PARTITION_STORE";
/// The environment variable naming the cache of fetched partitions (`--cache-dir`'s default).
pub const CACHE_DIR_ENV: &str = "STABSPACE_CACHE_DIR";
/// The environment variable bounding that cache (`--cache-max-gb`'s default).
pub const CACHE_MAX_GB_ENV: &str = "STABSPACE_CACHE_MAX_GB";
/// The cache budget when none is given, in gigabytes.
pub const DEFAULT_CACHE_MAX_GB: f64 = 16.0;
/// The data directory when neither `--data-dir` nor [`DATA_DIR_ENV`] names one.
pub const DEFAULT_DATA_DIR: &str = "./stabspace-data";

/// Where the database and the index partitions are: what every front end
/// (the CLI's global flags, `stabspace serve`, Python's `connect`) resolves
/// to before it opens anything.
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    /// postgres://… or sqlite://…; `None` (or blank): the embedded SQLite file
    /// `<data_dir>/stabspace.db`.
    pub database_url: Option<String>,
    /// A read replica of `database_url` that queries read (`None` or blank:
    /// they read `database_url`). Writes, and the builds that publish
    /// partitions, always go to the primary `database_url`.
    pub read_database_url: Option<String>,
    /// Directory for the embedded database and the index partitions.
    pub data_dir: PathBuf,
    /// Where the index partitions live when not under `data_dir`
    /// (`--partition-store file://DIR` or `s3://BUCKET/PREFIX`); `None`:
    /// `<data_dir>/index`.
    pub partition_store: Option<StoreUrl>,
    /// Where partitions fetched from a remote store are kept (`None`:
    /// `<data_dir>/cache`), and how many bytes at most (`None`: [`DEFAULT_CACHE_MAX_GB`]).
    pub cache_dir: Option<PathBuf>,
    pub cache_max_bytes: Option<u64>,
    /// How old a remote store's view of its manifest may grow before a lookup
    /// reads it again (`None`: read once; `serve` refreshes it on a timer).
    pub refresh_every: Option<std::time::Duration>,
}

/// Passwords redacted: a configuration may be printed in a log or a panic.
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("database_url", &self.database_url.as_deref().map(redact))
            .field(
                "read_database_url",
                &self.read_database_url.as_deref().map(redact),
            )
            .field("data_dir", &self.data_dir)
            .field("partition_store", &self.partition_store)
            .field("cache_dir", &self.cache_dir)
            .field("cache_max_bytes", &self.cache_max_bytes)
            .finish()
    }
}

impl Config {
    pub fn new(database_url: Option<String>, data_dir: impl Into<PathBuf>) -> Config {
        Config {
            database_url,
            read_database_url: None,
            data_dir: data_dir.into(),
            partition_store: None,
            cache_dir: None,
            cache_max_bytes: None,
            refresh_every: None,
        }
    }

    /// This configuration with its partitions in `dir` (`None`: under the
    /// data directory).
    pub fn with_partition_dir(self, dir: Option<PathBuf>) -> Config {
        self.with_partition_store(dir.map(StoreUrl::Dir))
    }

    /// This configuration with its partitions in `store` (`None`: under the
    /// data directory).
    pub fn with_partition_store(mut self, store: Option<StoreUrl>) -> Config {
        self.partition_store = store;
        self
    }

    /// Where partitions fetched from a remote store are cached, and at most
    /// how many gigabytes (`None`: the defaults).
    pub fn with_cache(mut self, dir: Option<PathBuf>, max_gb: Option<f64>) -> Config {
        self.cache_dir = dir;
        self.cache_max_bytes = max_gb.map(|g| (g * 1e9) as u64);
        self
    }

    /// Read a remote store's manifest again on lookups once it is `every`
    /// old (`None`: read it once; a server refreshes on a timer instead).
    pub fn with_refresh(mut self, every: Option<std::time::Duration>) -> Config {
        self.refresh_every = every;
        self
    }

    /// This configuration with queries reading `read_database_url` (a read
    /// replica of the primary) rather than the primary.
    pub fn with_read_database_url(mut self, read_database_url: Option<String>) -> Config {
        self.read_database_url = read_database_url;
        self
    }

    /// What is given, else the environment ([`DATABASE_URL_ENV`],
    /// [`READ_DATABASE_URL_ENV`], [`DATA_DIR_ENV`]), else the defaults (the
    /// embedded SQLite file under [`DEFAULT_DATA_DIR`], read and written).
    pub fn with_env_defaults(
        database_url: Option<String>,
        data_dir: Option<PathBuf>,
        read_database_url: Option<String>,
    ) -> Config {
        let database_url = database_url.or_else(|| std::env::var(DATABASE_URL_ENV).ok());
        let read_database_url = read_database_url.or_else(|| std::env::var(READ_DATABASE_URL_ENV).ok());
        let data_dir = data_dir
            .or_else(|| std::env::var_os(DATA_DIR_ENV).map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        Config::new(database_url, data_dir).with_read_database_url(read_database_url)
    }

    /// The primary database URL: what writes and builds use.
    pub fn url(&self) -> String {
        resolve_url(self.database_url.as_deref(), &self.data_dir)
    }

    /// The database URL queries read: the read replica when one is named,
    /// else the primary.
    pub fn read_url(&self) -> String {
        match self.read_database_url.as_deref().filter(|u| !u.trim().is_empty()) {
            Some(u) => u.trim().to_string(),
            None => self.url(),
        }
    }

    /// Whether queries read a replica rather than the primary.
    pub fn reads_a_replica(&self) -> bool {
        self.read_url() != self.url()
    }

    /// Where the index partitions are on this machine: the `--partition-store`
    /// directory, else `<data_dir>/index`; for a remote store, the cache its
    /// partitions are fetched into.
    pub fn index_dir(&self) -> PathBuf {
        match &self.partition_store {
            Some(StoreUrl::Dir(dir)) => dir.clone(),
            Some(StoreUrl::S3 { .. }) => self.cache_dir(),
            None => crate::partitions::index_dir(&self.data_dir),
        }
    }

    /// Where partitions fetched from a remote store are kept: `--cache-dir`,
    /// else `<data_dir>/cache`.
    pub fn cache_dir(&self) -> PathBuf {
        self.cache_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("cache"))
    }

    /// Whether the partitions are in a remote store.
    pub fn remote_store(&self) -> bool {
        matches!(self.partition_store, Some(StoreUrl::S3 { .. }))
    }

    /// The partition store: the local directory [`Config::index_dir`], or the
    /// bucket `--partition-store s3://…` names (its manifest in the primary
    /// database, read from the database queries read).
    pub fn partition_store(&self) -> Result<Arc<dyn PartitionStore>> {
        match &self.partition_store {
            Some(StoreUrl::S3 { bucket, prefix }) => Ok(Arc::new(RemoteStore::open(RemoteSettings {
                bucket: bucket.clone(),
                prefix: prefix.clone(),
                cache_dir: self.cache_dir(),
                cache_max_bytes: self
                    .cache_max_bytes
                    .unwrap_or((DEFAULT_CACHE_MAX_GB * 1e9) as u64),
                refresh_every: self.refresh_every,
                primary_url: self.url(),
                read_url: self.read_url(),
                s3_overrides: Vec::new(),
            })?)),
            _ => Ok(Arc::new(LocalDir::new(self.index_dir()))),
        }
    }

    /// The store's partitions, opened once each and shared by the queries of
    /// this process.
    pub fn partition_cache(&self) -> Result<Arc<PartitionCache>> {
        Ok(Arc::new(PartitionCache::new(self.partition_store()?)))
    }

    /// How queries search: this configuration's partitions, the breadth and
    /// the rest by default.
    pub fn search_opts(&self) -> Result<SearchOpts> {
        Ok(SearchOpts::with_partitions(self.partition_cache()?))
    }

    /// Open the database for a command that writes to it: the embedded SQLite
    /// file is created when missing, and so is the data directory when the
    /// database is the embedded default (an explicit `sqlite://` path's
    /// directory must exist). Missing migrations are applied.
    pub async fn open_db(&self) -> Result<Db> {
        if self.explicit_url().is_none() {
            std::fs::create_dir_all(&self.data_dir).map_err(|e| Error::io(&self.data_dir, e))?;
        }
        Db::open_for(&self.url(), Access::Write).await
    }

    /// Open the database for a command that only reads, a query: the read
    /// replica when one is named, else the primary. It must exist (a SQLite
    /// file is never created) and is not written to unless migrations are
    /// missing (a replica cannot be: the primary's migrations reach it by
    /// replication).
    pub async fn open_db_read(&self) -> Result<Db> {
        Db::open_for(&self.read_url(), Access::Read).await
    }

    /// Open the primary for a command that reads but must see the newest
    /// rows, never a replica's: the builds that publish partitions (`index
    /// build|rebuild`, `serve --rebuild-stale`). A partition built from a
    /// lagging replica would record an older counter and lack rows the
    /// primary has. Opened like [`Config::open_db_read`]: nothing is created.
    pub async fn open_primary_read(&self) -> Result<Db> {
        Db::open_for(&self.url(), Access::Read).await
    }

    fn explicit_url(&self) -> Option<&str> {
        self.database_url.as_deref().filter(|u| !u.trim().is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Queries read the replica when one is named (a blank one is none);
    /// writes and builds always name the primary.
    #[test]
    fn queries_read_the_replica_and_everything_else_the_primary() {
        let primary = "postgres://u@primary/db";
        let config = Config::new(Some(primary.into()), "/data");
        assert_eq!(
            (config.url(), config.read_url()),
            (primary.into(), primary.into())
        );
        assert!(!config.reads_a_replica());
        let blank = config.clone().with_read_database_url(Some("  ".into()));
        assert_eq!(blank.read_url(), primary);
        let replica = config.with_read_database_url(Some(" postgres://u@replica/db ".into()));
        assert_eq!(replica.url(), primary);
        assert_eq!(replica.read_url(), "postgres://u@replica/db");
        assert!(replica.reads_a_replica());
    }

    /// A configuration printed (a log, a panic) shows no password.
    #[test]
    fn debug_output_redacts_passwords() {
        let c = Config::new(Some("postgres://u:s3cret@primary/db".into()), "d")
            .with_read_database_url(Some("postgres://r:hunter22@replica/db".into()));
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("hunter22"),
            "{shown}"
        );
        assert!(
            shown.contains("primary/db") && shown.contains("replica/db"),
            "{shown}"
        );
    }
}
