//! The one LM execution policy every engine uses.
//!
//! A [`Session`] owns a request's KV cache and extends the answer after
//! `document ⊕ conversation`, choosing each token with the request's [`Sampling`] (greedy,
//! or a draw that depends only on the seed and the token's position). It reuses whatever the cache already holds: the same document
//! continues where it stopped, a rollback truncates to the common prefix, and a switch to
//! another document starts from that document's shared KV ([`DocKv`]) when it is there. The
//! model's forward pass is batch- and chunk-invariant, so the logits for a given (document,
//! question, answer) are bit-identical whichever path filled the cache: that is what lets
//! speculation reproduce the baseline exactly.

use std::time::{Duration, Instant};

use ralmspec_lm::{KvCache, Lm, Outputs};

use crate::error::Result;
use crate::ralm::doc_kv::DocKv;
use crate::sampling::{self, Sampling, TokenLogprob};

/// An answer being generated: its tokens and, when asked for, their log-probabilities.
#[derive(Debug, Default)]
pub(crate) struct Answer {
    pub(crate) tokens: Vec<u32>,
    pub(crate) logprobs: Vec<TokenLogprob>,
}

impl Answer {
    pub(crate) fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Keeps the first `len` tokens.
    pub(crate) fn truncate(&mut self, len: usize) {
        self.tokens.truncate(len);
        self.logprobs.truncate(len);
    }
}

/// A request's LM state.
pub(crate) struct Session<'a> {
    lm: &'a Lm,
    doc_kv: &'a DocKv,
    /// The knowledge base's version: the first half of every [`DocKv`] key.
    version: u64,
    cache: KvCache,
    /// How tokens are chosen.
    sampling: Sampling,
    /// Alternatives per token to report log-probabilities for (`None`: none computed).
    top_logprobs: Option<usize>,
    /// The document the cache's content starts with.
    doc: Option<u32>,
    /// Time spent in the model's forward pass.
    pub(crate) lm_time: Duration,
    /// Tokens fed through the model.
    pub(crate) tokens_fed: usize,
    /// Time in single-token forwards (decoding), and their number: the LM's latency per token
    /// whatever else a step feeds.
    pub(crate) decode_time: Duration,
    pub(crate) decoded: usize,
}

impl<'a> Session<'a> {
    pub(crate) fn new(
        lm: &'a Lm,
        doc_kv: &'a DocKv,
        version: u64,
        capacity: usize,
        sampling: Sampling,
        top_logprobs: Option<usize>,
    ) -> Session<'a> {
        Session {
            lm,
            doc_kv,
            version,
            cache: lm.model.new_cache(capacity),
            sampling,
            top_logprobs,
            doc: None,
            lm_time: Duration::ZERO,
            tokens_fed: 0,
            decode_time: Duration::ZERO,
            decoded: 0,
        }
    }

    /// Appends up to `n` tokens to `answer`, generated after `document ⊕ question ⊕ answer`,
    /// where `document` is `doc`'s tokens. The token at answer position `p` is chosen from
    /// that position's logits with the draw for `p`. Returns true when the model ended the
    /// text (the end token is not appended).
    pub(crate) fn extend(
        &mut self,
        doc: u32,
        document: &[u32],
        question: &[u32],
        answer: &mut Answer,
        n: usize,
    ) -> Result<bool> {
        if n == 0 {
            return Ok(false);
        }
        if self.doc != Some(doc) {
            self.switch_to(doc, document)?;
        }
        // Keep the longest prefix of the input the cache holds, but recompute at least the
        // last position: its logits pick the next token.
        let input = || document.iter().chain(question).chain(answer.tokens.iter());
        let total = document.len() + question.len() + answer.len();
        let common = self
            .cache
            .tokens()
            .iter()
            .zip(input())
            .take_while(|(a, b)| a == b)
            .count();
        let keep = common.min(total - 1);
        self.cache.truncate(keep);
        let pending: Vec<u32> = input().skip(keep).copied().collect();
        let mut next = self.next_token(&pending, answer)?;
        for i in 0..n {
            if self.lm.tokenizer.is_eog(next) {
                answer.logprobs.truncate(answer.tokens.len());
                return Ok(true);
            }
            answer.tokens.push(next);
            if i + 1 < n {
                next = self.next_token(&[next], answer)?;
            }
        }
        Ok(false)
    }

    /// Feeds `tokens` and returns the token chosen after the last one (for answer position
    /// `answer.len()`); with log-probabilities asked for, pushes the chosen token's.
    fn next_token(&mut self, tokens: &[u32], answer: &mut Answer) -> Result<u32> {
        let start = Instant::now();
        let out = self
            .lm
            .model
            .forward(tokens, &mut self.cache, Outputs::Last)?;
        let took = start.elapsed();
        self.lm_time += took;
        self.tokens_fed += tokens.len();
        if tokens.len() == 1 {
            self.decode_time += took;
            self.decoded += 1;
        }
        let logits = out.last_logits().unwrap_or(&[]);
        let token = self.sampling.choose(logits, answer.len());
        if let Some(top) = self.top_logprobs {
            answer.logprobs.truncate(answer.len());
            answer.logprobs.push(sampling::logprobs(logits, token, top));
        }
        Ok(token)
    }

    /// Makes the cache hold `doc`'s tokens: a copy of the shared KV when it is there, else a
    /// prefill (which is then shared).
    fn switch_to(&mut self, doc: u32, document: &[u32]) -> Result<()> {
        // A document's part of the input also holds the framing before it (a raw prompt has
        // none), so the shared KV is used only when it holds exactly these tokens.
        match self.doc_kv.get((self.version, doc)) {
            Some(kv) if kv.tokens() == document => self.cache.copy_prefix_from(&kv, kv.len())?,
            _ => {
                self.cache.clear();
                let start = Instant::now();
                self.lm
                    .model
                    .forward(document, &mut self.cache, Outputs::None)?;
                self.lm_time += start.elapsed();
                self.tokens_fed += document.len();
                self.doc_kv.insert((self.version, doc), self.cache.clone());
            }
        }
        self.doc = Some(doc);
        Ok(())
    }
}
