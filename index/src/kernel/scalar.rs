//! Portable kernels.

/// The reference: one accumulator, in order.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "dot of slices of different lengths");
    let mut s = 0.0f32;
    for (x, y) in a.iter().zip(b) {
        s += x * y;
    }
    s
}

/// Eight independent accumulators over `chunks_exact(8)`, which the compiler
/// vectorises with whatever the build target allows (SSE2 by default).
pub fn dot_unrolled(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "dot of slices of different lengths");
    let mut acc = [0f32; 8];
    let ca = a.chunks_exact(8);
    let cb = b.chunks_exact(8);
    let (ta, tb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (x, y) in ta.iter().zip(tb) {
        s += x * y;
    }
    s
}

/// The reference for quantised traversal: `Σ codes[i] · w[i]`, in order, in i64
/// (the callers' weights keep the sum within i32; see `quantize.rs`).
pub fn dot_u8_i16(codes: &[u8], w: &[i16]) -> i64 {
    assert_eq!(codes.len(), w.len(), "dot of slices of different lengths");
    codes
        .iter()
        .zip(w)
        .map(|(&c, &x)| i64::from(c) * i64::from(x))
        .sum()
}

/// Eight i32 accumulators over `chunks_exact(8)`, which the compiler
/// vectorises with whatever the build target allows.
pub fn dot_u8_i16_unrolled(codes: &[u8], w: &[i16]) -> i32 {
    assert_eq!(codes.len(), w.len(), "dot of slices of different lengths");
    let mut acc = [0i32; 8];
    let (cc, cw) = (codes.chunks_exact(8), w.chunks_exact(8));
    let (tc, tw) = (cc.remainder(), cw.remainder());
    for (c, x) in cc.zip(cw) {
        for i in 0..8 {
            acc[i] = acc[i].wrapping_add(i32::from(c[i]) * i32::from(x[i]));
        }
    }
    let mut s = acc.iter().fold(0i32, |a, &x| a.wrapping_add(x));
    for (&c, &x) in tc.iter().zip(tw) {
        s = s.wrapping_add(i32::from(c) * i32::from(x));
    }
    s
}
