//! The block kernels: dequantize one 32-weight block into four 8-lane vectors and feed it to an
//! (R rows × B tokens) tile of accumulators.
//!
//! Every (row, token) pair owns one 8-lane accumulator that takes the block's four vectors in
//! order, block after block, and is summed horizontally in a fixed order at the end. The tile
//! shape only changes how many pairs run side by side, never the operations of one pair: that is
//! what makes the results batch-invariant (see the parent module).

use super::Format;
use half::f16;

/// Accumulates `acc[r][b] = Σ_cols row_r · x_b` for R rows given by `row(r)` and B activation
/// rows stored one after another in `x` (each `cols` long).
#[inline]
pub fn tile<'a, const R: usize, const B: usize>(
    format: Format,
    row: impl Fn(usize) -> &'a [u8],
    x: &[f32],
    cols: usize,
    acc: &mut [[f32; B]; R],
) {
    assert!(x.len() >= B * cols);
    let rows: [&[u8]; R] = std::array::from_fn(&row);
    for r in rows {
        assert!(r.len() >= cols / 32 * format.block_bytes());
    }
    // SAFETY: the asserts above bound every block and activation read.
    unsafe {
        match format {
            Format::F32 => imp::tile::<imp::F32, R, B>(rows, x, cols, acc),
            Format::Q4_0 => imp::tile::<imp::Q4_0, R, B>(rows, x, cols, acc),
            Format::Q4_1 => imp::tile::<imp::Q4_1, R, B>(rows, x, cols, acc),
            Format::Q5_0 => imp::tile::<imp::Q5_0, R, B>(rows, x, cols, acc),
            Format::Q8_0 => imp::tile::<imp::Q8_0, R, B>(rows, x, cols, acc),
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

#[cfg_attr(target_feature = "avx2", allow(dead_code))] // used by tests and portable builds
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
mod tests {
    use super::*;

    fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
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
    fn block(format: Format, seed: u64) -> Vec<u8> {
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

    const FORMATS: [Format; 5] = [
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
            let mut one = [[0f32; 1]; 1];
            let mut four = [[0f32; 1]; 4];
            let mut eight = [[0f32; 8]; 1];
            tile::<4, 1>(format, |i| &rows[i], &x, cols, &mut four);
            for r in 0..4 {
                tile::<1, 8>(format, |_| &rows[r], &x, cols, &mut eight);
                for b in 0..8 {
                    tile::<1, 1>(format, |_| &rows[r], &x[b * cols..], cols, &mut one);
                    assert_eq!(one[0][0].to_bits(), eight[0][b].to_bits(), "{format:?}");
                    // And the value is the dot product of the dequantized row.
                    let mut w = vec![0f32; cols];
                    dequantize_row(format, &rows[r], &mut w);
                    let exact: f64 = (0..cols)
                        .map(|c| w[c] as f64 * x[b * cols + c] as f64)
                        .sum();
                    assert!((exact - one[0][0] as f64).abs() < 1e-4 * (1.0 + exact.abs()));
                }
                assert_eq!(four[r][0].to_bits(), eight[0][0].to_bits(), "{format:?}");
            }
        }
    }
}
