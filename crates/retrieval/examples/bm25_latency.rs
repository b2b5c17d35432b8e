//! BM25 build time and search latency, on the knowledge base and padded to paper-like sizes.
//!
//! Queries are 32 analyzer tokens of real text, as RaLM sends them: a FanOutQA question
//! followed by the text of a knowledge-base passage (what the LM generates reads like it),
//! cut at 32 tokens. (32 tokens of the LM's BPE are about 24 words, so these are, if anything,
//! heavier than RaLM's.) Each size is built once into `--dir` (default `target/bm25-bench`) and
//! reused on later runs unless `--rebuild`.
//!
//! ```text
//! cargo run --release -p ralmspec-retrieval --example bm25_latency -- \
//!     [--pad-to N[,N...]] [--dir DIR] [--rebuild] [--reps R] [--verify Q]
//! ```
//! `--verify Q` also checks, for the first Q queries, that `search`'s top-10 is exactly the
//! best 10 of `score` over every document (the brute-force ranking), bit for bit.
//! `--pad-to` defaults to `0,1000000` (0: the real 10,033 passages only).

use std::path::PathBuf;
use std::time::Instant;

use ralmspec_retrieval::bm25::BuildProgress;
use ralmspec_retrieval::{Bm25Index, Corpus, Hit, Padding, Query, Retriever, padding};

mod common;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| args.iter().position(|a| a == name).map(|i| args.get(i + 1));
    let sizes: Vec<usize> = match flag("--pad-to") {
        Some(v) => v
            .ok_or("--pad-to needs a number")?
            .split(',')
            .map(str::parse)
            .collect::<Result<_, _>>()?,
        None => vec![0, 1_000_000],
    };
    let root = match flag("--dir") {
        Some(v) => PathBuf::from(v.ok_or("--dir needs a folder")?),
        None => PathBuf::from("target/bm25-bench"),
    };
    let reps: usize = match flag("--reps") {
        Some(v) => v.ok_or("--reps needs a number")?.parse()?,
        None => 3,
    };
    let rebuild = args.iter().any(|a| a == "--rebuild");
    let verify: usize = match flag("--verify") {
        Some(v) => v.ok_or("--verify needs a number")?.parse()?,
        None => 0,
    };

    let corpus = Corpus::wiki_kb()?;
    let texts = queries(&corpus, 64);
    let queries: Vec<Query> = texts.iter().map(Query::text).collect();
    println!(
        "{} queries of 32 tokens, e.g. {:?}; {} rayon threads",
        queries.len(),
        texts[0],
        rayon::current_num_threads()
    );

    for &size in &sizes {
        let padding = (size > corpus.len())
            .then(|| Padding::new(&corpus, size, padding::DEFAULT_SEED))
            .transpose()?;
        let n = padding.map_or(corpus.len(), |p| p.total());
        let dir = root.join(format!("bm25-{n}"));
        let start = Instant::now();
        let index = match Bm25Index::open(&dir, &corpus.hash()) {
            Ok(index) if !rebuild && index.len() == n => {
                println!(
                    "\n== {n} passages: opened (files checksummed) in {:.2} s",
                    start.elapsed().as_secs_f64()
                );
                index
            }
            _ => {
                let mut last = Instant::now();
                let index = Bm25Index::build(&corpus, padding, &dir, &mut |p| {
                    let due = last.elapsed().as_secs_f64() > 10.0;
                    if due || !matches!(p, BuildProgress::Indexed { .. }) {
                        eprintln!("  {:6.1} s  {p:?}", start.elapsed().as_secs_f64());
                        last = Instant::now();
                    }
                })?;
                let bytes: u64 = index.manifest().files.values().map(|f| f.bytes).sum();
                println!(
                    "\n== {n} passages: built in {:.1} s ({:.0} passages/s), {:.1} MiB on disk",
                    start.elapsed().as_secs_f64(),
                    n as f64 / start.elapsed().as_secs_f64(),
                    bytes as f64 / (1 << 20) as f64
                );
                index
            }
        };
        measure(&index, &queries, reps)?;
        check_exact(&index, &queries[..verify.min(queries.len())])?;
    }
    Ok(())
}

