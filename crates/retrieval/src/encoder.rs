//! The dense encoder: a BERT-family sentence-transformers model on candle, turning texts into
//! vectors the way sentence-transformers does: WordPiece tokens (with `[CLS]`/`[SEP]`, at most
//! the model's `max_seq_length`), the BERT forward pass, then pooling and optional L2
//! normalisation as the folder's sentence-transformers files say ([`Pipeline`]). The default,
//! and what the MiniLM asset gets, is all-MiniLM-L6-v2's: 256 tokens, mean pooling, L2.
//!
//! Prompts: [`Encoder::encode_queries`] and [`Encoder::encode_passages`] (and their one-text
//! and flat forms) put the model's query or passage prompt (e5: `"query: "`, `"passage: "`)
//! before each text. [`Encoder::encode`], [`Encoder::encode_one`] and [`Encoder::encode_flat`]
//! encode the texts as given, with no prompt, as they always did; for MiniLM (no prompts)
//! both families give the same bits.
//!
//! Identity: [`Encoder::name`] is written into index manifests and compared at query time, so
//! vectors made by one encoder are never searched with another's queries. It covers the
//! weights (a sha256 prefix), pooling, normalisation, token limit and prompts; MiniLM with its
//! default settings keeps [`ENCODER_NAME`] so indexes built before stay valid.
//!
//! Queries: every query is run through the model on its own, never padded, so its embedding
//! is the same bits whatever batch it arrives in (the speculative engine relies on a query's
//! embedding not depending on its neighbours). Query texts are spread over threads.
//!
//! Passages ([`Encoder::encode_passages`]) are batched by length instead (`batch.rs`): the
//! call's texts are sorted by token count, cut into batches of at most 16 texts and 2048
//! padded token slots, padded with an attention mask, run one forward pass per batch (the
//! batches spread over rayon's threads), mean-pooled over their real tokens and returned in
//! the caller's order. A passage's embedding then depends on the other texts of its call (in
//! the last bits: cosine ≥ 0.9999 with the passage alone, 1.000000000 to nine digits on 304
//! knowledge-base passages, `tests/encoder_batching.rs`), but the same call always gives the
//! same bits, whatever the thread count, which is what a resumable index build needs.
//! [`Encoder::encode_flat`] keeps the per-text path.
//!
//! Measured (`cargo run --release -p ralmspec-retrieval --example encode_throughput`, 1000
//! knowledge-base passages, 105.9 tokens and 2.37 GFLOP each, 2 vCPU AMD EPYC shared with
//! other builds, load average ≈ 4.7, so the process had about one CPU): candle's f32 GEMM
//! 97.7 GFLOP/s (2048³), 101.7 GFLOP/s (4096 × 1536 × 384, the FFN's shape).
//!
//! | path                     | passages/s | GFLOP/s | of GEMM | per CPU-s |
//! |--------------------------|-----------:|--------:|--------:|----------:|
//! | per text (`encode_flat`) |        9.3 |    22.0 |     23% |       9.3 |
//! | batched, one call        |       17.5 |    41.6 |     43% |      17.6 |
//! | batched, calls of 32     |       13.3 |    31.6 |     32% |      13.4 |
//!
//! Tuning, 300 passages per CPU-second under the same load: batches over rayon threads with
//! 16 texts / 2048 slots 16.3 (calls of 32: 12.4), 32 / 4096 15.6, 64 / 8192 12.6; one batch
//! at a time on candle's threading, 16 / 2048 15.2, 32 / 4096 15.6. The rest of the gap to
//! the GEMM: a profile shows 35% of the time in gemm's kernel, 18% spinning in candle's
//! element-wise barrier pool, 10% in GELU's `erf` and softmax's `exp`, and page faults on
//! fresh activations. Callers that pass few texts per call (an index build in chunks of 32)
//! pad more and keep fewer threads busy.

mod batch;
mod pipeline;

use std::borrow::Cow;
use std::io::Read;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use rayon::prelude::*;
use sha2::{Digest, Sha256};
use tokenizers::{Tokenizer, TruncationParams};

pub use pipeline::{Pipeline, Pooling};

use crate::error::{IoContext, Result, RetrievalError};

/// The identity of all-MiniLM-L6-v2 with its default settings, as written into index
/// manifests.
pub const ENCODER_NAME: &str = "all-MiniLM-L6-v2/mean-pool/l2/256";

/// sha256 of all-MiniLM-L6-v2's `model.safetensors` (the asset store checks the same hash,
/// `crates/assets/src/asset.rs`).
const MINILM_WEIGHTS_SHA256: &str =
    "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db";

