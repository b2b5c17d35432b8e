//! What sentence-transformers does around the BERT forward pass of one model folder: the
//! prompt put before queries and before passages, the token limit, the pooling and whether
//! the result is L2-normalised ([`Pipeline`]). This module owns reading those settings from
//! the folder's sentence-transformers files and applying the pooling.
//!
//! - `modules.json`: the module chain. `Transformer`, `Pooling` and `Normalize` are understood
//!   (`Normalize` present ⇒ L2 normalisation); any other module (`Dense`, `LayerNorm`, …)
//!   would change the embedding, so it is an error rather than silently skipped.
//! - the `Pooling` module's `config.json` (`1_Pooling/config.json`): `pooling_mode_cls_token`
//!   or `pooling_mode_mean_tokens`; other modes, combinations and `include_prompt: false` are
//!   errors.
//! - `sentence_bert_config.json`: `max_seq_length`.
//! - `config_sentence_transformers.json`: `prompts`, the query prompt under `query` (or
//!   `search_query`), the passage prompt under `passage`, `document`, `search_document` or
//!   `corpus`. `default_prompt_name` is not applied: prompts go only where
//!   [`Encoder::encode_queries`](crate::Encoder::encode_queries) and
//!   [`Encoder::encode_passages`](crate::Encoder::encode_passages) put them.
//!
//! A folder without these files (the MiniLM asset ships only `config.json`,
//! `model.safetensors` and `tokenizer.json`) gets all-MiniLM-L6-v2's settings: mean pooling,
//! L2 normalisation, 256 tokens, no prompts.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::{Result, RetrievalError};

/// How token states become one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// The mean over every real token (padded batches are pooled over their unpadded rows
    /// only).
    Mean,
    /// The `[CLS]` token's state (the first token).
    Cls,
}

impl fmt::Display for Pooling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Pooling::Mean => "mean-pool",
            Pooling::Cls => "cls-pool",
        })
    }
}

/// The sentence-transformers settings of an encoder folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pipeline {
    /// Token states → one vector.
    pub pooling: Pooling,
    /// L2-normalise the pooled vector.
    pub normalise: bool,
    /// Longest input in tokens, `[CLS]` and `[SEP]` included; longer texts are truncated.
    pub max_tokens: usize,
    /// Put before every query text (e5: `"query: "`).
    pub query_prefix: String,
    /// Put before every passage text (e5: `"passage: "`).
    pub passage_prefix: String,
}

impl Default for Pipeline {
    /// all-MiniLM-L6-v2's: mean pooling, L2, 256 tokens, no prompts.
    fn default() -> Pipeline {
        Pipeline {
            pooling: Pooling::Mean,
            normalise: true,
            max_tokens: 256,
            query_prefix: String::new(),
            passage_prefix: String::new(),
        }
    }
}

impl fmt::Display for Pipeline {
    /// `mean-pool/l2/256`, then `/query="…"` and `/passage="…"` when those prompts are set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let norm = if self.normalise { "l2" } else { "raw" };
        write!(f, "{}/{norm}/{}", self.pooling, self.max_tokens)?;
        if !self.query_prefix.is_empty() {
            write!(f, "/query={:?}", self.query_prefix)?;
        }
        if !self.passage_prefix.is_empty() {
            write!(f, "/passage={:?}", self.passage_prefix)?;
        }
        Ok(())
    }
}

const MODULE_PREFIX: &str = "sentence_transformers.models.";
const QUERY_PROMPTS: &[&str] = &["query", "search_query"];
const PASSAGE_PROMPTS: &[&str] = &["passage", "document", "search_document", "corpus"];

