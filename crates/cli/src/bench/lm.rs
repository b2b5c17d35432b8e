//! `ralmspec bench lm`: prefill and decode tokens/s of our engine and of llama.cpp on the same
//! GGUF files, measured one after the other in the same run, printed side by side as ratios.
//!
//! Method (the same in both engines, see `bench/llamacpp`): the prompt is real Wikipedia text
//! (the knowledge base's extracts in file order, blank-line joined); prefill N = one forward of
//! the first N tokens into an empty cache; decode = 64 greedy steps after a 256-token prefill,
//! only the steps timed. One warm-up, then the median of `--reps`.
//!
//! `--device cuda` measures the GPU forward pass (builds with the `cuda` feature); llama.cpp,
//! built for the CPU here, is then left out.

use crate::flags::model::{self, Device};
use anyhow::{Context, Result, bail};
use ralmspec_assets::{Asset, Store};
use ralmspec_lm::{Lm, Outputs, argmax};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    /// Models to measure (comma-separated): smollm2, qwen2.5-0.5b, or GGUF paths.
    #[arg(long, default_value = "smollm2,qwen2.5-0.5b", value_delimiter = ',')]
    models: Vec<String>,
    /// Prompt lengths for the prefill measurement.
    #[arg(long, default_value = "64,256,512", value_delimiter = ',')]
    prefill: Vec<usize>,
    /// Tokens timed in the decode measurement (after a 256-token prompt).
    #[arg(long, default_value_t = 64)]
    decode_tokens: usize,
    /// Repetitions (the median is reported).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Skip the llama.cpp comparison (always skipped with `--device cuda`).
    #[arg(long)]
    no_llamacpp: bool,
    /// Where our engine computes.
    #[arg(long, value_enum, default_value_t = Device::Cpu)]
    device: Device,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

const DECODE_AFTER: usize = 256;

