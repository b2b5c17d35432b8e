//! Quantized weight matrices and the one matrix-multiply kernel every linear layer runs through.
//!
//! A [`QuantMatrix`] keeps a GGUF weight in its quantized form (Q4_0, Q4_1, Q5_0, Q8_0, Q4_K,
//! Q5_K, Q6_K; any other format is dequantized to f32 at load time) and multiplies it with a
//! batch of f32 activation rows. The kernel unpacks each 32-weight block once and applies it to several activation rows,
//! so decoding one token streams the weights once, and a prefill of many tokens reuses each
//! unpacked block for four tokens.
//!
//! **Batch invariance.** Every output element `y[t][r]` is computed by the same sequence of
//! floating-point operations whatever the batch size, the tile shape or the thread split: one
//! accumulator per (row, token), fed block after block in the same order. The logits of a token
//! therefore depend only on the tokens before it, never on how they were chunked into forward
//! calls or batched with other sequences. Speculation relies on this: a KV cache rolled back and
//! recomputed gives bit-identical results.

mod activations;
mod format;
mod kernel;

pub use activations::QuantizedActs;
pub use format::Format;

use crate::{LmError, Result};
use candle_core::quantized::QTensor;
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
    /// Q4_1, Q4_K and Q5_K only: the per-block offsets `m` as f32, `rows × cols/32`. A row's dot product with
    /// activations is the integer kernel's result plus `Σ_blocks m·s_x`, computed from these.
    offsets: Vec<f32>,
}

impl QuantMatrix {
    /// Takes a 2-D GGUF tensor (candle shape `(rows, cols)`).
    pub fn from_qtensor(tensor: &QTensor) -> Result<Self> {
        let (rows, cols) = tensor.shape().dims2()?;
        let (format, data) = match Format::from_ggml(tensor.dtype()) {
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
        Ok(Self::from_blocks(format, rows, cols, data))
    }

    /// A matrix from raw blocks (`rows × cols/block_len` blocks of `format`).
    pub fn from_blocks(format: Format, rows: usize, cols: usize, data: Vec<u8>) -> Self {
        assert_eq!(
            cols % format.block_len(),
            0,
            "{format:?} with {cols} columns"
        );
        assert_eq!(
            data.len(),
            rows * cols / format.block_len() * format.block_bytes()
        );
        let offsets = match format {
            Format::Q4_1 => kernel::block_scales(format, &data, 2),
            Format::Q4_K | Format::Q5_K => kernel::k_scales(format, &data).1,
            _ => Vec::new(),
        };
        Self {
            format,
            rows,
            cols,
            data,
            offsets,
        }
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

    fn row_data(&self, r: usize) -> &[u8] {
        let n = self.row_bytes();
        &self.data[r * n..(r + 1) * n]
    }

    fn row(&self, r: usize) -> kernel::Row<'_> {
        kernel::Row {
            bytes: self.row_data(r),
        }
    }

    /// Writes row `r`, dequantized, into `out` (length `cols`). Used for embedding lookups.
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        kernel::dequantize_row(self.format, self.row_data(r), out);
    }

    /// `y = x · Wᵀ` for `n` activation rows: `x` is `n × cols`, `y` is `n × rows`, row-major.
    pub fn matmul(&self, x: &[f32], n: usize, y: &mut [f32]) {
        matmul_concat(std::slice::from_ref(self), x, n, y);
    }