impl Pipeline {
    /// The settings of the model folder `dir` (see the module docs), before any override.
    pub fn read(dir: &Path) -> Result<Pipeline> {
        let mut pipeline = Pipeline::default();
        let modules_path = dir.join("modules.json");
        let (pooling_dir, has_modules) = match read_json(&modules_path)? {
            Some(modules) => {
                let (pooling_dir, normalise) = read_modules(&modules_path, &modules)?;
                pipeline.normalise = normalise;
                let pooling_dir = pooling_dir.ok_or_else(|| {
                    config_err(&modules_path, "there is no Pooling module".into())
                })?;
                (dir.join(pooling_dir), true)
            }
            None => (dir.join("1_Pooling"), false),
        };
        let path = pooling_dir.join("config.json");
        match read_json(&path)? {
            Some(config) => pipeline.pooling = read_pooling(&path, &config)?,
            None if has_modules => {
                return Err(config_err(
                    &path,
                    "missing: modules.json names this Pooling module".into(),
                ));
            }
            None => {}
        }
        let path = dir.join("sentence_bert_config.json");
        if let Some(config) = read_json(&path)? {
            match config.get("max_seq_length") {
                None | Some(Value::Null) => {}
                Some(v) => {
                    pipeline.max_tokens = v
                        .as_u64()
                        .filter(|&n| n >= 2)
                        .and_then(|n| usize::try_from(n).ok())
                        .ok_or_else(|| {
                            config_err(&path, format!("max_seq_length {v} is not a length ≥ 2"))
                        })?;
                }
            }
        }
        let path = dir.join("config_sentence_transformers.json");
        if let Some(config) = read_json(&path)?
            && let Some(prompts) = config.get("prompts").filter(|p| !p.is_null())
        {
            let prompts = prompts.as_object().ok_or_else(|| {
                config_err(&path, "prompts is not an object of name → prompt".into())
            })?;
            pipeline.query_prefix = prompt(&path, prompts, QUERY_PROMPTS)?;
            pipeline.passage_prefix = prompt(&path, prompts, PASSAGE_PROMPTS)?;
        }
        Ok(pipeline)
    }

    /// Pools `hidden` (`tokens × dim` floats of one sequence's real tokens) into one vector,
    /// normalised when [`normalise`](Self::normalise) is set. An empty `hidden` gives zeros.
    pub fn pool(&self, hidden: &[f32], dim: usize) -> Vec<f32> {
        let mut v = match self.pooling {
            Pooling::Mean => mean(hidden, dim),
            Pooling::Cls => hidden
                .get(..dim)
                .map_or_else(|| vec![0.0; dim], <[f32]>::to_vec),
        };
        if self.normalise {
            l2_normalise(&mut v);
        }
        v
    }
}

/// Mean over the token rows of `hidden` (the caller passes real tokens only, no padding).
fn mean(hidden: &[f32], dim: usize) -> Vec<f32> {
    let rows = hidden.len() / dim.max(1);
    let mut sum = vec![0f32; dim];
    for row in hidden.chunks_exact(dim.max(1)) {
        for (s, &x) in sum.iter_mut().zip(row) {
            *s += x;
        }
    }
    let n = rows.max(1) as f32;
    sum.iter_mut().for_each(|s| *s /= n);
    sum
}

/// Divides `v` by its L2 norm, floored at 1e-12 like `torch.nn.functional.normalize`.
fn l2_normalise(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|s| *s /= norm);
}

fn config_err(path: &Path, reason: String) -> RetrievalError {
    RetrievalError::EncoderConfig {
        path: path.to_owned(),
        reason,
    }
}

/// The JSON in `path`, `None` when there is no such file.
fn read_json(path: &Path) -> Result<Option<Value>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(RetrievalError::io(path, e)),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| config_err(path, format!("not valid JSON: {e}")))
}

/// The Pooling module's folder (relative to the model folder) and whether a Normalize
/// module follows, from `modules.json`.
fn read_modules(path: &Path, modules: &Value) -> Result<(Option<PathBuf>, bool)> {
    let list = modules
        .as_array()
        .ok_or_else(|| config_err(path, "not a list of modules".into()))?;
    let (mut pooling, mut normalise) = (None, false);
    for module in list {
        let kind = module
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| config_err(path, format!("module {module} has no \"type\"")))?;
        match kind.strip_prefix(MODULE_PREFIX).unwrap_or(kind) {
            "Transformer" => {}
            "Pooling" => {
                if pooling.is_some() {
                    return Err(config_err(path, "more than one Pooling module".into()));
                }
                let rel = module
                    .get("path")
                    .and_then(Value::as_str)
                    .unwrap_or("1_Pooling");
                pooling = Some(PathBuf::from(rel));
            }
            "Normalize" => normalise = true,
            _ => {
                return Err(config_err(
                    path,
                    format!(
                        "module type {kind:?} is not supported (only Transformer, Pooling and \
                         Normalize are)"
                    ),
                ));
            }
        }
    }
    Ok((pooling, normalise))
}

