//! Portable block kernels for targets without AVX2: the same arithmetic, one value at a time.

use super::super::Format;
use super::{QuantizedActs, dequantize_block_scalar};

pub trait Block {
    const FORMAT: Format;
}
macro_rules! block {
    ($($name:ident),*) => {$(
        #[allow(non_camel_case_types)]
        pub struct $name;
        impl Block for $name {
            const FORMAT: Format = Format::$name;
        }
    )*};
}
block!(F32, Q4_0, Q4_1, Q5_0, Q8_0, Q4_K, Q5_K, Q6_K);

/// The f32 path: eight lane accumulators per (row, token), summed in a fixed order.
///
/// # Safety
/// Every row must hold `cols / 32` blocks and `x` must hold `B * cols` values.
pub unsafe fn tile_f32<const R: usize, const B: usize>(
    rows: [&[u8]; R],
    x: &[f32],
    cols: usize,
    acc: &mut [[f32; B]; R],
) {
    for r in 0..R {
        for b in 0..B {
            let mut lanes = [0f32; 8];
            for blk in 0..cols / 32 {
                let w = dequantize_block_scalar(Format::F32, &rows[r][blk * 128..]);
                let xb = &x[b * cols + blk * 32..];
                for i in 0..32 {
                    lanes[i % 8] = w[i].mul_add(xb[i], lanes[i % 8]);
                }
            }
            acc[r][b] = lanes.iter().sum();
        }
    }
}

/// The integer path: `Σ_blocks d_w·d_x·(w·q_x)` per (row, token).
///
/// # Safety
/// Every row must hold `cols / 32` blocks; `x` must hold tokens `t0..t0 + B`.
pub unsafe fn tile_int<K: Block, const R: usize, const B: usize>(
    rows: [super::Row<'_>; R],
    x: &QuantizedActs,
    t0: usize,
    acc: &mut [[f32; B]; R],
) {
    let blocks = x.cols / 32;
    for r in 0..R {
        for b in 0..B {
            let t = t0 + b;
            let mut sum = 0f32;
            for blk in 0..blocks {
                let w = super::sub_ints(K::FORMAT, rows[r].bytes, blk);
                let dw = super::sub_scale(K::FORMAT, rows[r].bytes, blk);
                let dot: i32 = w
                    .iter()
                    .zip(x.block(t, blk))
                    .map(|(w, q)| w * *q as i32)
                    .sum();
                sum = (dot as f32).mul_add(dw * x.d[t * blocks + blk], sum);
            }
            acc[r][b] = sum;
        }
    }
}

/// # Safety
/// `block` must hold one whole block.
pub unsafe fn store<K: Block>(block: &[u8], out: &mut [f32]) {
    out[..32].copy_from_slice(&dequantize_block_scalar(K::FORMAT, block));
}
