//! Approximate dense retrieval: a hierarchical navigable small world graph (HNSW, Malkov &
//! Yashunin) over the vectors of a [`FlatIndex`].
//!
//! The graph only decides which documents are looked at. Every score, while walking and in the
//! answer, is the inner product computed by the same function as [`FlatIndex`]'s, so HNSW and
//! flat give a document the same score bit for bit, and [`Retriever::score`] equals `search`.
//! Answers are ranked by [`Hit::rank_cmp`]. Building is deterministic (same vectors and
//! [`HnswParams`] → same graph, whatever the thread count: `build`), and each query of a batch
//! walks the graph alone, so a query's answer does not depend on its batch.
//!
//! Submodules: `graph` (links and walks), `build` (deterministic batched insertion); files on
//! disk are in [`crate::index`].

mod build;
pub(crate) mod graph;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Result, RetrievalError};
use crate::flat::FlatIndex;
use crate::retriever::{Hit, Query, Retriever};
use crate::vectors::Precision;
use graph::{Cand, Graph, Scorer};

/// The knobs of an HNSW index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HnswParams {
    /// Links per node on the upper levels (`2 m` on level 0).
    pub m: usize,
    /// Beam width while building.
    pub ef_construction: usize,
    /// Beam width while searching (at least `k` is used); can be changed after loading.
    pub ef_search: usize,
    /// Seed of the level draw.
    pub seed: u64,
}

impl Default for HnswParams {
    /// M 16, efConstruction 128, efSearch 64: recall@10 ≥ 0.95 against flat on real
    /// questions over the knowledge base (`tests/hnsw.rs`, `examples/dense_bench.rs`).
    fn default() -> Self {
        HnswParams {
            m: 16,
            ef_construction: 128,
            ef_search: 64,
            seed: 0x4e5f_2024,
        }
    }
}

impl HnswParams {
    fn check(&self) -> Result<()> {
        if self.m < 2 || self.m > 256 || self.ef_construction == 0 || self.ef_search == 0 {
            return Err(RetrievalError::BadIndexData {
                reason: format!("HNSW parameters out of range (m 2..=256, ef ≥ 1): {self:?}"),
            });
        }
        Ok(())
    }
}

/// An HNSW graph over the vectors of a [`FlatIndex`].
#[derive(Clone, Debug)]
pub struct HnswIndex {
    flat: FlatIndex,
    graph: Graph,
    params: HnswParams,
}

/// HNSW walks score rows borrowed from an f32 table; an f16 index is refused.
fn f32_only(flat: &FlatIndex) -> Result<()> {
    if flat.precision() != Precision::F32 {
        return Err(RetrievalError::BadIndexData {
            reason: format!(
                "HNSW needs f32 vectors, the index stores {} (convert it with to_precision)",
                flat.precision()
            ),
        });
    }
    Ok(())
}

impl HnswIndex {
    /// Builds the graph over every vector of `flat` (in parallel; the graph does not depend on
    /// the number of threads). `flat` must store f32 ([`FlatIndex::to_precision`] converts an
    /// f16 index): the walks borrow rows in place.
    pub fn build(flat: FlatIndex, params: HnswParams) -> Result<HnswIndex> {
        params.check()?;
        f32_only(&flat)?;
        let graph = build::build(&flat, &params);
        Ok(HnswIndex {
            flat,
            graph,
            params,
        })
    }

    /// An index from parts read from disk (checked by the caller).
    pub(crate) fn from_parts(flat: FlatIndex, graph: Graph, params: HnswParams) -> Result<Self> {
        params.check()?;
        f32_only(&flat)?;
        Ok(HnswIndex {
            flat,
            graph,
            params,
        })
    }

    /// The vectors (and ids, and padding) the graph is over.
    pub fn flat(&self) -> &FlatIndex {
        &self.flat
    }

    /// The parameters, `ef_search` as currently set.
    pub fn params(&self) -> &HnswParams {
        &self.params
    }

    /// Sets the search beam width (≥ 1) for later searches.
    pub fn set_ef_search(&mut self, ef_search: usize) {
        self.params.ef_search = ef_search.max(1);
    }

    /// The highest level of the graph.
    pub fn max_level(&self) -> u8 {
        self.graph.max_level
    }

    /// The graph, for the index files.
    pub(crate) fn graph(&self) -> &Graph {
        &self.graph
    }

    /// [`Retriever::search`] with beam width `ef` (at least `k` is used) instead of the
    /// index's `ef_search`.
    pub fn search_with_ef(&self, queries: &[Query], k: usize, ef: usize) -> Result<Vec<Vec<Hit>>> {
        let qs: Vec<&[f32]> = queries
            .iter()
            .map(|q| self.flat.query_vector(q))
            .collect::<Result<_>>()?;
        let k = k.min(self.flat.ids().len());
        if k == 0 {
            return Ok(vec![Vec::new(); qs.len()]);
        }
        let ef = ef.max(k);
        Ok(qs.par_iter().map(|q| self.search_one(q, k, ef)).collect())
    }

