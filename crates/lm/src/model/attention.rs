//! Causal self-attention of new tokens over a sequence's cached keys and values.
//!
//! One (token, head) pair at a time, always in the same order of operations, so the result for a
//! token never depends on which other tokens share the forward call (batch invariance).

use rayon::prelude::*;

use crate::kernel::dot;

/// Where one new token sits: the cache it reads and how many cached positions it sees.
pub struct Query<'a> {
    pub keys: &'a [f32],
    pub values: &'a [f32],
    /// Positions visible to this token (its own included).
    pub visible: usize,
}

pub struct Shape {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

/// `out[t]` = attention of `q[t]` (all heads) over `queries[t]`'s visible positions.
pub fn attend(shape: &Shape, q: &[f32], queries: &[Query<'_>], out: &mut [f32]) {
    let hd = shape.head_dim;
    let group = shape.heads / shape.kv_heads;
    let kv_dim = shape.kv_heads * hd;
    let scale = 1.0 / (hd as f32).sqrt();
    out.par_chunks_mut(hd)
        .enumerate()
        .for_each_init(Vec::new, |scores, (i, out)| {
            let (t, h) = (i / shape.heads, i % shape.heads);
            let query = &queries[t];
            let q = &q[i * hd..(i + 1) * hd];
            let kv_off = (h / group) * hd;
            scores.clear();
            let mut max = f32::NEG_INFINITY;
            for j in 0..query.visible {
                let k = &query.keys[j * kv_dim + kv_off..j * kv_dim + kv_off + hd];
                let s = dot(q, k) * scale;
                max = max.max(s);
                scores.push(s);
            }
            let mut sum = 0.0;
            for s in scores.iter_mut() {
                *s = (*s - max).exp();
                sum += *s;
            }
            out.fill(0.0);
            for (j, p) in scores.iter().enumerate() {
                let v = &query.values[j * kv_dim + kv_off..j * kv_dim + kv_off + hd];
                let p = p / sum;
                for (o, v) in out.iter_mut().zip(v) {
                    *o = p.mul_add(*v, *o);
                }
            }
        });
}
