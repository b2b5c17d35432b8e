//! Exact dense retrieval: the query embedding scored against every vector, by inner product
//! or by L2 distance ([`Metric`]).
//!
//! A batch of queries is one pass over the vectors: the rows are cut into blocks, threads take
//! blocks, and each row is scored against every query while it is in cache. The score of a
//! (query, row) pair is computed by one function ([`dot`]) whatever the batch, the block or the
//! thread, so a query gets the same top-k alone or in a batch, and `score` equals `search`
//! bit for bit.
//!
//! The vectors are stored as f32 or f16 ([`Precision`]). An f16 block is widened to f32 into a
//! scratch buffer of the thread (once per block, not per query) and then scored by the same
//! tiles as an f32 block, so both precisions keep those guarantees; an f16 index streams half
//! the bytes. HNSW graphs are built over f32 indexes only (`HnswIndex` refuses f16).

use std::borrow::Cow;

use rayon::prelude::*;

use crate::corpus::Corpus;
use crate::encoder::Encoder;
use crate::error::{Result, RetrievalError};
use crate::ids::IdMap;
use crate::kernel::{dot, tile};
use crate::metric::Metric;
use crate::padding::PaddingRecord;
use crate::retriever::{Hit, Query, Retriever, TopK};
use crate::vectors::{Precision, Table, Value};

/// Rows per block of the search: the unit of work a thread takes.
const BLOCK_ROWS: usize = 256;

/// Passage vectors (row-major, `dim` values each, f32 or f16, in memory or memory-mapped from
/// an index file) with the passage id of each row, and how the index was padded, if it was.
#[derive(Clone, Debug)]
pub struct FlatIndex {
    dim: usize,
    vectors: Table,
    ids: Vec<u32>,
    rows: IdMap,
    padding: Option<PaddingRecord>,
    metric: Metric,
    /// What [`Metric`] adds to each row's dot product (empty for inner product).
    offsets: Vec<f32>,
}

impl FlatIndex {
    /// An index over `vectors` (`ids.len() × dim` floats); ids must be distinct and every
    /// value finite.
    pub fn new(dim: usize, vectors: Vec<f32>, ids: Vec<u32>) -> Result<FlatIndex> {
        let bad = |reason: String| RetrievalError::BadIndexData { reason };
        if dim == 0 {
            return Err(bad("dimension 0".into()));
        }
        if vectors.len() != ids.len() * dim {
            return Err(bad(format!(
                "{} floats for {} ids of dimension {dim}",
                vectors.len(),
                ids.len()
            )));
        }
        if let Some(i) = vectors.iter().position(|x| !x.is_finite()) {
            return Err(bad(format!("row {} holds a non-finite value", i / dim)));
        }
        FlatIndex::from_parts(dim, Table::F32(vectors.into()), ids, None)
    }

    /// An index over vectors already known to be finite (written by this crate and checked
    /// since): validates shapes and ids only.
    pub(crate) fn from_parts(
        dim: usize,
        vectors: Table,
        ids: Vec<u32>,
        padding: Option<PaddingRecord>,
    ) -> Result<FlatIndex> {
        let bad = |reason: String| RetrievalError::BadIndexData { reason };
        if dim == 0 {
            return Err(bad("dimension 0".into()));
        }
        if vectors.len() != ids.len() * dim {
            return Err(bad(format!(
                "{} floats for {} ids of dimension {dim}",
                vectors.len(),
                ids.len()
            )));
        }
        let rows = IdMap::new(&ids).map_err(|id| bad(format!("id {id} appears twice")))?;
        Ok(FlatIndex {
            dim,
            vectors,
            ids,
            rows,
            padding,
            metric: Metric::InnerProduct,
            offsets: Vec::new(),
        })
    }

    /// This index ranking by `metric` instead (one pass over the vectors for L2's offsets).
    pub fn with_metric(mut self, metric: Metric) -> FlatIndex {
        self.offsets = metric.offsets(&self.vectors, self.dim);
        self.metric = metric;
        self
    }

    /// How the vectors are stored.
    pub fn precision(&self) -> Precision {
        self.vectors.precision()
    }

    /// This index with its vectors stored in `precision` (same ids, padding and metric; L2
    /// offsets recomputed from the stored values). f32 → f16 rounds each value to nearest
    /// ([`crate::vectors::to_f16`]: finite values beyond ±65504 saturate); f16 → f32 is exact.
    /// The result is in memory even when `self` is mapped.
    pub fn to_precision(&self, precision: Precision) -> FlatIndex {
        if precision == self.precision() {
            return self.clone();
        }
        FlatIndex {
            vectors: self.vectors.to_precision(precision),
            offsets: Vec::new(),
            ..self.clone()
        }
        .with_metric(self.metric)
    }

