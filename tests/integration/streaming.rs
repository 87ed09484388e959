//! A throwaway streaming replication pair for the read-replica tests: a
//! PRIMARY cluster made by `initdb` and a REPLICA made from it by
//! `pg_basebackup -R`, each on a free loopback port, in a temporary
//! directory, run as the `postgres` OS user (`initdb` and `postgres` refuse
//! root). Both are stopped (`pg_ctl stop -m immediate`) and their files
//! removed when the value is dropped. The system cluster is never touched.
//!
//! Without the PostgreSQL 15 binaries (or `runuser`, when running as root)
//! the test fails under `STABSPACE_REQUIRE_POSTGRES=1` (as in CI) and is
//! otherwise skipped and recorded like an unreachable PostgreSQL
//! (`support::record_postgres_skip`).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use stabspace::storage::{Access, Db};
use tempfile::TempDir;

use crate::support::{env_is_1, free_port, record_postgres_skip};

/// Where the PostgreSQL server binaries are: `STABSPACE_PG_BIN`, else
/// `pg_config --bindir` when it has `initdb` (a source build), else Debian's
/// newest `/usr/lib/postgresql/<major>/bin` (Debian puts `pg_config` of the
/// client package, without the server, on the PATH).
fn bin() -> PathBuf {
    if let Some(dir) = std::env::var_os("STABSPACE_PG_BIN") {
        return PathBuf::from(dir);
    }
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .filter(|d| d.join("initdb").is_file());
    from_pg_config
        .or_else(|| {
            let mut majors: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
                .ok()?
                .flatten()
                .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
                .filter(|(_, d): &(u32, PathBuf)| d.join("initdb").is_file())
                .collect();
            majors.sort();
            majors.pop().map(|(_, d)| d)
        })
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"))
}
/// How long a replica may take to replay what the primary has written.
const CATCH_UP: Duration = Duration::from_secs(30);

/// A running primary and its streaming replica.
pub struct Replicated {
    /// `postgres://postgres@127.0.0.1:<port>/postgres` on the primary.
    pub primary_url: String,
    /// The same database on the replica (a hot standby: reads only).
    pub replica_url: String,
    /// Scratch space for the tests' own files (data directories, partitions).
    pub scratch: TempDir,
    dir: TempDir,
    /// `runuser`, to run the server binaries as `postgres` (we are root).
    runuser: Option<PathBuf>,
}

