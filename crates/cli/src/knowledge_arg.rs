//! The `--retriever` flag: opens the knowledge base with the chosen retriever, building its
//! index under the asset store on first use (`$RALMSPEC_HOME/indexes/wiki-kb/<kind>[-pad<N>]`),
//! with a progress bar.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use ralmspec_assets::Store;
use ralmspec_engine::Knowledge;
use ralmspec_retrieval::bm25::{BuildProgress, PaddingRecord};
use ralmspec_retrieval::dense_padding::DEFAULT_NOISE;
use ralmspec_retrieval::hnsw::{HnswIndex, HnswParams};
use ralmspec_retrieval::index::{Expect, Verify};
use ralmspec_retrieval::padding::DEFAULT_SEED;
use ralmspec_retrieval::{Bm25Index, Corpus, ENCODER_NAME, Encoder, FlatIndex, Padding, Retriever};

/// Which retriever serves the knowledge base.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RetrieverKind {
    /// Exact dense: inner product with every MiniLM vector.
    Flat,
    /// Approximate dense: HNSW over the same vectors, scored exactly like flat.
    Hnsw,
    /// Sparse: BM25 on tantivy.
    Bm25,
}

impl RetrieverKind {
    pub fn name(self) -> &'static str {
        match self {
            RetrieverKind::Flat => "flat",
            RetrieverKind::Hnsw => "hnsw",
            RetrieverKind::Bm25 => "bm25",
        }
    }
}

/// Where the index of `kind`, padded to `pad_to` passages, lives.
pub fn index_dir(store: &Store, kind: RetrieverKind, pad_to: Option<usize>) -> PathBuf {
    let name = match pad_to {
        Some(n) => format!("{}-pad{n}", kind.name()),
        None => kind.name().to_string(),
    };
    store.root().join("indexes").join("wiki-kb").join(name)
}

/// The built-in knowledge base (10,033 Wikipedia lead sections) behind `kind`, padded to
/// `pad_to` passages for scale experiments when given.
pub fn open(kind: RetrieverKind, pad_to: Option<usize>) -> Result<Knowledge> {
    let store = Store::from_env()?;
    let corpus = Arc::new(Corpus::wiki_kb().context("loading the knowledge base")?);
    let padding = pad_to
        .map(|n| Padding::new(&corpus, n, DEFAULT_SEED))
        .transpose()?;
    if kind == RetrieverKind::Bm25 {
        let index = bm25_index(&index_dir(&store, kind, pad_to), &corpus, padding)?;
        return Ok(Knowledge::new(
            "bm25",
            Arc::new(index),
            None,
            corpus,
            padding,
        ));
    }
    // Dense: the real vectors, grown by padding vectors, then (for HNSW) the graph over them.
    let encoder = Arc::new(Encoder::minilm().context("loading the MiniLM encoder")?);
    let mut flat = flat_index(
        &index_dir(&store, RetrieverKind::Flat, None),
        &encoder,
        &corpus,
    )?;
    if let Some(padding) = &padding {
        let dir = index_dir(&store, RetrieverKind::Flat, pad_to);
        let hash = corpus.hash();
        let expect = Expect {
            corpus_hash: &hash,
            encoder: ENCODER_NAME,
        };
        flat = if dir.join("manifest.json").exists() {
            FlatIndex::open(&dir, &expect, Verify::Sizes)
                .with_context(|| format!("opening the padded flat index in {}", dir.display()))?
                .0
        } else {
            eprintln!(
                "Padding the flat index to {} vectors in {}…",
                padding.total(),
                dir.display()
            );
            let padded = flat.pad(padding, DEFAULT_NOISE)?;
            padded.save(&dir, &hash, ENCODER_NAME)?;
            padded
        };
    }
    match kind {
        RetrieverKind::Flat => Ok(Knowledge::new(
            "flat",
            Arc::new(flat),
            Some(encoder),
            corpus,
            padding,
        )),
        _ => {
            let dir = index_dir(&store, RetrieverKind::Hnsw, pad_to);
            let hnsw = hnsw_index(&dir, &corpus, &flat)?;
            Ok(Knowledge::new(
                "hnsw",
                Arc::new(hnsw),
                Some(encoder),
                corpus,
                padding,
            ))
        }
    }
}

/// The flat index of `corpus` in `dir`, built (and saved) on first use.
pub fn flat_index(dir: &Path, encoder: &Encoder, corpus: &Corpus) -> Result<FlatIndex> {
    if !dir.join("manifest.json").exists() {
        eprintln!(
            "Building the flat index of {} passages in {} (first use only; about 9 minutes per 10,000 passages on 2 cores)…",
            corpus.len(),
            dir.display()
        );
    }
    if dir.join("manifest.json").exists() {
        let hash = corpus.hash();
        let expect = Expect {
            corpus_hash: &hash,
            encoder: ENCODER_NAME,
        };
        let (flat, _) = FlatIndex::open(dir, &expect, Verify::Sizes)
            .with_context(|| format!("opening the flat index in {}", dir.display()))?;
        return Ok(flat);
    }
    let flat = encode_with_progress(encoder, corpus)?;
    flat.save(dir, &corpus.hash(), ENCODER_NAME)
        .with_context(|| format!("writing the flat index in {}", dir.display()))?;
    Ok(flat)
}

