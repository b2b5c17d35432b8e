//! Iterative retrieval-augmented generation, RaLM: the baseline engine and RaLMSpec over a
//! knowledge base, the sibling of [`crate::knn`].
//!
//! Modules: [`config`] (the engines' rules), [`ask`] (what a request asks), [`knowledge`] (the
//! retriever seen from here), [`generation`] (what comes back), [`trace`] (what the engine did,
//! for observers), and privately: `prompt` (LM input and queries), `session` (the shared LM
//! execution policy and KV reuse), `doc_kv` (documents' KV shared across requests), `request`
//! (one request in flight and its verbs), `baseline`, `speculative`, `replay` (the oracle
//! floor) and `doc_cache` (the speculation cache).

pub mod ask;
mod baseline;
pub mod config;
mod doc_cache;
mod doc_kv;
pub mod generation;
pub mod knowledge;
mod prompt;
mod replay;
mod request;
mod session;
mod speculative;
pub mod trace;

pub use ask::{Ask, ChatMessage, Input};
pub use config::{Engine, RalmConfig, SpecConfig};
pub use generation::{Committed, Generation, Span, Stats};
pub use knowledge::{Knowledge, Source};
pub use prompt::conversation_tokens;
pub use trace::Trace;

use std::ops::ControlFlow;

use crate::error::Result;
use crate::halt::Halt;

use doc_kv::DocKv;
use ralmspec_lm::Lm;

/// A language model and a knowledge base, serving retrieval-augmented requests.
pub struct Ralm<'a> {
    lm: &'a Lm,
    knowledge: &'a Knowledge,
    config: RalmConfig,
    doc_kv: DocKv,
}

/// Default byte budget of the documents' KV shared across requests.
pub const DEFAULT_DOC_KV_BYTES: usize = 512 << 20;

impl<'a> Ralm<'a> {
    pub fn new(lm: &'a Lm, knowledge: &'a Knowledge, config: RalmConfig) -> Ralm<'a> {
        Ralm {
            lm,
            knowledge,
            config,
            doc_kv: DocKv::new(DEFAULT_DOC_KV_BYTES),
        }
    }

    /// Sets the byte budget of the documents' KV shared across requests (0 turns it off).
    pub fn with_doc_kv_budget(mut self, bytes: usize) -> Ralm<'a> {
        self.doc_kv = DocKv::new(bytes);
        self
    }

    /// Forgets the shared documents' KV, so that the next request starts cold.
    pub fn clear_doc_kv(&self) {
        self.doc_kv.clear();
    }

    /// The rules every request follows.
    pub fn config(&self) -> &RalmConfig {
        &self.config
    }

    /// Answers `ask` with `engine` (`Ask::question(text, budget)` for a greedy answer).
    pub fn generate(&self, ask: &Ask<'_>, engine: Engine) -> Result<Generation> {
        self.generate_streaming(ask, engine, &mut |_| {})
    }

    /// Answers `ask` with `engine`, handing each run of tokens to `on_commit` as soon as it
    /// is final: speculated tokens are passed on only once verified, so nothing passed on is
    /// ever taken back.
    pub fn generate_streaming(
        &self,
        ask: &Ask<'_>,
        engine: Engine,
        on_commit: &mut dyn FnMut(Committed<'_>),
    ) -> Result<Generation> {
        self.generate_cancellable(ask, engine, &mut |c| {
            on_commit(c);
            ControlFlow::Continue(())
        })
    }

    /// Answers `ask` with `engine`, handing each run of final tokens to `on_commit` (as
    /// [`Ralm::generate_streaming`]). When `on_commit` returns `Break(Halt::Cancel)` (say, the
    /// client disconnected), no further step is generated and the result is
    /// [`EngineError::Cancelled`]; with `Break(Halt::Finish)` (a stop sequence appeared) the
    /// answer ends there with [`Stop::Halted`]. Tokens passed on before that are final as ever.
    pub fn generate_cancellable(
        &self,
        ask: &Ask<'_>,
        engine: Engine,
        on_commit: &mut dyn FnMut(Committed<'_>) -> ControlFlow<Halt>,
    ) -> Result<Generation> {
        self.generate_traced(ask, engine, on_commit, &mut |_| {})
    }

    /// [`Ralm::generate_cancellable`], also handing `on_trace` each thing the engine does as
    /// it does it (strides, retriever calls, verdicts: see [`Trace`]). Tracing changes nothing
    /// in the answer.
    pub fn generate_traced(
        &self,
        ask: &Ask<'_>,
        engine: Engine,
        on_commit: &mut dyn FnMut(Committed<'_>) -> ControlFlow<Halt>,
        on_trace: &mut dyn FnMut(Trace),
    ) -> Result<Generation> {
        let knowledge = self.knowledge.pinned()?;
        let mut request = self.request(&knowledge, ask, on_commit, on_trace)?;
        let stop = match engine {
            Engine::Baseline => baseline::run(&mut request)?,
            Engine::Spec(spec) => speculative::run(&mut request, spec)?,
        };
        Ok(request.finish(stop))
    }

    /// The oracle floor for `ask`: the generation that `sources` (a baseline answer's spans,
    /// or a sampled one's) describe, with each step's document given instead of retrieved.
    pub fn replay(&self, ask: &Ask<'_>, sources: &[Span]) -> Result<Generation> {
        let mut ignore = |_: Committed<'_>| ControlFlow::Continue(());
        let mut untraced = |_: Trace| {};
        let knowledge = self.knowledge.pinned()?;
        let mut request = self.request(&knowledge, ask, &mut ignore, &mut untraced)?;
        let stop = replay::run(&mut request, sources)?;
        Ok(request.finish(stop))
    }

    fn request<'r>(
        &'r self,
        knowledge: &'r Knowledge,
        ask: &Ask<'_>,
        on_commit: &'r mut request::OnCommit<'r>,
        on_trace: &'r mut trace::OnTrace<'r>,
    ) -> Result<request::Request<'r>> {
        request::Request::new(
            self.lm,
            knowledge,
            &self.doc_kv,
            self.config,
            ask,
            on_commit,
            on_trace,
        )
    }
}
