//! The weight plan: every GGUF tensor of the transformer, by name and expected shape, read and
//! checked in one place for both the CPU model and the GPU model (`crate::cuda`).
//!
//! A backend supplies only how a tensor becomes its own type (a [`Convert`]): a norm or bias
//! vector, the token embedding, each matrix of a linear layer as it is read, and the matrices
//! that read the same input (q/k/v, gate/up) joined into one linear layer. Every tensor goes to
//! the backend as soon as it is read and checked: the CPU converts each at once, the GPU keeps
//! one linear layer's matrices in GGUF form until it uploads them together. Nothing else of the
//! file is held during loading.

use crate::gguf::GgufFile;
use crate::{Architecture, Config, Result};
use candle_core::quantized::QTensor;

/// How one backend holds each kind of weight.
pub(crate) trait Convert {
    /// A 1-D f32 weight: a norm's scales, or the q, k and v biases side by side.
    type Vector;
    /// The token embedding, `[vocab, dim]` (rows looked up by token id).
    type Embedding;
    /// One matrix of a linear layer (`[out, in]`), as the backend keeps it until the other
    /// matrices of its layer are read.
    type Part;
    /// A linear layer: one or more matrices reading the same input, outputs side by side.
    type Linear;

    fn vector(&self, values: Vec<f32>) -> Result<Self::Vector>;
    fn embedding(&self, tensor: QTensor) -> Result<Self::Embedding>;
    fn part(&self, tensor: QTensor) -> Result<Self::Part>;
    /// Joins `parts` (at least one, equal input widths) in order.
    fn linear(&self, parts: Vec<Self::Part>) -> Result<Self::Linear>;
}

/// Every weight of the transformer, in one backend's types.
pub(crate) struct Weights<C: Convert> {
    /// `token_embd.weight`.
    pub embed: C::Embedding,
    /// `output.weight`, `[vocab, dim]`; `None` when the file has none and the output head is
    /// tied to the embedding.
    pub head: Option<C::Linear>,
    /// `output_norm.weight`: the final norm.
    pub norm: C::Vector,
    pub layers: Vec<Layer<C>>,
}

/// The weights of transformer block `i` (`blk.{i}.*`).
pub(crate) struct Layer<C: Convert> {
    /// `attn_norm.weight`.
    pub attn_norm: C::Vector,
    /// `attn_q`, `attn_k` and `attn_v.weight`, outputs side by side: `dim + 2·kv_dim` outputs.
    pub qkv: C::Linear,
    /// qwen2 only: `attn_q`, `attn_k` and `attn_v.bias` side by side.
    pub qkv_bias: Option<C::Vector>,
    /// `attn_output.weight`.
    pub out: C::Linear,
    /// `ffn_norm.weight`.
    pub ffn_norm: C::Vector,
    /// `ffn_gate` and `ffn_up.weight`, outputs side by side: `2·ffn_dim` outputs.
    pub gate_up: C::Linear,
    /// `ffn_down.weight`.
    pub down: C::Linear,
}

impl<C: Convert> Weights<C> {
    /// Reads every weight of `file` for the model of `config`. A missing tensor or one of the
    /// wrong shape is an [`crate::LmError::InvalidGguf`] naming it.
    pub fn load(file: &mut GgufFile, config: &Config, convert: &C) -> Result<Self> {
        let c = config;
        let (dim, kv_dim, ffn_dim) = (c.dim, c.kv_dim(), c.ffn_dim);
        let embed = convert.embedding(matrix(file, "token_embd.weight", c.vocab, dim)?)?;
        let head = if file.has_tensor("output.weight") {
            Some(linear(file, convert, &[("output.weight", c.vocab)], dim)?)
        } else {
            None
        };
        let norm = convert.vector(file.vector("output_norm.weight", dim)?)?;
        let mut layers = Vec::with_capacity(c.layers);
        for i in 0..c.layers {
            let name = |part: &str| format!("blk.{i}.{part}");
            let qkv_bias = match c.architecture {
                Architecture::Llama => None,
                Architecture::Qwen2 => {
                    let mut bias = file.vector(&name("attn_q.bias"), dim)?;
                    bias.extend(file.vector(&name("attn_k.bias"), kv_dim)?);
                    bias.extend(file.vector(&name("attn_v.bias"), kv_dim)?);
                    Some(convert.vector(bias)?)
                }
            };
            let attn_norm = convert.vector(file.vector(&name("attn_norm.weight"), dim)?)?;
            let (q, k, v) = (
                name("attn_q.weight"),
                name("attn_k.weight"),
                name("attn_v.weight"),
            );
            let qkv = linear(file, convert, &[(&q, dim), (&k, kv_dim), (&v, kv_dim)], dim)?;
            let out = linear(file, convert, &[(&name("attn_output.weight"), dim)], dim)?;
            let ffn_norm = convert.vector(file.vector(&name("ffn_norm.weight"), dim)?)?;
            let (gate, up) = (name("ffn_gate.weight"), name("ffn_up.weight"));
            let gate_up = linear(file, convert, &[(&gate, ffn_dim), (&up, ffn_dim)], dim)?;
            let down = linear(file, convert, &[(&name("ffn_down.weight"), dim)], ffn_dim)?;
            layers.push(Layer {
                attn_norm,
                qkv,
                qkv_bias,
                out,
                ffn_norm,
                gate_up,
                down,
            });
        }
        Ok(Self {
            embed,
            head,
            norm,
            layers,
        })
    }
}

/// Reads the matrices `parts` (name, rows), each `cols` wide, as one linear layer: each is
/// converted as soon as it is read and checked.
fn linear<C: Convert>(
    file: &mut GgufFile,
    convert: &C,
    parts: &[(&str, usize)],
    cols: usize,
) -> Result<C::Linear> {
    let parts = parts
        .iter()
        .map(|&(name, rows)| convert.part(matrix(file, name, rows, cols)?))
        .collect::<Result<Vec<_>>>()?;
    convert.linear(parts)
}

