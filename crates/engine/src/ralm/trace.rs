//! What an engine does while it answers, as it does it: each stride generated (with a guessed
//! or a retrieved document), each call to the real retriever, and each round's verdict. A
//! caller that wants to watch (the server's `"retrieval": {"events": true}` stream, the web
//! page's timeline) passes an observer to [`crate::Ralm::generate_traced`]; the others pass
//! none and pay one empty call per event.
//!
//! Rounds are numbered from 0 in the order the engine starts them. The baseline's round is
//! one retrieval and one stride. RaLMSpec's round is either a direct step (one retrieval, then
//! one stride, as the baseline's) or a speculation round: strides on guessed documents, ONE
//! batched retrieval verifying them, then the verdict; after a wrong guess the answer is cut
//! back and that stride generated again with the right document (a stride of the same round).
//! With asynchronous verification, the stride generated beside a round's verification belongs
//! to the next round; a verdict's rollback discards it too.
//!
//! Times are offsets from the request's start (`at`) and durations (`lm`, `took`).

use std::time::Duration;

/// One thing the engine did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Trace {
    /// Answer tokens `start..end` were generated with `doc` in front of the prompt, starting
    /// at `at` and taking `lm` in the model. `guess`: the document was speculated from the
    /// request's cache and is not verified yet.
    Step {
        round: usize,
        doc: u32,
        guess: bool,
        start: usize,
        end: usize,
        at: Duration,
        lm: Duration,
    },
    /// One call to the real retriever with `queries` queries, starting at `at` and taking
    /// `took`; `overlapped` when it ran beside a speculated stride.
    Retrieval {
        round: usize,
        queries: usize,
        at: Duration,
        took: Duration,
        overlapped: bool,
    },
    /// A speculation round's verification: the first `matched` of its `stride` guesses were
    /// the real retriever's top-1. After a wrong guess, `truth` is the right document and the
    /// answer was cut back to `rollback_to` tokens (every stride from there on is discarded).
    Verdict {
        round: usize,
        stride: usize,
        matched: usize,
        truth: Option<u32>,
        rollback_to: Option<usize>,
    },
}

/// An observer of [`Trace`]s.
pub(crate) type OnTrace<'a> = dyn FnMut(Trace) + 'a;
