//! Index sets: one folder holding a corpus's passages and any of its indexes, opened and built
//! here so that the command line only maps flags and draws progress bars.
//!
//! ```text
//! set.json     {format_version, source, format, corpus_hash, passages, padding, encoder, kinds}
//! passages/    the passages, memory-mapped (corpus::store)
//! flat/        exact dense index (index.rs)          one folder per [`Kind`] built
//! hnsw/        HNSW graph and its vectors (index.rs)
//! bm25/        BM25 on tantivy (bm25/)
//! ```
//!
//! A build writes the whole set into a hidden sibling folder and swaps it into place in one
//! step ([`crate::atomic`]): a failed or killed build leaves the old set working, a finished
//! one replaces it whole (kinds it did not build are gone), and leftovers of killed builds are
//! removed by the next one. [`IndexSet::add`] builds one more kind into an existing set the
//! same way, one folder at a time. Adding a retriever kind is one module and one [`Kind`] arm.
//! Encoding the passages is resumable ([`encoding`]).

pub mod encoding;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::bm25::{Bm25Index, BuildProgress};
use crate::corpus::{Corpus, Format};
use crate::dense_padding::{DEFAULT_NOISE, write_padded};
use crate::encoder::{ENCODER_NAME, Encoder, EncoderOptions};
use crate::error::{IoContext, Result, RetrievalError};
use crate::files::read_json;
use crate::flat::FlatIndex;
use crate::flat_writer::FlatWriter;
use crate::hnsw::{HnswIndex, HnswParams};
use crate::index::{Expect, Verify};
use crate::npy::NpyVectors;
use crate::padding::PaddingRecord;
use crate::padding::{DEFAULT_SEED, Padding};
use crate::retriever::Retriever;
use crate::vectors::Precision;

const SET: &str = "set.json";
const PASSAGES: &str = "passages";
const FORMAT_VERSION: u32 = 1;

/// A retriever kind: the three an index set holds in its folder, and the two that live in a
/// PostgreSQL database ([`crate::pg`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Exact dense: inner product with every passage vector.
    Flat,
    /// Approximate dense: HNSW over the same vectors, scored exactly like flat.
    Hnsw,
    /// Sparse: BM25 on tantivy.
    Bm25,
    /// Exact dense in PostgreSQL: `ORDER BY embedding <#> q` over every row (pgvector).
    Pgvector,
    /// Approximate dense in PostgreSQL: pgvector's HNSW index on the same table.
    PgvectorHnsw,
}

impl Kind {
    /// Every kind an index set folder can hold, in the order a set is searched by default.
    pub const LOCAL: [Kind; 3] = [Kind::Flat, Kind::Hnsw, Kind::Bm25];

    /// Every kind.
    pub const ALL: [Kind; 5] = [
        Kind::Flat,
        Kind::Hnsw,
        Kind::Bm25,
        Kind::Pgvector,
        Kind::PgvectorHnsw,
    ];

    /// The name flags and folders use.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Flat => "flat",
            Kind::Hnsw => "hnsw",
            Kind::Bm25 => "bm25",
            Kind::Pgvector => "pgvector",
            Kind::PgvectorHnsw => "pgvector-hnsw",
        }
    }

    /// True for kinds that search passage vectors (and so need an encoder for queries).
    pub fn is_dense(self) -> bool {
        !matches!(self, Kind::Bm25)
    }

    /// True for kinds that live in a database (`--database`) rather than in a set's folder.
    pub fn is_database(self) -> bool {
        matches!(self, Kind::Pgvector | Kind::PgvectorHnsw)
    }
}

impl FromStr for Kind {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Kind, String> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
                format!("unknown retriever {s:?} (known: {})", known.join(", "))
            })
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What `set.json` says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetManifest {
    /// The writer's format version.
    pub format_version: u32,
    /// Where the passages came from: `wiki-kb` or the corpus file's absolute path.
    pub source: String,
    /// The corpus file's format.
    pub format: Format,
    /// [`Corpus::hash`] of the real passages.
    pub corpus_hash: String,
    /// Number of real passages.
    pub passages: usize,
    /// Passages after padding and the padding seed, when padded.
    pub padding: Option<PadTo>,
    /// The encoder of the dense indexes, when there are any.
    pub encoder: Option<EncoderRecord>,
    /// The kinds the set holds.
    pub kinds: Vec<Kind>,
}

