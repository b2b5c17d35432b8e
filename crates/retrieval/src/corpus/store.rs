//! The passages of an index set on disk, so that a corpus of millions of passages is read once
//! (streamed from the user's file) and then served by memory map, never held in memory:
//!
//! ```text
//! passages/manifest.json   {format_version, count, corpus_hash, records_sha256, offsets_sha256}
//! passages/records.bin     per passage: u32 id length, u32 title length, id, title, text (LE)
//! passages/offsets.u64     count + 1 little-endian byte offsets into records.bin
//! ```
//!
//! [`Writer`] writes into a hidden sibling folder and renames it into place when complete, so
//! a killed import never leaves a partial store at the final path. Passage ids must be
//! distinct: the writer remembers a 64-bit hash of each and, on a hash match, compares the
//! texts themselves, so a duplicate is always reported and a hash collision never is.

use std::collections::HashMap;
use std::fs::{self, File};
use std::hash::{BuildHasher, Hasher};
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Passage, PassageHasher};
use crate::error::{IoContext, Result, RetrievalError};
use crate::files::read_json;

const MANIFEST: &str = "manifest.json";
const RECORDS: &str = "records.bin";
const OFFSETS: &str = "offsets.u64";
const FORMAT_VERSION: u32 = 1;

/// What a passage store says about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The writer's format version.
    pub format_version: u32,
    /// Number of passages.
    pub count: usize,
    /// [`super::Corpus::hash`] of the passages.
    pub corpus_hash: String,
    /// sha256 (hex) of `records.bin`.
    pub records_sha256: String,
    /// sha256 (hex) of `offsets.u64`.
    pub offsets_sha256: String,
}

/// A passage store opened read-only: both files memory-mapped.
#[derive(Clone, Debug)]
pub(crate) struct Store {
    records: Arc<Mmap>,
    offsets: Arc<Mmap>,
    manifest: Manifest,
    /// The store's folder (errors name its files).
    dir: Arc<Path>,
}

impl Store {
    /// Opens the store in `dir`, checking the manifest and every file's size (contents were
    /// checksummed when written; offsets are checked to stay inside `records.bin` when read).
    pub(crate) fn open(dir: &Path) -> Result<Store> {
        let manifest: Manifest =
            read_json(&dir.join(MANIFEST), &[FORMAT_VERSION], |m: &Manifest| {
                m.format_version
            })?;
        let records = map(&dir.join(RECORDS))?;
        let offsets_path = dir.join(OFFSETS);
        let offsets = map(&offsets_path)?;
        if offsets.len() != (manifest.count + 1) * 8 {
            return Err(RetrievalError::bad_index(
                &offsets_path,
                format!(
                    "{} bytes, expected {} for {} passages (truncated?)",
                    offsets.len(),
                    (manifest.count + 1) * 8,
                    manifest.count
                ),
            ));
        }
        let store = Store {
            records: Arc::new(records),
            offsets: Arc::new(offsets),
            manifest,
            dir: Arc::from(dir),
        };
        if store.offset(store.manifest.count) != store.records.len() as u64 {
            return Err(RetrievalError::bad_index(
                &dir.join(RECORDS),
                format!(
                    "{} bytes, the offsets end at {} (truncated?)",
                    store.records.len(),
                    store.offset(store.manifest.count)
                ),
            ));
        }
        Ok(store)
    }

    pub(crate) fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub(crate) fn len(&self) -> usize {
        self.manifest.count
    }

    fn offset(&self, i: usize) -> u64 {
        let b = &self.offsets[i * 8..i * 8 + 8];
        u64::from_le_bytes(b.try_into().expect("8 bytes"))
    }

    /// Passage `doc`; `None` past the end; an error naming the record when it is damaged (the
    /// files were checksummed when written, so only a change on disk since does that).
    pub(crate) fn get(&self, doc: u32) -> Result<Option<Passage>> {
        let i = doc as usize;
        if i >= self.len() {
            return Ok(None);
        }
        let (start, end) = (self.offset(i) as usize, self.offset(i + 1) as usize);
        self.records
            .get(start..end)
            .and_then(|record| decode(doc, record))
            .map(Some)
            .ok_or_else(|| {
                RetrievalError::bad_index(
                    &self.dir.join(RECORDS),
                    format!(
                        "the record of passage {doc} (bytes {start}..{end}) is damaged; \
                         rebuild the index set"
                    ),
                )
            })
    }
}

fn decode(doc: u32, r: &[u8]) -> Option<Passage> {
    let id_len = u32::from_le_bytes(r.get(0..4)?.try_into().ok()?) as usize;
    let title_len = u32::from_le_bytes(r.get(4..8)?.try_into().ok()?) as usize;
    let id = std::str::from_utf8(r.get(8..8 + id_len)?).ok()?;
    let title = std::str::from_utf8(r.get(8 + id_len..8 + id_len + title_len)?).ok()?;
    let text = std::str::from_utf8(r.get(8 + id_len + title_len..)?).ok()?;
    Some(Passage {
        doc,
        id: id.to_owned(),
        title: title.to_owned(),
        text: text.to_owned(),
    })
}