    /// Computes the output columns `rows` for all `n` activation rows. Tokens go four at a
    /// time through each row (the unpacked block is reused four times); leftover tokens go
    /// one at a time through four rows at once (four independent accumulator chains).
    ///
    /// Output row `t` starts at `out + t * stride`; this matrix's first column is at `out`.
    unsafe fn matmul_rows(
        &self,
        x: &[f32],
        q: Option<&QuantizedActs>,
        n: usize,
        rows: std::ops::Range<usize>,
        out: &SharedOut,
        stride: usize,
    ) {
        let cols = self.cols;
        let rhs = |t0| kernel::Rhs { x, q, t0 };
        let blocks = cols / 32;
        // The value of (row r, token t) from the kernel's partial result.
        let finish = |r: usize, t: usize, partial: f32| match (self.offsets.is_empty(), q) {
            (false, Some(q)) => {
                let m = &self.offsets[r * blocks..(r + 1) * blocks];
                partial + crate::kernel::dot(m, &q.s[t * blocks..(t + 1) * blocks])
            }
            _ => partial,
        };
        let mut t = 0;
        while t + 4 <= n {
            for r in rows.clone() {
                let mut acc = [[0f32; 4]; 1];
                kernel::tile::<1, 4>(self.format, |_| self.row(r), &rhs(t), cols, &mut acc);
                for (b, a) in acc[0].iter().enumerate() {
                    unsafe { out.write((t + b) * stride + r, finish(r, t + b, *a)) };
                }
            }
            t += 4;
        }
        for t in t..n {
            let mut r = rows.start;
            while r + 4 <= rows.end {
                let mut acc = [[0f32; 1]; 4];
                kernel::tile::<4, 1>(self.format, |i| self.row(r + i), &rhs(t), cols, &mut acc);
                for (i, a) in acc.iter().enumerate() {
                    unsafe { out.write(t * stride + r + i, finish(r + i, t, a[0])) };
                }
                r += 4;
            }
            for r in r..rows.end {
                let mut acc = [[0f32; 1]; 1];
                kernel::tile::<1, 1>(self.format, |_| self.row(r), &rhs(t), cols, &mut acc);
                unsafe { out.write(t * stride + r, finish(r, t, acc[0][0])) };
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
    let quantized = parts
        .iter()
        .any(|p| p.format != Format::F32)
        .then(|| QuantizedActs::new(x, cols));
    let base = SharedOut(y.as_mut_ptr());
    tasks.into_par_iter().for_each(|(i, offset, rows)| {
        // SAFETY: each task writes only its own output columns (offset + rows) of every output
        // row, so no two tasks touch the same element, and `y` outlives the parallel loop.
        let out = unsafe { base.offset(offset) };
        unsafe { parts[i].matmul_rows(x, quantized.as_ref(), n, rows, &out, stride) };
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

#[cfg(test)]
mod tests {
    use super::kernel::tests::{FORMATS, block};
    use super::*;

    fn matrix(format: Format, rows: usize, cols: usize, seed: u64) -> QuantMatrix {
        let data: Vec<u8> = (0..rows * cols / format.block_len())
            .flat_map(|k| block(format, seed + 7 * k as u64))
            .collect();
        QuantMatrix::from_blocks(format, rows, cols, data)
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    #[test]
    fn matmul_equals_the_dot_product_with_the_dequantized_weights() {
        let (rows, cols, n) = (6, 512, 11);
        for format in FORMATS {
            let m = matrix(format, rows, cols, 1);
            let x: Vec<f32> = (0..n * cols)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
                .collect();
            let mut y = vec![0f32; n * rows];
            m.matmul(&x, n, &mut y);
            let mut w = vec![0f32; cols];
            for r in 0..rows {
                m.dequantize_row(r, &mut w);
                for t in 0..n {
                    let xt = &x[t * cols..(t + 1) * cols];
                    let exact: f64 = w.iter().zip(xt).map(|(w, x)| *w as f64 * *x as f64).sum();
                    let magnitude: f64 =
                        w.iter().zip(xt).map(|(w, x)| (*w * *x).abs() as f64).sum();
                    // Quantized weights meet 16-bit activations: at most half a step
                    // (max|x| / 65534, |x| <= 2 here) of error per weight, plus float rounding:
                    // one rounding per block and lane sum (cols/32 + 8 of them), each at most
                    // 2^-24 of Σ|w·x|.
                    let bound: f64 = w.iter().map(|w| (*w as f64).abs() * 2.0 / 65534.0).sum();
                    let rounding = (cols / 32 + 8) as f64 * f32::EPSILON as f64 / 2.0 * magnitude;
                    let tol = if format == Format::F32 {
                        1e-4
                    } else {
                        bound + rounding + 1e-6
                    };
                    let got = y[t * rows + r] as f64;
                    assert!(
                        (exact - got).abs() <= tol,
                        "{format:?} r{r} t{t}: {exact} vs {got}"
                    );
                }
            }
            // Each token's outputs are bit-identical when computed alone.
            for t in 0..n {
                let mut alone = vec![0f32; rows];
                m.matmul(&x[t * cols..(t + 1) * cols], 1, &mut alone);
                assert_eq!(
                    bits(&alone),
                    bits(&y[t * rows..(t + 1) * rows]),
                    "{format:?}"
                );
            }
        }
    }

    /// The K formats against candle's dequantization (the ggml reference), through the GGUF
    /// loading path: random super-blocks (random bytes everywhere but the f16 scales, so every
    /// packed scale, minimum and high bit pattern occurs).
    #[test]
    fn k_formats_dequantize_like_candle() {
        use candle_core::quantized::{GgmlDType, QStorage};
        let (rows, cols) = (5, 768);
        for (format, dtype) in [
            (Format::Q4_K, GgmlDType::Q4K),
            (Format::Q5_K, GgmlDType::Q5K),
            (Format::Q6_K, GgmlDType::Q6K),
        ] {
            let data = matrix(format, rows, cols, 3).data;
            let device = candle_core::Device::Cpu;
            let storage = QStorage::from_data(std::borrow::Cow::Borrowed(&data), &device, dtype);
            let tensor = QTensor::new(storage.unwrap(), (rows, cols)).unwrap();
            let reference: Vec<f32> = tensor
                .dequantize(&device)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let m = QuantMatrix::from_qtensor(&tensor).unwrap();
            assert_eq!(m.format(), format, "loaded natively");
            let mut w = vec![0f32; cols];
            for r in 0..rows {
                m.dequantize_row(r, &mut w);
                // Every weight is exact in f32 both ways (at most 24 significant bits before the
                // one rounding of the minimum's subtraction), so the values agree exactly (as
                // values: candle's d·sc·0 is −0 for a negative Q6_K scale, ours +0).
                let reference = &reference[r * cols..(r + 1) * cols];
                for (i, (ours, theirs)) in w.iter().zip(reference).enumerate() {
                    assert_eq!(ours, theirs, "{format:?} row {r} weight {i}");
                }
            }
        }
    }

    #[test]
    fn integer_activations_give_the_exact_dot_product() {
        // x already on the 16-bit grid (every block holds ±32767): only float rounding is left.
        let (rows, cols) = (3, 256);
        for format in FORMATS {
            let m = matrix(format, rows, cols, 40);
            let x: Vec<f32> = (0..cols)
                .map(|i| {
                    if i % 32 == 0 {
                        32767.0
                    } else {
                        ((i * 4099) % 65535) as f32 - 32767.0
                    }
                })
                .collect();
            let mut y = vec![0f32; rows];
            m.matmul(&x, 1, &mut y);
            let mut w = vec![0f32; cols];
            for (r, got) in y.iter().enumerate() {
                m.dequantize_row(r, &mut w);
                let exact: f64 = w.iter().zip(&x).map(|(w, x)| *w as f64 * *x as f64).sum();
                let err = (exact - *got as f64).abs();
                assert!(
                    err < 1e-4 * (1.0 + exact.abs()),
                    "{format:?}: {exact} vs {got}"
                );
            }
        }
    }
}
