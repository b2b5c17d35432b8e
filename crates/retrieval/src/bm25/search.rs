//! Scoring and top-k for one compiled query, so that `search` and `score` give the same
//! numbers bit for bit.
//!
//! The score of a document is what the query's tantivy `Scorer` says when positioned on it
//! (`weight.scorer(segment, 1.0)`, `seek(doc)`, `score()`), with statistics from the whole
//! index (`EnableScoring::enabled_from_searcher`); a document containing none of the terms
//! scores 0.0 and is never a hit. [`exact_scores`] is the only function that produces the
//! scores returned by either call.
//!
//! Top-k finds its candidates with tantivy's block-max WAND (`Weight::for_each_pruning`),
//! which sums term scores in a different order than the scorer and so may differ from the
//! exact score in the last bits, then rescores the candidates with [`exact_scores`] and ranks
//! them with [`TopK`] (higher score, then lower passage id). The pruning threshold is the k-th
//! best WAND score lowered by a relative slack far above the summation error of the query's
//! clauses, so every document whose exact score reaches the exact k-th score, ties included,
//! is still a candidate.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use tantivy::query::Weight;
use tantivy::{DocId, DocSet, Score, SegmentReader, TERMINATED};

use crate::retriever::{Hit, TopK};

/// A query ready to run: its weight (global BM25 statistics) and its number of clauses.
pub(crate) struct Compiled {
    pub(crate) weight: Box<dyn Weight>,
    pub(crate) clauses: usize,
}

/// The exact score of each of `docs` (tantivy doc ids, ascending; repeats allowed): the
/// scorer's score where it matches, 0.0 where it does not.
pub(crate) fn exact_scores(
    query: &Compiled,
    segment: &SegmentReader,
    docs: &[DocId],
) -> tantivy::Result<Vec<Score>> {
    debug_assert!(docs.is_sorted());
    let mut scorer = query.weight.scorer(segment, 1.0)?;
    Ok(docs
        .iter()
        .map(|&doc| {
            let mut at = scorer.doc();
            if at < doc {
                at = scorer.seek(doc);
            }
            if at == doc && at != TERMINATED {
                scorer.score()
            } else {
                0.0
            }
        })
        .collect())
}

/// The best `k` documents (ids from `passage_ids`, indexed by tantivy doc id) that contain at
/// least one term, scored by [`exact_scores`].
pub(crate) fn top_k(
    query: &Compiled,
    segment: &SegmentReader,
    passage_ids: &[u32],
    k: usize,
) -> tantivy::Result<Vec<Hit>> {
    if k == 0 {
        return Ok(Vec::new());
    }
    // Summing n positive f32 in two orders differs by at most (n - 1)·ε relative; take four
    // times that (and never less than 0: then nothing is pruned).
    let slack = (1.0 - (query.clauses as f32 + 2.0) * 4.0 * f32::EPSILON).max(0.0);
    let mut best: BinaryHeap<Reverse<Approx>> = BinaryHeap::with_capacity(k + 1);
    let mut candidates: Vec<(DocId, Score)> = Vec::new();
    let floor = |best: &BinaryHeap<Reverse<Approx>>| match best.peek() {
        Some(Reverse(Approx(kth))) if best.len() == k => kth * slack,
        _ => 0.0,
    };
    query
        .weight
        .for_each_pruning(0.0, segment, &mut |doc, score| {
            candidates.push((doc, score));
            best.push(Reverse(Approx(score)));
            if best.len() > k {
                best.pop();
            }
            floor(&best)
        })?;
    let floor = floor(&best);
    candidates.retain(|&(_, score)| score >= floor);
    let mut docs: Vec<DocId> = candidates.into_iter().map(|(doc, _)| doc).collect();
    docs.sort_unstable();
    let scores = exact_scores(query, segment, &docs)?;
    let mut top = TopK::new(k);
    for (doc, score) in docs.into_iter().zip(scores) {
        if score > 0.0 {
            top.push(Hit {
                doc: passage_ids[doc as usize],
                score,
            });
        }
    }
    Ok(top.into_sorted())
}

/// A WAND score, totally ordered.
#[derive(Clone, Copy, Debug)]
struct Approx(Score);

impl PartialEq for Approx {
    fn eq(&self, other: &Self) -> bool {
        self.0.total_cmp(&other.0).is_eq()
    }
}
impl Eq for Approx {}
impl PartialOrd for Approx {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Approx {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}