/// `--pad-to N`: the corpus grown to `total` passages with padding seeded by `seed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PadTo {
    /// Passages after padding.
    pub total: usize,
    /// The padding seed.
    pub seed: u64,
}

/// Which encoder made a set's passage vectors: queries must be encoded by the same one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncoderRecord {
    /// [`Encoder::name`]-style identity.
    pub name: String,
    /// The encoder's folder, when it is not the built-in MiniLM.
    pub dir: Option<PathBuf>,
    /// The prompt put before each query, as the encoder ran (folder's or overridden).
    #[serde(default)]
    pub query_prefix: String,
    /// The prompt put before each passage.
    #[serde(default)]
    pub passage_prefix: String,
}

/// Where a build's passages come from.
pub enum Source<'a> {
    /// A corpus file, streamed into the set's passage store.
    File {
        /// The file.
        path: &'a Path,
        /// Its format.
        format: Format,
    },
    /// A corpus already in memory (the built-in knowledge base), with the name `set.json`
    /// gives it.
    Corpus {
        /// The passages.
        corpus: &'a Corpus,
        /// `wiki-kb`, say.
        name: &'a str,
    },
}

/// Where a build's dense vectors come from (needed when a dense kind is built).
#[derive(Clone, Copy)]
pub enum Vectors<'a> {
    /// Encode every passage with this encoder.
    Encode(&'a Encoder),
    /// Precomputed passage vectors (row i = passage i) made by this encoder.
    Npy(&'a NpyVectors, &'a Encoder),
    /// The real passages' vectors, already in an index, and their encoder.
    Index(&'a FlatIndex, &'a EncoderRecord),
}

impl Vectors<'_> {
    /// Values per vector.
    fn dim(&self) -> usize {
        match self {
            Vectors::Encode(e) => e.dim(),
            Vectors::Npy(npy, _) => npy.dims(),
            Vectors::Index(flat, _) => flat.dim(),
        }
    }

    fn record(&self) -> EncoderRecord {
        match self {
            Vectors::Encode(e) | Vectors::Npy(_, e) => encoder_record(e),
            Vectors::Index(_, r) => (*r).clone(),
        }
    }
}

/// The record of `encoder`: its name, and its folder unless it is the built-in MiniLM.
pub fn encoder_record(encoder: &Encoder) -> EncoderRecord {
    EncoderRecord {
        name: encoder.name().to_string(),
        dir: (encoder.name() != ENCODER_NAME).then(|| encoder.dir().to_owned()),
        query_prefix: encoder.pipeline().query_prefix.clone(),
        passage_prefix: encoder.pipeline().passage_prefix.clone(),
    }
}

/// What to build.
pub struct Build<'a> {
    /// The passages.
    pub source: Source<'a>,
    /// The kinds to build (at least one).
    pub kinds: &'a [Kind],
    /// Grow the corpus to this many passages with padding ([`Padding`]).
    pub pad_to: Option<usize>,
    /// The dense vectors' source; required when `kinds` holds a dense kind.
    pub vectors: Option<Vectors<'a>>,
    /// Passages encoded per checkpoint ([`encoding::DEFAULT_CHECKPOINT_EVERY`]).
    pub checkpoint_every: usize,
    /// How the flat index stores its vectors (f16: half the memory, recall@10 ≥ 0.99).
    pub precision: Precision,
}

/// What a build reports as it goes, for progress bars.
pub trait Progress {
    /// A new stage: `what` is under way over `total` items (`None`: unknown).
    fn stage(&mut self, what: &str, total: Option<u64>);
    /// `done` items of the current stage are finished.
    fn advance(&mut self, done: u64);
}

/// Rows read from a vectors source at a time (48 MB of f32 at 768 values).
const READ_ROWS: usize = 16_384;

/// How a build writes its dense indexes.
#[derive(Clone, Copy)]
struct How {
    every: usize,
    precision: Precision,
}

/// Reports nothing.
pub struct Quiet;

impl Progress for Quiet {
    fn stage(&mut self, _: &str, _: Option<u64>) {}
    fn advance(&mut self, _: u64) {}
}

