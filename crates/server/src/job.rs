//! A job: one admitted request, the channel its worker reports on, and what it reports
//! (commits, then the finished answer or the failure). Shared by the handlers that make jobs,
//! the queue that holds them and the workers that run them, below all three.

use std::sync::Arc;
use std::time::Instant;

use ralmspec_engine::Stop;
use tokio::sync::mpsc::UnboundedSender;

use crate::edge::RequestLog;
use crate::error::ApiError;
use crate::metrics::Labels;
use crate::request::Validated;
use crate::trace::TraceEvent;
use crate::wire::{Source, TokenLogprob};

/// One admitted request and where its events go.
pub struct Job {
    pub request: Validated,
    pub events: UnboundedSender<Event>,
    /// When it was admitted (latency and queue wait are measured from here).
    pub admitted: Instant,
    /// The labels of its metrics (retriever, engine).
    pub labels: Labels,
    /// What the access log reports of it (tokens).
    pub log: Arc<RequestLog>,
}

/// What a worker reports about a job, in order: commits, then `Done` or `Failed`.
#[derive(Debug)]
pub enum Event {
    /// Tokens that just became final.
    Commit(Piece),
    /// Something the engine did (only for requests that asked for `events`).
    Trace(TraceEvent),
    /// The answer is complete.
    Done(Finished),
    /// The generation failed.
    Failed(ApiError),
}

/// Final tokens: their text (complete characters only, never past a stop sequence), the
/// document they came from (none for kNN-LM), and their log-probabilities when asked for.
#[derive(Debug)]
pub struct Piece {
    pub text: String,
    pub source: Option<Source>,
    pub logprobs: Vec<TokenLogprob>,
}

/// A complete answer.
#[derive(Debug)]
pub struct Finished {
    /// The whole answer's text.
    pub text: String,
    /// Text not yet sent in a `Piece` (a character split across the last tokens, or text
    /// held while it could have begun a stop sequence).
    pub tail: String,
    pub stop: Stop,
    pub completion_tokens: usize,
    /// Prompt tokens the model read (see [`crate::wire::Usage`]).
    pub prompt_tokens: usize,
    pub sources: Vec<Source>,
    pub logprobs: Vec<TokenLogprob>,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::request::{Endpoint, Generator, Prompt};
    use ralmspec_engine::Engine;

    /// A job for queue tests (never run).
    pub fn job() -> Job {
        let (events, _) = tokio::sync::mpsc::unbounded_channel();
        Job {
            request: Validated {
                endpoint: Endpoint::Completions,
                prompt: Prompt::Question("q".into()),
                max_tokens: 1,
                generator: Generator::Ralm {
                    engine: Engine::Baseline,
                    knowledge: 0,
                },
                stream: false,
                include_usage: false,
                sampling: ralmspec_engine::Sampling::default(),
                stop: Vec::new(),
                top_logprobs: None,
                events: false,
            },
            events,
            admitted: Instant::now(),
            labels: Labels::new("flat", Engine::Baseline),
            log: Arc::default(),
        }
    }
}
