//! What a request returns: the answer's tokens and text, the document behind each span of it
//! (source attribution), why it stopped, and how the time went.

use std::time::Duration;

use serde::Serialize;

use crate::sampling::TokenLogprob;

pub use crate::halt::{Halt, Stop};

/// Answer tokens `start..end` were generated with `doc` in front of the prompt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Span {
    /// The document id.
    pub doc: u32,
    /// First token of the span (index into the answer's tokens).
    pub start: usize,
    /// One past the last token.
    pub end: usize,
}

/// Answer tokens that just became final, in order: what a streaming caller may send on.
#[derive(Clone, Copy, Debug)]
pub struct Committed<'a> {
    /// The tokens.
    pub tokens: &'a [u32],
    /// The document they were generated with.
    pub doc: u32,
    /// Index of the first of them in the answer.
    pub start: usize,
    /// Their log-probabilities, when the request asked for them (else empty).
    pub logprobs: &'a [TokenLogprob],
}

/// Counters and timers of one request.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Stats {
    /// Wall-clock time of the whole request.
    pub wall: Duration,
    /// Time inside the model's forward pass.
    pub lm_time: Duration,
    /// Tokens fed through the model (prefills, recomputation after a switch, decoding).
    pub lm_tokens: usize,
    /// Calls to the real retriever.
    pub retrieval_calls: usize,
    /// Queries sent to the real retriever (a batched call sends several).
    pub retrieval_queries: usize,
    /// Wall-clock time of the real retriever's calls (overlapping the LM when asynchronous).
    pub retrieval_time: Duration,
    /// Retrieval steps taken with a speculated document.
    pub speculated: usize,
    /// Speculated steps the real retriever confirmed.
    pub matched: usize,
    /// Verifications that found a wrong speculation.
    pub rollbacks: usize,
    /// Stride of each verification round, in order.
    pub strides: Vec<usize>,
    /// Rounds verified asynchronously, overlapped with a speculation step.
    pub overlapped: usize,
}

impl Stats {
    /// Fraction of speculated steps that were right (`None` before any speculation).
    pub fn accuracy(&self) -> Option<f64> {
        (self.speculated > 0).then(|| self.matched as f64 / self.speculated as f64)
    }
}

/// The result of one request.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Generation {
    /// The answer's token ids (without the end token).
    pub tokens: Vec<u32>,
    /// The answer's text.
    pub text: String,
    /// Consecutive spans of the answer and the document each was generated with.
    pub spans: Vec<Span>,
    /// Why generation stopped.
    pub stop: Stop,
    /// Each answer token's log-probability, when the request asked for them (else empty).
    pub logprobs: Vec<TokenLogprob>,
    /// Prompt tokens the LM read for this answer: for each span (each document the answer
    /// switched to), the document's tokens (with its framing) plus the conversation's tokens
    /// (chat template included). Every engine reports the same number.
    pub prompt_tokens: usize,
    /// Counters and timers.
    pub stats: Stats,
}

/// Collects the spans of committed retrieval steps, merging neighbours with the same document.
#[derive(Debug, Default)]
pub(crate) struct Spans(Vec<Span>);

impl Spans {
    /// Records that answer tokens `start..end` were generated with `doc`.
    pub(crate) fn push(&mut self, doc: u32, start: usize, end: usize) {
        if start == end {
            return;
        }
        match self.0.last_mut() {
            Some(last) if last.doc == doc && last.end == start => last.end = end,
            _ => self.0.push(Span { doc, start, end }),
        }
    }

    pub(crate) fn as_slice(&self) -> &[Span] {
        &self.0
    }

    pub(crate) fn into_vec(self) -> Vec<Span> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_merge_neighbours_with_the_same_document() {
        let mut spans = Spans::default();
        spans.push(7, 0, 4);
        spans.push(7, 4, 8);
        spans.push(3, 8, 12);
        spans.push(3, 12, 12);
        spans.push(7, 12, 14);
        assert_eq!(
            spans.into_vec(),
            vec![
                Span {
                    doc: 7,
                    start: 0,
                    end: 8
                },
                Span {
                    doc: 3,
                    start: 8,
                    end: 12
                },
                Span {
                    doc: 7,
                    start: 12,
                    end: 14
                },
            ]
        );
    }
}
