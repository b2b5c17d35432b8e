//! Iterative retrieval-augmented generation: the baseline engine and RaLMSpec.
//!
//! A request ([`Ask`]) is a question, a conversation or raw text; the answer is generated
//! greedily or sampled ([`Sampling`]: each draw depends only on the seed and the token's
//! position, so sampling keeps the guarantee below), and every `stride` tokens a document is
//! retrieved for the text generated so far and placed in front of the prompt ([`RalmConfig`],
//! the paper's §1). [`Ralm::generate`] serves it with either engine:
//!
//! - [`Engine::Baseline`]: retrieve, then generate, every stride.
//! - [`Engine::Spec`]: RaLMSpec: speculate retrievals from a per-request cache, verify several
//!   at once, roll back on a mismatch ([`SpecConfig`]: prefetching, OS³, async verification).
//!
//! Both produce the same tokens for the same request, always. Modules: [`ralm`] (RaLM and its
//! engines) and its sibling [`knn`] (below), and what both share: [`sampling`] (how a token is
//! chosen), `halt` (how a generation ends), `stride` (the speculation stride), `os3` (the stride
//! scheduler), `verifier` (asynchronous verification on its own thread pool) and `error`.
//!
//! [`knn`] serves the other retrieval-augmented LM of the paper, kNN-LM (a datastore search at
//! every token), plain and speculative, with the same guarantee.

mod error;
mod halt;
pub mod knn;
mod os3;
pub mod ralm;
pub mod sampling;
mod stride;
mod verifier;

pub use error::{EngineError, Result};
pub use halt::{Halt, Stop};
pub use ralm::{
    Ask, ChatMessage, Committed, Engine, Generation, Input, Knowledge, Ralm, RalmConfig, Source,
    Span, SpecConfig, Stats, Trace, conversation_tokens,
};
pub use sampling::{Sampling, TokenLogprob};
pub use stride::Stride;
