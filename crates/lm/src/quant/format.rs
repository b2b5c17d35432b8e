//! The block formats the matrix kernel reads directly.
//!
//! The kernel always works on 32 weights at a time with one f32 scale (and, for formats with a
//! minimum, one f32 offset) per 32. The K formats store 256-weight super-blocks whose 32-weight
//! sub-blocks carry their own packed scales; the kernel reads weights and scales in place (a
//! sub-block's 6-bit or i8 scale unpacked as it goes) and takes only Q4_K/Q5_K's per-32 minima
//! from a table built at load time.

use candle_core::quantized::GgmlDType;

/// A weight storage format: 32-weight blocks (or 256-weight super-blocks of eight 32-weight
/// sub-blocks), each with its own scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(non_camel_case_types)] // ggml's names
pub enum Format {
    /// Plain little-endian f32 (also the target for formats the kernel does not read natively).
    F32,
    /// f16 scale `d`, 32 4-bit weights: `w = d·(q − 8)`.
    Q4_0,
    /// f16 scale `d` and offset `m`, 32 4-bit weights: `w = d·q + m`.
    Q4_1,
    /// f16 scale `d`, 32 5-bit weights (the fifth bits packed in a u32): `w = d·(q − 16)`.
    Q5_0,
    /// f16 scale `d`, 32 signed 8-bit weights: `w = d·q`.
    Q8_0,
    /// 256-weight super-block: f16 `d` and `dmin`, twelve bytes of 6-bit sub-block scales `sc`
    /// and minima `m`, 256 4-bit weights: `w = d·sc·q − dmin·m` per 32-weight sub-block.
    Q4_K,
    /// As Q4_K with a fifth bit per weight (32 bytes, bit j of byte l for weight l of sub-block j).
    Q5_K,
    /// 256-weight super-block: 4 low bits, 2 high bits, sixteen i8 scales (one per 16 weights)
    /// and f16 `d`: `w = d·sc·(q − 32)`.
    Q6_K,
}

impl Format {
    /// The format for a GGUF tensor type, or `None` when it must be dequantized first.
    pub fn from_ggml(dtype: GgmlDType) -> Option<Self> {
        Some(match dtype {
            GgmlDType::F32 => Self::F32,
            GgmlDType::Q4_0 => Self::Q4_0,
            GgmlDType::Q4_1 => Self::Q4_1,
            GgmlDType::Q5_0 => Self::Q5_0,
            GgmlDType::Q8_0 => Self::Q8_0,
            GgmlDType::Q4K => Self::Q4_K,
            GgmlDType::Q5K => Self::Q5_K,
            GgmlDType::Q6K => Self::Q6_K,
            _ => return None,
        })
    }

    /// Weights per stored block: 32, or 256 for the K formats (whose 32-weight sub-blocks the
    /// kernel reads one at a time, like the other formats' blocks; f32 is read 32 at a time).
    pub const fn block_len(self) -> usize {
        if self.is_k() { 256 } else { 32 }
    }

    /// Whether this is a 256-weight super-block format.
    pub const fn is_k(self) -> bool {
        matches!(self, Self::Q4_K | Self::Q5_K | Self::Q6_K)
    }

    /// Bytes per stored block (of `block_len` weights).
    pub const fn block_bytes(self) -> usize {
        match self {
            Self::F32 => 128,
            Self::Q4_0 => 18,
            Self::Q4_1 => 20,
            Self::Q5_0 => 22,
            Self::Q8_0 => 34,
            Self::Q4_K => 144,
            Self::Q5_K => 176,
            Self::Q6_K => 210,
        }
    }
}
