//! Float32 matrices on disk, for benchmarks and peers: `.npy` (float32 or
//! float64, C order, 2-D), `.fvecs`, and raw little-endian `.f32` with a given
//! dimension. The same formats `shared/bench/peer_ann.py` reads.

use std::fs;
use std::io::Write;
use std::path::Path;

use crate::error::{IndexError, Result};
use crate::write::write_atomic;

/// A row-major matrix of `rows × dim` values.
#[derive(Clone, Debug, PartialEq)]
pub struct Matrix {
    pub dim: usize,
    pub data: Vec<f32>,
}

impl Matrix {
    pub fn rows(&self) -> usize {
        self.data.len().checked_div(self.dim).unwrap_or(0)
    }

    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    pub fn to_rows(&self) -> Vec<Vec<f32>> {
        self.data.chunks_exact(self.dim).map(<[f32]>::to_vec).collect()
    }
}

fn bad(path: &Path, reason: impl Into<String>) -> IndexError {
    IndexError::BadVectorFile {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Read a matrix; `dim` is needed for raw files only. A matrix without rows
/// or with rows of no values is an error naming the file.
pub fn read_matrix(path: &Path, dim: Option<usize>) -> Result<Matrix> {
    let m = read_any(path, dim)?;
    if m.dim == 0 {
        return Err(bad(path, "its vectors have 0 dimensions"));
    }
    if m.data.is_empty() {
        return Err(bad(
            path,
            format!("it holds no vectors (0 rows of {} dimensions)", m.dim),
        ));
    }
    Ok(m)
}

fn read_any(path: &Path, dim: Option<usize>) -> Result<Matrix> {
    let bytes = fs::read(path).map_err(|e| IndexError::io(path, e))?;
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    match ext {
        "npy" => read_npy(path, &bytes),
        "fvecs" => read_fvecs(path, &bytes),
        _ => {
            let dim = dim.ok_or_else(|| bad(path, "a raw float32 file needs --dim"))?;
            if dim == 0 || bytes.len() % (4 * dim) != 0 {
                return Err(bad(
                    path,
                    format!(
                        "{} bytes is not a whole number of {dim}-dim float32 rows",
                        bytes.len()
                    ),
                ));
            }
            Ok(Matrix {
                dim,
                data: bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            })
        }
    }
}

fn read_fvecs(path: &Path, bytes: &[u8]) -> Result<Matrix> {
    if bytes.len() < 4 {
        return Err(bad(path, "empty .fvecs file"));
    }
    let dim = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    let stride = 4 * (dim + 1);
    if dim == 0 || !bytes.len().is_multiple_of(stride) {
        return Err(bad(path, format!("not a .fvecs file of dimension {dim}")));
    }
    let mut data = Vec::with_capacity(bytes.len() / stride * dim);
    for rec in bytes.chunks_exact(stride) {
        if u32::from_le_bytes([rec[0], rec[1], rec[2], rec[3]]) as usize != dim {
            return Err(bad(path, "rows of different dimensions"));
        }
        data.extend(
            rec[4..]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        );
    }
    Ok(Matrix { dim, data })
}

fn read_npy(path: &Path, bytes: &[u8]) -> Result<Matrix> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad(path, "not a .npy file"));
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(bad(path, format!(".npy version {v}"))),
    };
    let header = bytes
        .get(start..start + header_len)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| bad(path, "unreadable .npy header"))?;
    let field = |key: &str| -> Option<&str> {
        let at = header.find(&format!("'{key}'"))? + key.len() + 2;
        Some(header[at..].trim_start_matches([':', ' ']))
    };
    let descr = field("descr").ok_or_else(|| bad(path, "no descr"))?;
    let wide = if descr.starts_with("'<f4'") {
        false
    } else if descr.starts_with("'<f8'") {
        true
    } else {
        return Err(bad(
            path,
            format!(
                "dtype {}, expected <f4 or <f8",
                &descr[..descr.find(',').unwrap_or(descr.len())]
            ),
        ));
    };
    if field("fortran_order").is_some_and(|f| f.starts_with("True")) {
        return Err(bad(path, "Fortran-ordered arrays are not supported"));
    }
    let shape = field("shape").ok_or_else(|| bad(path, "no shape"))?;
    let inner = &shape[shape.find('(').map_or(0, |i| i + 1)..shape.find(')').unwrap_or(0)];
    let dims: Vec<usize> = inner
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let [rows, dim] = dims[..] else {
        return Err(bad(path, format!("shape ({inner}) is not 2-D")));
    };
    if dim == 0 {
        return Err(bad(
            path,
            format!("shape ({rows}, 0): its vectors have 0 dimensions"),
        ));
    }
    if rows == 0 {
        return Err(bad(path, format!("shape (0, {dim}): it holds no vectors")));
    }
    let body = &bytes[start + header_len..];
    let width = if wide { 8 } else { 4 };
    if rows.checked_mul(dim).and_then(|n| n.checked_mul(width)) != Some(body.len()) {
        return Err(bad(
            path,
            format!("{} data bytes for shape ({rows}, {dim})", body.len()),
        ));
    }
    let data = if wide {
        body.chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32)
            .collect()
    } else {
        body.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    };
    Ok(Matrix { dim, data })
}

