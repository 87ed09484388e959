//! Dot-product kernels. [`dot`] dispatches once, at first use, to the fastest
//! path the CPU supports; every path is tested against [`scalar::dot`].

#[cfg(target_arch = "x86_64")]
pub mod avx512;
pub mod scalar;
#[cfg(target_arch = "x86_64")]
pub mod x86;

use std::sync::OnceLock;

type DotFn = fn(&[f32], &[f32]) -> f32;

/// Whether the AVX2+FMA paths may be used: the CPU has them and
/// `STABSPACE_NO_SIMD` is not set.
#[cfg(target_arch = "x86_64")]
fn simd_available() -> bool {
    std::env::var_os("STABSPACE_NO_SIMD").is_none()
        && is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
}

/// The fastest path this CPU supports (`STABSPACE_NO_SIMD=1` forces the portable one).
fn select() -> (DotFn, &'static str) {
    #[cfg(target_arch = "x86_64")]
    {
        if simd_available() && is_x86_feature_detected!("avx512f") {
            return (avx512::dot_avx512, "avx512f");
        }
        if simd_available() {
            return (x86::dot_avx2_fma, "avx2+fma");
        }
    }
    (scalar::dot_unrolled, "scalar-unrolled")
}

static DOT: OnceLock<(DotFn, &'static str)> = OnceLock::new();

/// The dot product of two equally long f32 slices, on the fastest available path.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    (DOT.get_or_init(select).0)(a, b)
}

/// Name of the path [`dot`] uses, for benchmark reports.
pub fn dot_path() -> &'static str {
    DOT.get_or_init(select).1
}

/// Queries [`dot8`] takes at once.
pub const DOT8_QUERIES: usize = 8;

type Dot8Fn = fn(&[f32], &[&[f32]; DOT8_QUERIES]) -> [f32; DOT8_QUERIES];

fn select_dot8() -> Dot8Fn {
    #[cfg(target_arch = "x86_64")]
    {
        if simd_available() {
            return x86::dot8_avx2_fma;
        }
    }
    dot8_portable
}

/// `a · qs[j]` for eight equally long queries, on the fastest available path.
#[inline]
pub fn dot8(a: &[f32], qs: &[&[f32]; DOT8_QUERIES]) -> [f32; DOT8_QUERIES] {
    static F: OnceLock<Dot8Fn> = OnceLock::new();
    (F.get_or_init(select_dot8))(a, qs)
}

/// The portable version of [`dot8`]: one unrolled dot per query.
pub fn dot8_portable(a: &[f32], qs: &[&[f32]; DOT8_QUERIES]) -> [f32; DOT8_QUERIES] {
    std::array::from_fn(|j| scalar::dot_unrolled(a, qs[j]))
}

/// The dot product accumulated in f64 (for exact re-ranking).
#[inline]
pub fn dot_f64(a: &[f32], b: &[f64]) -> f64 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0f64; 4];
    let (ca, ra) = (a.chunks_exact(4), a.len() / 4 * 4);
    for (x, y) in ca.zip(b.chunks_exact(4)) {
        for i in 0..4 {
            acc[i] += f64::from(x[i]) * y[i];
        }
    }
    let mut s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for i in ra..a.len() {
        s += f64::from(a[i]) * b[i];
    }
    s
}

type DotNormFn = fn(&[f32], &[f64]) -> (f64, f64);

fn select_f64() -> DotNormFn {
    #[cfg(target_arch = "x86_64")]
    {
        if simd_available() {
            return x86::dot_and_norm_f64_avx2_fma;
        }
    }
    dot_and_norm_f64_portable
}

/// `(a·b, a·a)` accumulated in f64 in one pass over `a` (exact re-ranking
/// against a unit query, dividing by the stored vector's own norm), on the
/// fastest available path.
#[inline]
pub fn dot_and_norm_f64(a: &[f32], b: &[f64]) -> (f64, f64) {
    static F: OnceLock<DotNormFn> = OnceLock::new();
    (F.get_or_init(select_f64))(a, b)
}