/// An index set opened from its folder.
#[derive(Clone, Debug)]
pub struct IndexSet {
    dir: PathBuf,
    /// Where the set lives once built (`dir` is a temporary folder while building).
    home: PathBuf,
    /// Encoding checkpoints to remove once the set is in place.
    checkpoints: Vec<PathBuf>,
    manifest: SetManifest,
    corpus: Arc<Corpus>,
    padding: Option<Padding>,
}

impl IndexSet {
    /// Opens the set in `dir`: its manifest, its passages (memory-mapped) and its padding.
    pub fn open(dir: &Path) -> Result<IndexSet> {
        let path = dir.join(SET);
        if !path.exists() {
            let why = if dir.join("source.json").exists() {
                "was built by an older ralmspec; rebuild it with `ralmspec index build`"
            } else {
                "is not an index set (no set.json); build one with `ralmspec index build`"
            };
            return Err(RetrievalError::bad_index(dir, why));
        }
        let manifest: SetManifest =
            read_json(&path, &[FORMAT_VERSION], |m: &SetManifest| m.format_version)?;
        let corpus = Corpus::open(&dir.join(PASSAGES))?;
        if corpus.hash() != manifest.corpus_hash || corpus.len() != manifest.passages {
            return Err(RetrievalError::bad_index(
                &dir.join(PASSAGES),
                "the passages do not match set.json",
            ));
        }
        let padding = manifest
            .padding
            .map(|p| Padding::new(&corpus, p.total, p.seed))
            .transpose()?;
        Ok(IndexSet {
            dir: dir.to_owned(),
            home: dir.to_owned(),
            checkpoints: Vec::new(),
            manifest,
            corpus: Arc::new(corpus),
            padding,
        })
    }

    /// Builds the set `build` describes at `dir`, replacing any set there only once complete.
    pub fn build(dir: &Path, build: &Build<'_>, progress: &mut dyn Progress) -> Result<IndexSet> {
        if build.kinds.is_empty() {
            return Err(RetrievalError::BadIndexData {
                reason: "no retriever kind to build".into(),
            });
        }
        let mut checkpoints = Vec::new();
        crate::atomic::build_dir(dir, |tmp| {
            let (corpus, source, format) = match &build.source {
                Source::File { path, format } => {
                    progress.stage("reading passages", None);
                    let corpus = Corpus::import(path, *format, &tmp.join(PASSAGES), &mut |n| {
                        progress.advance(n as u64)
                    })?;
                    let abs = std::fs::canonicalize(path).at(path)?;
                    (corpus, abs.to_string_lossy().into_owned(), *format)
                }
                Source::Corpus { corpus, name } => {
                    let corpus = corpus.save(&tmp.join(PASSAGES))?;
                    (corpus, name.to_string(), Format::WikiKb)
                }
            };
            if corpus.is_empty() {
                return Err(RetrievalError::BadCorpus {
                    path: PathBuf::from(&source),
                    reason: "holds no passages".into(),
                });
            }
            let padding = build
                .pad_to
                .map(|n| Padding::new(&corpus, n, DEFAULT_SEED))
                .transpose()?;
            let mut set = IndexSet {
                dir: tmp.to_owned(),
                home: dir.to_owned(),
                checkpoints: Vec::new(),
                manifest: SetManifest {
                    format_version: FORMAT_VERSION,
                    source,
                    format,
                    corpus_hash: corpus.hash(),
                    passages: corpus.len(),
                    padding: padding.map(|p| PadTo {
                        total: p.total(),
                        seed: p.seed(),
                    }),
                    encoder: None,
                    kinds: Vec::new(),
                },
                corpus: Arc::new(corpus),
                padding,
            };
            for &kind in build.kinds {
                let how = How {
                    every: build.checkpoint_every,
                    precision: build.precision,
                };
                set.build_kind(kind, build.vectors, how, progress)?;
            }
            checkpoints = std::mem::take(&mut set.checkpoints);
            set.write_manifest()
        })?;
        checkpoints.iter().for_each(|c| encoding::remove(c));
        IndexSet::open(dir)
    }

