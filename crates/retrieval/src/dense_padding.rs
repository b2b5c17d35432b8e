//! Vectors for padding passages, so that a dense index can be grown to paper-like sizes
//! (`--pad-to N`) without encoding a million texts (MiniLM runs at ~19 passages/s here).
//!
//! Padding passage `id` is one sentence from each of [`Padding::sources`]'s real passages, so
//! its vector is the normalised mean of its sources' vectors plus a little seeded noise:
//! `normalize(mean(v_s) + n)`, with `n` uniform per component, seeded by `(seed, id)` and
//! scaled to `noise × |mean(v_s)|` in length. Such vectors sit among the real ones the way
//! real text would (they can and do outrank real passages), and each is a pure function of the
//! real vectors, the seed and the id: two builds agree bit for bit, whatever the threads.
//!
//! The index remembers how it was padded ([`PaddingRecord`]) and writes it in its manifest.
//!
//! Two ways to pad: [`FlatIndex::pad`] in memory, and [`write_padded`], which streams the
//! real rows and then the padding rows, [`CHUNK_ROWS`] at a time (each chunk computed in
//! parallel), into a [`FlatWriter`]: memory stays at the real index plus one chunk, which is
//! what a 21M-row index needs. Both compute each padding vector by the same function in f32,
//! from the real rows as f32 (widened exactly when the real index is f16), so they agree bit
//! for bit before any rounding to the stored precision.

use rayon::prelude::*;

use crate::error::{Result, RetrievalError};
use crate::flat::FlatIndex;
use crate::flat_writer::FlatWriter;
use crate::padding::{Padding, PaddingRecord, SOURCES, splitmix64};
use crate::vectors::{Precision, Table};

/// The default length of the noise added to a padding vector, relative to its mean vector.
pub const DEFAULT_NOISE: f32 = 0.1;

impl FlatIndex {
    /// This index grown with the passages of `padding`: the rows of `self` (which must be the
    /// real corpus, in corpus order, as [`FlatIndex::build`] makes it) followed by one vector
    /// per padding id. `noise` ≥ 0 is the relative noise length ([`DEFAULT_NOISE`]).
    /// The result has `self`'s precision (an f16 index's padding vectors are computed in f32
    /// from its widened rows, then rounded) and inner product as its metric.
    pub fn pad(&self, padding: &Padding, noise: f32) -> Result<FlatIndex> {
        let real = check(self, padding, noise)?;
        let dim = self.dim();
        let mut vectors = vec![0.0; padding.total() * dim];
        let mut buf = Vec::new();
        for (r, out) in vectors[..real * dim].chunks_exact_mut(dim).enumerate() {
            out.copy_from_slice(self.row_into(r, &mut buf).expect("a row of the index"));
        }
        padding_rows(self, padding, noise, 0, &mut vectors[real * dim..]);
        let mut ids = self.ids().to_vec();
        ids.extend(padding.ids());
        let record = PaddingRecord::new(padding, noise);
        let padded = FlatIndex::from_parts(dim, Table::F32(vectors.into()), ids, Some(record))?;
        Ok(match self.precision() {
            Precision::F32 => padded,
            other => padded.to_precision(other),
        })
    }
}

/// Rows per chunk of [`write_padded`]: 65,536 × 384 f32 is 96 MiB.
pub const CHUNK_ROWS: usize = 1 << 16;

