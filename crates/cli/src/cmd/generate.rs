//! `ralmspec generate`: the LM alone, greedy or sampled, streamed to stdout.

use crate::flags::model::ModelFlags;
use crate::flags::sampling::SamplingFlags;
use anyhow::{Result, bail};
use std::io::Write;
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    /// The prompt (wrapped in the model's chat template unless --raw).
    prompt: String,
    #[command(flatten)]
    model: ModelFlags,
    /// Stop after this many new tokens.
    #[arg(long, default_value_t = 128)]
    max_tokens: usize,
    /// Feed the prompt as plain text, without the chat template.
    #[arg(long)]
    raw: bool,
    /// Print timing to stderr when done.
    #[arg(long)]
    stats: bool,
    #[command(flatten)]
    sampling: SamplingFlags,
}

pub fn run(args: Args) -> Result<()> {
    let lm = args.model.load()?;
    let sampling = args.sampling.sampling(lm.tokenizer.vocab_size())?;
    let prompt = if args.raw {
        lm.tokenizer.encode(&args.prompt)
    } else {
        lm.chat_tokens(&args.prompt)?
    };
    if prompt.is_empty() {
        bail!("the prompt is empty");
    }
    let context = lm.model.config().context;
    let needed = prompt.len() + args.max_tokens;
    if prompt.len() >= context {
        bail!(
            "the prompt is {} tokens long; the model's context holds {context}",
            prompt.len()
        );
    }
    let mut cache = lm.model.new_cache(needed.min(context));
    let max_tokens = args.max_tokens.min(context - prompt.len());
    let mut stream = lm.tokenizer.stream();
    let mut stdout = std::io::stdout().lock();
    let start = Instant::now();
    let mut first_token = None;
    let choose = |logits: &[f32], position: usize| sampling.choose(logits, position);
    let (tokens, stop) = lm.generate_with(&prompt, max_tokens, &mut cache, choose, |id| {
        first_token.get_or_insert_with(Instant::now);
        if let Some(text) = stream.push(id) {
            let _ = stdout.write_all(text.as_bytes());
            let _ = stdout.flush();
        }
    })?;
    let _ = writeln!(stdout, "{}", stream.finish());
    if args.stats {
        let prefill = first_token.map_or(start.elapsed(), |t| t - start);
        let decode = first_token.map_or(0.0, |t| t.elapsed().as_secs_f64());
        eprintln!(
            "[{} prompt tokens in {:.2}s ({:.0} tok/s); {} new tokens, {:.1} tok/s decode; stop: {stop:?}]",
            prompt.len(),
            prefill.as_secs_f64(),
            prompt.len() as f64 / prefill.as_secs_f64(),
            tokens.len(),
            (tokens.len().saturating_sub(1)) as f64 / decode.max(1e-9),
        );
    }
    Ok(())
}