    /// The stored values, for the files of an index folder.
    pub(crate) fn table(&self) -> &Table {
        &self.vectors
    }

    /// What this index ranks by.
    pub fn metric(&self) -> Metric {
        self.metric
    }

    /// The score of row `r` against query vector `q`: `dot`, plus the metric's offset (f32
    /// indexes only, see [`FlatIndex::row_vector`]).
    #[inline]
    pub(crate) fn row_score(&self, q: &[f32], r: usize) -> f32 {
        self.offset(dot(q, self.row_vector(r)), r)
    }

    /// `dot_score` (a dot product with row `r`) turned into the metric's score.
    #[inline]
    pub(crate) fn offset(&self, dot_score: f32, r: usize) -> f32 {
        match self.offsets.get(r) {
            Some(o) => dot_score + o,
            None => dot_score,
        }
    }

    /// Encodes every passage's [`Passage::prompt_text`](crate::Passage::prompt_text).
    pub fn build(encoder: &Encoder, corpus: &Corpus) -> Result<FlatIndex> {
        let texts: Vec<String> = corpus.iter().map(|p| p.prompt_text()).collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        FlatIndex::new(
            encoder.dim(),
            encoder.encode_passages_flat(&refs)?,
            corpus.docs(),
        )
    }

    /// Length of each vector.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// All vectors, row-major, of an f32 index; **empty for an f16 index**, which has no f32
    /// array: read its rows with [`FlatIndex::row_into`] or [`FlatIndex::vector`], or its
    /// values with [`FlatIndex::vectors_f16`].
    pub fn vectors(&self) -> &[f32] {
        self.vectors.f32s()
    }

    /// All vectors, row-major, of an f16 index (empty for an f32 index).
    pub fn vectors_f16(&self) -> &[half::f16] {
        self.vectors.f16s()
    }

    /// Row `row` as f32, in either precision: borrowed from an f32 index, widened (exactly)
    /// into `buf` (resized to [`FlatIndex::dim`]) from an f16 one; `None` past the last row.
    pub fn row_into<'a>(&'a self, row: usize, buf: &'a mut Vec<f32>) -> Option<&'a [f32]> {
        if row >= self.ids.len() {
            return None;
        }
        buf.resize(self.dim, 0.0);
        Some(self.vectors.row(row, buf))
    }

    /// True when the vectors are memory-mapped from an index file (not read into memory).
    pub fn is_mapped(&self) -> bool {
        self.vectors.is_mapped()
    }

    /// How this index was padded beyond its corpus, if it was.
    pub fn padding(&self) -> Option<&PaddingRecord> {
        self.padding.as_ref()
    }

    /// The vector in row `r` of an f32 index. Only HNSW uses it, and it holds f32 indexes
    /// only (an f16 index has no f32 rows to borrow: this would panic); everything else goes
    /// through [`Table::row`].
    #[inline]
    pub(crate) fn row_vector(&self, r: usize) -> &[f32] {
        &self.vectors()[r * self.dim..(r + 1) * self.dim]
    }

    /// Row `r` as f32 (a row of the index), widened into `buf` (`dim` long) for f16.
    #[inline]
    pub(crate) fn row_f32<'a>(&'a self, r: usize, buf: &'a mut [f32]) -> &'a [f32] {
        self.vectors.row(r, buf)
    }

    /// The passage id of each row.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// The vector of passage `doc`: borrowed from an f32 index, widened from an f16 one.
    pub fn vector(&self, doc: u32) -> Option<Cow<'_, [f32]>> {
        let r = self.rows.row(doc)?;
        Some(match &self.vectors {
            Table::F32(_) => Cow::Borrowed(self.row_vector(r)),
            Table::F16(_) => Cow::Owned(self.row_f32(r, &mut vec![0.0; self.dim]).to_vec()),
        })
    }

    /// The embedding of `q`, checked: present, of this index's length, finite.
    pub(crate) fn query_vector<'q>(&self, q: &'q Query) -> Result<&'q [f32]> {
        let bad = |reason: String| RetrievalError::BadQuery {
            text: q.as_str().to_owned(),
            reason,
        };
        let e = q
            .embedding()
            .ok_or_else(|| bad("a dense retriever needs the query's embedding".into()))?;
        if e.len() != self.dim {
            return Err(bad(format!(
                "embedding has {} values, the index {}",
                e.len(),
                self.dim
            )));
        }
        if e.iter().any(|x| !x.is_finite()) {
            return Err(bad("embedding holds a non-finite value".into()));
        }
        Ok(e)
    }
}

