//! The kNN-LM datastore: for every position of a text corpus, the LM's final hidden state there
//! (the key) and the token that follows (the value), in corpus order, so that the entry after
//! position `j` is the text that followed `j`'s context (speculation relies on it).
//!
//! On disk a datastore is one folder, written atomically ([`build_dir_atomically`]):
//! - `datastore.json`: the [`DatastoreManifest`] (format version, model, corpus, sizes,
//!   held-out rule, padding, checksums);
//! - `keys/`: the keys as a flat L2 index (memory-mapped `vectors.f32`, or `vectors.f16` for
//!   a compact datastore, see `ralmspec_retrieval::index`);
//! - `values.u32`: one little-endian token id per entry;
//! - `hnsw/` (optional): an HNSW graph over the same keys, for approximate search.
//!
//! An interrupted build leaves the previous datastore (or none) in place, never a half-written
//! one; building again starts over. The keys are streamed to disk chunk by chunk
//! ([`FlatWriter`]): only the real entries' keys are held in memory, so a datastore padded to
//! tens of millions of entries builds in bounded memory.

use std::fs;
use std::path::{Path, PathBuf};

use ralmspec_lm::{Lm, Outputs, Step};
use ralmspec_retrieval::index::{Expect, Verify, build_dir_atomically, sha256};
use ralmspec_retrieval::padding::splitmix64;
use ralmspec_retrieval::{
    Corpus, FlatIndex, FlatWriter, HnswIndex, HnswParams, Metric, Precision, RetrievalError,
    Retriever, read_json,
};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};

/// The on-disk format this code writes and reads.
pub const DATASTORE_FORMAT: u32 = 1;
/// By default every 50th passage (ids 49, 99, …) is held out of the datastore, for perplexity.
pub const DEFAULT_HELD_OUT_EVERY: u32 = 50;
/// Passages longer than this (in tokens) are cut.
pub const MAX_PASSAGE_TOKENS: usize = 512;
const MANIFEST: &str = "datastore.json";
const KEYS: &str = "keys";
const HNSW: &str = "hnsw";
const VALUES: &str = "values.u32";
/// Passages fed to the LM in one batched forward.
const BATCH_PASSAGES: usize = 8;
/// The relative length of the noise on a padding key (see [`DatastoreManifest::padding`]).
const PADDING_NOISE: f32 = 2.0;
/// Keys handed to the writer at a time (4 MB of f32 keys at SmolLM2's 576 values).
const WRITE_ROWS: usize = 2048;

/// What a datastore folder says about itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatastoreManifest {
    /// [`DATASTORE_FORMAT`].
    pub format_version: u32,
    /// The model the keys come from (its GGUF file name).
    pub model: String,
    /// Width of a key (the model's hidden size).
    pub dim: usize,
    /// `Corpus::hash` of the corpus the text came from.
    pub corpus_hash: String,
    /// Passages whose text is in the datastore.
    pub passages: usize,
    /// Entries computed from real text.
    pub real_entries: usize,
    /// All entries (real, then padding).
    pub entries: usize,
    /// Passages with `id % held_out_every == held_out_every − 1` are left out (0: none).
    pub held_out_every: u32,
    /// The `--max-tokens` cap the build was given (null: the whole corpus).
    pub max_tokens: Option<usize>,
    /// How entries beyond the real ones were made (null: not padded).
    pub padding: Option<String>,
    /// sha256 (hex) of `values.u32`.
    pub values_sha256: String,
    /// Whether `hnsw/` holds an HNSW graph over the keys.
    pub hnsw: bool,
}

