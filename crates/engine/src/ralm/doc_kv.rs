//! Keys and values of documents, shared by every request of a [`crate::Ralm`].
//!
//! The document comes first in the LM input, so its part of the KV cache does not depend on
//! the question: once computed, any request that retrieves the document starts from a copy
//! and only recomputes its question and answer. Entries are kept least-recently-used first
//! under a byte budget. The forward pass is batch- and chunk-invariant, so a copied document
//! yields the same logits as a freshly prefilled one, bit for bit.

use std::sync::{Arc, Mutex};

use ralmspec_lm::KvCache;

/// A document: the version of the knowledge base's documents ([`crate::Knowledge::version`])
/// and its number in that version.
pub(crate) type Key = (u64, u32);

/// Documents' KV caches, least recently used first, within a byte budget.
#[derive(Debug)]
pub(crate) struct DocKv {
    budget: usize,
    entries: Mutex<Vec<(Key, Arc<KvCache>)>>,
}

impl DocKv {
    /// A cache holding at most `budget` bytes of keys and values (0: none).
    pub(crate) fn new(budget: usize) -> DocKv {
        DocKv {
            budget,
            entries: Mutex::new(Vec::new()),
        }
    }

    /// The cached KV of `doc`, if present (and marks it recently used).
    pub(crate) fn get(&self, doc: Key) -> Option<Arc<KvCache>> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let at = entries.iter().position(|(d, _)| *d == doc)?;
        let entry = entries.remove(at);
        let kv = entry.1.clone();
        entries.push(entry);
        Some(kv)
    }

    /// Remembers `kv` as `doc`'s, evicting the least recently used entries over budget.
    pub(crate) fn insert(&self, doc: Key, kv: KvCache) {
        let bytes = kv.bytes();
        if bytes > self.budget {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|(d, _)| *d != doc);
        let mut used: usize = entries.iter().map(|(_, kv)| kv.bytes()).sum();
        while used + bytes > self.budget && !entries.is_empty() {
            used -= entries.remove(0).1.bytes();
        }
        entries.push((doc, Arc::new(kv)));
    }

    /// Forgets everything (benchmarks start each run cold).
    pub(crate) fn clear(&self) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}