impl Retriever for FlatIndex {
    fn search(&self, queries: &[Query], k: usize) -> Result<Vec<Vec<Hit>>> {
        let qs: Vec<&[f32]> = queries
            .iter()
            .map(|q| self.query_vector(q))
            .collect::<Result<_>>()?;
        let k = k.min(self.ids.len());
        if qs.is_empty() || k == 0 {
            return Ok(vec![Vec::new(); qs.len()]);
        }
        let tops = match &self.vectors {
            Table::F32(v) => self.scan(v.as_slice(), &qs, k),
            Table::F16(v) => self.scan(v.as_slice(), &qs, k),
        };
        Ok(tops.into_iter().map(TopK::into_sorted).collect())
    }

    fn score(&self, query: &Query, docs: &[u32]) -> Result<Vec<f32>> {
        let q = self.query_vector(query)?;
        let mut buf = vec![0.0; self.dim];
        docs.iter()
            .map(|&doc| {
                let r = self.rows.row(doc).ok_or(RetrievalError::UnknownDoc {
                    doc,
                    len: self.ids.len(),
                })?;
                Ok(self.offset(dot(q, self.row_f32(r, &mut buf)), r))
            })
            .collect()
    }

    fn len(&self) -> usize {
        self.ids.len()
    }
}

impl FlatIndex {
    /// The top-`k` of each query over `values` (this index's table, in its value type): blocks
    /// of [`BLOCK_ROWS`] rows go to threads, each block is widened to f32 once (into the fold's
    /// scratch; a no-op for f32) and scanned against every query ([`scan_block`]).
    fn scan<T: Value>(&self, values: &[T], qs: &[&[f32]], k: usize) -> Vec<TopK> {
        let dim = self.dim;
        let empty = || vec![TopK::new(k); qs.len()];
        values
            .par_chunks(BLOCK_ROWS * dim)
            .enumerate()
            .fold(
                || (empty(), Vec::new()),
                |(mut tops, mut scratch), (b, block)| {
                    let rows = first_rows(b, block.len() / dim);
                    let offsets = self.offsets.get(rows.clone());
                    let block = T::widen(block, &mut scratch);
                    scan_block(qs, block, &self.ids[rows], offsets, &mut tops);
                    (tops, scratch)
                },
            )
            .map(|(tops, _)| tops)
            .reduce(empty, |mut a, b| {
                a.iter_mut().zip(b).for_each(|(a, b)| a.merge(b));
                a
            })
    }
}

/// The rows of block `b`, which holds `len` rows.
fn first_rows(b: usize, len: usize) -> std::ops::Range<usize> {
    b * BLOCK_ROWS..b * BLOCK_ROWS + len
}

/// A tile is 4 queries × 3 rows: 12 eight-lane running sums, the 3 rows' chunks and one
/// query chunk fill the 16 AVX registers. Measured against 3 × 4 (`examples/flat_batch.rs`,
/// 2 vCPUs, 500k × 576 keys): each further query of a batch costs ~5 ms instead of ~11 ms.
const TILE_QUERIES: usize = 4;
/// Rows per tile (see [`TILE_QUERIES`]).
const TILE_ROWS: usize = 3;

/// Scores every row of `block` (rows of `dim` floats, passage ids `ids`) against every query
/// of `qs` into its collector of `tops`, adding each row's metric offset when there are
/// offsets. Rows go [`TILE_ROWS`] at a time, and each group is scored against every query (in
/// tiles of up to [`TILE_QUERIES`] queries, [`tile`]) while it is in L1: the keys are read from
/// memory once per batch, whatever its size (scanning the whole block once per group of
/// queries made a batch of ~7 cost about three single searches on a 16-core Xeon).
fn scan_block(
    qs: &[&[f32]],
    block: &[f32],
    ids: &[u32],
    offsets: Option<&[f32]>,
    tops: &mut [TopK],
) {
    let dim = qs[0].len();
    let (groups, rest) = block.split_at(block.len() / (TILE_ROWS * dim) * TILE_ROWS * dim);
    for (i, group) in groups.chunks_exact(TILE_ROWS * dim).enumerate() {
        let rows: [&[f32]; TILE_ROWS] = std::array::from_fn(|j| &group[j * dim..][..dim]);
        let first = TILE_ROWS * i;
        for (qg, tg) in qs.chunks(TILE_QUERIES).zip(tops.chunks_mut(TILE_QUERIES)) {
            match *qg {
                [a, b, c, d, e, f] => {
                    push_tile(tile([a, b, c, d, e, f], rows), tg, ids, offsets, first)
                }
                [a, b, c, d, e] => push_tile(tile([a, b, c, d, e], rows), tg, ids, offsets, first),
                [a, b, c, d] => push_tile(tile([a, b, c, d], rows), tg, ids, offsets, first),
                [a, b, c] => push_tile(tile([a, b, c], rows), tg, ids, offsets, first),
                [a, b] => push_tile(tile([a, b], rows), tg, ids, offsets, first),
                [a] => push_tile(tile([a], rows), tg, ids, offsets, first),
                _ => unreachable!("chunks of 1..=TILE_QUERIES"),
            }
        }
    }
    let done = groups.len() / dim;
    for (j, v) in rest.chunks_exact(dim).enumerate() {
        for (top, q) in tops.iter_mut().zip(qs) {
            push_score(top, dot(q, v), ids, offsets, done + j);
        }
    }
}

