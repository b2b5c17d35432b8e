//! Sparse retrieval: BM25 over the passages' [`prompt_text`](crate::Passage::prompt_text), on
//! tantivy, behind the [`Retriever`] seam.
//!
//! - [`analyzer`]: the fixed analysis ([`ANALYZER`]), the schema, queries built from tokens.
//! - [`search`]: exact scores through the query's tantivy scorer, and block-max WAND top-k
//!   rescored with them, so `score` equals `search` bit for bit.
//! - [`build`]: writing an index folder (optionally padded), atomically.
//! - [`manifest`]: the folder's `manifest.json` and the checks of its files.
//!
//! An index is one tantivy segment; tantivy's doc ids map to passage ids through the `id`
//! fast field, read once at open. BM25 uses tantivy's k1 = 1.2, b = 0.75 and the index's
//! global statistics. A query with no terms (nothing alphanumeric) has no hits and scores 0.0
//! everywhere; `search` returns only documents containing at least one query term (so fewer
//! than `k` when fewer match), and every other document scores 0.0, below every hit.

mod analyzer;
mod build;
mod manifest;
mod search;

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use tantivy::query::{EnableScoring, Query as _};
use tantivy::schema::Field;
use tantivy::tokenizer::TextAnalyzer;
use tantivy::{DocId, Index, ReloadPolicy, Searcher, SegmentReader};

use crate::error::{Result, RetrievalError};
use crate::ids::IdMap;
use crate::retriever::{Hit, Query, Retriever};

pub use analyzer::ANALYZER;
pub use build::{BuildProgress, PROGRESS_EVERY};
pub use manifest::{
    B, Bm25Manifest, FORMAT_VERSION, FileRecord, K1, KIND, MANIFEST, TANTIVY, TextPadding,
};

use analyzer::{ID_FIELD, TEXT_FIELD};
use search::Compiled;

/// A BM25 index folder, open for search.
pub struct Bm25Index {
    dir: PathBuf,
    manifest: Bm25Manifest,
    searcher: Searcher,
    text: Field,
    analyzer: TextAnalyzer,
    /// Passage id of each tantivy doc id.
    ids: Vec<u32>,
    /// Tantivy doc id of each passage id.
    docs: IdMap,
    /// Every passage id, ascending: the zero-score tail of a ranking.
    ascending: Vec<u32>,
}

impl std::fmt::Debug for Bm25Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bm25Index")
            .field("dir", &self.dir)
            .field("count", &self.ids.len())
            .finish_non_exhaustive()
    }
}

impl Bm25Index {
    /// Opens the index in `dir`, built from the corpus whose [`Corpus::hash`](crate::Corpus::hash)
    /// is `corpus_hash`. The manifest must match this code and that corpus, and every file must
    /// be there, whole and unchanged; otherwise [`RetrievalError::BadIndex`] names the file.
    pub fn open(dir: &Path, corpus_hash: &str) -> Result<Bm25Index> {
        let manifest = manifest::read_manifest(dir, corpus_hash)?;
        manifest::check_files(dir, &manifest.files)?;
        Bm25Index::load(dir, manifest)
    }

    /// Opens the tantivy index in `dir`, whose files match `manifest`.
    fn load(dir: &Path, manifest: Bm25Manifest) -> Result<Bm25Index> {
        let meta = dir.join("meta.json");
        let bad = |reason: String| RetrievalError::bad_index(&meta, reason);
        let tantivy = |e: tantivy::TantivyError| bad(format!("tantivy cannot open it: {e}"));
        let index = Index::open_in_dir(dir).map_err(tantivy)?;
        analyzer::register(&index);
        let schema = index.schema();
        let text = schema.get_field(TEXT_FIELD).map_err(tantivy)?;
        schema.get_field(ID_FIELD).map_err(tantivy)?;
        let searcher = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(tantivy)?
            .searcher();
        let segments = searcher.segment_readers();
        let want = usize::from(manifest.count > 0);
        if segments.len() != want {
            return Err(bad(format!("{} segments, expected {want}", segments.len())));
        }
        let mut ids = Vec::with_capacity(manifest.count);
        if let Some(segment) = segments.first() {
            if segment.num_docs() as usize != manifest.count || segment.alive_bitset().is_some() {
                return Err(bad(format!(
                    "{} documents ({} deleted), the manifest says {}",
                    segment.num_docs(),
                    segment.num_deleted_docs(),
                    manifest.count
                )));
            }
            let column = segment.fast_fields().u64(ID_FIELD).map_err(tantivy)?;
            for doc in 0..segment.max_doc() {
                let id = column
                    .first(doc)
                    .and_then(|id| u32::try_from(id).ok())
                    .ok_or_else(|| bad(format!("document {doc} has no valid passage id")))?;
                ids.push(id);
            }
        }
        let docs = IdMap::new(&ids).map_err(|id| bad(format!("passage id {id} appears twice")))?;
        let mut ascending = ids.clone();
        ascending.sort_unstable();
        Ok(Bm25Index {
            dir: dir.to_owned(),
            manifest,
            searcher,
            text,
            analyzer: analyzer::analyzer(),
            ids,
            docs,
            ascending,
        })
    }