/// The portable version of [`dot_and_norm_f64`].
pub fn dot_and_norm_f64_portable(a: &[f32], b: &[f64]) -> (f64, f64) {
    debug_assert_eq!(a.len(), b.len());
    let (mut d, mut n) = ([0f64; 4], [0f64; 4]);
    let tail = a.len() / 4 * 4;
    for (x, y) in a.chunks_exact(4).zip(b.chunks_exact(4)) {
        for i in 0..4 {
            let xi = f64::from(x[i]);
            d[i] += xi * y[i];
            n[i] += xi * xi;
        }
    }
    let (mut ds, mut ns) = ((d[0] + d[1]) + (d[2] + d[3]), (n[0] + n[1]) + (n[2] + n[3]));
    for i in tail..a.len() {
        let xi = f64::from(a[i]);
        ds += xi * b[i];
        ns += xi * xi;
    }
    (ds, ns)
}

type DotU8Fn = fn(&[u8], &[i16]) -> i32;

fn select_u8() -> DotU8Fn {
    #[cfg(target_arch = "x86_64")]
    {
        if simd_available() && avx512::available() {
            return avx512::dot_u8_i16_avx512;
        }
        if simd_available() {
            return x86::dot_u8_i16_avx2;
        }
    }
    scalar::dot_u8_i16_unrolled
}

/// `Σ codes[i] · w[i]` in i32 (quantised traversal: a row's codes against a
/// query's weights), on the fastest available path. The sum wraps on overflow;
/// `quantize.rs` scales the weights so that it cannot.
#[inline]
pub fn dot_u8_i16(codes: &[u8], w: &[i16]) -> i32 {
    static F: OnceLock<DotU8Fn> = OnceLock::new();
    (F.get_or_init(select_u8))(codes, w)
}

/// Rows of codes a [`tile_u8_i16`] kernel scores at once.
pub const TILE_ROWS: usize = 4;
/// Queries a [`tile_u8_i16`] kernel scores at once.
pub const TILE_QUERIES: usize = 6;

/// A tile kernel: `out[i][j] = Σ_d codes[i·dim + d] · w[j][d]` for
/// [`TILE_ROWS`] consecutive rows of `dim` codes and [`TILE_QUERIES`]
/// weight vectors (i32, wrapping).
pub type TileFn = fn(&[u8], usize, &[&[i16]; TILE_QUERIES]) -> [[i32; TILE_QUERIES]; TILE_ROWS];

fn select_tile() -> (TileFn, &'static str) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::env::var_os("STABSPACE_NO_SIMD").is_none() && avx512::available() {
            return (avx512::tile_u8_i16_avx512, "avx512-vnni");
        }
    }
    (tile_u8_i16_portable, "dot-u8-i16")
}

static TILE: OnceLock<(TileFn, &'static str)> = OnceLock::new();

/// The tile kernel of the exact batched scan, on the fastest available path
/// (AVX-512 VNNI, else one [`dot_u8_i16`] per row and query).
#[inline]
pub fn tile_u8_i16(codes: &[u8], dim: usize, w: &[&[i16]; TILE_QUERIES]) -> [[i32; TILE_QUERIES]; TILE_ROWS] {
    (TILE.get_or_init(select_tile).0)(codes, dim, w)
}

/// Name of the path [`tile_u8_i16`] uses, for benchmark reports.
pub fn tile_path() -> &'static str {
    TILE.get_or_init(select_tile).1
}

/// Panics unless `codes` is a tile of [`TILE_ROWS`] rows of `dim` codes and
/// every weight vector has `dim` components.
pub(crate) fn check_tile(codes: &[u8], dim: usize, w: &[&[i16]; TILE_QUERIES]) {
    assert_eq!(
        codes.len(),
        TILE_ROWS * dim,
        "a tile is {TILE_ROWS} rows of {dim} codes"
    );
    assert!(w.iter().all(|w| w.len() == dim), "weights of {dim} components");
}

