//! The crate's one error type: every way loading a corpus, running the encoder, searching or
//! reading an index can fail, each naming the file (and line) involved.

use std::io;
use std::path::{Path, PathBuf};

/// `Result` with [`RetrievalError`] as the default error.
pub type Result<T, E = RetrievalError> = std::result::Result<T, E>;

/// Why a corpus, encoder, retriever or index operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RetrievalError {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },

    /// One line of a corpus file (JSONL or TSV) is not a valid passage.
    #[error("{}:{line}: {reason}", path.display())]
    BadLine {
        /// The corpus file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },

    /// A corpus file as a whole is unusable (not the expected JSON shape, duplicate ids, ...).
    #[error("{}: {reason}", path.display())]
    BadCorpus {
        /// The corpus file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// Two passages of a corpus have the same id.
    #[error("id {id:?} of passage {again} was already used by passage {first}")]
    DuplicateId {
        /// The repeated id.
        id: String,
        /// The first passage with it (0-based position in the corpus).
        first: u32,
        /// The passage that repeats it.
        again: u32,
    },

    /// Vectors made by one encoder met queries (or vectors) of another.
    #[error(
        "the index was built with encoder {index:?}, but the queries use {query:?}; pass the index's encoder (--encoder) or rebuild the index"
    )]
    EncoderMismatch {
        /// The encoder recorded in the index.
        index: String,
        /// The encoder in use.
        query: String,
    },

    /// The asset store could not provide a model or the knowledge base.
    #[error(transparent)]
    Asset(#[from] ralmspec_assets::AssetError),

    /// The encoder's weights or config could not be loaded, or its forward pass failed.
    #[error("encoder model {}: {reason}", path.display())]
    Model {
        /// The model folder or file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },

    /// The tokenizer could not be loaded or could not encode a text.
    #[error("tokenizer {}: {reason}", path.display())]
    Tokenizer {
        /// tokenizer.json.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },

    /// A dense retriever got a query without an embedding, or one of the wrong length.
    #[error("query {text:?}: {reason}")]
    BadQuery {
        /// The query text (for the message).
        text: String,
        /// What is wrong.
        reason: String,
    },

    /// `score` was asked about a document the retriever does not hold.
    #[error("document {doc} is not in this retriever ({len} documents)")]
    UnknownDoc {
        /// The document id asked for.
        doc: u32,
        /// How many documents the retriever holds.
        len: usize,
    },

    /// Vectors and ids handed to an index do not fit together.
    #[error("invalid index data: {reason}")]
    BadIndexData {
        /// What does not fit.
        reason: String,
    },

    /// An index file is missing, truncated, corrupt, or does not match what was expected.
    #[error("index file {}: {reason}", path.display())]
    BadIndex {
        /// The file inside the index folder.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// Writing an index failed inside the index library (BM25: tantivy).
    #[error("building index {}: {reason}", path.display())]
    IndexBuild {
        /// The folder being written.
        path: PathBuf,
        /// What the library said.
        reason: String,
    },

    /// A `.npy` vectors file cannot be used: not a `.npy` file, an unsupported dtype, memory
    /// order or shape, or a length that does not match its header.
    #[error("{}: {reason}", path.display())]
    BadNpy {
        /// The `.npy` file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A vectors file has a different number of rows than the corpus has passages.
    #[error("{} has {rows} rows, the corpus {passages} passages", path.display())]
    VectorRows {
        /// The vectors file.
        path: PathBuf,
        /// Rows in the file.
        rows: usize,
        /// Passages in the corpus.
        passages: usize,
    },

    /// A vectors file's dimension is not the encoder's.
    #[error(
        "{} has dimension {dims}, the encoder {}gives {expected}",
        path.display(),
        encoder.as_deref().map(|n| format!("{n} ")).unwrap_or_default()
    )]
    VectorDims {
        /// The vectors file.
        path: PathBuf,
        /// Length of the file's vectors.
        dims: usize,
        /// The encoder's embedding length.
        expected: usize,
        /// The encoder's name, when known.
        encoder: Option<String>,
    },

    /// One row of a vectors file is unusable (NaN, infinite, zero, or not unit length when
    /// the encoder normalises).
    #[error("{}: row {row} {fault}", path.display())]
    BadVector {
        /// The vectors file.
        path: PathBuf,
        /// 0-based row index.
        row: usize,
        /// What is wrong with it.
        fault: VectorFault,
    },

    /// An encoder folder's `config.json` is for a model architecture other than BERT.
    #[error(
        "encoder model {}: model_type {model_type:?} is not supported; only BERT-family \
         encoders (model_type \"bert\") are",
        path.display()
    )]
    UnsupportedModel {
        /// config.json.
        path: PathBuf,
        /// Its `model_type`.
        model_type: String,
    },

    /// A sentence-transformers file of an encoder folder (`modules.json`, the pooling config,
    /// `sentence_bert_config.json`, `config_sentence_transformers.json`) is malformed or asks
    /// for something this encoder does not do.
    #[error("encoder config {}: {reason}", path.display())]
    EncoderConfig {
        /// The file.
        path: PathBuf,
        /// What is wrong or unsupported.
        reason: String,
    },

    /// The retrieval backend cannot be reached: every database of `--database` is down, or
    /// did not answer in time. The request that needed it fails; others go on.
    #[error("retriever unavailable: {reason}")]
    Unavailable {
        /// What happened at each database tried.
        reason: String,
    },

    /// The database answered with an error that trying again will not fix (a missing table
    /// or extension, a wrong dimension, an index built by another encoder, ...).
    #[error("database: {reason}")]
    Database {
        /// What the database said, and what to do.
        reason: String,
    },

    /// The database holds no index of this name.
    #[error(
        "{database} holds no index {name:?}: load one with `ralmspec index build --kind pgvector --database URL --table {name}`"
    )]
    NotLoaded {
        /// The index name (`--table`).
        name: String,
        /// The databases asked, passwords hidden.
        database: String,
    },

    /// A search shared with other callers failed (a server combines concurrent searches into
    /// one call): the first caller gets the original error, the others its message in this.
    #[error("{reason}")]
    Shared {
        /// The original error's message.
        reason: String,
    },
}

