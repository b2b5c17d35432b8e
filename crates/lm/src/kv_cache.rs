//! The key/value cache of one sequence, owned by the caller.
//!
//! The model is shared and immutable; every sequence owns a [`KvCache`] that grows as tokens are
//! fed through [`crate::Model::forward`]. Rolling back speculation is [`KvCache::truncate`]: O(1),
//! it only forgets positions. Because the forward pass is batch-invariant (see [`crate::quant`]),
//! recomputing the forgotten positions later yields bit-identical keys, values and logits.

use crate::Config;

/// Keys and values of every layer for positions `0..len`, position-major
/// (`[position][kv_head][head_dim]`).
#[derive(Debug, Clone)]
pub struct KvCache {
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
    tokens: Vec<u32>,
    kv_dim: usize,
    capacity: usize,
}

impl KvCache {
    /// An empty cache for `config`'s model, holding at most `capacity` positions (at most the
    /// model's context). Memory is reserved for `capacity` positions up front, so appending never
    /// reallocates.
    pub fn new(config: &Config, capacity: usize) -> Self {
        let capacity = capacity.min(config.context);
        let kv_dim = config.kv_dim();
        let layer = || Vec::with_capacity(capacity * kv_dim);
        Self {
            keys: (0..config.layers).map(|_| layer()).collect(),
            values: (0..config.layers).map(|_| layer()).collect(),
            tokens: Vec::with_capacity(capacity),
            kv_dim,
            capacity,
        }
    }

    /// Positions held.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes of keys and values held.
    pub fn bytes(&self) -> usize {
        2 * self.keys.len() * self.len() * self.kv_dim * std::mem::size_of::<f32>()
    }

    /// The tokens whose keys and values are held, in order.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Forgets every position from `len` on (no-op if `len >= self.len()`). O(1).
    pub fn truncate(&mut self, len: usize) {
        if len >= self.len() {
            return;
        }
        self.tokens.truncate(len);
        for layer in self.keys.iter_mut().chain(self.values.iter_mut()) {
            layer.truncate(len * self.kv_dim);
        }
    }

    /// Empties the cache, keeping its memory.
    pub fn clear(&mut self) {
        self.truncate(0);
    }

    /// Makes this cache hold the first `len` positions of `other` (e.g. a document prefix shared
    /// by several continuations), reusing this cache's memory.
    pub fn copy_prefix_from(&mut self, other: &KvCache, len: usize) {
        let len = len.min(other.len()).min(self.capacity);
        self.tokens.clear();
        self.tokens.extend_from_slice(&other.tokens[..len]);
        let n = len * self.kv_dim;
        for (dst, src) in self.keys.iter_mut().zip(&other.keys) {
            dst.clear();
            dst.extend_from_slice(&src[..n]);
        }
        for (dst, src) in self.values.iter_mut().zip(&other.values) {
            dst.clear();
            dst.extend_from_slice(&src[..n]);
        }
    }

    pub(crate) fn kv_dim(&self) -> usize {
        self.kv_dim
    }

    /// Appends keys and values of new positions to one layer.
    pub(crate) fn append(&mut self, layer: usize, keys: &[f32], values: &[f32]) {
        self.keys[layer].extend_from_slice(keys);
        self.values[layer].extend_from_slice(values);
    }

    pub(crate) fn layer(&self, layer: usize) -> (&[f32], &[f32]) {
        (&self.keys[layer], &self.values[layer])
    }

    /// Records the tokens of a finished forward step.
    pub(crate) fn commit_tokens(&mut self, tokens: &[u32]) {
        self.tokens.extend_from_slice(tokens);
    }
}
