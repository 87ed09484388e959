//! The one pseudo-random step the engine draws from: splitmix64, so that
//! levels, insertion orders and calibration samples follow from a seed alone.

/// splitmix64: a 64-bit mix of `z` advanced by the golden-ratio increment.
pub(crate) fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
