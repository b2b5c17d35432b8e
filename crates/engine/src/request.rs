//! One request in flight: its prompt, LM session, answer so far, sources and counters. The
//! engines drive it through the same few operations, so every engine builds queries, calls
//! the retriever and extends the answer in exactly the same way.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use ralmspec_lm::Lm;
use ralmspec_retrieval::{Hit, Query};

use crate::config::RalmConfig;
use crate::doc_kv::DocKv;
use crate::error::{EngineError, Result};
use crate::generation::{Committed, Generation, Spans, Stats, Stop};
use crate::knowledge::Knowledge;
use crate::prompt::Prompt;
use crate::session::Session;

pub(crate) struct Request<'a> {
    pub(crate) knowledge: &'a Knowledge,
    config: RalmConfig,
    prompt: Prompt<'a>,
    session: Session<'a>,
    /// Tokens generated so far (committed, then any still unverified).
    pub(crate) answer: Vec<u32>,
    spans: Spans,
    on_commit: &'a mut dyn FnMut(Committed<'_>) -> ControlFlow<()>,
    /// The caller asked to stop (its callback returned `Break`).
    cancelled: bool,
    pub(crate) stats: Stats,
    started: Instant,
    lm: &'a Lm,
}

impl<'a> Request<'a> {
    pub(crate) fn new(
        lm: &'a Lm,
        knowledge: &'a Knowledge,
        doc_kv: &'a DocKv,
        config: RalmConfig,
        question: &str,
        on_commit: &'a mut dyn FnMut(Committed<'_>) -> ControlFlow<()>,
    ) -> Result<Request<'a>> {
        let started = Instant::now();
        let prompt = Prompt::new(lm, knowledge, config, question)?;
        let session = Session::new(lm, doc_kv, knowledge.version(), prompt.capacity());
        Ok(Request {
            knowledge,
            config,
            prompt,
            session,
            answer: Vec::with_capacity(config.max_new_tokens),
            spans: Spans::default(),
            on_commit,
            cancelled: false,
            stats: Stats::default(),
            started,
            lm,
        })
    }

    /// The query for the next retrieval step, after the answer so far.
    pub(crate) fn query(&self) -> Result<Query> {
        self.knowledge.query(self.prompt.query_text(&self.answer))
    }

    /// Commits answer tokens `start..end`, generated with `doc`: they are final (a source of
    /// the answer) and go to the caller's callback.
    pub(crate) fn commit(&mut self, doc: u32, start: usize, end: usize) {
        self.spans.push(doc, start, end);
        if start < end && !self.cancelled {
            let flow = (self.on_commit)(Committed {
                tokens: &self.answer[start..end],
                doc,
                start,
            });
            self.cancelled = flow.is_break();
        }
    }

    /// One call to the real retriever, counted and timed.
    pub(crate) fn retrieve(&mut self, queries: &[Query], k: usize) -> Result<Vec<Vec<Hit>>> {
        let start = Instant::now();
        let hits = self.knowledge.search(queries, k)?;
        self.retrieved(queries.len(), start.elapsed());
        Ok(hits)
    }

    /// Counts a retriever call made elsewhere (on the verification thread).
    pub(crate) fn retrieved(&mut self, queries: usize, took: std::time::Duration) {
        self.stats.retrieval_calls += 1;
        self.stats.retrieval_queries += queries;
        self.stats.retrieval_time += took;
    }

    /// Generates the next stride with `doc` in front. Returns true when the model ended the
    /// answer. Fails with [`EngineError::Cancelled`] once the caller has asked to stop.
    pub(crate) fn step(&mut self, doc: u32) -> Result<bool> {
        if self.cancelled {
            return Err(EngineError::Cancelled);
        }
        let n = self.config.stride.min(self.remaining());
        let (document, question) = self.prompt.input(doc)?;
        self.session
            .extend(doc, document, question, &mut self.answer, n)
    }

    /// Time in single-token forwards so far, and their number.
    pub(crate) fn decode_clock(&self) -> (Duration, usize) {
        (self.session.decode_time, self.session.decoded)
    }

    /// New tokens still allowed.
    pub(crate) fn remaining(&self) -> usize {
        self.config.max_new_tokens.saturating_sub(self.answer.len())
    }

    /// Why generation stops after a committed step that ended with `eos`, if it does.
    pub(crate) fn stop_after(&self, eos: bool) -> Option<Stop> {
        self.stop_at(self.answer.len(), eos)
    }

    /// Why generation stops after a step that ended the answer at `len` tokens, with `eos`
    /// when the model ended it, if it does.
    pub(crate) fn stop_at(&self, len: usize, eos: bool) -> Option<Stop> {
        if eos {
            Some(Stop::EndOfText)
        } else if len >= self.config.max_new_tokens {
            Some(Stop::Length)
        } else {
            None
        }
    }

    pub(crate) fn finish(mut self, stop: Stop) -> Generation {
        self.stats.wall = self.started.elapsed();
        self.stats.lm_time = self.session.lm_time;
        self.stats.lm_tokens = self.session.tokens_fed;
        Generation {
            text: self.lm.tokenizer.decode(&self.answer),
            tokens: self.answer,
            spans: self.spans.into_vec(),
            stop,
            stats: self.stats,
        }
    }
}
