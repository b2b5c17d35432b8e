//! Dense indexes on disk. A folder holds:
//!
//! ```text
//! manifest.json     {format_version, kind: "flat" | "hnsw", corpus_hash, encoder, dims, count,
//!                    vectors_sha256, ids_sha256, padding, hnsw, metric?, precision?}
//! vectors.f32       count × dims little-endian f32, row-major (precision f32, the default)
//! vectors.f16       count × dims little-endian IEEE f16, row-major (precision "f16")
//! ids.u32           count little-endian u32: the passage id of each row
//! hnsw_levels.u8    (hnsw) the level of each row
//! hnsw_layer0.u32   (hnsw) count × 2M links on level 0, u32::MAX after the last
//! hnsw_upper.u32    (hnsw) M links per level 1..=L of each row of level L ≥ 1, in row order
//! ```
//!
//! `padding` is null or the [`PaddingRecord`] of a padded index (what was added, the seed, the
//! noise); `hnsw` is null or the graph's [`HnswRecord`] (parameters, entry, checksums).
//! `metric` and `precision` are left out at their defaults (inner product, f32), so folders
//! written before they existed load unchanged; `vectors_sha256` is that of the one vectors
//! file the precision names. HNSW folders are f32 only.
//!
//! Writes go to a hidden sibling folder that is renamed into place when complete, so a killed
//! build never leaves a partial index at the final path; checksums are computed while writing.
//! [`FlatWriter`](crate::flat_writer::FlatWriter) writes a flat folder row chunk by row chunk
//! the same way, for indexes larger than memory.
//!
//! Loads memory-map the vectors file and `hnsw_layer0.u32` (a 1M × 384 index opens in
//! milliseconds and pages in as searches touch it) and read the small files. What is checked
//! depends on [`Verify`]: always the manifest (format version, kind, corpus hash, encoder,
//! parameters), every file's presence and exact size, and the sha256 of every file read into
//! memory; with [`Verify::Full`] also the sha256 of the mapped files (~1 s per GB here), which
//! is what [`FlatIndex::load`] and [`HnswIndex::load`] do. [`Verify::Sizes`] trusts the large
//! files' contents (they were checksummed when written; run a full verify after copying an
//! index): a damaged graph then gives poor answers, never out-of-bounds reads. Any failure is
//! [`RetrievalError::BadIndex`] naming the file. Version-1 folders (flat, unpadded) still load.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::corpus::Corpus;
use crate::encoder::{ENCODER_NAME, Encoder};
use crate::error::{IoContext, Result, RetrievalError};
use crate::files::{missing_or, read, read_json};
use crate::flat::FlatIndex;
use crate::hnsw::graph::{EMPTY, Graph};
use crate::hnsw::{HnswIndex, HnswParams};
use crate::metric::Metric;
use crate::padding::PaddingRecord;
use crate::retriever::Retriever as _;
use crate::slab::{Plain, Slab, decode, le_bytes};
use crate::vectors::{Precision, Table};

/// The on-disk format this code writes (it also reads version 1: flat, unpadded).
pub const FORMAT_VERSION: u32 = 2;
pub(crate) const MANIFEST: &str = "manifest.json";
pub(crate) const IDS: &str = "ids.u32";
const LEVELS: &str = "hnsw_levels.u8";
const LAYER0: &str = "hnsw_layer0.u32";
const UPPER: &str = "hnsw_upper.u32";

/// What an index folder says about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`FORMAT_VERSION`] of the writer.
    pub format_version: u32,
    /// `"flat"` or `"hnsw"` (an HNSW folder is also a valid flat index).
    pub kind: String,
    /// [`Corpus::hash`] of the corpus the vectors were computed from (the real corpus, for a
    /// padded index).
    pub corpus_hash: String,
    /// The encoder's identity ([`ENCODER_NAME`]).
    pub encoder: String,
    /// Values per vector.
    pub dims: usize,
    /// Number of vectors.
    pub count: usize,
    /// sha256 (hex) of the vectors file (`vectors.f32` or `vectors.f16`, see `precision`).
    pub vectors_sha256: String,
    /// sha256 (hex) of `ids.u32`.
    pub ids_sha256: String,
    /// How the index was padded beyond its corpus (null: not padded).
    #[serde(default)]
    pub padding: Option<PaddingRecord>,
    /// The HNSW graph (null: flat only).
    #[serde(default)]
    pub hnsw: Option<HnswRecord>,
    /// What the index ranks by (absent: inner product).
    #[serde(default, skip_serializing_if = "Metric::is_inner_product")]
    pub metric: Metric,
    /// How the vectors are stored (absent: f32).
    #[serde(default, skip_serializing_if = "Precision::is_f32")]
    pub precision: Precision,
}

