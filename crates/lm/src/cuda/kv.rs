//! The device half of a [`crate::KvCache`]: key and value buffers in GPU memory.
//!
//! Each layer has one key and one value buffer of shape `[kv_heads, capacity, head_dim]`,
//! allocated on first use and then reused: appending writes positions `len..len+n` in place, and
//! attention reads the view `[.., 0..len, ..]` without a copy (cuBLAS takes the capacity as the
//! batch stride). The number of valid positions is the cache's token count, so
//! [`crate::KvCache::truncate`] stays O(1) and touches no device memory.

use candle_core::{DType, Device, Tensor};

/// Keys and values of every layer in GPU memory.
pub struct CudaKv {
    device: Device,
    layers: usize,
    kv_heads: usize,
    head_dim: usize,
    capacity: usize,
    /// `(keys, values)` per layer once allocated.
    buffers: Option<Vec<(Tensor, Tensor)>>,
}

impl CudaKv {
    /// Key (or value) floats per position, over all layers.
    pub(crate) fn values_per_position(&self) -> usize {
        self.layers * self.kv_heads * self.head_dim
    }

    /// A cache for `capacity` positions; no memory is taken until the first append.
    pub fn new(
        device: &Device,
        layers: usize,
        kv_heads: usize,
        head_dim: usize,
        capacity: usize,
    ) -> Self {
        Self {
            device: device.clone(),
            layers,
            kv_heads,
            head_dim,
            capacity,
            buffers: None,
        }
    }

    /// The buffers, allocating them on first use.
    fn buffers(&mut self) -> candle_core::Result<&mut Vec<(Tensor, Tensor)>> {
        if self.buffers.is_none() {
            let shape = (self.kv_heads, self.capacity, self.head_dim);
            let zeros = || Tensor::zeros(shape, DType::F32, &self.device);
            let buffers = (0..self.layers)
                .map(|_| Ok((zeros()?, zeros()?)))
                .collect::<candle_core::Result<Vec<_>>>()?;
            self.buffers = Some(buffers);
        }
        Ok(self.buffers.as_mut().expect("just allocated"))
    }

    /// Writes the keys and values of new positions `start..start+n` of `layer` (each
    /// `[kv_heads, n, head_dim]`, contiguous) and returns the views of positions `0..start+n`.
    pub fn append(
        &mut self,
        layer: usize,
        start: usize,
        keys: &Tensor,
        values: &Tensor,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let (k, v) = &self.buffers()?[layer];
        k.slice_set(keys, 1, start)?;
        v.slice_set(values, 1, start)?;
        let len = start + keys.dim(1)?;
        Ok((k.narrow(1, 0, len)?, v.narrow(1, 0, len)?))
    }

    /// Copies the first `len` positions of every layer of `other` into this cache.
    pub fn copy_prefix_from(&mut self, other: &CudaKv, len: usize) -> candle_core::Result<()> {
        let Some(src) = &other.buffers else {
            return Ok(()); // `other` never held anything, so `len` is 0.
        };
        if len == 0 {
            return Ok(());
        }
        for ((dk, dv), (sk, sv)) in self.buffers()?.iter().zip(src) {
            dk.slice_set(&sk.narrow(1, 0, len)?.contiguous()?, 1, 0)?;
            dv.slice_set(&sv.narrow(1, 0, len)?.contiguous()?, 1, 0)?;
        }
        Ok(())
    }
}

impl Clone for CudaKv {
    /// A deep copy: the buffers are written in place, so a clone must not share them. Like
    /// `Vec::clone` running out of memory, a failed device copy aborts (with a panic).
    fn clone(&self) -> Self {
        let buffers = self.buffers.as_ref().map(|layers| {
            layers
                .iter()
                .map(|(k, v)| {
                    let copy = |t: &Tensor| t.copy().expect("copying a GPU KV cache");
                    (copy(k), copy(v))
                })
                .collect()
        });
        Self {
            device: self.device.clone(),
            buffers,
            ..*self
        }
    }
}

impl std::fmt::Debug for CudaKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaKv")
            .field("layers", &self.layers)
            .field("kv_heads", &self.kv_heads)
            .field("head_dim", &self.head_dim)
            .field("capacity", &self.capacity)
            .field("allocated", &self.buffers.is_some())
            .finish()
    }
}
