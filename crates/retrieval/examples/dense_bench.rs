//! Dense retrieval benchmark: flat and HNSW at the knowledge base's real size (10,033 real
//! MiniLM vectors) and padded to `--pad-to N` (default 1,000,000; HNSW there too unless
//! `--hnsw-pad-to M` moves it to a padded size of its own), beside FAISS on the same
//! vectors (`scripts/faiss_bench.py`, run by this example in the same run; `--no-faiss` skips
//! it). Reports latency per call for batch sizes 1..32 (the minimum over `--reps` repetitions
//! of the mean over several calls), build and open times, peak memory (VmHWM), and HNSW
//! recall@10 against flat on real FanOutQA questions for several efSearch values.
//!
//! ```text
//! cargo run --release -p ralmspec-retrieval --example dense_bench -- \
//!     [--pad-to N] [--hnsw-pad-to N] [--reps R] [--no-faiss]
//! ```
//!
//! `--pad-to 0` measures the real size only.
//!
//! Indexes are cached under `<store>/indexes/` (the full-KB flat index takes ~9 min to encode
//! once; padded indexes are rebuilt from it in seconds and HNSW graphs in minutes).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use ralmspec_retrieval::index::{Expect, Verify};
use ralmspec_retrieval::padding::DEFAULT_SEED;
use ralmspec_retrieval::{
    Corpus, ENCODER_NAME, Encoder, FlatIndex, HnswIndex, HnswParams, Padding, Query, Retriever,
    dense_padding::DEFAULT_NOISE,
};

type Error = Box<dyn std::error::Error>;

const BATCHES: [usize; 6] = [1, 2, 4, 8, 16, 32];
const EFS: [usize; 5] = [16, 32, 64, 128, 256];
const QUESTIONS: usize = 200;

struct Args {
    pad_to: usize,
    hnsw_pad_to: usize,
    reps: usize,
    faiss: bool,
}

fn args() -> Result<Args, Error> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let num = |flag: &str, default: usize| -> Result<usize, Error> {
        match argv.iter().position(|a| a == flag) {
            Some(i) => Ok(argv
                .get(i + 1)
                .ok_or(format!("{flag} needs a number"))?
                .parse()?),
            None => Ok(default),
        }
    };
    let pad_to = num("--pad-to", 1_000_000)?;
    Ok(Args {
        pad_to,
        hnsw_pad_to: num("--hnsw-pad-to", pad_to)?,
        reps: num("--reps", 5)?,
        faiss: !argv.iter().any(|a| a == "--no-faiss"),
    })
}

/// Peak resident memory of this process so far, in MiB.
fn peak_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Milliseconds per call of `search` on consecutive batches of `b` queries: the minimum over
/// `reps` repetitions of the mean over up to 4 calls.
fn latency(reps: usize, queries: &[Query], b: usize, search: &dyn Fn(&[Query])) -> f64 {
    let calls = (queries.len() / b).clamp(1, 4);
    search(&queries[..b]); // warm up
    (0..reps)
        .map(|_| {
            let start = Instant::now();
            for c in 0..calls {
                search(&queries[c * b..(c + 1) * b]);
            }
            start.elapsed().as_secs_f64() * 1e3 / calls as f64
        })
        .fold(f64::INFINITY, f64::min)
}

/// One measured configuration, printed in the final table.
struct Row {
    size: String,
    what: String,
    ours: BTreeMap<usize, f64>,
    faiss: Option<BTreeMap<usize, f64>>,
}

