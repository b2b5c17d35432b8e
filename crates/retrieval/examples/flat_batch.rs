//! How the cost of one exact search grows with the batch: random keys (`--rows N`, default
//! 2,000,000, `--dim D`, default 576: SmolLM2's hidden size, the kNN-LM datastore's shape),
//! L2, top-`--k` (default 256); the median latency of `--reps` calls (default 7) for batch
//! sizes 1 to 16, the cost each further query adds, and the least-squares line through them.
//! This is what speculative verification pays for a round of s steps: b(s) = b(1) + c·(s − 1). `--f16` stores the keys as f16 (half the bytes streamed,
//! widened to f32 block by block); `--metric ip` ranks by inner product instead of L2.
//!
//! `--index DIR` measures an index folder instead (e.g. the flat folder of a 21M-passage set).
//!
//! ```text
//! cargo run --release -p ralmspec-retrieval --example flat_batch -- [--rows N] [--dim D] [--k K]
//!     [--f16] [--metric ip|l2]
//! ```

use std::time::Instant;

use ralmspec_retrieval::padding::splitmix64;
use ralmspec_retrieval::{FlatIndex, Metric, Precision, Query, Retriever};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| v.parse().expect("a number"))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (rows, dim, k) = (arg("--rows", 2_000_000), arg("--dim", 576), arg("--k", 256));
    let reps = arg("--reps", 7).max(1);
    let args: Vec<String> = std::env::args().collect();
    let precision = if args.iter().any(|a| a == "--f16") {
        Precision::F16
    } else {
        Precision::F32
    };
    let metric = match args
        .iter()
        .position(|a| a == "--metric")
        .map(|i| args.get(i + 1))
    {
        None => Metric::L2,
        Some(Some(m)) if m == "l2" => Metric::L2,
        Some(Some(m)) if m == "ip" => Metric::InnerProduct,
        Some(other) => return Err(format!("--metric takes ip or l2, not {other:?}").into()),
    };
    let mut state = 7u64;
    let mut random = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| (splitmix64(&mut state) >> 40) as f32 / (1u64 << 24) as f32 - 0.5)
            .collect()
    };
    // `--index DIR`: an index folder on disk (memory-mapped: a 21M-passage set is searched as
    // `ask` searches it), with random unit-scale queries of its dimension.
    let index = match args.iter().position(|a| a == "--index") {
        Some(i) => {
            let dir = std::path::Path::new(args.get(i + 1).ok_or("--index takes a folder")?);
            let manifest: serde_json::Value =
                serde_json::from_slice(&std::fs::read(dir.join("manifest.json"))?)?;
            let expect = ralmspec_retrieval::index::Expect {
                corpus_hash: manifest["corpus_hash"].as_str().unwrap_or_default(),
                encoder: manifest["encoder"].as_str().unwrap_or_default(),
            };
            let verify = ralmspec_retrieval::index::Verify::Sizes;
            FlatIndex::open(dir, &expect, verify)?.0
        }
        None => {
            let mut index = FlatIndex::new(dim, random(rows * dim), (0..rows as u32).collect())?;
            if precision == Precision::F16 {
                index = index.to_precision(Precision::F16); // the f32 table is dropped
            }
            index.with_metric(metric)
        }
    };
    let (rows, dim, precision, metric) =
        (index.len(), index.dim(), index.precision(), index.metric());
    let queries: Vec<Query> = (0..16).map(|_| Query::embedded("", random(dim))).collect();
    println!(
        "{rows} × {dim} keys, {precision} ({:.1} GB), {metric:?}, top-{k}, {} threads",
        (rows * dim * precision.bytes()) as f64 / 1e9,
        rayon::current_num_threads()
    );
    index.search(&queries[..1], k)?; // warm up
    let mut one = 0.0;
    let mut points = Vec::new();
    for batch in [1, 2, 3, 4, 6, 8, 12, 16] {
        let mut times: Vec<f64> = (0..reps)
            .map(|_| {
                let start = Instant::now();
                index.search(&queries[..batch], k).map(|_| ())?;
                Ok(start.elapsed().as_secs_f64() * 1e3)
            })
            .collect::<Result<_, ralmspec_retrieval::RetrievalError>>()?;
        times.sort_by(f64::total_cmp);
        let ms = times[times.len() / 2];
        points.push((batch as f64, ms));
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
    let n = points.len() as f64;
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let sxy: f64 = points.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    let sxx: f64 = points.iter().map(|(x, _)| (x - mx) * (x - mx)).sum();
    let c = sxy / sxx;
    println!(
        "fit: b(s) = {:.1} + {c:.1}·(s − 1) ms (b(1) measured {one:.1} ms)",
        my - c * (mx - 1.0)
    );
    Ok(())
}
