//! AVX-512 VNNI kernels, selected at run time by [`super::tile_u8_i16`].
//!
//! The exact batched scan (`scan.rs`) scores a tile of [`TILE_ROWS`] rows'
//! int8 codes against [`TILE_QUERIES`] queries' i16 weights at once: each
//! 32-code slice of a row is widened to i16 once and multiplied with six
//! queries' weights by `vpdpwssd` (32 multiply-adds into 16 i32 lanes per
//! instruction, twice the multiply-adds of an f32 FMA), 24 accumulators held
//! in registers, then summed across lanes four at a time.

use std::arch::x86_64::*;

use super::{TILE_QUERIES, TILE_ROWS};

/// Whether the CPU has what [`tile_u8_i16_avx512`] needs.
pub fn available() -> bool {
    is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx512vnni")
}

/// `out[i][j] = Σ_d codes[i·dim + d] · w[j][d]` in i32 (wrapping; the callers
/// scale the weights so that no sum overflows) for the [`TILE_ROWS`] rows of
/// `dim` codes in `codes` and the [`TILE_QUERIES`] weight vectors of `w`.
/// Panics unless the CPU has AVX-512 F/BW/VL/VNNI and the lengths agree.
pub fn tile_u8_i16_avx512(
    codes: &[u8],
    dim: usize,
    w: &[&[i16]; TILE_QUERIES],
) -> [[i32; TILE_QUERIES]; TILE_ROWS] {
    super::check_tile(codes, dim, w);
    assert!(available(), "tile_u8_i16_avx512 needs AVX-512 F, BW, VL and VNNI");
    let ptrs: [*const i16; TILE_QUERIES] = std::array::from_fn(|j| w[j].as_ptr());
    // SAFETY: the CPU has the features the function enables (asserted above; the
    // check is a cached load), `codes` holds TILE_ROWS rows of `dim` codes and
    // each weight slice `dim` values (asserted above).
    unsafe { tile_unchecked(codes.as_ptr(), dim, &ptrs) }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn tile_unchecked(
    codes: *const u8,
    dim: usize,
    w: &[*const i16; TILE_QUERIES],
) -> [[i32; TILE_QUERIES]; TILE_ROWS] {
    let mut acc = [[_mm512_setzero_si512(); TILE_QUERIES]; TILE_ROWS];
    let mut d = 0;
    // Each weight vector is loaded just before its four multiply-adds, so
    // that the 24 accumulators, the 4 widened rows and one weight vector
    // (29 of the 32 registers) never spill.
    while d + 32 <= dim {
        // SAFETY: rows are `dim` codes apart and d + 32 <= dim, so each load
        // reads 32 codes of row i.
        let r: [__m512i; TILE_ROWS] = std::array::from_fn(|i| unsafe {
            _mm512_cvtepu8_epi16(_mm256_loadu_si256(codes.add(i * dim + d) as *const __m256i))
        });
        for j in 0..TILE_QUERIES {
            // SAFETY: 32 of the `dim` weights of query j, d + 32 <= dim.
            let wj = unsafe { _mm512_loadu_si512(w[j].add(d) as *const __m512i) };
            for i in 0..TILE_ROWS {
                acc[i][j] = _mm512_dpwssd_epi32(acc[i][j], r[i], wj);
            }
        }
        d += 32;
    }
    if d < dim {
        // The last slice: masked loads read only the dim − d values left
        // (masked-off lanes are not accessed, and are zero).
        let mask: u32 = (1u32 << (dim - d)) - 1;
        // SAFETY: as above, with the mask keeping every access within the row.
        let r: [__m512i; TILE_ROWS] = std::array::from_fn(|i| unsafe {
            _mm512_cvtepu8_epi16(_mm256_maskz_loadu_epi8(mask, codes.add(i * dim + d) as *const i8))
        });
        for j in 0..TILE_QUERIES {
            // SAFETY: as above, the mask keeping the access within the weights.
            let wj = unsafe { _mm512_maskz_loadu_epi16(mask, w[j].add(d)) };
            for i in 0..TILE_ROWS {
                acc[i][j] = _mm512_dpwssd_epi32(acc[i][j], r[i], wj);
            }
        }
    }
    let mut out = [[0i32; TILE_QUERIES]; TILE_ROWS];
    for i in 0..TILE_ROWS {
        let s = hsum4(acc[i][0], acc[i][1], acc[i][2], acc[i][3]);
        let mut four = [0i32; 4];
        // SAFETY: `four` is 16 writable bytes; unaligned store.
        unsafe { _mm_storeu_si128(four.as_mut_ptr() as *mut __m128i, s) };
        out[i][..4].copy_from_slice(&four);
    }
    for i in (0..TILE_ROWS).step_by(2) {
        let s = hsum4(acc[i][4], acc[i][5], acc[i + 1][4], acc[i + 1][5]);
        let mut four = [0i32; 4];
        // SAFETY: as above.
        unsafe { _mm_storeu_si128(four.as_mut_ptr() as *mut __m128i, s) };
        out[i][4..].copy_from_slice(&four[..2]);
        out[i + 1][4..].copy_from_slice(&four[2..]);
    }
    out
}

/// The lane sums of four vectors, `[Σa, Σb, Σc, Σd]`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
fn hsum4(a: __m512i, b: __m512i, c: __m512i, d: __m512i) -> __m128i {
    // Per 128-bit lane: [a0+a2, b0+b2, a1+a3, b1+b3], the same of c and d,
    // then [Σa, Σb, Σc, Σd] of the lane; the four lanes are then added.
    let ab = _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
    let cd = _mm512_add_epi32(_mm512_unpacklo_epi32(c, d), _mm512_unpackhi_epi32(c, d));
    let s = _mm512_add_epi32(_mm512_unpacklo_epi64(ab, cd), _mm512_unpackhi_epi64(ab, cd));
    let h = _mm256_add_epi32(_mm512_castsi512_si256(s), _mm512_extracti64x4_epi64::<1>(s));
    _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256::<1>(h))
}

