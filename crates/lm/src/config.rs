//! The hyper-parameters of a model, read from its GGUF metadata, checked against the model's
//! tensors and against upper bounds before anything is allocated from them (a header claiming
//! 2³¹ layers or positions is a clear [`LmError::Unsupported`], never an allocation abort).

use crate::{LmError, Result};
use candle_core::quantized::gguf_file::{Content, Value};

/// The transformer families this crate runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// Llama (SmolLM2): rotary embedding on adjacent pairs, no projection bias.
    Llama,
    /// Qwen2 (Qwen2.5): rotary embedding on the two halves of a head, bias on q, k and v.
    Qwen2,
}

/// How the rotary embedding pairs up the dimensions of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    /// Dimensions (2i, 2i+1) rotate together (GGUF llama, with its permuted q/k weights).
    Interleaved,
    /// Dimensions (i, i + d/2) rotate together (GPT-NeoX style, qwen2).
    Halves,
}

/// Upper bounds of a shape this crate accepts: far above any model it can run on a CPU (the
/// largest llama has 126 layers, 16k-wide embeddings, 128k-token vocabularies and contexts), far
/// below what would make a table sized from them fail to allocate.
pub mod limits {
    /// Transformer blocks.
    pub const LAYERS: usize = 1024;
    /// Embedding width.
    pub const DIM: usize = 1 << 16;
    /// Feed-forward width.
    pub const FFN_DIM: usize = 1 << 18;
    /// Attention heads.
    pub const HEADS: usize = 1024;
    /// Vocabulary size.
    pub const VOCAB: usize = 1 << 20;
    /// Context length (positions). The rotary table holds `context × head_dim` f32 values.
    pub const CONTEXT: usize = 1 << 20;
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub architecture: Architecture,
    pub layers: usize,
    pub dim: usize,
    pub ffn_dim: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub vocab: usize,
    pub context: usize,
    pub rope_base: f32,
    pub rope_style: RopeStyle,
    pub rms_eps: f32,
}

impl Config {
    pub fn from_gguf(content: &Content) -> Result<Self> {
        let arch_name = string(content, "general.architecture")?;
        let architecture = match arch_name.as_str() {
            "llama" => Architecture::Llama,
            "qwen2" => Architecture::Qwen2,
            other => {
                return Err(LmError::Unsupported(format!(
                    "architecture `{other}` (supported: llama, qwen2)"
                )));
            }
        };
        let key = |k: &str| format!("{arch_name}.{k}");
        let heads = uint(content, &key("attention.head_count"))?;
        let dim = uint(content, &key("embedding_length"))?;
        let vocab = content
            .tensor_infos
            .get("token_embd.weight")
            .ok_or_else(|| LmError::MissingMetadata("tensor token_embd.weight".into()))?
            .shape
            .dims()[0];
        let config = Self {
            architecture,
            layers: uint(content, &key("block_count"))?,
            dim,
            ffn_dim: uint(content, &key("feed_forward_length"))?,
            heads,
            kv_heads: uint(content, &key("attention.head_count_kv")).unwrap_or(heads),
            head_dim: dim / heads.max(1),
            vocab,
            context: uint(content, &key("context_length"))?,
            rope_base: float(content, &key("rope.freq_base")).unwrap_or(10_000.0),
            rope_style: match architecture {
                Architecture::Llama => RopeStyle::Interleaved,
                Architecture::Qwen2 => RopeStyle::Halves,
            },
            rms_eps: float(content, &key("attention.layer_norm_rms_epsilon"))?,
        };
        config.validate()?;
        // The block count must match the tensors: the last block exists, the next does not.
        let block = |i: usize| format!("blk.{i}.attn_norm.weight");
        if !content.tensor_infos.contains_key(&block(config.layers - 1))
            || content.tensor_infos.contains_key(&block(config.layers))
        {
            return Err(LmError::Unsupported(format!(
                "`{}` is {}, but the file's tensors are for another number of blocks",
                key("block_count"),
                config.layers
            )));
        }
        Ok(config)
    }

    fn validate(&self) -> Result<()> {
        for (name, value, max) in [
            ("block_count", self.layers, limits::LAYERS),
            ("embedding_length", self.dim, limits::DIM),
            ("feed_forward_length", self.ffn_dim, limits::FFN_DIM),
            ("attention.head_count", self.heads, limits::HEADS),
            ("attention.head_count_kv", self.kv_heads, limits::HEADS),
            ("vocabulary size", self.vocab, limits::VOCAB),
            ("context_length", self.context, limits::CONTEXT),
        ] {
            if value == 0 || value > max {
                return Err(LmError::Unsupported(format!(
                    "{name} is {value}; this crate runs models with 1 to {max}"
                )));
            }
        }
        let ok = self.layers > 0
            && self.heads > 0
            && self.kv_heads > 0
            && self.heads.is_multiple_of(self.kv_heads)
            && self.dim == self.heads * self.head_dim
            && self.head_dim.is_multiple_of(2)
            && self.dim.is_multiple_of(32)
            && self.ffn_dim.is_multiple_of(32);
        if ok {
            Ok(())
        } else {
            Err(LmError::Unsupported(format!(
                "inconsistent model shape {self:?}"
            )))
        }
    }

    /// Width of the key (and value) projection.
    pub fn kv_dim(&self) -> usize {
        self.kv_heads * self.head_dim
    }
}

fn get<'a>(content: &'a Content, key: &str) -> Result<&'a Value> {
    content
        .metadata
        .get(key)
        .ok_or_else(|| LmError::MissingMetadata(key.into()))
}

fn uint(content: &Content, key: &str) -> Result<usize> {
    let value = get(content, key)?;
    value
        .to_u32()
        .map(|v| v as usize)
        .or_else(|_| value.to_u64().map(|v| v as usize))
        .map_err(|_| LmError::MissingMetadata(key.into()))
}

fn float(content: &Content, key: &str) -> Result<f32> {
    get(content, key)?
        .to_f32()
        .map_err(|_| LmError::MissingMetadata(key.into()))
}

pub(crate) fn string(content: &Content, key: &str) -> Result<String> {
    get(content, key)?
        .to_string()
        .cloned()
        .map_err(|_| LmError::MissingMetadata(key.into()))
}
