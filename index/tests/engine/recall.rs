//! Recall@10 of the graph search against brute force (M 16, ef_construction 200).

use stabspace_index::{BuildParams, Partition};

use crate::common::{build, clustered, iid, recall};

const SEED: u64 = 20_261_122;

#[test]
fn clustered_20k_reaches_0_98_at_ef_64() {
    println!("seed {SEED}");
    let all = clustered(SEED, 20_200, 384, 200, 0.35);
    let (base, queries) = all.split_at(20_000);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clustered.stabidx");
    let stats = build(
        &path,
        base,
        &BuildParams {
            seed: SEED,
            ..BuildParams::default()
        },
    );
    assert!(stats.graph);
    let p = Partition::open(&path).unwrap();
    let r = recall(&p, base, queries, 10, 64);
    println!("clustered 20k: recall@10 at ef 64 = {r:.4}");
    assert!(r >= 0.98, "recall@10 {r:.4} < 0.98 (seed {SEED})");
}

#[test]
fn iid_gaussian_5k_reaches_0_97_at_ef_512() {
    println!("seed {SEED}");
    let all = iid(SEED + 1, 5_100, 384);
    let (base, queries) = all.split_at(5_000);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("iid.stabidx");
    let stats = build(
        &path,
        base,
        &BuildParams {
            seed: SEED,
            flat_threshold: 0,
            ..BuildParams::default()
        },
    );
    assert!(stats.graph);
    let p = Partition::open(&path).unwrap();
    let r = recall(&p, base, queries, 10, 512);
    println!("iid 5k: recall@10 at ef 512 = {r:.4}");
    assert!(r >= 0.97, "recall@10 {r:.4} < 0.97 (seed {SEED})");
}
