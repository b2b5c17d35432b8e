//! The block kernels: an (R rows × B tokens) tile of dot products, block by block.
//!
//! Quantized weights take the integer path: each 32-weight block is multiplied with the 16-bit
//! activations of [`QuantizedActs`] as integers, scaled by both block scales and added to one
//! 8-lane accumulator per (row, token). Weights stored as f32 take the float path over the f32
//! activations. Either way every (row, token) pair sees the same operations in the same order
//! whatever the tile shape, and is summed horizontally in a fixed order at the end: that is what
//! makes the results batch-invariant (see the parent module).

use super::Format;
use super::activations::QuantizedActs;
use half::f16;

/// The right-hand side of a tile: tokens `t0 .. t0 + B` of the activations, as f32 (`x`, with
/// `cols` values per token) and quantized (`q`, required unless the weights are f32).
pub struct Rhs<'a> {
    pub x: &'a [f32],
    pub q: Option<&'a QuantizedActs>,
    pub t0: usize,
}

/// One weight row: its blocks, and their scales as f32 (read once at load time, so the hot loop
/// never converts f16; empty for f32 weights).
#[derive(Clone, Copy)]
pub struct Row<'a> {
    pub bytes: &'a [u8],
    pub scales: &'a [f32],
}

/// The f16 scale of every block of `data` (at byte `at` of each block), as f32.
pub fn block_scales(format: Format, data: &[u8], at: usize) -> Vec<f32> {
    data.chunks_exact(format.block_bytes())
        .map(|b| scale(b, at))
        .collect()
}

/// Accumulates `acc[r][b] = row_r · x_(t0 + b)` for R rows given by `row(r)`.
#[inline]
pub fn tile<'a, const R: usize, const B: usize>(
    format: Format,
    row: impl Fn(usize) -> Row<'a>,
    rhs: &Rhs<'_>,
    cols: usize,
    acc: &mut [[f32; B]; R],
) {
    let rows: [Row<'a>; R] = std::array::from_fn(&row);
    for r in rows {
        assert!(r.bytes.len() >= cols / 32 * format.block_bytes());
        assert!(format == Format::F32 || r.scales.len() >= cols / 32);
    }
    let t0 = rhs.t0;
    if format == Format::F32 {
        let x = &rhs.x[t0 * cols..(t0 + B) * cols];
        // SAFETY: the rows and `x` were bounds-checked above.
        unsafe { imp::tile_f32::<R, B>(rows.map(|r| r.bytes), x, cols, acc) };
        return;
    }
    let q = rhs.q.expect("quantized weights need quantized activations");
    assert!(q.cols == cols && q.qs.len() >= (t0 + B) * cols);
    // SAFETY: the rows and the activations were bounds-checked above.
    unsafe {
        match format {
            Format::Q4_0 => imp::tile_int::<imp::Q4_0, R, B>(rows, q, t0, acc),
            Format::Q4_1 => imp::tile_int::<imp::Q4_1, R, B>(rows, q, t0, acc),
            Format::Q5_0 => imp::tile_int::<imp::Q5_0, R, B>(rows, q, t0, acc),
            Format::Q8_0 => imp::tile_int::<imp::Q8_0, R, B>(rows, q, t0, acc),
            Format::F32 => unreachable!(),
        }
    }
}

/// Dequantizes a whole row into `out` (exactly the weights the kernel multiplies with).
pub fn dequantize_row(format: Format, row: &[u8], out: &mut [f32]) {
    let blocks = out.len() / 32;
    assert!(row.len() >= blocks * format.block_bytes());
    for (i, chunk) in out.chunks_exact_mut(32).enumerate() {
        let block = &row[i * format.block_bytes()..];
        // SAFETY: `block` holds at least one whole block (asserted above).
        unsafe {
            match format {
                Format::F32 => imp::store::<imp::F32>(block, chunk),
                Format::Q4_0 => imp::store::<imp::Q4_0>(block, chunk),
                Format::Q4_1 => imp::store::<imp::Q4_1>(block, chunk),
                Format::Q5_0 => imp::store::<imp::Q5_0>(block, chunk),
                Format::Q8_0 => imp::store::<imp::Q8_0>(block, chunk),
            }
        }
    }
}

fn scale(block: &[u8], at: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([block[at], block[at + 1]])).to_f32()
}

/// The integer weights of a 4-bit block: element j is the low nibble of byte j, element j + 16
/// the high nibble.
#[cfg_attr(target_feature = "avx2", allow(dead_code))] // used by tests and portable builds
fn nibbles(qs: &[u8]) -> [u8; 32] {
    std::array::from_fn(|i| if i < 16 { qs[i] & 15 } else { qs[i - 16] >> 4 })
}

