//! f16 storage against f32 on real MiniLM vectors of real knowledge-base passages (the first
//! 400, to keep the suite fast), queried with real FanOutQA questions: the f16 index's top-10
//! holds ≥ 99% of the f32 index's on average, alone and padded to 20,000 passages (padding
//! streamed through a [`FlatWriter`] into an f16 folder and loaded back, memory-mapped), and
//! its `score` equals its `search` bit for bit.

#[path = "../examples/common/mod.rs"]
mod common;

use ralmspec_retrieval::PaddingRecord;
use ralmspec_retrieval::dense_padding::{DEFAULT_NOISE, write_padded};
use ralmspec_retrieval::index::Expect;
use ralmspec_retrieval::padding::DEFAULT_SEED;
use ralmspec_retrieval::{
    Corpus, ENCODER_NAME, Encoder, FlatIndex, FlatWriter, Padding, Precision, Query, Retriever,
};

const HEAD: usize = 400;
const QUESTIONS: usize = 200;
const PAD_TO: usize = 20_000;

/// recall@10 of `f16` against `f32`, after checking `f16`'s scores against its search.
fn recall(f32_index: &FlatIndex, f16_index: &FlatIndex, queries: &[Query]) -> f64 {
    let k = 10;
    let exact = f32_index.search(queries, k).unwrap();
    let half = f16_index.search(queries, k).unwrap();
    for (q, hits) in queries.iter().zip(&half).take(20) {
        let docs: Vec<u32> = hits.iter().map(|h| h.doc).collect();
        let scores = f16_index.score(q, &docs).unwrap();
        for (h, s) in hits.iter().zip(scores) {
            assert_eq!(h.score.to_bits(), s.to_bits(), "doc {}", h.doc);
        }
        assert_eq!(
            &f16_index.search(std::slice::from_ref(q), k).unwrap()[0],
            hits
        );
    }
    common::recall(&exact, &half)
}

#[test]
fn f16_ranks_like_f32_on_real_questions() {
    let encoder = Encoder::minilm().unwrap();
    let corpus = Corpus::wiki_kb().unwrap().head(HEAD);
    let flat = FlatIndex::build(&encoder, &corpus).unwrap();
    let texts = common::fanoutqa_questions(QUESTIONS).unwrap();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let queries = Query::encode_all(&encoder, &refs).unwrap();
    assert_eq!(queries.len(), QUESTIONS);

    let half = flat.to_precision(Precision::F16);
    let r = recall(&flat, &half, &queries);
    println!("{HEAD} passages, {QUESTIONS} questions: f16 recall@10 {r:.4}");
    assert!(r >= 0.99, "recall@10 {r}");

    // Padded: the in-memory f32 padding against the streamed f16 folder.
    let padding = Padding::new(&corpus, PAD_TO, DEFAULT_SEED).unwrap();
    let padded = flat.pad(&padding, DEFAULT_NOISE).unwrap();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("padded-f16");
    let mut writer = FlatWriter::create(&dir, flat.dim(), Precision::F16).unwrap();
    let mut last = (0, 0);
    write_padded(
        &flat,
        &padding,
        DEFAULT_NOISE,
        &mut writer,
        &mut |done, total| last = (done, total),
    )
    .unwrap();
    assert_eq!(last, (PAD_TO, PAD_TO));
    let hash = corpus.hash();
    let record = PaddingRecord::new(&padding, DEFAULT_NOISE);
    writer.finish(&hash, ENCODER_NAME, Some(record)).unwrap();
    let expect = Expect {
        corpus_hash: &hash,
        encoder: ENCODER_NAME,
    };
    let (loaded, m) = FlatIndex::load(&dir, &expect).unwrap();
    assert_eq!((m.precision, m.count), (Precision::F16, PAD_TO));
    assert!(loaded.is_mapped());
    assert_eq!(
        loaded.vectors_f16(),
        padded.to_precision(Precision::F16).vectors_f16()
    );
    let r = recall(&padded, &loaded, &queries);
    println!("padded to {PAD_TO}: f16 recall@10 {r:.4}");
    assert!(r >= 0.99, "padded recall@10 {r}");
}
