//! RaLMSpec: speculative retrieval with batched verification (the paper's §2–§5).
//!
//! Each round speculates `s` retrieval steps: the query's top-1 among the request's cached
//! documents (ranked by the retriever's own scores) stands in for the real retrieval, and the
//! LM generates the stride with it. Then ONE batched call to the real retriever answers all
//! `s` queries. Steps are committed in order while the speculated document equals the true
//! top-1; at the first mismatch the answer is cut back to that step's start and the step is
//! generated again with the true document. Every committed step therefore used exactly the
//! document the baseline retrieves for the same answer prefix, and the LM's logits depend
//! only on (document, prefix): the answer is the baseline's, token for token.
//!
//! Options ([`SpecConfig`]): prefetching inserts the top-k of every real retrieval into the
//! cache; OS³ plans `s` before each round (0: a plain retrieval step, when speculating cannot
//! pay); asynchronous verification runs the batched retrieval on another thread while the LM
//! speculates one more step, kept when every step of the round was right and discarded
//! otherwise. With a fixed stride it overlaps every round; with OS³ only the rounds where the
//! measured overlap pays.

use std::time::Instant;

use ralmspec_retrieval::{Hit, Query};

use crate::error::Result;
use crate::os3::{Observation, Os3, Plan, StepTime, Verification};
use crate::ralm::config::{SpecConfig, Stride};
use crate::ralm::doc_cache::DocCache;
use crate::ralm::generation::Stop;
use crate::ralm::request::Request;
use crate::verifier;

/// The longest stride OS³ may choose.
const MAX_STRIDE: usize = 16;

/// A step generated with a speculated document, not yet verified.
struct Guess {
    doc: u32,
    /// The answer's length before the step.
    start: usize,
    /// The answer's length after the step.
    end: usize,
    /// The model ended the answer in this step.
    eos: bool,
}

/// The unverified steps of a round; `queries[i]` belongs to `guesses[i]`. `alone` holds the
/// latencies of the steps run alone (not the one beside the last round's verification).
#[derive(Default)]
struct Round {
    queries: Vec<Query>,
    guesses: Vec<Guess>,
    alone: Vec<StepTime>,
}

impl Round {
    fn len(&self) -> usize {
        self.guesses.len()
    }

    /// True when the last guess ended the answer (no step may follow it).
    fn ended(&self, request: &Request<'_>) -> bool {
        self.guesses.last().is_some_and(|g| g.eos) || request.remaining() == 0
    }

    fn clear(&mut self) {
        self.queries.clear();
        self.guesses.clear();
        self.alone.clear();
    }
}

/// What checking a round's guesses against the real retriever found.
struct Verdict {
    /// Guesses right before the first wrong one (all of them when none was wrong).
    matched: usize,
    /// Why generation stops, if it does.
    stop: Option<Stop>,
}

/// Runs `request` to its end with speculation configured by `spec`.
pub(crate) fn run(request: &mut Request<'_>, spec: SpecConfig) -> Result<Stop> {
    let fetch = spec.prefetch.max(1);
    let mut cache = DocCache::default();
    let mut os3 = Os3::new(spec.async_verify, MAX_STRIDE);

    // The first step has nothing to speculate from: a real retrieval.
    if let Some(stop) = direct_step(request, &mut cache, &mut os3, spec.prefetch)? {
        return Ok(stop);
    }

    let mut round = Round::default();
    loop {
        // Strides kept from the last round's overlap were already traced as this round's.
        request.round += 1;
        let plan = match spec.stride {
            Stride::Fixed(n) => Plan {
                stride: n.max(1),
                overlap: spec.async_verify,
            },
            Stride::Os3 => os3.plan(),
        };
        if plan.stride == 0 && round.len() == 0 {
            // OS³ found speculation not worth it now: retrieve, then generate.
            request.verifying(0);
            if let Some(stop) = direct_step(request, &mut cache, &mut os3, spec.prefetch)? {
                return Ok(stop);
            }
            continue;
        }
        while round.len() < plan.stride && !round.ended(request) {
            let took = speculate(request, &cache, &mut round)?;
            round.alone.push(took);
        }

        // Verify the round in one call, overlapped with one more step (the next round's
        // first) when planned.
        let overlap = plan.overlap && !round.ended(request);
        let mut extra = Round::default();
        let (hits, took, beside) = if overlap {
            let (knowledge, queries, at) = (request.knowledge, &round.queries, request.elapsed());
            request.round += 1;
            let (hits, took, step) = verifier::overlap(
                || knowledge.search(queries, fetch),
                |_| speculate(request, &cache, &mut extra),
            )?;
            request.round -= 1;
            request.retrieved(round.len(), at, took, true);
            (hits?, took, Some(step?))
        } else {
            let (hits, took) = request.retrieve(&round.queries, fetch)?;
            (hits, took, None)
        };
        request.verifying(round.len());

        let verdict = check(request, &mut cache, &round, &hits, spec.prefetch)?;
        os3.observe(&Observation {
            steps: &round.alone,
            verification: Some(Verification {
                queries: round.len(),
                took,
                beside,
            }),
            checked: Some((round.len(), verdict.matched)),
            plain: None,
        });
        if let Some(stop) = verdict.stop {
            // `check` already cut an extra step off if a rollback happened.
            return Ok(stop);
        }
        if overlap && verdict.matched == hits.len() {
            round = extra;
        } else {
            round.clear();
        }
    }
}

