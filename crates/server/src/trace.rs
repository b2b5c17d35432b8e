//! The wire form of an engine's [`Trace`], for streams that ask for it with
//! `"retrieval": {"events": true}`: each one is an SSE event named `ralmspec.trace` between
//! the usual `data:` chunks, so a client that ignores named events (as OpenAI's clients do
//! for names they don't know) reads exactly the text stream it reads without them. Times
//! are milliseconds; `at_ms` counts from the start of the engine's work on the request.

use std::time::Duration;

use ralmspec_engine::{Knowledge, Trace};
use serde::Serialize;

/// The SSE event name of a trace event.
pub const EVENT_NAME: &str = "ralmspec.trace";

/// One thing the engine did (see [`Trace`] for the rounds' numbering).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TraceEvent {
    /// Answer tokens `start..end` generated with document `doc` (`guess`: speculated from
    /// the request's cache, not verified yet).
    Step {
        round: usize,
        doc: u32,
        id: String,
        title: String,
        guess: bool,
        start: usize,
        end: usize,
        at_ms: f64,
        lm_ms: f64,
    },
    /// One call to the real retriever with `queries` queries (a speculation round's batched
    /// verification, or one plain retrieval).
    Retrieval {
        round: usize,
        queries: usize,
        at_ms: f64,
        took_ms: f64,
        overlapped: bool,
    },
    /// A speculation round's verdict: the first `matched` of `stride` guesses were right;
    /// after a wrong one, `truth` is the right document and every stride from token
    /// `rollback_to` on was discarded.
    Verdict {
        round: usize,
        stride: usize,
        matched: usize,
        truth: Option<u32>,
        truth_title: Option<String>,
        rollback_to: Option<usize>,
    },
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn title(knowledge: &Knowledge, doc: u32) -> (String, String) {
    knowledge
        .passage(doc)
        .map(|p| (p.id, p.title))
        .unwrap_or_default()
}

impl TraceEvent {
    /// The wire form of `trace`, naming its documents from `knowledge`.
    pub fn new(knowledge: &Knowledge, trace: Trace) -> TraceEvent {
        match trace {
            Trace::Step {
                round,
                doc,
                guess,
                start,
                end,
                at,
                lm,
            } => {
                let (id, title) = title(knowledge, doc);
                TraceEvent::Step {
                    round,
                    doc,
                    id,
                    title,
                    guess,
                    start,
                    end,
                    at_ms: ms(at),
                    lm_ms: ms(lm),
                }
            }
            Trace::Retrieval {
                round,
                queries,
                at,
                took,
                overlapped,
            } => TraceEvent::Retrieval {
                round,
                queries,
                at_ms: ms(at),
                took_ms: ms(took),
                overlapped,
            },
            Trace::Verdict {
                round,
                stride,
                matched,
                truth,
                rollback_to,
            } => TraceEvent::Verdict {
                round,
                stride,
                matched,
                truth,
                truth_title: truth.map(|doc| title(knowledge, doc).1),
                rollback_to,
            },
        }
    }
}
