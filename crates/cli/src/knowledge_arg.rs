//! The `--retriever` flag: opens the knowledge base with the chosen retriever, building its
//! index under the asset store on first use (`$RALMSPEC_HOME/indexes/wiki-kb/<kind>`).

use std::sync::Arc;

use anyhow::{Context, Result};
use ralmspec_assets::Store;
use ralmspec_engine::Knowledge;
use ralmspec_retrieval::{Corpus, Encoder, FlatIndex};

/// Which retriever serves the knowledge base.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RetrieverKind {
    /// Exact dense: inner product with every MiniLM vector.
    Flat,
}

impl RetrieverKind {
    pub fn name(self) -> &'static str {
        match self {
            RetrieverKind::Flat => "flat",
        }
    }
}

/// The built-in knowledge base (10,033 Wikipedia lead sections) behind `kind`.
pub fn open(kind: RetrieverKind, pad_to: Option<usize>) -> Result<Knowledge> {
    if pad_to.is_some() {
        anyhow::bail!("padding is not available yet");
    }
    let store = Store::from_env()?;
    let corpus = Arc::new(Corpus::wiki_kb().context("loading the knowledge base")?);
    let dir = store
        .root()
        .join("indexes")
        .join("wiki-kb")
        .join(kind.name());
    match kind {
        RetrieverKind::Flat => {
            let encoder = Arc::new(Encoder::minilm().context("loading the MiniLM encoder")?);
            if !dir.join("manifest.json").exists() {
                eprintln!(
                    "Building the flat index of {} passages in {} (first use only; about 9 minutes on 2 cores)…",
                    corpus.len(),
                    dir.display()
                );
            }
            let flat = FlatIndex::open_or_build(&dir, &encoder, &corpus)
                .with_context(|| format!("opening the flat index in {}", dir.display()))?;
            Ok(Knowledge::new(
                "flat",
                Arc::new(flat),
                Some(encoder),
                corpus,
                None,
            ))
        }
    }
}
