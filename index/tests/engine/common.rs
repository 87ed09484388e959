//! Test vectors and reference computations.

use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use stabspace_index::{BuildParams, BuildStats, Partition, PartitionBuilder};

pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

pub fn gaussian(rng: &mut ChaCha8Rng, dim: usize) -> Vec<f32> {
    (0..dim).map(|_| StandardNormal.sample(rng)).collect()
}

fn normalise(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
}

/// `n` vectors around `clusters` unit-normal centres, spread `spread`, normalised.
pub fn clustered(seed: u64, n: usize, dim: usize, clusters: usize, spread: f32) -> Vec<Vec<f32>> {
    let mut r = rng(seed);
    let centres: Vec<Vec<f32>> = (0..clusters)
        .map(|_| {
            let mut c = gaussian(&mut r, dim);
            normalise(&mut c);
            c
        })
        .collect();
    (0..n)
        .map(|_| {
            let c = &centres[r.random_range(0..clusters)];
            let noise = gaussian(&mut r, dim);
            let mut v: Vec<f32> = c
                .iter()
                .zip(&noise)
                .map(|(a, z)| a + spread * z / (dim as f32).sqrt())
                .collect();
            normalise(&mut v);
            v
        })
        .collect()
}

/// Vectors shaped like scenario vectors from market returns: a few dominant
/// directions with decaying variance (factor i has scale 1/√(i+1)), heavy-ish
/// tails (each draw's factor scale varies), and a little isotropic noise.
/// Anisotropic and of low intrinsic dimension, unlike [`iid`].
pub fn factor_model(seed: u64, n: usize, dim: usize, factors: usize) -> Vec<Vec<f32>> {
    let mut r = rng(seed);
    let loadings: Vec<Vec<f32>> = (0..factors).map(|_| gaussian(&mut r, dim)).collect();
    (0..n)
        .map(|_| {
            let vol: f32 = 0.5 + 1.5 * r.random::<f32>();
            let mut v: Vec<f32> = gaussian(&mut r, dim).iter().map(|x| 0.45 * x).collect();
            for (i, l) in loadings.iter().enumerate() {
                let z = vol * gaussian(&mut r, 1)[0] / ((i + 1) as f32).sqrt();
                v.iter_mut().zip(l).for_each(|(x, &li)| *x += z * li);
            }
            normalise(&mut v);
            v
        })
        .collect()
}

pub fn iid(seed: u64, n: usize, dim: usize) -> Vec<Vec<f32>> {
    let mut r = rng(seed);
    (0..n).map(|_| gaussian(&mut r, dim)).collect()
}

/// Cosine in f64 on the vectors as given.
pub fn cos64(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x), f64::from(y));
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    ab / (aa.sqrt() * bb.sqrt())
}

/// Exact top-k in f64: (row, cosine), cosine descending, ties by row.
pub fn brute_force(base: &[Vec<f32>], q: &[f32], k: usize) -> Vec<(u32, f64)> {
    let mut all: Vec<(u32, f64)> = base
        .iter()
        .enumerate()
        .map(|(i, v)| (i as u32, cos64(q, v)))
        .collect();
    all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    all.truncate(k);
    all
}

/// Build a partition of `base` with ids "r{row}" and payload = row as LE bytes.
pub fn build(path: &Path, base: &[Vec<f32>], params: &BuildParams) -> BuildStats {
    let mut b = PartitionBuilder::with_capacity(base[0].len(), base.len()).unwrap();
    for (i, v) in base.iter().enumerate() {
        b.add(&format!("r{i}"), v, &(i as u32).to_le_bytes()).unwrap();
    }
    b.write(path, params, r#"{"test":true}"#, &mut |_, _| {}).unwrap()
}

/// Tie-aware recall@k against brute force: a returned row counts when its
/// exact cosine is at least the k-th exact cosine minus 1e-6.
pub fn recall(p: &Partition, base: &[Vec<f32>], queries: &[Vec<f32>], k: usize, ef: usize) -> f64 {
    let mut hits = 0usize;
    for q in queries {
        let truth = brute_force(base, q, k);
        let kth = truth.last().unwrap().1;
        let found = p.search(q, k, ef).unwrap();
        assert_eq!(found.len(), k);
        hits += found
            .iter()
            .filter(|h| cos64(q, &base[h.row as usize]) >= kth - 1e-6)
            .count();
    }
    hits as f64 / (queries.len() * k) as f64
}