    /// Builds `kind` into this set (each folder swapped in whole, then `set.json`); `vectors`
    /// is needed for a dense kind when the set has no flat index yet, and a flat index stores
    /// them in `precision`. A set whose dense indexes came from another encoder refuses new
    /// ones from `vectors`.
    pub fn add(
        &mut self,
        kind: Kind,
        vectors: Option<Vectors<'_>>,
        precision: Precision,
        progress: &mut dyn Progress,
    ) -> Result<()> {
        crate::atomic::clean_stale(&self.dir.join(kind.name()))?;
        let how = How {
            every: encoding::DEFAULT_CHECKPOINT_EVERY,
            precision,
        };
        self.build_kind(kind, vectors, how, progress)?;
        self.write_manifest()?;
        std::mem::take(&mut self.checkpoints)
            .iter()
            .for_each(|c| encoding::remove(c));
        Ok(())
    }

    fn write_manifest(&self) -> Result<()> {
        let json = serde_json::to_vec_pretty(&self.manifest).expect("a manifest serialises");
        crate::atomic::write_file(&self.dir.join(SET), &json)
    }

    fn build_kind(
        &mut self,
        kind: Kind,
        vectors: Option<Vectors<'_>>,
        how: How,
        progress: &mut dyn Progress,
    ) -> Result<()> {
        let dir = self.dir.join(kind.name());
        match kind {
            Kind::Bm25 => {
                let total = self.len() as u64;
                progress.stage("BM25 indexing", Some(total));
                Bm25Index::build(&self.corpus, self.padding, &dir, &mut |p| match p {
                    BuildProgress::Indexed { done, .. } => progress.advance(done as u64),
                    BuildProgress::Merging { .. } => progress.stage("BM25 merging", None),
                    BuildProgress::Checksumming => progress.stage("BM25 checksumming", None),
                })?;
            }
            Kind::Flat => match self.padding {
                // Streamed from the source to the file: a real corpus's vectors may be far
                // larger than memory (21M × 768 f32 is 64 GB).
                None => self.write_real(vectors, how, &dir, progress)?,
                // Streamed too: a padded index may be far larger than memory (its real
                // vectors, which the padding copies, are held).
                Some(padding) => {
                    let real = self.real_vectors(vectors, how.every, progress)?;
                    let (hash, encoder) = self.expect()?;
                    progress.stage("padding the vectors", Some(padding.total() as u64));
                    let mut writer = FlatWriter::create(&dir, real.dim(), how.precision)?;
                    write_padded(&real, &padding, DEFAULT_NOISE, &mut writer, &mut |n, _| {
                        progress.advance(n as u64)
                    })?;
                    progress.stage("writing the index", None);
                    let record = PaddingRecord::new(&padding, DEFAULT_NOISE);
                    writer.finish(&hash, &encoder, Some(record))?;
                }
            },
            Kind::Pgvector | Kind::PgvectorHnsw => return Err(in_database(kind)),
            Kind::Hnsw => {
                let flat = match self.has(Kind::Flat) {
                    true => self.flat(Verify::Sizes)?.to_precision(Precision::F32),
                    false => {
                        let real = self.real_vectors(vectors, how.every, progress)?;
                        let real = real.to_precision(Precision::F32);
                        match &self.padding {
                            None => real,
                            Some(padding) => {
                                progress.stage("padding the vectors", None);
                                real.pad(padding, DEFAULT_NOISE)?
                            }
                        }
                    }
                };
                progress.stage("building the HNSW graph", None);
                let hnsw = HnswIndex::build(flat, HnswParams::default())?;
                hnsw.save(&dir, &self.manifest.corpus_hash, &self.encoder_name()?)?;
            }
        }
        if !self.manifest.kinds.contains(&kind) {
            self.manifest.kinds.push(kind);
        }
        Ok(())
    }

    fn encoder_name(&self) -> Result<String> {
        self.manifest
            .encoder
            .as_ref()
            .map(|e| e.name.clone())
            .ok_or_else(|| RetrievalError::BadIndexData {
                reason: "a dense index needs passage vectors".into(),
            })
    }

    /// The real passages' vectors from `vectors` (unpadded), in memory (or the given index),
    /// recording their encoder.
    fn real_vectors(
        &mut self,
        vectors: Option<Vectors<'_>>,
        every: usize,
        progress: &mut dyn Progress,
    ) -> Result<FlatIndex> {
        if let Some(Vectors::Index(flat, record)) = vectors {
            self.check_encoder(record)?;
            self.check_count(flat.len(), flat.padding().is_some())?;
            self.manifest.encoder = Some(record.clone());
            return Ok(flat.clone());
        }
        let mut all = Vec::new();
        let dim = self.real_rows(vectors, every, progress, &mut |_, rows| {
            all.extend_from_slice(rows);
            Ok(())
        })?;
        FlatIndex::new(dim, all, self.corpus.docs())
    }

