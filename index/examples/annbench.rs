//! Benchmark harness for the engine, beside `shared/bench/peer_ann.py`.
//!
//! Make fixtures (float32 .npy, so peers read the same vectors):
//!   cargo run --release -p stabspace-index --example annbench -- gen \
//!       --kind scenario --n 100000 --queries 1000 --seed 1 --out /tmp/scen100k
//! kinds: `scenario` (20-day x 20-instrument return panels bootstrapped from a
//! fat-tailed, volatility-clustered synthetic return series, flattened, cut to
//! 384), `clustered` (200 Gaussian clusters, spread 0.35), `iid` (Gaussian),
//! `text` (shaped like sentence embeddings: a shared component, 48 topics,
//! four outlier dimensions; synthetic).
//!
//! Measure (CSV on stdout, the columns of peer_ann.py; build/open on stderr):
//!   cargo run --release -p stabspace-index --example annbench -- sweep \
//!       --base /tmp/scen100k/base.npy --queries /tmp/scen100k/queries.npy \
//!       --k 10 --m 16 --efc 200 --ef 16,32,64,128,256 [--index FILE] [--reuse]
//!       [--flat] [--open-only]   (write no graph; stop after timing the open)
//!       [--quant per-dimension|global|none] [--rotate SEED] [--traversal f32|i8]
//!       [--build-on i8|f32]   (the insertions' layer searches: on the codes, the default, or in f32)
//! Graph searches are measured twice when the partition has quantised codes:
//! on the f32 vectors (`stabspace`) and on the codes (`stabspace-i8`).
//! `--rotate SEED` applies one random orthogonal rotation (seeded) to the base
//! and query vectors first: cosines are unchanged, the spread of the
//! components over dimensions is not (the quantisation study in FORMAT.md).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use stabspace_index::sweep::{measure, truth};
use stabspace_index::vecfile::{read_matrix, write_npy, Matrix};
use stabspace_index::{kernel, BuildParams, Partition, PartitionBuilder, Quantization};

#[path = "../benches/data.rs"]
mod data;
#[path = "common/flags.rs"]
mod flags;
use data::{clustered, scenario_like};

fn args() -> (String, HashMap<String, String>) {
    let mut it = std::env::args().skip(1);
    let cmd = it.next().unwrap_or_default();
    (cmd, flags::flags(it))
}