/// The HNSW part of a manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HnswRecord {
    /// The build parameters (`ef_search`: the default for searches).
    pub params: HnswParams,
    /// The entry row.
    pub entry: u32,
    /// The highest level.
    pub max_level: u8,
    /// Number of u32 in `hnsw_upper.u32`.
    pub upper_len: usize,
    /// sha256 (hex) of `hnsw_levels.u8`.
    pub levels_sha256: String,
    /// sha256 (hex) of `hnsw_layer0.u32`.
    pub layer0_sha256: String,
    /// sha256 (hex) of `hnsw_upper.u32`.
    pub upper_sha256: String,
}

/// What the caller expects a loaded index to have been built from.
#[derive(Clone, Debug)]
pub struct Expect<'a> {
    /// [`Corpus::hash`] of the corpus in use.
    pub corpus_hash: &'a str,
    /// The encoder in use.
    pub encoder: &'a str,
}

/// How much of an index's contents a load checks (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verify {
    /// The sha256 of every file.
    Full,
    /// Sizes of every file and the sha256 of the small ones; the mapped files are trusted.
    Sizes,
}

impl FlatIndex {
    /// Writes this index into the folder `dir` (replacing any index there) and returns its
    /// manifest. `corpus_hash` and `encoder` record what it was built from.
    pub fn save(&self, dir: &Path, corpus_hash: &str, encoder: &str) -> Result<Manifest> {
        let (mut manifest, ids) = self.manifest(corpus_hash, encoder);
        manifest.kind = "flat".into();
        let json = serde_json::to_vec_pretty(&manifest).expect("a manifest serialises");
        let vectors = self.table().le_bytes();
        let name = self.precision().file_name();
        write_dir_atomically(dir, &[(name, &vectors), (IDS, &ids), (MANIFEST, &json)])?;
        Ok(manifest)
    }

    /// The manifest of this index (kind left empty) and the bytes of `ids.u32`.
    fn manifest(&self, corpus_hash: &str, encoder: &str) -> (Manifest, Vec<u8>) {
        let ids = le_bytes(self.ids()).into_owned();
        let manifest = Manifest {
            format_version: FORMAT_VERSION,
            kind: String::new(),
            corpus_hash: corpus_hash.into(),
            encoder: encoder.into(),
            dims: self.dim(),
            count: self.ids().len(),
            vectors_sha256: sha256(&self.table().le_bytes()),
            ids_sha256: sha256(&ids),
            padding: self.padding().cloned(),
            hnsw: None,
            metric: self.metric(),
            precision: self.precision(),
        };
        (manifest, ids)
    }

    /// Loads the index in `dir` (flat or HNSW), checking every file against the manifest and
    /// the manifest against `expect`. The vectors are memory-mapped.
    pub fn load(dir: &Path, expect: &Expect<'_>) -> Result<(FlatIndex, Manifest)> {
        FlatIndex::open(dir, expect, Verify::Full)
    }

