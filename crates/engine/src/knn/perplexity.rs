//! Quality sanity: perplexity of held-out knowledge-base text (passages the datastore left
//! out) under kNN-LM and under the LM alone, with the same forward passes and searches.

use ralmspec_lm::Outputs;
use ralmspec_retrieval::{Corpus, Metric, Query};
use serde::Serialize;

use super::datastore::{MAX_PASSAGE_TOKENS, is_held_out};
use super::{KnnLm, Mixer};
use crate::error::{EngineError, Result};

/// Perplexities over the same held-out tokens.
#[derive(Clone, Debug, Serialize)]
pub struct Perplexity {
    /// Held-out passages read.
    pub passages: usize,
    /// Tokens scored.
    pub tokens: usize,
    /// exp(mean negative log-likelihood) with kNN-LM.
    pub knn: f64,
    /// The same with the LM alone.
    pub lm: f64,
}

impl KnnLm<'_> {
    /// Scores up to `max_tokens` tokens of the held-out passages of `corpus` (the corpus the
    /// datastore was built from). Each passage is one forward pass and one batched search.
    pub fn perplexity(&self, corpus: &Corpus, max_tokens: usize) -> Result<Perplexity> {
        let m = self.store().manifest();
        if m.held_out_every == 0 {
            return Err(EngineError::BadRequest(
                "the datastore holds out no passage (built with --held-out-every 0)".into(),
            ));
        }
        if corpus.hash() != m.corpus_hash {
            return Err(EngineError::BadRequest(
                "the corpus is not the one the datastore was built from".into(),
            ));
        }
        let retriever = self.store().search(self.search)?;
        let values = self.store().values();
        let mut mixer = Mixer::default();
        let (mut passages, mut tokens, mut nll_knn, mut nll_lm) = (0, 0, 0.0, 0.0);
        for p in corpus.iter() {
            if tokens >= max_tokens {
                break;
            }
            if !is_held_out(p.doc, m.held_out_every) {
                continue;
            }
            let mut ids = self.lm.tokenizer.encode(&p.prompt_text());
            ids.truncate(MAX_PASSAGE_TOKENS.min(max_tokens - tokens + 1));
            if ids.len() < 2 {
                continue;
            }
            let mut cache = self.lm.model.new_cache(ids.len());
            let out = self
                .lm
                .model
                .forward(&ids[..ids.len() - 1], &mut cache, Outputs::All)?;
            let queries: Vec<Query> = (0..out.len())
                .map(|r| Query::embedded("", out.hidden(r).to_vec()))
                .collect();
            let hits = retriever.search(&queries, self.params.k)?;
            for (r, (q, h)) in queries.iter().zip(&hits).enumerate() {
                let norm2 = Metric::norm2(q.embedding().unwrap_or(&[]));
                let (knn, lm) =
                    mixer.log_probs(&self.params, out.logits(r), h, norm2, values, ids[r + 1]);
                nll_knn -= knn;
                nll_lm -= lm;
            }
            passages += 1;
            tokens += out.len();
        }
        if tokens == 0 {
            return Err(EngineError::BadRequest("no held-out text to score".into()));
        }
        Ok(Perplexity {
            passages,
            tokens,
            knn: (nll_knn / tokens as f64).exp(),
            lm: (nll_lm / tokens as f64).exp(),
        })
    }
}
