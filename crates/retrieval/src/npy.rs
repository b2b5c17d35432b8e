//! Passage vectors that users bring as a NumPy `.npy` file: one `(rows, dims)` matrix of
//! little-endian float32 (`<f4`) or float16 (`<f2`) in C order, header format version 1, 2
//! or 3. This module owns reading and validating such files ([`NpyVectors`]); building an
//! index from them is the index builder's job.
//!
//! The file is memory-mapped and rows are decoded to f32 a chunk at a time
//! ([`NpyVectors::read_rows`], [`NpyVectors::chunks`]), so a file larger than RAM costs only
//! one chunk of memory: the kernel pages the mapping in and out.
//!
//! Why not a crate: `npyz` (the maintained `.npy` crate, with f16 through `half`) reads
//! through `io::Read` one element at a time and silently converts big-endian or other float
//! types; here every unsupported header must be a clear error naming the file, and rows are
//! decoded in bulk straight from the mapping. The header is a small Python dict literal, so
//! the parser below is short.

use std::fmt;
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::error::{IoContext, Result, RetrievalError};

mod header;

use header::Header;

pub use crate::error::{UNIT_NORM_TOLERANCE, VectorFault};

/// Floats per chunk in [`NpyVectors::validate`] (16 MiB decoded; 5,461 rows of 768).
const VALIDATE_CHUNK_FLOATS: usize = 4 << 20;

/// The element type of a vectors file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    /// `<f4`: little-endian IEEE float32.
    F32,
    /// `<f2`: little-endian IEEE float16, widened to f32 when read.
    F16,
}

impl Dtype {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 => 2,
        }
    }

    /// NumPy's `descr` string.
    pub fn descr(self) -> &'static str {
        match self {
            Dtype::F32 => "<f4",
            Dtype::F16 => "<f2",
        }
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dtype::F32 => "float32",
            Dtype::F16 => "float16",
        })
    }
}

/// Consecutive rows of a vectors file, decoded to f32.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    /// Index of the chunk's first row in the file.
    pub first_row: usize,
    /// `rows × dims` floats, row-major.
    pub values: Vec<f32>,
}

/// A memory-mapped `.npy` file of passage vectors, one row per passage.
pub struct NpyVectors {
    path: PathBuf,
    map: Mmap,
    /// Byte offset of the first element (after the header).
    data: usize,
    rows: usize,
    dims: usize,
    dtype: Dtype,
}

impl fmt::Debug for NpyVectors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NpyVectors")
            .field("path", &self.path)
            .field("rows", &self.rows)
            .field("dims", &self.dims)
            .field("dtype", &self.dtype)
            .finish()
    }
}

impl NpyVectors {
    /// Maps `path` and checks its header and length; values are only read by
    /// [`read_rows`](Self::read_rows), [`chunks`](Self::chunks) and
    /// [`validate`](Self::validate).
    pub fn open(path: &Path) -> Result<NpyVectors> {
        let file = File::open(path).at(path)?;
        let len = file.metadata().at(path)?.len();
        let bad = |reason: String| RetrievalError::BadNpy {
            path: path.to_owned(),
            reason,
        };
        if len < 10 {
            return Err(bad(format!(
                "{len} bytes is too short for a .npy file (no header)"
            )));
        }
        // SAFETY: the mapping is read-only. Another process truncating or rewriting the file
        // while it is mapped would change (or fault on) what we read; vectors files are inputs
        // that nothing in ralmspec writes to while an index is built from them.
        let map = unsafe { Mmap::map(&file) }.at(path)?;
        #[cfg(unix)]
        let _ = map.advise(memmap2::Advice::Sequential);
        let header = Header::parse(&map).map_err(bad)?;
        let size = header.dtype.size();
        let need = header
            .rows
            .checked_mul(header.dims)
            .and_then(|n| n.checked_mul(size))
            .ok_or_else(|| {
                bad(format!(
                    "shape ({}, {}) is too large to address",
                    header.rows, header.dims
                ))
            })?;
        let have = map.len() - header.data;
        if have != need {
            let what = if have < need {
                "truncated"
            } else {
                "has trailing bytes"
            };
            return Err(bad(format!(
                "{what}: shape ({}, {}) of {} needs {need} bytes of data, the file holds {have}",
                header.rows, header.dims, header.dtype
            )));
        }
        Ok(NpyVectors {
            path: path.to_owned(),
            map,
            data: header.data,
            rows: header.rows,
            dims: header.dims,
            dtype: header.dtype,
        })
    }

    /// The file, as given to [`open`](Self::open).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of vectors (the shape's first entry).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Length of every vector (the shape's second entry).
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// The element type on disk.
    pub fn dtype(&self) -> Dtype {
        self.dtype
    }

