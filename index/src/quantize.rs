//! Quantised vectors for graph traversal: every normalised vector stored
//! again as one byte per component, so that a hop of the HNSW beam reads 384
//! bytes per neighbour instead of 1,536. The beam ranks candidates by the
//! quantised dot product; the pool it ends with is re-ranked exactly in f64
//! from the f32 vectors, so answers keep exact cosines.
//!
//! Scheme: an affine map per dimension, `x[d] ≈ offset[d] + scale[d] · code[d]`
//! with `code` in 0..=255 (`PerDimension`: offset and scale from the
//! dimension's own minimum and maximum over the rows; `Global`: one symmetric
//! range for every dimension). Both are stored alike, so a reader does not
//! care which fit made them. For a query `q` the score of a row is
//! `Σ q[d]·offset[d] + Σ (q[d]·scale[d])·code[d]`; the first sum is the same
//! for every row, so the beam ranks by the second, with `q[d]·scale[d]`
//! rounded to i16 and summed in i32 (`kernel::dot_u8_i16`). The measurements
//! behind the choice of scheme are in `FORMAT.md`, "Quantised vectors".
//!
//! Section layout (`QUANTIZED`, optional): a 64-byte head of u32 words
//! (`scheme`, `dim`, `count`, then zeros), `f32[dim]` offsets, `f32[dim]`
//! scales, zero padding to a multiple of 64 bytes, then `u8[count × dim]` codes.

use rayon::prelude::*;

/// How the quantised copy of the vectors is fitted, or whether there is one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Quantization {
    /// No quantised copy: graph searches read the f32 vectors.
    None,
    /// Per dimension, its own range (minimum to maximum over the rows).
    #[default]
    PerDimension,
    /// One symmetric range, ±max |x|, shared by every dimension.
    Global,
}

impl Quantization {
    /// The name in provenance and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Quantization::None => "none",
            Quantization::PerDimension => "int8-per-dimension",
            Quantization::Global => "int8-global",
        }
    }

    /// Parse [`Quantization::name`] (also `per-dimension`, `global`).
    pub fn parse(s: &str) -> Option<Quantization> {
        match s {
            "none" => Some(Quantization::None),
            "int8-per-dimension" | "per-dimension" => Some(Quantization::PerDimension),
            "int8-global" | "global" => Some(Quantization::Global),
            _ => None,
        }
    }

    fn scheme(self) -> u32 {
        match self {
            Quantization::None => 0,
            Quantization::PerDimension => SCHEME_PER_DIMENSION,
            Quantization::Global => SCHEME_GLOBAL,
        }
    }
}

/// Scheme word of a per-dimension fit.
pub const SCHEME_PER_DIMENSION: u32 = 1;
/// Scheme word of a global fit.
pub const SCHEME_GLOBAL: u32 = 2;
/// Bytes of the section's head.
const HEAD: usize = 64;

/// Largest code.
const CODE_MAX: f32 = 255.0;

/// Offsets and scales of a fit, and the codes of every row.
#[derive(Clone, Debug)]
pub(crate) struct Quantized {
    scheme: u32,
    dim: usize,
    offset: Vec<f32>,
    scale: Vec<f32>,
    codes: Vec<u8>,
}

impl Quantized {
    /// Fit `how` to the normalised `vectors` and encode them (`None` for
    /// [`Quantization::None`] or no rows).
    pub fn fit(vectors: &[f32], dim: usize, how: Quantization) -> Option<Quantized> {
        if how == Quantization::None || vectors.is_empty() {
            return None;
        }
        let (mut lo, mut hi) = (vec![f32::INFINITY; dim], vec![f32::NEG_INFINITY; dim]);
        for row in vectors.chunks_exact(dim) {
            for ((l, h), &x) in lo.iter_mut().zip(hi.iter_mut()).zip(row) {
                *l = l.min(x);
                *h = h.max(x);
            }
        }
        if how == Quantization::Global {
            let a = lo.iter().chain(&hi).fold(0f32, |a, &x| a.max(x.abs()));
            lo.iter_mut().for_each(|l| *l = -a);
            hi.iter_mut().for_each(|h| *h = a);
        }
        let scale: Vec<f32> = lo.iter().zip(&hi).map(|(l, h)| (h - l) / CODE_MAX).collect();
        let mut q = Quantized {
            scheme: how.scheme(),
            dim,
            offset: lo,
            scale,
            codes: vec![0; vectors.len()],
        };
        let (offset, scale) = (&q.offset, &q.scale);
        q.codes
            .par_chunks_mut(dim * 1024)
            .zip(vectors.par_chunks(dim * 1024))
            .for_each(|(codes, rows)| {
                for (c, (&x, d)) in codes.iter_mut().zip(rows.iter().zip((0..dim).cycle())) {
                    *c = encode(x, offset[d], scale[d]);
                }
            });
        Some(q)
    }