/// The portable version of [`tile_u8_i16`].
pub fn tile_u8_i16_portable(
    codes: &[u8],
    dim: usize,
    w: &[&[i16]; TILE_QUERIES],
) -> [[i32; TILE_QUERIES]; TILE_ROWS] {
    check_tile(codes, dim, w);
    std::array::from_fn(|i| std::array::from_fn(|j| dot_u8_i16(&codes[i * dim..(i + 1) * dim], w[j])))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Bound on the difference of two summation orders: a few ulps of Σ|aᵢbᵢ|.
    fn tolerance(a: &[f32], b: &[f32]) -> f32 {
        let mag: f32 = a.iter().zip(b).map(|(x, y)| (x * y).abs()).sum();
        mag * 1e-5 + 1e-6
    }

    fn check_all_paths(a: &[f32], b: &[f32]) {
        let reference = scalar::dot(a, b);
        let tol = tolerance(a, b);
        let unrolled = scalar::dot_unrolled(a, b);
        assert!(
            (unrolled - reference).abs() <= tol,
            "unrolled {unrolled} vs {reference}"
        );
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            let simd = x86::dot_avx2_fma(a, b);
            assert!(
                (simd - reference).abs() <= tol,
                "avx2 {simd} vs {reference} (len {})",
                a.len()
            );
        }
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx512f") {
            let simd = avx512::dot_avx512(a, b);
            assert!(
                (simd - reference).abs() <= tol,
                "avx512 {simd} vs {reference} (len {})",
                a.len()
            );
        }
        let dispatched = dot(a, b);
        assert!((dispatched - reference).abs() <= tol);
        // Eight queries at once: b, then b with each element scaled and shifted.
        let queries: Vec<Vec<f32>> = (0..DOT8_QUERIES)
            .map(|j| {
                b.iter()
                    .enumerate()
                    .map(|(i, &x)| x * (1.0 + j as f32 / 8.0) - (i % (j + 2)) as f32)
                    .collect()
            })
            .collect();
        let qs: [&[f32]; DOT8_QUERIES] = std::array::from_fn(|j| queries[j].as_slice());
        let mut paths8: Vec<Dot8Fn> = vec![dot8_portable, dot8];
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            paths8.push(x86::dot8_avx2_fma);
        }
        for f in paths8 {
            let got = f(a, &qs);
            for j in 0..DOT8_QUERIES {
                let want = scalar::dot(a, qs[j]);
                let tol = tolerance(a, qs[j]);
                assert!(
                    (got[j] - want).abs() <= tol,
                    "dot8[{j}] {} vs {want} (len {})",
                    got[j],
                    a.len()
                );
            }
        }
        let wide: Vec<f64> = b.iter().map(|&x| f64::from(x)).collect();
        let exact: f64 = a.iter().zip(b).map(|(&x, &y)| f64::from(x) * f64::from(y)).sum();
        assert!((dot_f64(a, &wide) - exact).abs() <= 1e-9 * (1.0 + exact.abs()));
        let exact_n: f64 = a.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
        let mut paths: Vec<DotNormFn> = vec![dot_and_norm_f64_portable, dot_and_norm_f64];
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            paths.push(x86::dot_and_norm_f64_avx2_fma);
        }
        for f in paths {
            let (d, n) = f(a, &wide);
            assert!((d - exact).abs() <= 1e-9 * (1.0 + exact.abs()), "{d} vs {exact}");
            assert!((n - exact_n).abs() <= 1e-9 * (1.0 + exact_n), "{n} vs {exact_n}");
        }
    }

    #[test]
    fn odd_lengths_match_the_scalar_reference() {
        for len in [
            0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 33, 63, 65, 383, 384, 385, 1000,
        ] {
            let a: Vec<f32> = (0..len).map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0).collect();
            let b: Vec<f32> = (0..len).map(|i| ((i * 53 % 97) as f32 - 48.0) / 13.0).collect();
            check_all_paths(&a, &b);
        }
    }

    fn check_u8_paths(codes: &[u8], w: &[i16]) {
        let want = scalar::dot_u8_i16(codes, w);
        assert!(i32::try_from(want).is_ok(), "test inputs stay within i32");
        let mut paths: Vec<DotU8Fn> = vec![scalar::dot_u8_i16_unrolled, dot_u8_i16];
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") {
            paths.push(x86::dot_u8_i16_avx2);
        }
        #[cfg(target_arch = "x86_64")]
        if avx512::available() {
            paths.push(avx512::dot_u8_i16_avx512);
        }
        for f in paths {
            assert_eq!(i64::from(f(codes, w)), want, "len {}", codes.len());
        }
    }

    #[test]
    fn quantised_kernels_match_the_reference_at_the_extremes() {
        for len in [0, 1, 15, 16, 17, 31, 32, 33, 47, 383, 384, 385, 1000] {
            // The largest weights the callers use for this length, at both signs.
            let limit = (i32::MAX as usize / (255 * len.max(1))).min(i16::MAX as usize) as i16;
            let codes = vec![255u8; len];
            check_u8_paths(&codes, &vec![limit; len]);
            check_u8_paths(&codes, &vec![-limit; len]);
            let mixed: Vec<i16> = (0..len)
                .map(|i| if i % 3 == 0 { -limit } else { limit / 2 })
                .collect();
            let some: Vec<u8> = (0..len).map(|i| (i * 37 % 256) as u8).collect();
            check_u8_paths(&some, &mixed);
        }
    }

    proptest! {
        #[test]
        fn random_inputs_match_the_scalar_reference(
            pairs in proptest::collection::vec((-100.0f32..100.0, -100.0f32..100.0), 0..600)
        ) {
            let (a, b): (Vec<f32>, Vec<f32>) = pairs.into_iter().unzip();
            check_all_paths(&a, &b);
        }
    }

    fn check_tile_paths(codes: &[u8], dim: usize, w: &[Vec<i16>]) {
        let ws: [&[i16]; TILE_QUERIES] = std::array::from_fn(|j| w[j].as_slice());
        let want: [[i64; TILE_QUERIES]; TILE_ROWS] = std::array::from_fn(|i| {
            std::array::from_fn(|j| scalar::dot_u8_i16(&codes[i * dim..(i + 1) * dim], ws[j]))
        });
        let mut paths: Vec<(TileFn, &str)> =
            vec![(tile_u8_i16_portable, "portable"), (tile_u8_i16, "dispatched")];
        #[cfg(target_arch = "x86_64")]
        if avx512::available() {
            paths.push((avx512::tile_u8_i16_avx512, "avx512"));
        }
        for (f, name) in paths {
            let got = f(codes, dim, &ws);
            for i in 0..TILE_ROWS {
                for j in 0..TILE_QUERIES {
                    assert_eq!(
                        i64::from(got[i][j]),
                        want[i][j],
                        "{name}: row {i} query {j}, dim {dim}"
                    );
                }
            }
        }
    }

    #[test]
    fn tile_kernels_match_the_reference_at_every_tail_length() {
        for dim in [1, 2, 15, 31, 32, 33, 63, 64, 100, 383, 384, 385, 1000] {
            let limit = (i32::MAX as usize / (255 * dim)).min(i16::MAX as usize) as i16;
            let codes: Vec<u8> = (0..TILE_ROWS * dim).map(|i| (i * 37 % 256) as u8).collect();
            let w: Vec<Vec<i16>> = (0..TILE_QUERIES)
                .map(|j| {
                    (0..dim)
                        .map(|d| match (d + j) % 4 {
                            0 => limit,
                            1 => -limit,
                            2 => (d as i16 % 200) - 100,
                            _ => 0,
                        })
                        .collect()
                })
                .collect();
            check_tile_paths(&codes, dim, &w);
            // The extremes: every code 255 against the largest weights of either sign.
            let full = vec![255u8; TILE_ROWS * dim];
            let w: Vec<Vec<i16>> = (0..TILE_QUERIES)
                .map(|j| vec![if j % 2 == 0 { limit } else { -limit }; dim])
                .collect();
            check_tile_paths(&full, dim, &w);
        }
    }

    proptest! {
        #[test]
        fn tile_kernels_match_the_reference(
            dim in 1usize..200,
            seed in any::<u64>(),
        ) {
            let mut x = seed | 1;
            let mut next = move || { x ^= x << 13; x ^= x >> 7; x ^= x << 17; x };
            let limit = (i32::MAX as usize / (255 * dim)).min(i16::MAX as usize) as i64;
            let codes: Vec<u8> = (0..TILE_ROWS * dim).map(|_| next() as u8).collect();
            let w: Vec<Vec<i16>> = (0..TILE_QUERIES)
                .map(|_| (0..dim).map(|_| ((next() % (2 * limit as u64 + 1)) as i64 - limit) as i16).collect())
                .collect();
            check_tile_paths(&codes, dim, &w);
        }
    }

    proptest! {
        #[test]
        fn quantised_kernels_match_the_reference(
            pairs in proptest::collection::vec((0u8..=255, -14_035i16..=14_035), 0..600)
        ) {
            let (codes, w): (Vec<u8>, Vec<i16>) = pairs.into_iter().unzip();
            check_u8_paths(&codes, &w);
        }
    }
}
