//! A partition's recall calibrations: read from its sections, and redone in
//! place (measured anew on given queries and written to a copy whose every
//! other section is the same bytes: the graph is not rebuilt; `index
//! calibrate` publishes the copy).

use std::path::Path;

use crate::calibrate;
use crate::calibration::{self, Calibration, CalibrationQueries};
use crate::error::{IndexError, Result};
use crate::format::{kind, SECTION_OPTIONAL};
use crate::partition::Partition;
use crate::vector::normalised_queries;
use crate::write::{write_partition, Section};

impl Partition {
    /// The recall calibration queries take their breadth from: the one on
    /// given queries (the users' kind) when the file has one, else the
    /// held-out rows'; `None` for flat partitions and version-1 files.
    pub fn calibration(&self) -> Result<Option<Calibration>> {
        Ok(calibration::preferred(&self.calibrations()?).cloned())
    }

    /// Every recall calibration of the file, the held-out rows' first.
    pub fn calibrations(&self) -> Result<Vec<Calibration>> {
        let (first, all) = self.calibration_sections();
        if let Some(bytes) = all {
            return calibration::decode_all(bytes)
                .ok_or_else(|| self.corrupt("calibrations section is malformed".into()));
        }
        match first {
            None => Ok(Vec::new()),
            Some(bytes) => Calibration::decode(bytes)
                .map(|c| vec![c])
                .ok_or_else(|| self.corrupt("calibration section is malformed".into())),
        }
    }

    /// Recalibrate the graph on `queries` (row-major, `dim` columns; see
    /// [`crate::PartitionBuilder::calibrate_on`]) and write the result to
    /// `out` atomically: every other section byte for byte as in this file
    /// (the graph is not rebuilt), the held-out rows' calibration kept, the
    /// given queries' replaced, and `provenance(&calibrations)` as the new
    /// provenance. `out` may be this file's own path (the map held here
    /// stays valid). Returns the calibrations written.
    pub fn recalibrate(
        &self,
        out: &Path,
        queries: &[f32],
        seed: u64,
        provenance: impl FnOnce(&[Calibration]) -> String,
    ) -> Result<Vec<Calibration>> {
        let view = self.graph().ok_or_else(|| {
            IndexError::BadParams(format!(
                "{} has no graph (a flat partition is searched exactly): there is no breadth to calibrate",
                self.path().display()
            ))
        })?;
        if self.header().version < 2 {
            return Err(IndexError::BadParams(format!(
                "{} is a version-{} partition: rebuild it (`stabspace index rebuild --full`) to calibrate it",
                self.path().display(),
                self.header().version
            )));
        }
        let queries = normalised_queries(queries, self.dim())?;
        let mut all: Vec<Calibration> = self
            .calibrations()?
            .into_iter()
            .filter(|c| c.queries == CalibrationQueries::HeldOutRows)
            .collect();
        let codes = self.traversal_codes();
        let given = calibrate::calibrate_on(&view, codes, &queries, seed).ok_or_else(|| {
            IndexError::BadParams(format!(
                "cannot calibrate {} on {} queries: give at least one query and a graph of more than {} rows",
                self.path().display(),
                queries.len() / self.dim(),
                calibrate::CALIBRATION_K + 1
            ))
        })?;
        all.push(given);
        let provenance = provenance(&all);
        let calibrations_bytes = calibration::encode_all(&all);
        let mut sections: Vec<Section<'_>> = Vec::new();
        let header = *self.header();
        for s in &header.sections[..header.section_count as usize] {
            if s.kind == kind::CALIBRATIONS || s.kind == kind::PROVENANCE {
                continue;
            }
            sections.push(Section {
                kind: s.kind,
                flags: s.flags,
                bytes: self.section_bytes(s),
            });
        }
        sections.push(Section {
            kind: kind::CALIBRATIONS,
            flags: SECTION_OPTIONAL,
            bytes: &calibrations_bytes,
        });
        sections.push(Section {
            kind: kind::PROVENANCE,
            flags: 0,
            bytes: provenance.as_bytes(),
        });
        write_partition(out, header, &sections)?;
        Ok(all)
    }
}
