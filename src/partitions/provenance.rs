//! What a partition file records about itself (its provenance: a JSON object
//! in the header, see `index/FORMAT.md`) and what the database holds for its
//! source rows now (the set's change counters and fingerprint).

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use stabspace_index::{BuildParams, Calibration, GraphBuilder, Partition, Quantization, RECALL_TARGETS};

use crate::error::{Error, Result};
use crate::storage::{partition_counters, Db};

/// What the database holds for a partition's source rows right now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub rows: i64,
    /// The set's `version` counter: every insert, update or delete.
    pub version: i64,
    pub latest_created_at: Option<String>,
    /// The set's `rewrites` counter: every update or delete, no insert
    /// (`None` in partitions built before it was recorded).
    #[serde(default)]
    pub rewrites: Option<i64>,
}

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} rows, change #{}", self.rows, self.version)?;
        if let Some(r) = self.rewrites {
            write!(f, " (rewrite #{r})")?;
        }
        write!(
            f,
            ", last written {}",
            self.latest_created_at.as_deref().unwrap_or("never")
        )
    }
}

/// The trigger-kept change counters of one (model, set) in
/// `joint_scenario_versions`; both 0 when the set has never been written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Bumped by every insert, update or delete of a STAB scenario vector.
    pub version: i64,
    /// Bumped by every update or delete, never by an insert.
    pub rewrites: i64,
}

impl std::fmt::Display for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "change #{} (rewrite #{})", self.version, self.rewrites)
    }
}

/// What happened to a set's scenario vectors since a partition was built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Nothing: the partition holds what the database holds.
    None,
    /// Rows were inserted and none was updated or deleted.
    OnlyAdded,
    /// Some row was updated or deleted (or the partition does not record
    /// `rewrites`, so that cannot be ruled out).
    Rewritten,
    /// The database read is behind the partition: its `version` counter is
    /// below the one the partition was built at. Counters only grow, so the
    /// reader is a replica that has not yet replayed what the primary the
    /// partition was built from had committed (or a database restored from
    /// an older backup). The partition is newer than the rows read, not
    /// older: it is searched as it is, never rebuilt from the reader and
    /// never completed with a delta.
    ReaderBehind,
}

impl Fingerprint {
    /// Whether a partition built from `self` holds what the database holds
    /// now: the same `version` counter. (Whether it is from this database is
    /// [`Provenance::is_from`]; a reader behind the partition is not current
    /// but not stale either: [`Change::ReaderBehind`].)
    pub fn is_current(&self, now: Counters) -> bool {
        self.version == now.version
    }

    /// Whether the database read is behind the partition ([`Change::ReaderBehind`]).
    pub fn is_ahead_of(&self, now: Counters) -> bool {
        now.version < self.version
    }

    /// Whether the database has moved past the partition: it holds changes
    /// the partition lacks. Neither current nor a reader behind it.
    pub fn is_stale(&self, now: Counters) -> bool {
        now.version > self.version
    }

    /// What changed since the partition was built, in O(1): a `version` that
    /// moved while `rewrites` did not means only inserts happened; a
    /// `version` below the recorded one means the reader is behind.
    pub fn change_since(&self, now: Counters) -> Change {
        if self.is_current(now) {
            Change::None
        } else if self.is_ahead_of(now) {
            Change::ReaderBehind
        } else if self.rewrites == Some(now.rewrites) {
            Change::OnlyAdded
        } else {
            Change::Rewritten
        }
    }
}

/// The change counters of (model, set): one indexed row lookup.
pub async fn counters(db: &Db, model: &str, set: &str) -> Result<Counters> {
    let row = partition_counters::counters(db, model, set).await?;
    Ok(row.map_or(Counters::default(), |r| Counters {
        version: r.version,
        rewrites: r.rewrites,
    }))
}