    /// The fit that made these codes.
    pub fn how(&self) -> Quantization {
        if self.scheme == SCHEME_GLOBAL {
            Quantization::Global
        } else {
            Quantization::PerDimension
        }
    }

    /// A view for searching.
    pub fn view(&self) -> QuantizedView<'_> {
        QuantizedView {
            dim: self.dim,
            scale: &self.scale,
            codes: &self.codes,
        }
    }

    /// The `QUANTIZED` section's bytes.
    pub fn section(&self) -> Vec<u8> {
        let params = padded(8 * self.dim);
        let mut out = Vec::with_capacity(HEAD + params + self.codes.len());
        let count = (self.codes.len() / self.dim) as u32;
        for w in [self.scheme, self.dim as u32, count] {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out.resize(HEAD, 0);
        out.extend_from_slice(bytemuck::cast_slice(&self.offset));
        out.extend_from_slice(bytemuck::cast_slice(&self.scale));
        out.resize(HEAD + params, 0);
        out.extend_from_slice(&self.codes);
        out
    }
}

/// The code of `x` under (`offset`, `scale`), clamped to 0..=255.
#[inline]
fn encode(x: f32, offset: f32, scale: f32) -> u8 {
    if scale > 0.0 {
        ((x - offset) / scale).round().clamp(0.0, CODE_MAX) as u8
    } else {
        0
    }
}

fn padded(n: usize) -> usize {
    n.div_ceil(64) * 64
}

/// The quantised vectors of a partition, borrowed for searching.
#[derive(Clone, Copy)]
pub(crate) struct QuantizedView<'a> {
    pub dim: usize,
    pub scale: &'a [f32],
    pub codes: &'a [u8],
}

/// What parsing a `QUANTIZED` section found.
pub(crate) enum Parsed {
    /// The scheme, and byte ranges (within the section) of the scales and codes
    /// (the offsets, `HEAD..HEAD + 4·dim`, only matter to decoding, which searches never do).
    Known {
        scheme: Quantization,
        scale: std::ops::Range<usize>,
        codes: std::ops::Range<usize>,
    },
    /// A scheme this build does not know: the section is skipped, as
    /// optional sections are.
    UnknownScheme,
}

/// Check a `QUANTIZED` section's head and length against the partition's
/// `dim` and `count` (constant work; the codes themselves need no checking:
/// every byte is a valid code, and `verify` checks the CRC).
pub(crate) fn parse(bytes: &[u8], dim: usize, count: usize) -> Result<Parsed, String> {
    if bytes.len() < HEAD {
        return Err(format!(
            "quantised section has {} bytes, shorter than its head",
            bytes.len()
        ));
    }
    let word =
        |i: usize| u32::from_le_bytes([bytes[4 * i], bytes[4 * i + 1], bytes[4 * i + 2], bytes[4 * i + 3]]);
    let scheme = word(0);
    if scheme != SCHEME_PER_DIMENSION && scheme != SCHEME_GLOBAL {
        return Ok(Parsed::UnknownScheme);
    }
    if word(1) as usize != dim || word(2) as usize != count {
        return Err(format!(
            "quantised section holds {} rows of {} dimensions, the partition {count} of {dim}",
            word(2),
            word(1)
        ));
    }
    let params = padded(8 * dim);
    let expected = (HEAD + params) as u64 + count as u64 * dim as u64;
    if bytes.len() as u64 != expected {
        return Err(format!(
            "quantised section has {} bytes, expected {expected}",
            bytes.len()
        ));
    }
    Ok(Parsed::Known {
        scheme: if scheme == SCHEME_GLOBAL {
            Quantization::Global
        } else {
            Quantization::PerDimension
        },
        scale: HEAD + 4 * dim..HEAD + 8 * dim,
        codes: HEAD + params..bytes.len(),
    })
}

