//! What a kNN-LM generation returns: the tokens, why it stopped, and what it cost.

use std::time::Duration;

use serde::Serialize;

use crate::halt::Stop;

/// One kNN-LM generation.
#[derive(Clone, Debug)]
pub struct Generation {
    /// Tokens of the prompt.
    pub prompt_tokens: usize,
    /// The generated tokens (an end-of-text token is not included).
    pub tokens: Vec<u32>,
    /// Their text.
    pub text: String,
    /// Why generation stopped ([`Stop::Halted`]: the commit callback finished it).
    pub stop: Stop,
    /// Counts and timings.
    pub stats: Stats,
}

/// Counts and timings of one generation.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Stats {
    /// Wall-clock time of the whole generation.
    pub wall: Duration,
    /// Time in LM forward passes.
    pub lm: Duration,
    /// Time in nearest-neighbour searches of the datastore.
    pub search: Duration,
    /// Datastore search calls.
    pub search_calls: usize,
    /// Hidden states searched (a batched call searches several).
    pub searched: usize,
    /// Steps generated from speculated neighbours.
    pub speculated: usize,
    /// Speculated steps that were checked (a round's steps up to and including its first
    /// wrong one).
    pub verified: usize,
    /// Speculated steps whose token the true neighbours confirmed.
    pub matched: usize,
    /// Rounds that ended in a rollback.
    pub rollbacks: usize,
    /// The stride of every round, in order (0: a plain step).
    pub strides: Vec<usize>,
    /// Rounds verified asynchronously, beside the speculation of the next round.
    pub overlapped: usize,
}

impl Stats {
    /// Matched over checked speculated steps, the speculation accuracy γ (None when nothing
    /// was checked).
    pub fn accuracy(&self) -> Option<f64> {
        (self.verified > 0).then(|| self.matched as f64 / self.verified as f64)
    }

    /// Mean stride over the rounds that speculated.
    pub fn mean_stride(&self) -> Option<f64> {
        let s: Vec<usize> = self.strides.iter().copied().filter(|&s| s > 0).collect();
        (!s.is_empty()).then(|| s.iter().sum::<usize>() as f64 / s.len() as f64)
    }
}