/// How to build a datastore.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    /// Stop after this many real entries (None: the whole corpus).
    pub max_tokens: Option<usize>,
    /// Hold out every n-th passage (0: none), see [`DatastoreManifest::held_out_every`].
    pub held_out_every: u32,
    /// Grow the datastore to this many entries with synthetic ones (for scale experiments).
    pub pad_to: Option<usize>,
    /// Also build an HNSW graph over the keys.
    pub hnsw: Option<HnswParams>,
    /// An unpadded datastore of the same model, corpus and text whose entries can be copied
    /// instead of running the LM again (for `pad_to`); ignored unless it matches and holds
    /// f32 keys.
    pub reuse: Option<PathBuf>,
    /// How the keys are stored: f32, or f16 (half the bytes to scan; each key rounded to
    /// nearest, so f16 search ranks by the rounded keys). No HNSW graph over f16 keys.
    pub precision: Precision,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            max_tokens: None,
            held_out_every: DEFAULT_HELD_OUT_EVERY,
            pad_to: None,
            hnsw: None,
            reuse: None,
            precision: Precision::F32,
        }
    }
}

/// Where a build is, for progress reports.
#[derive(Clone, Copy, Debug)]
pub enum BuildProgress {
    /// `done` of `total` real entries computed by the LM.
    Encoding { done: usize, total: usize },
    /// `done` of `total` keys (real, then padding) written to disk.
    Writing { done: usize, total: usize },
    /// Building the HNSW graph over `entries` keys.
    Graph { entries: usize },
}

/// A datastore opened for search.
pub struct Datastore {
    dir: PathBuf,
    manifest: DatastoreManifest,
    keys: FlatIndex,
    hnsw: Option<HnswIndex>,
    values: Vec<u32>,
}

/// The passages a datastore reads, in order, and their tokens (cut to the cap).
fn texts(
    lm: &Lm,
    corpus: &Corpus,
    held_out_every: u32,
    max_tokens: Option<usize>,
) -> Vec<Vec<u32>> {
    let mut out = Vec::new();
    let mut entries = 0usize;
    for p in corpus.iter() {
        if is_held_out(p.doc, held_out_every) {
            continue;
        }
        if max_tokens.is_some_and(|m| entries >= m) {
            break;
        }
        let mut tokens = lm.tokenizer.encode(&p.prompt_text());
        tokens.truncate(MAX_PASSAGE_TOKENS);
        if let Some(m) = max_tokens {
            tokens.truncate((m - entries) + 1);
        }
        if tokens.len() >= 2 {
            entries += tokens.len() - 1;
            out.push(tokens);
        }
    }
    out
}

/// The datastore `options.reuse` names, when it holds exactly the real entries this build
/// would compute.
fn reusable(
    options: &BuildOptions,
    model: &str,
    corpus: &Corpus,
    total: usize,
) -> Option<Datastore> {
    let store = Datastore::open(options.reuse.as_deref()?, model).ok()?;
    let m = &store.manifest;
    (m.padding.is_none()
        && store.keys.precision() == Precision::F32
        && m.corpus_hash == corpus.hash()
        && m.real_entries == total
        && m.held_out_every == options.held_out_every
        && m.max_tokens == options.max_tokens)
        .then_some(store)
}

/// Runs the LM over `passages` (in batches) and returns the keys and values of every position
/// but each passage's last.
fn encode(
    lm: &Lm,
    passages: &[Vec<u32>],
    progress: &mut dyn FnMut(BuildProgress),
) -> Result<(Vec<f32>, Vec<u32>)> {
    let dim = lm.model.config().dim;
    let total: usize = passages.iter().map(|t| t.len() - 1).sum();
    let mut keys: Vec<f32> = Vec::with_capacity(total * dim);
    let mut values: Vec<u32> = Vec::with_capacity(total);
    progress(BuildProgress::Encoding { done: 0, total });
    for group in passages.chunks(BATCH_PASSAGES) {
        let mut caches: Vec<_> = group.iter().map(|t| lm.model.new_cache(t.len())).collect();
        let mut steps: Vec<Step<'_>> = group
            .iter()
            .zip(caches.iter_mut())
            .map(|(t, cache)| Step {
                tokens: &t[..t.len() - 1],
                cache,
                outputs: Outputs::All,
            })
            .collect();
        let outs = lm.model.forward_batch(&mut steps)?;
        for (t, out) in group.iter().zip(&outs) {
            for row in 0..out.len() {
                keys.extend_from_slice(out.hidden(row));
            }
            values.extend_from_slice(&t[1..]);
        }
        progress(BuildProgress::Encoding {
            done: values.len(),
            total,
        });
    }
    Ok((keys, values))
}

