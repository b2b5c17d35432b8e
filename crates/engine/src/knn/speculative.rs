//! Speculative kNN-LM: rounds of `s` steps generated on neighbours guessed from the successor
//! cache, then one batched search of the `s` hidden states, acceptance of the steps whose token
//! the true neighbours confirm, and a rollback (KV truncation) behind the first that differs,
//! whose true token is committed in its place. OS³ picks `s` (0: a plain step) unless it is
//! fixed.

use std::time::Instant;

use super::successors::Successors;
use super::{KnnSpec, Run, State};
use crate::config::Stride;
use crate::error::Result;
use crate::os3::Os3;

/// The longest round OS³ may choose.
const MAX_STRIDE: usize = 32;

/// Generates until the run stops.
pub(crate) fn run(run: &mut Run<'_>, spec: KnnSpec) -> Result<()> {
    let mut os3 = Os3::new(false, MAX_STRIDE).without_redo();
    let mut successors = Successors::default();
    let k = run.params.k;
    loop {
        let stride = match spec.stride {
            Stride::Fixed(n) => n.max(1),
            Stride::Os3 => os3.stride(),
        }
        .min(run.remaining());
        if stride == 0 || successors.is_empty() {
            // A plain step; it still tells OS³ whether a guess would have been right.
            let t = Instant::now();
            let state = run.forward()?;
            let guess = if successors.is_empty() {
                None
            } else {
                let hits = successors.speculate(run.retriever, &state.query, k)?;
                Some(run.choose(&state, &hits))
            };
            os3.step_took(t.elapsed());
            let (mut hits, took) = run.search(std::slice::from_ref(&state))?;
            os3.verification_took(took);
            let hits = hits.swap_remove(0);
            let token = run.choose(&state, &hits);
            if let Some(g) = guess {
                os3.round(1, usize::from(g == token));
            }
            successors.refill(&hits, spec.successors, run.len);
            run.stats.strides.push(0);
            if run.commit(token) {
                return Ok(());
            }
            run.feed.push(token);
            continue;
        }

        // Speculate `stride` steps on guessed neighbours.
        let mut states: Vec<State> = Vec::with_capacity(stride);
        let mut guesses: Vec<u32> = Vec::with_capacity(stride);
        let mut cache_after: Vec<usize> = Vec::with_capacity(stride);
        for _ in 0..stride {
            let t = Instant::now();
            let state = run.forward()?;
            cache_after.push(run.cache.len());
            let hits = successors.speculate(run.retriever, &state.query, k)?;
            let guess = run.choose(&state, &hits);
            os3.step_took(t.elapsed());
            states.push(state);
            guesses.push(guess);
            run.feed.push(guess);
            if run.lm.tokenizer.is_eog(guess) {
                break;
            }
        }

        // Verify them in one search.
        let (hits, took) = run.search(&states)?;
        os3.verification_took(took);
        run.stats.speculated += states.len();
        run.stats.strides.push(states.len());
        let mut matched = 0;
        let mut done = false;
        let mut last = states.len() - 1;
        for (i, (state, &guess)) in states.iter().zip(&guesses).enumerate() {
            let token = run.choose(state, &hits[i]);
            if token == guess {
                matched += 1;
                if run.commit(token) {
                    done = true;
                    last = i;
                    break;
                }
            } else {
                // The cache holds the guesses after step i: drop them, feed the true token.
                run.cache.truncate(cache_after[i]);
                run.stats.rollbacks += 1;
                run.feed.clear();
                done = run.commit(token);
                run.feed.push(token);
                last = i;
                break;
            }
        }
        run.stats.accepted += matched;
        os3.round(states.len(), matched);
        if done {
            return Ok(());
        }
        successors.refill(&hits[last], spec.successors, run.len);
    }
}
