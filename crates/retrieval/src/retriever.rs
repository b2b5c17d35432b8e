//! The retriever seam: what the engine knows about retrieval. Batch-first (verification asks
//! many queries at once), with one ranking rule for every retriever: higher score first, then
//! lower doc id. `score` returns exactly the numbers `search` ranks by, so the speculation
//! cache can rank the documents it holds the way the real retriever would.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use std::sync::Arc;

use crate::encoder::Encoder;
use crate::error::Result;
use crate::passages::PassageSource;

/// A query: its text and, for dense retrievers, its embedding, computed once and reused for
/// speculation and verification alike.
#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    text: String,
    embedding: Option<Vec<f32>>,
}

impl Query {
    /// A text-only query (for sparse retrievers).
    pub fn text(text: impl Into<String>) -> Query {
        Query {
            text: text.into(),
            embedding: None,
        }
    }

    /// A query with an embedding computed elsewhere.
    pub fn embedded(text: impl Into<String>, embedding: Vec<f32>) -> Query {
        Query {
            text: text.into(),
            embedding: Some(embedding),
        }
    }

    /// Encodes `text` with `encoder` as a query (with the encoder's query prompt, if any).
    pub fn encode(encoder: &Encoder, text: impl Into<String>) -> Result<Query> {
        let text = text.into();
        let embedding = encoder.encode_query(&text)?;
        Ok(Query::embedded(text, embedding))
    }

    /// Encodes several texts (in parallel; each embedding is the same as alone).
    pub fn encode_all(encoder: &Encoder, texts: &[&str]) -> Result<Vec<Query>> {
        let embeddings = encoder.encode_queries(texts)?;
        Ok(texts
            .iter()
            .zip(embeddings)
            .map(|(t, e)| Query::embedded(*t, e))
            .collect())
    }

    /// The query text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The embedding, if the query has one.
    pub fn embedding(&self) -> Option<&[f32]> {
        self.embedding.as_deref()
    }
}

/// One retrieved document and its score.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Hit {
    /// The passage id.
    pub doc: u32,
    /// The retriever's score (higher is better).
    pub score: f32,
}

impl Hit {
    /// The ranking rule: `Less` when `self` ranks before `other` (higher score, then lower doc
    /// id). Scores are compared with `f32::total_cmp`, so the order is total.
    pub fn rank_cmp(&self, other: &Hit) -> Ordering {
        other
            .score
            .total_cmp(&self.score)
            .then(self.doc.cmp(&other.doc))
    }
}

/// A retriever over a fixed set of documents.
pub trait Retriever: Send + Sync {
    /// The best `k` documents for each query (fewer if the retriever holds fewer), best first
    /// by [`Hit::rank_cmp`]. The answer for a query does not depend on the other queries of
    /// the batch.
    fn search(&self, queries: &[Query], k: usize) -> Result<Vec<Vec<Hit>>>;

    /// The score of each of `docs` for `query`: bit for bit the score `search` gives it.
    fn score(&self, query: &Query, docs: &[u32]) -> Result<Vec<f32>>;

    /// Number of documents.
    fn len(&self) -> usize;

    /// True when there are no documents.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The largest `k` for which `search(queries, k)` is the first `k` hits of one fixed
    /// ranking: up to it, asking for more documents never changes the first ones. Exact
    /// retrievers have no limit; an approximate one searches wider for a larger `k` and may
    /// then find a better first hit. The engine keeps its `k` within this bound, so that
    /// prefetching never changes which document a step uses.
    fn consistent_k(&self) -> usize {
        usize::MAX
    }

    /// For a retriever whose documents can change under it (a database table that is
    /// re-indexed while it serves): a view answering every call from the version current
    /// now, and that version's passages, so that all retrievals of one request agree. `None`
    /// (the default) for a retriever whose documents never change.
    fn snapshot(&self) -> Result<Option<Snapshot>> {
        Ok(None)
    }
}

/// One version of a changing retriever's documents ([`Retriever::snapshot`]).
#[derive(Clone)]
pub struct Snapshot {
    /// Names the version: two snapshots with the same number answer alike.
    pub version: u64,
    /// The retriever, answering from this version only.
    pub retriever: Arc<dyn Retriever>,
    /// This version's passages.
    pub passages: Arc<dyn PassageSource>,
}

/// Keeps the best `k` hits pushed into it (by [`Hit::rank_cmp`]).
#[derive(Clone, Debug)]
pub struct TopK {
    k: usize,
    heap: BinaryHeap<Worst>,
}

/// Heap entry ordered so that the worst-ranked hit is the maximum.
#[derive(Clone, Copy, Debug)]
struct Worst(Hit);

impl PartialEq for Worst {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Worst {}
impl PartialOrd for Worst {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Worst {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.rank_cmp(&other.0)
    }
}

impl TopK {
    /// An empty collector keeping at most `k` hits.
    pub fn new(k: usize) -> TopK {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
        }
    }

    /// Offers one hit.
    #[inline]
    pub fn push(&mut self, hit: Hit) {
        if self.heap.len() < self.k {
            self.heap.push(Worst(hit));
        } else if let Some(mut worst) = self.heap.peek_mut()
            && hit.rank_cmp(&worst.0) == Ordering::Less
        {
            *worst = Worst(hit);
        }
    }

    /// Offers every hit of `other`.
    pub fn merge(&mut self, other: TopK) {
        for Worst(hit) in other.heap {
            self.push(hit);
        }
    }

    /// The kept hits, best first.
    pub fn into_sorted(self) -> Vec<Hit> {
        let mut hits: Vec<Hit> = self.heap.into_iter().map(|w| w.0).collect();
        hits.sort_by(Hit::rank_cmp);
        hits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(doc: u32, score: f32) -> Hit {
        Hit { doc, score }
    }

    #[test]
    fn ranking_prefers_score_then_low_doc() {
        assert_eq!(hit(5, 0.9).rank_cmp(&hit(1, 0.8)), Ordering::Less);
        assert_eq!(hit(1, 0.5).rank_cmp(&hit(2, 0.5)), Ordering::Less);
        assert_eq!(hit(2, 0.5).rank_cmp(&hit(2, 0.5)), Ordering::Equal);
    }

    #[test]
    fn topk_matches_full_sort() {
        // Many ties, pushed in a scrambled order, against sorting everything.
        let all: Vec<Hit> = (0..500u32)
            .map(|i| hit((i * 7919) % 500, ((i * 31) % 13) as f32 / 4.0))
            .collect();
        let mut sorted = all.clone();
        sorted.sort_by(Hit::rank_cmp);
        for k in [0, 1, 3, 20, 499, 500, 600] {
            let mut a = TopK::new(k);
            let mut b = TopK::new(k);
            let (left, right) = all.split_at(217);
            left.iter().for_each(|&h| a.push(h));
            right.iter().for_each(|&h| b.push(h));
            a.merge(b);
            assert_eq!(a.into_sorted(), sorted[..k.min(500)].to_vec(), "k={k}");
        }
    }
}
