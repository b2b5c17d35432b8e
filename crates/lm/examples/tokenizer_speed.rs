//! How much slower the general tokenizer path (an HF `tokenizers` pipeline with llama.cpp's
//! split regexes, used for pre-tokenizers without a native implementation) is than the native
//! one, on the real models: both paths encode the same knowledge-base passages on one thread,
//! best of five, and must give the same ids.
//!
//! ```sh
//! cargo run --release -p ralmspec-lm --example tokenizer_speed -- [PASSAGES]
//! ```
use std::collections::BTreeMap;
use std::time::Instant;

use ralmspec_assets::{Asset, Store};
use ralmspec_lm::gguf::GgufFile;
use ralmspec_lm::{Tokenizer, TokenizerPath};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let passages: usize = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => 1000,
    };
    let store = Store::from_env()?;
    let kb: BTreeMap<String, serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(store.fetch(Asset::WikiKb)?)?)?;
    let texts: Vec<String> = kb
        .values()
        .take(passages)
        .map(|e| {
            let field = |k: &str| e[k].as_str().unwrap_or_default();
            format!("{}\n{}", field("title"), field("extract"))
        })
        .collect();
    println!("{} passages, one thread, best of 5", texts.len());
    println!("| model | tokens | native ms | general ms | general / native |");
    println!("|---|---|---|---|---|");
    for (name, asset) in [
        ("SmolLM2-135M", Asset::SmolLm2),
        ("Qwen2.5-Coder-0.5B", Asset::Qwen25Coder05B),
    ] {
        let file = GgufFile::open(&store.fetch(asset)?)?;
        let native = Tokenizer::from_gguf_with(file.content(), TokenizerPath::Auto)?;
        let general = Tokenizer::from_gguf_with(file.content(), TokenizerPath::Fallback)?;
        assert!(!native.uses_fallback() && general.uses_fallback());
        let time = |tokenizer: &Tokenizer| {
            let mut best = f64::INFINITY;
            let mut ids = Vec::new();
            for _ in 0..5 {
                let start = Instant::now();
                ids = texts
                    .iter()
                    .map(|t| tokenizer.encode(t))
                    .collect::<Vec<_>>();
                best = best.min(start.elapsed().as_secs_f64());
            }
            (best, ids)
        };
        let (native_s, native_ids) = time(&native);
        let (general_s, general_ids) = time(&general);
        assert_eq!(native_ids, general_ids, "{name}: the two paths disagree");
        let tokens: usize = native_ids.iter().map(Vec::len).sum();
        println!(
            "| {name} | {tokens} | {:.1} | {:.1} | {:.2}× |",
            native_s * 1e3,
            general_s * 1e3,
            general_s / native_s
        );
    }
    Ok(())
}
