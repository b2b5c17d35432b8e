//! What a streamed padded build costs: one random unit vector of `--dim D` (default 384) per
//! knowledge-base passage (no encoding: the vectors' values do not change the cost), padded
//! to `--rows R` (default 2,000,000)
//! with [`write_padded`] into a [`FlatWriter`] (`--f16` for f16 storage) in a temporary folder
//! (or `--out DIR`), then loaded back with a full verify. Prints rows per second and the peak
//! resident memory, which stays near the real index plus one chunk whatever `--rows` is.
//!
//! ```text
//! cargo run --release -p ralmspec-retrieval --example pad_stream -- [--rows R] [--f16]
//! ```

use std::path::PathBuf;
use std::time::Instant;

use ralmspec_retrieval::PaddingRecord;
use ralmspec_retrieval::dense_padding::{DEFAULT_NOISE, write_padded};
use ralmspec_retrieval::index::Expect;
use ralmspec_retrieval::padding::{DEFAULT_SEED, splitmix64};
use ralmspec_retrieval::{Corpus, FlatIndex, FlatWriter, Padding, Precision};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    let i = args.iter().position(|a| a == name)?;
    args.get(i + 1).cloned()
}

fn number(name: &str, default: usize) -> usize {
    arg(name).map_or(default, |v| v.parse().expect("a number"))
}

/// Peak resident memory of this process (`VmHWM`), as Linux reports it.
fn peak_rss() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM"))
                .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
        })
        .unwrap_or_else(|| "unknown".into())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (dim, rows) = (number("--dim", 384), number("--rows", 2_000_000));
    let precision = if std::env::args().any(|a| a == "--f16") {
        Precision::F16
    } else {
        Precision::F32
    };
    let corpus = Corpus::wiki_kb()?;
    let real = corpus.len();
    let mut state = 7u64;
    let mut v: Vec<f32> = (0..real * dim)
        .map(|_| (splitmix64(&mut state) >> 40) as f32 / (1u64 << 24) as f32 - 0.5)
        .collect();
    for row in v.chunks_mut(dim) {
        let len = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        row.iter_mut().for_each(|x| *x /= len);
    }
    let flat = FlatIndex::new(dim, v, corpus.docs())?;
    let padding = Padding::new(&corpus, rows, DEFAULT_SEED)?;
    let tmp = tempfile::tempdir()?;
    let dir = arg("--out").map_or_else(|| tmp.path().join("padded"), PathBuf::from);
    println!(
        "{real} real rows of {dim} padded to {rows}, {precision} ({:.2} GB) into {}",
        (rows * dim * precision.bytes()) as f64 / 1e9,
        dir.display()
    );

    let start = Instant::now();
    let mut writer = FlatWriter::create(&dir, dim, precision)?;
    write_padded(
        &flat,
        &padding,
        DEFAULT_NOISE,
        &mut writer,
        &mut |done, total| {
            if done == total || done % (16 * 65_536) < 65_536 {
                eprintln!(
                    "  {done}/{total} rows, {:.1} s",
                    start.elapsed().as_secs_f64()
                );
            }
        },
    )?;
    let hash = corpus.hash();
    let record = PaddingRecord::new(&padding, DEFAULT_NOISE);
    writer.finish(&hash, "random", Some(record))?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "written in {secs:.1} s ({:.0} rows/s); peak resident memory {}",
        rows as f64 / secs,
        peak_rss()
    );

    let start = Instant::now();
    let expect = Expect {
        corpus_hash: &hash,
        encoder: "random",
    };
    let (loaded, m) = FlatIndex::load(&dir, &expect)?;
    println!(
        "loaded with a full verify in {:.1} s: {} rows, {}",
        start.elapsed().as_secs_f64(),
        m.count,
        loaded.precision()
    );
    Ok(())
}
