//! The workers that own generation, and the bounded queue that feeds them.
//!
//! Handlers never touch the model: they `Queue::submit` a [`Job`] and read its [`Event`]s
//! from a channel of their own. Each worker is a plain OS thread (generation is a blocking CPU
//! loop, kept off tokio's threads) with its own [`Ralm`] per knowledge base, so the documents'
//! KV it computes is reused by the requests it serves next. A job runs to its end on the worker
//! that took it; requests are served first come, first served, `workers` at a time.
//!
//! Admission (`crate::queue`): the queue holds at most `queue_capacity` jobs; one more is refused
//! at once with 503 and `Retry-After` (no unbounded buffer anywhere: a job's event channel
//! carries at most one message per committed step plus one).
//!
//! Cancellation: a client that goes away drops its receiver and its admission. A job still
//! queued leaves the queue at once (its slot is free for the next request); one already
//! running stops at its next step, because the commit callback reports the closed channel to
//! the engine ([`Ralm::generate_cancellable`]).
//!
//! Metrics count work as it is done: each commit's tokens (with time to first token and the
//! gaps between commits), whatever becomes of the request.
//!
//! Batching across requests: within one request, RaLMSpec verifies its speculated steps with
//! ONE batched retriever call. Across requests, the `workers` threads interleave at every LM
//! step and speculation round (the OS schedules them; none holds a lock while generating), and
//! the knowledge bases they share search through a [`CombiningRetriever`]: verifications of
//! several requests that reach the retriever at the same time go to it as one batch, one call
//! per distinct `k`, with no timer waiting for more. Each request still gets exactly its own
//! hits, so its output is what it gets alone (the forward pass and the retrievers are
//! batch-invariant). Forward passes are not shared: each request runs its own.
//!
//! [`CombiningRetriever`]: crate::batcher::CombiningRetriever

use std::ops::ControlFlow;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use ralmspec_engine::{EngineError, Halt, Knowledge, Ralm, RalmConfig, Span, Stop, Trace};
use ralmspec_lm::{Lm, Tokenizer};

use crate::error::{ApiError, ServerError};
pub use crate::job::{Event, Finished, Job, Piece};
use crate::metrics::{Metrics, Outcome};
use crate::queue::{self, Jobs, Queue};
use crate::stop::StopText;
use crate::trace::TraceEvent;
use crate::wire::{Source, TokenLogprob, TopLogprob};

/// The worker threads. They stop once every [`Queue`] is dropped and the queue is drained.
pub struct Workers {
    threads: Vec<JoinHandle<()>>,
}

/// What each worker needs.
struct Context {
    lm: Arc<Lm>,
    knowledge: Vec<Arc<Knowledge>>,
    ralm: RalmConfig,
    jobs: Jobs,
    metrics: Arc<Metrics>,
}

impl Workers {
    /// Starts `count` workers behind a queue of `capacity` jobs.
    pub fn start(
        lm: Arc<Lm>,
        knowledge: Vec<Arc<Knowledge>>,
        ralm: RalmConfig,
        count: usize,
        capacity: usize,
        retry_after: u32,
        metrics: Arc<Metrics>,
    ) -> Result<(Workers, Queue), ServerError> {
        let (queue, jobs) = queue::bounded(capacity, retry_after, metrics.clone());
        let mut threads = Vec::with_capacity(count);
        for i in 0..count {
            let context = Context {
                lm: lm.clone(),
                knowledge: knowledge.clone(),
                ralm,
                jobs: jobs.clone(),
                metrics: metrics.clone(),
            };
            let thread = std::thread::Builder::new()
                .name(format!("ralmspec-worker-{i}"))
                .spawn(move || context.run())
                .map_err(ServerError::Worker)?;
            threads.push(thread);
        }
        Ok((Workers { threads }, queue))
    }

    /// Waits for the workers to finish the queued jobs and stop (every `Queue` must be gone).
    pub fn join(self) {
        for thread in self.threads {
            // A worker catches its jobs' panics; a join error would be a bug in the loop itself.
            let _ = thread.join();
        }
    }
}

