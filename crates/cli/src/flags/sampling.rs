//! `--temperature`, `--top-p`, `--top-k`, `--seed`: how `ask` and `generate` choose tokens,
//! with the server's rules (`Sampling::checked`). Greedy by default; a sampled run without a
//! seed gets one, printed to stderr so that the answer can be reproduced.

use anyhow::Result;
use ralmspec_engine::Sampling;

#[derive(clap::Args, Debug, Clone, Copy)]
pub struct SamplingFlags {
    /// Softmax temperature, 0 (greedy, the default) to 2.
    #[arg(long, default_value_t = 0.0)]
    temperature: f64,
    /// Keep the most likely tokens up to this much probability, in (0, 1].
    #[arg(long, default_value_t = 1.0)]
    top_p: f64,
    /// Keep the k most likely tokens (0: all).
    #[arg(long, default_value_t = 0)]
    top_k: u64,
    /// The seed of every draw: the token at answer position p depends only on (seed, p), so
    /// every engine draws the same answer.
    #[arg(long)]
    seed: Option<u64>,
}

impl SamplingFlags {
    /// The sampling these flags ask for, checked against a vocabulary of `vocab` tokens.
    pub fn sampling(&self, vocab: usize) -> Result<Sampling> {
        let sampling =
            Sampling::checked(self.temperature, self.top_p, self.top_k, self.seed, vocab)
                .map_err(|e| anyhow::anyhow!("--{}: {e}", e.field.replace('_', "-")))?;
        if !sampling.is_greedy() && self.seed.is_none() {
            eprintln!("[seed {}]", sampling.seed);
        }
        Ok(sampling)
    }
}