/// Offers the scores of a tile (rows `first..first + TILE_ROWS` against each query) to the
/// queries' collectors.
#[inline(always)]
fn push_tile<const Q: usize>(
    scores: [[f32; TILE_ROWS]; Q],
    tops: &mut [TopK],
    ids: &[u32],
    offsets: Option<&[f32]>,
    first: usize,
) {
    for (top, row_scores) in tops.iter_mut().zip(scores) {
        for (j, score) in row_scores.into_iter().enumerate() {
            push_score(top, score, ids, offsets, first + j);
        }
    }
}

/// Offers row `row`'s score, plus its metric offset.
#[inline(always)]
fn push_score(top: &mut TopK, score: f32, ids: &[u32], offsets: Option<&[f32]>, row: usize) {
    top.push(Hit {
        doc: ids[row],
        score: match offsets {
            Some(o) => score + o[row],
            None => score,
        },
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::f16;

    /// A deterministic pseudo-random unit vector set, with duplicated rows to force ties.
    fn index(n: usize, dim: usize) -> FlatIndex {
        let mut state = 0x9e3779b97f4a7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        let mut v: Vec<f32> = (0..n * dim).map(|_| next()).collect();
        for r in (0..n).step_by(5).skip(1) {
            let (src, dst) = v.split_at_mut(r * dim);
            dst[..dim].copy_from_slice(&src[..dim]); // rows 5, 10, … equal row 0
        }
        let ids = (0..n as u32).map(|i| 3 * i + 1).rev().collect();
        FlatIndex::new(dim, v, ids).unwrap()
    }

    fn naive(ix: &FlatIndex, q: &[f32], k: usize) -> Vec<Hit> {
        let mut all: Vec<Hit> = ix
            .ids()
            .iter()
            .map(|&doc| Hit {
                doc,
                score: ix.offset(dot(q, &ix.vector(doc).unwrap()), ix.rows.row(doc).unwrap()),
            })
            .collect();
        all.sort_by(Hit::rank_cmp);
        all.truncate(k);
        all
    }

    #[test]
    fn search_matches_naive_alone_and_batched() {
        let ix = index(3000, 37);
        let queries: Vec<Query> = (0..9)
            .map(|i| Query::embedded(format!("q{i}"), ix.vectors()[i * 37 * 3..][..37].to_vec()))
            .collect();
        for metric in [Metric::InnerProduct, Metric::L2] {
            for precision in [Precision::F32, Precision::F16] {
                let ix = ix.clone().with_metric(metric).to_precision(precision);
                assert_eq!((ix.metric(), ix.precision()), (metric, precision));
                check_search(&ix, &queries);
            }
        }
        // Query 0 equals row 0 and its copies: ties broken by lower doc id.
        let top = &ix.search(&queries[..1], 3).unwrap()[0];
        assert!(
            top[0].score == top[1].score && top[0].doc < top[1].doc,
            "{top:?}"
        );
    }

    /// Every batch size 1..=9 answers like its queries alone and like the naive ranking, and
    /// `score` equals `search` bit for bit.
    fn check_search(ix: &FlatIndex, queries: &[Query]) {
        for k in [1, 5, 20, 3000, 5000] {
            // Batches of every size up to 9: full tiles and every partial tile.
            for n in 1..queries.len() {
                assert_eq!(
                    ix.search(&queries[..n], k).unwrap(),
                    ix.search(queries, k).unwrap()[..n]
                );
            }
            let batch = ix.search(queries, k).unwrap();
            for (q, got) in queries.iter().zip(&batch) {
                let alone = ix.search(std::slice::from_ref(q), k).unwrap();
                assert_eq!(&alone[0], got);
                assert_eq!(got, &naive(ix, q.embedding().unwrap(), k));
                let docs: Vec<u32> = got.iter().map(|h| h.doc).collect();
                let scores = ix.score(q, &docs).unwrap();
                for (h, s) in got.iter().zip(scores) {
                    assert_eq!(h.score.to_bits(), s.to_bits());
                }
            }
        }
    }

    #[test]
    fn f16_scores_are_the_f32_scores_of_the_rounded_rows() {
        let ix = index(1000, 24).with_metric(Metric::L2);
        let half = ix.to_precision(Precision::F16);
        assert!(half.vectors().is_empty());
        assert_eq!(half.vectors_f16().len(), 1000 * 24);
        // The rounded rows as an f32 index score exactly like the f16 index.
        let widened = half.to_precision(Precision::F32);
        assert_eq!(
            widened.to_precision(Precision::F16).vectors_f16(),
            half.vectors_f16()
        );
        let q: Vec<Query> = (0..5)
            .map(|i| Query::embedded("q", ix.vectors()[i * 24 * 7..][..24].to_vec()))
            .collect();
        assert_eq!(
            half.search(&q, 50).unwrap(),
            widened.search(&q, 50).unwrap()
        );
        let mut buf = Vec::new();
        for r in [0, 17, 999] {
            let want = widened.vectors()[r * 24..][..24].to_vec();
            assert_eq!(half.row_into(r, &mut buf).unwrap(), &want[..]);
            assert_eq!(half.vector(half.ids()[r]).unwrap().as_ref(), &want[..]);
            let back: Vec<f32> = ix
                .row_vector(r)
                .iter()
                .map(|&x| f16::from_f32(x).to_f32())
                .collect();
            assert_eq!(back, want);
        }
        assert!(half.row_into(1000, &mut buf).is_none());
        // Rounding moves unit-scale scores by well under 1e-2.
        let (a, b) = (&ix.search(&q, 1).unwrap(), &half.search(&q, 1).unwrap());
        for (a, b) in a.iter().zip(b) {
            assert!((a[0].score - b[0].score).abs() < 1e-2, "{a:?} {b:?}");
        }
    }

    #[test]
    fn bad_inputs_are_errors() {
        let ix = index(10, 4);
        let err = ix.search(&[Query::text("no vector")], 1).unwrap_err();
        assert!(
            err.to_string().contains("needs the query's embedding"),
            "{err}"
        );
        let err = ix
            .search(&[Query::embedded("short", vec![0.0; 3])], 1)
            .unwrap_err();
        assert!(err.to_string().contains("3 values"), "{err}");
        let q = Query::embedded("ok", vec![0.1; 4]);
        assert!(matches!(
            ix.score(&q, &[2]),
            Err(RetrievalError::UnknownDoc { doc: 2, len: 10 })
        ));
        assert!(ix.search(&[], 3).unwrap().is_empty());
        assert_eq!(ix.search(&[q], 0).unwrap(), vec![Vec::<Hit>::new()]);
        assert!(FlatIndex::new(2, vec![0.0; 3], vec![1, 2]).is_err());
        assert!(FlatIndex::new(1, vec![0.0, 1.0], vec![1, 1]).is_err());
        assert!(FlatIndex::new(1, vec![f32::NAN], vec![1]).is_err());
    }

    #[test]
    fn tile_equals_dot_bit_for_bit() {
        for dim in [1, 7, 8, 13, 37, 384] {
            let ix = index(9, dim);
            let v: Vec<&[f32]> = ix.vectors().chunks_exact(dim).collect();
            let got = tile([v[0], v[8], v[2], v[4]], [v[1], v[3], v[5]]);
            for (qi, q) in [0, 8, 2, 4].into_iter().enumerate() {
                for (ri, r) in [1, 3, 5].into_iter().enumerate() {
                    let want = dot(v[q], v[r]);
                    assert_eq!(got[qi][ri].to_bits(), want.to_bits(), "dim {dim}");
                }
            }
            let got = tile([v[6]], [v[1], v[3], v[5], v[7]]);
            for (ri, r) in [1, 3, 5, 7].into_iter().enumerate() {
                assert_eq!(got[0][ri].to_bits(), dot(v[6], v[r]).to_bits(), "dim {dim}");
            }
        }
    }

    #[test]
    fn dot_is_the_plain_sum_up_to_rounding() {
        let a: Vec<f32> = (0..13).map(|i| i as f32 * 0.5).collect();
        let want: f32 = a.iter().map(|x| x * x).sum();
        assert!((dot(&a, &a) - want).abs() < 1e-3);
    }
}
