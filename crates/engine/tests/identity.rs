//! The identity guarantee: for every retriever and every speculation setting, RaLMSpec's
//! answer equals the baseline's, token for token, with the same sources and the same stop.
//!
//! Real model (SmolLM2), real knowledge-base passages, real FanOutQA questions. The CI setting
//! is short (`RALMSPEC_IDENTITY_TOKENS`, default 16 new tokens, and 64-token documents) so 50
//! questions × 7 settings fit the test budget; `ralmspec bench ralm` checks the full setting.
//!
//! Sampled decoding (temperature, `top_p`, `top_k`, seed) keeps the same guarantee: the
//! `*_sampled_*` tests split the questions between the flat and BM25 retrievers, each question
//! with its own sampling setting, through every speculation setting.
//!
//! The pgvector retrievers read the same passages and vectors from a real PostgreSQL
//! (`RALMSPEC_TEST_DATABASE`; skipped without it, see `common`).

mod common;

use std::ops::ControlFlow;
use std::sync::Arc;

use ralmspec_engine::{Ask, Engine, Generation, Knowledge, Ralm, Sampling, SpecConfig, Stride};
use ralmspec_lm::Lm;
use ralmspec_retrieval::hnsw::{HnswIndex, HnswParams};
use ralmspec_retrieval::questions::{Question, fanoutqa_dev};
use ralmspec_retrieval::{Bm25Index, Corpus, Encoder, FlatIndex, Kind};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn lm() -> Lm {
    let store = ralmspec_assets::Store::from_env().unwrap();
    Lm::open(store.fetch(ralmspec_assets::Asset::SmolLm2).unwrap()).unwrap()
}

fn questions() -> Vec<Question> {
    let n = env_usize("RALMSPEC_IDENTITY_QUESTIONS", 50);
    let all = fanoutqa_dev().unwrap();
    assert!(all.len() >= n);
    all.into_iter().take(n).collect()
}

/// A greedy request for `question` within the test's token budget.
fn greedy(question: &str) -> Ask<'_> {
    Ask::question(question, env_usize("RALMSPEC_IDENTITY_TOKENS", 16))
}

/// A small deterministic generator for the random settings (no dependency needed).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// The paper's variants, and one random fixed-stride setting per question.
fn settings(rng: &mut Rng) -> Vec<SpecConfig> {
    let fixed3 = SpecConfig::CACHE_ONLY;
    vec![
        fixed3,
        SpecConfig {
            prefetch: 20,
            ..fixed3
        },
        SpecConfig {
            stride: Stride::Os3,
            ..fixed3
        },
        SpecConfig {
            async_verify: true,
            ..fixed3
        },
        SpecConfig::FULL,
        SpecConfig {
            stride: Stride::Fixed(1 + rng.below(8) as usize),
            prefetch: [0, 1, 5, 64, 256][rng.below(5) as usize],
            async_verify: rng.below(2) == 1,
        },
    ]
}

fn assert_identical(ralm: &Ralm<'_>, questions: &[Question]) {
    let mut rng = Rng(0x1de7_1717);
    let (mut speculated, mut matched, mut rollbacks) = (0, 0, 0);
    for q in questions {
        let base = ralm.generate(&greedy(&q.text), Engine::Baseline).unwrap();
        assert!(!base.tokens.is_empty(), "{:?}: empty answer", q.text);
        let oracle = ralm.replay(&greedy(&q.text), &base.spans).unwrap();
        assert_eq!(oracle.tokens, base.tokens, "{:?}: oracle replay", q.text);
        for spec in settings(&mut rng) {
            // What is streamed is final: the commits, in order, are exactly the answer.
            let mut streamed = Vec::new();
            let got: Generation = ralm
                .generate_streaming(&greedy(&q.text), Engine::Spec(spec), &mut |c| {
                    assert_eq!(c.start, streamed.len(), "commits must be contiguous");
                    streamed.extend_from_slice(c.tokens);
                })
                .unwrap();
            assert_eq!(streamed, got.tokens, "{:?} with {spec:?}: streamed", q.text);
            assert_eq!(got.tokens, base.tokens, "{:?} with {spec:?}", q.text);
            assert_eq!(got.spans, base.spans, "{:?} with {spec:?}", q.text);
            assert_eq!(got.stop, base.stop, "{:?} with {spec:?}", q.text);
            speculated += got.stats.speculated;
            matched += got.stats.matched;
            rollbacks += got.stats.rollbacks;
        }
    }
    // The test must exercise both paths: confirmed guesses and rollbacks.
    eprintln!("speculated {speculated}, matched {matched}, rollbacks {rollbacks}");
    assert!(
        matched > 0 && rollbacks > 0,
        "{speculated} {matched} {rollbacks}"
    );
}

