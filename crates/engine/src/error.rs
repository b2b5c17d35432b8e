//! The engine's error type: what the LM or the retriever reported, and the engine's own checks.

use ralmspec_lm::LmError;
use ralmspec_retrieval::RetrievalError;

/// `Result` with [`EngineError`] as the default error.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// Why a request could not be served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The language model failed.
    #[error(transparent)]
    Lm(#[from] LmError),

    /// The retriever or the encoder failed.
    #[error(transparent)]
    Retrieval(#[from] RetrievalError),

    /// The retriever returned no document at all for a query.
    #[error("the retriever returned no document for the query {query:?}")]
    NothingRetrieved {
        /// The query text.
        query: String,
    },

    /// The retriever returned a document id the knowledge base has no text for.
    #[error("document {0} is not in the knowledge base")]
    UnknownDocument(u32),

    /// The question (with a document in front) does not fit the model's context.
    #[error(
        "the question is {question} tokens; with a {doc}-token document and {new} new tokens it needs {needed} positions, but the model's context holds {context}"
    )]
    TooLong {
        /// Tokens of the question turn.
        question: usize,
        /// The document budget.
        doc: usize,
        /// The new-token budget.
        new: usize,
        /// Their sum plus the chat framing.
        needed: usize,
        /// The model's context length.
        context: usize,
    },

    /// The request itself is invalid (an empty question, a zero stride, ...).
    #[error("invalid request: {0}")]
    BadRequest(String),

    /// The caller stopped the request (see `Ralm::generate_cancellable`).
    #[error("the request was cancelled")]
    Cancelled,

    /// A kNN-LM datastore folder is missing, damaged, or from another model.
    #[error("kNN-LM datastore {path}: {reason}")]
    BadDatastore {
        /// The file or folder at fault.
        path: std::path::PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// The verification thread panicked.
    #[error("the verification thread failed: {0}")]
    Verifier(String),
}
