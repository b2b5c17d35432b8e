//! `llamacpp-bench`: measures llama.cpp (through the `llama-cpp-2` crate) on a GGUF file, so that
//! ralmspec's own LM benchmark can print its numbers beside llama.cpp's as a ratio.
//!
//! This is a COMPARISON HARNESS ONLY. It is a standalone Cargo project (its own empty
//! `[workspace]`), never a member or dependency of the ralmspec product workspace. Build and run it
//! through `scripts/bench_lm.sh`, which also picks the CPU level llama.cpp is compiled for.
//!
//! Method (matches shared/reference/lm-baseline.md):
//! - the prompt is real text tokenized by llama.cpp's own tokenizer (BOS added if the model wants
//!   one); a `.json` prompt file is read as the wiki knowledge base: every entry's `extract`, in
//!   file order, joined by a blank line (only as many entries as the largest size needs);
//! - prefill N: clear the KV cache, then ONE `llama_decode` of the first N tokens with logits for
//!   the last token only (n_batch = n_ubatch >= N, so it is a single ubatch) → N / seconds;
//! - decode: clear, prefill `--decode-after` tokens (untimed), then greedy-decode
//!   `--decode-tokens` tokens one `llama_decode` at a time; each timed step is decode + argmax
//!   of the logits; EOG tokens do not stop the loop → tokens / seconds;
//! - one untimed warm-up of the whole set, then the median of `--reps` timed runs.
//!
//! Usage: llamacpp-bench --model M.gguf [--threads 2] [--prompt-file FILE] [--prefill 64,256,512]
//!        [--decode-after 256] [--decode-tokens 64] [--reps 3] [--json]

use std::num::NonZeroU32;
use std::time::Instant;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::token::LlamaToken;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// The CPU level the script compiled llama.cpp for (`-march=` via `-C target-cpu=`).
const BUILD_CPU: Option<&str> = option_env!("LLAMACPP_BENCH_CPU");

struct Args {
    model: String,
    threads: i32,
    prompt_file: Option<String>,
    prefill: Vec<usize>,
    decode_after: usize,
    decode_tokens: usize,
    reps: usize,
    json: bool,
}

fn parse_args() -> Res<Args> {
    let mut a = Args {
        model: String::new(),
        threads: 2,
        prompt_file: None,
        prefill: vec![64, 256, 512],
        decode_after: 256,
        decode_tokens: 64,
        reps: 3,
        json: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--json" {
            a.json = true;
            continue;
        }
        if flag == "-h" || flag == "--help" {
            println!("{}", USAGE);
            std::process::exit(0);
        }
        let v = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--model" => a.model = v,
            "--threads" => a.threads = v.parse()?,
            "--prompt-file" => a.prompt_file = Some(v),
            "--prefill" => {
                a.prefill = v
                    .split(',')
                    .map(|s| s.trim().parse())
                    .collect::<Result<_, _>>()?
            }
            "--decode-after" => a.decode_after = v.parse()?,
            "--decode-tokens" => a.decode_tokens = v.parse()?,
            "--reps" => a.reps = v.parse()?,
            _ => return Err(format!("unknown flag {flag}\n{USAGE}").into()),
        }
    }
    if a.model.is_empty() {
        return Err(format!("--model is required\n{USAGE}").into());
    }
    if a.reps == 0 || a.threads < 1 || a.decode_after == 0 || a.prefill.contains(&0) {
        return Err(
            "--reps, --threads, --decode-after and each --prefill size must be >= 1".into(),
        );
    }
    Ok(a)
}

const USAGE: &str = "usage: llamacpp-bench --model M.gguf [--threads 2] [--prompt-file FILE(.txt|.json)] \
[--prefill 64,256,512] [--decode-after 256] [--decode-tokens 64] [--reps 3] [--json]";

/// Plain text (one part), or the wiki knowledge base JSON (`{title: {"extract": ...}, ...}`): one
/// part per entry.
fn load_parts(path: Option<&str>) -> Res<Vec<String>> {
    let Some(path) = path else {
        // No file: a fixed English paragraph, repeated. Real text is preferred (see the script).
        let p = "The Roman Empire was the post-Republican state of ancient Rome. It included large \
territorial holdings around the Mediterranean Sea in Europe, North Africa, and Western Asia, and was \
ruled by emperors. ";
        return Ok(vec![p.repeat(64)]);
    };
    let raw = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    if !path.ends_with(".json") {
        return Ok(vec![raw]);
    }
    let v: serde_json::Value = serde_json::from_str(&raw)?;
    let entries: Vec<&serde_json::Value> = match &v {
        serde_json::Value::Object(m) => m.values().collect(),
        serde_json::Value::Array(a) => a.iter().collect(),
        _ => return Err(format!("{path}: expected an object or array").into()),
    };
    Ok(entries
        .iter()
        .filter_map(|e| Some(e.get("extract")?.as_str()?.to_string()))
        .collect())
}

/// Tokenizes whole parts (joined by a blank line) until there are at least `need` tokens, so a
/// large knowledge base is not tokenized in full; the result is cut to `need`.
fn prompt_tokens(model: &LlamaModel, parts: &[String], need: usize) -> Res<Vec<LlamaToken>> {
    let mut text = String::new();
    let mut chars_per_try = need * 8;
    let mut next = 0;
    loop {
        while next < parts.len() && text.len() < chars_per_try {
            if !text.is_empty() {
                text.push_str("\n\n");
            }
            text.push_str(&parts[next]);
            next += 1;
        }
        let mut toks = model.vocab().tokenize(text.as_bytes(), true, false);
        if toks.len() >= need {
            toks.truncate(need);
            return Ok(toks);
        }
        if next == parts.len() {
            return Err(format!("prompt has only {} tokens, {need} needed", toks.len()).into());
        }
        chars_per_try *= 2;
    }
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

fn argmax(logits: &[f32]) -> i32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as i32
}

