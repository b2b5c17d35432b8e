//! The block formats the matrix kernel reads directly.

use candle_core::quantized::GgmlDType;

/// A weight storage format: 32-weight blocks, each with its own scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
            _ => return None,
        })
    }

    /// Weights per block (the kernel works on 32 for every format; f32 is read 32 at a time).
    pub const fn block_len(self) -> usize {
        32
    }

    /// Bytes per block.
    pub const fn block_bytes(self) -> usize {
        match self {
            Self::F32 => 128,
            Self::Q4_0 => 18,
            Self::Q4_1 => 20,
            Self::Q5_0 => 22,
            Self::Q8_0 => 34,
        }
    }
}
