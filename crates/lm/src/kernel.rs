//! The f32 inner product every part of the model shares: attention scores, RMS norms and the
//! Q4_1 offset correction of [`crate::quant`]. It sits below both `model` and `quant`, so that
//! neither imports the other for it; one function means one order of operations everywhere.

/// Dot product with eight lane accumulators (vectorises to one FMA chain per 8 values).
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    for (a, b) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        for i in 0..8 {
            acc[i] = a[i].mul_add(b[i], acc[i]);
        }
    }
    let mut tail = 0.0;
    for (a, b) in a
        .chunks_exact(8)
        .remainder()
        .iter()
        .zip(b.chunks_exact(8).remainder())
    {
        tail = a.mul_add(*b, tail);
    }
    ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7])) + tail
}
