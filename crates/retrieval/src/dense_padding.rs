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

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Result, RetrievalError};
use crate::flat::FlatIndex;
use crate::padding::{Padding, splitmix64};

/// The default length of the noise added to a padding vector, relative to its mean vector.
pub const DEFAULT_NOISE: f32 = 0.1;

/// How an index was padded: written in its manifest, printed by every report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaddingRecord {
    /// [`Padding::describe`] and how the vectors were made.
    pub description: String,
    /// Passages of the real corpus.
    pub real: usize,
    /// Passages after padding.
    pub total: usize,
    /// The padding seed.
    pub seed: u64,
    /// Noise length relative to the mean of the source vectors.
    pub noise: f32,
}

// `noise` is finite (checked where records are made and loaded), so equality is an equivalence.
impl Eq for PaddingRecord {}

impl PaddingRecord {
    /// The record of `padding` with vectors made with `noise`.
    pub fn new(padding: &Padding, noise: f32) -> PaddingRecord {
        PaddingRecord {
            description: format!(
                "{}; vectors: normalize(mean of the sources' vectors + seeded uniform noise of \
                 relative length {noise})",
                padding.describe()
            ),
            real: padding.total() - padding.count(),
            total: padding.total(),
            seed: padding.seed(),
            noise,
        }
    }
}

impl FlatIndex {
    /// This index grown with the passages of `padding`: the rows of `self` (which must be the
    /// real corpus, in corpus order, as [`FlatIndex::build`] makes it) followed by one vector
    /// per padding id. `noise` ≥ 0 is the relative noise length ([`DEFAULT_NOISE`]).
    pub fn pad(&self, padding: &Padding, noise: f32) -> Result<FlatIndex> {
        let bad = |reason: String| RetrievalError::BadIndexData { reason };
        let real = padding.total() - padding.count();
        if self.padding().is_some() {
            return Err(bad("the index is already padded".into()));
        }
        if self.len_rows() != real {
            return Err(bad(format!(
                "padding is for a corpus of {real} passages, the index holds {}",
                self.len_rows()
            )));
        }
        if !(noise.is_finite() && noise >= 0.0) {
            return Err(bad(format!("noise {noise} is not a finite value ≥ 0")));
        }
        let dim = self.dim();
        let mut vectors = Vec::with_capacity(padding.total() * dim);
        vectors.extend_from_slice(self.vectors());
        vectors.resize(padding.total() * dim, 0.0);
        let first = padding.ids().start;
        vectors[real * dim..]
            .par_chunks_mut(dim)
            .enumerate()
            .for_each(|(i, out)| {
                let id = first + i as u32;
                let sources = padding.sources(id).map(|r| self.row_vector(r));
                padding_vector(&sources, padding.seed(), id, noise, out);
            });
        let mut ids = self.ids().to_vec();
        ids.extend(padding.ids());
        FlatIndex::from_parts(
            dim,
            vectors.into(),
            ids,
            Some(PaddingRecord::new(padding, noise)),
        )
    }

    fn len_rows(&self) -> usize {
        self.ids().len()
    }
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
            let v = a.vector(id).unwrap();
            let len: f32 = v.iter().map(|x| x * x).sum();
            assert!((len - 1.0).abs() < 1e-4, "{len}");
            let near = p
                .sources(id)
                .iter()
                .map(|&r| crate::flat::dot(v, flat.row_vector(r)))
                .fold(f32::MIN, f32::max);
            assert!(near > 0.4, "padding {id} is far from its sources: {near}");
        }
        assert!(a.pad(&p, 0.1).is_err(), "padding twice");
        let other = Padding::new(&corpus(49), 400, 3).unwrap();
        assert!(flat.pad(&other, 0.1).is_err(), "wrong corpus size");
        assert!(flat.pad(&p, f32::NAN).is_err());
    }
}
