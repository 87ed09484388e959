//! Criterion benchmarks of the engine. Fixtures (vectors, partitions, hnsw_rs
//! dumps) are built once and cached in `target/bench-fixtures/`.
//!
//! `cargo bench -p stabspace-index --bench engine` runs the 10k/100k groups;
//! `STABSPACE_BENCH_1M=1` adds 1M-vector fixtures (the first run builds them:
//! about 15 minutes on 2 cores). Filter groups as usual: `-- open`, `-- crossover`.

#[path = "data.rs"]
mod data;

use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hnsw_rs::anndists::dist::DistDot;
use hnsw_rs::api::AnnT;
use hnsw_rs::hnsw::Hnsw;
use hnsw_rs::hnswio::HnswIo;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use stabspace_index::kernel::{self, scalar};
use stabspace_index::vecfile::{read_matrix, write_npy, Matrix};
use stabspace_index::{BuildParams, Partition, PartitionBuilder};

const DIM: usize = 384;

fn fixtures() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-fixtures");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn sizes() -> Vec<usize> {
    let mut s = vec![10_000, 100_000];
    if std::env::var("STABSPACE_BENCH_1M").is_ok_and(|v| v == "1") {
        s.push(1_000_000);
    }
    s
}

/// Scenario-like vectors, cached as .npy.
fn vectors(n: usize) -> Matrix {
    let path = fixtures().join(format!("scenario-{n}.npy"));
    if let Ok(m) = read_matrix(&path, None) {
        return m;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(n as u64);
    let m = Matrix {
        dim: DIM,
        data: data::scenario_like(&mut rng, n, DIM),
    };
    write_npy(&path, &m).unwrap();
    m
}

fn queries() -> Vec<Vec<f32>> {
    let mut rng = ChaCha8Rng::seed_from_u64(4242);
    data::scenario_like(&mut rng, 200, DIM)
        .chunks(DIM)
        .map(<[f32]>::to_vec)
        .collect()
}

/// Our partition of the first `n` scenario vectors (graph always), cached.
fn partition(n: usize, flat_threshold: usize) -> Partition {
    // "-q": written with int8 codes (fixtures cached before them lack the section).
    let path = fixtures().join(format!("scenario-{n}-ft{flat_threshold}-q.stabidx"));
    if !path.exists() {
        let m = vectors(n.max(10_000));
        let mut b = PartitionBuilder::with_capacity(DIM, n).unwrap();
        for i in 0..n {
            b.add(&format!("S{i}"), m.row(i), &[]).unwrap();
        }
        let params = BuildParams {
            flat_threshold,
            ..BuildParams::default()
        };
        b.write(&path, &params, "{}", &mut |_, _| {}).unwrap();
    }
    Partition::open(&path).unwrap()
}

/// The same partition, searched on the f32 vectors rather than the int8 codes.
fn partition_f32(n: usize, flat_threshold: usize) -> Partition {
    let mut p = partition(n, flat_threshold);
    p.set_quantized(false);
    p
}

/// hnsw_rs's own dump of the same vectors, cached; returns (dir, basename).
fn hnsw_rs_dump(n: usize) -> (PathBuf, String) {
    let dir = fixtures();
    let base = format!("hnswrs-{n}");
    if !dir.join(format!("{base}.hnsw.graph")).exists() {
        let m = vectors(n);
        let h: Hnsw<f32, DistDot> = Hnsw::new(16, n, 16, 200, DistDot);
        let unit: Vec<Vec<f32>> = (0..n)
            .map(|i| {
                let r = m.row(i);
                let norm = r.iter().map(|x| x * x).sum::<f32>().sqrt();
                r.iter().map(|x| x / norm).collect()
            })
            .collect();
        let data: Vec<(&Vec<f32>, usize)> = unit.iter().zip(0..).collect();
        h.parallel_insert(&data);
        h.file_dump(&dir, &base).unwrap();
    }
    (dir, base)
}

fn bench_kernels(c: &mut Criterion) {
    let mut g = c.benchmark_group("dot384");
    let a: Vec<f32> = (0..DIM).map(|i| (i as f32).sin()).collect();
    let b: Vec<f32> = (0..DIM).map(|i| (i as f32).cos()).collect();
    g.bench_function("scalar", |bn| {
        bn.iter(|| scalar::dot(std::hint::black_box(&a), &b))
    });
    g.bench_function("unrolled", |bn| {
        bn.iter(|| scalar::dot_unrolled(std::hint::black_box(&a), &b))
    });
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        g.bench_function("avx2_fma", |bn| {
            bn.iter(|| kernel::x86::dot_avx2_fma(std::hint::black_box(&a), &b))
        });
    }
    // Quantised traversal: 384 codes against i16 weights.
    let codes: Vec<u8> = (0..DIM).map(|i| (i * 37 % 256) as u8).collect();
    let w: Vec<i16> = (0..DIM).map(|i| (i as i16 * 53) % 20_000 - 10_000).collect();
    g.bench_function("u8_i16_scalar", |bn| {
        bn.iter(|| scalar::dot_u8_i16(std::hint::black_box(&codes), &w))
    });
    g.bench_function("u8_i16_unrolled", |bn| {
        bn.iter(|| scalar::dot_u8_i16_unrolled(std::hint::black_box(&codes), &w))
    });
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") {
        g.bench_function("u8_i16_avx2", |bn| {
            bn.iter(|| kernel::x86::dot_u8_i16_avx2(std::hint::black_box(&codes), &w))
        });
    }
    g.finish();
}

