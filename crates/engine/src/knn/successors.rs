//! The speculation cache of kNN-LM: the datastore entries that followed the last true
//! neighbours. When the text being generated follows a datastore passage, the next step's
//! neighbours are the current ones' successors (consecutive corpus positions, the paper's
//! spatial locality), so each step is speculated by ranking these entries against its hidden
//! state, with the retriever's own [`Retriever::score`].

use ralmspec_retrieval::{Hit, Query, Retriever, retriever::TopK};

use crate::error::Result;

/// Entries `j+1 ..= j+n` of every neighbour `j` of the last verified step, sorted, distinct.
#[derive(Debug, Default)]
pub(crate) struct Successors {
    entries: Vec<u32>,
}

impl Successors {
    /// Replaces the cache with the `n` successors of each of `neighbours` (within `len`
    /// entries).
    pub(crate) fn refill(&mut self, neighbours: &[Hit], n: usize, len: usize) {
        self.entries.clear();
        for h in neighbours {
            let first = h.doc as usize + 1;
            let last = (first + n).min(len);
            self.entries.extend((first..last).map(|j| j as u32));
        }
        self.entries.sort_unstable();
        self.entries.dedup();
    }

    /// True before the first real search.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The `k` cached entries nearest to `query`, ranked as `retriever` ranks.
    pub(crate) fn speculate(
        &self,
        retriever: &dyn Retriever,
        query: &Query,
        k: usize,
    ) -> Result<Vec<Hit>> {
        let scores = retriever.score(query, &self.entries)?;
        let mut top = TopK::new(k);
        for (&doc, score) in self.entries.iter().zip(scores) {
            top.push(Hit { doc, score });
        }
        Ok(top.into_sorted())
    }
}
