//! The GPU model's weights: how each tensor of the weight plan (`crate::model::weights`)
//! becomes a device tensor (`Gpu`), and one linear layer's weights with its matmul `x · Wᵀ`
//! ([`Linear`]).

use crate::model::weights::Convert;
use crate::{GpuWeights, Result};
use candle_core::quantized::{QMatMul, QStorage, QTensor};
use candle_core::{DType, Device, Module, Tensor};

/// How the GPU model holds the weights of the plan on `device`: vectors and the token embedding
/// as f32 tensors, linear layers in `format`. A linear layer's matrices are kept as read (GGUF
/// blocks on the host) until the last one is in, then uploaded together as one [`Linear`].
pub(crate) struct Gpu {
    pub device: Device,
    pub format: GpuWeights,
}

impl Convert for Gpu {
    type Vector = Tensor;
    type Embedding = Tensor;
    type Part = QTensor;
    type Linear = Linear;

    fn vector(&self, values: Vec<f32>) -> Result<Tensor> {
        let len = values.len();
        Ok(Tensor::from_vec(values, len, &self.device)?)
    }

    /// `[vocab, dim]` f32: rows are looked up for the input tokens.
    fn embedding(&self, tensor: QTensor) -> Result<Tensor> {
        dequantized(&[tensor], &self.device)
    }

    fn part(&self, tensor: QTensor) -> Result<QTensor> {
        Ok(tensor)
    }

    fn linear(&self, parts: Vec<QTensor>) -> Result<Linear> {
        Linear::load(&parts, self.format, &self.device)
    }
}

/// The weight matrix of a linear layer (`[out, in]`) held on the device. Several GGUF tensors
/// that read the same input (q/k/v, gate/up) are one `Linear` with their outputs side by side.
pub enum Linear {
    /// Dequantized f32, one matrix (parts concatenated by rows).
    F32(Tensor),
    /// Dequantized bf16, one matrix.
    Bf16(Tensor),
    /// The quantized blocks, one [`QMatMul`] per part.
    Quantized(Vec<QMatMul>),
}

impl Linear {
    /// Uploads `parts` (CPU tensors of equal input width) in `format`.
    pub fn load(parts: &[QTensor], format: GpuWeights, device: &Device) -> Result<Self> {
        Ok(match format {
            GpuWeights::F32 => Self::F32(dequantized(parts, device)?),
            GpuWeights::Bf16 => Self::Bf16(dequantized(parts, device)?.to_dtype(DType::BF16)?),
            GpuWeights::Quantized => Self::Quantized(
                parts
                    .iter()
                    .map(|p| {
                        let storage = QStorage::from_data(p.data()?, device, p.dtype())?;
                        QMatMul::from_qtensor(QTensor::new(storage, p.shape())?)
                    })
                    .collect::<candle_core::Result<_>>()?,
            ),
        })
    }

    /// Reuses an f32 matrix already on the device (the tied output head).
    pub fn from_f32(weight: &Tensor, format: GpuWeights) -> Result<Self> {
        Ok(match format {
            GpuWeights::Bf16 => Self::Bf16(weight.to_dtype(DType::BF16)?),
            _ => Self::F32(weight.clone()),
        })
    }

    /// `x · Wᵀ` for `x` of shape `[n, in]` (f32), giving `[n, out]` (f32).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Self::F32(w) => x.matmul(&w.t()?)?,
            Self::Bf16(w) => x
                .to_dtype(DType::BF16)?
                .matmul(&w.t()?)?
                .to_dtype(DType::F32)?,
            Self::Quantized(parts) => {
                let outs = parts
                    .iter()
                    .map(|p| p.forward(x))
                    .collect::<candle_core::Result<Vec<_>>>()?;
                match outs.as_slice() {
                    [one] => one.clone(),
                    _ => Tensor::cat(&outs, 1)?,
                }
            }
        })
    }
}

/// Dequantizes `parts` on the host (candle's block decoding, deterministic) and uploads
/// them as one f32 matrix.
pub fn dequantized(parts: &[QTensor], device: &Device) -> Result<Tensor> {
    let host = parts
        .iter()
        .map(|p| p.dequantize(&Device::Cpu))
        .collect::<candle_core::Result<Vec<_>>>()?;
    let host = match host.as_slice() {
        [one] => one.clone(),
        _ => Tensor::cat(&host, 0)?,
    };
    Ok(host.to_device(device)?)
}
