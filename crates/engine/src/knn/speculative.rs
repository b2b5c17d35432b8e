//! Speculative kNN-LM: rounds of `s` steps generated on neighbours guessed from the successor
//! cache, then one batched search of the `s` hidden states, acceptance of the steps whose token
//! the true neighbours confirm, and a rollback (KV truncation) behind the first that differs,
//! whose true token is committed in its place. OS³ plans `s` (0: a plain step) unless it is
//! fixed. With asynchronous verification the search runs on another thread while the LM
//! speculates the next round's steps on (until the search is done, at most `s` of them), which
//! are kept when the whole round is confirmed; OS³ overlaps only the rounds where the measured
//! overlap pays, a fixed stride every round.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ralmspec_retrieval::Hit;

use super::successors::Successors;
use super::{Run, Spec, State};
use crate::error::Result;
use crate::os3::{Observation, Os3, Plan, StepTime, Verification};
use crate::stride::Stride;
use crate::verifier;

/// The longest round OS³ may choose.
const MAX_STRIDE: usize = 32;
/// In a run of plain steps (OS³ chose s = 0), every this many one checks what the cache would
/// have guessed, so that OS³ notices when speculating pays again without paying the cache
/// lookup on every step.
const OBSERVE_EVERY: usize = 8;

/// The speculated steps awaiting verification.
#[derive(Default)]
struct Round {
    states: Vec<State>,
    guesses: Vec<u32>,
    /// The KV cache's length right after each step's forward (before its guess is fed).
    cache_after: Vec<usize>,
}

impl Round {
    fn len(&self) -> usize {
        self.guesses.len()
    }

    /// True when the last guess ends the text: nothing can be speculated after it.
    fn ended(&self, run: &Run<'_>) -> bool {
        self.guesses
            .last()
            .is_some_and(|&g| run.lm.tokenizer.is_eog(g))
    }
}

/// Generates until the run stops.
pub(crate) fn run(run: &mut Run<'_>, spec: Spec) -> Result<()> {
    let mut os3 = Os3::new(spec.async_verify, MAX_STRIDE)
        .without_redo()
        .speculating_until_verified();
    let mut successors = Successors::default();
    let mut round = Round::default();
    let fetch = run.fetch(spec.prefetch);
    let mut plain_steps = 0;
    // Latencies of the round's steps run alone (not beside a verification).
    let mut alone = Vec::new();
    loop {
        let plan = match spec.stride {
            Stride::Fixed(n) => Plan {
                stride: n.max(1),
                overlap: spec.async_verify,
            },
            Stride::Os3 => os3.plan(),
        };
        let stride = plan.stride.min(run.remaining());
        if round.len() == 0 && (stride == 0 || successors.is_empty()) {
            let observe = plain_steps % OBSERVE_EVERY == 0;
            plain_steps += 1;
            if plain_step(
                run,
                &mut successors,
                &mut os3,
                observe,
                spec.successors,
                fetch,
            )? {
                return Ok(());
            }
            continue;
        }
        plain_steps = 0;
        alone.clear();
        while round.len() < stride && !round.ended(run) {
            alone.push(speculate(run, &successors, &mut round)?);
        }

        // Verify the round in one search; when planned, speculate the next round meanwhile.
        let overlap = plan.overlap && !round.ended(run) && round.len() < run.remaining();
        let (hits, took, beside, extra) = if overlap {
            let retriever = run.retriever;
            let queries: Vec<_> = round.states.iter().map(|s| s.query.clone()).collect();
            let limit = stride.max(1).min(run.remaining() - round.len());
            let mut extra = Round::default();
            let (hits, took, step) = verifier::overlap(
                || retriever.search(&queries, fetch),
                |done| speculate_until(run, &successors, &mut extra, done, limit),
            )?;
            run.stats.overlapped += 1;
            run.searched(round.len(), took);
            (hits?, took, Some(step?), Some(extra))
        } else {
            let (hits, took) = run.search(&round.states, fetch)?;
            (hits, took, None, None)
        };
        let (matched, last, done) = commit(run, &round, &hits)?;
        os3.observe(&Observation {
            steps: &alone,
            verification: Some(Verification {
                queries: round.len(),
                took,
                beside,
            }),
            checked: Some((round.len(), matched)),
            plain: None,
        });
        if done {
            return Ok(());
        }
        successors.refill(&hits[last], spec.successors, run.len);
        round = match extra {
            Some(extra) if matched == round.len() => extra,
            _ => Round::default(),
        };
    }
}

