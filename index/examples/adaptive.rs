//! The adaptive stop measured against the fixed breadth (issue #27, part 3):
//! recall@10 against the exact top-10, rows scored per query and
//! single-thread queries/s, for the fixed breadths of the ladder and for the
//! patience stop (`Partition::search_patience`) at several patiences, in one
//! run on one partition.
//!
//!   cargo run --release -p stabspace-index --example adaptive -- \
//!       --index /tmp/adaptive.stabidx --base /work/bench-data/scen_100000.f32 \
//!       --queries /work/bench-data/scen_q_1000.f32 --dim 384 [--reuse] [--nq 500]
//!
//! Prints one line per setting: `rule param recall near_recall scored qps`.

#[path = "common/flags.rs"]
mod flags;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use stabspace_index::sweep::{truth, Truth};
use stabspace_index::vecfile::read_matrix;
use stabspace_index::{BuildParams, Partition, PartitionBuilder};

fn args() -> HashMap<String, String> {
    flags::flags(std::env::args().skip(1))
}

/// One query's answer and the rows it scored.
type Search<'a> = dyn Fn(&[f32]) -> (Vec<stabspace_index::Hit>, usize) + 'a;

fn recall(p: &Partition, q: &[Vec<f32>], t: &Truth, found: &[Vec<stabspace_index::Hit>]) -> (f64, f64) {
    let (mut strict, mut near) = (0, 0);
    for (i, hits) in found.iter().enumerate() {
        for h in hits {
            let s = stabspace_index::kernel::dot(p.vector(h.row as usize), &unit(&q[i]));
            strict += usize::from(f64::from(s) >= t.kth[i] - 1e-6);
            near += usize::from(f64::from(s) >= t.kth[i] - 1e-3);
        }
    }
    let all = (q.len() * t.k) as f64;
    (strict as f64 / all, near as f64 / all)
}

fn unit(v: &[f32]) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| x / n).collect()
}

fn main() {
    let f = args();
    let dim: usize = f.get("dim").map_or(384, |d| d.parse().unwrap());
    let index = PathBuf::from(f.get("index").expect("--index FILE"));
    let nq: usize = f.get("nq").map_or(500, |d| d.parse().unwrap());
    if !f.contains_key("reuse") || !index.exists() {
        let base = read_matrix(&PathBuf::from(f.get("base").expect("--base FILE")), Some(dim)).unwrap();
        let mut b = PartitionBuilder::with_capacity(dim, base.rows()).unwrap();
        for (i, v) in base.data.chunks_exact(dim).enumerate() {
            b.add(&i.to_string(), v, b"").unwrap();
        }
        let t = Instant::now();
        b.write(&index, &BuildParams::default(), "{}", &mut |_, _| {})
            .unwrap();
        eprintln!("built in {:.1} s", t.elapsed().as_secs_f64());
    }
    let p = Partition::open(&index).unwrap();
    let queries = read_matrix(
        &PathBuf::from(f.get("queries").expect("--queries FILE")),
        Some(dim),
    )
    .unwrap();
    let q: Vec<Vec<f32>> = queries
        .data
        .chunks_exact(dim)
        .take(nq)
        .map(<[f32]>::to_vec)
        .collect();
    let k = 10;
    let t = truth(&p, &q, k).unwrap();
    let run = |label: &str, param: usize, go: &Search<'_>| {
        for v in q.iter().take(20) {
            go(v);
        }
        let started = Instant::now();
        let mut found = Vec::with_capacity(q.len());
        let mut scored = 0usize;
        for v in &q {
            let (h, s) = go(v);
            found.push(h);
            scored += s;
        }
        let qps = q.len() as f64 / started.elapsed().as_secs_f64();
        let (r, n) = recall(&p, &q, &t, &found);
        println!(
            "{label} {param} {r:.4} {n:.4} {:.0} {qps:.0}",
            scored as f64 / q.len() as f64
        );
    };
    println!("rule param recall near_recall scored qps");
    for ef in [16, 24, 32, 48, 64, 96, 128, 192, 256, 384] {
        // The fixed breadth, through the same beam with patience off (to count rows scored) ...
        run("fixed-ef", ef, &|v| {
            p.search_patience(v, k, ef, usize::MAX).unwrap()
        });
        // ... and through the production path (same answers; its own timing).
        run("search", ef, &|v| (p.search(v, k, ef).unwrap(), 0));
    }
    for ef_max in [256, 1024] {
        for patience in [5, 10, 20, 40, 80, 160] {
            run(&format!("patience@{ef_max}"), patience, &|v| {
                p.search_patience(v, k, ef_max, patience).unwrap()
            });
        }
    }
}
