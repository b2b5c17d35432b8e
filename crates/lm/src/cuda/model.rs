//! The transformer on the GPU: loading from a GGUF file (the weight plan shared with the CPU
//! model, `crate::model::weights`), and the forward pass.
//!
//! The same computation as the CPU model (`crate::model`), as candle tensor ops: RMS norm, the
//! fused q/k/v projection (plus bias for qwen2), rotary embedding from the CPU model's own
//! cos/sin tables, attention over the sequence's device cache, the output projection, the SwiGLU
//! MLP; the final norm and the output head only for the requested positions. The linear layers
//! of a call see the tokens of all its sequences as one matrix; attention runs per sequence.

use super::attention::{self, Heads};
use super::kv::CudaKv;
use super::weights::{Gpu, Linear};
use crate::gguf::GgufFile;
use crate::model::rope::Rope;
use crate::model::weights::{Layer, Weights};
use crate::{Config, CudaOptions, KvCache, LmError, Output, Outputs, Result, RopeStyle, Step};
use candle_core::{Device, Tensor};

/// A model whose weights live on one CUDA device.
pub struct CudaModel {
    device: Device,
    options: CudaOptions,
    /// `[vocab, dim]` f32: rows are looked up for the input tokens.
    embed: Tensor,
    head: Linear,
    norm: Tensor,
    layers: Vec<Layer<Gpu>>,
    /// `[context, head_dim/2]`.
    cos: Tensor,
    sin: Tensor,
}

impl CudaModel {
    /// Opens GPU `options.ordinal` and uploads the weights of `file`. A build without the `cuda`
    /// feature (`gpu-forward` alone) has the code but no device: [`LmError::CudaNotBuilt`].
    pub fn load(file: &mut GgufFile, config: &Config, options: CudaOptions) -> Result<Self> {
        if !cfg!(feature = "cuda") {
            return Err(LmError::CudaNotBuilt);
        }
        let device = Device::new_cuda(options.ordinal).map_err(|e| LmError::NoGpu {
            ordinal: options.ordinal,
            // candle may append a backtrace to the message; the first line says it all.
            reason: e.to_string().lines().next().unwrap_or_default().to_string(),
        })?;
        Self::load_onto(file, config, options, device)
    }

    /// Uploads the weights onto `device`. Every op used also runs on candle's CPU device, which
    /// is how this forward pass is tested on machines without a GPU.
    pub(crate) fn load_onto(
        file: &mut GgufFile,
        config: &Config,
        options: CudaOptions,
        device: Device,
    ) -> Result<Self> {
        let c = config;
        let gpu = Gpu {
            device,
            format: options.weights,
        };
        let Weights {
            embed,
            head,
            norm,
            layers,
        } = Weights::load(file, config, &gpu)?;
        let head = match head {
            Some(head) => head,
            None => Linear::from_f32(&embed, gpu.format)?,
        };
        let device = gpu.device;
        let rope = Rope::new(config)?;
        let (cos, sin) = rope.tables();
        let half = c.head_dim / 2;
        let cos = Tensor::from_slice(cos, (c.context, half), &device)?;
        let sin = Tensor::from_slice(sin, (c.context, half), &device)?;
        Ok(Self {
            device,
            options,
            embed,
            head,
            norm,
            layers,
            cos,
            sin,
        })
    }

    pub fn options(&self) -> CudaOptions {
        self.options
    }

    /// An empty cache on this model's device.
    pub fn new_cache(&self, config: &Config, capacity: usize) -> KvCache {
        let capacity = capacity.min(config.context);
        let kv = CudaKv::new(
            &self.device,
            config.layers,
            config.kv_heads,
            config.head_dim,
            capacity,
        );
        KvCache::new_cuda(capacity, kv)
    }