/// The counters and a count of the set's rows: a scan of the set, for builds
/// and `index status`, never for queries of a fresh partition.
pub async fn fingerprint(db: &Db, model: &str, set: &str) -> Result<Fingerprint> {
    // The counters first: a write between the two reads makes the
    // fingerprint look older, never newer, than the rows counted.
    let now = counters(db, model, set).await?;
    let (rows, latest) = partition_counters::scenario_rows(db, model, set).await?;
    Ok(Fingerprint {
        rows,
        version: now.version,
        latest_created_at: latest,
        rewrites: Some(now.rewrites),
    })
}

/// The build parameters as recorded in the provenance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedParams {
    pub m: usize,
    pub ef_construction: usize,
    pub seed: u64,
    pub deterministic: bool,
    /// `stabspace` or `hnsw_rs` (`None`: built before it was recorded, by hnsw_rs).
    #[serde(default)]
    pub builder: Option<String>,
    /// `int8-per-dimension`, `int8-global` or `none` (`None`: built before it
    /// was recorded, without quantised codes; rebuilt with the default).
    #[serde(default)]
    pub quantization: Option<String>,
}

impl RecordedParams {
    /// The parameters to build with again (an unrecorded builder: ours).
    pub fn build_params(&self) -> BuildParams {
        BuildParams {
            m: self.m,
            ef_construction: self.ef_construction,
            seed: self.seed,
            deterministic: self.deterministic,
            builder: match self.builder.as_deref() {
                Some("hnsw_rs") => GraphBuilder::HnswRs,
                _ => GraphBuilder::Native,
            },
            quantization: self
                .quantization
                .as_deref()
                .and_then(Quantization::parse)
                .unwrap_or_default(),
            ..BuildParams::default()
        }
    }

    pub fn of(p: &BuildParams) -> RecordedParams {
        RecordedParams {
            m: p.m,
            ef_construction: p.ef_construction,
            seed: p.seed,
            deterministic: p.deterministic,
            builder: Some(p.builder.name().to_string()),
            quantization: Some(p.quantization.name().to_string()),
        }
    }
}

/// How a partition was made from its predecessor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BuildKind {
    /// Every row inserted into a new graph.
    Full,
    /// The rows new since the previous partition inserted into its graph.
    Append,
}

/// The recall calibration as the provenance records it: the queries it was
/// measured on, the smallest measured `ef` reaching each target recall@k
/// (`None`: not reached by the largest breadth measured), and every measured
/// point with its strict and near recall.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CalibrationRecord {
    /// What the queries were: "held-out rows", or where the given ones came
    /// from ("500 of 2000 joint-stab-fragility-v1 states from … to …").
    /// `None`: built before it was recorded (held-out rows).
    #[serde(default)]
    pub queries: Option<String>,
    pub k: usize,
    /// Queries measured.
    pub sample: usize,
    /// Rows in the graph when it was measured (a small append keeps the
    /// calibration of the graph it extends).
    #[serde(default)]
    pub rows: usize,
    /// Target recall ("0.90") → smallest ef reaching it.
    pub ef_for_recall: std::collections::BTreeMap<String, Option<usize>>,
    /// (ef, strict recall) measured.
    pub points: Vec<(usize, f64)>,
    /// (ef, near recall: the share of hits within `NEAR_COSINE` of the
    /// exact k-th) measured; empty before it was recorded.
    #[serde(default)]
    pub near_points: Vec<(usize, f64)>,
}

impl CalibrationRecord {
    /// `queries`: where given queries came from (ignored for held-out rows).
    pub fn of(c: &Calibration, queries: Option<&str>) -> CalibrationRecord {
        let round = |r: f64| (r * 1e4).round() / 1e4;
        CalibrationRecord {
            queries: Some(match c.queries {
                stabspace_index::CalibrationQueries::HeldOutRows => "held-out rows".to_string(),
                stabspace_index::CalibrationQueries::Given => queries.unwrap_or("given queries").to_string(),
            }),
            k: c.k,
            sample: c.sample,
            rows: c.rows,
            ef_for_recall: RECALL_TARGETS
                .iter()
                .map(|&t| (format!("{t:.2}"), c.ef_for(t)))
                .collect(),
            points: c.points.iter().map(|&(ef, r)| (ef, round(r))).collect(),
            near_points: c
                .points
                .iter()
                .zip(&c.near)
                .map(|(p, &n)| (p.0, round(n)))
                .collect(),
        }
    }

