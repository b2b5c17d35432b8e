//! Fetches assets into the store and prints their paths, one a line, on stdout.
//!
//! ```text
//! cargo run --release -p ralmspec-assets --example fetch -- [all | NAME...]
//! ```
//! Names: smollm2, qwen2.5-0.5b, minilm, wiki-kb, fanoutqa. The store is `$RALMSPEC_HOME`,
//! else `$XDG_CACHE_HOME/ralmspec`, else `~/.cache/ralmspec`.

use std::process::ExitCode;
use std::time::Instant;

use ralmspec_assets::{Asset, Store};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() || args.iter().any(|a| a == "-h" || a == "--help") {
        eprintln!(
            "usage: fetch all | NAME...\nassets:\n{}",
            Asset::ALL
                .iter()
                .map(|a| format!("  {:14} {}", a.name(), a.description()))
                .collect::<Vec<_>>()
                .join("\n")
        );
        return if args.is_empty() {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        };
    }
    let mut assets = Vec::new();
    for arg in &args {
        if arg == "all" {
            assets.extend(Asset::ALL);
            continue;
        }
        match arg.parse::<Asset>() {
            Ok(a) => assets.push(a),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let store = match Store::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let start = Instant::now();
    for asset in assets {
        let t = Instant::now();
        let present = store.is_present(asset);
        match store.fetch(asset) {
            Ok(path) => {
                let how = if present { "present" } else { "fetched" };
                eprintln!("{asset}: {how} in {:.1} s", t.elapsed().as_secs_f64());
                println!("{}", path.display());
            }
            Err(e) => {
                eprintln!("error: fetching {asset}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    eprintln!(
        "all done in {:.1} s (store: {})",
        start.elapsed().as_secs_f64(),
        store.root().display()
    );
    ExitCode::SUCCESS
}