    fn search_one(&self, q: &[f32], k: usize, ef: usize) -> Vec<Hit> {
        let scorer = Scorer {
            q,
            flat: &self.flat,
        };
        let g = &self.graph;
        let mut at = Cand {
            score: scorer.one(g.entry),
            node: g.entry,
        };
        if g.max_level > 0 {
            at = g.descend(scorer, at, g.max_level, 1);
        }
        let ids = self.flat.ids();
        let mut hits: Vec<Hit> = g
            .beam(scorer, &[at], ef, 0)
            .into_iter()
            .map(|c| Hit {
                doc: ids[c.node as usize],
                score: c.score,
            })
            .collect();
        hits.sort_by(Hit::rank_cmp);
        hits.truncate(k);
        hits
    }
}

impl Retriever for HnswIndex {
    fn search(&self, queries: &[Query], k: usize) -> Result<Vec<Vec<Hit>>> {
        self.search_with_ef(queries, k, self.params.ef_search)
    }

    fn score(&self, query: &Query, docs: &[u32]) -> Result<Vec<f32>> {
        self.flat.score(query, docs)
    }

    /// Up to `ef_search` the graph walk does not depend on `k`; beyond it, it searches wider.
    fn consistent_k(&self) -> usize {
        self.params().ef_search.max(1)
    }

    fn len(&self) -> usize {
        self.flat.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Clustered pseudo-random unit vectors (ties included: rows 97, 194, … repeat row 0).
    fn flat(n: usize, dim: usize) -> FlatIndex {
        let mut state = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        let centres: Vec<f32> = (0..8 * dim).map(|_| next()).collect();
        let mut v = Vec::with_capacity(n * dim);
        for r in 0..n {
            let c = &centres[(r % 8) * dim..][..dim];
            let row: Vec<f32> = c.iter().map(|x| x + 0.3 * next()).collect();
            let len = row.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.extend(row.iter().map(|x| x / len));
        }
        for r in (97..n).step_by(97) {
            let (src, dst) = v.split_at_mut(r * dim);
            dst[..dim].copy_from_slice(&src[..dim]);
        }
        FlatIndex::new(dim, v, (0..n as u32).map(|i| 2 * i + 5).collect()).unwrap()
    }

    #[test]
    fn finds_what_flat_finds_and_scores_like_it() {
        let f = flat(3000, 24);
        let h = HnswIndex::build(f.clone(), HnswParams::default()).unwrap();
        let queries: Vec<Query> = (0..40)
            .map(|i| Query::embedded(format!("q{i}"), f.row_vector(i * 71 + 3).to_vec()))
            .collect();
        let exact = f.search(&queries, 10).unwrap();
        let approx = h.search(&queries, 10).unwrap();
        let mut found = 0;
        for ((q, e), a) in queries.iter().zip(&exact).zip(&approx) {
            assert_eq!(a.len(), 10);
            assert!(a.windows(2).all(|w| w[0].rank_cmp(&w[1]).is_lt()));
            found += a.iter().filter(|h| e.contains(h)).count();
            let docs: Vec<u32> = a.iter().map(|h| h.doc).collect();
            let scores = h.score(q, &docs).unwrap();
            for (hit, s) in a.iter().zip(scores) {
                assert_eq!(hit.score.to_bits(), s.to_bits());
            }
            assert_eq!(&h.search(std::slice::from_ref(q), 10).unwrap()[0], a);
        }
        let recall = found as f64 / 400.0;
        assert!(recall >= 0.95, "recall {recall}");
    }

    #[test]
    fn build_does_not_depend_on_threads() {
        let f = flat(1500, 16);
        let p = HnswParams::default();
        let a = HnswIndex::build(f.clone(), p).unwrap();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let b = pool.install(|| HnswIndex::build(f, p).unwrap());
        assert_eq!(a.graph.layer0.as_slice(), b.graph.layer0.as_slice());
        assert_eq!(a.graph.upper, b.graph.upper);
        assert_eq!(
            (a.graph.entry, a.graph.max_level),
            (b.graph.entry, b.graph.max_level)
        );
    }

    #[test]
    fn tiny_and_bad_inputs() {
        let one = FlatIndex::new(2, vec![0.6, 0.8], vec![9]).unwrap();
        let h = HnswIndex::build(one, HnswParams::default()).unwrap();
        let q = Query::embedded("q", vec![1.0, 0.0]);
        assert_eq!(h.search(std::slice::from_ref(&q), 5).unwrap()[0].len(), 1);
        assert!(h.search(&[Query::text("x")], 1).is_err());
        assert!(h.score(&q, &[3]).is_err());
        let bad = HnswParams {
            m: 1,
            ..HnswParams::default()
        };
        assert!(HnswIndex::build(flat(10, 4), bad).is_err());
        let half = flat(10, 4).to_precision(Precision::F16);
        let err = HnswIndex::build(half, HnswParams::default()).unwrap_err();
        assert!(err.to_string().contains("f32"), "{err}");
    }
}
