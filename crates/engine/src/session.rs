//! The one LM execution policy every engine uses.
//!
//! A [`Session`] owns a request's KV cache and extends the answer by greedy decoding after
//! `document ⊕ question`. It reuses whatever the cache already holds: the same document
//! continues where it stopped, a rollback truncates to the common prefix, and a switch to
//! another document starts from that document's shared KV ([`DocKv`]) when it is there. The
//! model's forward pass is batch- and chunk-invariant, so the logits for a given (document,
//! question, answer) are bit-identical whichever path filled the cache: that is what lets
//! speculation reproduce the baseline exactly.

use std::time::{Duration, Instant};

use ralmspec_lm::{KvCache, Lm, Outputs, argmax};

use crate::doc_kv::DocKv;
use crate::error::Result;

/// A request's LM state.
pub(crate) struct Session<'a> {
    lm: &'a Lm,
    doc_kv: &'a DocKv,
    /// The knowledge base's version: the first half of every [`DocKv`] key.
    version: u64,
    cache: KvCache,
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
    pub(crate) fn new(lm: &'a Lm, doc_kv: &'a DocKv, version: u64, capacity: usize) -> Session<'a> {
        Session {
            lm,
            doc_kv,
            version,
            cache: lm.model.new_cache(capacity),
            doc: None,
            lm_time: Duration::ZERO,
            tokens_fed: 0,
            decode_time: Duration::ZERO,
            decoded: 0,
        }
    }

    /// Appends up to `n` greedy tokens to `answer`, generated after
    /// `document ⊕ question ⊕ answer`, where `document` is `doc`'s tokens. Returns true when
    /// the model ended the text (the end token is not appended).
    pub(crate) fn extend(
        &mut self,
        doc: u32,
        document: &[u32],
        question: &[u32],
        answer: &mut Vec<u32>,
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
        let input = || document.iter().chain(question).chain(answer.iter());
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
        let mut next = self.next_token(&pending)?;
        for i in 0..n {
            if self.lm.tokenizer.is_eog(next) {
                return Ok(true);
            }
            answer.push(next);
            if i + 1 < n {
                next = self.next_token(&[next])?;
            }
        }
        Ok(false)
    }

    /// Feeds `tokens` and returns the greedy choice after the last one.
    fn next_token(&mut self, tokens: &[u32]) -> Result<u32> {
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
        Ok(argmax(out.last_logits().unwrap_or(&[])))
    }

    /// Makes the cache hold `doc`'s tokens: a copy of the shared KV when it is there, else a
    /// prefill (which is then shared).
    fn switch_to(&mut self, doc: u32, document: &[u32]) -> Result<()> {
        match self.doc_kv.get((self.version, doc)) {
            Some(kv) => self.cache.copy_prefix_from(&kv, kv.len())?,
            None => {
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