    /// Whether it was measured on the partition's own rows held out.
    pub fn on_rows(&self) -> bool {
        self.queries.as_deref().is_none_or(|q| q == "held-out rows")
    }

    /// "200 held-out rows" / "500 queries: 2000 … states from … to …".
    pub fn describe(&self) -> String {
        match &self.queries {
            Some(q) if !self.on_rows() => format!("{} of {q}", self.sample),
            _ => format!("{} held-out rows", self.sample),
        }
    }

    /// "ef 24/48/128/256 for recall@10 0.90/0.95/0.98/0.99".
    pub fn summary(&self) -> String {
        let efs: Vec<String> = self
            .ef_for_recall
            .values()
            .map(|e| e.map_or("-".into(), |e| e.to_string()))
            .collect();
        let targets: Vec<&str> = self.ef_for_recall.keys().map(String::as_str).collect();
        format!("ef {} for recall@{} {}", efs.join("/"), self.k, targets.join("/"))
    }
}

/// The provenance JSON stored in each partition's header.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    pub model_id: String,
    pub scenario_set_id: String,
    pub rows: usize,
    /// Scenarios left out for an all-zero vector.
    pub skipped_zero: Vec<String>,
    /// Scenarios left out for a vector that cannot be used (a stored blob of
    /// another length, a non-finite value), with the reason.
    #[serde(default)]
    pub skipped_unusable: Vec<(String, String)>,
    /// The feature space of the vectors (`None`: not recorded).
    #[serde(default)]
    pub feature_space: Option<String>,
    /// Whether the build read the rows' feature spaces, so that a `None`
    /// above means the rows record none. False in partitions built before
    /// that was recorded: queries then ask the database (a scan of the set).
    #[serde(default)]
    pub spaces_read: bool,
    pub fingerprint: Fingerprint,
    pub params: RecordedParams,
    pub built_at: String,
    pub build_seconds: f64,
    /// The id of the database the rows came from (`stabspace_meta`); `None`
    /// in partitions built before it was recorded, which are never used.
    #[serde(default)]
    pub database_id: Option<String>,
    /// Full build or append (`None`: built before it was recorded, full).
    #[serde(default)]
    pub build: Option<BuildKind>,
    /// Rows inserted by an append.
    #[serde(default)]
    pub appended_rows: Option<usize>,
    /// Why the build was full when an append was allowed.
    #[serde(default)]
    pub full_build_reason: Option<String>,
    /// The recall calibration queries take their breadth from: on the
    /// users' kind of query (instrument states) when there were some, else
    /// on held-out rows.
    #[serde(default)]
    pub calibration: Option<CalibrationRecord>,
    /// Every calibration the file holds, the held-out rows' first (empty:
    /// built before several were recorded; `calibration` is then the only one).
    #[serde(default)]
    pub calibrations: Vec<CalibrationRecord>,
    /// Why no calibration on users' queries was made, when none was.
    #[serde(default)]
    pub calibration_note: Option<String>,
    /// When `index calibrate` last recalibrated the file in place.
    #[serde(default)]
    pub calibrated_at: Option<String>,
    /// The shock types numbered by the rows' tags in the file's per-row
    /// attributes (`None`: built before point-in-time search, without them).
    #[serde(default)]
    pub shock_types: Option<Vec<String>>,
}

impl Provenance {
    /// Whether the partition was built from the database with this id.
    pub fn is_from(&self, database_id: &str) -> bool {
        self.database_id.as_deref() == Some(database_id)
    }

    pub fn of(p: &Partition) -> Result<Provenance> {
        let text = p.provenance()?;
        serde_json::from_str(text).map_err(|e| {
            Error::Invalid(format!(
                "{}: provenance is not a stabspace partition record ({e}); rebuild it with `stabspace index build`",
                p.path().display()
            ))
        })
    }
}

/// The feature spaces recorded on a set's scenario vectors, counted.
#[derive(Default)]
pub struct SpaceTally(std::collections::BTreeMap<String, usize>);