/// The pooling of a Pooling module's `config.json`.
fn read_pooling(path: &Path, config: &Value) -> Result<Pooling> {
    let config: &Map<String, Value> = config
        .as_object()
        .ok_or_else(|| config_err(path, "not a JSON object".into()))?;
    if config.get("include_prompt") == Some(&Value::Bool(false)) {
        return Err(config_err(
            path,
            "include_prompt false (pooling without the prompt's tokens) is not supported".into(),
        ));
    }
    // Newer sentence-transformers also accept `"pooling_mode": "cls"` in the constructor;
    // read it if a file carries it.
    let modes: Vec<&str> = match config.get("pooling_mode").and_then(Value::as_str) {
        Some(mode) => vec![mode],
        None => config
            .iter()
            .filter(|(_, v)| **v == Value::Bool(true))
            .filter_map(|(k, _)| k.strip_prefix("pooling_mode_"))
            .collect(),
    };
    match modes[..] {
        ["mean_tokens" | "mean"] => Ok(Pooling::Mean),
        ["cls_token" | "cls"] => Ok(Pooling::Cls),
        [] => Err(config_err(path, "no pooling mode is set".into())),
        [mode] => Err(config_err(
            path,
            format!("pooling mode {mode:?} is not supported (only cls_token and mean_tokens are)"),
        )),
        _ => Err(config_err(
            path,
            format!(
                "pooling modes {} together are not supported (one of cls_token, mean_tokens)",
                modes.join(", ")
            ),
        )),
    }
}

