//! `ralmspec`: the command line. Parses flags, resolves assets, and hands off to the libraries.

mod bench;
mod cmd;
mod flags;

use clap::{Parser, Subcommand};

use cmd::{ask, fetch, generate, index, knn, serve};
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
    Search(index::SearchArgs),
    /// Download and verify models and data into the asset store.
    Fetch(fetch::Args),
    /// kNN-LM: build a datastore, generate with it (plain or speculative).
    #[command(subcommand)]
    Knn(Knn),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(Bench),
}

/// kNN-LM: a datastore of (hidden state, next token) pairs searched at every token.
#[derive(Subcommand)]
enum Knn {
    /// Build a datastore: run the LM over the corpus text and store every position's hidden
    /// state and next token (memory-mapped, written atomically).
    Build(knn::BuildArgs),
    /// Continue a text with kNN-LM, plain or speculative (the same tokens either way).
    Generate(knn::GenerateArgs),
}

#[derive(Subcommand)]
enum Index {
    /// Build the chosen retrievers' indexes of a corpus into one folder.
    Build(index::BuildArgs),
}

#[derive(Subcommand)]
enum Bench {
    /// LM prefill and decode speed, side by side with llama.cpp on the same GGUF files.
    Lm(bench::lm::Args),
    /// RaLM latency: baseline, oracle floor and RaLMSpec variants, with identical outputs checked.
    Ralm(bench::ralm::Args),
    /// Speculative kNN-LM against plain kNN-LM: latency per token, speed-up, b/a, acceptance,
    /// perplexity, for several k, exact and approximate search, several datastore sizes.
    Knn(bench::knn::Args),
    /// Answer quality with no retrieval and with each retriever: EM, F1, evidence recall.
    Quality(bench::quality::Args),
    /// Draws the plot of a saved `bench ralm --json` report again (SVG).
    Plot(bench::ralm::PlotArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Ask(args) => ask::run(args),
        Command::Generate(args) => generate::run(args),
        Command::Index(Index::Build(args)) => index::build(args),
        Command::Search(args) => index::search(args),
        Command::Serve(args) => serve::run(args),
        Command::Fetch(args) => fetch::run(args),
        Command::Knn(Knn::Build(args)) => knn::build(args),
        Command::Knn(Knn::Generate(args)) => knn::generate(args),
        Command::Bench(Bench::Lm(args)) => bench::lm::run(args),
        Command::Bench(Bench::Ralm(args)) => bench::ralm::run(args),
        Command::Bench(Bench::Knn(args)) => bench::knn::run(args),
        Command::Bench(Bench::Quality(args)) => bench::quality::run(args),
        Command::Bench(Bench::Plot(args)) => bench::ralm::plot(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
