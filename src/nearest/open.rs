//! A partition file opened for searching: the mapped file, its provenance,
//! and the delta of rows the database gained since it was built (kept for the
//! queries that share it).

use std::path::Path;
use std::sync::Mutex;

use stabspace_index::Partition;

use super::delta::DeltaSlot;
use crate::error::{Error, Result};
use crate::partitions::{PartitionStore, Provenance};
use crate::pointintime::ShockTypes;
use crate::vector::DIM;

/// A partition file opened for searching, with its provenance (`None`: a
/// file the index commands did not write). Derefs to the [`Partition`].
pub struct OpenPartition {
    pub partition: Partition,
    pub provenance: Option<Provenance>,
    /// The shock types numbered by the rows' tags, as the provenance records
    /// them (none recorded: no tag matches), read once for every filtered query.
    pub shock_types: ShockTypes,
    /// The rows the database has gained since this file was built, as last
    /// read (keyed by the set's change counter): shared by the queries that
    /// share this map (through one [`super::cache::PartitionCache`]).
    pub(super) delta: DeltaSlot,
}

impl OpenPartition {
    /// A partition a store mapped; `quantized = false` traverses its graph on
    /// the f32 vectors.
    pub fn new(mut partition: Partition, quantized: bool) -> OpenPartition {
        partition.set_quantized(quantized);
        let provenance = Provenance::of(&partition).ok();
        let shock_types = ShockTypes(
            provenance
                .as_ref()
                .and_then(|p| p.shock_types.clone())
                .unwrap_or_default(),
        );
        OpenPartition {
            partition,
            provenance,
            shock_types,
            delta: Mutex::new(None),
        }
    }

    /// The provenance, when the file holds the scenario vectors of (model, set)
    /// in the joint space's dimension: what [`open_checked`] checks.
    pub fn checked(&self, model: &str, set: &str) -> Result<&Provenance> {
        let path = self.partition.path();
        let Some(prov) = &self.provenance else {
            return Err(Error::Invalid(format!(
                "{}: records no scenario set (not written by `stabspace index build`)",
                path.display()
            )));
        };
        check_holds(path, &self.partition, prov, model, set)?;
        Ok(prov)
    }
}

impl std::fmt::Debug for OpenPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OpenPartition({})", self.partition.path().display())
    }
}

impl std::ops::Deref for OpenPartition {
    type Target = Partition;
    fn deref(&self) -> &Partition {
        &self.partition
    }
}

/// Open a partition for a query and check that it holds (model, set): the
/// header and section table are validated (constant work, as
/// [`Partition::open`] does; rows are bounds-checked when a search reads
/// them), but the section checksums are not, since that reads the whole file.
/// `index verify` and `index status` check them.
pub fn open_checked(store: &dyn PartitionStore, model: &str, set: &str) -> Result<(Partition, Provenance)> {
    let path = store.locate(model, set);
    let (p, _) = store.open(&path)?;
    let prov = Provenance::of(&p)?;
    check_holds(&path, &p, &prov, model, set)?;
    Ok((p, prov))
}

/// Whether partition `p` at `path` holds (model, set) in the joint dimension.
fn check_holds(path: &Path, p: &Partition, prov: &Provenance, model: &str, set: &str) -> Result<()> {
    if prov.model_id != model || prov.scenario_set_id != set {
        return Err(Error::Invalid(format!(
            "{}: holds {} / {}, not {model} / {set}",
            path.display(),
            prov.model_id,
            prov.scenario_set_id
        )));
    }
    if p.dim() != DIM {
        return Err(Error::Invalid(format!(
            "{}: {} dimensions, expected {DIM}",
            path.display(),
            p.dim()
        )));
    }
    Ok(())
}