/// True when passage `id` is held out of a datastore built with `every`.
pub fn is_held_out(id: u32, every: u32) -> bool {
    every > 0 && id % every == every - 1
}

impl Datastore {
    /// Runs `lm` over `corpus` (in batched prefill chunks) and writes the datastore to `dir`,
    /// replacing any there. `model` names the model in the manifest.
    pub fn build(
        lm: &Lm,
        model: &str,
        corpus: &Corpus,
        dir: &Path,
        options: &BuildOptions,
        progress: &mut dyn FnMut(BuildProgress),
    ) -> Result<DatastoreManifest> {
        let dim = lm.model.config().dim;
        let passages = texts(lm, corpus, options.held_out_every, options.max_tokens);
        let total: usize = passages.iter().map(|t| t.len() - 1).sum();
        if total == 0 {
            return Err(EngineError::BadRequest(
                "the corpus gives no text for a datastore".into(),
            ));
        }
        if let Some(pad) = options.pad_to
            && pad < total
        {
            return Err(EngineError::BadRequest(format!(
                "--pad-to {pad} is below the {total} real entries"
            )));
        }
        if options.hnsw.is_some() && options.precision != Precision::F32 {
            return Err(EngineError::BadRequest(format!(
                "an HNSW graph needs f32 keys, not {} (drop --hnsw or use --precision f32)",
                options.precision
            )));
        }
        let entries = options.pad_to.unwrap_or(total);
        if u32::try_from(entries).is_err() {
            return Err(EngineError::BadRequest(format!(
                "{entries} entries: a datastore holds at most {} (entry ids are u32)",
                u32::MAX
            )));
        }
        let (keys, mut values) = match reusable(options, model, corpus, total) {
            Some(store) => (store.keys.vectors().to_vec(), store.values),
            None => encode(lm, &passages, progress)?,
        };
        // Entry `e` of the padding copies the value of real entry `(e − total) % total`.
        for e in 0..entries - total {
            values.push(values[e % total]);
        }
        let padding = (entries > total).then(|| padding_note(total, entries));
        let value_bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let manifest = DatastoreManifest {
            format_version: DATASTORE_FORMAT,
            model: model.to_owned(),
            dim,
            corpus_hash: corpus.hash(),
            passages: passages.len(),
            real_entries: total,
            entries,
            held_out_every: options.held_out_every,
            max_tokens: options.max_tokens,
            padding,
            values_sha256: sha256(&value_bytes),
            hnsw: options.hnsw.is_some(),
        };
        build_dir_atomically(dir, |tmp| {
            let keys_dir = tmp.join(KEYS);
            write_keys(&keys_dir, &keys, options.precision, &manifest, progress)?;
            if let Some(params) = options.hnsw {
                progress(BuildProgress::Graph { entries });
                let expect = Expect {
                    corpus_hash: &manifest.corpus_hash,
                    encoder: model,
                };
                let (index, _) = FlatIndex::open(&keys_dir, &expect, Verify::Sizes)?;
                HnswIndex::build(index, params)?.save(
                    &tmp.join(HNSW),
                    &manifest.corpus_hash,
                    model,
                )?;
            }
            write(&tmp.join(VALUES), &value_bytes)?;
            let json = serde_json::to_vec_pretty(&manifest).expect("a manifest serialises");
            write(&tmp.join(MANIFEST), &json)
        })?;
        Ok(manifest)
    }

