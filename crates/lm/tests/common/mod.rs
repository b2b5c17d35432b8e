//! Shared helpers of the integration tests: the real models from the asset store, real prompts.
#![allow(dead_code)]

use ralmspec_assets::{Asset, Store};
use ralmspec_lm::Lm;
use std::sync::OnceLock;

pub fn model_path(asset: Asset) -> std::path::PathBuf {
    Store::from_env()
        .and_then(|s| s.fetch(asset))
        .unwrap_or_else(|e| panic!("cannot fetch {asset}: {e} (run scripts/test.sh)"))
}

pub fn smollm2() -> &'static Lm {
    static LM: OnceLock<Lm> = OnceLock::new();
    LM.get_or_init(|| Lm::open(model_path(Asset::SmolLm2)).expect("load SmolLM2"))
}

pub fn qwen() -> &'static Lm {
    static LM: OnceLock<Lm> = OnceLock::new();
    LM.get_or_init(|| Lm::open(model_path(Asset::Qwen25Coder05B)).expect("load Qwen2.5"))
}

/// Real questions (FanOutQA single-hop style) used as chat prompts.
pub const QUESTIONS: [&str; 6] = [
    "Who were the first 5 picks in the 1998 MLB Draft?",
    "What is the capital city of Australia?",
    "When was the Eiffel Tower built and who designed it?",
    "Which element has the atomic number 26?",
    "What is the population of Tokyo?",
    "Who wrote the novel Pride and Prejudice?",
];

/// A real knowledge-base passage (title + text).
pub fn passages(n: usize) -> Vec<String> {
    let path = Store::from_env().unwrap().fetch(Asset::WikiKb).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    json.as_object()
        .unwrap()
        .values()
        .take(n)
        .map(|v| {
            format!(
                "{}\n{}",
                v["title"].as_str().unwrap(),
                v["extract"].as_str().unwrap()
            )
        })
        .collect()
}