/// The bytes before the data of a float32 `.npy` file (version 1.0) whose
/// header declares `shape` (a Python tuple, e.g. `(10, 4)`): magic, version,
/// header length and header, padded so the data starts on a 64-byte boundary.
pub fn npy_prefix(shape: &str) -> Vec<u8> {
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes
}

/// Write a float32 `.npy` file (version 1.0), atomically.
pub fn write_npy(path: &Path, m: &Matrix) -> Result<()> {
    let prefix = npy_prefix(&format!("({}, {})", m.rows(), m.dim));
    write_atomic(path, |w| {
        w.write_all(&prefix)?;
        w.write_all(bytemuck::cast_slice(&m.data))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_round_trips_and_raw_and_fvecs_read() {
        let dir = tempfile::tempdir().unwrap();
        let m = Matrix {
            dim: 3,
            data: vec![1.0, 2.0, 3.0, -4.0, 5.5, 6.25],
        };
        let npy = dir.path().join("m.npy");
        write_npy(&npy, &m).unwrap();
        assert_eq!(read_matrix(&npy, None).unwrap(), m);
        let raw = dir.path().join("m.f32");
        std::fs::write(&raw, bytemuck::cast_slice::<f32, u8>(&m.data)).unwrap();
        assert_eq!(read_matrix(&raw, Some(3)).unwrap(), m);
        assert!(read_matrix(&raw, None).is_err());
        assert!(read_matrix(&raw, Some(4)).is_err());
        let mut fv = Vec::new();
        for r in m.data.chunks(3) {
            fv.extend_from_slice(&3u32.to_le_bytes());
            fv.extend(r.iter().flat_map(|x| x.to_le_bytes()));
        }
        let fvecs = dir.path().join("m.fvecs");
        std::fs::write(&fvecs, fv).unwrap();
        assert_eq!(read_matrix(&fvecs, None).unwrap(), m);
    }

    /// A float32 `.npy` of any declared shape and `values` as its data.
    fn npy_with_shape(path: &Path, shape: &str, values: &[f32]) {
        let mut bytes = npy_prefix(shape);
        bytes.extend_from_slice(bytemuck::cast_slice(values));
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn empty_shapes_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        for (name, shape) in [
            ("n0.npy", "(5, 0)"),
            ("zero_rows.npy", "(0, 4)"),
            ("huge.npy", "(18446744073709551615, 4)"),
        ] {
            let path = dir.path().join(name);
            npy_with_shape(&path, shape, &[]);
            let e = read_matrix(&path, None).unwrap_err().to_string();
            assert!(e.contains(name) && e.contains("cannot read vectors"), "{e}");
        }
        let empty = dir.path().join("empty.f32");
        std::fs::write(&empty, b"").unwrap();
        let e = read_matrix(&empty, Some(4)).unwrap_err().to_string();
        assert!(e.contains("empty.f32") && e.contains("no vectors"), "{e}");
    }
}
