//! Where a model computes: the CPU kernels, or a CUDA GPU (only in builds with the `cuda`
//! feature; other builds, `gpu-forward` ones included, refuse it with
//! [`crate::LmError::CudaNotBuilt`]).

use std::fmt;

/// The compute device a model is loaded onto.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    /// The integer kernels of [`crate::quant`] on the thread pool (bit-exact, batch-invariant).
    #[default]
    Cpu,
    /// A CUDA GPU, through candle's tensor ops and cuBLAS.
    Cuda(CudaOptions),
}

/// Which GPU, and how the weights are held there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CudaOptions {
    /// The CUDA device ordinal.
    pub ordinal: usize,
    pub weights: GpuWeights,
}

/// How the weights of the linear layers are held on the GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GpuWeights {
    /// Dequantized to f32 at load time; f32 matmuls in cuBLAS (no TF32). The default: the
    /// closest to the CPU model.
    #[default]
    F32,
    /// Dequantized to bf16; activations are rounded to bf16 for each matmul (accumulating in
    /// f32). Half the weight traffic of f32, at bf16 precision.
    Bf16,
    /// The GGUF blocks as they are, through candle's quantized CUDA kernels (small batches quantize
    /// the activations to 8 bits, so decoding and prefill round differently).
    Quantized,
}

impl Device {
    /// The first CUDA GPU with f32 weights.
    pub fn cuda(ordinal: usize) -> Self {
        Self::Cuda(CudaOptions {
            ordinal,
            weights: GpuWeights::default(),
        })
    }

    pub fn is_cuda(&self) -> bool {
        matches!(self, Self::Cuda(_))
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(o) => write!(f, "cuda:{} ({:?} weights)", o.ordinal, o.weights),
        }
    }
}
