//! `ralmspec ask`: answers a question with retrieval-augmented generation and shows the
//! sources of each span, the speculation statistics and (with `--compare`) the speed-up over
//! the baseline engine and whether the tokens are identical.

use std::io::Write;

use anyhow::{Result, bail};
use ralmspec_engine::{Ask, Engine, Generation, Knowledge, Ralm, RalmConfig, SpecConfig};

use crate::flags::engine::EngineFlags;
use crate::flags::model::ModelFlags;
use crate::flags::retriever::RetrieverFlags;
use crate::flags::sampling::SamplingFlags;

#[derive(clap::Args)]
pub struct Args {
    /// The question.
    question: String,
    #[command(flatten)]
    model: ModelFlags,
    #[command(flatten)]
    retriever: RetrieverFlags,
    #[command(flatten)]
    engine: EngineFlags,
    /// Also run the baseline, then print the speed-up and check that the answers are identical.
    #[arg(long)]
    compare: bool,
    /// Stop after this many new tokens.
    #[arg(long, default_value_t = 128)]
    max_tokens: usize,
    #[command(flatten)]
    sampling: SamplingFlags,
}

pub fn run(args: Args) -> Result<()> {
    if args.question.trim().is_empty() {
        bail!("the question is empty");
    }
    // The knowledge base first: a bad --index is reported before the model loads.
    let knowledge = args.retriever.open()?;
    let lm = args.model.load()?;
    let ralm = Ralm::new(&lm, &knowledge, RalmConfig::default());
    let engine = args.engine.engine();
    let ask = Ask {
        sampling: args.sampling.sampling(lm.tokenizer.vocab_size())?,
        ..Ask::question(&args.question, args.max_tokens)
    };
    let generate = |engine| ralm.generate(&ask, engine);
    if args.compare {
        // Neither timed run should pay the process's one-time costs (page faults on the
        // weights and the index, the thread pool's start): warm up on a short answer first.
        let warm = Ask::question(&args.question, 4);
        ralm.generate(&warm, Engine::Baseline)?;
    }
    let answer = generate(engine)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}\n", answer.text.trim())?;
    print_sources(&mut out, &lm, &knowledge, &answer)?;
    writeln!(out, "\n{}", summary(&engine, &knowledge, &answer))?;
    if args.compare {
        let other = if engine == Engine::Baseline {
            Engine::Spec(SpecConfig::FULL)
        } else {
            Engine::Baseline
        };
        // Each engine starts cold: no document KV left over from the first run.
        ralm.clear_doc_kv();
        let second = generate(other)?;
        writeln!(out, "{}", summary(&other, &knowledge, &second))?;
        let (base, spec) = if engine == Engine::Baseline {
            (&answer, &second)
        } else {
            (&second, &answer)
        };
        let identical = base.tokens == spec.tokens && base.spans == spec.spans;
        writeln!(
            out,
            "speed-up {:.2}× (baseline {:.2} s / RaLMSpec {:.2} s); identical tokens and sources: {}",
            base.stats.wall.as_secs_f64() / spec.stats.wall.as_secs_f64(),
            base.stats.wall.as_secs_f64(),
            spec.stats.wall.as_secs_f64(),
            if identical { "yes" } else { "NO" }
        )?;
        if !identical {
            bail!("the speculative answer differs from the baseline's: please report this");
        }
    }
    Ok(())
}

fn print_sources(
    out: &mut impl Write,
    lm: &ralmspec_lm::Lm,
    knowledge: &Knowledge,
    answer: &Generation,
) -> Result<()> {
    writeln!(out, "Sources:")?;
    for &span in &answer.spans {
        let source = knowledge.source(span)?;
        let text = lm.tokenizer.decode(&answer.tokens[span.start..span.end]);
        writeln!(
            out,
            "  tokens {:>3}–{:<3} {:<40} {:?}",
            source.start,
            source.end,
            format!("[{}] {}", source.id, source.title),
            text
        )?;
    }
    Ok(())
}

fn summary(engine: &Engine, knowledge: &Knowledge, g: &Generation) -> String {
    let s = &g.stats;
    let mut line = format!(
        "{} over {} ({} passages): {} tokens ({:?}), {} retrieval calls ({} queries, {:.1} ms), LM {:.2} s, wall {:.2} s",
        engine.label(),
        knowledge.name(),
        knowledge.len(),
        g.tokens.len(),
        g.stop,
        s.retrieval_calls,
        s.retrieval_queries,
        s.retrieval_time.as_secs_f64() * 1e3,
        s.lm_time.as_secs_f64(),
        s.wall.as_secs_f64(),
    );
    if let Some(accuracy) = s.accuracy() {
        let strides: Vec<String> = s.strides.iter().map(|s| s.to_string()).collect();
        line.push_str(&format!(
            "; speculation {}/{} right ({:.0}%), {} rollbacks, strides [{}], {} verified asynchronously",
            s.matched,
            s.speculated,
            accuracy * 100.0,
            s.rollbacks,
            strides.join(","),
            s.overlapped
        ));
    }
    line
}