fn faiss(
    args: &Args,
    vectors: &Path,
    queries: &Path,
    hnsw: Option<&HnswParams>,
) -> Result<serde_json::Value, Error> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/faiss_bench.py");
    let mut cmd = Command::new("python3");
    cmd.arg(&script)
        .arg("--install")
        .args(["--vectors", &vectors.display().to_string()])
        .args(["--dims", "384"])
        .args(["--queries", &queries.display().to_string()])
        .args(["--reps", &args.reps.to_string()]);
    if let Some(p) = hnsw {
        cmd.args(["--hnsw", &format!("{},{}", p.m, p.ef_construction)]);
        cmd.args(["--efs", &EFS.map(|e| e.to_string()).join(",")]);
    }
    let out = cmd.output()?;
    if !out.status.success() {
        return Err(format!(
            "faiss_bench.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn ms_map(v: &serde_json::Value) -> BTreeMap<usize, f64> {
    v.as_object()
        .into_iter()
        .flatten()
        .filter_map(|(b, ms)| Some((b.parse().ok()?, ms.as_f64()?)))
        .collect()
}

fn main() -> Result<(), Error> {
    let args = args()?;
    let store = ralmspec_assets::Store::from_env()?;
    let indexes = store.root().join("indexes");
    let bench = store.root().join("bench/dense");
    std::fs::create_dir_all(&bench)?;
    let corpus = Corpus::wiki_kb()?;
    let encoder = Encoder::minilm()?;
    let hash = corpus.hash();
    let expect = Expect {
        corpus_hash: &hash,
        encoder: ENCODER_NAME,
    };
    println!("threads: {}", rayon::current_num_threads());

    let start = Instant::now();
    let real = common::kb_flat(&encoder, &corpus)?;
    println!(
        "full-KB flat index: {} vectors, ready in {:.2} s",
        real.len(),
        start.elapsed().as_secs_f64()
    );
    let texts = common::fanoutqa_questions(QUESTIONS)?;
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let queries = Query::encode_all(&encoder, &refs)?;
    let queries_file = bench.join("queries.f32");
    let qbytes: Vec<u8> = queries
        .iter()
        .flat_map(|q| q.embedding().unwrap().iter().flat_map(|x| x.to_le_bytes()))
        .collect();
    std::fs::write(&queries_file, qbytes)?;
    println!("{} FanOutQA questions encoded", queries.len());

    let params = HnswParams::default();
    let mut rows: Vec<Row> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    let mut sizes = vec![(real.len(), false)];
    if args.hnsw_pad_to != args.pad_to && args.hnsw_pad_to > 0 {
        sizes.push((args.hnsw_pad_to, true));
    }
    if args.pad_to > 0 {
        sizes.push((args.pad_to, true));
    }
    for (n, padded) in sizes {
        let size = if padded {
            format!("{n} (padded)")
        } else {
            format!("{n}")
        };
        println!("\n== {size}");
        let (flat, flat_dir) = if padded {
            let dir = indexes.join(format!("wiki-kb/flat-pad{n}"));
            (
                open_or_pad(&dir, &expect, &real, &corpus, n, &mut notes)?,
                dir,
            )
        } else {
            (real.clone(), common::kb_flat_dir()?)
        };
        if let Some(p) = flat.padding() {
            println!("padding: {}", p.description);
        }
        let mut flat_ms = BTreeMap::new();
        for b in BATCHES {
            let ms = latency(args.reps, &queries, b, &|qs| {
                std::hint::black_box(flat.search(qs, 10).unwrap());
            });
            println!("flat batch {b:>2}: {ms:.3} ms per call");
            flat_ms.insert(b, ms);
        }
        let fj = if args.faiss {
            let with_hnsw = (!padded || n == args.hnsw_pad_to).then_some(&params);
            Some(faiss(
                &args,
                &flat_dir.join("vectors.f32"),
                &queries_file,
                with_hnsw,
            )?)
        } else {
            None
        };
        rows.push(Row {
            size: size.clone(),
            what: "flat".into(),
            ours: flat_ms,
            faiss: fj.as_ref().map(|j| ms_map(&j["flat_ms"])),
        });
        if padded && n != args.hnsw_pad_to {
            continue;
        }

        let dir = indexes.join(format!(
            "wiki-kb/hnsw-m{}-efc{}{}",
            params.m,
            params.ef_construction,
            if padded {
                format!("-pad{n}")
            } else {
                String::new()
            }
        ));
        let built = !dir.join("manifest.json").exists();
        let start = Instant::now();
        let mut hnsw = HnswIndex::open_or_build(&dir, &expect, &flat, params)?;
        let secs = start.elapsed().as_secs_f64();
        let how = if built { "built and saved" } else { "opened" };
        notes.push(format!(
            "{size}: HNSW (M {}, efC {}) {how} in {secs:.1} s ({} threads); peak RSS so far {:.0} MiB",
            params.m,
            params.ef_construction,
            rayon::current_num_threads(),
            peak_mib()
        ));
        if let Some(j) = &fj {
            notes.push(format!(
                "{size}: FAISS IndexHNSWFlat build {:.1} s, IndexFlatIP add {:.2} s ({} threads, faiss {})",
                j["hnsw_build_s"].as_f64().unwrap_or(f64::NAN),
                j["flat_add_s"].as_f64().unwrap_or(f64::NAN),
                j["threads"],
                j["faiss_version"]
            ));
        }
        let exact = flat.search(&queries, 10)?;
        for ef in EFS {
            hnsw.set_ef_search(ef);
            let recall = common::recall(&exact, &hnsw.search(&queries, 10)?);
            let mut ms = BTreeMap::new();
            for b in BATCHES {
                ms.insert(
                    b,
                    latency(args.reps, &queries, b, &|qs| {
                        std::hint::black_box(hnsw.search(qs, 10).unwrap());
                    }),
                );
            }
            println!(
                "hnsw ef {ef:>3}: recall@10 {recall:.4}, batch 1 {:.3} ms",
                ms[&1]
            );
            let theirs = fj.as_ref().and_then(|j| {
                j["hnsw"]
                    .as_array()?
                    .iter()
                    .find(|h| h["ef"] == ef)
                    .cloned()
            });
            let their_recall = theirs.as_ref().and_then(|h| h["recall"].as_f64());
            rows.push(Row {
                size: size.clone(),
                what: format!(
                    "hnsw ef {ef} (recall {recall:.3}{})",
                    their_recall.map_or(String::new(), |r| format!(" / faiss {r:.3}"))
                ),
                ours: ms,
                faiss: theirs.map(|h| ms_map(&h["ms"])),
            });
        }
        hnsw.set_ef_search(params.ef_search);
    }

    println!(
        "\nms per call, ours / FAISS (ratio), minimum of {} repetitions:",
        args.reps
    );
    let head: Vec<String> = BATCHES.iter().map(|b| format!("batch {b}")).collect();
    println!("| size | index | {} |", head.join(" | "));
    println!("|---|---|{}", "---|".repeat(BATCHES.len()));
    for r in &rows {
        let cells: Vec<String> = BATCHES
            .iter()
            .map(|b| {
                let ours = r.ours[b];
                match r.faiss.as_ref().and_then(|f| f.get(b)) {
                    Some(t) => format!("{ours:.3} / {t:.3} ({:.2}×)", ours / t),
                    None => format!("{ours:.3}"),
                }
            })
            .collect();
        println!("| {} | {} | {} |", r.size, r.what, cells.join(" | "));
    }
    println!();
    for n in &notes {
        println!("- {n}");
    }
    println!("- peak RSS of this process: {:.0} MiB", peak_mib());
    Ok(())
}

/// The padded flat index in `dir`: opened (memory-mapped, sizes checked) when there, else
/// padded from `real`, saved, and reopened mapped.
fn open_or_pad(
    dir: &Path,
    expect: &Expect<'_>,
    real: &FlatIndex,
    corpus: &Corpus,
    n: usize,
    notes: &mut Vec<String>,
) -> Result<FlatIndex, Error> {
    let padding = Padding::new(corpus, n, DEFAULT_SEED)?;
    if !dir.join("manifest.json").exists() {
        let start = Instant::now();
        let padded = real.pad(&padding, DEFAULT_NOISE)?;
        let pad_s = start.elapsed().as_secs_f64();
        let start = Instant::now();
        padded.save(dir, expect.corpus_hash, expect.encoder)?;
        notes.push(format!(
            "{n} (padded): vectors computed in {pad_s:.1} s, saved (sha256 while writing) in {:.1} s",
            start.elapsed().as_secs_f64()
        ));
    }
    let start = Instant::now();
    let (flat, m) = FlatIndex::open(dir, expect, Verify::Sizes)?;
    let open_s = start.elapsed().as_secs_f64();
    let start = Instant::now();
    FlatIndex::open(dir, expect, Verify::Full)?;
    notes.push(format!(
        "{n} (padded): open mapped (sizes checked) {:.1} ms, full sha256 verify {:.2} s",
        open_s * 1e3,
        start.elapsed().as_secs_f64()
    ));
    let want = ralmspec_retrieval::PaddingRecord::new(&padding, DEFAULT_NOISE);
    if m.padding.as_ref() != Some(&want) {
        return Err(format!(
            "{} holds other padding; remove it to rebuild",
            dir.display()
        )
        .into());
    }
    Ok(flat)
}