/// Writes `real` (the real corpus's index, unpadded, in corpus order, any precision) followed
/// by the padding vectors of `padding` into `writer` (empty, of `real`'s dimension), in chunks
/// of [`CHUNK_ROWS`] rows, calling `progress(rows written, total rows)` after each. The
/// vectors are those [`FlatIndex::pad`] computes, bit for bit, before the writer rounds them to
/// its precision. Finish the writer with `Some(PaddingRecord::new(padding, noise))`.
pub fn write_padded(
    real: &FlatIndex,
    padding: &Padding,
    noise: f32,
    writer: &mut FlatWriter,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<()> {
    let n_real = check(real, padding, noise)?;
    let bad = |reason: String| RetrievalError::BadIndexData { reason };
    let dim = real.dim();
    if writer.dim() != dim {
        return Err(bad(format!(
            "the writer takes vectors of dimension {}, the index holds {dim}",
            writer.dim()
        )));
    }
    if writer.rows() != 0 {
        return Err(bad(format!(
            "the writer already holds {} rows; a padded index starts with the real ones",
            writer.rows()
        )));
    }
    let total = padding.total();
    let mut chunk: Vec<f32> = Vec::with_capacity(CHUNK_ROWS.min(total) * dim);
    let mut buf = Vec::new();
    for start in (0..n_real).step_by(CHUNK_ROWS) {
        let rows = start..(start + CHUNK_ROWS).min(n_real);
        let ids = &real.ids()[rows.clone()];
        match real.precision() {
            Precision::F32 => {
                writer.push(&real.vectors()[rows.start * dim..rows.end * dim], ids)?
            }
            Precision::F16 => {
                chunk.clear();
                for r in rows.clone() {
                    chunk.extend_from_slice(real.row_into(r, &mut buf).expect("a row"));
                }
                writer.push(&chunk, ids)?;
            }
        }
        progress(rows.end, total);
    }
    let first = padding.ids().start;
    for start in (0..padding.count()).step_by(CHUNK_ROWS) {
        let n = CHUNK_ROWS.min(padding.count() - start);
        chunk.clear();
        chunk.resize(n * dim, 0.0);
        padding_rows(real, padding, noise, start, &mut chunk);
        let ids: Vec<u32> = (first + start as u32..).take(n).collect();
        writer.push(&chunk, &ids)?;
        progress(n_real + start + n, total);
    }
    Ok(())
}

/// Checks that `real` can be padded by `padding` with `noise`; returns its number of rows.
fn check(real: &FlatIndex, padding: &Padding, noise: f32) -> Result<usize> {
    let bad = |reason: String| RetrievalError::BadIndexData { reason };
    let n_real = padding.total() - padding.count();
    if real.padding().is_some() {
        return Err(bad("the index is already padded".into()));
    }
    if real.ids().len() != n_real {
        return Err(bad(format!(
            "padding is for a corpus of {n_real} passages, the index holds {}",
            real.ids().len()
        )));
    }
    if !(noise.is_finite() && noise >= 0.0) {
        return Err(bad(format!("noise {noise} is not a finite value ≥ 0")));
    }
    Ok(n_real)
}

/// Writes the vectors of padding passages `start..` (counted from the first padding id) into
/// `out` (whole rows), in parallel; each thread widens source rows into its own scratch.
fn padding_rows(real: &FlatIndex, padding: &Padding, noise: f32, start: usize, out: &mut [f32]) {
    let dim = real.dim();
    let first = padding.ids().start + start as u32;
    out.par_chunks_mut(dim).enumerate().for_each_init(
        || vec![0.0; SOURCES * dim],
        |scratch, (i, out)| {
            let id = first + i as u32;
            let rows = padding.sources(id);
            let mut bufs = scratch.chunks_exact_mut(dim);
            let sources: [&[f32]; SOURCES] = std::array::from_fn(|s| {
                let buf = bufs.next().expect("SOURCES rows of scratch");
                real.row_f32(rows[s], buf)
            });
            padding_vector(&sources, padding.seed(), id, noise, out);
        },
    );
}

/// Writes `normalize(mean(sources) + noise)` into `out`.
fn padding_vector(sources: &[&[f32]], seed: u64, id: u32, noise: f32, out: &mut [f32]) {
    let inv = 1.0 / sources.len() as f32;
    for (j, o) in out.iter_mut().enumerate() {
        *o = sources.iter().fold(0.0, |s, v| s + v[j]) * inv;
    }
    let mean_len = out.iter().map(|x| x * x).sum::<f32>().sqrt();
    // Uniform(-1, 1) has variance 1/3: the noise vector is ~sqrt(dim / 3) long before scaling.
    let scale = noise * mean_len / (out.len() as f32 / 3.0).sqrt();
    let mut state = seed ^ 0x006e_6f69_7365_u64 ^ u64::from(id).wrapping_mul(0xd1b5_4a32_d192_ed03);
    for o in out.iter_mut() {
        let u = (splitmix64(&mut state) >> 40) as f32 / (1u64 << 24) as f32; // [0, 1)
        *o += scale * (2.0 * u - 1.0);
    }
    let len = out.iter().map(|x| x * x).sum::<f32>().sqrt();
    if len > 0.0 {
        out.iter_mut().for_each(|x| *x /= len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus::Corpus;

    fn corpus(n: u32) -> Corpus {
        Corpus::from_parts((0..n).map(|i| {
            (
                format!("{i}"),
                format!("T{i}"),
                format!("One {i}. Two {i}."),
            )
        }))
        .unwrap()
    }

    fn unit_rows(n: usize, dim: usize) -> Vec<f32> {
        let mut state = 7u64;
        let mut v: Vec<f32> = (0..n * dim)
            .map(|_| (splitmix64(&mut state) >> 40) as f32 / (1u64 << 24) as f32 - 0.5)
            .collect();
        for row in v.chunks_mut(dim) {
            let len = row.iter().map(|x| x * x).sum::<f32>().sqrt();
            row.iter_mut().for_each(|x| *x /= len);
        }
        v
    }

    #[test]
    fn padded_vectors_are_unit_deterministic_and_near_their_sources() {
        let (n, dim) = (50, 16);
        let c = corpus(n as u32);
        let flat = FlatIndex::new(dim, unit_rows(n, dim), c.docs()).unwrap();
        let p = Padding::new(&c, 400, 3).unwrap();
        let a = flat.pad(&p, DEFAULT_NOISE).unwrap();
        let b = flat.pad(&p, DEFAULT_NOISE).unwrap();
        assert_eq!(a.vectors(), b.vectors());
        assert_eq!(a.ids().len(), 400);
        assert_eq!(&a.vectors()[..n * dim], flat.vectors());
        assert_eq!(a.padding().unwrap().total, 400);
        for id in p.ids() {
            let v = &a.vector(id).unwrap();
            let len: f32 = v.iter().map(|x| x * x).sum();
            assert!((len - 1.0).abs() < 1e-4, "{len}");
            let near = p
                .sources(id)
                .iter()
                .map(|&r| crate::kernel::dot(v, flat.row_vector(r)))
                .fold(f32::MIN, f32::max);
            assert!(near > 0.4, "padding {id} is far from its sources: {near}");
        }
        assert!(a.pad(&p, 0.1).is_err(), "padding twice");
        let half = flat
            .to_precision(Precision::F16)
            .pad(&p, DEFAULT_NOISE)
            .unwrap();
        assert_eq!(half.precision(), Precision::F16);
        assert_eq!(half.padding(), a.padding());
        let other = Padding::new(&corpus(49), 400, 3).unwrap();
        assert!(flat.pad(&other, 0.1).is_err(), "wrong corpus size");
        assert!(flat.pad(&p, f32::NAN).is_err());
    }

    #[test]
    fn streamed_padding_equals_in_memory_pad() {
        let (n, dim) = (300, 10);
        let c = corpus(n as u32);
        let p = Padding::new(&c, 300 + 2 * CHUNK_ROWS + 77, 11).unwrap();
        let root = tempfile::tempdir().unwrap();
        let expect = crate::index::Expect {
            corpus_hash: "c",
            encoder: "e",
        };
        let flat = FlatIndex::new(dim, unit_rows(n, dim), c.docs()).unwrap();
        for real_precision in [Precision::F32, Precision::F16] {
            let real = flat.to_precision(real_precision);
            let padded = real.pad(&p, 0.2).unwrap();
            // `pad` of an f16 index rounds; the f32 vectors before rounding are those of the
            // widened index padded in f32.
            let in_memory = real.to_precision(Precision::F32).pad(&p, 0.2).unwrap();
            for precision in [Precision::F32, Precision::F16] {
                let dir = root.path().join(format!("{real_precision}-{precision}"));
                let mut w = FlatWriter::create(&dir, dim, precision).unwrap();
                let mut seen = Vec::new();
                write_padded(&real, &p, 0.2, &mut w, &mut |done, total| {
                    seen.push((done, total))
                })
                .unwrap();
                let total = p.total();
                assert_eq!(
                    seen,
                    [
                        (n, total),
                        (n + CHUNK_ROWS, total),
                        (n + 2 * CHUNK_ROWS, total),
                        (total, total)
                    ]
                );
                let m = w
                    .finish("c", "e", Some(PaddingRecord::new(&p, 0.2)))
                    .unwrap();
                let (back, m2) = FlatIndex::load(&dir, &expect).unwrap();
                assert_eq!(m, m2);
                let want = in_memory.to_precision(precision);
                assert_eq!(back.vectors(), want.vectors());
                assert_eq!(back.vectors_f16(), want.vectors_f16());
                assert_eq!(back.ids(), want.ids());
                assert_eq!(back.padding(), want.padding());
                let saved = want.save(&root.path().join("saved"), "c", "e").unwrap();
                assert_eq!(m, saved);
                if precision == real_precision {
                    assert_eq!(
                        padded.save(&root.path().join("saved"), "c", "e").unwrap(),
                        saved
                    );
                }
            }
        }
        let mut w = FlatWriter::create(&root.path().join("bad"), dim + 1, Precision::F32).unwrap();
        assert!(write_padded(&flat, &p, 0.2, &mut w, &mut |_, _| ()).is_err());
        let mut w = FlatWriter::create(&root.path().join("bad"), dim, Precision::F32).unwrap();
        w.push(&flat.vectors()[..dim], &[0]).unwrap();
        assert!(write_padded(&flat, &p, 0.2, &mut w, &mut |_, _| ()).is_err());
        let other = Padding::new(&corpus(49), 400, 3).unwrap();
        assert!(write_padded(&flat, &other, 0.2, &mut w, &mut |_, _| ()).is_err());
    }
}
