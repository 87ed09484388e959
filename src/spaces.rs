//! Feature space names: which vectors may meet. Every stored vector records
//! the space its encoder writes into; a name says which encoders write into
//! it (v1), or which encoder family and horizon (v2 signatures, v3
//! multi-scale signatures). Names only: the encoders are in
//! [`crate::encoders`], and errors describe spaces from here.

/// The feature space of the documents' v1 encoders (`num-stab-core-v1`,
/// `num-regime-core-v1`, `num-scenario-core-v1`) and of the issuer profiles
/// (`joint-profile-core-v1`): the space the design documents average together.
pub const V1_SPACE: &str = "stab-v1";

/// The v2 (fragility signature) space of horizon `h`.
pub fn v2_space(h: usize) -> String {
    format!("stab-v2-signature-h{h}")
}

/// The horizon a v2 space name was made with.
pub fn v2_horizon(space: &str) -> Option<usize> {
    space.strip_prefix("stab-v2-signature-h")?.parse().ok()
}

/// The v3 (multi-scale signature) space of horizon `h`.
pub fn v3_space(h: usize) -> String {
    format!("stab-v3-multiscale-h{h}")
}

/// The horizon a v3 space name was made with.
pub fn v3_horizon(space: &str) -> Option<usize> {
    space.strip_prefix("stab-v3-multiscale-h")?.parse().ok()
}

/// A feature space with the encoders that write into it, for messages.
pub fn describe_space(space: &str) -> String {
    if space == V1_SPACE {
        format!("{space} (num-stab-core-v1 / num-scenario-core-v1 / joint-profile-core-v1)")
    } else if let Some(h) = v2_horizon(space) {
        format!("{space} (num-stab-core-v2 / num-scenario-core-v2, --horizon-days {h})")
    } else if let Some(h) = v3_horizon(space) {
        format!("{space} (num-stab-core-v3 / num-scenario-core-v3, --horizon-days {h})")
    } else {
        space.to_string()
    }
}