/// Sampling keeps the guarantee: the draw for a token depends only on (seed, position), so
/// RaLMSpec's sampled answer equals the baseline's under the same seed, rollbacks included.
/// Each question gets its own temperature, `top_p`, `top_k` and seed (some with
/// log-probabilities, which must agree bit for bit too), and runs through every setting.
fn assert_sampled_identical(ralm: &Ralm<'_>, questions: &[Question], salt: u64) {
    let mut rng = Rng(0x5a3_91e5_u64 ^ salt);
    let (mut rollbacks, mut differs_from_greedy) = (0, 0);
    for q in questions {
        let sampling = Sampling {
            temperature: [0.5, 0.8, 1.0, 1.3][rng.below(4) as usize],
            top_p: [1.0, 0.95, 0.8][rng.below(3) as usize],
            top_k: [0, 0, 40][rng.below(3) as usize],
            seed: rng.below(u64::MAX),
        };
        let ask = Ask {
            sampling,
            top_logprobs: (rng.below(2) == 1).then_some(3),
            ..greedy(&q.text)
        };
        let base = ralm
            .generate_cancellable(&ask, Engine::Baseline, &mut |_| ControlFlow::Continue(()))
            .unwrap();
        assert_eq!(
            base.logprobs.len(),
            if ask.top_logprobs.is_some() {
                base.tokens.len()
            } else {
                0
            }
        );
        let greedy_answer = ralm.generate(&greedy(&q.text), Engine::Baseline).unwrap();
        differs_from_greedy += usize::from(greedy_answer.tokens != base.tokens);
        let oracle = ralm.replay(&ask, &base.spans).unwrap();
        assert_eq!(oracle.tokens, base.tokens, "{:?}: oracle replay", q.text);
        for spec in settings(&mut rng) {
            let got = ralm
                .generate_cancellable(&ask, Engine::Spec(spec), &mut |_| ControlFlow::Continue(()))
                .unwrap();
            let what = format!("{:?} with {spec:?} and {sampling:?}", q.text);
            assert_eq!(got.tokens, base.tokens, "{what}");
            assert_eq!(got.spans, base.spans, "{what}");
            assert_eq!(got.stop, base.stop, "{what}");
            assert_eq!(got.logprobs, base.logprobs, "{what}");
            assert_eq!(got.prompt_tokens, base.prompt_tokens, "{what}");
            rollbacks += got.stats.rollbacks;
        }
    }
    eprintln!("rollbacks {rollbacks}, sampled answers unlike the greedy one {differs_from_greedy}");
    assert!(rollbacks > 0, "the test must exercise rollbacks");
    assert!(
        differs_from_greedy * 2 > questions.len(),
        "sampling must change most answers: {differs_from_greedy} of {}",
        questions.len()
    );
}

#[test]
fn flat_dense_sampled_speculation_equals_baseline() {
    let lm = lm();
    let (corpus, encoder, flat) = dense();
    let knowledge = Knowledge::new("flat", Arc::new(flat), Some(encoder), corpus, None);
    let ralm = Ralm::new(&lm, &knowledge, common::short_docs());
    let questions = questions();
    assert_sampled_identical(&ralm, &questions[..questions.len() * 3 / 5], 1);
}