/// The first of `names` in `prompts`, `""` when none is there.
fn prompt(path: &Path, prompts: &Map<String, Value>, names: &[&str]) -> Result<String> {
    for name in names {
        if let Some(v) = prompts.get(*name) {
            return v
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| config_err(path, format!("prompt {name:?} is not a string")));
        }
    }
    Ok(String::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        dir
    }

    const MODULES_NORM: &str = r#"[
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}
    ]"#;
    const MODULES_RAW: &str = r#"[
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "pool", "type": "sentence_transformers.models.Pooling"}
    ]"#;
    const CLS: &str = r#"{"word_embedding_dimension": 384, "pooling_mode_cls_token": true,
        "pooling_mode_mean_tokens": false, "pooling_mode_max_tokens": false,
        "pooling_mode_mean_sqrt_len_tokens": false, "include_prompt": true}"#;
    const MEAN: &str = r#"{"pooling_mode_cls_token": false, "pooling_mode_mean_tokens": true}"#;

    fn err(files: &[(&str, &str)]) -> String {
        let dir = folder(files);
        Pipeline::read(dir.path()).unwrap_err().to_string()
    }

    #[test]
    fn no_sentence_transformers_files_is_minilm() {
        let dir = folder(&[("config.json", "{}")]);
        let p = Pipeline::read(dir.path()).unwrap();
        assert_eq!(p, Pipeline::default());
        assert_eq!(p.to_string(), "mean-pool/l2/256");
    }

    #[test]
    fn e5_style_folder() {
        let dir = folder(&[
            ("modules.json", MODULES_NORM),
            ("1_Pooling/config.json", MEAN),
            (
                "sentence_bert_config.json",
                r#"{"max_seq_length": 512, "do_lower_case": false}"#,
            ),
            (
                "config_sentence_transformers.json",
                r#"{"prompts": {"query": "query: ", "passage": "passage: "},
                    "default_prompt_name": null}"#,
            ),
        ]);
        let p = Pipeline::read(dir.path()).unwrap();
        assert_eq!(
            p.to_string(),
            r#"mean-pool/l2/512/query="query: "/passage="passage: ""#
        );
    }

    #[test]
    fn cls_without_normalize_from_the_module_path() {
        let dir = folder(&[
            ("modules.json", MODULES_RAW),
            ("pool/config.json", CLS),
            (
                "config_sentence_transformers.json",
                r#"{"prompts": {"search_query": "Represent this: ", "document": ""}}"#,
            ),
        ]);
        let p = Pipeline::read(dir.path()).unwrap();
        assert_eq!(p.pooling, Pooling::Cls);
        assert!(!p.normalise);
        assert_eq!(
            (p.query_prefix.as_str(), p.passage_prefix.as_str()),
            ("Represent this: ", "")
        );
        assert_eq!(
            p.to_string(),
            r#"cls-pool/raw/256/query="Represent this: ""#
        );
    }

    #[test]
    fn pooling_without_modules_json() {
        let dir = folder(&[("1_Pooling/config.json", CLS)]);
        let p = Pipeline::read(dir.path()).unwrap();
        assert_eq!((p.pooling, p.normalise), (Pooling::Cls, true));
    }

    #[test]
    fn unsupported_settings_are_errors() {
        let pooling = |cfg: &'static str| {
            err(&[
                ("modules.json", MODULES_NORM),
                ("1_Pooling/config.json", cfg),
            ])
        };
        let msg =
            pooling(r#"{"pooling_mode_max_tokens": true, "pooling_mode_mean_tokens": false}"#);
        assert!(
            msg.contains(r#"pooling mode "max_tokens" is not supported"#),
            "{msg}"
        );
        assert!(msg.contains("1_Pooling/config.json"), "{msg}");
        let msg = pooling(r#"{"pooling_mode_cls_token": true, "pooling_mode_mean_tokens": true}"#);
        assert!(msg.contains("together are not supported"), "{msg}");
        let msg = pooling(r#"{"pooling_mode_cls_token": false}"#);
        assert!(msg.contains("no pooling mode"), "{msg}");
        let msg = pooling(r#"{"pooling_mode_mean_tokens": true, "include_prompt": false}"#);
        assert!(msg.contains("include_prompt"), "{msg}");
        let msg = pooling("{not json");
        assert!(msg.contains("not valid JSON"), "{msg}");

        let dense = r#"[{"type": "sentence_transformers.models.Pooling", "path": "1_Pooling"},
                        {"type": "sentence_transformers.models.Dense", "path": "2_Dense"}]"#;
        let msg = err(&[("modules.json", dense), ("1_Pooling/config.json", MEAN)]);
        assert!(
            msg.contains("sentence_transformers.models.Dense") && msg.contains("modules.json"),
            "{msg}"
        );
        let msg = err(&[(
            "modules.json",
            r#"[{"type": "sentence_transformers.models.Transformer"}]"#,
        )]);
        assert!(msg.contains("no Pooling module"), "{msg}");
        let msg = err(&[("modules.json", MODULES_NORM)]);
        assert!(msg.contains("1_Pooling/config.json"), "{msg}");
        let msg = err(&[("sentence_bert_config.json", r#"{"max_seq_length": 1}"#)]);
        assert!(msg.contains("max_seq_length 1"), "{msg}");
        let msg = err(&[(
            "config_sentence_transformers.json",
            r#"{"prompts": {"query": 3}}"#,
        )]);
        assert!(msg.contains(r#"prompt "query" is not a string"#), "{msg}");
    }

    #[test]
    fn pooling_and_normalisation() {
        let hidden = [1.0, 0.0, 5.0, 8.0];
        let mut p = Pipeline::default();
        let v = p.pool(&hidden, 2);
        assert!(
            (v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6,
            "{v:?}"
        );
        assert_eq!(p.pool(&[0.0, 0.0], 2), vec![0.0, 0.0]);
        p.normalise = false;
        assert_eq!(p.pool(&hidden, 2), vec![3.0, 4.0]);
        p.pooling = Pooling::Cls;
        assert_eq!(p.pool(&hidden, 2), vec![1.0, 0.0]);
        assert_eq!(p.pool(&[], 2), vec![0.0, 0.0]);
        p.normalise = true;
        assert_eq!(p.pool(&[0.0, 2.0, 9.0, 9.0], 2), vec![0.0, 1.0]);
    }
}