/// A step without speculation: forward, search, commit. When `observe`, it also tells OS³
/// whether the cache would have guessed right. Returns true when generation is over.
fn plain_step(
    run: &mut Run<'_>,
    successors: &mut Successors,
    os3: &mut Os3,
    observe: bool,
    n: usize,
    fetch: usize,
) -> Result<bool> {
    let t = Instant::now();
    // The first step reads the whole prompt: not what a plain step costs.
    let decoding = run.feed.len() == 1;
    let state = run.forward()?;
    let guess = if !observe || successors.is_empty() {
        None
    } else {
        let hits = successors.speculate(run.retriever, &state.query, run.params.k)?;
        Some(run.choose(&state, &hits))
    };
    let (mut hits, took) = run.search(std::slice::from_ref(&state), fetch)?;
    let hits = hits.swap_remove(0);
    let token = run.choose(&state, &hits);
    successors.refill(&hits, n, run.len);
    os3.observe(&Observation {
        steps: &[],
        verification: Some(Verification {
            queries: 1,
            took,
            beside: None,
        }),
        checked: guess.map(|g| (1, usize::from(g == token))),
        plain: decoding.then(|| t.elapsed().saturating_sub(took)),
    });
    run.stats.strides.push(0);
    if run.commit(token) {
        return Ok(true);
    }
    run.feed.push(token);
    Ok(false)
}

/// One speculated step: forward, the cache's top-k as neighbours, the guessed token (fed next).
/// Returns how long it took.
fn speculate(run: &mut Run<'_>, successors: &Successors, round: &mut Round) -> Result<StepTime> {
    let t = Instant::now();
    let state = run.forward()?;
    let forward = t.elapsed();
    round.cache_after.push(run.cache.len());
    let hits = successors.speculate(run.retriever, &state.query, run.params.k)?;
    let guess = run.choose(&state, &hits);
    let took = StepTime {
        took: t.elapsed(),
        per_token: Some(forward),
    };
    round.states.push(state);
    round.guesses.push(guess);
    run.feed.push(guess);
    Ok(took)
}

/// Steps speculated beside a verification: one, then more until `done` turns true, `limit`
/// steps are made or the text ends. Returns their time together (per token: their mean).
fn speculate_until(
    run: &mut Run<'_>,
    successors: &Successors,
    round: &mut Round,
    done: &AtomicBool,
    limit: usize,
) -> Result<StepTime> {
    let (mut took, mut forward, mut forwards) = (Duration::ZERO, Duration::ZERO, 0u32);
    loop {
        let step = speculate(run, successors, round)?;
        took += step.took;
        if let Some(f) = step.per_token {
            forward += f;
            forwards += 1;
        }
        if done.load(Ordering::Acquire) || round.len() >= limit || round.ended(run) {
            break;
        }
    }
    Ok(StepTime {
        took,
        per_token: (forwards > 0).then(|| forward / forwards),
    })
}

/// Checks the round's guesses against the tokens of their true neighbours, in order: commits
/// the confirmed ones, and at the first wrong one rolls the KV cache back behind that step and
/// commits the true token. Returns (confirmed steps, index of the last verified step, whether
/// generation is over).
fn commit(run: &mut Run<'_>, round: &Round, hits: &[Vec<Hit>]) -> Result<(usize, usize, bool)> {
    run.stats.speculated += round.len();
    run.stats.strides.push(round.len());
    let mut matched = 0;
    for (i, (state, &guess)) in round.states.iter().zip(&round.guesses).enumerate() {
        let token = run.choose(state, &hits[i]);
        if token != guess {
            // Drop everything fed after step i (its guess and any later step's), feed the truth.
            run.cache.truncate(round.cache_after[i]);
            run.stats.rollbacks += 1;
            run.stats.matched += matched;
            run.stats.verified += matched + 1;
            run.feed.clear();
            let done = run.commit(token);
            run.feed.push(token);
            return Ok((matched, i, done));
        }
        matched += 1;
        if run.commit(token) {
            run.stats.matched += matched;
            run.stats.verified += matched;
            return Ok((matched, i, true));
        }
    }
    run.stats.matched += matched;
    run.stats.verified += matched;
    Ok((matched, round.len() - 1, false))
}