/// Overrides of what an encoder folder says, for models that document prompts but ship no
/// `config_sentence_transformers.json`. `None` keeps the folder's; `Some("")` removes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EncoderOptions {
    /// Put before every query instead of the folder's query prompt.
    pub query_prefix: Option<String>,
    /// Put before every passage instead of the folder's passage prompt.
    pub passage_prefix: Option<String>,
    /// Run the model on this CUDA device (ordinal) instead of the CPU; needs the `cuda`
    /// feature. The GPU's vectors differ from the CPU's in the last bits: an index encoded on
    /// the GPU is searched by CPU-encoded queries like any other precomputed vectors.
    pub gpu: Option<usize>,
}

/// A sentence encoder producing vectors of [`Encoder::dim`] floats.
pub struct Encoder {
    model: BertModel,
    tokenizer: Tokenizer,
    dir: PathBuf,
    dim: usize,
    pipeline: Pipeline,
    weights_sha256: String,
    name: String,
    device: Device,
    /// The token id padding batched passages (`pad_token_id`; masked, so never attended).
    pad_id: u32,
}

impl Encoder {
    /// all-MiniLM-L6-v2's longest input in tokens, `[CLS]` and `[SEP]` included (its
    /// sentence-transformers `max_seq_length`), and the default for folders that do not say;
    /// see [`max_tokens`](Self::max_tokens) for this encoder's.
    pub const MAX_TOKENS: usize = 256;

    /// all-MiniLM-L6-v2 from the asset store given by the environment (fetched if needed).
    pub fn minilm() -> Result<Encoder> {
        Encoder::minilm_with(&EncoderOptions::default())
    }

    /// [`minilm`](Self::minilm) with `options` (a GPU, say).
    pub fn minilm_with(options: &EncoderOptions) -> Result<Encoder> {
        let store = ralmspec_assets::Store::from_env()?;
        Encoder::open_with(&store.fetch(ralmspec_assets::Asset::MiniLm)?, options)
    }

    /// Loads a BERT-family sentence-transformers folder on the CPU: `config.json`,
    /// `model.safetensors`, `tokenizer.json`, and the sentence-transformers files when present
    /// (see [`Pipeline`]).
    pub fn open(dir: &Path) -> Result<Encoder> {
        Encoder::open_with(dir, &EncoderOptions::default())
    }