    /// [`FlatIndex::load`] checking as much as `verify` says.
    pub fn open(dir: &Path, expect: &Expect<'_>, verify: Verify) -> Result<(FlatIndex, Manifest)> {
        let m = read_manifest(dir, expect)?;
        let flat = open_flat(dir, &m, verify)?;
        Ok((flat, m))
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

impl HnswIndex {
    /// Writes this index (vectors, ids and graph) into the folder `dir`, replacing any index
    /// there, and returns its manifest.
    pub fn save(&self, dir: &Path, corpus_hash: &str, encoder: &str) -> Result<Manifest> {
        let flat = self.flat();
        let g = self.graph();
        let (mut manifest, ids) = flat.manifest(corpus_hash, encoder);
        manifest.kind = "hnsw".into();
        let layer0 = le_bytes(g.layer0.as_slice());
        let upper = le_bytes(&g.upper);
        manifest.hnsw = Some(HnswRecord {
            params: *self.params(),
            entry: g.entry,
            max_level: g.max_level,
            upper_len: g.upper.len(),
            levels_sha256: sha256(&g.levels),
            layer0_sha256: sha256(&layer0),
            upper_sha256: sha256(&upper),
        });
        let json = serde_json::to_vec_pretty(&manifest).expect("a manifest serialises");
        write_dir_atomically(
            dir,
            &[
                (flat.precision().file_name(), &flat.table().le_bytes()),
                (IDS, &ids),
                (LEVELS, &g.levels),
                (LAYER0, &layer0),
                (UPPER, &upper),
                (MANIFEST, &json),
            ],
        )?;
        Ok(manifest)
    }

    /// Loads the HNSW index in `dir`, checking every file (sha256 included).
    pub fn load(dir: &Path, expect: &Expect<'_>) -> Result<(HnswIndex, Manifest)> {
        HnswIndex::open(dir, expect, Verify::Full)
    }

    /// [`HnswIndex::load`] checking as much as `verify` says.
    pub fn open(dir: &Path, expect: &Expect<'_>, verify: Verify) -> Result<(HnswIndex, Manifest)> {
        let m = read_manifest(dir, expect)?;
        let manifest_path = dir.join(MANIFEST);
        let Some(h) = &m.hnsw else {
            return Err(RetrievalError::bad_index(
                &manifest_path,
                format!("kind is {}, expected hnsw (no graph in this index)", m.kind),
            ));
        };
        if !m.precision.is_f32() {
            return Err(RetrievalError::bad_index(
                &manifest_path,
                format!("precision is {}, HNSW indexes are f32 only", m.precision),
            ));
        }
        let flat = open_flat(dir, &m, verify)?;
        let n = m.count;
        let levels = read_checked(&dir.join(LEVELS), n, &h.levels_sha256)?;
        let (upper_start, upper_len) = Graph::upper_layout(&levels, h.params.m);
        let upper_path = dir.join(UPPER);
        if upper_len != h.upper_len {
            return Err(RetrievalError::bad_index(
                &dir.join(LEVELS),
                format!(
                    "levels need {upper_len} upper links, the manifest says {}",
                    h.upper_len
                ),
            ));
        }
        let upper: Vec<u32> = decode(&read_checked(&upper_path, upper_len * 4, &h.upper_sha256)?);
        let layer0 = map_checked::<u32>(
            &dir.join(LAYER0),
            n * 2 * h.params.m,
            &h.layer0_sha256,
            verify,
        )?;
        let bad_graph = |why: String| RetrievalError::bad_index(&manifest_path, why);
        if n > 0 {
            let top = levels.iter().copied().max().unwrap_or(0);
            if h.entry as usize >= n
                || levels[h.entry as usize] != h.max_level
                || top != h.max_level
            {
                return Err(bad_graph(format!(
                    "entry {} / max_level {} do not fit the levels file",
                    h.entry, h.max_level
                )));
            }
        }
        if let Some(bad) = upper.iter().find(|&&l| l != EMPTY && l as usize >= n) {
            return Err(RetrievalError::bad_index(
                &upper_path,
                format!("link to row {bad} of {n}"),
            ));
        }
        let graph = Graph {
            m: h.params.m,
            m0: 2 * h.params.m,
            entry: h.entry,
            max_level: h.max_level,
            levels,
            layer0,
            upper_start,
            upper,
        };
        let index =
            HnswIndex::from_parts(flat, graph, h.params).map_err(|e| bad_graph(e.to_string()))?;
        Ok((index, m))
    }

    /// The HNSW index over `flat` in `dir`: loaded (sizes checked, [`Verify::Sizes`]) when a
    /// manifest is there, which must then match `expect`, `flat`'s size and padding and
    /// `params` (but for `ef_search`, which is set to `params`'); otherwise built and saved.
    pub fn open_or_build(
        dir: &Path,
        expect: &Expect<'_>,
        flat: &FlatIndex,
        params: HnswParams,
    ) -> Result<HnswIndex> {
        if dir.join(MANIFEST).exists() {
            let (mut index, m) = HnswIndex::open(dir, expect, Verify::Sizes)?;
            let built = m.hnsw.as_ref().map(|h| h.params);
            let same = |p: HnswParams| HnswParams { ef_search: 0, ..p };
            if m.count != flat.len()
                || m.padding.as_ref() != flat.padding()
                || built.map(same) != Some(same(params))
            {
                return Err(RetrievalError::bad_index(
                    &dir.join(MANIFEST),
                    format!(
                        "holds {} vectors, padding {:?}, parameters {built:?}; wanted {}, {:?}, {params:?} (remove it to rebuild)",
                        m.count,
                        m.padding.as_ref().map(|p| &p.description),
                        flat.len(),
                        flat.padding().map(|p| &p.description)
                    ),
                ));
            }
            index.set_ef_search(params.ef_search);
            return Ok(index);
        }
        let index = HnswIndex::build(flat.clone(), params)?;
        index.save(dir, expect.corpus_hash, expect.encoder)?;
        Ok(index)
    }
}

/// Reads `dir`'s manifest and checks it against `expect`.
fn read_manifest(dir: &Path, expect: &Expect<'_>) -> Result<Manifest> {
    let manifest_path = dir.join(MANIFEST);
    let m: Manifest = read_json(&manifest_path, &[1, FORMAT_VERSION], |m: &Manifest| {
        m.format_version
    })?;
    let mismatch = |what: &str, found: &dyn std::fmt::Display, want: &dyn std::fmt::Display| {
        RetrievalError::bad_index(
            &manifest_path,
            format!("{what} is {found}, expected {want} (rebuild the index)"),
        )
    };
    let want_kind = if m.hnsw.is_some() { "hnsw" } else { "flat" };
    if m.kind != want_kind {
        return Err(mismatch("kind", &m.kind, &want_kind));
    }
    if m.corpus_hash != expect.corpus_hash {
        return Err(mismatch("corpus_hash", &m.corpus_hash, &expect.corpus_hash));
    }
    if m.encoder != expect.encoder {
        return Err(mismatch("encoder", &m.encoder, &expect.encoder));
    }
    if let Some(p) = &m.padding
        && (p.total != m.count || !p.noise.is_finite())
    {
        return Err(RetrievalError::bad_index(
            &manifest_path,
            format!("padding to {} does not fit {} vectors", p.total, m.count),
        ));
    }
    Ok(m)
}

/// The vectors and ids of the index `m` describes.
fn open_flat(dir: &Path, m: &Manifest, verify: Verify) -> Result<FlatIndex> {
    let path = dir.join(m.precision.file_name());
    let (len, sha) = (m.count * m.dims, &m.vectors_sha256);
    let vectors = match m.precision {
        Precision::F32 => Table::F32(map_checked(&path, len, sha, verify)?),
        Precision::F16 => Table::F16(map_checked(&path, len, sha, verify)?),
    };
    let ids = decode(&read_checked(&dir.join(IDS), m.count * 4, &m.ids_sha256)?);
    if verify == Verify::Full
        && let Some(i) = vectors.first_non_finite()
    {
        return Err(RetrievalError::bad_index(
            &path,
            format!("row {} holds a non-finite value", i / m.dims.max(1)),
        ));
    }
    Ok(
        FlatIndex::from_parts(m.dims, vectors, ids, m.padding.clone())
            .map_err(|e| RetrievalError::bad_index(&dir.join(IDS), e.to_string()))?
            .with_metric(m.metric),
    )
}

/// Maps `path`, which must hold `len` values, checking its sha256 when `verify` is full.
fn map_checked<T: Plain>(path: &Path, len: usize, sha: &str, verify: Verify) -> Result<Slab<T>> {
    let file = File::open(path).map_err(|e| missing_or(path, e))?;
    let size = file.metadata().at(path)?.len();
    if size != (len * T::SIZE) as u64 {
        return Err(RetrievalError::bad_index(
            path,
            format!(
                "{size} bytes, the manifest says {} (truncated?)",
                len * T::SIZE
            ),
        ));
    }
    let slab = Slab::<T>::map(path, &file, len)?;
    if verify == Verify::Full {
        check_sha(path, &le_bytes(slab.as_slice()), sha)?;
    }
    Ok(slab)
}

/// sha256 of `bytes` as lower-case hex (the checksums of every index and datastore manifest).
pub fn sha256(bytes: &[u8]) -> String {
    crate::hex(&Sha256::digest(bytes))
}

fn check_sha(path: &Path, bytes: &[u8], sha: &str) -> Result<()> {
    let got = sha256(bytes);
    check_digest(path, &got, sha)
}

/// `got` (a sha256 in hex) must be the manifest's `sha`.
pub(crate) fn check_digest(path: &Path, got: &str, sha: &str) -> Result<()> {
    if got != sha {
        return Err(RetrievalError::bad_index(
            path,
            format!("sha256 {got} does not match the manifest's {sha} (corrupt)"),
        ));
    }
    Ok(())
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
    check_sha(path, &bytes, sha)?;
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

/// Lets `fill` write a fresh hidden sibling folder of `dir`, then swaps it into place whole
/// ([`crate::atomic`]); when `fill` fails `dir` is left as it was.
pub fn build_dir_atomically(dir: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    crate::atomic::build_dir(dir, fill)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retriever::{Query, Retriever};

    const VECTORS: &str = "vectors.f32";

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
    fn f16_round_trip_and_damage() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("ix");
        let ix = small().with_metric(Metric::L2).to_precision(Precision::F16);
        let m = ix.save(&dir, "abc", "enc").unwrap();
        assert_eq!((m.precision, m.metric), (Precision::F16, Metric::L2));
        let json = fs::read_to_string(dir.join(MANIFEST)).unwrap();
        assert!(json.contains("\"precision\": \"f16\""), "{json}");
        assert!(!dir.join("vectors.f32").exists());
        assert_eq!(
            fs::metadata(dir.join("vectors.f16")).unwrap().len(),
            10 * 4 * 2
        );
        for verify in [Verify::Full, Verify::Sizes] {
            let (back, m2) = FlatIndex::open(&dir, &EXPECT, verify).unwrap();
            assert_eq!(m, m2);
            assert!(back.is_mapped());
            assert_eq!(
                (back.precision(), back.metric()),
                (Precision::F16, Metric::L2)
            );
            assert_eq!(back.vectors_f16(), ix.vectors_f16());
            let q = [Query::embedded("q", vec![0.5, -0.1, 0.2, 0.9])];
            assert_eq!(back.search(&q, 4).unwrap(), ix.search(&q, 4).unwrap());
        }
        let err = HnswIndex::open(&dir, &EXPECT, Verify::Full).unwrap_err();
        assert!(err.to_string().contains("kind is flat"), "{err}");

        // f32 manifests do not mention precision (older readers still load them).
        let f32_dir = root.path().join("f32");
        small().save(&f32_dir, "abc", "enc").unwrap();
        let json = fs::read_to_string(f32_dir.join(MANIFEST)).unwrap();
        assert!(!json.contains("precision"), "{json}");

        let vectors = dir.join("vectors.f16");
        let good = fs::read(&vectors).unwrap();
        let mut bytes = good.clone();
        bytes[9] ^= 0x04;
        fs::write(&vectors, &bytes).unwrap();
        let err = FlatIndex::load(&dir, &EXPECT).unwrap_err();
        assert!(err.to_string().contains("vectors.f16") && err.to_string().contains("corrupt"));
        // Sizes trusts the contents; Full also rejects a non-finite value with a matching sum.
        assert!(FlatIndex::open(&dir, &EXPECT, Verify::Sizes).is_ok());
        fs::write(&vectors, &good[..good.len() - 2]).unwrap();
        for verify in [Verify::Full, Verify::Sizes] {
            let err = FlatIndex::open(&dir, &EXPECT, verify).unwrap_err();
            assert!(err.to_string().contains("truncated"), "{err}");
        }
        let mut inf = good.clone();
        inf[2..4].copy_from_slice(&half::f16::INFINITY.to_le_bytes());
        fs::write(&vectors, &inf).unwrap();
        let mut m_inf = m.clone();
        m_inf.vectors_sha256 = sha256(&inf);
        fs::write(dir.join(MANIFEST), serde_json::to_vec(&m_inf).unwrap()).unwrap();
        let err = FlatIndex::load(&dir, &EXPECT).unwrap_err();
        assert!(err.to_string().contains("non-finite"), "{err}");
        fs::remove_file(&vectors).unwrap();
        let err = FlatIndex::load(&dir, &EXPECT).unwrap_err();
        assert!(err.to_string().contains("vectors.f16: missing"), "{err}");
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
