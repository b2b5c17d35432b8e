//! Portable block kernels for targets without AVX2: the same operations, one lane at a time.

use super::super::Format;
use super::dequantize_block_scalar;

pub trait Block {
    const FORMAT: Format;
}
macro_rules! block {
    ($($name:ident),*) => {$(
        pub struct $name;
        impl Block for $name {
            const FORMAT: Format = Format::$name;
        }
    )*};
}
block!(F32, Q4_0, Q4_1, Q5_0, Q8_0);

/// See `kernel::tile`: eight lane accumulators per (row, token), summed in a fixed order.
///
/// # Safety
/// Every row must hold `cols / 32` blocks and `x` must hold `B * cols` values.
pub unsafe fn tile<K: Block, const R: usize, const B: usize>(
    rows: [&[u8]; R],
    x: &[f32],
    cols: usize,
    acc: &mut [[f32; B]; R],
) {
    let bytes = K::FORMAT.block_bytes();
    for r in 0..R {
        let mut sums = [[0f32; 8]; B];
        for blk in 0..cols / 32 {
            let w = dequantize_block_scalar(K::FORMAT, &rows[r][blk * bytes..]);
            for (b, s) in sums.iter_mut().enumerate() {
                let xb = &x[b * cols + blk * 32..];
                for i in 0..32 {
                    s[i % 8] = w[i].mul_add(xb[i], s[i % 8]);
                }
            }
        }
        for b in 0..B {
            let s = sums[b];
            acc[r][b] = ((s[0] + s[4]) + (s[2] + s[6])) + ((s[1] + s[5]) + (s[3] + s[7]));
        }
    }
}

/// # Safety
/// `block` must hold one whole block.
pub unsafe fn store<K: Block>(block: &[u8], out: &mut [f32]) {
    out[..32].copy_from_slice(&dequantize_block_scalar(K::FORMAT, block));
}
