//! The error type of the LM crate.

use std::path::PathBuf;

/// Everything that can go wrong loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum LmError {
    #[error("cannot read model file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid GGUF model: {reason}")]
    InvalidGguf { path: PathBuf, reason: String },
    #[error("unsupported model: {0}")]
    Unsupported(String),
    #[error("GGUF metadata key `{0}` is missing or has the wrong type")]
    MissingMetadata(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The model's chat template failed to compile or to render a conversation (a template's
    /// own `raise_exception` message included).
    #[error("chat template: {0}")]
    ChatTemplate(String),
    #[error("the sequence would be {needed} tokens long, but the context holds {capacity}")]
    ContextOverflow { needed: usize, capacity: usize },
    #[error("token id {id} is outside the vocabulary of {vocab} tokens")]
    BadToken { id: u32, vocab: usize },
    #[error("this build has no CUDA support (build it with the `cuda` feature and a CUDA toolkit)")]
    CudaNotBuilt,
    #[error("no usable CUDA GPU {ordinal}: {reason}")]
    NoGpu { ordinal: usize, reason: String },
    #[error("the KV cache lives on {cache}, but the model computes on {model}")]
    CacheDevice { model: String, cache: String },
    #[error("KV cache unusable after a failed device copy: {0}")]
    CacheFault(String),
    #[error("tensor backend: {0}")]
    Candle(#[from] candle_core::Error),
}

/// The LM crate's result type.
pub type Result<T, E = LmError> = std::result::Result<T, E>;
