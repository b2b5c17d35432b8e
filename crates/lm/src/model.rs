//! The transformer: weights, and one forward pass over a chunk of new tokens for one or several
//! sequences.
//!
//! On the CPU (this file) every linear layer runs through the quantized kernel of
//! [`crate::quant`] and attention runs per (token, head), so the computation of a token depends
//! only on its sequence's tokens: the same (prefix, token) gives bit-identical logits whether it
//! was decoded alone, in a prefill chunk, after a rollback, or beside other sequences. The engines
//! build on that guarantee.
//!
//! Which GGUF tensors make the weights, and their shapes, is `weights` (the weight plan), shared
//! with the GPU model; this file says only how the CPU holds them.
//!
//! A model loaded onto a GPU (`crate::cuda`, `cuda` feature) answers the same calls with the same
//! semantics; there the results are deterministic run after run, but cuBLAS picks its kernels by
//! shape, so a chunked or cached computation agrees with a recompute to ~1e-5, not bit for bit.

mod attention;
mod norm;
pub(crate) mod rope;
pub(crate) mod weights;

use crate::gguf::GgufFile;
use crate::quant::{QuantMatrix, matmul_concat};
use crate::{CacheDevice, Config, Device, KvCache, LmError, Result};
use attention::{Query, Shape};
use candle_core::quantized::QTensor;
use rope::Rope;
use weights::{Convert, Layer, Weights};

/// Which positions of a forward chunk produce logits and hidden states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outputs {
    /// None: the chunk only fills the cache.
    None,
    /// The last position of the chunk (decoding).
    Last,
    /// Every position of the chunk (scoring, verification, datastore building).
    All,
}

/// One sequence's part of a forward call.
pub struct Step<'a> {
    pub tokens: &'a [u32],
    pub cache: &'a mut KvCache,
    pub outputs: Outputs,
}

/// Logits and final hidden states for the requested positions of one sequence.
#[derive(Debug, Clone, Default)]
pub struct Output {
    /// Absolute positions (in the sequence) of the rows below.
    pub positions: Vec<usize>,
    /// `positions.len() × vocab` logits.
    pub logits: Vec<f32>,
    /// `positions.len() × dim` hidden states: the normalised final state that the output head
    /// multiplies (the kNN-LM key).
    pub hidden: Vec<f32>,
    vocab: usize,
    dim: usize,
}

impl Output {
    #[cfg(feature = "gpu-forward")]
    pub(crate) fn new(
        positions: Vec<usize>,
        logits: Vec<f32>,
        hidden: Vec<f32>,
        vocab: usize,
        dim: usize,
    ) -> Self {
        Self {
            positions,
            logits,
            hidden,
            vocab,
            dim,
        }
    }

    pub fn len(&self) -> usize {
        self.positions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }

    pub fn logits(&self, row: usize) -> &[f32] {
        &self.logits[row * self.vocab..(row + 1) * self.vocab]
    }

    pub fn hidden(&self, row: usize) -> &[f32] {
        &self.hidden[row * self.dim..(row + 1) * self.dim]
    }

    /// The logits of the last requested position.
    pub fn last_logits(&self) -> Option<&[f32]> {
        self.len().checked_sub(1).map(|r| self.logits(r))
    }
}

/// A loaded model. Immutable: share it; each sequence owns its [`KvCache`].
pub struct Model {
    config: Config,
    backend: Backend,
}

/// Where the weights live and the forward pass runs.
enum Backend {
    Cpu(CpuWeights),
    #[cfg(feature = "gpu-forward")]
    Cuda(crate::cuda::CudaModel),
}

/// The CPU model: quantized matrices for the integer kernel.
struct CpuWeights {
    embed: QuantMatrix,
    /// `None` when the output head is tied to the embedding.
    head: Option<Vec<QuantMatrix>>,
    norm: Vec<f32>,
    layers: Vec<Layer<Cpu>>,
    rope: Rope,
}

/// How the CPU model holds the weights of the plan (`weights`): every matrix a [`QuantMatrix`]
/// for the integer kernel, a linear layer its matrices side by side (for [`matmul_concat`]),
/// vectors on the host.
struct Cpu;

impl Convert for Cpu {
    type Vector = Vec<f32>;
    type Embedding = QuantMatrix;
    type Part = QuantMatrix;
    type Linear = Vec<QuantMatrix>;

    fn vector(&self, values: Vec<f32>) -> Result<Vec<f32>> {
        Ok(values)
    }

    fn embedding(&self, tensor: QTensor) -> Result<QuantMatrix> {
        QuantMatrix::from_qtensor(&tensor)
    }