    /// Opens the datastore in `dir`, which must have been built from `model` (its GGUF file
    /// name). Sizes and the values' checksum are checked; the keys are memory-mapped.
    pub fn open(dir: &Path, model: &str) -> Result<Datastore> {
        let path = dir.join(MANIFEST);
        let bad = |path: &Path, reason: String| EngineError::BadDatastore {
            path: path.to_owned(),
            reason,
        };
        let manifest: DatastoreManifest =
            read_json(&path, &[DATASTORE_FORMAT], |m: &DatastoreManifest| {
                m.format_version
            })
            .map_err(|e| match e {
                RetrievalError::BadIndex { path, reason } if reason == "missing" => {
                    bad(&path, "missing (build it with `ralmspec knn build`)".into())
                }
                RetrievalError::BadIndex { path, reason } => bad(&path, reason),
                other => other.into(),
            })?;
        if manifest.model != model {
            return Err(bad(
                &path,
                format!(
                    "built from model {}, not {model} (rebuild it for this model)",
                    manifest.model
                ),
            ));
        }
        let expect = Expect {
            corpus_hash: &manifest.corpus_hash,
            encoder: model,
        };
        let (keys, km) = FlatIndex::open(&dir.join(KEYS), &expect, Verify::Sizes)?;
        if km.count != manifest.entries || km.dims != manifest.dim || km.metric != Metric::L2 {
            return Err(bad(
                &dir.join(KEYS),
                format!(
                    "{} keys of width {} by {:?}; the manifest says {} of width {} by L2",
                    km.count, km.dims, km.metric, manifest.entries, manifest.dim
                ),
            ));
        }
        let values_path = dir.join(VALUES);
        let bytes = fs::read(&values_path).map_err(|e| bad(&values_path, io_reason(&e)))?;
        if bytes.len() != manifest.entries * 4 {
            return Err(bad(
                &values_path,
                format!(
                    "{} bytes for {} entries (truncated?)",
                    bytes.len(),
                    manifest.entries
                ),
            ));
        }
        if sha256(&bytes) != manifest.values_sha256 {
            return Err(bad(&values_path, "checksum mismatch (corrupt)".into()));
        }
        let values = bytes
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let hnsw = if manifest.hnsw {
            Some(HnswIndex::open(&dir.join(HNSW), &expect, Verify::Sizes)?.0)
        } else {
            None
        };
        Ok(Datastore {
            dir: dir.to_owned(),
            manifest,
            keys,
            hnsw,
            values,
        })
    }

    /// The folder it was opened from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What it was built from.
    pub fn manifest(&self) -> &DatastoreManifest {
        &self.manifest
    }

    /// How the keys are stored.
    pub fn precision(&self) -> Precision {
        self.keys.precision()
    }

    /// The key of entry `e` as f32 (widened from f16 into `buf`); `None` past the last.
    pub fn key<'a>(&'a self, e: usize, buf: &'a mut Vec<f32>) -> Option<&'a [f32]> {
        self.keys.row_into(e, buf)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True when it holds no entry.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The token that followed each entry's context.
    pub fn values(&self) -> &[u32] {
        &self.values
    }

    /// The search over the keys: exact (flat L2) or approximate (HNSW, when built).
    pub fn search(&self, kind: KeySearch) -> Result<&dyn Retriever> {
        match kind {
            KeySearch::Exact => Ok(&self.keys),
            KeySearch::Approximate => match &self.hnsw {
                Some(h) => Ok(h),
                None => Err(EngineError::BadRequest(format!(
                    "the datastore in {} has no HNSW graph (build it with --hnsw)",
                    self.dir.display()
                ))),
            },
        }
    }

    /// Sets the HNSW beam width for later approximate searches.
    pub fn set_ef_search(&mut self, ef: usize) {
        if let Some(h) = &mut self.hnsw {
            h.set_ef_search(ef);
        }
    }
}

/// Which nearest-neighbour search kNN-LM uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeySearch {
    /// Exact: every key scanned (flat L2).
    Exact,
    /// Approximate: the HNSW graph.
    Approximate,
}

