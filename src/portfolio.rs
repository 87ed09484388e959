//! Portfolio STAB vectors: z_P = Σ wᵢ·zᵢ / Σ |wᵢ| over the portfolio's
//! instruments that have a STAB state, with the weights of `target_portfolios`.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde_json::Value as Json;

use crate::error::{Error, Result};
use crate::vector::{self, DIM};

/// Target weights of one portfolio on one date, by instrument id.
#[derive(Clone, Debug, PartialEq)]
pub struct Weights {
    pub portfolio_id: String,
    pub as_of_date: NaiveDate,
    pub weights: BTreeMap<String, f64>,
}

impl Weights {
    /// Parse `target_positions`: `{"weights": {"<instrument_id>": <number>, …}, …}`.
    pub fn parse(portfolio_id: &str, as_of_date: NaiveDate, text: &str) -> Result<Weights> {
        let bad = |why: String| {
            Error::Invalid(format!(
                "target_portfolios row ({portfolio_id}, {as_of_date}): target_positions {why}"
            ))
        };
        let json: Json = serde_json::from_str(text).map_err(|e| bad(format!("is not JSON: {e}")))?;
        let weights = match json.get("weights") {
            Some(Json::Object(w)) => w,
            Some(other) => return Err(bad(format!("has \"weights\" = {other}, expected an object"))),
            None => return Err(bad("has no \"weights\" object".into())),
        };
        let weights = weights
            .iter()
            .map(|(id, w)| match w.as_f64() {
                Some(x) if x.is_finite() => Ok((id.clone(), x)),
                _ => Err(bad(format!(
                    "has weight {w} for {id:?}, expected a finite number"
                ))),
            })
            .collect::<Result<_>>()?;
        Ok(Weights {
            portfolio_id: portfolio_id.to_string(),
            as_of_date,
            weights,
        })
    }
}

/// A portfolio's STAB vector and what went into it.
#[derive(Clone, Debug, PartialEq)]
pub struct PortfolioVector {
    pub vector: Vec<f32>,
    /// L2 norm of `vector` (the design documents' `portfolio_ctx_norm`).
    pub ctx_norm: f64,
    /// Instruments with a STAB state (`num_instruments_used`).
    pub used: usize,
    /// Σ |wᵢ| over the holdings with a state / Σ |wᵢ| over all holdings: 1
    /// when every holding has a state.
    pub weight_covered: f64,
    /// Holdings without a state, by id.
    pub missing: Vec<String>,
}

impl PortfolioVector {
    /// "no STAB state for 1 of 2 holdings (NVDA); weight covered 0.50", or
    /// `None` when every holding has one.
    pub fn coverage_note(&self) -> Option<String> {
        if self.missing.is_empty() {
            return None;
        }
        let n = self.missing.len();
        let shown: Vec<&str> = self.missing.iter().take(8).map(String::as_str).collect();
        let more = if n > 8 {
            format!(", … {} more", n - 8)
        } else {
            String::new()
        };
        Some(format!(
            "no STAB state for {n} of {} holdings ({}{more}); weight covered {:.4}",
            n + self.used,
            shown.join(", "),
            self.weight_covered
        ))
    }
}

/// Default of `--min-coverage`: a portfolio vector must stand for at least
/// 90% of the portfolio's absolute weight. Below that the vector describes a
/// different portfolio (a tenth of the book unseen), so the day is skipped.
pub const DEFAULT_MIN_COVERAGE: f64 = 0.9;

/// Why a portfolio vector cannot be formed on a date.
#[derive(Clone, Debug, PartialEq)]
pub enum NoVector {
    /// None of the portfolio's instruments has a state.
    NoStates { holdings: usize },
    /// The weights of the instruments with states sum to 0 in absolute value.
    ZeroWeights { used: usize },
    /// The weighted sum cannot be ranked by cosine (all zeros: every holding
    /// with a state has constant prices, say).
    Unusable { used: usize, why: vector::Unusable },
    /// The holdings with a state carry less than the minimum share of the
    /// absolute weight.
    LowCoverage {
        covered: f64,
        min: f64,
        missing: Vec<String>,
    },
}

impl std::fmt::Display for NoVector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoVector::NoStates { holdings } => {
                write!(f, "none of its {holdings} instruments has a STAB state")
            }
            NoVector::ZeroWeights { used } => write!(
                f,
                "the weights of its {used} instruments with STAB states sum to 0 in absolute value"
            ),
            NoVector::Unusable { used, why } => write!(
                f,
                "its STAB vector (from {used} instruments with states) cannot be ranked: {}",
                why.to_string().trim_start_matches("its vector ")
            ),
            NoVector::LowCoverage {
                covered,
                min,
                missing,
            } => {
                let shown: Vec<&str> = missing.iter().take(8).map(String::as_str).collect();
                let more = if missing.len() > 8 {
                    format!(", … {} more", missing.len() - 8)
                } else {
                    String::new()
                };
                write!(
                    f,
                    "the holdings with a STAB state carry {covered:.4} of its absolute weight, below \
                     --min-coverage {min}; without a state: {}{more}",
                    shown.join(", ")
                )
            }
        }
    }
}

