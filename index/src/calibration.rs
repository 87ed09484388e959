//! The recall calibration as recorded: measured recall@k per search breadth,
//! on which queries, and its section bytes (`FORMAT.md`). `calibrate.rs`
//! measures it; a partition reads it back.
//!
//! Two sections hold it. `CALIBRATION` (kind 12, required with a graph since
//! version 2) holds the held-out-rows calibration in the first layout, for
//! readers that know no other. `CALIBRATIONS` (kind 14, optional) holds every
//! calibration of the file with its query source and near recall; readers
//! that know it use it.

/// Cosine within which of the true k-th neighbour a returned row counts in
/// the *near* recall (ann-benchmarks' default threshold, 1e-3 in distance).
/// The recall a search promises (`--recall`) is the strict one; the near
/// recall is reported beside it, for sets whose neighbours are so crowded
/// that near-ties at the k-th decide the strict one.
pub const NEAR_COSINE: f64 = 1e-3;

/// A returned row counts in the strict recall when its similarity is at
/// least the k-th exact one minus this: float rounding, not a tolerance
/// (rows this close are equally right answers).
pub const TIE_COSINE: f64 = 1e-6;

/// Which queries a calibration measured recall on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CalibrationQueries {
    /// A sample of the partition's own rows, each held out from being its
    /// own answer.
    HeldOutRows,
    /// Query vectors the caller gave: the kind of query users send (the
    /// states of the joint model, or a file of queries).
    Given,
}

impl CalibrationQueries {
    pub fn name(self) -> &'static str {
        match self {
            CalibrationQueries::HeldOutRows => "held-out rows",
            CalibrationQueries::Given => "given queries",
        }
    }

    fn code(self) -> u32 {
        match self {
            CalibrationQueries::HeldOutRows => 0,
            CalibrationQueries::Given => 1,
        }
    }

    fn of_code(c: u32) -> Option<Self> {
        match c {
            0 => Some(CalibrationQueries::HeldOutRows),
            1 => Some(CalibrationQueries::Given),
            _ => None,
        }
    }
}

/// Measured recall@k of a graph, per search breadth.
#[derive(Clone, Debug, PartialEq)]
pub struct Calibration {
    /// The queries measured.
    pub queries: CalibrationQueries,
    /// Neighbours per query.
    pub k: usize,
    /// Queries measured.
    pub sample: usize,
    /// Rows in the graph when it was measured (an append may keep it).
    pub rows: usize,
    /// (ef, strict recall), ef ascending: the share of the exact top-k rows
    /// found (ties within [`TIE_COSINE`] count).
    pub points: Vec<(usize, f64)>,
    /// Per point, the near recall: the share of returned top-k rows within
    /// [`NEAR_COSINE`] of the exact k-th. Empty when not measured (a file
    /// with only the first layout).
    pub near: Vec<f64>,
}

impl Calibration {
    /// The smallest measured breadth whose recall reaches `recall`, if any
    /// (within 1e-6: recalls are stored as f32).
    pub fn ef_for(&self, recall: f64) -> Option<usize> {
        self.points.iter().find(|p| p.1 >= recall - 1e-6).map(|p| p.0)
    }

    /// The smallest measured breadth whose *near* recall reaches `recall`.
    pub fn near_ef_for(&self, recall: f64) -> Option<usize> {
        self.points
            .iter()
            .zip(&self.near)
            .find(|(_, &n)| n >= recall - 1e-6)
            .map(|(p, _)| p.0)
    }

    /// The recall measured at the largest breadth not above `ef` (`None` below the ladder).
    pub fn recall_at(&self, ef: usize) -> Option<f64> {
        self.points.iter().rev().find(|p| p.0 <= ef).map(|p| p.1)
    }

    /// The near recall measured at the largest breadth not above `ef`.
    pub fn near_recall_at(&self, ef: usize) -> Option<f64> {
        let i = self.points.iter().rposition(|p| p.0 <= ef)?;
        self.near.get(i).copied()
    }

    /// The `CALIBRATION` section bytes (first layout: strict recall only):
    /// u32 words `k`, `sample`, `rows`, `points`, then per point `ef` and the
    /// recall as f32 bits.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut w: Vec<u32> = vec![
            self.k as u32,
            self.sample as u32,
            self.rows as u32,
            self.points.len() as u32,
        ];
        for &(ef, r) in &self.points {
            w.push(ef as u32);
            w.push((r as f32).to_bits());
        }
        bytemuck::cast_slice(&w).to_vec()
    }

    /// Parse the `CALIBRATION` section bytes (a held-out-rows calibration
    /// without near recall); `None` when they are not a calibration.
    pub(crate) fn decode(bytes: &[u8]) -> Option<Calibration> {
        let w = words(bytes)?;
        if w.len() < 4 {
            return None;
        }
        let points = w[3] as usize;
        if w.len() != 4 + 2 * points {
            return None;
        }
        let points: Vec<(usize, f64)> = w[4..]
            .chunks_exact(2)
            .map(|p| (p[0] as usize, f64::from(f32::from_bits(p[1]))))
            .collect();
        let c = Calibration {
            queries: CalibrationQueries::HeldOutRows,
            k: w[0] as usize,
            sample: w[1] as usize,
            rows: w[2] as usize,
            points,
            near: Vec::new(),
        };
        c.valid().then_some(c)
    }

    fn valid(&self) -> bool {
        let unit = |r: &f64| (0.0..=1.0).contains(r);
        self.points.windows(2).all(|p| p[0].0 < p[1].0)
            && self.points.iter().all(|p| unit(&p.1))
            && self.near.iter().all(unit)
            && (self.near.is_empty() || self.near.len() == self.points.len())
    }
}

