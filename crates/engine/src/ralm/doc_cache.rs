//! The per-request speculation cache: documents this request has seen, ranked for a query by
//! the real retriever's own scores ([`Knowledge::score`]). When the knowledge base's true
//! top-1 is in the cache, the cache's top-1 is that document (for exact retrievers), because
//! both rank by the same numbers and the same tie-break (higher score, then lower id).

use std::collections::HashSet;

use ralmspec_retrieval::{Hit, Query};

use crate::error::Result;
use crate::ralm::knowledge::Knowledge;

/// Documents a request has retrieved (and prefetched), in insertion order.
#[derive(Debug, Default)]
pub(crate) struct DocCache {
    docs: Vec<u32>,
    seen: HashSet<u32>,
}

impl DocCache {
    /// Adds `doc` unless it is already there.
    pub(crate) fn insert(&mut self, doc: u32) {
        if self.seen.insert(doc) {
            self.docs.push(doc);
        }
    }

    /// The cached document the retriever ranks first for `query`.
    pub(crate) fn top1(&self, knowledge: &Knowledge, query: &Query) -> Result<Option<u32>> {
        if self.docs.is_empty() {
            return Ok(None);
        }
        let scores = knowledge.score(query, &self.docs)?;
        let best = self
            .docs
            .iter()
            .zip(scores)
            .map(|(&doc, score)| Hit { doc, score })
            .min_by(Hit::rank_cmp);
        Ok(best.map(|h| h.doc))
    }
}
