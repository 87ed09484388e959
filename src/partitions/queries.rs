//! The queries a partition's recall is calibrated on: the most recent
//! instrument states of its joint model (what users query the partition
//! with), or a file of query vectors. The engine measures recall on them
//! (`PartitionBuilder::calibrate_on`, `Partition::recalibrate`); this room
//! only chooses and reads them.

use chrono::NaiveDate;

use crate::error::{Error, Result};
use crate::storage::joint::recent_states;
use crate::storage::Db;
use crate::vector;

/// State rows read as the pool the engine samples its
/// [`stabspace_index::CALIBRATION_QUERIES`] from: the most recent ones, a
/// few dates of a large universe, a few weeks of a small one.
pub const STATE_POOL: u64 = 4 * stabspace_index::CALIBRATION_QUERIES as u64;

/// Calibration queries and where they came from.
pub struct CalibrationQueries {
    /// Row-major, [`vector::DIM`] columns.
    pub vectors: Vec<f32>,
    pub count: usize,
    /// "412 states of joint-stab-fragility-v1 from 2024-05-01 to 2024-06-28".
    pub source: String,
}

/// The most recent instrument states of `model` on or before `until`
/// (all-zero and unusable vectors left out); `None` when there are none.
pub async fn recent_state_queries(
    db: &Db,
    model: &str,
    until: Option<NaiveDate>,
) -> Result<Option<CalibrationQueries>> {
    let rows = recent_states(db, model, until, STATE_POOL).await?;
    let mut vectors = Vec::with_capacity(rows.len() * vector::DIM);
    let (mut count, mut first, mut last) = (0, None::<NaiveDate>, None::<NaiveDate>);
    for (_, date, bytes) in &rows {
        let Ok(v) = vector::usable(bytes) else { continue };
        if v.len() != vector::DIM {
            continue;
        }
        vectors.extend_from_slice(&v);
        count += 1;
        first = Some(first.map_or(*date, |f| f.min(*date)));
        last = Some(last.map_or(*date, |l| l.max(*date)));
    }
    Ok(match (first, last) {
        (Some(first), Some(last)) if count > 0 => Some(CalibrationQueries {
            vectors,
            count,
            source: format!(
                "{count} {model} states {}",
                if first == last {
                    format!("of {first}")
                } else {
                    format!("from {first} to {last}")
                }
            ),
        }),
        _ => None,
    })
}

/// Query vectors from a file of raw little-endian float32 rows of `dim`
/// columns (what `stabspace bench --queries` and `scenario_vectors.py` read
/// and write).
pub fn file_queries(path: &std::path::Path, dim: usize) -> Result<CalibrationQueries> {
    let bytes =
        std::fs::read(path).map_err(|e| Error::Invalid(format!("cannot read {}: {e}", path.display())))?;
    let row = dim * 4;
    if bytes.is_empty() || bytes.len() % row != 0 {
        return Err(Error::Invalid(format!(
            "{}: {} bytes is not a whole number of {dim}-column float32 rows ({row} bytes each)",
            path.display(),
            bytes.len()
        )));
    }
    let vectors: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    for (i, v) in vectors.chunks_exact(dim).enumerate() {
        if let Some(why) = vector::unusable(v) {
            return Err(Error::Invalid(format!(
                "{}: query row {i}: {why}",
                path.display()
            )));
        }
    }
    let count = vectors.len() / dim;
    Ok(CalibrationQueries {
        vectors,
        count,
        source: format!("{count} queries from {}", path.display()),
    })
}