/// The `CALIBRATIONS` section bytes: u32 `count`, then per calibration u32
/// words `queries` (0 held-out rows, 1 given), `k`, `sample`, `rows`,
/// `points`, the near tolerance as f32 bits, then per point `ef`, the strict
/// recall and the near recall as f32 bits.
pub(crate) fn encode_all(all: &[Calibration]) -> Vec<u8> {
    let mut w: Vec<u32> = vec![all.len() as u32];
    for c in all {
        w.extend([
            c.queries.code(),
            c.k as u32,
            c.sample as u32,
            c.rows as u32,
            c.points.len() as u32,
            (NEAR_COSINE as f32).to_bits(),
        ]);
        for (i, &(ef, r)) in c.points.iter().enumerate() {
            let near = c.near.get(i).copied().unwrap_or(r);
            w.extend([ef as u32, (r as f32).to_bits(), (near as f32).to_bits()]);
        }
    }
    bytemuck::cast_slice(&w).to_vec()
}

/// Parse the `CALIBRATIONS` section; `None` when malformed.
pub(crate) fn decode_all(bytes: &[u8]) -> Option<Vec<Calibration>> {
    let w = words(bytes)?;
    let (&count, mut rest) = w.split_first()?;
    let mut all = Vec::new();
    for _ in 0..count {
        if rest.len() < 6 {
            return None;
        }
        let points = rest[4] as usize;
        let body = rest.get(6..6 + 3 * points)?;
        let f = |b: u32| f64::from(f32::from_bits(b));
        let c = Calibration {
            queries: CalibrationQueries::of_code(rest[0])?,
            k: rest[1] as usize,
            sample: rest[2] as usize,
            rows: rest[3] as usize,
            points: body.chunks_exact(3).map(|p| (p[0] as usize, f(p[1]))).collect(),
            near: body.chunks_exact(3).map(|p| f(p[2])).collect(),
        };
        if !c.valid() {
            return None;
        }
        all.push(c);
        rest = &rest[6 + 3 * points..];
    }
    rest.is_empty().then_some(all)
}

fn words(bytes: &[u8]) -> Option<Vec<u32>> {
    bytes.len().is_multiple_of(4).then(|| {
        bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    })
}

/// The calibration queries use among a file's: the one on given queries
/// (the users' kind of query) when there is one, else the held-out rows'.
pub fn preferred(all: &[Calibration]) -> Option<&Calibration> {
    all.iter()
        .find(|c| c.queries == CalibrationQueries::Given)
        .or_else(|| all.first())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Calibration {
        Calibration {
            queries: CalibrationQueries::HeldOutRows,
            k: 10,
            sample: 256,
            rows: 5000,
            points: vec![(16, 0.81), (32, 0.9), (64, 0.951), (128, 0.99)],
            near: vec![0.9, 0.97, 0.99, 1.0],
        }
    }

    #[test]
    fn encodes_and_decodes_and_answers_the_smallest_breadth() {
        let c = sample();
        let d = Calibration::decode(&c.encode()).expect("decodes");
        assert_eq!(d.points.len(), 4);
        assert!(d.near.is_empty(), "the first layout holds no near recall");
        assert_eq!((d.k, d.sample, d.rows), (10, 256, 5000));
        assert_eq!(d.ef_for(0.90), Some(32));
        assert_eq!(d.ef_for(0.95), Some(64));
        assert_eq!(d.ef_for(0.98), Some(128));
        assert_eq!(d.ef_for(0.995), None);
        assert_eq!(d.recall_at(100).map(|r| (r * 1000.0).round()), Some(951.0));
        assert_eq!(d.recall_at(8), None);
        assert!(Calibration::decode(&[1, 2, 3]).is_none());
    }

    #[test]
    fn every_calibration_round_trips_with_its_queries_and_near_recall() {
        let rows = sample();
        let given = Calibration {
            queries: CalibrationQueries::Given,
            sample: 300,
            points: vec![(10, 0.93), (13, 0.96)],
            near: vec![0.99, 1.0],
            ..sample()
        };
        let all = decode_all(&encode_all(&[rows.clone(), given.clone()])).expect("decodes");
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].queries, CalibrationQueries::Given);
        assert_eq!((all[1].sample, all[1].ef_for(0.95)), (300, Some(13)));
        assert_eq!(all[0].near_ef_for(0.97), Some(32));
        assert_eq!(all[0].near_recall_at(40).map(|r| (r * 100.0).round()), Some(97.0));
        assert_eq!(
            preferred(&all).map(|c| c.queries),
            Some(CalibrationQueries::Given)
        );
        assert_eq!(
            preferred(&all[..1]).map(|c| c.queries),
            Some(CalibrationQueries::HeldOutRows)
        );
        let bytes = encode_all(&[given]);
        assert!(
            decode_all(&bytes[..bytes.len() - 4]).is_none(),
            "a truncated section is refused"
        );
        assert!(decode_all(&[]).is_none());
    }
}
