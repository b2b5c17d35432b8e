//! One request in flight: its prompt, LM session, answer so far, sources and counters. The
//! engines drive it through the same few operations, so every engine builds queries, calls
//! the retriever and extends the answer in exactly the same way.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use ralmspec_lm::Lm;
use ralmspec_retrieval::{Hit, Query};

use crate::error::{EngineError, Result};
use crate::ralm::ask::Ask;
use crate::ralm::config::RalmConfig;
use crate::ralm::doc_kv::DocKv;
use crate::ralm::generation::{Committed, Generation, Halt, Spans, Stats, Stop};
use crate::ralm::knowledge::Knowledge;
use crate::ralm::prompt::Prompt;
use crate::ralm::session::{Answer, Session};
use crate::ralm::trace::{OnTrace, Trace};

/// A commit callback: `Break` ends the request ([`Halt`]).
pub(crate) type OnCommit<'a> = dyn FnMut(Committed<'_>) -> ControlFlow<Halt> + 'a;

pub(crate) struct Request<'a> {
    pub(crate) knowledge: &'a Knowledge,
    config: RalmConfig,
    /// The new-token budget.
    max_new_tokens: usize,
    prompt: Prompt<'a>,
    session: Session<'a>,
    /// Tokens generated so far (committed, then any still unverified).
    answer: Answer,
    spans: Spans,
    on_commit: &'a mut OnCommit<'a>,
    on_trace: &'a mut OnTrace<'a>,
    /// The round the engine is in ([`Trace`]'s numbering): the strides it generates are
    /// that round's.
    pub(crate) round: usize,
    /// The caller asked to stop (its callback returned `Break`).
    halt: Option<Halt>,
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
        ask: &Ask<'_>,
        on_commit: &'a mut OnCommit<'a>,
        on_trace: &'a mut OnTrace<'a>,
    ) -> Result<Request<'a>> {
        let started = Instant::now();
        let prompt = Prompt::new(lm, knowledge, config, &ask.input, ask.max_new_tokens)?;
        let session = Session::new(
            lm,
            doc_kv,
            knowledge.version(),
            prompt.capacity(),
            ask.sampling,
            ask.top_logprobs,
        );
        Ok(Request {
            knowledge,
            config,
            max_new_tokens: ask.max_new_tokens,
            prompt,
            session,
            answer: Answer::default(),
            spans: Spans::default(),
            on_commit,
            on_trace,
            round: 0,
            halt: None,
            stats: Stats::default(),
            started,
            lm,
        })
    }

    /// The query for the next retrieval step, after the answer so far.
    pub(crate) fn query(&self) -> Result<Query> {
        self.knowledge
            .query(self.prompt.query_text(&self.answer.tokens))
    }

    /// The answer's length so far (committed and unverified tokens).
    pub(crate) fn len(&self) -> usize {
        self.answer.len()
    }

    /// Cuts the answer back to its first `len` tokens (a rollback of unverified steps).
    pub(crate) fn rollback_to(&mut self, len: usize) {
        self.answer.truncate(len);
    }

    /// Commits answer tokens `start..end`, generated with `doc`: they are final (a source of
    /// the answer) and go to the caller's callback.
    pub(crate) fn commit(&mut self, doc: u32, start: usize, end: usize) {
        self.spans.push(doc, start, end);
        if start < end && self.halt.is_none() {
            let logprobs = self.answer.logprobs.get(start..end).unwrap_or(&[]);
            let flow = (self.on_commit)(Committed {
                tokens: &self.answer.tokens[start..end],
                doc,
                start,
                logprobs,
            });
            if let ControlFlow::Break(halt) = flow {
                self.halt = Some(halt);
            }
        }
    }

    /// One call to the real retriever, counted, timed and traced as this round's.
    /// Returns the hits and how long the call took.
    pub(crate) fn retrieve(
        &mut self,
        queries: &[Query],
        k: usize,
    ) -> Result<(Vec<Vec<Hit>>, Duration)> {
        let at = self.elapsed();
        let start = Instant::now();
        let hits = self.knowledge.search(queries, k)?;
        let took = start.elapsed();
        self.retrieved(queries.len(), at, took, false);
        Ok((hits, took))
    }

    /// Counts and traces a retriever call of this round made elsewhere (on the verification
    /// thread), started at `at` (since the request's start).
    pub(crate) fn retrieved(
        &mut self,
        queries: usize,
        at: Duration,
        took: Duration,
        overlapped: bool,
    ) {
        self.stats.retrieval_calls += 1;
        self.stats.retrieval_queries += queries;
        self.stats.retrieval_time += took;
        self.stats.overlapped += usize::from(overlapped);
        (self.on_trace)(Trace::Retrieval {
            round: self.round,
            queries,
            at,
            took,
            overlapped,
        });
    }

    /// Records that this round's verification checked `stride` guesses (0: a plain step).
    pub(crate) fn verifying(&mut self, stride: usize) {
        self.stats.strides.push(stride);
    }

    /// Counts and traces this round's verdict: the first `matched` of `stride` guesses were
    /// right; after a wrong one, `truth` is the right document and the answer was cut to
    /// `rollback_to`.
    pub(crate) fn verdict(
        &mut self,
        stride: usize,
        matched: usize,
        truth: Option<u32>,
        rollback_to: Option<usize>,
    ) {
        let wrong = usize::from(truth.is_some());
        self.stats.speculated += matched + wrong;
        self.stats.matched += matched;
        self.stats.rollbacks += wrong;
        (self.on_trace)(Trace::Verdict {
            round: self.round,
            stride,
            matched,
            truth,
            rollback_to,
        });
    }

    /// Time since the request started.
    pub(crate) fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Generates the next stride with `doc` in front (`guess`: a speculated document), and
    /// traces it as this round's. Returns true when the model ended the answer. Fails with
    /// [`EngineError::Cancelled`] once the caller has asked to stop.
    pub(crate) fn step(&mut self, doc: u32, guess: bool) -> Result<bool> {
        if self.halt == Some(Halt::Cancel) {
            return Err(EngineError::Cancelled);
        }
        let n = self.config.stride.min(self.remaining());
        let (at, lm, start) = (self.elapsed(), self.session.lm_time, self.answer.len());
        let (document, question) = self.prompt.input(doc)?;
        let eos = self
            .session
            .extend(doc, document, question, &mut self.answer, n)?;
        (self.on_trace)(Trace::Step {
            round: self.round,
            doc,
            guess,
            start,
            end: self.answer.len(),
            at,
            lm: self.session.lm_time - lm,
        });
        Ok(eos)
    }

    /// Time in single-token forwards so far, and their number.
    pub(crate) fn decode_clock(&self) -> (Duration, usize) {
        (self.session.decode_time, self.session.decoded)
    }

    /// New tokens still allowed.
    pub(crate) fn remaining(&self) -> usize {
        self.max_new_tokens.saturating_sub(self.answer.len())
    }

    /// Why generation stops after a committed step that ended with `eos`, if it does.
    pub(crate) fn stop_after(&self, eos: bool) -> Option<Stop> {
        self.stop_at(self.answer.len(), eos)
    }

    /// Why generation stops after a step that ended the answer at `len` tokens, with `eos`
    /// when the model ended it, if it does. A caller's [`Halt::Finish`] after the commit of
    /// that step comes first: the caller saw the step's tokens, not the model's end.
    pub(crate) fn stop_at(&self, len: usize, eos: bool) -> Option<Stop> {
        if self.halt == Some(Halt::Finish) {
            Some(Stop::Halted)
        } else if eos {
            Some(Stop::EndOfText)
        } else if len >= self.max_new_tokens {
            Some(Stop::Length)
        } else {
            None
        }
    }

    pub(crate) fn finish(mut self, stop: Stop) -> Generation {
        self.stats.wall = self.started.elapsed();
        self.stats.lm_time = self.session.lm_time;
        self.stats.lm_tokens = self.session.tokens_fed;
        let prompt_tokens = self
            .spans
            .as_slice()
            .iter()
            .map(|span| self.prompt.tokens_with(span.doc))
            .sum();
        Generation {
            text: self.lm.tokenizer.decode(&self.answer.tokens),
            tokens: self.answer.tokens,
            logprobs: self.answer.logprobs,
            spans: self.spans.into_vec(),
            stop,
            prompt_tokens,
            stats: self.stats,
        }
    }
}
