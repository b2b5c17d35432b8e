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

/// One weight row: its blocks, scales included. The kernels read each block's f16 scale from the
/// block itself: a separate f32 copy of the scales would add 4 bytes to every 18 to 34 bytes of
/// weights a decoded token streams.
#[derive(Clone, Copy)]
pub struct Row<'a> {
    pub bytes: &'a [u8],
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
        assert!(r.bytes.len() >= cols / format.block_len() * format.block_bytes());
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
            Format::Q4_K => imp::tile_int::<imp::Q4_K, R, B>(rows, q, t0, acc),
            Format::Q5_K => imp::tile_int::<imp::Q5_K, R, B>(rows, q, t0, acc),
            Format::Q6_K => imp::tile_int::<imp::Q6_K, R, B>(rows, q, t0, acc),
            Format::F32 => unreachable!(),
        }
    }
}

/// The per-32-weight scales and offsets of a K-format matrix, in sub-block order: the kernel's
/// weight `i` of sub-block `j` is `scales[j]·q_i + offsets[j]`, with `q` from [`sub_ints`].
/// Q4_K and Q5_K: `d·sc` and `−dmin·m` (both exact in f32: at most 17 significant bits); Q6_K:
/// `d`, its i8 sub-scales folded into the integers, and no offsets.
pub fn k_scales(format: Format, data: &[u8]) -> (Vec<f32>, Vec<f32>) {
    let mut scales = Vec::with_capacity(data.len() / format.block_bytes() * 8);
    let mut offsets = Vec::new();
    for block in data.chunks_exact(format.block_bytes()) {
        match format {
            Format::Q4_K | Format::Q5_K => {
                let (d, dmin) = (scale(block, 0), scale(block, 2));
                for j in 0..8 {
                    let (sc, m) = scale_min_k4(&block[4..16], j);
                    scales.push(d * sc as f32);
                    offsets.push(-(dmin * m as f32));
                }
            }
            Format::Q6_K => scales.extend([scale(block, 208); 8]),
            _ => unreachable!("{format:?} is not a K format"),
        }
    }
    (scales, offsets)
}

/// The scale of 32-weight block `blk` of a row (for K formats, sub-block `blk % 8` of super-block
/// `blk / 8`), as [`k_scales`] and [`block_scales`] compute it: the same f32 either way.
#[cfg_attr(target_feature = "avx2", allow(dead_code))] // used by tests and portable builds
pub fn sub_scale(format: Format, row: &[u8], blk: usize) -> f32 {
    if !format.is_k() {
        return scale(&row[blk * format.block_bytes()..], 0);
    }
    let block = &row[blk / 8 * format.block_bytes()..(blk / 8 + 1) * format.block_bytes()];
    match format {
        Format::Q6_K => scale(block, 208),
        _ => scale(block, 0) * scale_min_k4(&block[4..16], blk % 8).0 as f32,
    }
}

/// The 6-bit scale and minimum of sub-block `j` from the twelve packed bytes of Q4_K/Q5_K:
/// bytes 0..4 hold the low six bits of the scales of sub-blocks 0..4, bytes 4..8 those of their
/// minima; sub-blocks 4..8 keep their low four bits in bytes 8..12 (scale low, minimum high
/// nibble) and their top two bits in the spare top bits of bytes 0..8.
#[inline(always)]
fn scale_min_k4(packed: &[u8], j: usize) -> (u8, u8) {
    if j < 4 {
        (packed[j] & 63, packed[j + 4] & 63)
    } else {
        (
            (packed[j + 4] & 15) | ((packed[j - 4] >> 6) << 4),
            (packed[j + 4] >> 4) | ((packed[j] >> 6) << 4),
        )
    }
}

