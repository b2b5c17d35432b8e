//! What the retrieval examples share.

/// Eight factoid questions of the kind RaLM answers, used as queries.
#[allow(dead_code)]
pub const QUESTIONS: [&str; 8] = [
    "What is the capital of France?",
    "Who wrote the theory of general relativity?",
    "Which river flows through Cairo?",
    "When did the Second World War end?",
    "What is photosynthesis in plants?",
    "Who painted the Mona Lisa?",
    "What is the largest planet in the solar system?",
    "Which language is spoken in Brazil?",
];

use std::path::PathBuf;

use ralmspec_assets::Store;
use ralmspec_retrieval::{Corpus, Encoder, FlatIndex, Hit};

/// Real questions: the first `n` single-hop questions of the FanOutQA dev set.
#[allow(dead_code)]
pub fn fanoutqa_questions(n: usize) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let questions = ralmspec_retrieval::questions::fanoutqa_dev()?;
    Ok(questions.into_iter().take(n).map(|q| q.text).collect())
}

/// Where the full knowledge base's flat MiniLM index is cached.
#[allow(dead_code)]
pub fn kb_flat_dir() -> Result<PathBuf, Box<dyn std::error::Error>> {
    Ok(Store::from_env()?.root().join("indexes/wiki-kb/flat"))
}

/// The flat index of the whole knowledge base (built once, ~9 min, then loaded).
#[allow(dead_code)]
pub fn kb_flat(
    encoder: &Encoder,
    corpus: &Corpus,
) -> Result<FlatIndex, Box<dyn std::error::Error>> {
    Ok(FlatIndex::open_or_build(&kb_flat_dir()?, encoder, corpus)?)
}

/// Mean fraction of `exact`'s hits that `approx` found, per query.
#[allow(dead_code)]
pub fn recall(exact: &[Vec<Hit>], approx: &[Vec<Hit>]) -> f64 {
    let per: Vec<f64> = exact
        .iter()
        .zip(approx)
        .map(|(e, a)| {
            let found = a
                .iter()
                .filter(|h| e.iter().any(|x| x.doc == h.doc))
                .count();
            found as f64 / e.len().max(1) as f64
        })
        .collect();
    per.iter().sum::<f64>() / per.len().max(1) as f64
}
