//! How the cost of one round of verification grows with its batch over PostgreSQL + pgvector:
//! the median latency of `--reps` searches (default 5) of s real questions at once (FanOutQA,
//! encoded by the index's encoder), s = 1 to 16, for `--kind pgvector` (exact) or
//! `pgvector-hnsw`; the cost each further query adds, the least-squares line b(s) = b(1) +
//! c·(s − 1), and s·b(1) (the same queries one after another) beside it. A batch's queries go
//! out at once over pooled connections, so the database runs up to `--connections` of them in
//! parallel (default 16); with free cores a round costs about one query.
//!
//! ```text
//! cargo run --release -p ralmspec-retrieval --example pg_batch -- --database URL
//!     [--table passages_pad1000000] [--kind pgvector|pgvector-hnsw] [--k 20] [--reps 5]
//!     [--ef-search 40] [--connections 16]
//! ```

use std::time::Instant;

use ralmspec_retrieval::pg::DatabaseOptions;
use ralmspec_retrieval::{Kind, PgRetriever, Query, Retriever, questions};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    let i = args.iter().position(|a| a == name)?;
    args.get(i + 1).cloned()
}

fn number(name: &str, default: usize) -> usize {
    arg(name).map_or(default, |v| v.parse().expect("a number"))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let database = arg("--database").ok_or("--database URL is needed")?;
    let table = arg("--table").unwrap_or_else(|| "passages_pad1000000".into());
    let kind: Kind = arg("--kind").unwrap_or_else(|| "pgvector".into()).parse()?;
    let (k, reps) = (number("--k", 20), number("--reps", 5).max(1));
    let options = DatabaseOptions {
        pool_size: number("--connections", 16),
        timeout: std::time::Duration::from_secs(120),
        ..DatabaseOptions::default()
    };
    let urls: Vec<String> = database.split(',').map(str::to_string).collect();
    let ef = arg("--ef-search").map(|v| v.parse()).transpose()?;
    let retriever = PgRetriever::connect(&urls, &table, kind, ef, options)?;
    let encoder = retriever.encoder_record().open(None)?;
    let texts: Vec<String> = questions::fanoutqa_dev()?
        .into_iter()
        .take(16)
        .map(|q| q.text)
        .collect();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let queries = Query::encode_all(&encoder, &texts)?;
    println!(
        "{kind} over {} rows of {table} (dim {}), k = {k}, median of {reps}",
        retriever.len(),
        retriever.info().dim
    );
    // Warm the pool (16 connections) and the table's pages.
    retriever.search(&queries, k)?;
    retriever.search(&queries, k)?;
    let mut medians = Vec::new();
    println!("|  s | b(s) ms | s·b(1) ms | b(s)/b(1) |");
    println!("|---:|---:|---:|---:|");
    for s in 1..=16 {
        let mut times: Vec<f64> = (0..reps)
            .map(|r| {
                // Rotate so that each repetition asks other questions first.
                let batch: Vec<Query> = (0..s).map(|i| queries[(i + r) % 16].clone()).collect();
                let start = Instant::now();
                retriever.search(&batch, k).expect("a search");
                start.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        times.sort_by(f64::total_cmp);
        let median = times[reps / 2];
        medians.push(median);
        println!(
            "| {s:>2} | {median:.1} | {:.1} | {:.2} |",
            medians[0] * s as f64,
            median / medians[0]
        );
    }
    // Least squares of b(s) = b1 + c·(s − 1).
    let n = medians.len() as f64;
    let xs: Vec<f64> = (0..medians.len()).map(|i| i as f64).collect();
    let (mx, my) = (xs.iter().sum::<f64>() / n, medians.iter().sum::<f64>() / n);
    let c = xs
        .iter()
        .zip(&medians)
        .map(|(x, y)| (x - mx) * (y - my))
        .sum::<f64>()
        / xs.iter().map(|x| (x - mx).powi(2)).sum::<f64>();
    println!(
        "fit: b(s) = {:.1} ms + {c:.1} ms·(s − 1); a further query costs {:.0}% of one alone",
        my - c * mx,
        100.0 * c / medians[0]
    );
    Ok(())
}
