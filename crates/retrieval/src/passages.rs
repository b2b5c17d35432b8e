//! Where a retriever's documents are read back as passages: the [`PassageSource`] seam, for a
//! corpus in memory or memory-mapped, a corpus grown with padding ([`Padded`]), or a table in
//! a database ([`crate::pg`]).

use std::sync::Arc;

use crate::corpus::{Corpus, Passage};
use crate::error::Result;
use crate::padding::Padding;

/// Reads a document back as its passage.
pub trait PassageSource: Send + Sync {
    /// The passage of document `doc`, `None` when there is none.
    fn passage(&self, doc: u32) -> Result<Option<Passage>>;
}

impl PassageSource for Corpus {
    fn passage(&self, doc: u32) -> Result<Option<Passage>> {
        self.read(doc)
    }
}

/// A corpus grown by padding: real passages first, then the padding's synthetic ones.
pub struct Padded {
    corpus: Arc<Corpus>,
    padding: Option<Padding>,
}

impl Padded {
    /// `corpus`, grown by `padding` when there is one.
    pub fn new(corpus: Arc<Corpus>, padding: Option<Padding>) -> Padded {
        Padded { corpus, padding }
    }
}

impl PassageSource for Padded {
    fn passage(&self, doc: u32) -> Result<Option<Passage>> {
        if let Some(p) = self.corpus.read(doc)? {
            return Ok(Some(p));
        }
        Ok(match &self.padding {
            Some(padding) if padding.contains(doc) => Some(padding.passage(&self.corpus, doc)),
            _ => None,
        })
    }
}
