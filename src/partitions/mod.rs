//! Index partitions of the STAB scenario vectors: one memory-mapped file per
//! (joint model, scenario set) in a partition store (by default the directory
//! `<data-dir>/index/`), built from `joint_embeddings` and kept in step with it.
//!
//! Each file's provenance (a JSON object in its header, see `index/FORMAT.md`)
//! records the model, the set, the rows, the build parameters and time, and the
//! *fingerprint* of the source rows: their count, the set's change counters
//! and their latest `created_at`. Database triggers keep two counters per
//! (model, set) in `joint_scenario_versions`, whoever writes: `version`, bumped
//! on every insert, update or delete of a scenario vector (migration 0002), and
//! `rewrites`, bumped only on updates and deletes (migration 0006). A partition
//! is fresh when it is from this database and its recorded `version` is the
//! database's: one indexed row lookup ([`counters`]), never a scan of the set,
//! so queries stay O(1) at any set size. When `version` moved but `rewrites`
//! did not, the set only gained rows since the build ([`Fingerprint::change_since`]).
//! Counters only grow: a database read whose `version` is below the recorded
//! one is behind the partition (a replica lagging the primary it was built
//! from, [`Change::ReaderBehind`]); the partition is then newer than the rows
//! read, neither stale nor rebuilt, and answers as it is.
//!
//! The rooms, each allowed to use only those before it:
//!
//! - [`store`]: where the files live, behind the [`PartitionStore`] seam (list,
//!   version, open, publish atomically, remove, sweep); [`LocalDir`] is a
//!   directory.
//! - [`provenance`]: what a file records about itself, and the set's
//!   counters and fingerprint in the database.
//! - [`fetch`]: the local cache of partitions fetched from a remote store
//!   (verified downloads, least recently used evicted past a budget).
//! - [`transfer`]: uploads and verified downloads of partition files, the
//!   objects no version names.
//! - [`remote`]: [`RemoteStore`], partitions in object storage (S3 API),
//!   their versions committed in the database's `partition_manifest`.
//! - [`scan`]: reading a set's scenario vectors from the database.
//! - [`queries`]: the queries a partition's recall is calibrated on (the
//!   joint model's recent states, or a file).
//! - [`catalog`]: each partition's state against the database, what the next
//!   rebuild does, the parameters it was built with.
//! - [`build`]: read, build or extend, calibrate, publish.
//! - [`calibrate`]: recalibrate a partition in place on new queries.
//!
//! Searching partitions is [`crate::nearest`]'s: it opens them through a
//! [`PartitionStore`] too.

pub mod build;
pub mod calibrate;
pub mod catalog;
pub mod fetch;
pub mod provenance;
pub mod queries;
pub mod remote;
pub mod scan;
pub mod store;
pub mod transfer;

pub use build::{build, rebuild, swept_note, BuildMode, Built};
pub use catalog::{
    foreign_reason, readable_status, recorded_params, sources, stale_partitions, status_all, status_of,
    with_observations, FileSummary, Freshness, Status,
};
pub use provenance::{
    counters, fingerprint, scenario_as_of, BuildKind, CalibrationRecord, Change, Counters, Fingerprint,
    Provenance, RecordedParams, SpaceTally,
};
pub use remote::{RemoteSettings, RemoteStore};
pub use scan::{no_scenarios, scan_scenarios, ScenarioScan};
pub use store::{
    index_dir, partition_path, Base, CacheStats, Collected, LocalDir, PartitionStore, Published, Recorded,
    Refreshed, StoredVersion, Version, EXTENSION,
};
