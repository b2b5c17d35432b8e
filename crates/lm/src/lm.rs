//! A model and its tokenizer, loaded together from one GGUF file, and greedy generation.

use crate::gguf::GgufFile;
use crate::{Device, KvCache, Model, Outputs, Result, Tokenizer};
use std::path::Path;

/// A loaded language model: weights and tokenizer from the same GGUF file.
pub struct Lm {
    pub model: Model,
    pub tokenizer: Tokenizer,
}

/// Why generation stopped: the one stop enum of every generator (this crate's greedy loop,
/// RaLM and kNN-LM in `ralmspec-engine`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Stop {
    /// The model produced an end-of-generation token (not included in the output).
    EndOfText,
    /// The new-token budget was used up.
    Length,
    /// The caller ended the answer after a commit (a stop sequence, say; never from
    /// [`Lm::generate`]).
    Halted,
}

impl Lm {
    /// Opens a GGUF file for the CPU.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_on(path, Device::Cpu)
    }

    /// Opens a GGUF file with the model's weights on `device` (see [`Model::load_on`]).
    pub fn open_on(path: impl AsRef<Path>, device: Device) -> Result<Self> {
        let mut file = GgufFile::open(path)?;
        let tokenizer = Tokenizer::from_gguf(file.content())?;
        let model = Model::load_on(&mut file, device)?;
        Ok(Self { model, tokenizer })
    }

    /// The prompt tokens for one user turn in the model's chat format.
    pub fn chat_tokens(&self, user: &str) -> Result<Vec<u32>> {
        Ok(self
            .tokenizer
            .encode_with_special(&self.tokenizer.chat_prompt(user)?))
    }

    /// Greedy decoding: feeds `prompt`, then appends the arg-max token until an end-of-generation
    /// token or `max_tokens`. `on_token` sees each new token as it is produced. The cache must be
    /// empty or hold a prefix the prompt continues.
    pub fn generate(
        &self,
        prompt: &[u32],
        max_tokens: usize,
        cache: &mut KvCache,
        on_token: impl FnMut(u32),
    ) -> Result<(Vec<u32>, Stop)> {
        self.generate_with(
            prompt,
            max_tokens,
            cache,
            |logits, _| argmax(logits),
            on_token,
        )
    }

    /// [`Lm::generate`] with each new token chosen by `choose(logits, position)` (position: the
    /// token's index among the new tokens), a sampler say.
    pub fn generate_with(
        &self,
        prompt: &[u32],
        max_tokens: usize,
        cache: &mut KvCache,
        mut choose: impl FnMut(&[f32], usize) -> u32,
        mut on_token: impl FnMut(u32),
    ) -> Result<(Vec<u32>, Stop)> {
        let mut out = Vec::with_capacity(max_tokens);
        if max_tokens == 0 {
            return Ok((out, Stop::Length));
        }
        let mut logits = self.model.forward(prompt, cache, Outputs::Last)?;
        loop {
            let next = choose(logits.last_logits().unwrap_or(&[]), out.len());
            if self.tokenizer.is_eog(next) {
                return Ok((out, Stop::EndOfText));
            }
            out.push(next);
            on_token(next);
            if out.len() == max_tokens {
                return Ok((out, Stop::Length));
            }
            logits = self.model.forward(&[next], cache, Outputs::Last)?;
        }
    }
}

/// Index of the largest value; ties go to the lowest index (a stable, documented rule).
pub fn argmax(values: &[f32]) -> u32 {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best as u32
}