fn map(path: &Path) -> Result<Mmap> {
    let file = File::open(path).at(path)?;
    // SAFETY: read-only private map of a file that is written once, atomically, and never
    // modified in place (a new store is renamed over an old one, leaving this inode intact).
    unsafe { Mmap::map(&file) }.at(path)
}

/// Writes a passage store, one passage at a time.
pub(crate) struct Writer {
    dir: PathBuf,
    tmp: PathBuf,
    records: BufWriter<File>,
    records_sha: Sha256,
    offsets: Vec<u64>,
    hasher: PassageHasher,
    seen: HashMap<u64, u32>,
    id_hasher: std::collections::hash_map::RandomState,
}

impl Writer {
    /// Starts a store that [`Writer::finish`] puts at `dir` (replacing any there).
    pub(crate) fn create(dir: &Path) -> Result<Writer> {
        let tmp = crate::atomic::temp_sibling(dir)?;
        fs::create_dir_all(&tmp).at(&tmp)?;
        let path = tmp.join(RECORDS);
        // Read as well as written: a repeated id hash reads the earlier id back.
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .at(&path)?;
        let records = BufWriter::with_capacity(1 << 20, file);
        Ok(Writer {
            dir: dir.to_owned(),
            tmp,
            records,
            records_sha: Sha256::new(),
            offsets: vec![0],
            hasher: PassageHasher::new(),
            seen: HashMap::new(),
            id_hasher: Default::default(),
        })
    }

    /// Number of passages written so far.
    pub(crate) fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Appends `p`, which must be numbered next (`p.doc == len()`). A repeated id is
    /// [`RetrievalError::DuplicateId`].
    pub(crate) fn push(&mut self, p: &Passage) -> Result<()> {
        let doc = self.len() as u32;
        assert_eq!(p.doc, doc, "passages are written in order");
        let mut h = self.id_hasher.build_hasher();
        h.write(p.id.as_bytes());
        if let Some(first) = self.seen.insert(h.finish(), doc)
            && self.read_id(first)? == p.id
        {
            return Err(RetrievalError::DuplicateId {
                id: p.id.clone(),
                first,
                again: doc,
            });
        }
        let path = self.tmp.join(RECORDS);
        let mut head = [0u8; 8];
        head[..4].copy_from_slice(&(p.id.len() as u32).to_le_bytes());
        head[4..].copy_from_slice(&(p.title.len() as u32).to_le_bytes());
        for part in [
            &head[..],
            p.id.as_bytes(),
            p.title.as_bytes(),
            p.text.as_bytes(),
        ] {
            self.records.write_all(part).at(&path)?;
            self.records_sha.update(part);
        }
        let len = 8 + p.id.len() + p.title.len() + p.text.len();
        self.offsets.push(self.offsets[self.len()] + len as u64);
        self.hasher.push(p);
        Ok(())
    }

    /// The id of passage `doc`, read back from what was written.
    fn read_id(&mut self, doc: u32) -> Result<String> {
        let path = self.tmp.join(RECORDS);
        self.records.flush().at(&path)?;
        let start = self.offsets[doc as usize];
        let mut head = [0u8; 8];
        self.records
            .get_ref()
            .read_exact_at(&mut head, start)
            .at(&path)?;
        let id_len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as usize;
        let mut id = vec![0u8; id_len];
        self.records
            .get_ref()
            .read_exact_at(&mut id, start + 8)
            .at(&path)?;
        Ok(String::from_utf8_lossy(&id).into_owned())
    }

    /// Writes the offsets and the manifest, then renames the store into place.
    pub(crate) fn finish(mut self) -> Result<Manifest> {
        let records_path = self.tmp.join(RECORDS);
        self.records.flush().at(&records_path)?;
        self.records.get_ref().sync_all().at(&records_path)?;
        let offsets: Vec<u8> = self.offsets.iter().flat_map(|o| o.to_le_bytes()).collect();
        let manifest = Manifest {
            format_version: FORMAT_VERSION,
            count: self.len(),
            corpus_hash: std::mem::replace(&mut self.hasher, PassageHasher::new()).finish(),
            records_sha256: crate::hex(&self.records_sha.clone().finalize()),
            offsets_sha256: crate::hex(&Sha256::digest(&offsets)),
        };
        let json = serde_json::to_vec_pretty(&manifest).expect("a manifest serialises");
        for (name, bytes) in [(OFFSETS, &offsets[..]), (MANIFEST, &json[..])] {
            let path = self.tmp.join(name);
            fs::write(&path, bytes).at(&path)?;
        }
        crate::atomic::replace_dir(&self.tmp, &self.dir)?;
        Ok(manifest)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // An unfinished store (an error part-way) leaves nothing behind; after finish the
        // temporary folder no longer exists and this does nothing.
        let _ = fs::remove_dir_all(&self.tmp);
    }
}
