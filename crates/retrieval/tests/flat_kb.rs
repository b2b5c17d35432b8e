//! Exact dense retrieval over real knowledge-base passages (the first 300, to keep the suite
//! fast; the whole KB is `examples/flat_kb.rs` and the ignored test below): a passage finds
//! itself, a batch answers like its queries alone, `score` equals `search` bit for bit, and
//! the index survives a save/load round trip and refuses a corrupt file.

use ralmspec_retrieval::index::Expect;
use ralmspec_retrieval::{
    Corpus, ENCODER_NAME, Encoder, FlatIndex, Query, RetrievalError, Retriever,
};

const N: usize = 300;

const QUESTIONS: &[&str] = &[
    "What is the capital of France?",
    "Who wrote the theory of general relativity?",
    "Which river flows through Cairo?",
    "When did the Second World War end?",
    "What is photosynthesis in plants?",
    "Who painted the Mona Lisa?",
    "What is the largest planet in the solar system?",
    "Which language is spoken in Brazil?",
    "A number representing an empty quantity",
];

fn check(index: &FlatIndex, corpus: &Corpus, encoder: &Encoder) {
    let queries = Query::encode_all(encoder, QUESTIONS).unwrap();
    let k = 20;
    let batch = index.search(&queries, k).unwrap();
    for (q, hits) in queries.iter().zip(&batch) {
        assert_eq!(hits.len(), k);
        assert!(
            hits.windows(2).all(|w| w[0].rank_cmp(&w[1]).is_lt()),
            "{hits:?}"
        );
        assert_eq!(&index.search(std::slice::from_ref(q), k).unwrap()[0], hits);
        let docs: Vec<u32> = hits.iter().map(|h| h.doc).collect();
        let scores = index.score(q, &docs).unwrap();
        for (h, s) in hits.iter().zip(&scores) {
            assert_eq!(h.score.to_bits(), s.to_bits(), "doc {}", h.doc);
        }
        // Any document's score is below the k-th hit's (or equal with a higher id).
        let all: Vec<u32> = corpus.docs();
        let every = index.score(q, &all).unwrap();
        let last = hits[k - 1];
        for (&doc, &s) in all.iter().zip(&every) {
            if !docs.contains(&doc) {
                assert!(s < last.score || (s == last.score && doc > last.doc));
            }
        }
    }
    // The first passage ("0", the number) answers the query paraphrasing it.
    assert_eq!(corpus.get(batch[8][0].doc).unwrap().title, "0");
    // Passages find themselves.
    let own: Vec<String> = corpus.iter().take(5).map(|p| p.prompt_text()).collect();
    let own_refs: Vec<&str> = own.iter().map(String::as_str).collect();
    let hits = index
        .search(&Query::encode_all(encoder, &own_refs).unwrap(), 1)
        .unwrap();
    for (p, h) in corpus.iter().zip(&hits) {
        assert_eq!(h[0].doc, p.doc);
        assert!(h[0].score > 0.9999, "{}", h[0].score);
    }
}

#[test]
fn flat_over_real_passages() {
    let corpus = Corpus::wiki_kb().unwrap().head(N);
    let encoder = Encoder::minilm().unwrap();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("flat");
    let start = std::time::Instant::now();
    let built = FlatIndex::open_or_build(&dir, &encoder, &corpus).unwrap();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "encoded {N} passages in {secs:.1} s: {:.1} passages/s",
        N as f64 / secs
    );
    assert_eq!(built.len(), N);
    check(&built, &corpus, &encoder);

    let loaded = FlatIndex::open_or_build(&dir, &encoder, &corpus).unwrap();
    assert_eq!(loaded.vectors(), built.vectors());
    check(&loaded, &corpus, &encoder);

    // Another corpus is refused, naming the manifest.
    let other = Corpus::wiki_kb().unwrap().head(N - 1);
    let err = FlatIndex::open_or_build(&dir, &encoder, &other).unwrap_err();
    assert!(matches!(err, RetrievalError::BadIndex { .. }), "{err}");
    assert!(
        err.to_string().contains("manifest.json") && err.to_string().contains("corpus_hash"),
        "{err}"
    );

    // A flipped bit in the vectors is caught.
    let vectors = dir.join("vectors.f32");
    let mut bytes = std::fs::read(&vectors).unwrap();
    bytes[N * 384 * 2] ^= 1;
    std::fs::write(&vectors, &bytes).unwrap();
    let expect = Expect {
        corpus_hash: &corpus.hash(),
        encoder: ENCODER_NAME,
    };
    let err = FlatIndex::load(&dir, &expect).unwrap_err();
    assert!(
        err.to_string().contains("vectors.f32") && err.to_string().contains("corrupt"),
        "{err}"
    );
}

/// The whole knowledge base (about 10k passages: minutes on 2 cores).
#[test]
#[ignore = "encodes the whole knowledge base; run with --ignored"]
fn flat_over_whole_kb() {
    let corpus = Corpus::wiki_kb().unwrap();
    let encoder = Encoder::minilm().unwrap();
    let index = FlatIndex::build(&encoder, &corpus).unwrap();
    assert_eq!(index.len(), corpus.len());
    check(&index, &corpus, &encoder);
}
