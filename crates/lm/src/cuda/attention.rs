//! Causal attention of one sequence's new tokens over its cached keys and values, on the GPU.
//!
//! Grouped-query attention without repeating the keys: the queries of the `group` heads that
//! share a key/value head are stacked as rows of one matrix, so each key/value head is one batch
//! entry of two cuBLAS batched matmuls (scores, then the weighted sum of values).

use candle_core::{Device, Tensor};

/// The head layout of a model.
#[derive(Debug, Clone, Copy)]
pub struct Heads {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

/// `q`: the new tokens' rotated queries, `[n, heads·head_dim]`; `keys`/`values`: the cache views
/// `[kv_heads, start+n, head_dim]` (the new tokens included, at positions `start..start+n`).
/// Returns `[n, heads·head_dim]`, head `h` reading key/value head `h / group` as on the CPU.
pub fn attend(
    shape: Heads,
    q: &Tensor,
    keys: &Tensor,
    values: &Tensor,
    start: usize,
) -> candle_core::Result<Tensor> {
    let Heads {
        heads,
        kv_heads,
        head_dim,
    } = shape;
    let group = heads / kv_heads;
    let n = q.dim(0)?;
    let len = start + n;
    // [n, kv_heads, group, hd] → [kv_heads, group·n, hd]; row g·n + t is token t of head
    // kv·group + g.
    let q = q
        .reshape((n, kv_heads, group, head_dim))?
        .permute((1, 2, 0, 3))?
        .contiguous()?
        .reshape((kv_heads, group * n, head_dim))?;
    // head_dim is a power of two for every supported model, so scaling q first is exact.
    let q = (q * (1.0 / (head_dim as f64).sqrt()))?;
    let scores = q.matmul(&keys.t()?)?; // [kv_heads, group·n, len]
    let scores = if n > 1 {
        let mask = causal_mask(n, start, q.device())?; // [n, len]
        scores
            .reshape((kv_heads, group, n, len))?
            .broadcast_add(&mask)?
            .reshape((kv_heads, group * n, len))?
    } else {
        scores // a single new token sees every cached position
    };
    let probs = candle_nn::ops::softmax_last_dim(&scores)?;
    let out = probs.matmul(values)?; // [kv_heads, group·n, hd]
    out.reshape((kv_heads, group, n, head_dim))?
        .permute((2, 0, 1, 3))?
        .contiguous()?
        .reshape((n, heads * head_dim))
}

/// `[n, start+n]`: 0 where token `t` (at position `start+t`) may look, −∞ after it.
fn causal_mask(n: usize, start: usize, device: &Device) -> candle_core::Result<Tensor> {
    let len = start + n;
    let mask: Vec<f32> = (0..n)
        .flat_map(|t| {
            (0..len).map(move |j| {
                if j <= start + t {
                    0.0
                } else {
                    f32::NEG_INFINITY
                }
            })
        })
        .collect();
    Tensor::from_vec(mask, (n, len), device)
}
