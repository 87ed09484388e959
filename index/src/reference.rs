//! The reference graph builder: `hnsw_rs`, its graph extracted through its
//! public accessors into our layout. Kept to test our own builder against
//! (`BuildParams::builder = GraphBuilder::HnswRs`, `--builder hnsw_rs`).

use hnsw_rs::anndists::dist::Distance;
use hnsw_rs::hnsw::Hnsw;

use crate::error::{IndexError, Result};
use crate::graph::Graph;
use crate::kernel;

/// hnsw_rs distance over normalised vectors: 1 − dot, with our kernel.
struct DotDistance;

impl Distance<f32> for DotDistance {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        (1.0 - kernel::dot(a, b)).max(0.0)
    }
}

/// Build the graph of the normalised `vectors` with hnsw_rs, inserting in `order`.
pub(crate) fn build(
    vectors: &[f32],
    dim: usize,
    order: &[usize],
    m: usize,
    ef_construction: usize,
    deterministic: bool,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Graph> {
    let n = vectors.len() / dim;
    let m0 = 2 * m;
    let row = |r: usize| &vectors[r * dim..(r + 1) * dim];
    let hnsw: Hnsw<f32, DotDistance> = Hnsw::new(m, n, 16, ef_construction, DotDistance);
    let batch = 10_000;
    for (i, chunk) in order.chunks(batch).enumerate() {
        if deterministic {
            for &r in chunk {
                hnsw.insert_slice((row(r), r));
            }
        } else {
            let data: Vec<(&[f32], usize)> = chunk.iter().map(|&r| (row(r), r)).collect();
            hnsw.parallel_insert_slice(&data);
        }
        progress((i * batch + chunk.len()).min(n), n);
    }

    // Extract: per row its level and neighbour rows on each level.
    let mut level0 = vec![0u32; n * (m0 + 1)];
    let mut levels = vec![0u8; n];
    let mut uppers: Vec<Vec<Vec<u32>>> = vec![Vec::new(); n];
    let mut seen = 0usize;
    for point in hnsw.get_point_indexation() {
        let row = point.get_origin_id();
        let level = point.get_point_id().0 as usize;
        let hood = point.get_neighborhood_id();
        let neighbours = |l: usize, cap: usize| -> Vec<u32> {
            let mut ns = hood.get(l).cloned().unwrap_or_default();
            ns.sort_by(|a, b| a.distance.total_cmp(&b.distance).then(a.d_id.cmp(&b.d_id)));
            ns.iter()
                .filter(|nb| nb.d_id != row)
                .take(cap)
                .map(|nb| nb.d_id as u32)
                .collect()
        };
        let l0 = neighbours(0, m0);
        let block = &mut level0[row * (m0 + 1)..(row + 1) * (m0 + 1)];
        block[0] = l0.len() as u32;
        block[1..=l0.len()].copy_from_slice(&l0);
        levels[row] = level as u8;
        uppers[row] = (1..=level).map(|l| neighbours(l, m)).collect();
        seen += 1;
    }
    if seen != n {
        return Err(IndexError::BadParams(format!("graph holds {seen} of {n} rows")));
    }
    // Entry point: the first row, in insertion order, on the top level.
    let max_level = levels.iter().copied().max().unwrap_or(0);
    let entry_point = order
        .iter()
        .copied()
        .find(|&r| levels[r] == max_level)
        .unwrap_or(0) as u32;
    let mut upper_index = vec![u32::MAX; n];
    let mut upper: Vec<u32> = Vec::new();
    for (row, lists) in uppers.iter().enumerate() {
        if lists.is_empty() {
            continue;
        }
        upper_index[row] = u32::try_from(upper.len())
            .map_err(|_| IndexError::BadParams("upper levels exceed 2^32 words".into()))?;
        upper.push(lists.len() as u32);
        for list in lists {
            upper.push(list.len() as u32);
            upper.extend_from_slice(list);
            upper.extend(std::iter::repeat_n(0u32, m - list.len()));
        }
    }
    Ok(Graph {
        m,
        m0,
        level0,
        upper_index,
        upper,
        entry_point,
        max_level: u32::from(max_level),
    })
}
