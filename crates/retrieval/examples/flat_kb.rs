//! Builds (or loads) the flat MiniLM index of the whole knowledge base and measures encoding
//! speed and search latency.
//!
//! ```text
//! cargo run --release -p ralmspec-retrieval --example flat_kb -- [INDEX_DIR] [--rebuild]
//! ```
//!
//! INDEX_DIR defaults to `<store>/indexes/wiki-kb/flat` (shared with `ralmspec ask --retriever flat`).

use std::path::PathBuf;
use std::time::Instant;

mod common;

use ralmspec_retrieval::{Corpus, Encoder, FlatIndex, Query, Retriever};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rebuild = args.iter().any(|a| a == "--rebuild");
    let dir = match args.iter().find(|a| !a.starts_with("--")) {
        Some(d) => PathBuf::from(d),
        None => ralmspec_assets::Store::from_env()?
            .root()
            .join("indexes/wiki-kb/flat"),
    };
    let corpus = Corpus::wiki_kb()?;
    let encoder = Encoder::minilm()?;
    println!("corpus: {} passages, hash {}", corpus.len(), corpus.hash());
    println!("threads: {}", rayon::current_num_threads());
    if rebuild && dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    let start = Instant::now();
    let built = !dir.join("manifest.json").exists();
    let index = FlatIndex::open_or_build(&dir, &encoder, &corpus)?;
    let secs = start.elapsed().as_secs_f64();
    if built {
        println!(
            "built {} in {secs:.1} s: {:.1} passages/s",
            dir.display(),
            corpus.len() as f64 / secs
        );
    } else {
        println!("loaded {} in {:.3} s", dir.display(), secs);
    }

    let start = Instant::now();
    let queries = Query::encode_all(&encoder, &common::QUESTIONS)?;
    println!(
        "encoded {} queries in {:.1} ms",
        queries.len(),
        start.elapsed().as_secs_f64() * 1e3
    );
    for q in &queries {
        let top = &index.search(std::slice::from_ref(q), 1)?[0][0];
        let title = &corpus.get(top.doc).expect("a corpus doc").title;
        println!("  {:<48} -> {title} ({:.3})", q.as_str(), top.score);
    }
    for (batch, k) in [(1, 1), (1, 20), (8, 1), (8, 20)] {
        let reps = 50;
        let qs = &queries[..batch];
        index.search(qs, k)?; // warm up
        let start = Instant::now();
        for _ in 0..reps {
            std::hint::black_box(index.search(qs, k)?);
        }
        let ms = start.elapsed().as_secs_f64() * 1e3 / reps as f64;
        println!(
            "search batch {batch}, k {k}: {ms:.3} ms per call ({:.3} ms per query)",
            ms / batch as f64
        );
    }
    Ok(())
}
