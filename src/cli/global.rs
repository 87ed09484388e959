//! The flags every command accepts (`--database-url`, `--read-database-url`,
//! `--data-dir`), and the configuration they name. Apart from `cli.rs`, which
//! dispatches to the commands, so that the commands can take them without
//! importing their dispatcher.

use std::path::PathBuf;

use clap::Args;

use crate::config::{
    parse_gigabytes, parse_partition_store, Config, StoreUrl, CACHE_DIR_ENV, CACHE_MAX_GB_ENV,
    DATABASE_URL_ENV, DATA_DIR_ENV, DEFAULT_DATA_DIR, PARTITION_STORE_ENV, READ_DATABASE_URL_ENV,
};
use crate::error::Result;
use crate::storage::Db;

/// Flags every command accepts.
#[derive(Clone, Args)]
pub struct GlobalOpts {
    /// Database: postgres://user[:password]@host[:port]/db or sqlite://path/file.db.
    /// Without it, the embedded SQLite file <data-dir>/stabspace.db is used (created by the
    /// first command that writes; commands that only read need it to exist).
    #[arg(long, env = DATABASE_URL_ENV, global = true, hide_env_values = true)]
    pub database_url: Option<String>,

    /// A read replica of --database-url (postgres://…) that queries read: find-*, show-*,
    /// index status, bench --as-of, serve's queries. Everything that writes (import, the
    /// backfills, gen-scenarios, demo, migrate, eval-retrieval, joint model registration)
    /// and the builds that publish partitions (index build|rebuild, serve --rebuild-stale)
    /// use --database-url, the primary. A lagging replica is never a reason to rebuild: when its change counter
    /// for a set is below the one a partition was built at, the partition is newer than the
    /// rows read and answers as it is (answered_by index, not stale; a note says the replica
    /// is behind; index status says ahead-of-database).
    #[arg(long, env = READ_DATABASE_URL_ENV, global = true, hide_env_values = true)]
    pub read_database_url: Option<String>,

    /// Directory for the embedded database and index files.
    #[arg(
        long,
        env = DATA_DIR_ENV,
        global = true,
        default_value = DEFAULT_DATA_DIR
    )]
    pub data_dir: PathBuf,

    /// Where the index partitions live, as a URL: file://DIR, a directory on this machine
    /// (default: <data-dir>/index), or s3://BUCKET/PREFIX, object storage through the S3 API
    /// (set up by AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL and
    /// AWS_ALLOW_HTTP=true for a plain-HTTP endpoint). Builds and backfills publish there;
    /// queries and `serve` read there. In S3 a publish uploads the file under a
    /// content-addressed key and then commits a row of the primary database's
    /// partition_manifest: readers see a version only once it is whole, and of two builders
    /// racing on a set only the first commits. Partitions are fetched into --cache-dir.
    #[arg(
        long,
        env = PARTITION_STORE_ENV,
        global = true,
        value_name = "URL",
        value_parser = parse_partition_store
    )]
    pub partition_store: Option<StoreUrl>,

    /// Where partitions fetched from an s3:// store are kept, each version checked against
    /// the SHA-256 its publish recorded (default: <data-dir>/cache).
    #[arg(long, env = CACHE_DIR_ENV, global = true, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,

    /// At most this many gigabytes of fetched partitions in --cache-dir; past it the least
    /// recently used versions are evicted (and fetched again when next asked for).
    #[arg(
        long,
        env = CACHE_MAX_GB_ENV,
        global = true,
        value_name = "GB",
        value_parser = parse_gigabytes,
        default_value_t = crate::config::DEFAULT_CACHE_MAX_GB
    )]
    pub cache_max_gb: f64,

    /// Whether `database_url` came from the DATABASE_URL environment variable
    /// rather than the command line (the demo ignores the variable).
    #[arg(skip)]
    pub database_url_from_env: bool,
}

/// Passwords redacted, as [`Config`]'s.
impl std::fmt::Debug for GlobalOpts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GlobalOpts")
            .field("config", &self.config())
            .field("database_url_from_env", &self.database_url_from_env)
            .finish()
    }
}

impl GlobalOpts {
    /// The database, its read replica and the data directory these flags name.
    pub fn config(&self) -> Config {
        Config::new(self.database_url.clone(), self.data_dir.clone())
            .with_read_database_url(self.read_database_url.clone())
            .with_partition_store(self.partition_store.clone())
            .with_cache(self.cache_dir.clone(), Some(self.cache_max_gb))
    }

    /// The database URL in use.
    pub fn url(&self) -> String {
        self.config().url()
    }

    /// Open the database for a command that writes to it ([`Config::open_db`]).
    pub async fn open_db(&self) -> Result<Db> {
        self.config().open_db().await
    }

    /// Open the database a query reads: the read replica, else the primary
    /// ([`Config::open_db_read`]).
    pub async fn open_db_read(&self) -> Result<Db> {
        self.config().open_db_read().await
    }

    /// Open the primary for a build that reads only but must see the newest
    /// rows ([`Config::open_primary_read`]).
    pub async fn open_primary_read(&self) -> Result<Db> {
        self.config().open_primary_read().await
    }
}
