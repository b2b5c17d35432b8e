//! Flat indexes on disk. A folder holds:
//!
//! ```text
//! manifest.json   {format_version, kind: "flat", corpus_hash, encoder, dims, count,
//!                  vectors_sha256, ids_sha256}
//! vectors.f32     count × dims little-endian f32, row-major
//! ids.u32         count little-endian u32: the passage id of each row
//! ```
//!
//! Writes go to a hidden sibling folder that is renamed into place when complete, so a killed
//! build never leaves a partial index at the final path. Loads check everything: a missing,
//! truncated or corrupt file, or a manifest that does not match the corpus and encoder the
//! caller expects, is [`RetrievalError::BadIndex`] naming the file.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::corpus::Corpus;
use crate::encoder::{ENCODER_NAME, Encoder};
use crate::error::{IoContext, Result, RetrievalError};
use crate::flat::FlatIndex;

/// The on-disk format this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;
const MANIFEST: &str = "manifest.json";
const VECTORS: &str = "vectors.f32";
const IDS: &str = "ids.u32";

/// What an index folder says about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`FORMAT_VERSION`] of the writer.
    pub format_version: u32,
    /// `"flat"`.
    pub kind: String,
    /// [`Corpus::hash`] of the corpus the vectors were computed from.
    pub corpus_hash: String,
    /// The encoder's identity ([`ENCODER_NAME`]).
    pub encoder: String,
    /// Floats per vector.
    pub dims: usize,
    /// Number of vectors.
    pub count: usize,
    /// sha256 (hex) of `vectors.f32`.
    pub vectors_sha256: String,
    /// sha256 (hex) of `ids.u32`.
    pub ids_sha256: String,
}

/// What the caller expects a loaded index to have been built from.
#[derive(Clone, Debug)]
pub struct Expect<'a> {
    /// [`Corpus::hash`] of the corpus in use.
    pub corpus_hash: &'a str,
    /// The encoder in use.
    pub encoder: &'a str,
}

impl FlatIndex {
    /// Writes this index into the folder `dir` (replacing any index there) and returns its
    /// manifest. `corpus_hash` and `encoder` record what it was built from.
    pub fn save(&self, dir: &Path, corpus_hash: &str, encoder: &str) -> Result<Manifest> {
        let vectors: Vec<u8> = self
            .vectors()
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let ids: Vec<u8> = self.ids().iter().flat_map(|x| x.to_le_bytes()).collect();
        let manifest = Manifest {
            format_version: FORMAT_VERSION,
            kind: "flat".into(),
            corpus_hash: corpus_hash.into(),
            encoder: encoder.into(),
            dims: self.dim(),
            count: self.ids().len(),
            vectors_sha256: sha256(&vectors),
            ids_sha256: sha256(&ids),
        };
        let json = serde_json::to_vec_pretty(&manifest).expect("a manifest serialises");
        write_dir_atomically(dir, &[(VECTORS, &vectors), (IDS, &ids), (MANIFEST, &json)])?;
        Ok(manifest)
    }

    /// Loads the index in `dir`, checking every file against the manifest and the manifest
    /// against `expect`.
    pub fn load(dir: &Path, expect: &Expect<'_>) -> Result<(FlatIndex, Manifest)> {
        let manifest_path = dir.join(MANIFEST);
        let text = read(&manifest_path)?;
        let m: Manifest = serde_json::from_slice(&text)
            .map_err(|e| RetrievalError::bad_index(&manifest_path, format!("unreadable: {e}")))?;
        let mismatch = |what: &str, found: &dyn std::fmt::Display, want: &dyn std::fmt::Display| {
            RetrievalError::bad_index(
                &manifest_path,
                format!("{what} is {found}, expected {want} (rebuild the index)"),
            )
        };
        if m.format_version != FORMAT_VERSION {
            return Err(mismatch(
                "format_version",
                &m.format_version,
                &FORMAT_VERSION,
            ));
        }
        if m.kind != "flat" {
            return Err(mismatch("kind", &m.kind, &"flat"));
        }
        if m.corpus_hash != expect.corpus_hash {
            return Err(mismatch("corpus_hash", &m.corpus_hash, &expect.corpus_hash));
        }
        if m.encoder != expect.encoder {
            return Err(mismatch("encoder", &m.encoder, &expect.encoder));
        }
        let vectors = read_checked(&dir.join(VECTORS), m.count * m.dims * 4, &m.vectors_sha256)?;
        let ids = read_checked(&dir.join(IDS), m.count * 4, &m.ids_sha256)?;
        let vectors = vectors
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        let ids = ids
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        let index = FlatIndex::new(m.dims, vectors, ids)
            .map_err(|e| RetrievalError::bad_index(&dir.join(VECTORS), e.to_string()))?;
        Ok((index, m))
    }

