//! Rotary position embedding with a precomputed cos/sin table.

use crate::{Config, LmError, Result, RopeStyle};

pub struct Rope {
    style: RopeStyle,
    half: usize,
    /// `[position][i]` for i in 0..head_dim/2.
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl Rope {
    /// The table for every position of `config.context`; a table that cannot be allocated is an
    /// error (the context was bounded by [`Config`]'s checks, the memory may still be short).
    pub fn new(config: &Config) -> Result<Self> {
        let half = config.head_dim / 2;
        let len = config
            .context
            .checked_mul(half)
            .ok_or_else(|| too_big(config))?;
        let mut cos = Vec::new();
        let mut sin = Vec::new();
        cos.try_reserve_exact(len).map_err(|_| too_big(config))?;
        sin.try_reserve_exact(len).map_err(|_| too_big(config))?;
        for pos in 0..config.context {
            for i in 0..half {
                let freq =
                    (config.rope_base as f64).powf(-((2 * i) as f64) / config.head_dim as f64);
                let angle = pos as f64 * freq;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        Ok(Self {
            style: config.rope_style,
            half,
            cos,
            sin,
        })
    }

    /// The tables, `[position][i]` for i in 0..head_dim/2: (cos, sin). The GPU model uploads
    /// these, so both devices rotate by the same angles.
    #[cfg_attr(not(feature = "gpu-forward"), allow(dead_code))]
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

fn too_big(config: &Config) -> LmError {
    LmError::Unsupported(format!(
        "no memory for the rotary table of {} positions × {} dimensions",
        config.context, config.head_dim
    ))
}
