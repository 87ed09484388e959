//! x86-64 kernels, selected at run time by `kernel::dot`.

use std::arch::x86_64::*;

/// AVX2 + FMA: four 8-lane accumulators (32 floats per iteration), then 8, then scalar.
/// Callers must have checked that the CPU has AVX2 and FMA; `kernel::dot` does.
pub fn dot_avx2_fma(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "dot of slices of different lengths");
    assert!(
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
        "dot_avx2_fma needs AVX2 and FMA"
    );
    // SAFETY: the CPU supports AVX2 and FMA (asserted above; the check is a cached
    // load), and both slices have the same length (asserted above).
    unsafe { dot_avx2_fma_unchecked(a, b) }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2_fma_unchecked(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len();
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut i = 0;
    let mut s0 = _mm256_setzero_ps();
    let mut s1 = _mm256_setzero_ps();
    let mut s2 = _mm256_setzero_ps();
    let mut s3 = _mm256_setzero_ps();
    // SAFETY: every load below reads 8 floats at index i..i+8 with
    // i + 8 <= n (the loop bounds), inside both slices of length n; unaligned loads.
    unsafe {
        while i + 32 <= n {
            s0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), s0);
            s1 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i + 8)), _mm256_loadu_ps(pb.add(i + 8)), s1);
            s2 = _mm256_fmadd_ps(
                _mm256_loadu_ps(pa.add(i + 16)),
                _mm256_loadu_ps(pb.add(i + 16)),
                s2,
            );
            s3 = _mm256_fmadd_ps(
                _mm256_loadu_ps(pa.add(i + 24)),
                _mm256_loadu_ps(pb.add(i + 24)),
                s3,
            );
            i += 32;
        }
        while i + 8 <= n {
            s0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), s0);
            i += 8;
        }
    }
    let s = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
    let hi = _mm256_extractf128_ps(s, 1);
    let lo = _mm256_castps256_ps128(s);
    let q = _mm_add_ps(hi, lo);
    let q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    let q = _mm_add_ss(q, _mm_shuffle_ps(q, q, 1));
    let mut sum = _mm_cvtss_f32(q);
    for j in i..n {
        sum += a[j] * b[j];
    }
    sum
}

/// `a · qs[j]` for eight queries at once with AVX2 + FMA: each 8-float chunk
/// of `a` is loaded once and multiplied into eight accumulators (nine loads
/// per eight FMAs, against two loads per FMA one query at a time). For
/// batched exact scans, where `a` is a stored row and `qs` a block of queries.
/// Callers must have checked that the CPU has AVX2 and FMA; `kernel::dot8` does.
pub fn dot8_avx2_fma(a: &[f32], qs: &[&[f32]; 8]) -> [f32; 8] {
    assert!(
        qs.iter().all(|q| q.len() == a.len()),
        "dot8 of slices of different lengths"
    );
    assert!(
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
        "dot8_avx2_fma needs AVX2 and FMA"
    );
    // SAFETY: the CPU supports AVX2 and FMA, and every query is as long as `a` (asserted above).
    unsafe { dot8_avx2_fma_unchecked(a, qs) }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn dot8_avx2_fma_unchecked(a: &[f32], qs: &[&[f32]; 8]) -> [f32; 8] {
    let n = a.len();
    let pa = a.as_ptr();
    let pq: [*const f32; 8] = std::array::from_fn(|j| qs[j].as_ptr());
    let mut acc = [_mm256_setzero_ps(); 8];
    let mut i = 0;
    // SAFETY: every load below reads 8 floats at i..i+8 with i + 8 <= n (the
    // loop bound), inside `a` and inside each query (all of length n); unaligned loads.
    unsafe {
        while i + 8 <= n {
            let x = _mm256_loadu_ps(pa.add(i));
            for j in 0..8 {
                acc[j] = _mm256_fmadd_ps(x, _mm256_loadu_ps(pq[j].add(i)), acc[j]);
            }
            i += 8;
        }
    }
    let mut out = [0f32; 8];
    for j in 0..8 {
        let mut lanes = [0f32; 8];
        // SAFETY: `lanes` is 8 f32 wide, exactly one unaligned 256-bit store.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc[j]) };
        let mut sum =
            ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5])) + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]));
        for t in i..n {
            sum += a[t] * qs[j][t];
        }
        out[j] = sum;
    }
    out
}