/// Search latency per call for batches of 1..32 queries, and the cost of `score` on 20 docs.
fn measure(
    index: &Bm25Index,
    queries: &[Query],
    reps: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    index.search(queries, 10)?; // warm the page cache
    for batch in [1, 2, 4, 8, 16, 32] {
        let mut ms = Vec::new();
        for _ in 0..reps {
            for chunk in queries.chunks(batch) {
                let start = Instant::now();
                std::hint::black_box(index.search(chunk, 10)?);
                ms.push(start.elapsed().as_secs_f64() * 1e3);
            }
        }
        ms.sort_by(f64::total_cmp);
        let median = ms[ms.len() / 2];
        println!(
            "  top-10, batch {batch:2}: median {median:7.2} ms per call ({:6.2} ms per query), \
             p10 {:7.2}, p90 {:7.2}, max {:7.2} ({} calls)",
            median / batch as f64,
            ms[ms.len() / 10],
            ms[ms.len() * 9 / 10],
            ms[ms.len() - 1],
            ms.len()
        );
    }
    let top = index.search(queries, 20)?;
    let mut ms = Vec::new();
    for _ in 0..reps {
        for (q, hits) in queries.iter().zip(&top) {
            let docs: Vec<u32> = hits.iter().map(|h| h.doc).collect();
            let start = Instant::now();
            std::hint::black_box(index.score(q, &docs)?);
            ms.push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    ms.sort_by(f64::total_cmp);
    println!(
        "  score(query, its 20 best docs): median {:.3} ms, p90 {:.3} ms",
        ms[ms.len() / 2],
        ms[ms.len() * 9 / 10]
    );
    Ok(())
}

/// Asserts that `search` equals the brute-force top-10 of `score` over every document.
fn check_exact(index: &Bm25Index, queries: &[Query]) -> Result<(), Box<dyn std::error::Error>> {
    if queries.is_empty() {
        return Ok(());
    }
    let start = Instant::now();
    let ids = index.ids().to_vec();
    for (q, hits) in queries.iter().zip(index.search(queries, 10)?) {
        let scores = index.score(q, &ids)?;
        let mut all: Vec<Hit> = ids
            .iter()
            .zip(scores)
            .filter(|(_, s)| *s > 0.0)
            .map(|(&doc, score)| Hit { doc, score })
            .collect();
        all.sort_by(Hit::rank_cmp);
        all.truncate(10);
        let same = all.len() == hits.len()
            && all
                .iter()
                .zip(&hits)
                .all(|(a, b)| a.doc == b.doc && a.score.to_bits() == b.score.to_bits());
        if !same {
            return Err(format!("{:?}: search {hits:?} != brute force {all:?}", q.as_str()).into());
        }
    }
    println!(
        "  verified: top-10 of {} queries equal the brute-force ranking of all {} documents, bit \
         for bit ({:.1} s)",
        queries.len(),
        ids.len(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `n` queries of 32 tokens (runs of alphanumeric characters, as the analyzer splits):
/// question `i` of FanOutQA (or of the examples' list) followed by passage text.
fn queries(corpus: &Corpus, n: usize) -> Vec<String> {
    let questions = fanoutqa().unwrap_or_else(|| common::QUESTIONS.map(String::from).to_vec());
    (0..n)
        .map(|i| {
            let passage = &corpus.get(((i * 7919 + 13) % corpus.len()) as u32).unwrap();
            let text = format!(
                "{} {}",
                questions[i % questions.len()],
                passage.prompt_text()
            );
            text.split(|c: char| !c.is_alphanumeric())
                .filter(|t| !t.is_empty())
                .take(32)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// The FanOutQA dev questions, if the asset is there.
fn fanoutqa() -> Option<Vec<String>> {
    let store = ralmspec_assets::Store::from_env().ok()?;
    let path = store.fetch(ralmspec_assets::Asset::FanOutQa).ok()?;
    let all: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    Some(
        all.as_array()?
            .iter()
            .filter_map(|q| q["question"].as_str().map(String::from))
            .collect(),
    )
}
