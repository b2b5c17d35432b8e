//! Rotary position embedding with a precomputed cos/sin table.

use crate::{Config, RopeStyle};

pub struct Rope {
    style: RopeStyle,
    half: usize,
    /// `[position][i]` for i in 0..head_dim/2.
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl Rope {
    pub fn new(config: &Config) -> Self {
        let half = config.head_dim / 2;
        let mut cos = Vec::with_capacity(config.context * half);
        let mut sin = Vec::with_capacity(config.context * half);
        for pos in 0..config.context {
            for i in 0..half {
                let freq =
                    (config.rope_base as f64).powf(-((2 * i) as f64) / config.head_dim as f64);
                let angle = pos as f64 * freq;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        Self {
            style: config.rope_style,
            half,
            cos,
            sin,
        }
    }

    /// The tables, `[position][i]` for i in 0..head_dim/2: (cos, sin). The GPU model uploads
    /// these, so both devices rotate by the same angles.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    pub fn tables(&self) -> (&[f32], &[f32]) {
        (&self.cos, &self.sin)
    }

    /// Rotates every head in `x` (a concatenation of heads) for position `pos`.
    pub fn apply(&self, x: &mut [f32], pos: usize) {
        let cos = &self.cos[pos * self.half..(pos + 1) * self.half];
        let sin = &self.sin[pos * self.half..(pos + 1) * self.half];
        for head in x.chunks_exact_mut(2 * self.half) {
            for i in 0..self.half {
                let (a, b) = match self.style {
                    RopeStyle::Interleaved => (2 * i, 2 * i + 1),
                    RopeStyle::Halves => (i, i + self.half),
                };
                let (x0, x1) = (head[a], head[b]);
                head[a] = x0 * cos[i] - x1 * sin[i];
                head[b] = x0 * sin[i] + x1 * cos[i];
            }
        }
    }
}
