//! The engine's view of a knowledge base: a retriever, the encoder its queries need (dense
//! retrievers), and the passages' text, real or padding. The engine knows retrieval only
//! through this and the [`Retriever`] seam.

use std::sync::Arc;

use ralmspec_retrieval::{Corpus, Encoder, Hit, Padding, Passage, Query, Retriever};

use crate::error::{EngineError, Result};

/// A retriever with everything needed to query it and read what it returns.
#[derive(Clone)]
pub struct Knowledge {
    retriever: Arc<dyn Retriever>,
    encoder: Option<Arc<Encoder>>,
    corpus: Arc<Corpus>,
    padding: Option<Padding>,
    name: String,
}

impl Knowledge {
    /// `retriever` over `corpus` (grown by `padding`, if any). `encoder` turns query text into
    /// the embedding a dense retriever needs; `None` for text retrievers. `name` is for reports.
    pub fn new(
        name: impl Into<String>,
        retriever: Arc<dyn Retriever>,
        encoder: Option<Arc<Encoder>>,
        corpus: Arc<Corpus>,
        padding: Option<Padding>,
    ) -> Knowledge {
        Knowledge {
            retriever,
            encoder,
            corpus,
            padding,
            name: name.into(),
        }
    }

    /// The same knowledge base through another retriever over the same documents (one that
    /// wraps [`Knowledge::retriever`], say): the encoder, the passages and the padding are
    /// shared.
    pub fn with_retriever(&self, retriever: Arc<dyn Retriever>) -> Knowledge {
        Knowledge {
            retriever,
            ..self.clone()
        }
    }

    /// The retriever.
    pub fn retriever(&self) -> &Arc<dyn Retriever> {
        &self.retriever
    }

    /// The name given at construction (e.g. `flat`, `bm25`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of documents the retriever holds.
    pub fn len(&self) -> usize {
        self.retriever.len()
    }

    /// True when the retriever holds no documents.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The padding of the knowledge base, if it was grown for a scale experiment.
    pub fn padding(&self) -> Option<&Padding> {
        self.padding.as_ref()
    }

    /// A query for `text`, encoded once here if the retriever is dense.
    pub fn query(&self, text: String) -> Result<Query> {
        Ok(match &self.encoder {
            Some(encoder) => Query::encode(encoder, text)?,
            None => Query::text(text),
        })
    }

    /// The best `k` documents for each query, in one call to the retriever; at most
    /// [`Retriever::consistent_k`] of them, so that the first hit never depends on `k`.
    pub fn search(&self, queries: &[Query], k: usize) -> Result<Vec<Vec<Hit>>> {
        let k = k.min(self.retriever.consistent_k());
        let hits = self.retriever.search(queries, k)?;
        if let Some(i) = hits.iter().position(Vec::is_empty) {
            return Err(EngineError::NothingRetrieved {
                query: queries[i].as_str().to_string(),
            });
        }
        Ok(hits)
    }

    /// The retriever's scores of `docs` for `query` (the numbers `search` ranks by).
    pub fn score(&self, query: &Query, docs: &[u32]) -> Result<Vec<f32>> {
        Ok(self.retriever.score(query, docs)?)
    }

    /// The passage with this id, real or padding.
    pub fn passage(&self, id: u32) -> Result<Passage> {
        if let Some(p) = self.corpus.get(id) {
            return Ok(p);
        }
        match &self.padding {
            Some(padding) if padding.contains(id) => Ok(padding.passage(&self.corpus, id)),
            _ => Err(EngineError::UnknownDocument(id)),
        }
    }
}