fn get<T: std::str::FromStr>(f: &HashMap<String, String>, key: &str, default: T) -> T {
    f.get(key).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn gen(f: &HashMap<String, String>) {
    let kind = f.get("kind").map_or("scenario", String::as_str);
    let (n, nq, dim, seed): (usize, usize, usize, u64) = (
        get(f, "n", 100_000),
        get(f, "queries", 1_000),
        get(f, "dim", 384),
        get(f, "seed", 1),
    );
    let out = PathBuf::from(f.get("out").expect("--out DIR"));
    std::fs::create_dir_all(&out).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let all = match kind {
        "scenario" => scenario_like(&mut rng, n + nq, dim),
        "clustered" => clustered(&mut rng, n + nq, dim),
        "iid" => data::iid(&mut rng, n + nq, dim),
        "text" => data::text_like(&mut rng, n + nq, dim),
        other => panic!("unknown --kind {other}"),
    };
    let (base, queries) = all.split_at(n * dim);
    write_npy(
        &out.join("base.npy"),
        &Matrix {
            dim,
            data: base.to_vec(),
        },
    )
    .unwrap();
    write_npy(
        &out.join("queries.npy"),
        &Matrix {
            dim,
            data: queries.to_vec(),
        },
    )
    .unwrap();
    eprintln!(
        "wrote {n} base and {nq} query vectors ({kind}, dim {dim}) to {}",
        out.display()
    );
}

fn sweep(f: &HashMap<String, String>) {
    let base = read_matrix(
        f.get("base").expect("--base").as_ref(),
        f.get("dim").and_then(|d| d.parse().ok()),
    )
    .unwrap();
    let queries = read_matrix(f.get("queries").expect("--queries").as_ref(), Some(base.dim)).unwrap();
    let mut queries = queries.to_rows();
    let mut base = base;
    if let Some(seed) = f.get("rotate").and_then(|s| s.parse::<u64>().ok()) {
        let r = rotation(base.dim, seed);
        base.data = base.data.chunks(base.dim).flat_map(|v| rotate(&r, v)).collect();
        queries = queries.iter().map(|q| rotate(&r, q)).collect();
    }
    let quantization = f.get("quant").map_or(Quantization::default(), |s| {
        Quantization::parse(s).unwrap_or_else(|| panic!("unknown --quant {s}"))
    });
    let (k, m, efc): (usize, usize, usize) = (get(f, "k", 10), get(f, "m", 16), get(f, "efc", 200));
    let efs: Vec<usize> = f
        .get("ef")
        .map_or("16,32,64,128,256", String::as_str)
        .split(',')
        .map(|s| s.parse().unwrap())
        .collect();
    let path = f
        .get("index")
        .map_or_else(|| std::env::temp_dir().join("annbench.stabidx"), PathBuf::from);
    let threads = rayon::current_num_threads();
    let mut build_s = 0.0;
    if !(f.contains_key("reuse") && path.exists()) {
        let started = Instant::now();
        let mut b = PartitionBuilder::with_capacity(base.dim, base.rows()).unwrap();
        for i in 0..base.rows() {
            b.add(&i.to_string(), base.row(i), &[]).unwrap();
        }
        // --flat writes no graph (exact scans only), e.g. to time opening a 1M-row file quickly.
        let flat_threshold = if f.contains_key("flat") { usize::MAX } else { 0 };
        let params = BuildParams {
            m,
            ef_construction: efc,
            flat_threshold,
            quantization,
            build_on_codes: f.get("build-on").is_none_or(|b| b != "f32"),
            ..BuildParams::default()
        };
        let stats = b.write(&path, &params, "{}", &mut |_, _| {}).unwrap();
        build_s = started.elapsed().as_secs_f64();
        eprintln!(
            "# build {:.1} s on {threads} threads (graph {:.1} s), {} bytes, kernel {}",
            build_s,
            stats.graph_seconds,
            stats.file_bytes,
            kernel::dot_path()
        );
    }
    let mut opens: Vec<f64> = (0..21)
        .map(|_| {
            let t = Instant::now();
            let p = Partition::open(&path).unwrap();
            std::hint::black_box(p.len());
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    opens.sort_by(f64::total_cmp);
    let p = Partition::open(&path).unwrap();
    eprintln!(
        "# open: median {:.1} us of 21 ({} rows, {} bytes, graph: {}), {:.0} bytes/vector",
        opens[10],
        p.len(),
        p.info().file_bytes,
        p.has_graph(),
        p.info().file_bytes as f64 / p.len() as f64
    );
    if f.contains_key("open-only") {
        return;
    }
    let tr = truth(&p, &queries, k).unwrap();
    println!("engine,n,dim,k,M,efc,ef,recall,qps,p50_us,p99_us,build_s,threads");
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let mut f32_path = Partition::open(&path).unwrap();
    f32_path.set_quantized(false);
    // --traversal f32|i8 measures one path only (and skips the exact scan).
    let only = f.get("traversal").map(String::as_str);
    let mut runs: Vec<(&str, &Partition, Option<usize>)> = Vec::new();
    if only.is_none() {
        runs.push(("stabspace-exact", &p, None));
    }
    for ef in efs.iter().map(|&e| Some(e)) {
        if only != Some("i8") {
            runs.push(("stabspace", &f32_path, ef));
        }
        if p.quantized_traversal() && only != Some("f32") {
            runs.push(("stabspace-i8", &p, ef));
        }
    }
    for (engine, p, ef) in runs {
        let r = one.install(|| measure(p, &queries, &tr, ef)).unwrap();
        println!(
            "{engine},{},{},{k},{m},{efc},{},{:.4},{:.1},{:.1},{:.1},{:.2},1",
            p.len(),
            p.dim(),
            ef.map_or(String::new(), |e| e.to_string()),
            r.recall,
            r.qps,
            r.p50_us,
            r.p99_us,
            build_s
        );
        let par = measure(p, &queries, &tr, ef).unwrap();
        eprintln!(
            "#   {engine} ef {:>5}: {:.1} QPS on {threads} threads, p95 {:.1} us",
            ef.map_or("exact".into(), |e| e.to_string()),
            par.qps_all_threads,
            r.p95_us
        );
    }
}

/// A random orthogonal matrix (rows): Gram–Schmidt on seeded Gaussian rows.
fn rotation(dim: usize, seed: u64) -> Vec<Vec<f64>> {
    use rand_distr::{Distribution, StandardNormal};
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut rows: Vec<Vec<f64>> = Vec::with_capacity(dim);
    while rows.len() < dim {
        let mut v: Vec<f64> = (0..dim).map(|_| StandardNormal.sample(&mut rng)).collect();
        for r in &rows {
            let d: f64 = v.iter().zip(r).map(|(a, b)| a * b).sum();
            v.iter_mut().zip(r).for_each(|(a, b)| *a -= d * b);
        }
        let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        if n > 1e-6 {
            rows.push(v.iter().map(|x| x / n).collect());
        }
    }
    rows
}

fn rotate(r: &[Vec<f64>], v: &[f32]) -> Vec<f32> {
    r.iter()
        .map(|row| row.iter().zip(v).map(|(a, &b)| a * f64::from(b)).sum::<f64>() as f32)
        .collect()
}

fn main() {
    let (cmd, flags) = args();
    match cmd.as_str() {
        "gen" => gen(&flags),
        "sweep" => sweep(&flags),
        _ => {
            eprintln!("usage: annbench gen|sweep [flags]; see the comment at the top of examples/annbench.rs")
        }
    }
}
