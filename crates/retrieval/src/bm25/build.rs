//! Building a BM25 index folder: every passage (real, then padding) through tantivy's
//! multi-threaded writer, one merge into a single segment, then the manifest, all inside a
//! temporary sibling folder that is renamed into place only when complete.

use std::fs;
use std::path::Path;

use tantivy::merge_policy::NoMergePolicy;
use tantivy::{Index, IndexWriter, TantivyDocument};

use crate::corpus::{Corpus, Passage};
use crate::error::{IoContext, Result, RetrievalError};
use crate::index::build_dir_atomically;
use crate::padding::Padding;

use super::Bm25Index;
use super::analyzer::{self, ANALYZER, ID_FIELD, TEXT_FIELD};
use super::manifest::{
    B, Bm25Manifest, FORMAT_VERSION, K1, KIND, MANIFEST, TANTIVY, TextPadding, record_files,
};

/// Passages between two [`BuildProgress::Indexed`] reports.
pub const PROGRESS_EVERY: usize = 10_000;
/// Indexing memory per writer thread: a segment is flushed when it is full.
const MEMORY_PER_THREAD: usize = 256 << 20;
/// At most this many indexing threads.
const MAX_THREADS: usize = 4;

/// Where [`Bm25Index::build`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuildProgress {
    /// `done` of `total` passages handed to the writer (every [`PROGRESS_EVERY`] and at the
    /// end).
    Indexed {
        /// Passages indexed so far.
        done: usize,
        /// Passages to index.
        total: usize,
    },
    /// Merging this many segments into one.
    Merging {
        /// Segments before the merge.
        segments: usize,
    },
    /// Checksumming the files for the manifest.
    Checksumming,
}

impl Bm25Index {
    /// Indexes `corpus` (and `padding`'s passages after it, when given) into the folder `dir`,
    /// replacing any index there, and opens the result. `progress` hears how far it got.
    pub fn build(
        corpus: &Corpus,
        padding: Option<Padding>,
        dir: &Path,
        progress: &mut dyn FnMut(BuildProgress),
    ) -> Result<Bm25Index> {
        if let Some(p) = padding
            && Padding::new(corpus, p.total(), p.seed()).ok() != Some(p)
        {
            return Err(RetrievalError::BadIndexData {
                reason: format!("padding ({}) was not made for this corpus", p.describe()),
            });
        }
        let mut manifest = None;
        build_dir_atomically(dir, |tmp| {
            manifest = Some(write_index(corpus, padding, tmp, progress)?);
            Ok(())
        })?;
        Bm25Index::load(dir, manifest.expect("written"))
    }
}

/// Writes the tantivy index and the manifest into the empty folder `tmp`.
fn write_index(
    corpus: &Corpus,
    padding: Option<Padding>,
    tmp: &Path,
    progress: &mut dyn FnMut(BuildProgress),
) -> Result<Bm25Manifest> {
    let err = |e: tantivy::TantivyError| RetrievalError::index_build(tmp, e);
    let schema = analyzer::schema();
    let text = schema.get_field(TEXT_FIELD).expect("in the schema");
    let id = schema.get_field(ID_FIELD).expect("in the schema");
    let index = Index::create_in_dir(tmp, schema).map_err(err)?;
    analyzer::register(&index);
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_THREADS);
    let mut writer: IndexWriter<TantivyDocument> = index
        .writer_with_num_threads(threads, threads * MEMORY_PER_THREAD)
        .map_err(err)?;
    writer.set_merge_policy(Box::new(NoMergePolicy));

    let total = padding.map_or(corpus.len(), |p| p.total());
    let padded = padding
        .iter()
        .flat_map(|p| p.ids().map(move |pid| p.passage(corpus, pid)));
    let mut done = 0;
    for passage in corpus.iter().chain(padded) {
        writer
            .add_document(document(text, id, &passage))
            .map_err(err)?;
        done += 1;
        if done % PROGRESS_EVERY == 0 {
            progress(BuildProgress::Indexed { done, total });
        }
    }
    if done % PROGRESS_EVERY != 0 {
        progress(BuildProgress::Indexed { done, total });
    }
    writer.commit().map_err(err)?;
    let segments = index.searchable_segment_ids().map_err(err)?;
    if segments.len() > 1 {
        progress(BuildProgress::Merging {
            segments: segments.len(),
        });
        writer.merge(&segments).wait().map_err(err)?;
    }
    writer.garbage_collect_files().wait().map_err(err)?;
    writer.wait_merging_threads().map_err(err)?;

    progress(BuildProgress::Checksumming);
    let manifest = Bm25Manifest {
        format_version: FORMAT_VERSION,
        kind: KIND.into(),
        corpus_hash: corpus.hash(),
        count: total,
        real_count: corpus.len(),
        analyzer: ANALYZER.into(),
        k1: K1,
        b: B,
        tantivy: TANTIVY.into(),
        padding: padding.as_ref().map(TextPadding::of),
        files: record_files(tmp)?,
    };
    let path = tmp.join(MANIFEST);
    let json = serde_json::to_vec_pretty(&manifest).expect("a manifest serialises");
    fs::write(&path, json).at(&path)?;
    Ok(manifest)
}

/// The tantivy document of one passage: what the LM sees, and its document number.
fn document(
    text: tantivy::schema::Field,
    id: tantivy::schema::Field,
    p: &Passage,
) -> TantivyDocument {
    let mut doc = TantivyDocument::default();
    doc.add_text(text, p.prompt_text());
    doc.add_u64(id, u64::from(p.doc));
    doc
}
