//! The search breadth: how wide a graph search looks, chosen in one place for
//! the CLI (`--ef`, `--recall`, `--exact`), the server (`ef`, `recall`,
//! `exact`) and Python (`ef=`, `recall=`, `exact=`).
//!
//! A breadth given (`ef`) is used as it is; otherwise the partition's
//! build-time recall calibration gives the smallest breadth that reached the
//! recall asked ([`DEFAULT_RECALL`] unless given). A breadth is at least `k`,
//! and one that covers every row, a flat partition (no graph) or `exact`
//! scans exactly.

use stabspace_index::Partition;

use crate::error::Result;

/// The recall@10 a graph search aims at when neither `ef` nor `recall` is given.
pub const DEFAULT_RECALL: f64 = 0.95;

/// Search breadth used when `--ef` is not given and the partition records no
/// recall calibration (format version 1): recall@10 0.91 on 100k vectors made
/// from real daily returns, 0.98 on the synthetic generator (README,
/// Benchmarks). Calibrated partitions use the breadth of `--recall`.
pub const DEFAULT_EF: usize = 128;

/// A value of a search request refused: the field, and why. The server
/// reports the two apart; Python and messages join them ([`std::fmt::Display`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    pub field: &'static str,
    pub message: String,
    /// Whether the message reads on its own ("give ef or recall, not
    /// both"), not after the field's name ("must be at least 1, got 0").
    standalone: bool,
}

impl Refused {
    fn value(field: &'static str, message: String) -> Refused {
        Refused {
            field,
            message,
            standalone: false,
        }
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.standalone {
            f.write_str(&self.message)
        } else {
            write!(f, "{} {}", self.field, self.message)
        }
    }
}

/// A count of 1 or more (`k`, `top_k`, `ef`), at most `max` when a limit is set.
pub fn positive(field: &'static str, v: i64, max: Option<usize>) -> std::result::Result<usize, Refused> {
    if v < 1 {
        return Err(Refused::value(field, format!("must be at least 1, got {v}")));
    }
    let v = usize::try_from(v).unwrap_or(usize::MAX);
    match max {
        Some(max) if v > max => Err(Refused::value(
            field,
            format!("{v} is above the server's limit of {max}"),
        )),
        _ => Ok(v),
    }
}

/// A target recall: in (0, 1].
pub fn recall(v: f64) -> std::result::Result<f64, Refused> {
    if v > 0.0 && v <= 1.0 {
        Ok(v)
    } else {
        Err(Refused::value(
            "recall",
            format!("must be between 0 (exclusive) and 1, got {v}"),
        ))
    }
}

/// How a search chooses its breadth: a breadth given, a recall to meet, or
/// an exact scan (none of them: [`DEFAULT_RECALL`]).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Breadth {
    pub ef: Option<usize>,
    pub recall: Option<f64>,
    pub exact: bool,
}

impl Breadth {
    /// The breadth asked for by raw values (JSON numbers, Python ints):
    /// `ef` at least 1 (and at most `max_ef` when set), `recall` in (0, 1],
    /// not both, and neither with `exact`.
    pub fn checked(
        ef: Option<i64>,
        recall: Option<f64>,
        exact: bool,
        max_ef: Option<usize>,
    ) -> std::result::Result<Breadth, Refused> {
        if exact && (ef.is_some() || recall.is_some()) {
            return Err(Refused::value(
                "exact",
                "takes no ef or recall (it scans every scenario exactly): give it without ef or recall"
                    .into(),
            ));
        }
        if ef.is_some() && recall.is_some() {
            return Err(Refused {
                field: "ef",
                message: "give ef or recall, not both".into(),
                standalone: true,
            });
        }
        Ok(Breadth {
            ef: ef.map(|e| positive("ef", e, max_ef)).transpose()?,
            recall: recall.map(self::recall).transpose()?,
            exact,
        })
    }

    /// The recall the breadth is chosen for (`None`: `ef` given, or exact).
    pub fn target_recall(&self) -> Option<f64> {
        (self.ef.is_none() && !self.exact).then(|| self.recall.unwrap_or(DEFAULT_RECALL))
    }