/// The pair, or `None` (recorded as a skip) when this machine cannot run one.
pub fn replicated() -> Option<Replicated> {
    let runuser = if is_root() { on_path("runuser") } else { None };
    let mut missing: Vec<String> = ["initdb", "pg_ctl", "postgres", "pg_basebackup"]
        .iter()
        .map(|b| bin().join(b))
        .filter(|p| !p.is_file())
        .map(|p| p.display().to_string())
        .collect();
    if is_root() && runuser.is_none() {
        missing.push("runuser (tests run as root; the PostgreSQL server refuses root)".into());
    }
    if !missing.is_empty() {
        let reason = format!("cannot run a streaming replica: missing {}", missing.join(", "));
        if env_is_1("STABSPACE_REQUIRE_POSTGRES") {
            panic!("STABSPACE_REQUIRE_POSTGRES=1 but {reason}");
        }
        record_postgres_skip(&reason);
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let pair = Replicated {
        primary_url: String::new(),
        replica_url: String::new(),
        scratch: tempfile::tempdir().expect("tempdir"),
        dir,
        runuser,
    };
    pair.give_to_postgres(pair.dir.path());
    Some(pair.start())
}

impl Replicated {
    fn start(mut self) -> Replicated {
        let (primary_port, replica_port) = (free_port(), free_port());
        let sockets = self.dir.path().join("sockets");
        let primary = self.dir.path().join("primary");
        let replica = self.dir.path().join("replica");
        self.server(&["initdb"])
            .args(["-D", &primary.display().to_string()])
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .ok("initdb of the primary");
        std::fs::create_dir(&sockets).expect("socket directory");
        self.give_to_postgres(&sockets);
        append(
            &primary.join("postgresql.conf"),
            &format!(
                "port = {primary_port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
                 wal_level = replica\nmax_wal_senders = 4\nhot_standby = on\nfsync = off\n\
                 full_page_writes = off\nshared_buffers = 16MB\n",
                sockets.display()
            ),
        );
        append(
            &primary.join("pg_hba.conf"),
            "host replication all 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 trust\n",
        );
        self.pg_ctl_start(&primary, "primary");
        self.primary_url = format!("postgres://postgres@127.0.0.1:{primary_port}/postgres");
        self.server(&["pg_basebackup"])
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &primary_port.to_string(),
                "-U",
                "postgres",
            ])
            .args([
                "-D",
                &replica.display().to_string(),
                "-R",
                "-X",
                "stream",
                "--no-sync",
            ])
            .ok("pg_basebackup of the replica");
        // Later lines win: the replica's own port.
        append(
            &replica.join("postgresql.conf"),
            &format!("port = {replica_port}\n"),
        );
        self.pg_ctl_start(&replica, "replica");
        self.replica_url = format!("postgres://postgres@127.0.0.1:{replica_port}/postgres");
        self
    }

    /// The primary, migrated (opened as a command that writes opens it).
    pub async fn primary(&self) -> Db {
        Db::open(&self.primary_url).await.expect("open the primary")
    }

    /// The replica, as a query opens it (once the primary's migrations
    /// have reached it: [`Replicated::catch_up`] first).
    pub async fn replica(&self) -> Db {
        Db::open_for(&self.replica_url, Access::Read)
            .await
            .expect("open the replica")
    }

    /// Wait until the replica has replayed everything the primary has
    /// written so far (its replay LSN at the primary's current LSN).
    pub async fn catch_up(&self) {
        let primary = Db::connect(&self.primary_url)
            .await
            .expect("connect to the primary");
        let (target,): (String,) = sql_one(&primary, "SELECT pg_current_wal_lsn()::text").await;
        primary.close().await;
        let replica = self.standby().await;
        let started = Instant::now();
        loop {
            let sql = format!("SELECT coalesce(pg_last_wal_replay_lsn() >= '{target}'::pg_lsn, false)");
            let (done,): (bool,) = sql_one(&replica, &sql).await;
            if done {
                break;
            }
            if started.elapsed() > CATCH_UP {
                let (at,): (Option<String>,) =
                    sql_one(&replica, "SELECT pg_last_wal_replay_lsn()::text").await;
                panic!(
                    "the replica did not catch up with the primary within {} s: replayed to {at:?}, the \
                     primary is at {target} (is replay paused? see {})",
                    CATCH_UP.as_secs(),
                    self.dir.path().join("replica.log").display()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        replica.close().await;
    }

    /// Stop replaying the primary's WAL: from now on the replica lags.
    pub async fn pause(&self) {
        let replica = self.standby().await;
        let _: (i64,) = sql_one(
            &replica,
            "SELECT count(*) FROM (SELECT pg_wal_replay_pause()) AS p",
        )
        .await;
        replica.close().await;
    }

    /// Replay again (then [`Replicated::catch_up`] to wait for it).
    pub async fn resume(&self) {
        let replica = self.standby().await;
        let _: (i64,) = sql_one(
            &replica,
            "SELECT count(*) FROM (SELECT pg_wal_replay_resume()) AS r",
        )
        .await;
        replica.close().await;
    }

    /// The replica without migrating (it cannot be written to).
    async fn standby(&self) -> Db {
        Db::connect_for(&self.replica_url, Access::Read)
            .await
            .expect("connect to the replica")
    }

    /// A server binary, run as `postgres` when we are root, in the cluster
    /// directory (the crate's directory may not be readable to `postgres`).
    fn server(&self, args: &[&str]) -> Command {
        let bin = bin().join(args[0]);
        let mut c = if let Some(runuser) = &self.runuser {
            let mut c = Command::new(runuser);
            c.args(["-u", "postgres", "--"]).arg(bin);
            c
        } else {
            Command::new(bin)
        };
        c.args(&args[1..])
            .current_dir(self.dir.path())
            .env_remove("PGDATA");
        c
    }

    fn pg_ctl_start(&self, data: &Path, name: &str) {
        let log = self.dir.path().join(format!("{name}.log"));
        self.server(&["pg_ctl", "start", "-w", "-t", "60"])
            .args([
                "-D",
                &data.display().to_string(),
                "-l",
                &log.display().to_string(),
            ])
            .ok_or_log(&format!("pg_ctl start of the {name}"), &log);
    }

    fn give_to_postgres(&self, path: &Path) {
        if self.runuser.is_some() {
            let (uid, gid) = postgres_ids();
            std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown");
        }
    }
}

impl Drop for Replicated {
    fn drop(&mut self) {
        // The replica first: a primary stopped first would make it retry.
        for name in ["replica", "primary"] {
            let data = self.dir.path().join(name);
            if data.join("postmaster.pid").exists() {
                let _ = self
                    .server(&["pg_ctl", "stop", "-m", "immediate", "-w"])
                    .args(["-D", &data.display().to_string()])
                    .output();
            }
        }
        // The TempDirs remove the files (we are root, or their owner).
    }
}

/// Run a command to completion, panicking with its output when it fails.
trait Checked {
    fn ok(&mut self, what: &str);
    fn ok_or_log(&mut self, what: &str, log: &Path);
}

impl Checked for Command {
    fn ok(&mut self, what: &str) {
        let o = self
            .output()
            .unwrap_or_else(|e| panic!("{what}: cannot run {self:?}: {e}"));
        assert!(
            o.status.success(),
            "{what} failed ({}): {}{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }

    fn ok_or_log(&mut self, what: &str, log: &Path) {
        let o = self
            .output()
            .unwrap_or_else(|e| panic!("{what}: cannot run {self:?}: {e}"));
        assert!(
            o.status.success(),
            "{what} failed ({}): {}{}\n--- {} ---\n{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
            log.display(),
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }
}

async fn sql_one<T>(db: &Db, sql: &str) -> T
where
    T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
{
    match db.pool() {
        stabspace::storage::Pool::Postgres(p) => sqlx::query_as(sql)
            .fetch_one(p)
            .await
            .unwrap_or_else(|e| panic!("{sql} on {}: {e}", db.label())),
        stabspace::storage::Pool::Sqlite(_) => unreachable!("a replication test on SQLite"),
    }
}

fn append(file: &Path, text: &str) {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(file)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .unwrap_or_else(|e| panic!("cannot append to {}: {e}", file.display()));
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Where `program` is: on PATH, or in the sbin directories root's PATH may lack.
fn on_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<PathBuf>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// The `postgres` user's uid and gid.
fn postgres_ids() -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let o = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .expect("run id");
        assert!(
            o.status.success(),
            "no postgres user: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout)
            .trim()
            .parse()
            .expect("a numeric id")
    };
    (id("-u"), id("-g"))
}