    /// Writes the real passages' vectors from `vectors` into a flat index at `dir` in
    /// `how.precision`, chunk by chunk (nothing but a chunk in memory), recording their
    /// encoder.
    fn write_real(
        &mut self,
        vectors: Option<Vectors<'_>>,
        how: How,
        dir: &Path,
        progress: &mut dyn Progress,
    ) -> Result<()> {
        let Some(dim) = vectors.as_ref().map(Vectors::dim) else {
            return self
                .real_rows(None, how.every, progress, &mut |_, _| Ok(()))
                .map(drop);
        };
        let mut writer = FlatWriter::create(dir, dim, how.precision)?;
        let mut ids = Vec::new();
        self.real_rows(vectors, how.every, progress, &mut |first, rows| {
            ids.clear();
            ids.extend(first as u32..(first + rows.len() / dim) as u32);
            writer.push(rows, &ids)
        })?;
        progress.stage("writing the index", None);
        let (hash, encoder) = self.expect()?;
        writer.finish(&hash, &encoder, None)?;
        Ok(())
    }

    /// Checks that vectors of `record`'s encoder may go into this set.
    fn check_encoder(&self, record: &EncoderRecord) -> Result<()> {
        match &self.manifest.encoder {
            Some(have) if have.name != record.name => Err(RetrievalError::EncoderMismatch {
                index: have.name.clone(),
                query: record.name.clone(),
            }),
            _ => Ok(()),
        }
    }

    /// Checks that an index of `rows` vectors holds one per passage, unpadded.
    fn check_count(&self, rows: usize, padded: bool) -> Result<()> {
        if rows != self.corpus.len() || padded {
            return Err(RetrievalError::BadIndexData {
                reason: format!("{rows} vectors for {} passages", self.corpus.len()),
            });
        }
        Ok(())
    }

    /// Streams the real passages' vectors from `vectors` (unpadded, in corpus order) to
    /// `sink(first row, rows)` in chunks, checked, and records their encoder; returns their
    /// dimension.
    fn real_rows(
        &mut self,
        vectors: Option<Vectors<'_>>,
        every: usize,
        progress: &mut dyn Progress,
        sink: &mut dyn FnMut(usize, &[f32]) -> Result<()>,
    ) -> Result<usize> {
        let vectors = vectors.ok_or_else(|| RetrievalError::BadIndexData {
            reason: "a dense index needs passage vectors (an encoder or a vectors file)".into(),
        })?;
        let record = vectors.record();
        self.check_encoder(&record)?;
        let dim = match vectors {
            Vectors::Encode(encoder) => {
                let dir = encoding::checkpoint_dir(&self.home, &self.corpus, encoder, every);
                encoding::encode(encoder, &self.corpus, &dir, every, progress, sink)?;
                self.checkpoints.push(dir);
                encoder.dim()
            }
            Vectors::Npy(npy, encoder) => {
                npy.check_for(self.corpus.len(), encoder)?;
                progress.stage("checking the vectors", Some(npy.rows() as u64));
                for chunk in npy.chunks(READ_ROWS) {
                    npy.check_values(chunk.first_row, &chunk.values, encoder.normalises())?;
                    sink(chunk.first_row, &chunk.values)?;
                    progress.advance((chunk.first_row + chunk.values.len() / npy.dims()) as u64);
                }
                npy.dims()
            }
            Vectors::Index(flat, _) => {
                self.check_count(flat.len(), flat.padding().is_some())?;
                let (mut chunk, mut buf) = (Vec::new(), Vec::new());
                for first in (0..flat.len()).step_by(READ_ROWS) {
                    chunk.clear();
                    for r in first..(first + READ_ROWS).min(flat.len()) {
                        chunk.extend_from_slice(flat.row_into(r, &mut buf).expect("a row"));
                    }
                    sink(first, &chunk)?;
                }
                flat.dim()
            }
        };
        self.manifest.encoder = Some(record);
        Ok(dim)
    }

    /// The set's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What `set.json` says.
    pub fn manifest(&self) -> &SetManifest {
        &self.manifest
    }

