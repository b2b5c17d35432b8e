//! How a dense index compares vectors: inner product (the MiniLM passage indexes) or squared
//! Euclidean distance (the kNN-LM datastore).
//!
//! Both are served by one kernel: a score is `dot(q, row) + offset[row]`, with offset 0 for
//! the inner product and `−‖row‖²/2` for L2. For L2 that score equals `(‖q‖² − d²)/2`, so
//! "higher score first" is "nearer first", and [`Metric::squared_distance`] recovers d².

use serde::{Deserialize, Serialize};

use crate::kernel::dot;
use crate::vectors::Table;

/// The similarity a dense index ranks by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// `q · row`, higher first.
    #[default]
    InnerProduct,
    /// `‖q − row‖²`, nearer first (scored as `q · row − ‖row‖²/2`).
    L2,
}

impl Metric {
    /// True for the default, inner product (manifests leave it out).
    pub fn is_inner_product(&self) -> bool {
        *self == Metric::InnerProduct
    }

    /// The per-row offsets this metric adds to `dot(q, row)` (none for inner product).
    pub(crate) fn offsets(self, vectors: &Table, dim: usize) -> Vec<f32> {
        match self {
            Metric::InnerProduct => Vec::new(),
            Metric::L2 => {
                let mut buf = vec![0.0; dim];
                (0..vectors.len() / dim.max(1))
                    .map(|r| {
                        let v = vectors.row(r, &mut buf);
                        -0.5 * dot(v, v)
                    })
                    .collect()
            }
        }
    }

    /// The squared distance of a query (with squared norm `query_norm2`) to a row it scored
    /// `score` against under [`Metric::L2`]: `‖q‖² − 2·score`, clamped at 0.
    pub fn squared_distance(query_norm2: f32, score: f32) -> f32 {
        (query_norm2 - 2.0 * score).max(0.0)
    }

    /// `‖q‖²` computed the way every other dense number of the crate is.
    pub fn norm2(q: &[f32]) -> f32 {
        dot(q, q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{Expect, Verify};
    use crate::retriever::{Query, Retriever};
    use crate::{FlatIndex, HnswIndex, HnswParams};

    /// Clustered vectors of uneven norms (so L2 and inner product rank differently).
    fn vectors(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut state = seed;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        let centres: Vec<f32> = (0..16 * dim).map(|_| 4.0 * next()).collect();
        (0..n)
            .flat_map(|r| {
                let scale = 1.0 + (r % 7) as f32;
                centres[(r % 16) * dim..][..dim]
                    .iter()
                    .map(|c| scale * c + next())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn true_nearest(v: &[f32], dim: usize, q: &[f32], k: usize) -> Vec<u32> {
        let mut d: Vec<(f64, u32)> = v
            .chunks_exact(dim)
            .enumerate()
            .map(|(r, row)| {
                let d2 = row
                    .iter()
                    .zip(q)
                    .map(|(a, b)| f64::from(a - b).powi(2))
                    .sum::<f64>();
                (d2, r as u32)
            })
            .collect();
        d.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        d.into_iter().take(k).map(|x| x.1).collect()
    }

    #[test]
    fn l2_flat_finds_the_nearest_rows_and_recovers_distances() {
        let (n, dim) = (2000, 24);
        let v = vectors(n, dim, 7);
        let ix = FlatIndex::new(dim, v.clone(), (0..n as u32).collect())
            .unwrap()
            .with_metric(Metric::L2);
        let qs = vectors(20, dim, 99);
        for q in qs.chunks_exact(dim) {
            let hits = &ix.search(&[Query::embedded("q", q.to_vec())], 5).unwrap()[0];
            let got: Vec<u32> = hits.iter().map(|h| h.doc).collect();
            assert_eq!(got, true_nearest(&v, dim, q, 5));
            let row = &v[got[0] as usize * dim..][..dim];
            let want: f32 = row.iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum();
            let d2 = Metric::squared_distance(Metric::norm2(q), hits[0].score);
            assert!((d2 - want).abs() <= 1e-3 * want.max(1.0), "{d2} vs {want}");
            let scores = ix.score(&Query::embedded("q", q.to_vec()), &got).unwrap();
            let bits = |s: &[f32]| s.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            let search_scores: Vec<f32> = hits.iter().map(|h| h.score).collect();
            assert_eq!(bits(&scores), bits(&search_scores));
        }
    }

    #[test]
    fn l2_hnsw_has_high_recall_and_the_metric_survives_a_save() {
        let (n, dim) = (3000, 24);
        let v = vectors(n, dim, 11);
        let flat = FlatIndex::new(dim, v.clone(), (0..n as u32).collect())
            .unwrap()
            .with_metric(Metric::L2);
        let hnsw = HnswIndex::build(flat.clone(), HnswParams::default()).unwrap();
        let qs: Vec<Query> = vectors(50, dim, 5)
            .chunks_exact(dim)
            .map(|q| Query::embedded("q", q.to_vec()))
            .collect();
        let exact = flat.search(&qs, 10).unwrap();
        let approx = hnsw.search(&qs, 10).unwrap();
        let found: usize = exact
            .iter()
            .zip(&approx)
            .map(|(e, a)| a.iter().filter(|h| e.contains(h)).count())
            .sum();
        let recall = found as f64 / (10 * qs.len()) as f64;
        assert!(recall >= 0.95, "recall@10 {recall}");

        let dir = tempfile::tempdir().unwrap();
        let m = hnsw.save(dir.path(), "c", "e").unwrap();
        assert_eq!(m.metric, Metric::L2);
        let expect = Expect {
            corpus_hash: "c",
            encoder: "e",
        };
        let (back, _) = HnswIndex::open(dir.path(), &expect, Verify::Full).unwrap();
        assert_eq!(back.flat().metric(), Metric::L2);
        assert_eq!(back.search(&qs, 10).unwrap(), approx);
    }
}