/// `(a·b, a·a)` in f64 with AVX2 + FMA (4 lanes: f32 widened to f64).
/// Callers must have checked that the CPU has AVX2 and FMA; `kernel::dot_and_norm_f64` does.
pub fn dot_and_norm_f64_avx2_fma(a: &[f32], b: &[f64]) -> (f64, f64) {
    assert_eq!(a.len(), b.len(), "dot of slices of different lengths");
    assert!(
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
        "dot_and_norm_f64_avx2_fma needs AVX2 and FMA"
    );
    // SAFETY: the CPU supports AVX2 and FMA and the slices have equal lengths (asserted above).
    unsafe { dot_and_norm_f64_unchecked(a, b) }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn dot_and_norm_f64_unchecked(a: &[f32], b: &[f64]) -> (f64, f64) {
    let n = a.len();
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let (mut d0, mut d1) = (_mm256_setzero_pd(), _mm256_setzero_pd());
    let (mut n0, mut n1) = (_mm256_setzero_pd(), _mm256_setzero_pd());
    let mut i = 0;
    // SAFETY: every load below reads a[i..i+8] and b[i..i+8] with i + 8 <= n
    // (the loop bound), inside both slices of length n; unaligned loads.
    unsafe {
        while i + 8 <= n {
            let x0 = _mm256_cvtps_pd(_mm_loadu_ps(pa.add(i)));
            let x1 = _mm256_cvtps_pd(_mm_loadu_ps(pa.add(i + 4)));
            d0 = _mm256_fmadd_pd(x0, _mm256_loadu_pd(pb.add(i)), d0);
            d1 = _mm256_fmadd_pd(x1, _mm256_loadu_pd(pb.add(i + 4)), d1);
            n0 = _mm256_fmadd_pd(x0, x0, n0);
            n1 = _mm256_fmadd_pd(x1, x1, n1);
            i += 8;
        }
    }
    let sum = |v: __m256d| {
        let mut lanes = [0f64; 4];
        // SAFETY: `lanes` is 4 f64 wide, exactly one unaligned 256-bit store.
        unsafe { _mm256_storeu_pd(lanes.as_mut_ptr(), v) };
        (lanes[0] + lanes[1]) + (lanes[2] + lanes[3])
    };
    let (mut d, mut nn) = (sum(_mm256_add_pd(d0, d1)), sum(_mm256_add_pd(n0, n1)));
    for j in i..n {
        let x = f64::from(a[j]);
        d += x * b[j];
        nn += x * x;
    }
    (d, nn)
}

/// `Σ codes[i] · w[i]` with AVX2: 16 codes widened to i16 (`vpmovzxbw`), then
/// multiplied and summed in pairs into i32 lanes (`vpmaddwd`), two accumulators.
/// The sum wraps like the portable path; callers keep it within i32.
/// Callers must have checked that the CPU has AVX2; `kernel::dot_u8_i16` does.
pub fn dot_u8_i16_avx2(codes: &[u8], w: &[i16]) -> i32 {
    assert_eq!(codes.len(), w.len(), "dot of slices of different lengths");
    assert!(is_x86_feature_detected!("avx2"), "dot_u8_i16_avx2 needs AVX2");
    // SAFETY: the CPU supports AVX2 (asserted above; the check is a cached
    // load), and both slices have the same length (asserted above).
    unsafe { dot_u8_i16_unchecked(codes, w) }
}

#[target_feature(enable = "avx2")]
unsafe fn dot_u8_i16_unchecked(codes: &[u8], w: &[i16]) -> i32 {
    let n = codes.len();
    let (pc, pw) = (codes.as_ptr(), w.as_ptr());
    let (mut a0, mut a1) = (_mm256_setzero_si256(), _mm256_setzero_si256());
    let mut i = 0;
    // SAFETY: every load below reads codes[i..i+16] (16 bytes) and
    // w[i..i+16] (32 bytes) with i + 16 <= n (the loop bounds), inside both
    // slices of length n; unaligned loads.
    unsafe {
        while i + 32 <= n {
            let c0 = _mm256_cvtepu8_epi16(_mm_loadu_si128(pc.add(i).cast()));
            let c1 = _mm256_cvtepu8_epi16(_mm_loadu_si128(pc.add(i + 16).cast()));
            a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(c0, _mm256_loadu_si256(pw.add(i).cast())));
            a1 = _mm256_add_epi32(
                a1,
                _mm256_madd_epi16(c1, _mm256_loadu_si256(pw.add(i + 16).cast())),
            );
            i += 32;
        }
        while i + 16 <= n {
            let c0 = _mm256_cvtepu8_epi16(_mm_loadu_si128(pc.add(i).cast()));
            a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(c0, _mm256_loadu_si256(pw.add(i).cast())));
            i += 16;
        }
    }
    let s = _mm256_add_epi32(a0, a1);
    let x = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    let x = _mm_add_epi32(x, _mm_shuffle_epi32(x, 0b01_00_11_10));
    let x = _mm_add_epi32(x, _mm_shuffle_epi32(x, 0b10_11_00_01));
    let mut sum = _mm_cvtsi128_si32(x);
    for j in i..n {
        sum = sum.wrapping_add(i32::from(codes[j]) * i32::from(w[j]));
    }
    sum
}

/// Hint the CPU to fetch the cache line holding `p` (a no-op for correctness).
#[inline(always)]
pub fn prefetch<T>(p: *const T) {
    // SAFETY: prefetch never faults, whatever the address; SSE is baseline on x86-64.
    unsafe { _mm_prefetch(p.cast::<i8>(), _MM_HINT_T0) }
}
