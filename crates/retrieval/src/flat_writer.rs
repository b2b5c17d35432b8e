//! Writing a flat index folder row chunk by row chunk ([`FlatWriter`]), for indexes that do
//! not fit in memory (a 21M × 384 padded index is 32 GB in f32, 16 GB in f16).
//!
//! The folder is the one [`FlatIndex::save`](crate::FlatIndex::save) writes, byte for byte (same files, same
//! manifest, same checksums): rows go to `vectors.f32` / `vectors.f16` and `ids.u32` in a
//! hidden sibling folder as they come, each file's sha256 computed on the way (no second
//! pass), and [`FlatWriter::finish`] writes the manifest, syncs the files and renames the
//! folder into place. A killed build leaves no partial index at the final path, and an index
//! already there is replaced only at that last rename; a writer dropped unfinished removes its
//! folder.
//!
//! The writer keeps the ids in memory (4 bytes a row) to check at the end that they are
//! distinct; nothing else grows with the index.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use half::f16;
use sha2::{Digest, Sha256};

use crate::atomic::Staging;
use crate::error::{IoContext, Result, RetrievalError};
use crate::ids::IdMap;
use crate::index::{FORMAT_VERSION, IDS, MANIFEST, Manifest};
use crate::metric::Metric;
use crate::padding::PaddingRecord;
use crate::slab::le_bytes;
use crate::vectors::{Precision, round_into};

/// Buffered bytes per file between writes to the OS.
const BUFFER: usize = 1 << 20;

/// A flat index folder being written (see the module docs).
#[derive(Debug)]
pub struct FlatWriter {
    staging: Staging,
    dim: usize,
    precision: Precision,
    metric: Metric,
    vectors: Sink,
    ids_file: Sink,
    ids: Vec<u32>,
    /// Rounded values of the chunk at hand (f16 only).
    halves: Vec<f16>,
    /// Set when a write failed: the files no longer match the rows pushed.
    broken: bool,
}

/// One file being written, with its running sha256.
#[derive(Debug)]
struct Sink {
    path: PathBuf,
    file: BufWriter<File>,
    sha: Sha256,
}

impl Sink {
    fn create(path: PathBuf) -> Result<Sink> {
        let file = File::create(&path).at(&path)?;
        Ok(Sink {
            file: BufWriter::with_capacity(BUFFER, file),
            path,
            sha: Sha256::new(),
        })
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.sha.update(bytes);
        self.file.write_all(bytes).at(&self.path)
    }

    /// Flushes the file and returns its sha256 (hex).
    fn finish(mut self) -> Result<String> {
        self.file.flush().at(&self.path)?;
        Ok(crate::hex(&self.sha.finalize()))
    }
}

impl FlatWriter {
    /// Starts an index of `dim`-value vectors stored in `precision`, to end up in the folder
    /// `dir` (created by [`FlatWriter::finish`]; its parent is created now).
    pub fn create(dir: &Path, dim: usize, precision: Precision) -> Result<FlatWriter> {
        if dim == 0 {
            return Err(RetrievalError::BadIndexData {
                reason: "dimension 0".into(),
            });
        }
        let staging = Staging::new(dir)?;
        let vectors = Sink::create(staging.path().join(precision.file_name()))?;
        let ids_file = Sink::create(staging.path().join(IDS))?;
        Ok(FlatWriter {
            staging,
            dim,
            precision,
            metric: Metric::InnerProduct,
            vectors,
            ids_file,
            ids: Vec::new(),
            halves: Vec::new(),
            broken: false,
        })
    }

    /// The index will rank by `metric` (default inner product); recorded in the manifest.
    pub fn with_metric(mut self, metric: Metric) -> FlatWriter {
        self.metric = metric;
        self
    }

    /// Values per vector.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// How the vectors are stored.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Rows pushed so far.
    pub fn rows(&self) -> usize {
        self.ids.len()
    }

    /// Appends `ids.len()` rows: `rows` holds their `ids.len() × dim` values, row-major, all
    /// finite, rounded here to the writer's precision (f16: as
    /// [`FlatIndex::to_precision`](crate::FlatIndex::to_precision) does). A bad chunk is an error and writes nothing.
    pub fn push(&mut self, rows: &[f32], ids: &[u32]) -> Result<()> {
        let bad = |reason: String| RetrievalError::BadIndexData { reason };
        if self.broken {
            return Err(bad("an earlier write to this index failed".into()));
        }
        if rows.len() != ids.len() * self.dim {
            return Err(bad(format!(
                "{} values for {} ids of dimension {}",
                rows.len(),
                ids.len(),
                self.dim
            )));
        }
        if let Some(i) = rows.iter().position(|x| !x.is_finite()) {
            return Err(bad(format!(
                "row {} holds a non-finite value",
                self.ids.len() + i / self.dim
            )));
        }
        self.broken = true; // until both writes are through
        match self.precision {
            Precision::F32 => self.vectors.write(&le_bytes(rows))?,
            Precision::F16 => {
                self.halves.resize(rows.len(), f16::ZERO);
                round_into(rows, &mut self.halves);
                self.vectors.write(&le_bytes(&self.halves))?;
            }
        }
        self.ids_file.write(&le_bytes(ids))?;
        self.ids.extend_from_slice(ids);
        self.broken = false;
        Ok(())
    }