    /// Checks the shape against the corpus (`expected_rows` passages) and the encoder
    /// (`expected_dims`); see [`check_for`](Self::check_for) for messages that name the
    /// encoder.
    pub fn check(&self, expected_rows: usize, expected_dims: usize) -> Result<()> {
        self.check_shape(expected_rows, expected_dims, None)
    }

    /// [`check`](Self::check) against `passages` rows and `encoder`'s dimension, with the
    /// encoder's name in the error.
    pub fn check_for(&self, passages: usize, encoder: &crate::Encoder) -> Result<()> {
        self.check_shape(passages, encoder.dim(), Some(encoder.name()))
    }

    fn check_shape(&self, rows: usize, dims: usize, encoder: Option<&str>) -> Result<()> {
        if self.rows != rows {
            return Err(RetrievalError::VectorRows {
                path: self.path.clone(),
                rows: self.rows,
                passages: rows,
            });
        }
        if self.dims != dims {
            return Err(RetrievalError::VectorDims {
                path: self.path.clone(),
                dims: self.dims,
                expected: dims,
                encoder: encoder.map(str::to_owned),
            });
        }
        Ok(())
    }

    /// Rows `range` decoded to f32, `range.len() × dims` floats, row-major.
    pub fn read_rows(&self, range: Range<usize>) -> Result<Vec<f32>> {
        if range.start > range.end || range.end > self.rows {
            return Err(RetrievalError::BadNpy {
                path: self.path.clone(),
                reason: format!("rows {range:?} asked for, the file has {} rows", self.rows),
            });
        }
        Ok(self.decode(range))
    }

    /// The whole file in chunks of at most `rows_per_chunk` rows (at least 1), in order.
    pub fn chunks(&self, rows_per_chunk: usize) -> Chunks<'_> {
        Chunks {
            vectors: self,
            next: 0,
            step: rows_per_chunk.max(1),
        }
    }

    /// Checks the rows of one chunk starting at row `first_row`: every value finite, every
    /// row's norm above 0 and, when `unit_norm`, within [`UNIT_NORM_TOLERANCE`] of 1. The error
    /// names the file and the first bad row.
    pub fn check_values(&self, first_row: usize, values: &[f32], unit_norm: bool) -> Result<()> {
        if self.dims == 0 {
            return Ok(());
        }
        for (i, row) in values.chunks(self.dims).enumerate() {
            if let Some(fault) = row_fault(row, unit_norm) {
                return Err(RetrievalError::BadVector {
                    path: self.path.clone(),
                    row: first_row + i,
                    fault,
                });
            }
        }
        Ok(())
    }

    /// Reads the whole file once, chunk by chunk, with [`check_values`](Self::check_values).
    pub fn validate(&self, unit_norm: bool) -> Result<()> {
        let step = (VALIDATE_CHUNK_FLOATS / self.dims.max(1)).max(1);
        for chunk in self.chunks(step) {
            self.check_values(chunk.first_row, &chunk.values, unit_norm)?;
        }
        Ok(())
    }

    /// Rows `range` (in bounds) decoded to f32.
    fn decode(&self, range: Range<usize>) -> Vec<f32> {
        let size = self.dtype.size();
        let row_bytes = self.dims * size;
        let bytes =
            &self.map[self.data + range.start * row_bytes..self.data + range.end * row_bytes];
        match self.dtype {
            Dtype::F32 => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F16 => bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
        }
    }
}

/// Iterator over a file's rows in [`Chunk`]s (see [`NpyVectors::chunks`]).
pub struct Chunks<'a> {
    vectors: &'a NpyVectors,
    next: usize,
    step: usize,
}

impl Iterator for Chunks<'_> {
    type Item = Chunk;

    fn next(&mut self) -> Option<Chunk> {
        if self.next >= self.vectors.rows {
            return None;
        }
        let end = (self.next + self.step).min(self.vectors.rows);
        let chunk = Chunk {
            first_row: self.next,
            values: self.vectors.decode(self.next..end),
        };
        self.next = end;
        Some(chunk)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = (self.vectors.rows - self.next.min(self.vectors.rows)).div_ceil(self.step);
        (n, Some(n))
    }
}

/// The first thing wrong with `row`, if any.
fn row_fault(row: &[f32], unit_norm: bool) -> Option<VectorFault> {
    if row.iter().any(|x| x.is_nan()) {
        return Some(VectorFault::NaN);
    }
    if row.iter().any(|x| x.is_infinite()) {
        return Some(VectorFault::Infinite);
    }
    let norm = row
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt() as f32;
    if norm == 0.0 {
        return Some(VectorFault::ZeroNorm);
    }
    if unit_norm && (norm - 1.0).abs() > UNIT_NORM_TOLERANCE {
        return Some(VectorFault::NotUnit { norm });
    }
    None
}

#[cfg(test)]
mod tests;