/// Σ wᵢ·zᵢ / Σ |wᵢ| over the instruments for which `state` gives a vector.
pub fn portfolio_vector<'a>(
    weights: &BTreeMap<String, f64>,
    state: impl Fn(&str) -> Option<&'a [f32]>,
) -> Result<PortfolioVector, NoVector> {
    let mut acc = vec![0f64; DIM];
    let (mut abs, mut total, mut used) = (0f64, 0f64, 0usize);
    let mut missing = Vec::new();
    for (id, &w) in weights {
        total += w.abs();
        let Some(z) = state(id) else {
            missing.push(id.clone());
            continue;
        };
        used += 1;
        abs += w.abs();
        for (a, &x) in acc.iter_mut().zip(z) {
            *a += w * f64::from(x);
        }
    }
    if used == 0 {
        return Err(NoVector::NoStates {
            holdings: weights.len(),
        });
    }
    if abs == 0.0 {
        return Err(NoVector::ZeroWeights { used });
    }
    let vector: Vec<f32> = acc.into_iter().map(|a| (a / abs) as f32).collect();
    if let Some(why) = vector::unusable(&vector) {
        return Err(NoVector::Unusable { used, why });
    }
    Ok(PortfolioVector {
        ctx_norm: vector::l2_norm(&vector),
        vector,
        used,
        weight_covered: abs / total,
        missing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_sum_over_instruments_with_states_divided_by_absolute_weights() {
        let a: Vec<f32> = vec![1.0; DIM];
        let b: Vec<f32> = vec![2.0; DIM];
        let w = BTreeMap::from([
            ("A".to_string(), 0.5),
            ("B".to_string(), -0.125),
            ("C".to_string(), 0.25),
        ]);
        let pv = portfolio_vector(&w, |id| match id {
            "A" => Some(a.as_slice()),
            "B" => Some(b.as_slice()),
            _ => None,
        })
        .unwrap();
        // (0.5·1 − 0.125·2) / (0.5 + 0.125) = 0.4: C has no state, so it is not in the denominator.
        assert_eq!(pv.used, 2);
        assert!(pv.vector.iter().all(|&x| (x - 0.4).abs() < 1e-6));
        assert!((pv.weight_covered - 0.625 / 0.875).abs() < 1e-12);
        let w2 = BTreeMap::from([("A".to_string(), 0.5), ("B".to_string(), 0.25)]);
        let pv = portfolio_vector(&w2, |id| (id == "A").then_some(a.as_slice())).unwrap();
        assert_eq!(pv.vector[0], 1.0);
        // B (0.25 of 0.75) has no state: two thirds of the weight is covered.
        assert!((pv.weight_covered - 0.5 / 0.75).abs() < 1e-12);
        assert_eq!(pv.missing, vec!["B".to_string()]);
        assert!(pv.coverage_note().unwrap().contains("1 of 2 holdings (B)"));
        assert!((pv.ctx_norm - (DIM as f64).sqrt()).abs() < 1e-9);
        assert_eq!(
            portfolio_vector(&w2, |_| None),
            Err(NoVector::NoStates { holdings: 2 })
        );
        // Opposite weights on one state: the sum has no direction.
        let flat = BTreeMap::from([("A".to_string(), 0.5), ("A2".to_string(), -0.5)]);
        assert!(matches!(
            portfolio_vector(&flat, |_| Some(a.as_slice())),
            Err(NoVector::Unusable {
                used: 2,
                why: vector::Unusable::Zero
            })
        ));
        let zero = BTreeMap::from([("A".to_string(), 0.0)]);
        assert_eq!(
            portfolio_vector(&zero, |_| Some(a.as_slice())),
            Err(NoVector::ZeroWeights { used: 1 })
        );
    }

    #[test]
    fn malformed_weights_are_named() {
        let d = NaiveDate::from_ymd_opt(2025, 1, 31).unwrap();
        assert!(Weights::parse("P", d, r#"{"weights": {"A": 0.5}}"#).is_ok());
        for bad in [
            "{",
            r#"{"w": {}}"#,
            r#"{"weights": [1]}"#,
            r#"{"weights": {"A": "x"}}"#,
        ] {
            let e = Weights::parse("P1", d, bad).unwrap_err().to_string();
            assert!(e.contains("P1") && e.contains("2025-01-31"), "{bad}: {e}");
        }
    }
}