    fn part(&self, tensor: QTensor) -> Result<QuantMatrix> {
        QuantMatrix::from_qtensor(&tensor)
    }

    fn linear(&self, parts: Vec<QuantMatrix>) -> Result<Vec<QuantMatrix>> {
        Ok(parts)
    }
}

impl Model {
    /// Loads the weights of an open GGUF file for the CPU.
    pub fn load(file: &mut GgufFile) -> Result<Self> {
        Self::load_on(file, Device::Cpu)
    }

    /// Loads the weights of an open GGUF file onto `device`. [`Device::Cuda`] needs a build with
    /// the `cuda` feature ([`LmError::CudaNotBuilt`] otherwise, `gpu-forward` alone included)
    /// and a GPU ([`LmError::NoGpu`]).
    pub fn load_on(file: &mut GgufFile, device: Device) -> Result<Self> {
        let config = Config::from_gguf(file.content())?;
        let backend = match device {
            Device::Cpu => Backend::Cpu(CpuWeights::load(file, &config)?),
            #[cfg(feature = "gpu-forward")]
            Device::Cuda(options) => {
                Backend::Cuda(crate::cuda::CudaModel::load(file, &config, options)?)
            }
            #[cfg(not(feature = "gpu-forward"))]
            Device::Cuda(_) => return Err(LmError::CudaNotBuilt),
        };
        Ok(Self { config, backend })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Wraps a GPU model (built on any candle device: see `crate::cuda::load_on_candle_cpu`).
    #[cfg(feature = "gpu-forward")]
    pub(crate) fn from_cuda_model(config: Config, model: crate::cuda::CudaModel) -> Self {
        Self {
            config,
            backend: Backend::Cuda(model),
        }
    }

    /// The device this model computes on.
    pub fn device(&self) -> Device {
        match &self.backend {
            Backend::Cpu(_) => Device::Cpu,
            #[cfg(feature = "gpu-forward")]
            Backend::Cuda(m) => Device::Cuda(m.options()),
        }
    }

    /// A cache for one sequence of at most `capacity` tokens, on this model's device.
    pub fn new_cache(&self, capacity: usize) -> KvCache {
        match &self.backend {
            Backend::Cpu(_) => KvCache::new(&self.config, capacity),
            #[cfg(feature = "gpu-forward")]
            Backend::Cuda(m) => m.new_cache(&self.config, capacity),
        }
    }

    /// Feeds `tokens` to one sequence (appending them to `cache`).
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache, outputs: Outputs) -> Result<Output> {
        let mut steps = [Step {
            tokens,
            cache,
            outputs,
        }];
        Ok(self.forward_batch(&mut steps)?.pop().unwrap_or_default())
    }

    /// Feeds a chunk of tokens to each of several sequences in one pass: the linear layers see
    /// all their tokens as one batch. On the CPU, results equal those of separate calls, bit for
    /// bit. Input is validated before anything changes: on error every cache is as it was.
    pub fn forward_batch(&self, steps: &mut [Step<'_>]) -> Result<Vec<Output>> {
        let c = &self.config;
        let device = self.device();
        for step in steps.iter() {
            let needed = step.cache.len() + step.tokens.len();
            if needed > step.cache.capacity() {
                return Err(LmError::ContextOverflow {
                    needed,
                    capacity: step.cache.capacity(),
                });
            }
            if let Some(&id) = step.tokens.iter().find(|&&t| t as usize >= c.vocab) {
                return Err(LmError::BadToken { id, vocab: c.vocab });
            }
            if step.cache.device() != cache_device(device) {
                return Err(LmError::CacheDevice {
                    model: device.to_string(),
                    cache: step.cache.device().to_string(),
                });
            }
        }
        match &self.backend {
            // The whole pass runs on a worker of the thread pool: each of its ~150 parallel loops
            // then starts by pushing work to the local queue (microseconds), not by waking the
            // pool from outside and blocking on a lock (tens of microseconds each, measured).
            Backend::Cpu(w) => rayon::scope(|_| w.forward_on_pool(c, steps)),
            #[cfg(feature = "gpu-forward")]
            Backend::Cuda(m) => m.forward_batch(c, steps),
        }
    }
}

/// Where a cache of a model computing on `device` lives.
fn cache_device(device: Device) -> CacheDevice {
    match device {
        Device::Cpu => CacheDevice::Cpu,
        Device::Cuda(_) => CacheDevice::Cuda,
    }
}

impl CpuWeights {
    fn load(file: &mut GgufFile, config: &Config) -> Result<Self> {
        let Weights {
            embed,
            head,
            norm,
            layers,
        } = Weights::load(file, config, &Cpu)?;
        Ok(Self {
            rope: Rope::new(config)?,
            embed,
            head,
            norm,
            layers,
        })
    }

