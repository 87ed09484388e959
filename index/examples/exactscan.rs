//! The exact batched scan on one thread: ours on the int8 codes (with its
//! proven bound and f64 re-rank), ours on the f32 vectors (the scan it
//! replaced), each checked row for row against the other and against an f64
//! brute force of a sample of the queries. `benches/exact_scan.sh` runs it
//! beside numpy's float32 sgemm + argpartition on the same files.
//!
//!   cargo run --release -p stabspace-index --example exactscan -- \
//!       --base base.f32 --queries q.f32 --dim 384 [--k 10] [--rounds 3] [--index FILE]
//!
//! Prints CSV: `engine,queries,rows,k,seconds,qps` per round and engine.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use stabspace_index::vecfile::read_matrix;
use stabspace_index::{kernel, BuildParams, Partition, PartitionBuilder};

#[path = "common/flags.rs"]
mod flags;

fn get<T: std::str::FromStr>(f: &HashMap<String, String>, key: &str, default: T) -> T {
    f.get(key).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let f = flags::flags(std::env::args().skip(1));
    let dim = f.get("dim").and_then(|d| d.parse().ok());
    let base = read_matrix(f.get("base").expect("--base").as_ref(), dim).unwrap();
    let queries = read_matrix(f.get("queries").expect("--queries").as_ref(), Some(base.dim))
        .unwrap()
        .to_rows();
    let (k, rounds): (usize, usize) = (get(&f, "k", 10), get(&f, "rounds", 3));
    let path = f
        .get("index")
        .map_or_else(|| std::env::temp_dir().join("exactscan.stabidx"), PathBuf::from);
    if !path.exists() {
        // A flat file with codes: the scan reads the codes, no graph is needed.
        let mut b = PartitionBuilder::with_capacity(base.dim, base.rows()).unwrap();
        for i in 0..base.rows() {
            b.add(&i.to_string(), base.row(i), &[]).unwrap();
        }
        let params = BuildParams {
            flat_threshold: 0,
            m: 4,
            ef_construction: 4,
            ..BuildParams::default()
        };
        b.write(&path, &params, "{}", &mut |_, _| {}).unwrap();
    }
    let p = Partition::open(&path).unwrap();
    assert!(p.has_quantized(), "{} has no codes", path.display());
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    eprintln!(
        "# {} queries x {} rows, k {k}, one thread; tile kernel {}, f32 kernel {}",
        queries.len(),
        p.len(),
        kernel::tile_path(),
        kernel::dot_path()
    );
    println!("engine,queries,rows,k,seconds,qps");
    let mut answers = Vec::new();
    for round in 0..rounds {
        for engine in ["stabspace-codes", "stabspace-f32"] {
            let started = Instant::now();
            let hits = one
                .install(|| match engine {
                    "stabspace-codes" => p.search_batch(&queries, k, None),
                    _ => p.search_batch_f32(&queries, k),
                })
                .unwrap();
            let s = started.elapsed().as_secs_f64();
            println!(
                "{engine},{},{},{k},{s:.3},{:.1}",
                queries.len(),
                p.len(),
                queries.len() as f64 / s
            );
            if round == 0 {
                answers.push(hits);
            }
        }
    }
    // The two scans agree row for row, and both equal an f64 brute force.
    let rows = |h: &Vec<stabspace_index::Hit>| h.iter().map(|x| x.row).collect::<Vec<_>>();
    let differ = (0..queries.len())
        .filter(|&i| rows(&answers[0][i]) != rows(&answers[1][i]))
        .count();
    let sample: Vec<usize> = (0..queries.len()).step_by((queries.len() / 50).max(1)).collect();
    let mut wrong = 0;
    for &i in &sample {
        let q = &queries[i];
        let qn: f64 = q.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>().sqrt();
        let mut all: Vec<(f64, u32)> = (0..p.len())
            .map(|r| {
                let v = p.vector(r);
                let (d, n) = v.iter().zip(q).fold((0f64, 0f64), |(d, n), (&x, &y)| {
                    (d + f64::from(x) * f64::from(y), n + f64::from(x) * f64::from(x))
                });
                (d / (n.sqrt() * qn), r as u32)
            })
            .collect();
        all.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let want: Vec<u32> = all[..k].iter().map(|x| x.1).collect();
        if rows(&answers[0][i]) != want {
            wrong += 1;
        }
    }
    eprintln!(
        "# codes vs f32 scan: {differ} of {} queries differ; codes vs f64 brute force: {wrong} of {} sampled differ",
        queries.len(),
        sample.len()
    );
}
