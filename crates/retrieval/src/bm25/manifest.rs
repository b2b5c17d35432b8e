//! What a BM25 index folder says about itself (`manifest.json`), and the checks that tie the
//! folder's files to it.
//!
//! ```text
//! manifest.json   {format_version, kind: "bm25", corpus_hash, count, real_count, analyzer,
//!                  k1, b, tantivy, padding: null | {total, seed, count, first_id,
//!                  description}, files: {name: {bytes, sha256}}}
//! meta.json, .managed.json, <segment>.*   the tantivy index (one segment)
//! ```
//!
//! Every file tantivy wrote is listed with its size and sha256; opening checks them all, so a
//! missing, truncated or corrupt file is [`RetrievalError::BadIndex`] naming it before tantivy
//! ever reads it.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::corpus::Corpus;
use crate::error::{IoContext, Result, RetrievalError};
use crate::files::{missing_or, read_json};
use crate::padding::Padding;

use super::analyzer::ANALYZER;

/// The BM25 on-disk format this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// The manifest's file name inside an index folder.
pub const MANIFEST: &str = "manifest.json";
/// `kind` of a BM25 manifest.
pub const KIND: &str = "bm25";
/// BM25's k1 (tantivy's constant).
pub const K1: f32 = 1.2;
/// BM25's b (tantivy's constant).
pub const B: f32 = 0.75;
/// The tantivy release that writes and reads the index files.
pub const TANTIVY: &str = "0.27";

/// What a BM25 index folder says about itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bm25Manifest {
    /// [`FORMAT_VERSION`] of the writer.
    pub format_version: u32,
    /// `"bm25"`.
    pub kind: String,
    /// [`Corpus::hash`] of the real corpus the index (and its padding) was built from.
    pub corpus_hash: String,
    /// Documents in the index, padding included.
    pub count: usize,
    /// Real passages among them.
    pub real_count: usize,
    /// The analyzer ([`ANALYZER`]).
    pub analyzer: String,
    /// BM25 k1.
    pub k1: f32,
    /// BM25 b.
    pub b: f32,
    /// The tantivy release of the index files ([`TANTIVY`]).
    pub tantivy: String,
    /// How the corpus was padded, or `None` for the real passages only.
    pub padding: Option<TextPadding>,
    /// Every file of the tantivy index, by name.
    pub files: BTreeMap<String, FileRecord>,
}

/// Size and checksum of one index file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRecord {
    /// Length in bytes.
    pub bytes: u64,
    /// sha256 (hex) of the contents.
    pub sha256: String,
}

/// How a BM25 index's passages were padded ([`Padding`]), enough to rebuild the padding
/// passages (a dense index records its vectors' padding in [`crate::PaddingRecord`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextPadding {
    /// Passages after padding.
    pub total: usize,
    /// The padding seed.
    pub seed: u64,
    /// Number of padding passages.
    pub count: usize,
    /// The first padding id (ids `first_id..first_id + count`).
    pub first_id: u32,
    /// [`Padding::describe`].
    pub description: String,
}

impl TextPadding {
    /// The record of `padding`.
    pub fn of(padding: &Padding) -> TextPadding {
        TextPadding {
            total: padding.total(),
            seed: padding.seed(),
            count: padding.count(),
            first_id: padding.ids().start,
            description: padding.describe(),
        }
    }

    /// The [`Padding`] this record describes, over `corpus` (the corpus the index was built
    /// from); an error when it does not fit `corpus`.
    pub fn padding(&self, corpus: &Corpus) -> Result<Padding> {
        let padding = Padding::new(corpus, self.total, self.seed)?;
        if TextPadding::of(&padding) != *self {
            return Err(RetrievalError::BadIndexData {
                reason: format!(
                    "the index's padding ({}) does not fit this corpus ({})",
                    self.description,
                    padding.describe()
                ),
            });
        }
        Ok(padding)
    }
}

/// Reads `dir`'s manifest and checks it against this code and `corpus_hash`.
pub(crate) fn read_manifest(dir: &Path, corpus_hash: &str) -> Result<Bm25Manifest> {
    let path = dir.join(MANIFEST);
    let m: Bm25Manifest = read_json(&path, &[FORMAT_VERSION], |m: &Bm25Manifest| {
        m.format_version
    })?;
    let mismatch = |what: &str, found: &dyn std::fmt::Display, want: &dyn std::fmt::Display| {
        RetrievalError::bad_index(
            &path,
            format!("{what} is {found}, expected {want} (rebuild the index)"),
        )
    };
    if m.kind != KIND {
        return Err(mismatch("kind", &m.kind, &KIND));
    }
    if m.corpus_hash != corpus_hash {
        return Err(mismatch("corpus_hash", &m.corpus_hash, &corpus_hash));
    }
    if m.analyzer != ANALYZER {
        return Err(mismatch("analyzer", &m.analyzer, &ANALYZER));
    }
    if m.k1 != K1 || m.b != B {
        return Err(mismatch(
            "(k1, b)",
            &format!("({}, {})", m.k1, m.b),
            &format!("({K1}, {B})"),
        ));
    }
    if m.tantivy != TANTIVY {
        return Err(mismatch("tantivy", &m.tantivy, &TANTIVY));
    }
    if !m.files.contains_key("meta.json") {
        return Err(RetrievalError::bad_index(&path, "lists no meta.json"));
    }
    let padded = m.padding.as_ref().map_or(0, |p| p.count);
    if m.real_count + padded != m.count {
        return Err(RetrievalError::bad_index(
            &path,
            format!(
                "count {} is not real_count {} + padding {padded}",
                m.count, m.real_count
            ),
        ));
    }
    Ok(m)
}

/// Size and sha256 of every file tantivy left in `dir` (lock files excepted).
pub(crate) fn record_files(dir: &Path) -> Result<BTreeMap<String, FileRecord>> {
    let mut files = BTreeMap::new();
    for entry in fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == MANIFEST || name.ends_with(".lock") || !entry.path().is_file() {
            continue;
        }
        let (bytes, sha256) = hash_file(&entry.path())?;
        files.insert(name, FileRecord { bytes, sha256 });
    }
    Ok(files)
}

/// Checks every file the manifest lists: present, of its size, with its checksum.
pub(crate) fn check_files(dir: &Path, files: &BTreeMap<String, FileRecord>) -> Result<()> {
    for (name, want) in files {
        let path = dir.join(name);
        let len = fs::metadata(&path).map_err(|e| missing_or(&path, e))?.len();
        if len != want.bytes {
            return Err(RetrievalError::bad_index(
                &path,
                format!("{len} bytes, the manifest says {} (truncated?)", want.bytes),
            ));
        }
    }
    for (name, want) in files {
        let path = dir.join(name);
        let (_, got) = hash_file(&path)?;
        if got != want.sha256 {
            return Err(RetrievalError::bad_index(
                &path,
                format!(
                    "sha256 {got} does not match the manifest's {} (corrupt)",
                    want.sha256
                ),
            ));
        }
    }
    Ok(())
}

/// Length and sha256 of a file, streamed.
fn hash_file(path: &Path) -> Result<(u64, String)> {
    let mut file = fs::File::open(path).map_err(|e| missing_or(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = file.read(&mut buf).at(path)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        len += n as u64;
    }
    Ok((len, crate::hex(&hasher.finalize())))
}
