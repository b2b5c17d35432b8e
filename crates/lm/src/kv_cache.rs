//! The key/value cache of one sequence, owned by the caller.
//!
//! The model is shared and immutable; every sequence owns a [`KvCache`] that grows as tokens are
//! fed through [`crate::Model::forward`]. Rolling back speculation is [`KvCache::truncate`]: O(1),
//! it only forgets positions. Because the forward pass is batch-invariant (see [`crate::quant`]),
//! recomputing the forgotten positions later yields bit-identical keys, values and logits.
//!
//! The cache lives where its model computes: host vectors for the CPU model, preallocated device
//! buffers for the GPU model (`crate::cuda::CudaKv`). The token list and its length are kept here
//! for both, so truncation is O(1) on either.

use crate::Config;
use crate::error::{LmError, Result};

/// Keys and values of every layer for positions `0..len`.
#[derive(Debug, Clone)]
pub struct KvCache {
    tokens: Vec<u32>,
    capacity: usize,
    store: Store,
}

/// Where a cache's keys and values live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheDevice {
    /// Host memory.
    Cpu,
    /// GPU memory.
    Cuda,
}

impl std::fmt::Display for CacheDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CacheDevice::Cpu => "cpu",
            CacheDevice::Cuda => "cuda",
        })
    }
}

#[derive(Debug, Clone)]
enum Store {
    Cpu(CpuKv),
    #[cfg(feature = "gpu-forward")]
    Cuda(crate::cuda::CudaKv),
}

/// Host keys and values, position-major (`[position][kv_head][head_dim]`) per layer.
#[derive(Debug, Clone)]
struct CpuKv {
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
    kv_dim: usize,
}

impl KvCache {
    /// An empty CPU cache for `config`'s model, holding at most `capacity` positions (at most the
    /// model's context). Memory is reserved for `capacity` positions up front, so appending never
    /// reallocates. [`crate::Model::new_cache`] makes a cache on the model's own device.
    pub fn new(config: &Config, capacity: usize) -> Self {
        let capacity = capacity.min(config.context);
        let kv_dim = config.kv_dim();
        let layer = || Vec::with_capacity(capacity * kv_dim);
        Self {
            tokens: Vec::with_capacity(capacity),
            capacity,
            store: Store::Cpu(CpuKv {
                keys: (0..config.layers).map(|_| layer()).collect(),
                values: (0..config.layers).map(|_| layer()).collect(),
                kv_dim,
            }),
        }
    }

    /// An empty cache in GPU memory (allocated on first use).
    #[cfg(feature = "gpu-forward")]
    pub(crate) fn new_cuda(capacity: usize, store: crate::cuda::CudaKv) -> Self {
        Self {
            tokens: Vec::with_capacity(capacity),
            capacity,
            store: Store::Cuda(store),
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
        let per_position = match &self.store {
            Store::Cpu(kv) => kv.keys.len() * kv.kv_dim,
            #[cfg(feature = "gpu-forward")]
            Store::Cuda(kv) => kv.values_per_position(),
        };
        2 * self.len() * per_position * std::mem::size_of::<f32>()
    }

    /// The tokens whose keys and values are held, in order.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Where the keys and values live.
    pub fn device(&self) -> CacheDevice {
        match self.store {
            Store::Cpu(_) => CacheDevice::Cpu,
            #[cfg(feature = "gpu-forward")]
            Store::Cuda(_) => CacheDevice::Cuda,
        }
    }

    /// Forgets every position from `len` on (no-op if `len >= self.len()`). O(1).
    pub fn truncate(&mut self, len: usize) {
        if len >= self.len() {
            return;
        }
        self.tokens.truncate(len);
        match &mut self.store {
            Store::Cpu(kv) => {
                for layer in kv.keys.iter_mut().chain(kv.values.iter_mut()) {
                    layer.truncate(len * kv.kv_dim);
                }
            }
            // Device buffers stay; positions from `len` on are overwritten by the next append.
            #[cfg(feature = "gpu-forward")]
            Store::Cuda(_) => {}
        }
    }

    /// Empties the cache, keeping its memory.
    pub fn clear(&mut self) {
        self.truncate(0);
    }

    /// Makes this cache hold the first `len` positions of `other` (e.g. a document prefix shared
    /// by several continuations), reusing this cache's memory. Both caches must live on the same
    /// device: a copy across devices is [`LmError::CacheDevice`], and a device copy that fails
    /// is an error too; either leaves this cache empty.
    pub fn copy_prefix_from(&mut self, other: &KvCache, len: usize) -> Result<()> {
        let len = len.min(other.len()).min(self.capacity);
        self.tokens.clear();
        if self.device() != other.device() {
            return Err(LmError::CacheDevice {
                model: self.device().to_string(),
                cache: other.device().to_string(),
            });
        }
        match (&mut self.store, &other.store) {
            (Store::Cpu(dst), Store::Cpu(src)) => {
                let n = len * dst.kv_dim;
                for (dst, src) in dst.keys.iter_mut().zip(&src.keys) {
                    dst.clear();
                    dst.extend_from_slice(&src[..n]);
                }
                for (dst, src) in dst.values.iter_mut().zip(&src.values) {
                    dst.clear();
                    dst.extend_from_slice(&src[..n]);
                }
            }
            #[cfg(feature = "gpu-forward")]
            (Store::Cuda(dst), Store::Cuda(src)) => dst.copy_prefix_from(src, len)?,
            #[cfg(feature = "gpu-forward")]
            _ => unreachable!("the devices were compared above"),
        }
        self.tokens.extend_from_slice(&other.tokens[..len]);
        Ok(())
    }

    #[cfg(feature = "gpu-forward")]
    pub(crate) fn cuda_mut(&mut self) -> Option<&mut crate::cuda::CudaKv> {
        match &mut self.store {
            Store::Cuda(kv) => Some(kv),
            Store::Cpu(_) => None,
        }
    }

    fn cpu(&self) -> &CpuKv {
        match &self.store {
            Store::Cpu(kv) => kv,
            #[cfg(feature = "gpu-forward")]
            Store::Cuda(_) => unreachable!("the CPU forward checks every cache's device first"),
        }
    }

    fn cpu_mut(&mut self) -> &mut CpuKv {
        match &mut self.store {
            Store::Cpu(kv) => kv,
            #[cfg(feature = "gpu-forward")]
            Store::Cuda(_) => unreachable!("the CPU forward checks every cache's device first"),
        }
    }

    pub(crate) fn kv_dim(&self) -> usize {
        self.cpu().kv_dim
    }

    /// Appends keys and values of new positions to one layer (CPU caches).
    pub(crate) fn append(&mut self, layer: usize, keys: &[f32], values: &[f32]) {
        let kv = self.cpu_mut();
        kv.keys[layer].extend_from_slice(keys);
        kv.values[layer].extend_from_slice(values);
    }

    /// One layer's keys and values (CPU caches).
    pub(crate) fn layer(&self, layer: usize) -> (&[f32], &[f32]) {
        let kv = self.cpu();
        (&kv.keys[layer], &kv.values[layer])
    }

    /// Records the tokens of a finished forward step.
    pub(crate) fn commit_tokens(&mut self, tokens: &[u32]) {
        self.tokens.extend_from_slice(tokens);
    }
}
