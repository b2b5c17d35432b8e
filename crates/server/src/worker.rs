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

use ralmspec_engine::knn;
use ralmspec_engine::{Engine, EngineError, Halt, Knowledge, Ralm, RalmConfig, Span, Stop, Trace};
use ralmspec_lm::tokenizer::TextStream;
use ralmspec_lm::{Lm, Tokenizer};

use crate::config::ServerConfig;
use crate::error::{ApiError, ServerError};
pub use crate::job::{Event, Finished, Job, Piece};
use crate::knn::KnnDatastore;
use crate::metrics::{Metrics, Outcome};
use crate::queue::{self, Jobs, Queue};
use crate::request::{Generator, Prompt};
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
    knn: Option<KnnDatastore>,
    ralm: RalmConfig,
    jobs: Jobs,
    metrics: Arc<Metrics>,
}

impl Workers {
    /// Starts `config.workers` workers behind a queue of `config.queue_capacity` jobs.
    pub fn start(
        lm: Arc<Lm>,
        knowledge: Vec<Arc<Knowledge>>,
        knn: Option<KnnDatastore>,
        config: &ServerConfig,
        metrics: Arc<Metrics>,
    ) -> Result<(Workers, Queue), ServerError> {
        let (queue, jobs) = queue::bounded(
            config.queue_capacity,
            config.retry_after_secs,
            metrics.clone(),
        );
        let mut threads = Vec::with_capacity(config.workers);
        for i in 0..config.workers {
            let context = Context {
                lm: lm.clone(),
                knowledge: knowledge.clone(),
                knn: knn.clone(),
                ralm: config.ralm,
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
                let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    match (job.request.generator, &self.knn) {
                        (Generator::Ralm { engine, knowledge }, _) => {
                            self.serve(&ralms[knowledge], &self.knowledge[knowledge], &job, engine)
                        }
                        (Generator::Knn(engine), Some(knn)) => self.serve_knn(knn, &job, engine),
                        (Generator::Knn(_), None) => self.failed(
                            &job,
                            EngineError::BadRequest("this server has no kNN-LM datastore".into()),
                        ),
                    }
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
    fn serve(&self, ralm: &Ralm<'_>, knowledge: &Knowledge, job: &Job, engine: Engine) {
        let tokenizer = &self.lm.tokenizer;
        let mut out = Outgoing::new(job, &self.metrics, tokenizer);
        let ask = job.request.ask();
        // Trace events share the commits' channel, so they arrive in the order they happened.
        let mut on_trace = |trace| {
            let _ = job
                .events
                .send(Event::Trace(TraceEvent::new(knowledge, trace)));
        };
        let on_trace: &mut dyn FnMut(Trace) = if job.request.events {
            &mut on_trace
        } else {
            &mut |_| {}
        };
        let on_commit = &mut |c: ralmspec_engine::Committed<'_>| {
            let (text, n) = out.take(c.start, c.tokens);
            let span = Span {
                doc: c.doc,
                start: c.start,
                end: c.start + n,
            };
            let logprobs = c.logprobs.iter().take(n);
            out.send(Piece {
                text,
                source: Some(source(knowledge, span)),
                logprobs: logprobs.map(|lp| wire_logprob(tokenizer, lp)).collect(),
            })
        };
        let result = ralm.generate_traced(&ask, engine, on_commit, on_trace);
        match result {
            Ok(generation) => {
                let finished = out.finish(generation.tokens.len(), generation.stop);
                self.metrics.finished(
                    &job.labels,
                    job.admitted.elapsed(),
                    finished.completion_tokens,
                    &generation.stats,
                );
                let sources = generation
                    .spans
                    .iter()
                    .filter(|s| s.start < finished.completion_tokens)
                    .map(|s| {
                        let end = s.end.min(finished.completion_tokens);
                        source(knowledge, Span { end, ..*s })
                    })
                    .collect();
                let logprobs = generation
                    .logprobs
                    .iter()
                    .take(finished.completion_tokens)
                    .map(|lp| wire_logprob(tokenizer, lp))
                    .collect();
                // The client may have gone after the last commit: nothing left to stop.
                let _ = job.events.send(Event::Done(Finished {
                    prompt_tokens: generation.prompt_tokens,
                    sources,
                    logprobs,
                    ..finished
                }));
            }
            Err(e) => self.failed(job, e),
        }
    }

    /// Continues `job`'s raw prompt with kNN-LM, sending each token as it becomes final (as
    /// [`Context::serve`]; no sources, no log-probabilities).
    fn serve_knn(&self, knn: &KnnDatastore, job: &Job, engine: knn::Engine) {
        let Prompt::Raw(prompt) = &job.request.prompt else {
            self.failed(
                job,
                EngineError::BadRequest("kNN-LM needs a raw prompt".into()),
            );
            return;
        };
        let knn = match knn.knn(&self.lm) {
            Ok(knn) => knn,
            Err(e) => return self.failed(job, e),
        };
        let mut out = Outgoing::new(job, &self.metrics, &self.lm.tokenizer);
        let mut start = 0;
        let result = knn.generate_cancellable(prompt, job.request.max_tokens, engine, &mut |c| {
            let (text, _) = out.take(start, c);
            start += c.len();
            out.send(Piece {
                text,
                source: None,
                logprobs: Vec::new(),
            })
        });
        match result {
            Ok(generation) => {
                let finished = out.finish(generation.tokens.len(), generation.stop);
                self.metrics.finished_knn(
                    &job.labels,
                    job.admitted.elapsed(),
                    finished.completion_tokens,
                    &generation.stats,
                );
                let _ = job.events.send(Event::Done(Finished {
                    prompt_tokens: generation.prompt_tokens,
                    ..finished
                }));
            }
            Err(e) => self.failed(job, e),
        }
    }

    /// Records and reports a generation that did not finish (a cancellation is not reported:
    /// nobody is listening).
    fn failed(&self, job: &Job, e: EngineError) {
        if let EngineError::Cancelled = e {
            self.metrics.ended(&job.labels, Outcome::Cancelled);
        } else {
            self.metrics.ended(&job.labels, Outcome::Failed);
            let _ = job.events.send(Event::Failed(e.into()));
        }
    }
}

/// One job's answer on its way out: committed tokens become text, cut at a stop sequence,
/// sent as pieces and counted in the metrics; the tokens that count are those up to the one
/// that completed a stop sequence.
struct Outgoing<'a> {
    job: &'a Job,
    metrics: &'a Metrics,
    text: TextStream<'a>,
    stop: StopText,
    /// The text sent so far.
    sent: String,
    /// Answer tokens that count so far.
    used: usize,
    last_commit: Option<Instant>,
}

impl<'a> Outgoing<'a> {
    fn new(job: &'a Job, metrics: &'a Metrics, tokenizer: &'a Tokenizer) -> Outgoing<'a> {
        Outgoing {
            job,
            metrics,
            text: tokenizer.stream(),
            stop: StopText::new(job.request.stop.clone()),
            sent: String::new(),
            used: 0,
            last_commit: None,
        }
    }

    /// Takes answer tokens `start..start + tokens.len()`, just final: counts them and returns
    /// the text to send (complete characters, never past a stop sequence) and how many of
    /// them count (all, or up to the one that completed a stop sequence).
    fn take(&mut self, start: usize, tokens: &[u32]) -> (String, usize) {
        let now = Instant::now();
        self.metrics.committed(
            &self.job.labels,
            tokens.len(),
            now - self.job.admitted,
            self.last_commit.map(|t| now - t),
        );
        self.last_commit = Some(now);
        self.job.log.add_tokens(tokens.len());
        let mut piece = String::new();
        let mut n = 0;
        for &token in tokens {
            n += 1;
            if let Some(s) = self.text.push(token) {
                piece.push_str(&self.stop.push(&s));
            }
            if self.stop.stopped() {
                break;
            }
        }
        self.used = start + n;
        self.sent.push_str(&piece);
        (piece, n)
    }

    /// Sends `piece`; tells the engine to go on, to finish (a stop sequence appeared) or to
    /// stop (the client is gone).
    fn send(&self, piece: Piece) -> ControlFlow<Halt> {
        match self.job.events.send(Event::Commit(piece)) {
            Ok(()) if self.stop.stopped() => ControlFlow::Break(Halt::Finish),
            Ok(()) => ControlFlow::Continue(()),
            Err(_) => ControlFlow::Break(Halt::Cancel),
        }
    }

    /// The finished answer of a generation of `tokens` tokens that stopped with `stop`: the
    /// text held back so far goes out as the tail. Prompt tokens, sources and
    /// log-probabilities are left for the caller.
    fn finish(mut self, tokens: usize, stop: Stop) -> Finished {
        let mut tail = String::new();
        if !self.stop.stopped() {
            tail = self.stop.push(&self.text.finish());
            if !self.stop.stopped() {
                tail.push_str(&self.stop.flush());
            }
        }
        let stopped = self.stop.stopped();
        self.sent.push_str(&tail);
        Finished {
            text: self.sent,
            tail,
            stop: if stopped { Stop::Halted } else { stop },
            completion_tokens: if stopped { self.used } else { tokens },
            prompt_tokens: 0,
            sources: Vec::new(),
            logprobs: Vec::new(),
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
/// tokens it informed (a document the store cannot read is named by its number only).
fn source(knowledge: &Knowledge, span: Span) -> Source {
    knowledge.source(span).map_or_else(
        |_| Source {
            doc: span.doc,
            id: String::new(),
            title: String::new(),
            start: span.start,
            end: span.end,
        },
        Source::from,
    )
}
