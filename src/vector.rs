//! The stored vector format: 384 little-endian IEEE-754 float32 values, 1536 bytes.

use crate::error::{Error, Result};

/// Dimension of every vector in the STAB spaces.
pub const DIM: usize = 384;
/// Size in bytes of one stored vector.
pub const VECTOR_BYTES: usize = DIM * 4;

/// Serialise a vector as little-endian float32 bytes.
pub fn to_bytes(v: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() * 4);
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

/// Parse a stored vector; `what` names the row in the error.
pub fn from_bytes(bytes: &[u8], what: &str) -> Result<Vec<f32>> {
    if bytes.len() != VECTOR_BYTES {
        return Err(Error::Invalid(format!(
            "{what}: stored vector has {} bytes, expected {VECTOR_BYTES}",
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// Why a vector cannot be ranked by cosine.
#[derive(Clone, Debug, PartialEq)]
pub enum Unusable {
    /// A stored blob of another length (written by another tool).
    WrongLength(usize),
    NonFinite {
        position: usize,
        value: f32,
    },
    /// No direction: constant prices over the window, say.
    Zero,
}

impl std::fmt::Display for Unusable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unusable::WrongLength(n) => write!(f, "its stored vector has {n} bytes, expected {VECTOR_BYTES}"),
            Unusable::NonFinite { position, value } => {
                write!(
                    f,
                    "its vector has a non-finite value ({value}) at position {position}"
                )
            }
            Unusable::Zero => write!(
                f,
                "its vector is all zeros, so it has no direction to rank by cosine"
            ),
        }
    }
}

/// Why `v` cannot be ranked by cosine (`None`: it can).
pub fn unusable(v: &[f32]) -> Option<Unusable> {
    if let Some(position) = v.iter().position(|x| !x.is_finite()) {
        return Some(Unusable::NonFinite {
            position,
            value: v[position],
        });
    }
    v.iter().all(|&x| x == 0.0).then_some(Unusable::Zero)
}

/// A stored vector whose values are all finite (all zeros allowed: a real
/// state without direction, to be averaged), or why not.
pub fn finite(bytes: &[u8]) -> std::result::Result<Vec<f32>, Unusable> {
    if bytes.len() != VECTOR_BYTES {
        return Err(Unusable::WrongLength(bytes.len()));
    }
    let v: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    match unusable(&v) {
        Some(why @ Unusable::NonFinite { .. }) => Err(why),
        _ => Ok(v),
    }
}

/// A stored vector that can be ranked by cosine, or why not, for per-item skips.
pub fn usable(bytes: &[u8]) -> std::result::Result<Vec<f32>, Unusable> {
    let v = finite(bytes)?;
    match unusable(&v) {
        Some(why) => Err(why),
        None => Ok(v),
    }
}

/// Euclidean (L2) norm, accumulated in f64.
pub fn l2_norm(v: &[f32]) -> f64 {
    v.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>().sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_is_little_endian() {
        let mut v = vec![0.0f32; DIM];
        v[0] = 1.0;
        v[383] = -2.5;
        let b = to_bytes(&v);
        assert_eq!(b.len(), VECTOR_BYTES);
        assert_eq!(&b[0..4], &[0x00, 0x00, 0x80, 0x3f]);
        assert_eq!(from_bytes(&b, "t").unwrap(), v);
        assert!(from_bytes(&b[..100], "t").is_err());
    }

    #[test]
    fn unusable_vectors_say_why() {
        let mut v = vec![0.0f32; DIM];
        assert_eq!(usable(&to_bytes(&v)), Err(Unusable::Zero));
        assert_eq!(finite(&to_bytes(&v)), Ok(v.clone()));
        v[7] = f32::NAN;
        let e = usable(&to_bytes(&v)).unwrap_err();
        assert!(e.to_string().contains("position 7"), "{e}");
        v[7] = 0.5;
        assert_eq!(usable(&to_bytes(&v)).unwrap(), v);
        let e = usable(&to_bytes(&v)[..1532]).unwrap_err();
        assert!(e.to_string().contains("1532 bytes"), "{e}");
    }
}
