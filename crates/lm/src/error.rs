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
    /// `Device::Cuda` in a build without the `cuda` feature (with or without `gpu-forward`).
    #[error("this build has no CUDA support (build it with the `cuda` feature and a CUDA toolkit)")]
    CudaNotBuilt,
    #[error("no usable CUDA GPU {ordinal}: {reason}")]
    NoGpu { ordinal: usize, reason: String },
    #[error(
        "the KV cache lives on {cache}, but the model (or the cache copied into) is on {model}"
    )]
    CacheDevice { model: String, cache: String },
    #[error("tensor backend: {}", candle_message(.0))]
    Candle(#[from] candle_core::Error),
}

/// A candle error's message without the backtrace candle appends to it when `RUST_BACKTRACE`
/// is set: a bad file is a user error, and its message is the whole story.
pub fn candle_message(e: &candle_core::Error) -> String {
    match e {
        candle_core::Error::WithBacktrace { inner, .. } => candle_message(inner),
        candle_core::Error::Context { inner, context } => {
            format!("{context}: {}", candle_message(inner))
        }
        candle_core::Error::WithPath { inner, path } => {
            format!("{}: {}", path.display(), candle_message(inner))
        }
        other => other.to_string(),
    }
}

/// The LM crate's result type.
pub type Result<T, E = LmError> = std::result::Result<T, E>;
