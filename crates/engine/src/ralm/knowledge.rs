//! The engine's view of a knowledge base: a retriever, the encoder its queries need (dense
//! retrievers), and the passages' text, real or padding. The engine knows retrieval only
//! through this and the [`Retriever`] seam.
//!
//! A knowledge base whose documents can change while it serves (a database table re-indexed
//! beside the server) is pinned once per request ([`Knowledge::pinned`]), so that every
//! retrieval of the request, baseline or speculative, reads one version.

use std::sync::Arc;

use ralmspec_retrieval::{
    Corpus, Encoder, Hit, Padded, Padding, Passage, PassageSource, Query, Retriever,
};

use crate::error::{EngineError, Result};
use crate::ralm::generation::Span;

/// A retriever with everything needed to query it and read what it returns.
#[derive(Clone)]
pub struct Knowledge {
    retriever: Arc<dyn Retriever>,
    encoder: Option<Arc<Encoder>>,
    passages: Arc<dyn PassageSource>,
    padding: Option<Padding>,
    name: String,
    /// The version of the documents (0 for documents that never change).
    version: u64,
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
            passages: Arc::new(Padded::new(corpus, padding)),
            padding,
            name: name.into(),
            version: 0,
        }
    }

    /// `retriever` whose documents are read back from `passages` (a database table, say).
    pub fn from_source(
        name: impl Into<String>,
        retriever: Arc<dyn Retriever>,
        encoder: Option<Arc<Encoder>>,
        passages: Arc<dyn PassageSource>,
    ) -> Knowledge {
        Knowledge {
            retriever,
            encoder,
            passages,
            padding: None,
            name: name.into(),
            version: 0,
        }
    }

    /// This knowledge base as one request must see it: pinned to the version of its
    /// documents current now when they can change ([`Retriever::snapshot`]), else itself.
    pub fn pinned(&self) -> Result<Knowledge> {
        Ok(match self.retriever.snapshot()? {
            None => self.clone(),
            Some(snapshot) => Knowledge {
                retriever: snapshot.retriever,
                passages: snapshot.passages,
                version: snapshot.version,
                ..self.clone()
            },
        })
    }

    /// The version of the documents this knowledge reads (0 when they never change): the
    /// same document number in two versions may be two different passages.
    pub fn version(&self) -> u64 {
        self.version
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
        self.passages
            .passage(id)?
            .ok_or(EngineError::UnknownDocument(id))
    }

    /// The source `span` of an answer names: its document's number, corpus id and title, and
    /// the answer tokens it informed.
    pub fn source(&self, span: Span) -> Result<Source> {
        let passage = self.passage(span.doc)?;
        Ok(Source {
            doc: span.doc,
            id: passage.id,
            title: passage.title,
            start: span.start,
            end: span.end,
        })
    }
}

/// A document behind a span of an answer: answer tokens `start..end` were generated with it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Source {
    /// The document's number (what retrievers answer with).
    pub doc: u32,
    /// The corpus's own id for it.
    pub id: String,
    /// Its title (may be empty).
    pub title: String,
    pub start: usize,
    pub end: usize,
}
