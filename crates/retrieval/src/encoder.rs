//! The dense encoder: all-MiniLM-L6-v2 (a 6-layer BERT) on candle, turning texts into 384-d
//! unit vectors the way sentence-transformers does: WordPiece tokens (at most 256, with
//! `[CLS]`/`[SEP]`), the BERT forward pass, mean pooling over the attention mask, then L2
//! normalisation.
//!
//! Batch invariance: every text is run through the model on its own, never padded, so its
//! embedding is the same bits whatever batch it arrives in (the speculative engine relies on
//! a query's embedding not depending on its neighbours). Texts are spread over threads.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use rayon::prelude::*;
use tokenizers::{Tokenizer, TruncationParams};

use crate::error::{IoContext, Result, RetrievalError};

/// The encoder's identity as written into index manifests.
pub const ENCODER_NAME: &str = "all-MiniLM-L6-v2/mean-pool/l2/256";

/// A sentence encoder producing unit vectors of [`Encoder::dim`] floats.
pub struct Encoder {
    model: BertModel,
    tokenizer: Tokenizer,
    dir: PathBuf,
    dim: usize,
    device: Device,
}

impl Encoder {
    /// Longest input in tokens, `[CLS]` and `[SEP]` included (sentence-transformers'
    /// `max_seq_length` for this model); longer texts are truncated.
    pub const MAX_TOKENS: usize = 256;

    /// all-MiniLM-L6-v2 from the asset store given by the environment (fetched if needed).
    pub fn minilm() -> Result<Encoder> {
        let store = ralmspec_assets::Store::from_env()?;
        Encoder::open(&store.fetch(ralmspec_assets::Asset::MiniLm)?)
    }

    /// Loads `config.json`, `model.safetensors` and `tokenizer.json` from `dir`, on the CPU.
    pub fn open(dir: &Path) -> Result<Encoder> {
        let device = Device::Cpu;
        let config_path = dir.join("config.json");
        let config_text = std::fs::read_to_string(&config_path).at(&config_path)?;
        let config: Config =
            serde_json::from_str(&config_text).map_err(|e| RetrievalError::Model {
                path: config_path.clone(),
                reason: format!("not a BERT config: {e}"),
            })?;
        let weights = dir.join("model.safetensors");
        if !weights.is_file() {
            return Err(RetrievalError::io(
                &weights,
                std::io::Error::new(std::io::ErrorKind::NotFound, "file not found"),
            ));
        }
        let model_err = |e: candle_core::Error| RetrievalError::Model {
            path: weights.clone(),
            reason: e.to_string(),
        };
        // SAFETY: the file is memory-mapped read-only; the asset store only ever replaces
        // files by renaming, so the mapped file is never modified in place.
        let vb = unsafe {
            VarBuilder::from_mmaped_safetensors(std::slice::from_ref(&weights), DType::F32, &device)
        }
        .map_err(model_err)?;
        let model = BertModel::load(vb, &config).map_err(model_err)?;

        let tok_path = dir.join("tokenizer.json");
        let tok_err = |reason: String| RetrievalError::Tokenizer {
            path: tok_path.clone(),
            reason,
        };
        let mut tokenizer = Tokenizer::from_file(&tok_path).map_err(|e| tok_err(e.to_string()))?;
        // tokenizer.json ships with padding to 128 and truncation at 128; sentence-transformers
        // overrides both (no padding, 256 tokens).
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: Self::MAX_TOKENS,
                ..Default::default()
            }))
            .map_err(|e| tok_err(e.to_string()))?;
        Ok(Encoder {
            model,
            tokenizer,
            dir: dir.to_owned(),
            dim: config.hidden_size,
            device,
        })
    }

    /// Length of every embedding (384 for MiniLM).
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The folder the model was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Token ids of `text` as the model sees them (`[CLS] … [SEP]`, truncated).
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| RetrievalError::Tokenizer {
                path: self.dir.join("tokenizer.json"),
                reason: format!("cannot encode {text:?}: {e}"),
            })?;
        Ok(enc.get_ids().to_vec())
    }

    /// One unit vector per text, in order.
    pub fn encode(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        texts.par_iter().map(|t| self.encode_one(t)).collect()
    }

    /// The embeddings of `texts` back to back (`texts.len() × dim` floats, row-major).
    pub fn encode_flat(&self, texts: &[&str]) -> Result<Vec<f32>> {
        Ok(self.encode(texts)?.concat())
    }

    /// The embedding of one text.
    pub fn encode_one(&self, text: &str) -> Result<Vec<f32>> {
        let ids = self.tokenize(text)?;
        let hidden = self.forward(&ids).map_err(|e| RetrievalError::Model {
            path: self.dir.join("model.safetensors"),
            reason: format!("forward pass failed: {e}"),
        })?;
        Ok(mean_pool_normalise(&hidden, self.dim))
    }

    /// Last hidden states of one unpadded sequence, `ids.len() × dim` floats.
    fn forward(&self, ids: &[u32]) -> candle_core::Result<Vec<f32>> {
        let input = Tensor::new(ids, &self.device)?.unsqueeze(0)?;
        let types = input.zeros_like()?;
        let out = self.model.forward(&input, &types, None)?;
        out.squeeze(0)?.flatten_all()?.to_vec1::<f32>()
    }
}

/// Mean over the token rows of `hidden` (every token is attended: no padding), then divided by
/// its L2 norm (floored at 1e-12 like `torch.nn.functional.normalize`).
fn mean_pool_normalise(hidden: &[f32], dim: usize) -> Vec<f32> {
    let rows = hidden.len() / dim;
    let mut sum = vec![0f32; dim];
    for row in hidden.chunks_exact(dim) {
        for (s, &x) in sum.iter_mut().zip(row) {
            *s += x;
        }
    }
    let n = rows.max(1) as f32;
    sum.iter_mut().for_each(|s| *s /= n);
    let norm = sum.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    sum.iter_mut().for_each(|s| *s /= norm);
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_is_mean_then_unit_length() {
        let v = mean_pool_normalise(&[1.0, 0.0, 5.0, 8.0], 2);
        assert!(
            (v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6,
            "{v:?}"
        );
        assert_eq!(mean_pool_normalise(&[0.0, 0.0], 2), vec![0.0, 0.0]);
    }

    #[test]
    fn missing_model_dir_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = Encoder::open(dir.path()).err().unwrap();
        assert!(err.to_string().contains("config.json"), "{err}");
    }
}