    /// [`open`](Self::open) with the folder's prompts overridden by `options`.
    pub fn open_with(dir: &Path, options: &EncoderOptions) -> Result<Encoder> {
        let device = match options.gpu {
            None => Device::Cpu,
            Some(ordinal) => Device::new_cuda(ordinal).map_err(|e| RetrievalError::Model {
                path: dir.to_owned(),
                reason: if cfg!(feature = "cuda") {
                    format!("CUDA device {ordinal}: {e}")
                } else {
                    "encoding on a GPU needs a build with the `cuda` feature \
                     (cargo build --release --features cuda)"
                        .into()
                },
            })?,
        };
        let config = read_config(&dir.join("config.json"))?;
        let mut pipeline = Pipeline::read(dir)?;
        if let Some(prefix) = &options.query_prefix {
            pipeline.query_prefix.clone_from(prefix);
        }
        if let Some(prefix) = &options.passage_prefix {
            pipeline.passage_prefix.clone_from(prefix);
        }
        if pipeline.max_tokens > config.max_position_embeddings {
            return Err(RetrievalError::EncoderConfig {
                path: dir.join("sentence_bert_config.json"),
                reason: format!(
                    "max_seq_length {} is longer than the model's max_position_embeddings {}",
                    pipeline.max_tokens, config.max_position_embeddings
                ),
            });
        }

        let weights = dir.join("model.safetensors");
        let weights_sha256 = sha256_file(&weights)?;
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
        // tokenizer.json may ship with padding and its own truncation (MiniLM's: 128);
        // sentence-transformers overrides both (no padding, max_seq_length tokens).
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: pipeline.max_tokens,
                ..Default::default()
            }))
            .map_err(|e| tok_err(e.to_string()))?;
        let name = encoder_name(dir, &pipeline, &weights_sha256);
        let pad_id = u32::try_from(config.pad_token_id).map_err(|_| RetrievalError::Model {
            path: dir.join("config.json"),
            reason: format!("pad_token_id {} is not a token id", config.pad_token_id),
        })?;
        Ok(Encoder {
            model,
            tokenizer,
            dir: dir.to_owned(),
            dim: config.hidden_size,
            pipeline,
            weights_sha256,
            name,
            device,
            pad_id,
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

    /// The encoder's identity, written into index manifests and compared at query time:
    /// [`ENCODER_NAME`] for all-MiniLM-L6-v2 with its default settings, else
    /// `FOLDER/POOLING/NORM/MAX[/query="…"][/passage="…"]/SHA` where `SHA` is the first 16 hex
    /// digits of `model.safetensors`' sha256, e.g.
    /// `e5-small-v2/mean-pool/l2/512/query="query: "/passage="passage: "/0123456789abcdef`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Pooling, normalisation, token limit and prompts in effect.
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// Whether embeddings are L2-normalised (unit length).
    pub fn normalises(&self) -> bool {
        self.pipeline.normalise
    }

    /// Longest input in tokens, `[CLS]` and `[SEP]` included; longer texts are truncated.
    pub fn max_tokens(&self) -> usize {
        self.pipeline.max_tokens
    }

    /// sha256 of `model.safetensors`, lower-case hex (computed once, at open).
    pub fn weights_sha256(&self) -> &str {
        &self.weights_sha256
    }

    /// Token ids of `text` as the model sees them (`[CLS] … [SEP]`, truncated), no prompt.
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

    /// One embedding per text, in order, texts as given (no prompt).
    pub fn encode(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        texts.par_iter().map(|t| self.encode_one(t)).collect()
    }

    /// The embeddings of `texts` back to back (`texts.len() × dim` floats, row-major), texts
    /// as given (no prompt).
    pub fn encode_flat(&self, texts: &[&str]) -> Result<Vec<f32>> {
        Ok(self.encode(texts)?.concat())
    }

    /// The embedding of one text as given (no prompt).
    pub fn encode_one(&self, text: &str) -> Result<Vec<f32>> {
        let hidden = self.hidden_states(text)?;
        Ok(self.pipeline.pool(&hidden, self.dim))
    }

    /// The embedding of one query: the query prompt, then `text`.
    pub fn encode_query(&self, text: &str) -> Result<Vec<f32>> {
        self.encode_one(&prefixed(&self.pipeline.query_prefix, text))
    }

    /// One embedding per query, in order, each after the query prompt.
    pub fn encode_queries(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        texts.par_iter().map(|t| self.encode_query(t)).collect()
    }

    /// The embedding of one passage: the passage prompt, then `text`.
    pub fn encode_passage(&self, text: &str) -> Result<Vec<f32>> {
        self.encode_one(&prefixed(&self.pipeline.passage_prefix, text))
    }

    /// One embedding per passage, in the caller's order, each after the passage prompt.
    ///
    /// Unlike queries, passages are batched: sorted by token count, cut into batches of
    /// similar length, padded with an attention mask and pooled over their real tokens (see
    /// the module docs). Each embedding is that of [`encode_passage`](Self::encode_passage) up
    /// to float rounding (cosine ≥ 0.9999), and the result is a pure function of `texts`: the
    /// same call gives the same bits whatever the thread count.
    pub fn encode_passages(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let ids: Vec<Vec<u32>> = texts
            .par_iter()
            .map(|t| self.tokenize(&prefixed(&self.pipeline.passage_prefix, t)))
            .collect::<Result<_>>()?;
        let lens: Vec<usize> = ids.iter().map(Vec::len).collect();
        let plan = batch::plan(&lens, batch::MAX_TEXTS, batch::MAX_SLOTS);
        // Batches over rayon's threads, each batch's matmuls nested in the same pool: faster
        // than one batch at a time with candle's own threading (see the module docs).
        let pooled: Vec<Vec<Vec<f32>>> = plan
            .par_iter()
            .map(|b| {
                let seqs: Vec<&[u32]> = b.iter().map(|&i| ids[i].as_slice()).collect();
                self.forward_batch(&seqs)
            })
            .collect::<Result<_>>()?;
        let mut out = vec![Vec::new(); texts.len()];
        for (b, vectors) in plan.iter().zip(pooled) {
            for (&i, v) in b.iter().zip(vectors) {
                out[i] = v;
            }
        }
        Ok(out)
    }

    /// [`encode_passages`](Self::encode_passages) back to back (`texts.len() × dim` floats).
    pub fn encode_passages_flat(&self, texts: &[&str]) -> Result<Vec<f32>> {
        Ok(self.encode_passages(texts)?.concat())
    }

    /// Last hidden states of `text` as given (tokenized, truncated, unpadded), before pooling:
    /// `tokens × dim` floats, row-major, the `[CLS]` state first.
    pub fn hidden_states(&self, text: &str) -> Result<Vec<f32>> {
        let ids = self.tokenize(text)?;
        self.forward(&ids).map_err(|e| RetrievalError::Model {
            path: self.dir.join("model.safetensors"),
            reason: format!("forward pass failed: {e}"),
        })
    }

    /// Pooled embeddings of one batch of token sequences, padded and masked.
    fn forward_batch(&self, seqs: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
        let run = || -> candle_core::Result<Vec<Vec<f32>>> {
            let padded = batch::Padded::new(seqs, self.pad_id, &self.device)?;
            let types = padded.ids.zeros_like()?;
            let out = self
                .model
                .forward(&padded.ids, &types, Some(&padded.mask))?;
            let hidden = out.flatten_all()?.to_vec1::<f32>()?;
            Ok(padded.pool(&hidden, self.dim, &self.pipeline))
        };
        run().map_err(|e| RetrievalError::Model {
            path: self.dir.join("model.safetensors"),
            reason: format!("batched forward pass failed: {e}"),
        })
    }

    /// Last hidden states of one unpadded sequence, `ids.len() × dim` floats.
    fn forward(&self, ids: &[u32]) -> candle_core::Result<Vec<f32>> {
        let input = Tensor::new(ids, &self.device)?.unsqueeze(0)?;
        let types = input.zeros_like()?;
        let out = self.model.forward(&input, &types, None)?;
        out.squeeze(0)?.flatten_all()?.to_vec1::<f32>()
    }
}

/// `prefix` then `text`, borrowed when there is no prefix.
fn prefixed<'a>(prefix: &str, text: &'a str) -> Cow<'a, str> {
    if prefix.is_empty() {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(format!("{prefix}{text}"))
    }
}

