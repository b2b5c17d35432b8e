//! How the cost of one exact search grows with the batch: random keys (`--rows N`, default
//! 2,000,000, `--dim D`, default 576: SmolLM2's hidden size, the kNN-LM datastore's shape),
//! L2, top-`--k` (default 256); the mean latency of a call for batch sizes 1 to 16 and the
//! cost each further query adds. This is what speculative verification pays for a round of s
//! steps: b(s) = b(1) + c·(s − 1).
//!
//! ```text
//! cargo run --release -p ralmspec-retrieval --example flat_batch -- [--rows N] [--dim D] [--k K]
//! ```

use std::time::Instant;

use ralmspec_retrieval::padding::splitmix64;
use ralmspec_retrieval::{FlatIndex, Metric, Query, Retriever};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| v.parse().expect("a number"))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (rows, dim, k) = (arg("--rows", 2_000_000), arg("--dim", 576), arg("--k", 256));
    let mut state = 7u64;
    let mut random = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| (splitmix64(&mut state) >> 40) as f32 / (1u64 << 24) as f32 - 0.5)
            .collect()
    };
    let index = FlatIndex::new(dim, random(rows * dim), (0..rows as u32).collect())?
        .with_metric(Metric::L2);
    let queries: Vec<Query> = (0..16).map(|_| Query::embedded("", random(dim))).collect();
    println!(
        "{rows} × {dim} keys ({:.1} GB), L2, top-{k}, {} threads",
        (rows * dim * 4) as f64 / 1e9,
        rayon::current_num_threads()
    );
    index.search(&queries[..1], k)?; // warm up
    let mut one = 0.0;
    for batch in [1, 2, 3, 4, 6, 8, 12, 16] {
        let reps = 5;
        let start = Instant::now();
        for _ in 0..reps {
            index.search(&queries[..batch], k)?;
        }
        let ms = start.elapsed().as_secs_f64() * 1e3 / reps as f64;
        if batch == 1 {
            one = ms;
            println!("batch  1: {ms:7.1} ms");
        } else {
            println!(
                "batch {batch:2}: {ms:7.1} ms ({:+.1} ms per further query)",
                (ms - one) / (batch - 1) as f64
            );
        }
    }
    Ok(())
}