impl KeySearch {
    /// The CLI's name for it.
    pub fn name(self) -> &'static str {
        match self {
            KeySearch::Exact => "exact",
            KeySearch::Approximate => "hnsw",
        }
    }
}

/// Writes the keys folder of the datastore `manifest` describes: the real keys (`keys`, f32),
/// then the padding keys made chunk by chunk ([`padding_key`]), rounded to `precision` by the
/// writer; an L2 index whose manifest names the datastore's corpus and model.
fn write_keys(
    dir: &Path,
    keys: &[f32],
    precision: Precision,
    manifest: &DatastoreManifest,
    progress: &mut dyn FnMut(BuildProgress),
) -> std::result::Result<(), RetrievalError> {
    let (dim, real, entries) = (manifest.dim, manifest.real_entries, manifest.entries);
    let mut writer = FlatWriter::create(dir, dim, precision)?.with_metric(Metric::L2);
    let mut rows = vec![0f32; WRITE_ROWS * dim];
    let mut ids = Vec::with_capacity(WRITE_ROWS);
    for start in (0..entries).step_by(WRITE_ROWS) {
        let end = (start + WRITE_ROWS).min(entries);
        ids.clear();
        ids.extend(start as u32..end as u32);
        let chunk = &mut rows[..(end - start) * dim];
        chunk
            .par_chunks_mut(dim)
            .zip(start..end)
            .for_each(|(row, e)| {
                if e < real {
                    row.copy_from_slice(&keys[e * dim..(e + 1) * dim]);
                } else {
                    padding_key(keys, dim, e, row);
                }
            });
        writer.push(chunk, &ids)?;
        progress(BuildProgress::Writing {
            done: end,
            total: entries,
        });
    }
    writer.finish(&manifest.corpus_hash, &manifest.model, None)?;
    Ok(())
}

/// Padding entry `e` (≥ the `real` entries of `keys`): a displaced copy of real entry
/// `j = (e − real) % real`, its key plus seeded uniform noise of length [`PADDING_NOISE`] ×
/// ‖key‖ (its value is `j`'s). The displacement is several times the distance between real
/// neighbours (measured on the knowledge base: ‖key‖ ≈ 45, nearest neighbour ≈ 21, 256th ≈
/// 35), so padding costs search time like real entries while the neighbours that decide
/// tokens stay the real text's (so does the accuracy of speculation); copies keep corpus
/// order, and each is a pure function of the real entries and `e`.
fn padding_key(keys: &[f32], dim: usize, e: usize, out: &mut [f32]) {
    let real = keys.len() / dim;
    let j = (e - real) % real;
    let mut state = 0x5eed_4b4e_u64 ^ (e as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for n in out.iter_mut() {
        *n = (splitmix64(&mut state) >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
    }
    let key = &keys[j * dim..(j + 1) * dim];
    let len = key.iter().map(|x| x * x).sum::<f32>().sqrt();
    let noise_len = out.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    let scale = PADDING_NOISE * len / noise_len;
    for (o, k) in out.iter_mut().zip(key) {
        *o = k + *o * scale;
    }
}

/// The manifest's description of the padding.
fn padding_note(real: usize, entries: usize) -> String {
    format!(
        "{} synthetic entries after {real} real ones: displaced copies of the real entries in \
         corpus order (key + seeded uniform noise of length {PADDING_NOISE} × its norm, same \
         value), far enough not to outrank real neighbours",
        entries - real
    )
}

fn write(path: &Path, bytes: &[u8]) -> std::result::Result<(), RetrievalError> {
    fs::write(path, bytes).map_err(|e| RetrievalError::bad_index(path, e.to_string()))
}

fn io_reason(e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::NotFound {
        "missing (build it with `ralmspec knn build`)".into()
    } else {
        e.to_string()
    }
}
