//! `ralmspec`: the command line. Parses flags, resolves assets, and hands off to the libraries.

mod ask;
mod bench_lm;
mod bench_ralm;
mod engine_arg;
mod fetch;
mod generate;
mod index_cmd;
mod knowledge_arg;
mod machine;
mod model_arg;
mod serve;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "ralmspec",
    version,
    about = "Fast retrieval-augmented LM serving with speculative retrieval"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Answer a question with retrieval-augmented generation (RaLMSpec by default), with sources.
    Ask(ask::Args),
    /// Generate text from a prompt with the language model alone (greedy, streamed).
    Generate(generate::Args),
    /// Serve RaLM over HTTP: an OpenAI-compatible API with sources and streaming.
    Serve(serve::Args),
    /// Build retrieval indexes (an index set folder: flat, hnsw, bm25).
    #[command(subcommand)]
    Index(Index),
    /// Search an index set and print ranked passages with their scores.
    Search(index_cmd::SearchArgs),
    /// Download and verify models and data into the asset store.
    Fetch(fetch::Args),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(Bench),
}

#[derive(Subcommand)]
enum Index {
    /// Build the chosen retrievers' indexes of a corpus into one folder.
    Build(index_cmd::BuildArgs),
}

#[derive(Subcommand)]
enum Bench {
    /// LM prefill and decode speed, side by side with llama.cpp on the same GGUF files.
    Lm(bench_lm::Args),
    /// RaLM latency: baseline, oracle floor and RaLMSpec variants, with identical outputs checked.
    Ralm(bench_ralm::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Ask(args) => ask::run(args),
        Command::Generate(args) => generate::run(args),
        Command::Index(Index::Build(args)) => index_cmd::build(args),
        Command::Search(args) => index_cmd::search(args),
        Command::Serve(args) => serve::run(args),
        Command::Fetch(args) => fetch::run(args),
        Command::Bench(Bench::Lm(args)) => bench_lm::run(args),
        Command::Bench(Bench::Ralm(args)) => bench_ralm::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