impl QuantizedView<'_> {
    /// The codes of one row.
    #[inline]
    pub fn row(&self, row: u32) -> &[u8] {
        &self.codes[row as usize * self.dim..(row as usize + 1) * self.dim]
    }

    /// The query's weights `q[d]·scale[d]`, as i16 scaled so that no sum of
    /// `dim` products with codes up to 255 overflows an i32. A query whose
    /// weights are all zero or not finite (a damaged section) gets all-zero
    /// weights: every row scores alike, and nothing fails.
    pub fn weights(&self, q: &[f32]) -> Vec<i16> {
        let w: Vec<f32> = q.iter().zip(self.scale).map(|(x, s)| x * s).collect();
        let top = w.iter().fold(0f32, |a, x| a.max(x.abs()));
        let limit = (i32::MAX as usize / (255 * self.dim.max(1))).min(i16::MAX as usize) as f32;
        if !(top.is_finite() && top > 0.0) {
            return vec![0; w.len()];
        }
        let f = limit / top;
        w.iter()
            .map(|x| (x * f).round().clamp(-limit, limit) as i16)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: usize, dim: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity(n * dim);
        for i in 0..n {
            let v: Vec<f32> = (0..dim)
                .map(|d| (((i * 7919 + d * 104_729) % 1000) as f32 / 500.0 - 1.0) * (1.0 + d as f32 / 4.0))
                .collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            out.extend(v.iter().map(|x| x / norm));
        }
        out
    }

    #[test]
    fn decoded_components_are_within_half_a_step() {
        let dim = 16;
        let v = rows(500, dim);
        for how in [Quantization::PerDimension, Quantization::Global] {
            let q = Quantized::fit(&v, dim, how).unwrap();
            let view = q.view();
            for (r, row) in v.chunks_exact(dim).enumerate() {
                for (d, &x) in row.iter().enumerate() {
                    let back = q.offset[d] + q.scale[d] * f32::from(view.row(r as u32)[d]);
                    assert!(
                        (back - x).abs() <= q.scale[d] * 0.5 + 1e-6,
                        "{how:?} row {r} dim {d}: {x} decoded as {back}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_section_parses_back_and_rejects_other_shapes() {
        let dim = 10;
        let v = rows(30, dim);
        let q = Quantized::fit(&v, dim, Quantization::PerDimension).unwrap();
        let bytes = q.section();
        let Ok(Parsed::Known { scale, codes, .. }) = parse(&bytes, dim, 30) else {
            panic!("a fresh section parses")
        };
        let floats = |b: &[u8]| -> Vec<f32> {
            b.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        };
        assert_eq!(floats(&bytes[HEAD..HEAD + 4 * dim]), q.offset);
        assert_eq!(floats(&bytes[scale]), q.scale);
        assert_eq!(&bytes[codes], &q.codes[..]);
        assert!(parse(&bytes, dim, 31).is_err());
        assert!(parse(&bytes, dim + 1, 30).is_err());
        assert!(parse(&bytes[..bytes.len() - 1], dim, 30).is_err());
        assert!(parse(&bytes[..20], dim, 30).is_err());
        let mut future = bytes.clone();
        future[0] = 9;
        assert!(matches!(parse(&future, dim, 30), Ok(Parsed::UnknownScheme)));
    }

    #[test]
    fn weights_never_overflow_and_degenerate_queries_score_zero() {
        let dim = 384;
        let v = rows(200, dim);
        let q = Quantized::fit(&v, dim, Quantization::PerDimension).unwrap();
        let w = q.view().weights(&v[..dim]);
        let worst: i64 = w.iter().map(|&x| i64::from(x).abs() * 255).sum();
        assert!(worst <= i64::from(i32::MAX));
        assert!(q.view().weights(&vec![f32::NAN; dim]).iter().all(|&x| x == 0));
        assert!(q.view().weights(&vec![0.0; dim]).iter().all(|&x| x == 0));
    }
}
