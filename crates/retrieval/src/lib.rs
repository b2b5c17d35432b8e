//! Retrieval for ralmspec: the corpus of passages, the dense encoder, and batch-first
//! retrievers behind one seam ([`Retriever`]).
//!
//! - [`corpus`]: [`Passage`], [`Corpus`] and its loaders (knowledge base asset, JSONL, DPR TSV).
//! - [`encoder`]: a BERT-family sentence-transformers encoder on candle ([`Encoder`];
//!   all-MiniLM-L6-v2 by default), batch-invariant, named for index manifests.
//! - [`retriever`]: the [`Retriever`] trait, [`Query`], [`Hit`] and the ranking rule (higher
//!   score first, then lower doc id) every retriever follows.
//! - [`flat`]: exact dense search ([`FlatIndex`]), one pass over the vectors per batch.
//! - [`vectors`]: how a dense index stores its vectors, f32 or f16 ([`Precision`]).
//! - [`metric`]: inner product or L2 ([`Metric`]), one scoring kernel for both.
//! - [`npy`]: passage vectors users bring as a `.npy` file ([`NpyVectors`]): memory-mapped,
//!   read in f32 chunks, validated against the corpus and the encoder.
//! - [`hnsw`]: approximate dense search ([`HnswIndex`]), scored exactly like [`FlatIndex`].
//! - [`index`]: dense index folders on disk (versioned manifest, atomic writes, memory-mapped
//!   and validated loads); [`flat_writer`]: a flat folder written chunk by chunk
//!   ([`FlatWriter`]), for indexes larger than memory.
//! - [`bm25`]: sparse retrieval, BM25 on tantivy ([`Bm25Index`]), with its own index folders.
//! - [`padding`]: synthetic passages that grow a corpus to N for scale experiments;
//!   [`dense_padding`]: their vectors.
//! - [`passages`]: reading documents back as passages ([`PassageSource`]).
//! - [`pg`]: PostgreSQL + pgvector as a retrieval backend ([`PgRetriever`]): exact or HNSW,
//!   replicas, versioned tables loaded by binary COPY and swapped in atomically.
//! - [`questions`]: evaluation questions (FanOutQA's single-hop questions).

mod atomic;
pub mod bm25;
pub mod corpus;
pub mod dense_padding;
pub mod encoder;
mod error;
mod files;
pub mod flat;
pub mod flat_writer;
pub mod hnsw;
mod ids;
pub mod index;
mod kernel;
pub mod metric;
pub mod npy;
pub mod padding;
pub mod passages;
pub mod pg;
pub mod questions;
pub mod retriever;
pub mod set;
mod slab;
pub mod vectors;

pub use bm25::Bm25Index;
pub use corpus::{Corpus, Format, Passage};
pub use encoder::{ENCODER_NAME, Encoder, EncoderOptions};
pub use error::{Result, RetrievalError};
pub use files::read_json;
pub use flat::FlatIndex;
pub use flat_writer::FlatWriter;
pub use hnsw::{HnswIndex, HnswParams};
pub use index::Manifest;
pub use metric::Metric;
pub use npy::{NpyVectors, VectorFault};
pub use padding::{Padding, PaddingRecord};
pub use passages::{Padded, PassageSource};
pub use pg::{Database, PgRetriever};
pub use retriever::{Hit, Query, Retriever, Snapshot};
pub use set::{IndexSet, Kind};
pub use vectors::Precision;

pub(crate) use ralmspec_assets::hex;
