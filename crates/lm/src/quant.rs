//! Quantized weight matrices and the one matrix-multiply kernel every linear layer runs through.
//!
//! A [`QuantMatrix`] keeps a GGUF weight in its quantized form (Q4_0, Q4_1, Q5_0, Q8_0; any other
//! format is dequantized to f32 at load time) and multiplies it with a batch of f32 activation
//! rows. The kernel dequantizes each 32-weight block once and applies it to every activation row
//! of the batch, so decoding one token streams the weights once, and a prefill of many tokens
//! reuses each dequantized block for up to eight tokens.
//!
//! **Batch invariance.** Every output element `y[t][r]` is computed by the same sequence of
//! floating-point operations whatever the batch size, the tile shape or the thread split: one
//! accumulator per (row, token), fed block after block in the same order. The logits of a token
//! therefore depend only on the tokens before it, never on how they were chunked into forward
//! calls or batched with other sequences. Speculation relies on this: a KV cache rolled back and
//! recomputed gives bit-identical results.

mod format;
mod kernel;

pub use format::Format;

use crate::{LmError, Result};
use candle_core::quantized::{GgmlDType, QTensor};
use rayon::prelude::*;

/// Rows handled per parallel task: small enough to balance two to sixteen cores, large enough
/// that the scheduling cost stays far below the work.
const ROWS_PER_TASK: usize = 64;

/// A weight matrix of shape (rows = output features, cols = input features).
#[derive(Debug, Clone)]
pub struct QuantMatrix {
    format: Format,
    rows: usize,
    cols: usize,
    data: Vec<u8>,
}

impl QuantMatrix {
    /// Takes a 2-D GGUF tensor (candle shape `(rows, cols)`).
    pub fn from_qtensor(tensor: &QTensor) -> Result<Self> {
        let (rows, cols) = tensor.shape().dims2()?;
        let native = Format::from_ggml(tensor.dtype());
        let (format, data) = match native {
            Some(format) => (format, tensor.data()?.into_owned()),
            None => {
                let dense = tensor.dequantize(&candle_core::Device::Cpu)?;
                let values = dense.flatten_all()?.to_vec1::<f32>()?;
                (Format::F32, f32_bytes(&values))
            }
        };
        if cols % format.block_len() != 0 {
            return Err(LmError::Unsupported(format!(
                "a {:?} matrix with {cols} columns (not a multiple of its block of {})",
                tensor.dtype(),
                format.block_len()
            )));
        }
        Ok(Self {
            format,
            rows,
            cols,
            data,
        })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    pub fn format(&self) -> Format {
        self.format
    }

    fn row_bytes(&self) -> usize {
        self.cols / self.format.block_len() * self.format.block_bytes()
    }

    fn row(&self, r: usize) -> &[u8] {
        let n = self.row_bytes();
        &self.data[r * n..(r + 1) * n]
    }

    /// Writes row `r`, dequantized, into `out` (length `cols`). Used for embedding lookups.
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        kernel::dequantize_row(self.format, self.row(r), out);
    }

    /// `y = x · Wᵀ` for `n` activation rows: `x` is `n × cols`, `y` is `n × rows`, row-major.
    pub fn matmul(&self, x: &[f32], n: usize, y: &mut [f32]) {
        matmul_concat(std::slice::from_ref(self), x, n, y);
    }

    /// Computes the output columns `rows` for all `n` activation rows. Tokens go eight at a
    /// time through each row (the dequantized block is reused eight times); leftover tokens go
    /// one at a time through four rows at once (four independent accumulator chains).
    ///
    /// Output row `t` starts at `out + t * stride`; this matrix's first column is at `out`.
    unsafe fn matmul_rows(
        &self,
        x: &[f32],
        n: usize,
        rows: std::ops::Range<usize>,
        out: &SharedOut,
        stride: usize,
    ) {
        let cols = self.cols;
        let mut t = 0;
        while t + 8 <= n {
            let xt = &x[t * cols..(t + 8) * cols];
            for r in rows.clone() {
                let mut acc = [[0f32; 8]; 1];
                kernel::tile::<1, 8>(self.format, |_| self.row(r), xt, cols, &mut acc);
                for (b, a) in acc[0].iter().enumerate() {
                    unsafe { out.write((t + b) * stride + r, *a) };
                }
            }
            t += 8;
        }
        for t in t..n {
            let xt = &x[t * cols..(t + 1) * cols];
            let mut r = rows.start;
            while r + 4 <= rows.end {
                let mut acc = [[0f32; 1]; 4];
                kernel::tile::<4, 1>(self.format, |i| self.row(r + i), xt, cols, &mut acc);
                for (i, a) in acc.iter().enumerate() {
                    unsafe { out.write(t * stride + r + i, a[0]) };
                }
                r += 4;
            }
            for r in r..rows.end {
                let mut acc = [[0f32; 1]; 1];
                kernel::tile::<1, 1>(self.format, |_| self.row(r), xt, cols, &mut acc);
                unsafe { out.write(t * stride + r, acc[0][0]) };
            }
        }
    }
}

/// Multiplies the same activations with several matrices of equal width at once and writes their
/// outputs side by side: `y` is `n × Σ rows`, the first matrix's outputs first. One parallel
/// loop covers all of them (e.g. the q, k and v projections, even when their formats differ).
pub fn matmul_concat(parts: &[QuantMatrix], x: &[f32], n: usize, y: &mut [f32]) {
    let cols = parts[0].cols;
    let stride: usize = parts.iter().map(|p| p.rows).sum();
    assert!(
        parts.iter().all(|p| p.cols == cols),
        "matrices of different widths"
    );
    assert_eq!(x.len(), n * cols, "activation shape");
    assert_eq!(y.len(), n * stride, "output shape");
    let mut tasks = Vec::new();
    let mut offset = 0;
    for (i, part) in parts.iter().enumerate() {
        for start in (0..part.rows).step_by(ROWS_PER_TASK) {
            tasks.push((i, offset, start..(start + ROWS_PER_TASK).min(part.rows)));
        }
        offset += part.rows;
    }
    let base = SharedOut(y.as_mut_ptr());
    tasks.into_par_iter().for_each(|(i, offset, rows)| {
        // SAFETY: each task writes only its own output columns (offset + rows) of every output
        // row, so no two tasks touch the same element, and `y` outlives the parallel loop.
        let out = unsafe { base.offset(offset) };
        unsafe { parts[i].matmul_rows(x, n, rows, &out, stride) };
    });
}

/// The output buffer, written from several threads at disjoint indices.
struct SharedOut(*mut f32);
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}
impl SharedOut {
    unsafe fn offset(&self, by: usize) -> SharedOut {
        SharedOut(unsafe { self.0.add(by) })
    }

    unsafe fn write(&self, index: usize, value: f32) {
        unsafe { *self.0.add(index) = value };
    }
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// The GGUF formats the kernel reads directly, for error messages and reports.
pub fn native_formats() -> &'static [GgmlDType] {
    &[
        GgmlDType::F32,
        GgmlDType::Q4_0,
        GgmlDType::Q4_1,
        GgmlDType::Q5_0,
        GgmlDType::Q8_0,
    ]
}