/// The flat index of `corpus`, encoded in chunks with a progress bar.
pub fn encode_with_progress(encoder: &Encoder, corpus: &Corpus) -> Result<FlatIndex> {
    let bar = ProgressBar::new(corpus.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("encoding {bar:40} {pos}/{len} passages {per_sec} {eta}")
            .expect("a valid template"),
    );
    let mut vectors = Vec::with_capacity(corpus.len() * encoder.dim());
    for chunk in corpus.passages().chunks(32) {
        let texts: Vec<String> = chunk.iter().map(|p| p.prompt_text()).collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        vectors.extend(encoder.encode_flat(&refs)?);
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(FlatIndex::new(encoder.dim(), vectors, corpus.ids())?)
}

/// The HNSW graph (default parameters) over `flat` in `dir`, built (and saved) on first use.
pub fn hnsw_index(dir: &Path, corpus: &Corpus, flat: &FlatIndex) -> Result<HnswIndex> {
    if !dir.join("manifest.json").exists() {
        eprintln!(
            "Building the HNSW graph over {} vectors in {} (first use only; about 15 s per 10,000 on 2 cores)…",
            flat.len(),
            dir.display()
        );
    }
    let hash = corpus.hash();
    let expect = Expect {
        corpus_hash: &hash,
        encoder: ENCODER_NAME,
    };
    HnswIndex::open_or_build(dir, &expect, flat, HnswParams::default())
        .with_context(|| format!("opening the HNSW index in {}", dir.display()))
}

/// `corpus` behind `kind`, with its indexes in the index set `dir` (`dir/<kind>`, as
/// `ralmspec index build --out DIR` writes them; HNSW also uses `dir/flat`): opened when they
/// are there (and then they must match), else built there.
pub fn open_in(kind: RetrieverKind, corpus: Arc<Corpus>, dir: &Path) -> Result<Knowledge> {
    match kind {
        RetrieverKind::Bm25 => {
            let index = bm25_index(&dir.join("bm25"), &corpus, None)?;
            Ok(Knowledge::new("bm25", Arc::new(index), None, corpus, None))
        }
        RetrieverKind::Flat | RetrieverKind::Hnsw => {
            let encoder = Arc::new(Encoder::minilm().context("loading the MiniLM encoder")?);
            let flat = flat_index(&dir.join("flat"), &encoder, &corpus)?;
            if kind == RetrieverKind::Flat {
                return Ok(Knowledge::new(
                    "flat",
                    Arc::new(flat),
                    Some(encoder),
                    corpus,
                    None,
                ));
            }
            let hnsw = hnsw_index(&dir.join("hnsw"), &corpus, &flat)?;
            Ok(Knowledge::new(
                "hnsw",
                Arc::new(hnsw),
                Some(encoder),
                corpus,
                None,
            ))
        }
    }
}

/// The BM25 index of `corpus` (grown by `padding`) in `dir`, built with a progress bar on
/// first use.
pub fn bm25_index(dir: &Path, corpus: &Corpus, padding: Option<Padding>) -> Result<Bm25Index> {
    if dir.join("manifest.json").exists() {
        let index = Bm25Index::open(dir, &corpus.hash())
            .with_context(|| format!("opening the BM25 index in {}", dir.display()))?;
        let want = padding.map(|p| PaddingRecord::of(&p));
        if index.manifest().padding != want {
            bail!(
                "the BM25 index in {} was built with other padding; remove it to rebuild",
                dir.display()
            );
        }
        return Ok(index);
    }
    let total = padding.map_or(corpus.len(), |p| p.total());
    eprintln!(
        "Building the BM25 index of {total} passages in {}…",
        dir.display()
    );
    let bar = bar(total as u64);
    let index = Bm25Index::build(corpus, padding, dir, &mut |p| match p {
        BuildProgress::Indexed { done, .. } => bar.set_position(done as u64),
        BuildProgress::Merging { .. } => bar.set_message("merging"),
        BuildProgress::Checksumming => bar.set_message("checksumming"),
    })
    .with_context(|| format!("building the BM25 index in {}", dir.display()))?;
    bar.finish_and_clear();
    Ok(index)
}

fn bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} passages {per_sec} {eta} {msg}")
            .expect("a valid template"),
    );
    bar
}
