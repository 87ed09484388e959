//! The recall calibration as recorded: measured recall@k per search breadth
//! and its `CALIBRATION` section bytes (`FORMAT.md`). `calibrate.rs` measures
//! it at build time; a partition reads it back.

/// Measured recall@k of a graph, per search breadth.
#[derive(Clone, Debug, PartialEq)]
pub struct Calibration {
    /// Neighbours per query.
    pub k: usize,
    /// Queries (sampled rows).
    pub sample: usize,
    /// Rows in the graph when it was measured (an append may keep it).
    pub rows: usize,
    /// (ef, recall), ef ascending.
    pub points: Vec<(usize, f64)>,
}

impl Calibration {
    /// The smallest measured breadth whose recall reaches `recall`, if any
    /// (within 1e-6: recalls are stored as f32).
    pub fn ef_for(&self, recall: f64) -> Option<usize> {
        self.points.iter().find(|p| p.1 >= recall - 1e-6).map(|p| p.0)
    }

    /// The recall measured at the largest breadth not above `ef` (`None` below the ladder).
    pub fn recall_at(&self, ef: usize) -> Option<f64> {
        self.points.iter().rev().find(|p| p.0 <= ef).map(|p| p.1)
    }

    /// The section bytes: u32 words `k`, `sample`, `rows`, `points`, then
    /// per point `ef` and the recall as f32 bits.
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

    /// Parse the section bytes; `None` when they are not a calibration.
    pub(crate) fn decode(bytes: &[u8]) -> Option<Calibration> {
        if bytes.len() % 4 != 0 || bytes.len() < 16 {
            return None;
        }
        let w: Vec<u32> = bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let points = w[3] as usize;
        if w.len() != 4 + 2 * points {
            return None;
        }
        let points: Vec<(usize, f64)> = w[4..]
            .chunks_exact(2)
            .map(|p| (p[0] as usize, f64::from(f32::from_bits(p[1]))))
            .collect();
        if points.windows(2).any(|p| p[0].0 >= p[1].0) || points.iter().any(|p| !(0.0..=1.0).contains(&p.1)) {
            return None;
        }
        Some(Calibration {
            k: w[0] as usize,
            sample: w[1] as usize,
            rows: w[2] as usize,
            points,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_and_decodes_and_answers_the_smallest_breadth() {
        let c = Calibration {
            k: 10,
            sample: 256,
            rows: 5000,
            points: vec![(16, 0.81), (32, 0.9), (64, 0.951), (128, 0.99)],
        };
        let d = Calibration::decode(&c.encode()).expect("decodes");
        assert_eq!(d.points.len(), 4);
        assert_eq!((d.k, d.sample, d.rows), (10, 256, 5000));
        assert_eq!(d.ef_for(0.90), Some(32));
        assert_eq!(d.ef_for(0.95), Some(64));
        assert_eq!(d.ef_for(0.98), Some(128));
        assert_eq!(d.ef_for(0.995), None);
        assert_eq!(d.recall_at(100).map(|r| (r * 1000.0).round()), Some(951.0));
        assert_eq!(d.recall_at(8), None);
        assert!(Calibration::decode(&[1, 2, 3]).is_none());
    }
}