/// Reads the 2-D tensor `name`, checked to be `rows × cols` (candle's order: output features
/// first).
fn matrix(file: &mut GgufFile, name: &str, rows: usize, cols: usize) -> Result<QTensor> {
    let tensor = file.tensor(name)?;
    let dims = tensor.shape().dims();
    if dims != [rows, cols] {
        let got: Vec<String> = dims.iter().map(usize::to_string).collect();
        return Err(file.invalid(format!(
            "tensor `{name}` has shape {}, expected {rows}×{cols}",
            got.join("×")
        )));
    }
    Ok(tensor)
}

#[cfg(test)]
mod tests {
    use crate::gguf::GgufFile;
    use crate::{LmError, Model};
    use candle_core::quantized::gguf_file::{self, Value};
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{DType, Device, Tensor};
    use std::path::{Path, PathBuf};

    /// A tiny llama GGUF of zeros (dim 64, 2 heads, 1 key/value head, ffn 64, 1 block, vocab 32)
    /// in which tensor `wrong` has shape `shape` instead of its own.
    fn tiny_llama(dir: &Path, wrong: &str, shape: &[usize]) -> PathBuf {
        let (dim, kv_dim, ffn, vocab) = (64, 32, 64, 32);
        let mut shapes: Vec<(String, Vec<usize>)> = vec![
            ("token_embd.weight".into(), vec![vocab, dim]),
            ("output_norm.weight".into(), vec![dim]),
        ];
        for (part, shape) in [
            ("attn_norm.weight", vec![dim]),
            ("attn_q.weight", vec![dim, dim]),
            ("attn_k.weight", vec![kv_dim, dim]),
            ("attn_v.weight", vec![kv_dim, dim]),
            ("attn_output.weight", vec![dim, dim]),
            ("ffn_norm.weight", vec![dim]),
            ("ffn_gate.weight", vec![ffn, dim]),
            ("ffn_up.weight", vec![ffn, dim]),
            ("ffn_down.weight", vec![dim, ffn]),
        ] {
            shapes.push((format!("blk.0.{part}"), shape));
        }
        let tensors: Vec<(String, QTensor)> = shapes
            .into_iter()
            .map(|(name, own)| {
                let dims = if name == wrong { shape.to_vec() } else { own };
                let t = Tensor::zeros(dims, DType::F32, &Device::Cpu).unwrap();
                (name, QTensor::quantize(&t, GgmlDType::F32).unwrap())
            })
            .collect();
        let u = |v: usize| Value::U32(v as u32);
        let meta = [
            ("general.architecture", Value::String("llama".into())),
            ("llama.attention.head_count", u(2)),
            ("llama.attention.head_count_kv", u(1)),
            ("llama.embedding_length", u(dim)),
            ("llama.feed_forward_length", u(ffn)),
            ("llama.block_count", u(1)),
            ("llama.context_length", u(16)),
            ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
        ];
        let path = dir.join("tiny.gguf");
        let mut out = std::fs::File::create(&path).unwrap();
        let meta: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (*k, v)).collect();
        let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
        gguf_file::write(&mut out, &meta, &tensors).unwrap();
        path
    }

    /// The error of loading `path` on every backend this build has: the CPU model, and the GPU
    /// model on candle's CPU device (`gpu-forward`). The plan is shared, so they must agree.
    fn load_errors(path: &Path) -> Vec<String> {
        let mut errors = Vec::new();
        let err = Model::load(&mut GgufFile::open(path).unwrap()).err();
        errors.push(err.expect("the CPU model loads a bad file"));
        #[cfg(feature = "gpu-forward")]
        {
            let mut file = GgufFile::open(path).unwrap();
            let err = crate::cuda::load_on_candle_cpu(&mut file, crate::GpuWeights::F32).err();
            errors.push(err.expect("the GPU model loads a bad file"));
        }
        errors
            .into_iter()
            .map(|e| {
                assert!(matches!(e, LmError::InvalidGguf { .. }), "{e:?}");
                e.to_string()
            })
            .collect()
    }

    #[test]
    fn the_tiny_model_loads() {
        let dir = tempfile::tempdir().unwrap();
        let path = tiny_llama(dir.path(), "", &[]);
        Model::load(&mut GgufFile::open(&path).unwrap()).unwrap();
        #[cfg(feature = "gpu-forward")]
        crate::cuda::load_on_candle_cpu(&mut GgufFile::open(&path).unwrap(), Default::default())
            .unwrap();
    }

    #[test]
    fn a_wrong_shape_names_the_tensor_its_shape_and_the_expected_one() {
        let dir = tempfile::tempdir().unwrap();
        for (tensor, shape, message) in [
            (
                "blk.0.attn_k.weight",
                &[64, 64][..],
                "tensor `blk.0.attn_k.weight` has shape 64×64, expected 32×64",
            ),
            (
                "blk.0.ffn_down.weight",
                &[64, 32],
                "tensor `blk.0.ffn_down.weight` has shape 64×32, expected 64×64",
            ),
            (
                "blk.0.attn_output.weight",
                &[4096],
                "tensor `blk.0.attn_output.weight` has shape 4096, expected 64×64",
            ),
            (
                "blk.0.ffn_norm.weight",
                &[32],
                "tensor `blk.0.ffn_norm.weight` has 32 values, expected 64",
            ),
        ] {
            let path = tiny_llama(dir.path(), tensor, shape);
            for error in load_errors(&path) {
                assert!(error.contains(message), "{tensor}: {error}");
            }
        }
    }
}
