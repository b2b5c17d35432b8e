//! Activations quantized to 16-bit integers per 32-value block, the right-hand side of the integer
//! kernel.
//!
//! Each block of 32 activations gets a scale `d = max|x| / 32767` and integers `q = round(x / d)`
//! (ties to even), so `x ≈ d·q` to within 1/65534 of the block's largest value; `s = d·Σq` is kept
//! for formats with an offset (Q4_1). llama.cpp and candle quantize activations to 8 bits instead;
//! measured here, 8 bits flipped SmolLM2's first answer token on real prompts where the exact
//! logits were 0.08 apart, while 16 bits keep results within float noise of the exact product.
//! Quantization is a pure function of one activation row, so it keeps the kernel batch-invariant.

/// `n` activation rows of `cols` values, quantized.
#[derive(Debug, Default)]
pub struct QuantizedActs {
    pub cols: usize,
    /// `n × cols` integers.
    pub qs: Vec<i16>,
    /// `n × cols/32` block scales.
    pub d: Vec<f32>,
    /// `n × cols/32` block sums `d·Σq`.
    pub s: Vec<f32>,
}

impl QuantizedActs {
    pub fn new(x: &[f32], cols: usize) -> Self {
        assert!(cols.is_multiple_of(32) && x.len().is_multiple_of(cols));
        let blocks = x.len() / 32;
        let mut out = Self {
            cols,
            qs: vec![0; x.len()],
            d: Vec::with_capacity(blocks),
            s: Vec::with_capacity(blocks),
        };
        for (block, qs) in x.chunks_exact(32).zip(out.qs.chunks_exact_mut(32)) {
            let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = amax / 32767.0;
            let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
            let mut sum = 0i32;
            for (q, v) in qs.iter_mut().zip(block) {
                let r = (v * inv).round_ties_even().clamp(-32767.0, 32767.0) as i16;
                *q = r;
                sum += r as i32;
            }
            out.d.push(d);
            out.s.push(d * sum as f32);
        }
        out
    }

    /// The integers of block `blk` of row `t`.
    #[inline(always)]
    pub fn block(&self, t: usize, blk: usize) -> &[i16] {
        let at = t * self.cols + blk * 32;
        &self.qs[at..at + 32]
    }
}
