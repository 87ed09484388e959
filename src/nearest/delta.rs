//! The delta of a stale partition: the rows the database gained since it was
//! built, scanned exactly beside its graph while they are few.

use std::sync::{Arc, Mutex};

use chrono::NaiveDate;
use stabspace_index::{FlatIndex, Partition};

use crate::error::{Error, Result};
use crate::partitions::{Counters, Provenance, SpaceTally};
use crate::pointintime::ShockTypes;
use crate::storage::joint::{joint_scenario_keys, joint_scenarios_by_ids};
use crate::storage::Db;
use crate::vector::{self, DIM};

/// The most rows a stale partition's delta may hold before queries stop
/// scanning it next to the graph and scan the whole set from the database
/// instead: a tenth of the partition's rows, and at least [`DELTA_MIN`]. Past
/// a tenth a rebuild appends no more (it builds in full), and the delta scan
/// costs more than the graph search it accompanies.
pub fn delta_limit(partition_rows: usize) -> usize {
    (partition_rows / 10).max(DELTA_MIN)
}

/// The smallest delta limit: an exact scan of 2,000 rows costs about as much
/// as one graph search at a wide breadth.
pub const DELTA_MIN: usize = 2_000;

/// The scenario vectors a partition lacks: rows the database gained since
/// it was built, scanned exactly.
pub struct Delta {
    /// The set's change counter the delta was read at.
    version: i64,
    pub(super) index: FlatIndex,
    pub(super) as_of: Vec<NaiveDate>,
    /// The shock types numbered by the delta rows' tags.
    pub(super) types: ShockTypes,
}

impl Delta {
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }
}

/// Where an open partition keeps its last delta read (`None`: none yet).
pub type DeltaSlot = Mutex<Option<Arc<Delta>>>;

/// Why a stale partition is not searched, or how many rows its delta adds.
pub(super) enum DeltaRead {
    Delta(Arc<Delta>),
    /// More rows are missing than [`delta_limit`] allows.
    TooMany {
        missing: usize,
        limit: usize,
    },
}

/// The rows of (model, set) that partition `p` lacks, when the set has only
/// gained rows since `p` was built (`Change::OnlyAdded`): the set's keys are
/// read without their vectors, compared with the partition's ids and dates,
/// and only the missing rows' vectors are read. Kept on the partition for
/// the next query at the same counter. Never for a reader behind the
/// partition (`Change::ReaderBehind`, a lagging replica): it has no rows the
/// partition lacks, and `now.version - recorded` would be negative.
pub(super) async fn read_delta(
    db: &Db,
    part: &Partition,
    kept: &DeltaSlot,
    prov: &Provenance,
    model: &str,
    set: &str,
    now: Counters,
) -> Result<DeltaRead> {
    debug_assert!(
        prov.fingerprint.is_stale(now),
        "a delta is read only for a set that moved past its partition"
    );
    if let Some(d) = kept.lock().expect("delta lock").as_ref() {
        if d.version == now.version {
            return Ok(DeltaRead::Delta(Arc::clone(d)));
        }
    }
    let limit = delta_limit(part.len());
    // With no update or delete since the build, every bump of the change
    // counter is one inserted row: a delta too large is known without a read.
    let gained = usize::try_from(now.version - prov.fingerprint.version).unwrap_or(0);
    if gained > limit {
        return Ok(DeltaRead::TooMany {
            missing: gained,
            limit,
        });
    }
    let keys = joint_scenario_keys(db, model, set).await?;
    let mut have: std::collections::HashSet<(&str, &[u8])> =
        std::collections::HashSet::with_capacity(part.len());
    for row in 0..part.len() {
        have.insert((part.id(row)?, part.payload(row)?));
    }
    // Rows the build left out (all-zero or unusable vectors) are not missing.
    let skipped: std::collections::HashSet<&str> = prov
        .skipped_zero
        .iter()
        .map(String::as_str)
        .chain(prov.skipped_unusable.iter().map(|(id, _)| id.as_str()))
        .collect();
    let mut missing: Vec<String> = keys
        .iter()
        .filter(|(id, date)| {
            !skipped.contains(id.as_str()) && !have.contains(&(id.as_str(), date.to_string().as_bytes()))
        })
        .map(|(id, _)| id.clone())
        .collect();
    if missing.len() > limit {
        return Ok(DeltaRead::TooMany {
            missing: missing.len(),
            limit,
        });
    }
    missing.sort_unstable();
    missing.dedup();
    let mut index = FlatIndex::with_capacity(DIM, missing.len())?;
    let mut as_of = Vec::with_capacity(missing.len());
    let mut types = ShockTypes::default();
    let mut spaces = SpaceTally::default();
    if let Some(space) = &prov.feature_space {
        spaces.add(Some(space), part.len());
    }
    for s in joint_scenarios_by_ids(db, model, set, &missing).await? {
        if have.contains(&(s.scenario_id.as_str(), s.as_of.to_string().as_bytes())) {
            continue;
        }
        spaces.add(s.feature_space.as_deref(), 1);
        match vector::usable(&s.vector) {
            Ok(v) => {
                let attrs = types.attrs_adding(s.known_from, s.shock_type.as_deref(), s.severity.as_deref());
                index.add_with(&s.scenario_id, &v, attrs).map_err(|e| {
                    Error::Invalid(format!(
                        "scenario {} of set {set} under {model}: {e}",
                        s.scenario_id
                    ))
                })?;
                as_of.push(s.as_of);
            }
            Err(why) => eprintln!(
                "note: scenario {} of {set}, added since the partition was built, is left out: {why}",
                s.scenario_id
            ),
        }
    }
    // A gained row of another feature space is the mixed-space error.
    spaces.one(model, set)?;
    let d = Arc::new(Delta {
        version: now.version,
        index,
        as_of,
        types,
    });
    *kept.lock().expect("delta lock") = Some(Arc::clone(&d));
    Ok(DeltaRead::Delta(d))
}
