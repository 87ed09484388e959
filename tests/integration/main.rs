//! Integration tests, compiled into one binary. Storage tests run on a
//! temporary SQLite file and on a fresh PostgreSQL database each
//! (`both_backends!`); CLI tests run the real binary.

mod support;

mod architecture;
mod backfill;
mod calibration;
mod cli;
mod cli_reference;
mod deploy;
mod faults;
mod import;
mod joint;
mod migrate;
mod objectstore;
mod partitions;
mod pointintime;
mod registry;
mod replica;
mod serve;
mod serve_filters;
mod serve_recall;
mod stale;
mod streaming;
mod trust;
mod trust_io;
mod v2;
mod v3;
