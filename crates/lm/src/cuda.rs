//! The transformer for a CUDA GPU, on candle tensor ops and cuBLAS.
//!
//! Compiled with the `gpu-forward` feature, which needs no CUDA toolkit: the code then runs on
//! candle's CPU device only ([`load_on_candle_cpu`], for its tests). The `cuda` feature adds the
//! device (candle's CUDA backend); without it, [`CudaModel::load`] is
//! [`crate::LmError::CudaNotBuilt`].
//!
//! - [`weights`]: how each tensor of the shared weight plan (`crate::model::weights`) goes onto
//!   the device; one linear layer's weights there, in the chosen [`crate::GpuWeights`] format,
//!   and its matmul.
//! - [`kv`]: the device half of a [`crate::KvCache`]: preallocated key/value buffers per layer
//!   (the length lives in the cache's token list, so truncation stays O(1)).
//! - [`attention`]: causal attention of a chunk of new tokens over one sequence's cache.
//! - [`model`]: loading (the same weight plan as the CPU model), and the forward pass.
//!
//! Same semantics as the CPU [`crate::Model::forward_batch`]: a chunk of tokens per sequence in,
//! logits and final hidden states of the requested positions out. Every op used is deterministic
//! (cuBLAS with TF32 off, candle's reduction kernels without atomics), so the same call gives
//! bit-identical results run after run. Unlike the CPU kernel, cuBLAS picks its algorithm by
//! matrix shape, so decoding with the cache and recomputing agree closely but not bit for bit.
//!
//! Building: `cargo build --release -p ralmspec-cli --features cuda` with a CUDA toolkit (nvcc,
//! cuBLAS) on the path and `CUDA_COMPUTE_CAP` set for the target GPU (90 for H100/H200);
//! candle-kernels' nvcc step takes minutes. The tests are `crates/lm/tests/cuda.rs`: on GPU 0
//! in a `cuda` build, on candle's CPU device in a `gpu-forward` one
//! (`cargo test --release -p ralmspec-lm --features gpu-forward --test cuda`).

pub mod attention;
pub mod kv;
pub mod model;
pub mod weights;

pub use kv::CudaKv;
pub use model::CudaModel;

/// Loads the model of `file` with this GPU forward pass running on candle's CPU device instead of
/// a GPU: slow, but the very code that runs on the GPU, so its tests run without one.
#[doc(hidden)]
pub fn load_on_candle_cpu(
    file: &mut crate::gguf::GgufFile,
    weights: crate::GpuWeights,
) -> crate::Result<crate::Model> {
    let config = crate::Config::from_gguf(file.content())?;
    let options = crate::CudaOptions {
        ordinal: 0,
        weights,
    };
    let model = CudaModel::load_onto(file, &config, options, candle_core::Device::Cpu)?;
    Ok(crate::Model::from_cuda_model(config, model))
}