/// A BERT `config.json`; any other `model_type` is [`RetrievalError::UnsupportedModel`].
fn read_config(path: &Path) -> Result<Config> {
    let text = std::fs::read_to_string(path).at(path)?;
    let bad = |reason: String| RetrievalError::Model {
        path: path.to_owned(),
        reason,
    };
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
    match value.get("model_type").and_then(serde_json::Value::as_str) {
        None | Some("bert") => {}
        Some(other) => {
            return Err(RetrievalError::UnsupportedModel {
                path: path.to_owned(),
                model_type: other.to_owned(),
            });
        }
    }
    serde_json::from_value(value).map_err(|e| bad(format!("not a BERT config: {e}")))
}

/// sha256 of the file at `path`, lower-case hex, read in 1 MiB blocks.
fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).at(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).at(path)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(crate::hex(&hasher.finalize()))
}

/// See [`Encoder::name`].
fn encoder_name(dir: &Path, pipeline: &Pipeline, weights_sha256: &str) -> String {
    if weights_sha256 == MINILM_WEIGHTS_SHA256 && *pipeline == Pipeline::default() {
        return ENCODER_NAME.to_owned();
    }
    let folder = dir
        .canonicalize()
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .or_else(|| dir.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "encoder".to_owned());
    format!("{folder}/{pipeline}/{}", &weights_sha256[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(config: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), config).unwrap();
        dir
    }

    #[test]
    fn missing_model_dir_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = Encoder::open(dir.path()).err().unwrap();
        assert!(err.to_string().contains("config.json"), "{err}");
    }

    #[test]
    fn non_bert_config_names_the_model_type() {
        let dir = folder(r#"{"model_type": "xlm-roberta", "hidden_size": 768}"#);
        let err = Encoder::open(dir.path()).err().unwrap();
        assert!(
            matches!(&err, RetrievalError::UnsupportedModel { model_type, .. } if model_type == "xlm-roberta"),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("config.json") && msg.contains("\"xlm-roberta\""),
            "{msg}"
        );
    }

    #[test]
    fn bad_configs_are_errors() {
        let dir = folder("{not json");
        let msg = Encoder::open(dir.path()).err().unwrap().to_string();
        assert!(msg.contains("not valid JSON"), "{msg}");
        let dir = folder(r#"{"model_type": "bert", "hidden_size": 384}"#);
        let msg = Encoder::open(dir.path()).err().unwrap().to_string();
        assert!(msg.contains("not a BERT config"), "{msg}");
    }

    #[test]
    fn names() {
        let p = Pipeline::default();
        let dir = Path::new("/models/all-MiniLM-L6-v2");
        assert_eq!(encoder_name(dir, &p, MINILM_WEIGHTS_SHA256), ENCODER_NAME);
        let other = "0123456789abcdef".repeat(4);
        assert_eq!(
            encoder_name(dir, &p, &other),
            "all-MiniLM-L6-v2/mean-pool/l2/256/0123456789abcdef"
        );
        let cls = Pipeline {
            pooling: Pooling::Cls,
            query_prefix: "query: ".into(),
            ..Pipeline::default()
        };
        assert_eq!(
            encoder_name(dir, &cls, MINILM_WEIGHTS_SHA256),
            r#"all-MiniLM-L6-v2/cls-pool/l2/256/query="query: "/53aa51172d142c89"#
        );
    }

    #[test]
    fn prefixes_borrow_when_empty() {
        assert!(matches!(prefixed("", "x"), Cow::Borrowed("x")));
        assert_eq!(prefixed("query: ", "x"), "query: x");
    }
}
