//! The language model: everything between token ids and logits.
//!
//! - [`gguf`]: opens a GGUF file (metadata and tensors) with clear errors.
//! - [`config`]: the model's hyper-parameters, from the GGUF metadata.
//! - [`tokenizer`]: byte-level BPE rebuilt from the GGUF metadata, with the ChatML template.
//! - `kernel`: the f32 inner product shared by the model and the quantized kernel.
//! - [`quant`]: quantized weight matrices and the batch-invariant matrix kernel.
//! - [`model`]: the transformer (llama and qwen2 architectures) and its forward pass.
//! - [`kv_cache`]: the caller-owned, truncatable key/value cache (rollback for speculation).
//! - [`device`]: where a model computes (CPU, or a CUDA GPU).
//! - `cuda` (`gpu-forward` feature; on a GPU with the `cuda` feature): the transformer and its KV
//!   cache as candle tensor ops, for a GPU.
//! - [`lm`]: a model and its tokenizer together, loaded by name or path.
//!
//! The model is immutable (`&self`) and shared; each sequence owns its [`KvCache`]. One forward
//! takes a chunk of new tokens for one or several sequences and returns the logits of the
//! requested positions together with their final hidden states (the kNN-LM keys).

pub mod config;
#[cfg(feature = "gpu-forward")]
pub mod cuda;
pub mod device;
pub mod error;
pub mod gguf;
mod kernel;
pub mod kv_cache;
pub mod lm;
pub mod model;
pub mod quant;
pub mod tokenizer;

pub use config::{Architecture, Config, RopeStyle};
pub use device::{CudaOptions, Device, GpuWeights};
pub use error::{LmError, Result};
pub use kv_cache::{CacheDevice, KvCache};
pub use lm::{Lm, Stop, argmax};
pub use model::{Model, Output, Outputs, Step};
pub use tokenizer::{ChatMessage, ChatTemplate, Tokenizer, TokenizerPath};
