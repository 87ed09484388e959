//! Benchmark vectors, shared by `benches/engine.rs` and `examples/annbench.rs`.
#![allow(dead_code)]

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal, StudentT};

/// Scenario-like vectors: panels of `days` x `instruments` daily returns drawn
/// (days bootstrapped with replacement) from a GARCH(1,1) one-factor series with
/// Student-t(4) shocks, flattened day by day and cut to `dim`.
pub fn scenario_like(rng: &mut ChaCha8Rng, n: usize, dim: usize) -> Vec<f32> {
    let (instruments, days, history) = (20usize, 20usize, 5_000usize);
    let t4 = StudentT::new(4.0).unwrap();
    let beta: Vec<f64> = (0..instruments).map(|_| rng.random_range(0.5..1.5)).collect();
    let mut series = vec![0f64; history * instruments];
    let mut var = 1e-4f64;
    let mut prev = 0f64;
    for t in 0..history {
        var = 2e-6 + 0.09 * prev * prev + 0.89 * var;
        let m = var.sqrt() * t4.sample(rng) / 2f64.sqrt();
        prev = m;
        for i in 0..instruments {
            let idio: f64 = 0.6 * var.sqrt() * t4.sample(rng) / 2f64.sqrt();
            series[t * instruments + i] = beta[i] * m + idio;
        }
    }
    let mut out = Vec::with_capacity(n * dim);
    for _ in 0..n {
        let mut panel = Vec::with_capacity(days * instruments);
        for _ in 0..days {
            let t = rng.random_range(0..history);
            panel.extend(
                series[t * instruments..(t + 1) * instruments]
                    .iter()
                    .map(|&x| x as f32),
            );
        }
        panel.resize(dim, 0.0);
        out.extend_from_slice(&panel[..dim]);
    }
    out
}

/// `n` unit vectors around 200 random unit centres, spread 0.35.
pub fn clustered(rng: &mut ChaCha8Rng, n: usize, dim: usize) -> Vec<f32> {
    let centres: Vec<Vec<f32>> = (0..200)
        .map(|_| {
            let v: Vec<f32> = (0..dim).map(|_| StandardNormal.sample(rng)).collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.iter().map(|x| x / norm).collect()
        })
        .collect();
    let mut out = Vec::with_capacity(n * dim);
    for _ in 0..n {
        let c = &centres[rng.random_range(0..centres.len())];
        let mut v: Vec<f32> = c
            .iter()
            .map(|&x| {
                let z: f32 = StandardNormal.sample(rng);
                x + 0.35 * z / (dim as f32).sqrt()
            })
            .collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= norm);
        out.extend(v);
    }
    out
}

/// `n` unit vectors shaped like sentence embeddings (synthetic): a component
/// shared by every row (pairwise cosines around 0.3, as one model's
/// embeddings have), 48 topic directions with decaying weight, four
/// "outlier" dimensions that carry large values of the same sign in every row
/// (as BERT-family embeddings do), and isotropic noise.
pub fn text_like(rng: &mut ChaCha8Rng, n: usize, dim: usize) -> Vec<f32> {
    let unit = |rng: &mut ChaCha8Rng| {
        let v: Vec<f32> = (0..dim).map(|_| StandardNormal.sample(rng)).collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / norm).collect::<Vec<f32>>()
    };
    let mean = unit(rng);
    let topics: Vec<Vec<f32>> = (0..48).map(|_| unit(rng)).collect();
    let outliers: Vec<usize> = [17, 101, 233, 300].iter().map(|d| d % dim).collect();
    let mut out = Vec::with_capacity(n * dim);
    for _ in 0..n {
        let mut v: Vec<f32> = mean.iter().map(|x| 0.55 * x).collect();
        for (t, topic) in topics.iter().enumerate() {
            let z: f32 = StandardNormal.sample(rng);
            let w = 0.45 * z / (1.0 + t as f32).sqrt();
            v.iter_mut().zip(topic).for_each(|(x, y)| *x += w * y);
        }
        for x in v.iter_mut() {
            let z: f32 = StandardNormal.sample(rng);
            *x += 0.25 * z / (dim as f32).sqrt();
        }
        for &d in &outliers {
            let z: f32 = StandardNormal.sample(rng);
            v[d] += (6.0 + 0.6 * z) / (dim as f32).sqrt();
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        out.extend(v.iter().map(|x| x / norm));
    }
    out
}

/// `n` iid Gaussian vectors.
pub fn iid(rng: &mut ChaCha8Rng, n: usize, dim: usize) -> Vec<f32> {
    (0..n * dim).map(|_| StandardNormal.sample(rng)).collect()
}