pub fn run(args: Args) -> Result<()> {
    if args.reps == 0 || args.prefill.is_empty() {
        bail!("--reps and --prefill must be non-empty");
    }
    let text = prompt_text()?;
    let mut results = Vec::new();
    for model in &args.models {
        let path = model::resolve(model)?;
        eprintln!("measuring ralmspec on {model} …");
        let ours = measure_ours(&model::open(&path, args.device)?, &text, &args)?;
        let theirs = if args.no_llamacpp || args.device == Device::Cuda {
            Value::Null
        } else {
            eprintln!("measuring llama.cpp on {model} (first run builds it: minutes) …");
            measure_llamacpp(&path, &args).unwrap_or_else(|e| {
                eprintln!("llama.cpp comparison skipped: {e:#}");
                Value::Null
            })
        };
        results.push(json!({"model": model, "path": path, "ralmspec": ours, "llama.cpp": theirs}));
    }
    let report = json!({
        "machine": crate::bench::machine::describe(),
        "device": format!("{:?}", args.device).to_lowercase(),
        "threads": crate::bench::machine::threads(),
        "method": "median of reps after one warm-up; prefill = one forward into an empty cache; \
                   decode = greedy steps after a 256-token prompt",
        "reps": args.reps,
        "results": results,
    });
    print_table(&report);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn measure_ours(lm: &Lm, text: &str, args: &Args) -> Result<Value> {
    let needed = args
        .prefill
        .iter()
        .copied()
        .max()
        .unwrap_or(0)
        .max(DECODE_AFTER);
    let tokens = lm.tokenizer.encode(text);
    if tokens.len() < needed {
        bail!("the benchmark text has only {} tokens", tokens.len());
    }
    let model = &lm.model;
    let mut cache = model.new_cache(needed + args.decode_tokens + 1);
    let mut prefill = serde_json::Map::new();
    for &n in &args.prefill {
        let mut time = || -> Result<f64> {
            cache.clear();
            let start = Instant::now();
            model.forward(&tokens[..n], &mut cache, Outputs::Last)?;
            Ok(n as f64 / start.elapsed().as_secs_f64())
        };
        time()?;
        let runs: Result<Vec<f64>> = (0..args.reps).map(|_| time()).collect();
        prefill.insert(n.to_string(), json!(median(runs?)));
    }
    let mut time_decode = || -> Result<f64> {
        cache.clear();
        let out = model.forward(&tokens[..DECODE_AFTER], &mut cache, Outputs::Last)?;
        let mut next = argmax(out.last_logits().unwrap_or(&[]));
        let start = Instant::now();
        for _ in 0..args.decode_tokens {
            let out = model.forward(&[next], &mut cache, Outputs::Last)?;
            next = argmax(out.last_logits().unwrap_or(&[]));
        }
        Ok(args.decode_tokens as f64 / start.elapsed().as_secs_f64())
    };
    time_decode()?;
    let runs: Result<Vec<f64>> = (0..args.reps).map(|_| time_decode()).collect();
    Ok(json!({"engine": "ralmspec", "prefill": prefill, "decode_after_256": median(runs?)}))
}

fn measure_llamacpp(model: &std::path::Path, args: &Args) -> Result<Value> {
    let script = repo_root().join("scripts/bench_lm.sh");
    if !script.is_file() {
        bail!(
            "{} not found (run from a ralmspec checkout)",
            script.display()
        );
    }
    let prefill: Vec<String> = args.prefill.iter().map(|n| n.to_string()).collect();
    let output = Command::new("bash")
        .arg(&script)
        .arg(model)
        .args(["--threads", &crate::bench::machine::threads().to_string()])
        .args(["--prefill", &prefill.join(",")])
        .args(["--decode-tokens", &args.decode_tokens.to_string()])
        .args(["--reps", &args.reps.to_string()])
        .output()
        .context("running scripts/bench_lm.sh")?;
    if !output.status.success() {
        bail!(
            "scripts/bench_lm.sh failed: {}",
            String::from_utf8_lossy(&output.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'));
    serde_json::from_str(line.unwrap_or("")).context("parsing llama.cpp's JSON")
}

fn print_table(report: &Value) {
    println!(
        "LM speed, tokens/s ({}; {} threads; ralmspec on {})",
        report["machine"].as_str().unwrap_or("?"),
        report["threads"],
        report["device"].as_str().unwrap_or("?")
    );
    println!("| model | measurement | ralmspec | llama.cpp | ratio |");
    println!("|---|---|---|---|---|");
    for r in report["results"].as_array().into_iter().flatten() {
        let model = r["model"].as_str().unwrap_or("?");
        let mut rows: Vec<(String, &Value, &Value)> = Vec::new();
        if let Some(p) = r["ralmspec"]["prefill"].as_object() {
            let mut sizes: Vec<(&String, &Value)> = p.iter().collect();
            sizes.sort_by_key(|(n, _)| n.parse::<usize>().unwrap_or(0));
            for (n, v) in sizes {
                rows.push((format!("prefill {n}"), v, &r["llama.cpp"]["prefill"][n]));
            }
        }
        rows.push((
            "decode after 256".into(),
            &r["ralmspec"]["decode_after_256"],
            &r["llama.cpp"]["decode_after_256"],
        ));
        for (name, ours, theirs) in rows {
            let (o, t) = (ours.as_f64().unwrap_or(f64::NAN), theirs.as_f64());
            let t_s = t.map_or("–".into(), |t| format!("{t:.1}"));
            let ratio = t.map_or("–".into(), |t| format!("{:.2}×", o / t));
            println!("| {model} | {name} | {o:.1} | {t_s} | {ratio} |");
        }
    }
}

/// The benchmark prompt: the knowledge base's extracts, in file order, blank-line joined.
fn prompt_text() -> Result<String> {
    let path = Store::from_env()?.fetch(Asset::WikiKb)?;
    let json: Value = serde_json::from_slice(&std::fs::read(&path)?)
        .with_context(|| format!("parsing {}", path.display()))?;
    let extracts: Vec<&str> = json
        .as_object()
        .context("knowledge base is not a JSON object")?
        .values()
        .filter_map(|v| v["extract"].as_str())
        .take(200)
        .collect();
    Ok(extracts.join("\n\n"))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}