    /// Checks the ids are distinct and `padding` (if any) fits, writes the manifest (kind
    /// `flat`, recording `corpus_hash`, `encoder` and `padding`), syncs every file and moves
    /// the folder to its final path, replacing any index there. On an error nothing is left
    /// behind and the final path is untouched.
    pub fn finish(
        self,
        corpus_hash: &str,
        encoder: &str,
        padding: Option<PaddingRecord>,
    ) -> Result<Manifest> {
        let bad = |reason: String| RetrievalError::BadIndexData { reason };
        if self.broken {
            return Err(bad("an earlier write to this index failed".into()));
        }
        if let Err(id) = IdMap::new(&self.ids) {
            return Err(bad(format!("id {id} appears twice")));
        }
        let count = self.ids.len();
        if let Some(p) = &padding
            && (p.total != count || !p.noise.is_finite())
        {
            return Err(bad(format!(
                "padding to {} (noise {}) does not fit {count} vectors",
                p.total, p.noise
            )));
        }
        let manifest = Manifest {
            format_version: FORMAT_VERSION,
            kind: "flat".into(),
            corpus_hash: corpus_hash.into(),
            encoder: encoder.into(),
            dims: self.dim,
            count,
            vectors_sha256: self.vectors.finish()?,
            ids_sha256: self.ids_file.finish()?,
            padding,
            hnsw: None,
            metric: self.metric,
            precision: self.precision,
        };
        let json = serde_json::to_vec_pretty(&manifest).expect("a manifest serialises");
        let path = self.staging.path().join(MANIFEST);
        std::fs::write(&path, json).at(&path)?;
        self.staging.commit()?;
        Ok(manifest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flat::FlatIndex;
    use crate::index::Expect;
    use crate::retriever::{Query, Retriever};

    fn rows(n: usize, dim: usize) -> Vec<f32> {
        (0..n * dim)
            .map(|i| (i as f32 * 0.377).sin() * 0.8)
            .collect()
    }

    const EXPECT: Expect<'static> = Expect {
        corpus_hash: "c",
        encoder: "e",
    };

    #[test]
    fn writes_what_save_writes_in_both_precisions() {
        let (n, dim) = (1000, 12);
        let v = rows(n, dim);
        let ids: Vec<u32> = (0..n as u32).map(|i| 7 * i + 3).collect();
        let f32_index = FlatIndex::new(dim, v.clone(), ids.clone()).unwrap();
        let root = tempfile::tempdir().unwrap();
        for precision in [Precision::F32, Precision::F16] {
            let index = f32_index.to_precision(precision);
            let saved = index.save(&root.path().join("saved"), "c", "e").unwrap();
            let dir = root.path().join("written");
            let mut w = FlatWriter::create(&dir, dim, precision).unwrap();
            for (chunk, id_chunk) in v.chunks(97 * dim).zip(ids.chunks(97)) {
                w.push(chunk, id_chunk).unwrap();
            }
            assert_eq!(w.rows(), n);
            let written = w.finish("c", "e", None).unwrap();
            assert_eq!(written, saved);
            for file in [MANIFEST, IDS, precision.file_name()] {
                let a = std::fs::read(root.path().join("saved").join(file)).unwrap();
                assert_eq!(a, std::fs::read(dir.join(file)).unwrap(), "{file}");
            }
            let (back, _) = FlatIndex::load(&dir, &EXPECT).unwrap();
            assert_eq!(back.precision(), precision);
            let q = [Query::embedded("q", v[5 * dim..6 * dim].to_vec())];
            assert_eq!(back.search(&q, 5).unwrap(), index.search(&q, 5).unwrap());
        }
        let names: Vec<_> = std::fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
    }

    #[test]
    fn bad_rows_are_errors_and_nothing_is_left_behind() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("ix");
        assert!(FlatWriter::create(&dir, 0, Precision::F32).is_err());
        let mut w = FlatWriter::create(&dir, 2, Precision::F16).unwrap();
        assert!(w.push(&[1.0, 2.0, 3.0], &[1, 2]).is_err());
        let err = w.push(&[1.0, 2.0, 0.0, f32::NAN], &[1, 2]).unwrap_err();
        assert!(err.to_string().contains("row 1"), "{err}");
        w.push(&[1.0, 2.0, 0.5, 0.25], &[1, 2]).unwrap();
        w.push(&[1.0, 2.0], &[2]).unwrap();
        assert_eq!(w.rows(), 3);
        let err = w.finish("c", "e", None).unwrap_err();
        assert!(err.to_string().contains("id 2 appears twice"), "{err}");
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);

        // An index at the final path stays until a writer finishes; a dropped writer leaves
        // it as it was.
        let mut w = FlatWriter::create(&dir, 2, Precision::F32).unwrap();
        w.push(&[1.0, 0.0], &[4]).unwrap();
        w.finish("c", "e", None).unwrap();
        let mut w = FlatWriter::create(&dir, 2, Precision::F32).unwrap();
        w.push(&[0.0, 1.0, 0.5, 0.5], &[4, 5]).unwrap();
        assert_eq!(FlatIndex::load(&dir, &EXPECT).unwrap().0.len(), 1);
        drop(w);
        assert_eq!(FlatIndex::load(&dir, &EXPECT).unwrap().0.len(), 1);
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 1);
    }
}
