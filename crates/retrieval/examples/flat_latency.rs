//! Flat search latency at the knowledge base's size without encoding all of it: the first
//! `--encode N` passages (default 300) are encoded for real and their vectors repeated to
//! 10,033 rows (the score values differ from the real index; the work per search does not).
//! The real full index is `examples/flat_kb.rs`.
//!
//! ```text
//! cargo run --release -p ralmspec-retrieval --example flat_latency -- [--encode N]
//! ```

use std::time::Instant;

mod common;

use ralmspec_retrieval::{Corpus, Encoder, FlatIndex, Query, Retriever};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = match args.iter().position(|a| a == "--encode") {
        Some(i) => args.get(i + 1).ok_or("--encode needs a number")?.parse()?,
        None => 300,
    };
    let corpus = Corpus::wiki_kb()?;
    let encoder = Encoder::minilm()?;
    let head = corpus.head(n);
    let start = Instant::now();
    let real = FlatIndex::build(&encoder, &head)?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "encoded {n} passages in {secs:.1} s: {:.1} passages/s ({} threads)",
        n as f64 / secs,
        rayon::current_num_threads()
    );
    let dim = real.dim();
    let vectors: Vec<f32> = (0..corpus.len())
        .flat_map(|r| real.vectors()[(r % n) * dim..][..dim].to_vec())
        .collect();
    let index = FlatIndex::new(dim, vectors, corpus.docs())?;
    let start = Instant::now();
    let queries = Query::encode_all(&encoder, &common::QUESTIONS)?;
    println!(
        "encoded 8 queries in {:.1} ms",
        start.elapsed().as_secs_f64() * 1e3
    );
    for (batch, k) in [(1, 1), (1, 20), (8, 1), (8, 20)] {
        let reps = 200;
        let qs = &queries[..batch];
        index.search(qs, k)?;
        let start = Instant::now();
        for _ in 0..reps {
            std::hint::black_box(index.search(qs, k)?);
        }
        let ms = start.elapsed().as_secs_f64() * 1e3 / reps as f64;
        println!(
            "{} rows, batch {batch}, k {k}: {ms:.3} ms per call ({:.3} ms per query)",
            index.len(),
            ms / batch as f64
        );
    }
    Ok(())
}