impl Context {
    fn run(self) {
        let ralms: Vec<Ralm<'_>> = self
            .knowledge
            .iter()
            .map(|k| Ralm::new(&self.lm, k, self.ralm))
            .collect();
        loop {
            let Some(job) = self.jobs.next() else { return };
            self.metrics.started(job.admitted.elapsed());
            if job.events.is_closed() {
                self.metrics.ended(&job.labels, Outcome::Cancelled);
            } else {
                let ralm = &ralms[job.request.knowledge];
                let knowledge = &self.knowledge[job.request.knowledge];
                let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    self.serve(ralm, knowledge, &job)
                }));
                if outcome.is_err() {
                    self.metrics.ended(&job.labels, Outcome::Failed);
                    let _ = job
                        .events
                        .send(Event::Failed(ApiError::internal("the generation panicked")));
                }
            }
            self.metrics.stopped();
        }
    }

    /// Generates `job`'s answer, sending each commit as it becomes final: its text up to a
    /// stop sequence, if one appears (the engine is then told to finish).
    fn serve(&self, ralm: &Ralm<'_>, knowledge: &Knowledge, job: &Job) {
        let request = &job.request;
        let tokenizer = &self.lm.tokenizer;
        let mut text = tokenizer.stream();
        let mut stop = StopText::new(request.stop.clone());
        let mut sent = String::new();
        // Answer tokens that count (all, or up to the one that completed a stop sequence).
        let mut used = 0;
        let mut last_commit: Option<Instant> = None;
        // Trace events share the commits' channel, so they arrive in the order they happened.
        let mut on_trace = |trace| {
            let _ = job
                .events
                .send(Event::Trace(TraceEvent::new(knowledge, trace)));
        };
        let on_trace: &mut dyn FnMut(Trace) = if request.events {
            &mut on_trace
        } else {
            &mut |_| {}
        };
        let result = ralm.generate_traced(
            &request.ask(),
            request.engine,
            &mut |c| {
                let now = Instant::now();
                self.metrics.committed(
                    &job.labels,
                    c.tokens.len(),
                    now - job.admitted,
                    last_commit.map(|t| now - t),
                );
                last_commit = Some(now);
                job.log.add_tokens(c.tokens.len());
                let mut piece = String::new();
                let mut n = 0;
                for &token in c.tokens {
                    n += 1;
                    if let Some(s) = text.push(token) {
                        piece.push_str(&stop.push(&s));
                    }
                    if stop.stopped() {
                        break;
                    }
                }
                used = c.start + n;
                sent.push_str(&piece);
                let span = Span {
                    doc: c.doc,
                    start: c.start,
                    end: c.start + n,
                };
                let logprobs = c.logprobs.iter().take(n);
                let event = Event::Commit(Piece {
                    text: piece,
                    source: source(knowledge, span),
                    logprobs: logprobs.map(|lp| wire_logprob(tokenizer, lp)).collect(),
                });
                match job.events.send(event) {
                    Ok(()) if stop.stopped() => ControlFlow::Break(Halt::Finish),
                    Ok(()) => ControlFlow::Continue(()),
                    Err(_) => ControlFlow::Break(Halt::Cancel),
                }
            },
            on_trace,
        );
        match result {
            Ok(generation) => {
                let mut tail = String::new();
                if !stop.stopped() {
                    tail = stop.push(&text.finish());
                    if !stop.stopped() {
                        tail.push_str(&stop.flush());
                    }
                }
                let stopped = stop.stopped();
                let completion_tokens = if stopped {
                    used
                } else {
                    generation.tokens.len()
                };
                self.metrics.finished(
                    &job.labels,
                    job.admitted.elapsed(),
                    completion_tokens,
                    &generation.stats,
                );
                let sources = generation
                    .spans
                    .iter()
                    .filter(|s| s.start < completion_tokens)
                    .map(|s| {
                        let end = s.end.min(completion_tokens);
                        source(knowledge, Span { end, ..*s })
                    })
                    .collect();
                sent.push_str(&tail);
                let finished = Finished {
                    text: sent,
                    tail,
                    stop: if stopped {
                        Stop::Halted
                    } else {
                        generation.stop
                    },
                    completion_tokens,
                    prompt_tokens: generation.prompt_tokens,
                    sources,
                    logprobs: generation
                        .logprobs
                        .iter()
                        .take(completion_tokens)
                        .map(|lp| wire_logprob(tokenizer, lp))
                        .collect(),
                };
                // The client may have gone after the last commit: nothing left to stop.
                let _ = job.events.send(Event::Done(finished));
            }
            Err(EngineError::Cancelled) => self.metrics.ended(&job.labels, Outcome::Cancelled),
            Err(e) => {
                self.metrics.ended(&job.labels, Outcome::Failed);
                let _ = job.events.send(Event::Failed(e.into()));
            }
        }
    }
}

/// The wire form of a token's log-probabilities: each token's text and bytes.
fn wire_logprob(tokenizer: &Tokenizer, lp: &ralmspec_engine::TokenLogprob) -> TokenLogprob {
    let text = |id: u32| {
        let bytes = tokenizer.token_bytes(id).to_vec();
        (String::from_utf8_lossy(&bytes).into_owned(), bytes)
    };
    let (token, bytes) = text(lp.token);
    TokenLogprob {
        token,
        logprob: lp.logprob,
        bytes,
        top_logprobs: lp
            .top
            .iter()
            .map(|&(id, logprob)| {
                let (token, bytes) = text(id);
                TopLogprob {
                    token,
                    logprob,
                    bytes,
                }
            })
            .collect(),
    }
}

/// The wire form of a span: the document's number, its corpus id and title, and the answer
/// tokens it informed.
fn source(knowledge: &Knowledge, span: Span) -> Source {
    let (id, title) = knowledge
        .passage(span.doc)
        .map(|p| (p.id, p.title))
        .unwrap_or_default();
    Source {
        doc: span.doc,
        id,
        title,
        start: span.start,
        end: span.end,
    }
}
