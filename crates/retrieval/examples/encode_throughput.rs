//! Passage encoding throughput on the CPU, against this machine's f32 GEMM.
//!
//! ```text
//! cargo run --release -p ralmspec-retrieval --example encode_throughput -- [--passages N]
//! ```
//!
//! Encodes N knowledge-base passages (default 1000, spread over the corpus) with the per-text
//! path ([`Encoder::encode_flat`], every text alone and unpadded) and the batched passage path
//! ([`Encoder::encode_passages_flat`], in one call and in calls of 32 as an index build makes
//! them), and prints passages/s, the useful GFLOP/s (FLOPs from the model config and the real
//! token counts; padding is not counted), and that as a fraction of the f32 GEMM throughput
//! measured in the same run with candle's CPU matmul.
//!
//! FLOPs of one text of `n` tokens: per layer, `n · (8·d² + 4·d·d_ff) + 4·n²·d` (QKV and
//! output projections, the FFN, `QKᵀ` and `PV`, two FLOPs per multiply-add), times the layers.

use std::time::Instant;

use candle_core::{Device, Tensor};
use ralmspec_retrieval::{Corpus, Encoder};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n = match args.iter().position(|a| a == "--passages") {
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|&n| n > 0)
            .ok_or("--passages takes a positive count")?,
        None => 1000,
    };
    let corpus = Corpus::wiki_kb()?;
    let encoder = Encoder::minilm()?;
    let n = n.min(corpus.len());
    let step = corpus.len() / n;
    let texts: Vec<String> = (0..n)
        .map(|i| corpus.get((i * step) as u32).map(|p| p.prompt_text()))
        .collect::<Option<_>>()
        .ok_or("passage out of range")?;
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();

    let model = Model::read(&encoder)?;
    let prefix = &encoder.pipeline().passage_prefix;
    let mut tokens = 0usize;
    let mut flops = 0f64;
    for t in &refs {
        let len = encoder.tokenize(&format!("{prefix}{t}"))?.len();
        tokens += len;
        flops += model.flops(len);
    }
    println!(
        "{} passages of the knowledge base ({} tokens, {:.1} per passage), {} threads, {}",
        n,
        tokens,
        tokens as f64 / n as f64,
        rayon::current_num_threads(),
        encoder.name()
    );
    println!(
        "model: {} layers, d {}, d_ff {}; {:.2} GFLOP per passage",
        model.layers,
        model.d,
        model.d_ff,
        flops / n as f64 / 1e9
    );

    // Warm up both paths (thread pools, page faults on the weights).
    let warm = &refs[..refs.len().min(16)];
    encoder.encode_flat(warm)?;
    encoder.encode_passages_flat(warm)?;

    let gemm = gemm_gflops(2048, 2048, 2048, 5)?;
    let ffn = gemm_gflops(4096, model.d_ff, model.d, 5)?;
    println!("f32 GEMM, candle CPU matmul, best of 5:");
    println!("  2048 x 2048 x 2048            {gemm:7.1} GFLOP/s");
    println!(
        "  4096 x {} x {} (x · Wᵀ, FFN) {ffn:7.1} GFLOP/s",
        model.d_ff, model.d
    );

    let (old, old_t) = timed(|| encoder.encode_flat(&refs))?;
    let (new, new_t) = timed(|| encoder.encode_passages_flat(&refs))?;
    let (chunked, chunked_t) = timed(|| {
        let mut all = Vec::with_capacity(new.len());
        for chunk in refs.chunks(32) {
            all.extend(encoder.encode_passages_flat(chunk)?);
        }
        Ok(all)
    })?;

    let dim = encoder.dim();
    let min_cos = |a: &[f32], b: &[f32]| {
        a.chunks(dim)
            .zip(b.chunks(dim))
            .map(|(x, y)| cosine(x, y))
            .fold(f64::INFINITY, f64::min)
    };
    println!(
        "min cosine with the per-text path: one call {:.7}, calls of 32 {:.7}",
        min_cos(&old, &new),
        min_cos(&old, &chunked)
    );

    println!();
    println!(
        "{:<26} {:>10} {:>8} {:>8} {:>12}",
        "path", "passages/s", "GFLOP/s", "of GEMM", "per CPU-s"
    );
    for (path, t) in [
        ("per text (encode_flat)", old_t),
        ("batched, one call", new_t),
        ("batched, calls of 32", chunked_t),
    ] {
        let gflops = flops / t.wall / 1e9;
        println!(
            "{path:<26} {:>10.1} {gflops:>8.1} {:>7.0}% {:>12.1}",
            n as f64 / t.wall,
            100.0 * gflops / gemm,
            n as f64 / t.cpu,
        );
    }
    Ok(())
}

/// Wall-clock and CPU seconds (all threads of the process) of one run.
#[derive(Clone, Copy)]
struct Times {
    wall: f64,
    cpu: f64,
}

/// Runs `f`, timing it.
fn timed<T>(
    f: impl FnOnce() -> ralmspec_retrieval::Result<T>,
) -> Result<(T, Times), Box<dyn std::error::Error>> {
    let (cpu0, start) = (cpu_seconds()?, Instant::now());
    let out = f()?;
    let wall = start.elapsed().as_secs_f64();
    Ok((
        out,
        Times {
            wall,
            cpu: cpu_seconds()? - cpu0,
        },
    ))
}

/// User + system CPU seconds of this process so far, from `/proc/self/stat` (in clock ticks
/// of 1/100 s, Linux's fixed `USER_HZ`).
fn cpu_seconds() -> Result<f64, Box<dyn std::error::Error>> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat
        .rsplit_once(')')
        .ok_or("/proc/self/stat: no command")?
        .1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Result<f64, Box<dyn std::error::Error>> {
        Ok(fields
            .get(i)
            .ok_or("/proc/self/stat: short")?
            .parse::<f64>()?)
    };
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}

/// What the FLOP count needs from `config.json`.
struct Model {
    layers: usize,
    d: usize,
    d_ff: usize,
}

impl Model {
    fn read(encoder: &Encoder) -> Result<Model, Box<dyn std::error::Error>> {
        let path = encoder.dir().join("config.json");
        let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
        let get = |key: &str| {
            config
                .get(key)
                .and_then(serde_json::Value::as_u64)
                .map(|v| v as usize)
                .ok_or_else(|| format!("{}: no {key}", path.display()))
        };
        Ok(Model {
            layers: get("num_hidden_layers")?,
            d: get("hidden_size")?,
            d_ff: get("intermediate_size")?,
        })
    }

    /// FLOPs of one text of `n` tokens (see the module docs).
    fn flops(&self, n: usize) -> f64 {
        let (n, d, d_ff) = (n as f64, self.d as f64, self.d_ff as f64);
        let per_layer = n * (8.0 * d * d + 4.0 * d * d_ff) + 4.0 * n * n * d;
        per_layer * self.layers as f64
    }
}

/// Best GFLOP/s of `reps` products `(m × k) · (n × k)ᵀ` (the transposed right side, as
/// candle's `Linear` multiplies) with candle's CPU matmul.
fn gemm_gflops(m: usize, n: usize, k: usize, reps: usize) -> candle_core::Result<f64> {
    let dev = Device::Cpu;
    let a = Tensor::randn(0f32, 1.0, (m, k), &dev)?;
    let b = Tensor::randn(0f32, 1.0, (n, k), &dev)?;
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let start = Instant::now();
        let c = a.matmul(&b.t()?)?;
        c.dims2()?;
        best = best.min(start.elapsed().as_secs_f64());
    }
    Ok(2.0 * (m * n * k) as f64 / best / 1e9)
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb).max(1e-30)
}