fn bench_open(c: &mut Criterion) {
    let mut g = c.benchmark_group("open");
    g.sample_size(20);
    for &n in &sizes() {
        let p = partition(n, 0);
        let path = p.path().to_path_buf();
        drop(p);
        g.bench_with_input(BenchmarkId::new("stabspace", n), &path, |b, path| {
            b.iter(|| Partition::open(path).unwrap())
        });
        let (dir, base) = hnsw_rs_dump(n);
        g.bench_with_input(
            BenchmarkId::new("hnsw_rs_reload", n),
            &(dir, base),
            |b, (dir, base)| {
                b.iter(|| {
                    let io = HnswIo::new(dir, base);
                    let h: Hnsw<f32, DistDot> = io.load_hnsw_with_dist(DistDot).unwrap();
                    h.get_nb_point()
                })
            },
        );
    }
    g.finish();
}

fn bench_exact_scan(c: &mut Criterion) {
    let mut g = c.benchmark_group("exact_scan");
    let p = partition(100_000, 0);
    let q = &queries()[0];
    g.throughput(Throughput::Bytes((p.len() * DIM * 4) as u64));
    g.bench_function("100000", |b| b.iter(|| p.search_exact(q, 10).unwrap()));
    g.finish();
}

/// 64 queries against 100k rows on one thread: one exact scan per query, or
/// one batched scan (blocks of queries sharing each pass over the rows).
fn bench_exact_batch(c: &mut Criterion) {
    let mut g = c.benchmark_group("exact_batch_64q_100k");
    g.sample_size(10);
    let p = partition(100_000, 0);
    let qs: Vec<Vec<f32>> = queries().into_iter().cycle().take(64).collect();
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    g.throughput(Throughput::Elements(qs.len() as u64));
    g.bench_function("one_at_a_time", |b| {
        b.iter(|| {
            qs.iter()
                .map(|q| p.search_exact(q, 10).unwrap())
                .collect::<Vec<_>>()
        })
    });
    g.bench_function("batched", |b| {
        b.iter(|| one.install(|| p.search_batch(&qs, 10, None).unwrap().len()))
    });
    // The graph at the breadth calibrated for recall@10 0.95, on each traversal:
    // where the batched exact scan stops paying.
    let ef = p
        .calibration()
        .unwrap()
        .and_then(|c| c.ef_for(0.95))
        .unwrap_or(128);
    let f32_path = partition_f32(100_000, 0);
    g.bench_function(format!("graph_int8_ef{ef}"), |b| {
        b.iter(|| one.install(|| p.search_batch(&qs, 10, Some(ef)).unwrap().len()))
    });
    g.bench_function(format!("graph_f32_ef{ef}"), |b| {
        b.iter(|| one.install(|| f32_path.search_batch(&qs, 10, Some(ef)).unwrap().len()))
    });
    g.finish();
}

fn bench_search(c: &mut Criterion) {
    let mut g = c.benchmark_group("search_100k");
    let (p, f32_path) = (partition(100_000, 0), partition_f32(100_000, 0));
    let qs = queries();
    for ef in [16, 64, 256] {
        g.throughput(Throughput::Elements(qs.len() as u64));
        for (name, p) in [("int8_ef", &p), ("f32_ef", &f32_path)] {
            g.bench_with_input(BenchmarkId::new(name, ef), &ef, |b, &ef| {
                b.iter(|| {
                    qs.iter()
                        .map(|q| p.search(q, 10, ef).unwrap().len())
                        .sum::<usize>()
                })
            });
        }
    }
    g.finish();
}

/// Where an exact scan stops beating the graph (ef 64, k 10): sets FLAT_THRESHOLD.
fn bench_crossover(c: &mut Criterion) {
    let mut g = c.benchmark_group("crossover");
    g.measurement_time(Duration::from_secs(3));
    let qs = queries();
    for n in [500, 1_000, 2_000, 4_000, 8_000] {
        let (p, f32_path) = (partition(n, 0), partition_f32(n, 0));
        g.throughput(Throughput::Elements(qs.len() as u64));
        for (name, p) in [("graph_int8_ef64", &p), ("graph_f32_ef64", &f32_path)] {
            g.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
                b.iter(|| {
                    qs.iter()
                        .map(|q| p.search(q, 10, 64).unwrap().len())
                        .sum::<usize>()
                })
            });
        }
        g.bench_with_input(BenchmarkId::new("exact", n), &n, |b, _| {
            b.iter(|| {
                qs.iter()
                    .map(|q| p.search_exact(q, 10).unwrap().len())
                    .sum::<usize>()
            })
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    bench_kernels,
    bench_crossover,
    bench_exact_scan,
    bench_exact_batch,
    bench_search,
    bench_open
);
criterion_main!(benches);