#[test]
fn bm25_sampled_speculation_equals_baseline() {
    let lm = lm();
    let corpus = Arc::new(Corpus::wiki_kb().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let bm25 = Bm25Index::build(&corpus, None, &dir.path().join("bm25"), &mut |_| {}).unwrap();
    let knowledge = Knowledge::new("bm25", Arc::new(bm25), None, corpus, None);
    let ralm = Ralm::new(&lm, &knowledge, common::short_docs());
    let questions = questions();
    assert_sampled_identical(&ralm, &questions[questions.len() * 3 / 5..], 2);
}

/// The dense retrievers' shared setup: the flat index of a fixed slice of the knowledge base
/// (cached in the asset store: the first encoding takes a minute or two).
fn dense() -> (Arc<Corpus>, Arc<Encoder>, FlatIndex) {
    common::kb(env_usize("RALMSPEC_IDENTITY_PASSAGES", 1000))
}

#[test]
fn flat_dense_speculation_equals_baseline() {
    let lm = lm();
    let (corpus, encoder, flat) = dense();
    let knowledge = Knowledge::new("flat", Arc::new(flat), Some(encoder), corpus, None);
    let ralm = Ralm::new(&lm, &knowledge, common::short_docs());
    assert_identical(&ralm, &questions());
}

/// The compact format of the paper-scale index: f16 vectors, padded (here to 20,000 passages),
/// written by the streaming writer and memory-mapped back, as `index build --pad-to N
/// --precision f16` does.
#[test]
fn flat_f16_padded_speculation_equals_baseline() {
    use ralmspec_retrieval::dense_padding::{DEFAULT_NOISE, write_padded};
    use ralmspec_retrieval::index::{Expect, Verify};
    use ralmspec_retrieval::padding::DEFAULT_SEED;
    use ralmspec_retrieval::{FlatWriter, Padding, PaddingRecord, Precision, Retriever};
    let lm = lm();
    let (corpus, encoder, flat) = dense();
    let padding = Padding::new(&corpus, 20_000, DEFAULT_SEED).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flat-f16");
    let mut writer = FlatWriter::create(&path, flat.dim(), Precision::F16).unwrap();
    write_padded(&flat, &padding, DEFAULT_NOISE, &mut writer, &mut |_, _| {}).unwrap();
    let record = PaddingRecord::new(&padding, DEFAULT_NOISE);
    writer
        .finish(&corpus.hash(), encoder.name(), Some(record))
        .unwrap();
    let expect = Expect {
        corpus_hash: &corpus.hash(),
        encoder: encoder.name(),
    };
    let (f16, _) = FlatIndex::open(&path, &expect, Verify::Full).unwrap();
    assert_eq!(f16.precision(), Precision::F16);
    assert_eq!(f16.len(), 20_000);
    let knowledge = Knowledge::new("flat", Arc::new(f16), Some(encoder), corpus, Some(padding));
    let ralm = Ralm::new(&lm, &knowledge, common::short_docs());
    assert_identical(&ralm, &questions());
}

#[test]
fn hnsw_speculation_equals_baseline() {
    let lm = lm();
    let (corpus, encoder, flat) = dense();
    let hnsw = HnswIndex::build(flat, HnswParams::default()).unwrap();
    let knowledge = Knowledge::new("hnsw", Arc::new(hnsw), Some(encoder), corpus, None);
    let ralm = Ralm::new(&lm, &knowledge, common::short_docs());
    assert_identical(&ralm, &questions());
}

#[test]
fn bm25_speculation_equals_baseline() {
    let lm = lm();
    let corpus = Arc::new(Corpus::wiki_kb().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let bm25 = Bm25Index::build(&corpus, None, &dir.path().join("bm25"), &mut |_| {}).unwrap();
    let knowledge = Knowledge::new("bm25", Arc::new(bm25), None, corpus, None);
    let ralm = Ralm::new(&lm, &knowledge, common::short_docs());
    assert_identical(&ralm, &questions());
}

/// The same passages and vectors loaded into PostgreSQL as index `name`, searched by `kind`.
fn pgvector_identity(test: &str, name: &str, kind: Kind) {
    let Some(url) = common::database(test) else {
        return;
    };
    let lm = lm();
    let (corpus, encoder, flat) = dense();
    let dir = tempfile::tempdir().unwrap();
    let set = common::index_set(&dir.path().join("set"), &corpus, &encoder, &flat);
    let info = common::load(&url, name, &set, kind == Kind::PgvectorHnsw);
    assert_eq!(info.passages, corpus.len());
    let knowledge = common::knowledge(&url, name, kind, encoder);
    let ralm = Ralm::new(&lm, &knowledge, common::short_docs());
    assert_identical(&ralm, &questions());
}

#[test]
fn pgvector_speculation_equals_baseline() {
    pgvector_identity(
        "pgvector_speculation_equals_baseline",
        "t_ident_pgvector",
        Kind::Pgvector,
    );
}

/// ef_search 40 caps every search at 40 documents (prefetch 64 and 256 included), so that
/// the first hit never depends on how many were asked for.
#[test]
fn pgvector_hnsw_speculation_equals_baseline() {
    pgvector_identity(
        "pgvector_hnsw_speculation_equals_baseline",
        "t_ident_pgvector_hnsw",
        Kind::PgvectorHnsw,
    );
}
