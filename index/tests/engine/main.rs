//! Integration tests of the engine, on real files in temporary directories.

mod common;

mod atomic;
mod builder;
mod calibration;
mod corruption;
mod exact;
mod filtered;
mod golden;
mod layers;
mod quantized;
mod recall;