impl SpaceTally {
    /// Count `rows` vectors of `space` (`None`: not recorded, not counted).
    pub fn add(&mut self, space: Option<&str>, rows: usize) {
        if let Some(s) = space {
            *self.0.entry(s.to_string()).or_default() += rows;
        }
    }

    /// The one recorded space, none, or an error when the set mixes spaces.
    pub fn one(self, model: &str, set: &str) -> Result<Option<String>> {
        if self.0.len() > 1 {
            let parts: Vec<String> = self.0.iter().map(|(s, n)| format!("{n} in {s}")).collect();
            return Err(Error::Invalid(format!(
                "the scenario vectors of set {set:?} under {model} mix feature spaces ({}); re-run \
                 `stabspace backfill-numeric-scenario-embeddings` and `backfill-joint-stab-fragility-scenarios` \
                 for the whole set with one scenario encoder",
                parts.join(", ")
            )));
        }
        Ok(self.0.into_keys().next())
    }
}

/// The scenario date of a row, from the partition's payload.
pub fn scenario_as_of(p: &Partition, row: usize) -> Result<NaiveDate> {
    let bytes = p.payload(row)?;
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
        .ok_or_else(|| {
            Error::Invalid(format!(
                "{}: row {row} has no scenario date in its payload; rebuild it with `stabspace index build`",
                p.path().display()
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A provenance as partitions built before `rewrites` and `spaces_read`
    /// write it still reads: the counter unrecorded (so no append can be
    /// assumed), the spaces not read (so queries ask the database).
    #[test]
    fn provenance_of_earlier_partitions_still_reads() {
        let old = r#"{"model_id":"m","scenario_set_id":"s","rows":2,"skipped_zero":[],
            "skipped_unusable":[],"feature_space":null,
            "fingerprint":{"rows":2,"version":7,"latest_created_at":"2025-01-01 00:00:00"},
            "params":{"m":16,"ef_construction":200,"seed":24301,"deterministic":false},
            "built_at":"2025-01-01T00:00:00Z","build_seconds":0.1,"database_id":"abc"}"#;
        let p: Provenance = serde_json::from_str(old).unwrap();
        assert_eq!((p.fingerprint.rewrites, p.spaces_read), (None, false));
        let now = Counters {
            version: 7,
            rewrites: 3,
        };
        assert!(p.fingerprint.is_current(now));
        assert_eq!(p.fingerprint.change_since(now), Change::None);
        let later = Counters { version: 9, ..now };
        assert_eq!(p.fingerprint.change_since(later), Change::Rewritten);
    }

    /// Counters only grow: a reader whose `version` is below the recorded
    /// one is behind the partition (a lagging replica), whatever `rewrites`
    /// says; it is neither current nor stale. At or past the recorded
    /// version the rules are the usual ones.
    #[test]
    fn a_reader_below_the_recorded_version_is_behind_not_stale() {
        let built = Fingerprint {
            rows: 10,
            version: 12,
            latest_created_at: None,
            rewrites: Some(2),
        };
        for rewrites in [0, 2, 5] {
            let behind = Counters {
                version: 11,
                rewrites,
            };
            assert_eq!(
                built.change_since(behind),
                Change::ReaderBehind,
                "rewrites {rewrites}"
            );
            assert!(!built.is_current(behind) && !built.is_stale(behind) && built.is_ahead_of(behind));
        }
        let same = Counters {
            version: 12,
            rewrites: 2,
        };
        assert_eq!(built.change_since(same), Change::None);
        assert!(built.is_current(same) && !built.is_stale(same) && !built.is_ahead_of(same));
        let added = Counters { version: 15, ..same };
        assert_eq!(built.change_since(added), Change::OnlyAdded);
        assert!(built.is_stale(added));
        let rewritten = Counters {
            version: 15,
            rewrites: 3,
        };
        assert_eq!(built.change_since(rewritten), Change::Rewritten);
        // Never written at all (counters 0) while the partition records a
        // version: behind too (a replica that has not replayed the set yet).
        assert_eq!(built.change_since(Counters::default()), Change::ReaderBehind);
    }
}