    /// The flat MiniLM index of `corpus` in `dir`: loaded when a manifest is there (and then it
    /// must match), otherwise built with `encoder` and saved.
    pub fn open_or_build(dir: &Path, encoder: &Encoder, corpus: &Corpus) -> Result<FlatIndex> {
        let hash = corpus.hash();
        if dir.join(MANIFEST).exists() {
            let expect = Expect {
                corpus_hash: &hash,
                encoder: ENCODER_NAME,
            };
            return Ok(FlatIndex::load(dir, &expect)?.0);
        }
        let index = FlatIndex::build(encoder, corpus)?;
        index.save(dir, &hash, ENCODER_NAME)?;
        Ok(index)
    }
}

pub(crate) fn sha256(bytes: &[u8]) -> String {
    crate::hex(&Sha256::digest(bytes))
}

/// Reads a whole index file; a missing one is [`RetrievalError::BadIndex`] saying so.
pub(crate) fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|e| missing_or(path, e))
}

/// [`RetrievalError::BadIndex`] for an I/O error on an index file ("missing" when not found).
pub(crate) fn missing_or(path: &Path, e: std::io::Error) -> RetrievalError {
    RetrievalError::bad_index(
        path,
        if e.kind() == std::io::ErrorKind::NotFound {
            "missing".to_owned()
        } else {
            e.to_string()
        },
    )
}

fn read_checked(path: &Path, len: usize, sha: &str) -> Result<Vec<u8>> {
    let bytes = read(path)?;
    if bytes.len() != len {
        return Err(RetrievalError::bad_index(
            path,
            format!(
                "{} bytes, the manifest says {len} (truncated?)",
                bytes.len()
            ),
        ));
    }
    let got = sha256(&bytes);
    if got != sha {
        return Err(RetrievalError::bad_index(
            path,
            format!("sha256 {got} does not match the manifest's {sha} (corrupt)"),
        ));
    }
    Ok(bytes)
}

/// Writes `files` into a fresh hidden sibling of `dir`, syncs them, then moves it to `dir`
/// (see [`build_dir_atomically`]).
fn write_dir_atomically(dir: &Path, files: &[(&str, &[u8])]) -> Result<()> {
    build_dir_atomically(dir, |tmp| {
        for (file, bytes) in files {
            let path = tmp.join(file);
            let mut f = fs::File::create(&path).at(&path)?;
            f.write_all(bytes).at(&path)?;
        }
        Ok(())
    })
}