/// Portable reference dequantization of one block, used by tests and non-AVX2 builds.
#[cfg_attr(target_feature = "avx2", allow(dead_code))] // used by tests and portable builds
pub fn dequantize_block_scalar(format: Format, block: &[u8]) -> [f32; 32] {
    match format {
        Format::F32 => {
            std::array::from_fn(|i| f32::from_le_bytes(block[4 * i..4 * i + 4].try_into().unwrap()))
        }
        Format::Q4_0 => {
            let (d, q) = (scale(block, 0), nibbles(&block[2..18]));
            std::array::from_fn(|i| (q[i] as i32 - 8) as f32 * d)
        }
        Format::Q4_1 => {
            let (d, m, q) = (scale(block, 0), scale(block, 2), nibbles(&block[4..20]));
            std::array::from_fn(|i| (q[i] as f32).mul_add(d, m))
        }
        Format::Q5_0 => {
            let d = scale(block, 0);
            let qh = u32::from_le_bytes(block[2..6].try_into().unwrap());
            let q = nibbles(&block[6..22]);
            std::array::from_fn(|i| ((q[i] as u32 | ((qh >> i) & 1) << 4) as i32 - 16) as f32 * d)
        }
        Format::Q8_0 => {
            let d = scale(block, 0);
            std::array::from_fn(|i| block[2 + i] as i8 as f32 * d)
        }
    }
}

#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
#[path = "kernel_avx2.rs"]
mod imp;

#[cfg(not(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
)))]
#[path = "kernel_portable.rs"]
mod imp;

#[cfg(test)]
#[allow(clippy::needless_range_loop)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (s >> 33) as u8
            })
            .collect()
    }

    /// A block with sane f16 scales (random bytes could make NaN or huge scales).
    pub(crate) fn block(format: Format, seed: u64) -> Vec<u8> {
        let mut b = random_bytes(format.block_bytes(), seed);
        let put = |b: &mut Vec<u8>, at: usize, v: f32| {
            b[at..at + 2].copy_from_slice(&f16::from_f32(v).to_bits().to_le_bytes())
        };
        match format {
            Format::F32 => {
                for i in 0..32 {
                    let v = (i as f32 - 16.0) * 0.01 * (seed % 7) as f32;
                    b[4 * i..4 * i + 4].copy_from_slice(&v.to_le_bytes());
                }
            }
            Format::Q4_1 => {
                put(&mut b, 0, 0.013);
                put(&mut b, 2, -0.07);
            }
            _ => put(&mut b, 0, 0.021),
        }
        b
    }

    pub(crate) const FORMATS: [Format; 5] = [
        Format::F32,
        Format::Q4_0,
        Format::Q4_1,
        Format::Q5_0,
        Format::Q8_0,
    ];

    #[test]
    fn simd_dequantization_matches_the_scalar_definition() {
        for format in FORMATS {
            for seed in 0..20 {
                let b = block(format, seed);
                let mut out = [0f32; 32];
                dequantize_row(format, &b, &mut out);
                assert_eq!(out, dequantize_block_scalar(format, &b), "{format:?}");
            }
        }
    }

    #[test]
    fn tiles_of_every_shape_give_identical_bits() {
        for format in FORMATS {
            let cols = 96;
            let rows: Vec<Vec<u8>> = (0..4)
                .map(|r| (0..3).flat_map(|k| block(format, r * 10 + k)).collect())
                .collect();
            let x: Vec<f32> = (0..8 * cols)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
                .collect();
            let q = QuantizedActs::new(&x, cols);
            let rhs = |t0| Rhs {
                x: &x,
                q: Some(&q),
                t0,
            };
            let scales: Vec<Vec<f32>> = rows.iter().map(|r| block_scales(format, r, 0)).collect();
            let row = |i: usize| Row {
                bytes: &rows[i],
                scales: &scales[i],
            };
            let mut one = [[0f32; 1]; 1];
            let mut four = [[0f32; 1]; 4];
            let mut eight = [[0f32; 8]; 1];
            tile::<4, 1>(format, row, &rhs(0), cols, &mut four);
            for r in 0..4 {
                tile::<1, 8>(format, |_| row(r), &rhs(0), cols, &mut eight);
                for b in 0..8 {
                    tile::<1, 1>(format, |_| row(r), &rhs(b), cols, &mut one);
                    assert_eq!(one[0][0].to_bits(), eight[0][b].to_bits(), "{format:?}");
                }
                assert_eq!(four[r][0].to_bits(), eight[0][0].to_bits(), "{format:?}");
            }
        }
    }
}