/// The 32 integer weights of 32-weight block `blk` of a row (for K formats, sub-block `blk % 8`
/// of super-block `blk / 8`): the scale (and Q4_1/Q4_K/Q5_K offset) is applied by the caller.
#[cfg_attr(target_feature = "avx2", allow(dead_code))] // used by tests and portable builds
pub fn sub_ints(format: Format, row: &[u8], blk: usize) -> [i32; 32] {
    let (sb, j) = if format.is_k() {
        (blk / 8, blk % 8)
    } else {
        (blk, 0)
    };
    let block = &row[sb * format.block_bytes()..(sb + 1) * format.block_bytes()];
    match format {
        Format::Q4_0 => {
            let q = nibbles(&block[2..18]);
            std::array::from_fn(|i| q[i] as i32 - 8)
        }
        Format::Q4_1 => {
            let q = nibbles(&block[4..20]);
            std::array::from_fn(|i| q[i] as i32)
        }
        Format::Q5_0 => {
            let qh = u32::from_le_bytes(block[2..6].try_into().unwrap());
            let q = nibbles(&block[6..22]);
            std::array::from_fn(|i| (q[i] as u32 | ((qh >> i) & 1) << 4) as i32 - 16)
        }
        Format::Q8_0 => std::array::from_fn(|i| block[2 + i] as i8 as i32),
        // Sub-blocks 2k and 2k + 1 share 32 bytes of weights: low nibbles, then high nibbles.
        Format::Q4_K => {
            std::array::from_fn(|l| ((block[16 + 32 * (j / 2) + l] >> (4 * (j % 2))) & 15) as i32)
        }
        Format::Q5_K => std::array::from_fn(|l| {
            let low = (block[48 + 32 * (j / 2) + l] >> (4 * (j % 2))) & 15;
            (low | ((block[16 + l] >> j) & 1) << 4) as i32
        }),
        // Each half of 128 weights: 64 bytes of low nibbles (sub-blocks k and k + 2 share 32 of
        // them), 32 bytes of high bit pairs (sub-block k at bits 2k), 8 scales of 16 weights.
        Format::Q6_K => {
            let (h, k) = (j / 4, j % 4);
            std::array::from_fn(|l| {
                let low = (block[64 * h + 32 * (k % 2) + l] >> (4 * (k / 2))) & 15;
                let high = (block[128 + 32 * h + l] >> (2 * k)) & 3;
                let sc = block[192 + 8 * h + 2 * k + l / 16] as i8 as i32;
                sc * ((low | high << 4) as i32 - 32)
            })
        }
        Format::F32 => unreachable!("f32 weights take the float path"),
    }
}

/// Dequantizes a whole row into `out` (exactly the weights the kernel multiplies with).
pub fn dequantize_row(format: Format, row: &[u8], out: &mut [f32]) {
    if format.is_k() {
        let (scales, offsets) = k_scales(format, &row[..out.len() / 256 * format.block_bytes()]);
        for (blk, chunk) in out.chunks_exact_mut(32).enumerate() {
            let q = sub_ints(format, row, blk);
            let m = offsets.get(blk).copied().unwrap_or(0.0);
            for (w, q) in chunk.iter_mut().zip(q) {
                *w = (q as f32).mul_add(scales[blk], m);
            }
        }
        return;
    }
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
                Format::Q4_K | Format::Q5_K | Format::Q6_K => unreachable!(),
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
        Format::Q4_K | Format::Q5_K | Format::Q6_K => unreachable!("K formats: see sub_ints"),
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
            // Weights of the same size as the other formats' (|w| below about 0.6).
            Format::Q4_K => {
                put(&mut b, 0, 0.0005);
                put(&mut b, 2, 0.001);
            }
            Format::Q5_K => {
                put(&mut b, 0, 0.0003);
                put(&mut b, 2, 0.001);
            }
            Format::Q6_K => put(&mut b, 208, 0.0001),
            _ => put(&mut b, 0, 0.021),
        }
        b
    }

    pub(crate) const FORMATS: [Format; 8] = [
        Format::F32,
        Format::Q4_0,
        Format::Q4_1,
        Format::Q5_0,
        Format::Q8_0,
        Format::Q4_K,
        Format::Q5_K,
        Format::Q6_K,
    ];

    #[test]
    fn scales_read_in_place_equal_the_table_scales() {
        for format in FORMATS.into_iter().filter(|f| *f != Format::F32) {
            let row: Vec<u8> = (0..512 / format.block_len())
                .flat_map(|k| block(format, 5 + k as u64))
                .collect();
            let table = if format.is_k() {
                k_scales(format, &row).0
            } else {
                block_scales(format, &row, 0)
            };
            for (blk, s) in table.iter().enumerate() {
                assert_eq!(sub_scale(format, &row, blk), *s, "{format:?} block {blk}");
            }
        }
    }

    #[test]
    fn simd_dequantization_matches_the_scalar_definition() {
        for format in FORMATS.into_iter().filter(|f| !f.is_k()) {
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
            let cols = 512;
            let per_row = cols / format.block_len();
            let rows: Vec<Vec<u8>> = (0..4)
                .map(|r| {
                    (0..per_row)
                        .flat_map(|k| block(format, r * 100 + k as u64))
                        .collect()
                })
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
            let row = |i: usize| Row { bytes: &rows[i] };
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