    /// The forward pass; `steps` were validated by [`crate::Model::forward_batch`] (capacity,
    /// token ids, every cache on CUDA). Caches change only if the whole pass succeeds.
    pub fn forward_batch(&self, c: &Config, steps: &mut [Step<'_>]) -> Result<Vec<Output>> {
        let n: usize = steps.iter().map(|s| s.tokens.len()).sum();
        if n == 0 {
            return Ok(steps
                .iter()
                .map(|_| Output::new(Vec::new(), Vec::new(), Vec::new(), c.vocab, c.dim))
                .collect());
        }
        let (d, kvd, ffn) = (c.dim, c.kv_dim(), c.ffn_dim);
        let heads = Heads {
            heads: c.heads,
            kv_heads: c.kv_heads,
            head_dim: c.head_dim,
        };
        let tokens: Vec<u32> = steps
            .iter()
            .flat_map(|s| s.tokens.iter().copied())
            .collect();
        let mut positions = Vec::with_capacity(n);
        for step in steps.iter() {
            positions.extend((0..step.tokens.len()).map(|i| step.cache.len() + i));
        }
        let ids = Tensor::from_vec(tokens, n, &self.device)?;
        let pos: Vec<u32> = positions.iter().map(|&p| p as u32).collect();
        let pos = Tensor::from_vec(pos, n, &self.device)?;
        // One (cos, sin) row per token, as `[n, 1, half]`: the rope kernels then rotate token
        // `t`'s heads by its own position, whatever sequence it belongs to.
        let half = c.head_dim / 2;
        let cos = self.cos.index_select(&pos, 0)?.reshape((n, 1, half))?;
        let sin = self.sin.index_select(&pos, 0)?.reshape((n, 1, half))?;
        let rope = |x: Tensor, heads: usize| -> candle_core::Result<Tensor> {
            let x = x.contiguous()?.reshape((n, heads, 1, c.head_dim))?;
            let x = match c.rope_style {
                RopeStyle::Interleaved => candle_nn::rotary_emb::rope_i(&x, &cos, &sin)?,
                RopeStyle::Halves => candle_nn::rotary_emb::rope(&x, &cos, &sin)?,
            };
            x.reshape((n, heads * c.head_dim))
        };

        // Every layer writes the new keys and values past each cache's length; the lengths move
        // only at the end, so a failure midway leaves every cache as it was.
        let mut x = self.embed.index_select(&ids, 0)?;
        for (l, layer) in self.layers.iter().enumerate() {
            let h = candle_nn::ops::rms_norm(&x, &layer.attn_norm, c.rms_eps)?;
            let mut qkv = layer.qkv.forward(&h)?;
            if let Some(bias) = &layer.qkv_bias {
                qkv = qkv.broadcast_add(bias)?;
            }
            let q = rope(qkv.narrow(1, 0, d)?, c.heads)?;
            let k = rope(qkv.narrow(1, d, kvd)?, c.kv_heads)?;
            let v = qkv.narrow(1, d + kvd, kvd)?;
            let mut att = Vec::with_capacity(steps.len());
            let mut row = 0;
            for step in steps.iter_mut() {
                let len = step.tokens.len();
                if len == 0 {
                    continue;
                }
                let start = step.cache.len();
                // [len, kv_dim] → [kv_heads, len, head_dim], the cache's layout.
                let by_head = |t: &Tensor| {
                    t.narrow(0, row, len)?
                        .reshape((len, c.kv_heads, c.head_dim))?
                        .transpose(0, 1)?
                        .contiguous()
                };
                let kv = step.cache.cuda_mut().ok_or_else(|| LmError::CacheDevice {
                    model: "cuda".into(),
                    cache: "cpu".into(),
                })?;
                let (keys, values) = kv.append(l, start, &by_head(&k)?, &by_head(&v)?)?;
                att.push(attention::attend(
                    heads,
                    &q.narrow(0, row, len)?,
                    &keys,
                    &values,
                    start,
                )?);
                row += len;
            }
            let att = match att.as_slice() {
                [one] => one.clone(),
                _ => Tensor::cat(&att, 0)?,
            };
            x = (x + layer.out.forward(&att)?)?;

            let h = candle_nn::ops::rms_norm(&x, &layer.ffn_norm, c.rms_eps)?;
            let gate_up = layer.gate_up.forward(&h)?;
            let act = (candle_nn::ops::silu(&gate_up.narrow(1, 0, ffn)?)?
                * gate_up.narrow(1, ffn, ffn)?)?;
            x = (x + layer.down.forward(&act)?)?;
        }

        let mut outputs = Vec::with_capacity(steps.len());
        let mut first = 0;
        for step in steps.iter() {
            let len = step.tokens.len();
            let rows = match step.outputs {
                Outputs::None => first..first,
                Outputs::Last => (first + len).saturating_sub(1).max(first)..first + len,
                Outputs::All => first..first + len,
            };
            outputs.push(self.head_output(c, &x, rows.clone(), &positions[rows])?);
            first += len;
        }
        for step in steps.iter_mut() {
            step.cache.commit_tokens(step.tokens);
        }
        Ok(outputs)
    }

    /// Final norm and output head for `rows` of the residual stream `x`, copied to the host.
    fn head_output(
        &self,
        c: &Config,
        x: &Tensor,
        rows: std::ops::Range<usize>,
        positions: &[usize],
    ) -> Result<Output> {
        if rows.is_empty() {
            return Ok(Output::new(
                Vec::new(),
                Vec::new(),
                Vec::new(),
                c.vocab,
                c.dim,
            ));
        }
        let x = x.narrow(0, rows.start, rows.len())?;
        let hidden = candle_nn::ops::rms_norm(&x, &self.norm, c.rms_eps)?;
        let logits = self.head.forward(&hidden)?;
        Ok(Output::new(
            positions.to_vec(),
            logits.flatten_all()?.to_vec1()?,
            hidden.flatten_all()?.to_vec1()?,
            c.vocab,
            c.dim,
        ))
    }
}
