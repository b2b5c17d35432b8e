//! RMS normalisation and the SwiGLU activation, row by row.

/// `out[t] = x[t] / rms(x[t]) * weight` for every row of width `weight.len()`.
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let d = weight.len();
    for (x, out) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        let mean = crate::kernel::dot(x, x) / d as f32;
        let inv = 1.0 / (mean + eps).sqrt();
        for ((o, x), w) in out.iter_mut().zip(x).zip(weight) {
            *o = x * inv * w;
        }
    }
}

/// `out[t][i] = silu(gate[t][i]) * up[t][i]`, where each row of `gate_up` is gate ⊕ up.
pub fn swiglu(gate_up: &[f32], ffn: usize, out: &mut [f32]) {
    for (gu, out) in gate_up.chunks_exact(2 * ffn).zip(out.chunks_exact_mut(ffn)) {
        let (gate, up) = gu.split_at(ffn);
        for ((o, g), u) in out.iter_mut().zip(gate).zip(up) {
            *o = g / (1.0 + (-g).exp()) * u;
        }
    }
}