/// One step without speculation, as the baseline takes it: a real retrieval (its top-1, and
/// with prefetching its top-`prefetch`, go into the cache), then one stride with its top-1.
/// Returns why generation stops, if it does.
fn direct_step(
    request: &mut Request<'_>,
    cache: &mut DocCache,
    os3: &mut Os3,
    prefetch: usize,
) -> Result<Option<Stop>> {
    let query = request.query()?;
    // What the cache would have guessed: an observation of the speculation accuracy at the
    // cost of one cache lookup, so that OS³ can tell when speculating would pay again.
    let guess = cache.top1(request.knowledge, &query)?;
    let (hits, took) = request.retrieve(std::slice::from_ref(&query), prefetch.max(1))?;
    remember(cache, &hits[0], prefetch);
    let doc = hits[0][0].doc;
    let before = request.len();
    let (step, eos) = timed_step(request, doc, false)?;
    os3.observe(&Observation {
        steps: &[step],
        verification: Some(Verification {
            queries: 1,
            took,
            beside: None,
        }),
        checked: guess.map(|guess| (1, usize::from(guess == doc))),
        plain: None,
    });
    request.commit(doc, before, request.len());
    Ok(request.stop_after(eos))
}

/// Speculates one step: the cache's best document for the current query, then one stride.
/// Returns how long it took.
fn speculate(request: &mut Request<'_>, cache: &DocCache, round: &mut Round) -> Result<StepTime> {
    let start = Instant::now();
    let query = request.query()?;
    let doc = cache
        .top1(request.knowledge, &query)?
        .expect("the cache holds the first retrieval's documents");
    let before = request.len();
    let (mut took, eos) = timed_step(request, doc, true)?;
    took.took = start.elapsed();
    round.queries.push(query);
    round.guesses.push(Guess {
        doc,
        start: before,
        end: request.len(),
        eos,
    });
    Ok(took)
}

/// One stride with `doc` in front (`guess`: speculated), timed; true when the model ended the
/// answer.
fn timed_step(request: &mut Request<'_>, doc: u32, guess: bool) -> Result<(StepTime, bool)> {
    let start = Instant::now();
    let (decode_time, decoded) = request.decode_clock();
    let eos = request.step(doc, guess)?;
    let (time, n) = request.decode_clock();
    let step = StepTime {
        took: start.elapsed(),
        per_token: (n > decoded).then(|| (time - decode_time) / (n - decoded) as u32),
    };
    Ok((step, eos))
}

/// Checks the round's guesses against the true top-1s, in order: commits the right ones,
/// and at the first wrong one cuts the answer back and redoes that step with the true
/// document.
fn check(
    request: &mut Request<'_>,
    cache: &mut DocCache,
    round: &Round,
    hits: &[Vec<Hit>],
    prefetch: usize,
) -> Result<Verdict> {
    for hits in hits {
        remember(cache, hits, prefetch);
    }
    for (i, (guess, hits)) in round.guesses.iter().zip(hits).enumerate() {
        let truth = hits[0].doc;
        if truth == guess.doc {
            request.commit(truth, guess.start, guess.end);
            if let Some(stop) = request.stop_at(guess.end, guess.eos) {
                // Strides past the end (none, or an overlapped one) are discarded.
                let cut = (request.len() > guess.end).then_some(guess.end);
                request.rollback_to(guess.end);
                request.verdict(i + 1, i + 1, None, cut);
                return Ok(Verdict {
                    matched: i + 1,
                    stop: Some(stop),
                });
            }
            continue;
        }
        request.rollback_to(guess.start);
        request.verdict(round.len(), i, Some(truth), Some(guess.start));
        let eos = request.step(truth, false)?;
        request.commit(truth, guess.start, request.len());
        return Ok(Verdict {
            matched: i,
            stop: request.stop_after(eos),
        });
    }
    request.verdict(round.len(), round.len(), None, None);
    Ok(Verdict {
        matched: round.len(),
        stop: None,
    })
}

/// Inserts a real retrieval's top-1, and with prefetching its top-`prefetch`, into the cache.
fn remember(cache: &mut DocCache, hits: &[Hit], prefetch: usize) {
    for hit in hits.iter().take(prefetch.max(1)) {
        cache.insert(hit.doc);
    }
}