impl RetrievalError {
    /// This error for a second caller of a call that failed (a server combines concurrent
    /// searches into one call): the same kind where it matters to them (the backend being
    /// unavailable, a database error), else [`RetrievalError::Shared`] with the message.
    pub fn share(&self) -> RetrievalError {
        match self {
            RetrievalError::Unavailable { reason } => RetrievalError::Unavailable {
                reason: reason.clone(),
            },
            RetrievalError::Database { reason } => RetrievalError::Database {
                reason: reason.clone(),
            },
            other => RetrievalError::Shared {
                reason: other.to_string(),
            },
        }
    }

    /// True when the retrieval backend could not be reached (a request needing it fails,
    /// and may succeed later).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, RetrievalError::Unavailable { .. })
    }

    pub(crate) fn index_build(path: &Path, reason: impl std::fmt::Display) -> Self {
        RetrievalError::IndexBuild {
            path: path.to_owned(),
            reason: reason.to_string(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        RetrievalError::Io {
            path: path.into(),
            source,
        }
    }

    pub fn bad_index(path: &Path, reason: impl Into<String>) -> Self {
        RetrievalError::BadIndex {
            path: path.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Attaches a path to `io::Result`s.
pub(crate) trait IoContext<T> {
    fn at(self, path: &Path) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: &Path) -> Result<T> {
        self.map_err(|e| RetrievalError::io(path, e))
    }
}

/// How far a row's norm may be from 1 when the encoder normalises its embeddings.
pub const UNIT_NORM_TOLERANCE: f32 = 1e-2;

/// What is wrong with one row of a vectors file (see [`RetrievalError::BadVector`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum VectorFault {
    /// A value is NaN.
    NaN,
    /// A value is +∞ or −∞.
    Infinite,
    /// Every value is 0: the row points nowhere.
    ZeroNorm,
    /// The encoder normalises, but this row's L2 norm is not within
    /// [`UNIT_NORM_TOLERANCE`] of 1.
    NotUnit {
        /// The row's L2 norm.
        norm: f32,
    },
}

impl std::fmt::Display for VectorFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VectorFault::NaN => f.write_str("holds NaN"),
            VectorFault::Infinite => f.write_str("holds an infinite value"),
            VectorFault::ZeroNorm => f.write_str("is all zeros (norm 0)"),
            VectorFault::NotUnit { norm } => write!(
                f,
                "has norm {norm}, but the encoder gives unit vectors (norm 1 ± {})",
                UNIT_NORM_TOLERANCE
            ),
        }
    }
}
