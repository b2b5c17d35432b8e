//! Encoding a corpus's passages, resumable: a build of millions of passages that is killed
//! resumes from its last checkpoint, and the vectors equal an uninterrupted build's bit for
//! bit.
//!
//! The checkpoint folder sits beside the set (`.<set>.encode-<key>`, the key naming the corpus
//! and the encoder, so a checkpoint is never resumed for other passages or another encoder):
//! `vectors.f32` holds the rows encoded so far and `done` their count, written (atomically)
//! only after those rows are synced, so rows past `done` are a chunk cut short and are
//! dropped on resume. Passages are encoded in chunks of a fixed size counted from the first
//! passage, and an encoder call's result depends only on its texts, so a resumed chunk gets
//! the same bits it would have got. The folder is removed once the set that needed it is in
//! place.

use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::Progress;
use crate::corpus::Corpus;
use crate::encoder::Encoder;
use crate::error::{IoContext, Result, RetrievalError};

/// Passages per checkpoint by default.
pub const DEFAULT_CHECKPOINT_EVERY: usize = 4096;

const VECTORS: &str = "vectors.f32";
const DONE: &str = "done";

/// The checkpoint folder of encoding `corpus` with `encoder`, `every` passages per chunk, for
/// the set at `set_dir`.
pub(crate) fn checkpoint_dir(
    set_dir: &Path,
    corpus: &Corpus,
    encoder: &Encoder,
    every: usize,
) -> PathBuf {
    let mut key = Sha256::new();
    let every = every.to_string();
    for part in [
        corpus.hash().as_bytes(),
        encoder.name().as_bytes(),
        every.as_bytes(),
    ] {
        key.update((part.len() as u64).to_le_bytes());
        key.update(part);
    }
    let key = crate::hex(&key.finalize()[..8]);
    let name = set_dir
        .file_name()
        .map_or_else(|| "set".into(), |n| n.to_string_lossy().into_owned());
    let parent = set_dir.parent().unwrap_or(Path::new("."));
    parent.join(format!(".{name}.encode-{key}"))
}

/// Encodes every passage of `corpus`, `every` passages per checkpoint in `dir`, then hands
/// the vectors to `sink(first row, rows)` in corpus order, `every` rows at a time (read back
/// from the checkpoint file: never all in memory).
pub(crate) fn encode(
    encoder: &Encoder,
    corpus: &Corpus,
    dir: &Path,
    every: usize,
    progress: &mut dyn Progress,
    sink: &mut dyn FnMut(usize, &[f32]) -> Result<()>,
) -> Result<()> {
    let every = every.max(1);
    let dim = encoder.dim();
    let row_bytes = (dim * 4) as u64;
    fs::create_dir_all(dir).at(dir)?;
    let done_path = dir.join(DONE);
    let path = dir.join(VECTORS);
    let mut done = match fs::read_to_string(&done_path) {
        Ok(text) => text
            .trim()
            .parse::<usize>()
            .map_err(|_| RetrievalError::bad_index(&done_path, format!("not a count: {text:?}")))?,
        Err(_) => 0,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .at(&path)?;
    let len = file.metadata().at(&path)?.len();
    if done > corpus.len() || len < done as u64 * row_bytes {
        // Not a checkpoint of this corpus after all: start over.
        done = 0;
    }
    file.set_len(done as u64 * row_bytes).at(&path)?;
    file.seek(SeekFrom::End(0)).at(&path)?;
    if done > 0 {
        progress.stage(
            &format!("resuming at passage {done}"),
            Some(corpus.len() as u64),
        );
    } else {
        progress.stage("encoding passages", Some(corpus.len() as u64));
    }
    progress.advance(done as u64);
    // `done` is a multiple of `every` (the folder's key names `every`), or the corpus length.
    let mut start = done;
    while start < corpus.len() {
        let end = (start + every).min(corpus.len());
        let texts: Vec<String> = (start..end)
            .map(|doc| corpus.get(doc as u32).expect("doc < len").prompt_text())
            .collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let rows = encoder.encode_passages_flat(&refs)?;
        let bytes: Vec<u8> = rows.iter().flat_map(|x| x.to_le_bytes()).collect();
        file.write_all(&bytes).at(&path)?;
        file.sync_data().at(&path)?;
        crate::atomic::write_file(&done_path, end.to_string().as_bytes())?;
        progress.advance(end as u64);
        start = end;
    }
    file.seek(SeekFrom::Start(0)).at(&path)?;
    let mut file = std::io::BufReader::new(file);
    let mut bytes = vec![0u8; every * dim * 4];
    let mut rows = Vec::with_capacity(every * dim);
    for first in (0..corpus.len()).step_by(every) {
        let n = every.min(corpus.len() - first);
        let bytes = &mut bytes[..n * dim * 4];
        file.read_exact(bytes).at(&path)?;
        rows.clear();
        rows.extend(
            bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes"))),
        );
        sink(first, &rows)?;
    }
    Ok(())
}

/// Removes the checkpoint folder `dir` (the set it served is in place).
pub(crate) fn remove(dir: &Path) {
    let _ = fs::remove_dir_all(dir);
}
