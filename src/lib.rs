//! stabspace: the stability/fragility ("STAB") joint embedding space.
//!
//! Backfills turn daily prices and shock scenarios into 384-dim float32
//! vectors stored in PostgreSQL or an embedded SQLite file; the `index/` crate
//! (`stabspace-index`) makes nearest-scenario queries over them fast.
//! See `ARCHITECTURE.md` for a map of the modules.
//!
//! Features (both on by default; the `stabspace` binary needs both): `cli`,
//! the command line (`cli`, `commands`: clap, indicatif), and `server`,
//! `stabspace serve` (`server`: axum, hyper, prometheus-client). Without
//! them the library (configuration, storage, workflows, reports) is what the
//! Python package links.

#![forbid(unsafe_code)]

pub mod backfill;
pub mod bench;
#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "cli")]
pub mod commands;
pub mod config;
pub mod demo_db;
pub mod diagnostics;
pub mod encoders;
pub mod error;
pub mod eval;
pub mod faults;
pub mod gen_scenarios;
pub mod import;
pub mod joint;
pub mod nearest;
pub mod output;
pub mod parse;
pub mod partitions;
pub mod pointintime;
pub mod portfolio;
pub mod progress;
pub mod report;
#[cfg(feature = "server")]
pub mod server;
pub mod spaces;
pub mod storage;
pub mod synth;
pub mod text;
pub mod vector;

pub use error::{Error, Result};
