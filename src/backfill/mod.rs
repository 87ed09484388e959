//! Backfills: read inputs in bulk, encode, write vectors in one transaction.

mod numeric;
mod scenario;

use std::collections::BTreeMap;
use std::fmt;

pub use numeric::{backfill_numeric_embeddings, NumericBackfill};
pub use scenario::{backfill_numeric_scenario_embeddings, ScenarioBackfill};

/// What a backfill did, for the closing summary.
#[derive(Clone, Debug, Default)]
pub struct BackfillSummary {
    pub model_id: String,
    pub encoded: u64,
    /// Skipped entities by reason kind, each with its detailed reason.
    pub skipped: BTreeMap<&'static str, Vec<(String, String)>>,
    /// Entities whose vector an earlier run stored for the same key and this
    /// run no longer produces (skipped now, or no longer in scope): deleted.
    pub removed: Vec<String>,
    pub seconds: f64,
    /// What the joint model registry recorded (joint backfills only).
    pub registration: crate::joint::Registration,
}

impl BackfillSummary {
    pub fn skipped_total(&self) -> usize {
        self.skipped.values().map(Vec::len).sum()
    }

    pub fn rate(&self) -> f64 {
        if self.seconds > 0.0 {
            self.encoded as f64 / self.seconds
        } else {
            0.0
        }
    }
}

impl fmt::Display for BackfillSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: encoded {} vectors, skipped {}, in {:.2} s ({:.0} vectors/s)",
            self.model_id,
            self.encoded,
            self.skipped_total(),
            self.seconds,
            self.rate()
        )?;
        write!(f, "{}", self.registration)?;
        for (kind, items) in &self.skipped {
            let shown: Vec<String> = items
                .iter()
                .take(5)
                .map(|(id, why)| format!("{id} ({why})"))
                .collect();
            let more = if items.len() > 5 {
                format!(", … {} more", items.len() - 5)
            } else {
                String::new()
            };
            writeln!(
                f,
                "  skipped, {kind}: {}: {}{more}",
                items.len(),
                shown.join(", ")
            )?;
        }
        if !self.removed.is_empty() {
            let shown: Vec<&str> = self.removed.iter().take(5).map(String::as_str).collect();
            let more = if self.removed.len() > 5 {
                format!(", … {} more", self.removed.len() - 5)
            } else {
                String::new()
            };
            writeln!(
                f,
                "  removed {} vector(s) an earlier run stored for this date that this run no longer \
                 produces: {}{more}",
                self.removed.len(),
                shown.join(", ")
            )?;
        }
        Ok(())
    }
}