/// `Σ codes[i] · w[i]` in i32 (wrapping), as [`super::dot_u8_i16`]: 32 codes
/// widened per step and multiplied-added by one `vpdpwssd`, two accumulators.
/// Panics unless the CPU has AVX-512 F/BW/VL/VNNI and the lengths agree.
pub fn dot_u8_i16_avx512(codes: &[u8], w: &[i16]) -> i32 {
    assert_eq!(codes.len(), w.len(), "dot of slices of different lengths");
    assert!(available(), "dot_u8_i16_avx512 needs AVX-512 F, BW, VL and VNNI");
    // SAFETY: the CPU has the features (asserted above; a cached load) and
    // both slices have the same length (asserted above).
    unsafe { dot_u8_i16_unchecked(codes, w) }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn dot_u8_i16_unchecked(codes: &[u8], w: &[i16]) -> i32 {
    let n = codes.len();
    let (pc, pw) = (codes.as_ptr(), w.as_ptr());
    let (mut a0, mut a1) = (_mm512_setzero_si512(), _mm512_setzero_si512());
    let mut i = 0;
    // SAFETY: each unmasked load reads codes[i..i+32] and w[i..i+32] with
    // i + 32 <= n (the loop bounds); the masked loads read only the n − i
    // values left (masked-off lanes are not accessed).
    unsafe {
        while i + 64 <= n {
            let c0 = _mm512_cvtepu8_epi16(_mm256_loadu_si256(pc.add(i).cast()));
            let c1 = _mm512_cvtepu8_epi16(_mm256_loadu_si256(pc.add(i + 32).cast()));
            a0 = _mm512_dpwssd_epi32(a0, c0, _mm512_loadu_si512(pw.add(i).cast()));
            a1 = _mm512_dpwssd_epi32(a1, c1, _mm512_loadu_si512(pw.add(i + 32).cast()));
            i += 64;
        }
        while i < n {
            let left = (n - i).min(32);
            let mask: u32 = if left == 32 { u32::MAX } else { (1u32 << left) - 1 };
            let c = _mm512_cvtepu8_epi16(_mm256_maskz_loadu_epi8(mask, pc.add(i).cast()));
            a0 = _mm512_dpwssd_epi32(a0, c, _mm512_maskz_loadu_epi16(mask, pw.add(i)));
            i += 32;
        }
    }
    _mm512_reduce_add_epi32(_mm512_add_epi32(a0, a1))
}

/// The f32 dot product, as [`super::dot`]: four 16-lane FMA accumulators,
/// the tail by a masked load. Panics unless the CPU has AVX-512 F and the
/// lengths agree.
pub fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "dot of slices of different lengths");
    assert!(is_x86_feature_detected!("avx512f"), "dot_avx512 needs AVX-512 F");
    // SAFETY: the CPU has AVX-512 F (asserted above; a cached load) and both
    // slices have the same length (asserted above).
    unsafe { dot_avx512_unchecked(a, b) }
}

#[target_feature(enable = "avx512f")]
unsafe fn dot_avx512_unchecked(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len();
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut s = [_mm512_setzero_ps(); 4];
    let mut i = 0;
    // SAFETY: each unmasked load reads 16 floats at i..i+16 with i + 16 <= n
    // (the loop bounds); the masked loads read only the n − i floats left.
    unsafe {
        while i + 64 <= n {
            for (j, acc) in s.iter_mut().enumerate() {
                let o = i + 16 * j;
                *acc = _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(o)), _mm512_loadu_ps(pb.add(o)), *acc);
            }
            i += 64;
        }
        while i < n {
            let left = (n - i).min(16);
            let mask: u16 = if left == 16 { u16::MAX } else { (1u16 << left) - 1 };
            s[0] = _mm512_fmadd_ps(
                _mm512_maskz_loadu_ps(mask, pa.add(i)),
                _mm512_maskz_loadu_ps(mask, pb.add(i)),
                s[0],
            );
            i += 16;
        }
    }
    _mm512_reduce_add_ps(_mm512_add_ps(
        _mm512_add_ps(s[0], s[1]),
        _mm512_add_ps(s[2], s[3]),
    ))
}