/// Lets `fill` write a fresh hidden sibling folder of `dir` (`.<name>.tmp-<pid>`), syncs every
/// file in it, then renames it to `dir`; an existing `dir` is moved aside first and removed
/// after. When `fill` fails the temporary folder is removed and `dir` is left as it was.
pub(crate) fn build_dir_atomically(
    dir: &Path,
    fill: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = dir
        .file_name()
        .ok_or_else(|| RetrievalError::bad_index(dir, "not a folder name"))?
        .to_string_lossy()
        .into_owned();
    fs::create_dir_all(&parent).at(&parent)?;
    let pid = std::process::id();
    let tmp = parent.join(format!(".{name}.tmp-{pid}"));
    let old = parent.join(format!(".{name}.old-{pid}"));
    for stale in [&tmp, &old] {
        if stale.exists() {
            fs::remove_dir_all(stale).at(stale)?;
        }
    }
    fs::create_dir(&tmp).at(&tmp)?;
    let filled = fill(&tmp).and_then(|()| sync_folder(&tmp));
    if let Err(e) = filled {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    let had_old = dir.exists();
    if had_old {
        fs::rename(dir, &old).at(dir)?;
    }
    fs::rename(&tmp, dir).at(dir)?;
    if had_old {
        fs::remove_dir_all(&old).at(&old)?;
    }
    Ok(())
}

/// fsyncs every file directly in `dir`, then `dir` itself.
fn sync_folder(dir: &Path) -> Result<()> {
    for entry in fs::read_dir(dir).at(dir)? {
        let path = entry.at(dir)?.path();
        if path.is_file() {
            fs::File::open(&path).and_then(|f| f.sync_all()).at(&path)?;
        }
    }
    fs::File::open(dir).and_then(|f| f.sync_all()).at(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retriever::{Query, Retriever};

    fn small() -> FlatIndex {
        let v: Vec<f32> = (0..40).map(|i| (i as f32 * 0.37).sin()).collect();
        FlatIndex::new(4, v, (10..20).collect()).unwrap()
    }

    const EXPECT: Expect<'static> = Expect {
        corpus_hash: "abc",
        encoder: "enc",
    };

    #[test]
    fn round_trip_and_replace() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("ix");
        let ix = small();
        let m = ix.save(&dir, "abc", "enc").unwrap();
        assert_eq!((m.count, m.dims, m.kind.as_str()), (10, 4, "flat"));
        let (back, m2) = FlatIndex::load(&dir, &EXPECT).unwrap();
        assert_eq!(m, m2);
        assert_eq!(back.vectors(), ix.vectors());
        assert_eq!(back.ids(), ix.ids());
        let q = [Query::embedded("q", vec![0.5, -0.1, 0.2, 0.9])];
        assert_eq!(back.search(&q, 3).unwrap(), ix.search(&q, 3).unwrap());
        // Saving again replaces the folder and leaves no temporaries behind.
        ix.save(&dir, "abc", "enc").unwrap();
        let names: Vec<_> = fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("ix")]);
    }

    #[test]
    fn damaged_or_mismatched_index_names_the_file() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("ix");
        small().save(&dir, "abc", "enc").unwrap();
        let check = |file: &str, want: &str, expect: &Expect<'_>| {
            let err = FlatIndex::load(&dir, expect).unwrap_err();
            let msg = err.to_string();
            assert!(matches!(err, RetrievalError::BadIndex { .. }), "{msg}");
            assert!(msg.contains(&dir.join(file).display().to_string()), "{msg}");
            assert!(msg.contains(want), "{msg}");
        };
        check(
            MANIFEST,
            "corpus_hash is abc, expected xyz",
            &Expect {
                corpus_hash: "xyz",
                encoder: "enc",
            },
        );
        check(
            MANIFEST,
            "encoder is enc",
            &Expect {
                corpus_hash: "abc",
                encoder: "other",
            },
        );

        let vectors = dir.join(VECTORS);
        let mut bytes = fs::read(&vectors).unwrap();
        bytes[17] ^= 0x40;
        fs::write(&vectors, &bytes).unwrap();
        check(VECTORS, "corrupt", &EXPECT);
        fs::write(&vectors, &bytes[..100]).unwrap();
        check(VECTORS, "truncated", &EXPECT);
        fs::remove_file(&vectors).unwrap();
        check(VECTORS, "missing", &EXPECT);

        fs::write(dir.join(MANIFEST), b"{\"format_version\": 1").unwrap();
        check(MANIFEST, "unreadable", &EXPECT);
        fs::remove_file(dir.join(MANIFEST)).unwrap();
        check(MANIFEST, "missing", &EXPECT);
    }
}