    /// The CPU forward pass; `steps` were validated by [`Model::forward_batch`].
    fn forward_on_pool(&self, c: &Config, steps: &mut [Step<'_>]) -> Result<Vec<Output>> {
        let n: usize = steps.iter().map(|s| s.tokens.len()).sum();
        let (d, kvd, ffn) = (c.dim, c.kv_dim(), c.ffn_dim);
        let qkv_w = d + 2 * kvd;
        let mut x = vec![0f32; n * d];
        let mut h = vec![0f32; n * d];
        let mut qkv = vec![0f32; n * qkv_w];
        let mut q = vec![0f32; n * d];
        let mut att = vec![0f32; n * d];
        let mut gate_up = vec![0f32; n * 2 * ffn];
        let mut act = vec![0f32; n * ffn];

        let tokens: Vec<u32> = steps
            .iter()
            .flat_map(|s| s.tokens.iter().copied())
            .collect();
        // Absolute position of every row, and the step it belongs to.
        let mut positions = Vec::with_capacity(n);
        for step in steps.iter() {
            positions.extend((0..step.tokens.len()).map(|i| step.cache.len() + i));
        }
        for (row, &t) in x.chunks_exact_mut(d).zip(&tokens) {
            self.embed.dequantize_row(t as usize, row);
        }
        let shape = Shape {
            heads: c.heads,
            kv_heads: c.kv_heads,
            head_dim: c.head_dim,
        };

        for (l, layer) in self.layers.iter().enumerate() {
            norm::rms_norm(&x, &layer.attn_norm, c.rms_eps, &mut h);
            matmul_concat(&layer.qkv, &h, n, &mut qkv);
            for (t, row) in qkv.chunks_exact_mut(qkv_w).enumerate() {
                if let Some(bias) = &layer.qkv_bias {
                    row.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
                }
                let (qr, kr) = row.split_at_mut(d);
                self.rope.apply(qr, positions[t]);
                self.rope.apply(&mut kr[..kvd], positions[t]);
                q[t * d..(t + 1) * d].copy_from_slice(qr);
            }
            let mut row = 0;
            for step in steps.iter_mut() {
                for _ in 0..step.tokens.len() {
                    let r = &qkv[row * qkv_w + d..(row + 1) * qkv_w];
                    step.cache.append(l, &r[..kvd], &r[kvd..]);
                    row += 1;
                }
            }
            let mut queries = Vec::with_capacity(n);
            for step in steps.iter() {
                let (keys, values) = step.cache.layer(l);
                let end = keys.len() / step.cache.kv_dim();
                let start = end - step.tokens.len();
                queries.extend((start..end).map(|p| Query {
                    keys,
                    values,
                    visible: p + 1,
                }));
            }
            attention::attend(&shape, &q, &queries, &mut att);
            matmul_concat(&layer.out, &att, n, &mut h);
            x.iter_mut().zip(&h).for_each(|(x, h)| *x += h);

            norm::rms_norm(&x, &layer.ffn_norm, c.rms_eps, &mut h);
            matmul_concat(&layer.gate_up, &h, n, &mut gate_up);
            norm::swiglu(&gate_up, ffn, &mut act);
            matmul_concat(&layer.down, &act, n, &mut h);
            x.iter_mut().zip(&h).for_each(|(x, h)| *x += h);
        }

        let mut outputs = Vec::with_capacity(steps.len());
        let mut first = 0;
        for step in steps.iter_mut() {
            let len = step.tokens.len();
            let rows = match step.outputs {
                Outputs::None => first..first,
                Outputs::Last => (first + len).saturating_sub(1).max(first)..first + len,
                Outputs::All => first..first + len,
            };
            outputs.push(self.head_output(c, &x[rows.start * d..rows.end * d], &positions[rows]));
            step.cache.commit_tokens(step.tokens);
            first += len;
        }
        Ok(outputs)
    }

    /// Final norm and output head for the given rows of the residual stream.
    fn head_output(&self, c: &Config, x: &[f32], positions: &[usize]) -> Output {
        let rows = positions.len();
        let mut hidden = vec![0f32; rows * c.dim];
        norm::rms_norm(x, &self.norm, c.rms_eps, &mut hidden);
        let mut logits = vec![0f32; rows * c.vocab];
        if rows > 0 {
            let tied = std::slice::from_ref(&self.embed);
            let head = self.head.as_deref().unwrap_or(tied);
            matmul_concat(head, &hidden, rows, &mut logits);
        }
        Output {
            positions: positions.to_vec(),
            logits,
            hidden,
            vocab: c.vocab,
            dim: c.dim,
        }
    }
}