    /// The breadth before `k` and the partition's size clamp it: `ef`, or
    /// the calibrated one for the recall asked, with a note when the
    /// partition cannot promise that recall. `None`: an exact scan.
    pub fn ef_on(&self, p: &Partition) -> Result<(Option<usize>, Option<String>)> {
        if self.exact {
            return Ok((None, None));
        }
        match (self.ef, self.target_recall()) {
            (Some(ef), _) => Ok((Some(ef), None)),
            (None, recall) => {
                let (ef, note) = calibrated_ef(p, recall.unwrap_or(DEFAULT_RECALL))?;
                Ok((Some(ef), note))
            }
        }
    }
}

/// The graph breadth that finds `k` hits with `ef` on partition `p`: at
/// least `k`; `None` (an exact scan) with no breadth, no graph, or one that
/// covers every row.
pub fn graph_breadth(p: &Partition, ef: Option<usize>, k: usize) -> Option<usize> {
    let ef = ef?.max(k);
    (p.has_graph() && ef < p.len()).then_some(ef)
}

/// The breadth that meets `recall` on partition `p` by its build-time
/// calibration, and a note when it cannot be met or was not measured.
pub fn calibrated_ef(p: &Partition, recall: f64) -> Result<(usize, Option<String>)> {
    let Some(c) = p.calibration()? else {
        return Ok((
            DEFAULT_EF,
            p.has_graph().then(|| {
                format!(
                    "note: index partition {} records no recall calibration (format version {}); searching \
                     with ef {DEFAULT_EF} — rebuild it with `stabspace index rebuild --full` to calibrate",
                    p.path().display(),
                    p.info().version
                )
            }),
        ));
    };
    match c.ef_for(recall) {
        Some(ef) => Ok((ef, None)),
        None => {
            let (ef, best) = c.points.last().copied().unwrap_or((DEFAULT_EF, 0.0));
            // Crowded neighbours: the near recall tells whether the misses
            // are near-ties at the k-th or real misses.
            let near = match c.near_ef_for(recall) {
                Some(near_ef) => format!(
                    "; counting hits within {} cosine of the exact {}th as found, ef {near_ef} reaches it: \
                     the neighbours are crowded and the misses near-ties",
                    stabspace_index::NEAR_COSINE,
                    c.k
                ),
                None => String::new(),
            };
            Ok((
                ef,
                Some(format!(
                    "warning: no breadth measured on index partition {} reaches recall@{} {recall} on {} (the \
                     best, ef {ef}, reached {best:.3}{near}); searching with ef {ef} — pass --exact for exact \
                     answers",
                    p.path().display(),
                    c.k,
                    c.queries.name()
                )),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_checked_alike_everywhere() {
        let ok = Breadth::checked(Some(40), None, false, Some(100)).unwrap();
        assert_eq!((ok.ef, ok.target_recall()), (Some(40), None));
        let by_recall = Breadth::checked(None, Some(0.9), false, None).unwrap();
        assert_eq!(by_recall.target_recall(), Some(0.9));
        assert_eq!(Breadth::default().target_recall(), Some(DEFAULT_RECALL));
        let refused = |ef, r, exact, max| Breadth::checked(ef, r, exact, max).unwrap_err().to_string();
        assert_eq!(
            refused(Some(0), None, false, None),
            "ef must be at least 1, got 0"
        );
        assert_eq!(
            refused(Some(101), None, false, Some(100)),
            "ef 101 is above the server's limit of 100"
        );
        assert_eq!(
            refused(Some(5), Some(0.9), false, None),
            "give ef or recall, not both"
        );
        assert!(refused(None, Some(1.5), false, None).starts_with("recall must be between 0"));
        assert!(refused(None, Some(0.9), true, None).starts_with("exact takes no ef or recall"));
        assert_eq!(
            positive("k", -3, None).unwrap_err().to_string(),
            "k must be at least 1, got -3"
        );
    }
}