/// Clears the KV cache and fills `batch` with `toks` at positions 0.., logits for the last only.
fn fill(ctx: &mut LlamaContext, batch: &mut LlamaBatch, toks: &[LlamaToken]) -> Res<()> {
    ctx.clear_kv_cache();
    batch.clear();
    for (i, &t) in toks.iter().enumerate() {
        batch.add(t, i as i32, &[0], i + 1 == toks.len())?;
    }
    Ok(())
}

/// Seconds for one prefill of `toks`: only the `llama_decode` call is timed.
fn time_prefill(ctx: &mut LlamaContext, batch: &mut LlamaBatch, toks: &[LlamaToken]) -> Res<f64> {
    fill(ctx, batch, toks)?;
    let t = Instant::now();
    ctx.decode(batch)?;
    Ok(t.elapsed().as_secs_f64())
}

/// Prefills `ctx_toks` untimed, then greedy-decodes `n` tokens; returns (seconds, tokens).
fn time_decode(
    ctx: &mut LlamaContext,
    batch: &mut LlamaBatch,
    ctx_toks: &[LlamaToken],
    n: usize,
) -> Res<(f64, Vec<i32>)> {
    fill(ctx, batch, ctx_toks)?;
    ctx.decode(batch)?;
    let mut next = argmax(ctx.get_logits_ith(batch.n_tokens() - 1));
    let mut out = Vec::with_capacity(n);
    let t = Instant::now();
    for step in 0..n {
        out.push(next);
        batch.clear();
        batch.add(LlamaToken(next), (ctx_toks.len() + step) as i32, &[0], true)?;
        ctx.decode(batch)?;
        next = argmax(ctx.get_logits_ith(0));
    }
    Ok((t.elapsed().as_secs_f64(), out))
}

fn main() -> Res<()> {
    let args = parse_args()?;
    let mut backend = LlamaBackend::init()?;
    backend.void_logs();
    let model = LlamaModel::load_from_file(&backend, &args.model, &LlamaModelParams::default())
        .map_err(|e| format!("{}: {e}", args.model))?;

    let max_prefill = *args.prefill.iter().max().unwrap_or(&0);
    let need = max_prefill.max(args.decode_after + args.decode_tokens);
    let tokens = prompt_tokens(&model, &load_parts(args.prompt_file.as_deref())?, need)?;

    let batch_size = max_prefill.max(args.decode_after).max(1) as u32;
    let n_ctx = need.div_ceil(256) as u32 * 256;
    let cparams = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(n_ctx))
        .with_n_batch(batch_size)
        .with_n_ubatch(batch_size)
        .with_n_threads(args.threads)
        .with_n_threads_batch(args.threads);
    let flash_attn = cparams.flash_attention_policy();
    let mut ctx = model.new_context(&backend, cparams)?;
    let mut batch = LlamaBatch::new(batch_size as usize, 1);

    let mut prefill_s: Vec<Vec<f64>> = vec![Vec::new(); args.prefill.len()];
    let mut decode_s = Vec::new();
    let mut greedy = Vec::new();
    for rep in 0..=args.reps {
        // rep 0 is the warm-up and is not recorded.
        for (i, &n) in args.prefill.iter().enumerate() {
            let s = time_prefill(&mut ctx, &mut batch, &tokens[..n])?;
            if rep > 0 {
                prefill_s[i].push(s);
            }
        }
        if args.decode_tokens > 0 {
            let ctx_toks = &tokens[..args.decode_after];
            let (s, out) = time_decode(&mut ctx, &mut batch, ctx_toks, args.decode_tokens)?;
            if rep > 0 {
                decode_s.push(s);
            }
            greedy = out;
        }
    }

    let mut prefill_obj = serde_json::Map::new();
    for (i, &n) in args.prefill.iter().enumerate() {
        let tok_s = n as f64 / median(prefill_s[i].clone());
        prefill_obj.insert(n.to_string(), serde_json::json!(round2(tok_s)));
    }
    let decode_tok_s = if decode_s.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::json!(round2(args.decode_tokens as f64 / median(decode_s)))
    };
    let system_info = unsafe {
        std::ffi::CStr::from_ptr(llama_cpp_sys_2::llama_print_system_info())
            .to_string_lossy()
            .trim()
            .to_string()
    };
    let report = serde_json::json!({
        "engine": "llama.cpp",
        "model": args.model,
        "threads": args.threads,
        "prefill": prefill_obj,
        format!("decode_after_{}", args.decode_after): decode_tok_s,
        "decode_tokens": args.decode_tokens,
        "reps": args.reps,
        "greedy_tokens": greedy,
        "build": {
            "crate": "llama-cpp-2 0.1.160 / llama-cpp-sys-2 0.1.160",
            "target_cpu": BUILD_CPU.unwrap_or("unknown (built outside scripts/bench_lm.sh)"),
            "flash_attn_type": flash_attn,
            "system_info": system_info,
        },
    });
    if args.json {
        println!("{report}");
    } else {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(())
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