    /// The index's manifest (counts, analyzer, padding, files).
    pub fn manifest(&self) -> &Bm25Manifest {
        &self.manifest
    }

    /// The folder the index lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The passage ids in the index, in tantivy doc id order.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    fn segment(&self) -> Option<&SegmentReader> {
        self.searcher.segment_readers().first()
    }

    /// A failure of tantivy while searching.
    fn search_error(&self, e: tantivy::TantivyError) -> RetrievalError {
        RetrievalError::bad_index(&self.dir, format!("search failed: {e}"))
    }

    /// The query's weight with the index's global statistics; `None` when it has no terms.
    fn compile(&self, query: &Query) -> Result<Option<Compiled>> {
        let terms = analyzer::query_terms(&self.analyzer, query.as_str());
        let Some(boolean) = analyzer::bm25_query(self.text, &terms) else {
            return Ok(None);
        };
        let weight = boolean
            .weight(EnableScoring::enabled_from_searcher(&self.searcher))
            .map_err(|e| self.search_error(e))?;
        Ok(Some(Compiled {
            weight,
            clauses: terms.len(),
        }))
    }

    /// The best `k` documents: those containing query terms by score, then, like every
    /// retriever, the rest at score 0.0 by ascending id, so that a query always has a top-k
    /// (a query without any known term ranks the whole index by id).
    fn search_one(&self, query: &Query, k: usize) -> Result<Vec<Hit>> {
        let mut hits = match (self.segment(), self.compile(query)?) {
            (Some(segment), Some(compiled)) => {
                search::top_k(&compiled, segment, &self.ids, k).map_err(|e| self.search_error(e))?
            }
            _ => Vec::new(),
        };
        if hits.len() < k {
            let matched: std::collections::HashSet<u32> = hits.iter().map(|h| h.doc).collect();
            let rest = self.ascending.iter().filter(|d| !matched.contains(d));
            hits.extend(
                rest.take(k - hits.len())
                    .map(|&doc| Hit { doc, score: 0.0 }),
            );
        }
        Ok(hits)
    }
}

impl Retriever for Bm25Index {
    fn search(&self, queries: &[Query], k: usize) -> Result<Vec<Vec<Hit>>> {
        queries.par_iter().map(|q| self.search_one(q, k)).collect()
    }

    fn score(&self, query: &Query, docs: &[u32]) -> Result<Vec<f32>> {
        let rows: Vec<DocId> = docs
            .iter()
            .map(|&doc| {
                self.docs
                    .row(doc)
                    .map(|r| r as DocId)
                    .ok_or(RetrievalError::UnknownDoc {
                        doc,
                        len: self.ids.len(),
                    })
            })
            .collect::<Result<_>>()?;
        let (Some(segment), Some(compiled)) = (self.segment(), self.compile(query)?) else {
            return Ok(vec![0.0; docs.len()]);
        };
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_unstable_by_key(|&i| rows[i]);
        let sorted: Vec<DocId> = order.iter().map(|&i| rows[i]).collect();
        let scores =
            search::exact_scores(&compiled, segment, &sorted).map_err(|e| self.search_error(e))?;
        let mut out = vec![0.0; docs.len()];
        for (i, score) in order.into_iter().zip(scores) {
            out[i] = score;
        }
        Ok(out)
    }

    fn len(&self) -> usize {
        self.ids.len()
    }
}
