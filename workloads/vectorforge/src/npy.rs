//! Minimal reader for 2-D little-endian float32 `.npy` files (C or Fortran
//! order), used to load real embedding data sets for tests and benchmarks.

use std::path::Path;

use crate::error::{Error, IoContext, Result};

/// A row-major matrix of f32.
pub struct Matrix {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
}

impl Matrix {
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    /// Rows 0, `every`, 2·`every`, ...: the held-out queries of a query/base split
    /// (the GloVe benchmarks and tests hold out every 400th row).
    pub fn held_out_rows(&self, every: usize) -> impl Iterator<Item = &[f32]> {
        (0..self.rows).step_by(every.max(1)).map(|i| self.row(i))
    }

    /// The rows [`Matrix::held_out_rows`] leaves: the base of the same split.
    pub fn base_rows(&self, every: usize) -> impl Iterator<Item = &[f32]> {
        let every = every.max(1);
        (0..self.rows)
            .filter(move |i| i % every != 0)
            .map(|i| self.row(i))
    }
}

fn field<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let i = header.find(&format!("'{key}'"))?;
    let rest = header[i + key.len() + 2..]
        .trim_start()
        .strip_prefix(':')?
        .trim_start();
    Some(rest)
}

pub fn read_f32_matrix(path: &Path) -> Result<Matrix> {
    let bad = |r: &str| Error::Decode(format!("{}: {r}", path.display()));
    let bytes = std::fs::read(path).at(path)?;
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("not an .npy file"));
    }
    let (hlen, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        _ if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        _ => return Err(bad("truncated header")),
    };
    let header = std::str::from_utf8(
        bytes
            .get(start..start + hlen)
            .ok_or_else(|| bad("truncated header"))?,
    )
    .map_err(|_| bad("header is not UTF-8"))?;
    let descr = field(header, "descr").ok_or_else(|| bad("no descr"))?;
    if !descr.starts_with("'<f4'") {
        return Err(bad("only little-endian float32 is supported"));
    }
    let fortran = field(header, "fortran_order").is_some_and(|v| v.starts_with("True"));
    let shape = field(header, "shape").ok_or_else(|| bad("no shape"))?;
    let inner = shape
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| bad("bad shape"))?;
    let dims: Vec<usize> = inner
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().unwrap_or(0))
        .collect();
    let [rows, cols] = dims[..] else {
        return Err(bad("expected a 2-D array"));
    };
    let body = &bytes[start + hlen..];
    if body.len() < rows * cols * 4 {
        return Err(bad("data shorter than the shape"));
    }
    let raw: Vec<f32> = body[..rows * cols * 4]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let data = if fortran {
        let mut d = vec![0f32; rows * cols];
        for j in 0..cols {
            for i in 0..rows {
                d[i * cols + j] = raw[j * rows + i];
            }
        }
        d
    } else {
        raw
    };
    Ok(Matrix { rows, cols, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_out_and_base_rows_split_the_matrix() {
        let m = Matrix {
            rows: 7,
            cols: 1,
            data: (0..7).map(|i| i as f32).collect(),
        };
        let held: Vec<f32> = m.held_out_rows(3).map(|r| r[0]).collect();
        let base: Vec<f32> = m.base_rows(3).map(|r| r[0]).collect();
        assert_eq!(held, [0.0, 3.0, 6.0]);
        assert_eq!(base, [1.0, 2.0, 4.0, 5.0]);
    }

    fn npy(fortran: bool, data: &[f32]) -> Vec<u8> {
        let h = format!(
            "{{'descr': '<f4', 'fortran_order': {}, 'shape': (2, 3), }}",
            if fortran { "True" } else { "False" }
        );
        let mut h = h.into_bytes();
        while (10 + h.len() + 1) % 64 != 0 {
            h.push(b' ');
        }
        h.push(b'\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(h.len() as u16).to_le_bytes());
        out.extend_from_slice(&h);
        data.iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
        out
    }

    #[test]
    fn reads_c_and_fortran_order() {
        let tmp = tempfile::tempdir().unwrap();
        let c = tmp.path().join("c.npy");
        std::fs::write(&c, npy(false, &[1., 2., 3., 4., 5., 6.])).unwrap();
        let f = tmp.path().join("f.npy");
        std::fs::write(&f, npy(true, &[1., 4., 2., 5., 3., 6.])).unwrap();
        for p in [c, f] {
            let m = read_f32_matrix(&p).unwrap();
            assert_eq!((m.rows, m.cols), (2, 3));
            assert_eq!(m.row(1), &[4., 5., 6.]);
        }
    }
}
