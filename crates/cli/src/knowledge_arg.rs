//! The `--retriever` flag: opens the knowledge base with the chosen retriever, building its
//! index under the asset store on first use (`$RALMSPEC_HOME/indexes/wiki-kb/<kind>[-pad<N>]`),
//! with a progress bar.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use ralmspec_assets::Store;
use ralmspec_engine::Knowledge;
use ralmspec_retrieval::bm25::BuildProgress;
use ralmspec_retrieval::padding::DEFAULT_SEED;
use ralmspec_retrieval::{Bm25Index, Corpus, Encoder, FlatIndex, Padding};

/// Which retriever serves the knowledge base.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RetrieverKind {
    /// Exact dense: inner product with every MiniLM vector.
    Flat,
    /// Sparse: BM25 on tantivy.
    Bm25,
}

impl RetrieverKind {
    pub fn name(self) -> &'static str {
        match self {
            RetrieverKind::Flat => "flat",
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
    let dir = index_dir(&store, kind, pad_to);
    open_in(kind, corpus, padding, &dir)
}

/// `corpus` (grown by `padding`) behind `kind`, with its index in `dir`: opened when it is
/// there (and then it must match), else built there with a progress bar.
pub fn open_in(
    kind: RetrieverKind,
    corpus: Arc<Corpus>,
    padding: Option<Padding>,
    dir: &Path,
) -> Result<Knowledge> {
    match kind {
        RetrieverKind::Flat => {
            if padding.is_some() {
                bail!("padding the flat index is not available in this build");
            }
            let encoder = Arc::new(Encoder::minilm().context("loading the MiniLM encoder")?);
            if !dir.join("manifest.json").exists() {
                eprintln!(
                    "Building the flat index of {} passages in {} (first use only; about 9 minutes per 10,000 passages on 2 cores)…",
                    corpus.len(),
                    dir.display()
                );
            }
            let flat = FlatIndex::open_or_build(dir, &encoder, &corpus)
                .with_context(|| format!("opening the flat index in {}", dir.display()))?;
            Ok(Knowledge::new(
                "flat",
                Arc::new(flat),
                Some(encoder),
                corpus,
                None,
            ))
        }
        RetrieverKind::Bm25 => {
            let index = if dir.join("manifest.json").exists() {
                Bm25Index::open(dir, &corpus.hash())
                    .with_context(|| format!("opening the BM25 index in {}", dir.display()))?
            } else {
                let total = padding.map_or(corpus.len(), |p| p.total());
                eprintln!(
                    "Building the BM25 index of {total} passages in {}…",
                    dir.display()
                );
                let bar = bar(total as u64);
                let index = Bm25Index::build(&corpus, padding, dir, &mut |p| match p {
                    BuildProgress::Indexed { done, .. } => bar.set_position(done as u64),
                    BuildProgress::Merging { .. } => bar.set_message("merging"),
                    BuildProgress::Checksumming => bar.set_message("checksumming"),
                })
                .with_context(|| format!("building the BM25 index in {}", dir.display()))?;
                bar.finish_and_clear();
                index
            };
            Ok(Knowledge::new(
                "bm25",
                Arc::new(index),
                None,
                corpus,
                padding,
            ))
        }
    }
}

fn bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} passages {per_sec} {eta} {msg}")
            .expect("a valid template"),
    );
    bar
}