    /// The real passages.
    pub fn corpus(&self) -> &Arc<Corpus> {
        &self.corpus
    }

    /// How the corpus was grown, when it was.
    pub fn padding(&self) -> Option<Padding> {
        self.padding
    }

    /// Number of passages, padding included.
    pub fn len(&self) -> usize {
        self.padding.map_or(self.corpus.len(), |p| p.total())
    }

    /// True when the set holds no passages (never, for a built set).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when the set holds an index of `kind`.
    pub fn has(&self, kind: Kind) -> bool {
        self.manifest.kinds.contains(&kind)
    }

    /// The kinds the set holds.
    pub fn kinds(&self) -> &[Kind] {
        &self.manifest.kinds
    }

    fn expect(&self) -> Result<(String, String)> {
        Ok((self.manifest.corpus_hash.clone(), self.encoder_name()?))
    }

    /// The set's flat index (its vectors memory-mapped).
    pub fn flat(&self, verify: Verify) -> Result<FlatIndex> {
        let (corpus_hash, encoder) = self.expect()?;
        let expect = Expect {
            corpus_hash: &corpus_hash,
            encoder: &encoder,
        };
        let (flat, _) = FlatIndex::open(&self.dir.join(Kind::Flat.name()), &expect, verify)?;
        Ok(flat)
    }

    /// The retriever of `kind`, which the set must hold; large files are memory-mapped and
    /// their sizes checked ([`Verify::Sizes`]).
    pub fn retriever(&self, kind: Kind) -> Result<Arc<dyn Retriever>> {
        if !self.has(kind) {
            return Err(RetrievalError::bad_index(
                &self.dir.join(kind.name()),
                format!(
                    "the set has no {kind} index (it has: {}); build it with `ralmspec index build --kind {kind}`",
                    self.kinds()
                        .iter()
                        .map(|k| k.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        let dir = self.dir.join(kind.name());
        Ok(match kind {
            Kind::Bm25 => Arc::new(Bm25Index::open(&dir, &self.manifest.corpus_hash)?),
            Kind::Flat => Arc::new(self.flat(Verify::Sizes)?),
            Kind::Hnsw => {
                let (corpus_hash, encoder) = self.expect()?;
                let expect = Expect {
                    corpus_hash: &corpus_hash,
                    encoder: &encoder,
                };
                Arc::new(HnswIndex::open(&dir, &expect, Verify::Sizes)?.0)
            }
            Kind::Pgvector | Kind::PgvectorHnsw => return Err(in_database(kind)),
        })
    }

    /// The encoder queries of this set's dense indexes need: `override_dir` when given (it
    /// must be the same encoder), else the recorded one (MiniLM from the asset store, or the
    /// recorded folder). `None` when the set has no dense index.
    pub fn encoder(&self, override_dir: Option<&Path>) -> Result<Option<Encoder>> {
        self.manifest
            .encoder
            .as_ref()
            .map(|record| record.open(override_dir))
            .transpose()
    }
}

/// The error for a database kind asked of a set's folder.
fn in_database(kind: Kind) -> RetrievalError {
    RetrievalError::BadIndexData {
        reason: format!(
            "{kind} lives in PostgreSQL, not in an index set folder: pass --database URL"
        ),
    }
}

impl EncoderRecord {
    /// The encoder this record names: `override_dir` when given (it must be the same
    /// encoder), else the recorded folder with the recorded prompts, else MiniLM from the
    /// asset store. Another encoder than the recorded one is [`RetrievalError::EncoderMismatch`].
    pub fn open(&self, override_dir: Option<&Path>) -> Result<Encoder> {
        let options = EncoderOptions {
            query_prefix: Some(self.query_prefix.clone()),
            passage_prefix: Some(self.passage_prefix.clone()),
            gpu: None,
        };
        let encoder = match (override_dir, &self.dir) {
            (Some(dir), _) => Encoder::open(dir)?,
            (None, Some(dir)) => Encoder::open_with(dir, &options)?,
            (None, None) => Encoder::minilm()?,
        };
        let name = encoder_record(&encoder).name;
        if name != self.name {
            return Err(RetrievalError::EncoderMismatch {
                index: self.name.clone(),
                query: name,
            });
        }
        Ok(encoder)
    }
}
