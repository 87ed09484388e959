//! Integration tests of the engine, on real files in temporary directories.

mod common;

mod atomic;
mod builder;
mod calibration;
mod coded_scan;
mod corruption;
mod exact;
mod filtered;
mod golden;
mod layers;
mod quantized;
mod recall;
