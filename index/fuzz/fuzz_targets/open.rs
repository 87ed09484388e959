//! Fuzz the open path: any bytes written to a file must open to an error or to
//! a partition whose every operation returns (Ok or Err) without panicking.
//!
//! Run: `cargo install cargo-fuzz && cd index && cargo +nightly fuzz run open`
//! (seed the corpus with `index/tests/data/golden_v1.stabidx`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use stabspace_index::Partition;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("fuzz.stabidx");
    std::fs::write(&path, data).expect("write");
    if let Ok(p) = Partition::open(&path) {
        let _ = p.verify();
        let _ = p.provenance();
        let dim = p.dim().min(4096);
        let query: Vec<f32> = (0..dim).map(|i| (i as f32 * 0.37).sin() + 0.01).collect();
        let _ = p.search(&query, 10, 32);
        let _ = p.search_exact(&query, 10);
        for row in 0..p.len().min(16) {
            let _ = p.id(row);
            let _ = p.payload(row);
        }
    }
});
