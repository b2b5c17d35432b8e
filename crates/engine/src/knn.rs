//! kNN-LM: at every token, the k nearest datastore entries to the LM's hidden state vote for
//! the token that followed them, and their distribution is mixed into the LM's
//! ([`mix`]). Served two ways, with the same tokens:
//!
//! - [`Engine::Plain`]: one datastore search per token.
//! - [`Engine::Spec`]: speculative kNN-LM. Each step's neighbours are guessed from the
//!   successors of the last true neighbours (`successors`), several steps are generated on
//!   those guesses, and their hidden states are searched for real in ONE batched call. A step
//!   is accepted when its token equals the token its true neighbours give; the first that
//!   differs is replaced by the true token and the KV cache is rolled back behind it. The
//!   stride is fixed or chosen by OS³.
//!
//! Why the tokens are equal: a step's hidden state and logits depend only on the tokens before
//! it (the CPU forward is batch-invariant), the batched search returns what a single search
//! returns, and every token, plain or verified, comes out of [`mix::Mixer::next_token`] with the
//! same inputs.
//!
//! [`KnnLm::generate_cancellable`] hands every token to a callback the moment it is final (a
//! speculated token only once verified), and the callback may cancel or finish the generation
//! ([`Halt`]), as RaLM's streaming does; [`KnnLm::generate`] is that with a callback that
//! takes nothing.
//!
//! Modules: [`datastore`] (build, files, search kinds), [`mix`] (the distribution),
//! [`generation`] (what comes back), `successors` (the speculation cache), `plain` and
//! `speculative` (the two decoders), [`perplexity`] (quality on held-out text).

pub mod datastore;
pub mod generation;
pub mod mix;
pub mod perplexity;
mod plain;
mod speculative;
mod successors;

pub use datastore::{BuildOptions, BuildProgress, Datastore, DatastoreManifest, KeySearch};
pub use generation::{Generation, Stats};
pub use mix::{Mixer, Params};
pub use perplexity::Perplexity;

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use ralmspec_lm::{KvCache, Lm, Outputs};
use ralmspec_retrieval::{Hit, Metric, Query, Retriever};

use crate::error::{EngineError, Result};
use crate::halt::{Halt, Stop};
use crate::stride::Stride;

/// A kNN-LM commit callback: called with tokens that just became final, in order (one at a
/// time); `Break` ends the generation ([`Halt`]).
pub type OnCommit<'a> = dyn FnMut(&[u32]) -> ControlFlow<Halt> + 'a;

/// Successors cached per true neighbour by default (the paper's n = 10).
pub const DEFAULT_SUCCESSORS: usize = 10;
/// Neighbours a verification fetches for the cache by default (measured with k = 16 by
/// `bench knn --prefetch 16,64,256`, at 100k real and 2M padded entries: 86–87% of speculated
/// steps accepted with the top-16's successors, 90–91% with the top-64's, 92–94% with the
/// top-256's).
pub const DEFAULT_PREFETCH: usize = 256;

/// How speculative kNN-LM runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spec {
    /// Steps speculated per verification: fixed, or chosen by OS³ before every round.
    pub stride: Stride,
    /// Successors cached per true neighbour.
    pub successors: usize,
    /// Neighbours each real search fetches for the cache (at least k; the first k decide the
    /// token). An approximate search keeps it within its consistent range, so that it finds
    /// the same first k as a search for k.
    pub prefetch: usize,
    /// Verify on another thread while the LM speculates one more step.
    pub async_verify: bool,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            stride: Stride::Os3,
            successors: DEFAULT_SUCCESSORS,
            prefetch: DEFAULT_PREFETCH,
            async_verify: false,
        }
    }
}

impl Spec {
    /// A short name (`s=4`, `os3+async`, `os3+P64` for a prefetch other than the default) for
    /// tables.
    pub fn label(&self) -> String {
        let mut label = match self.stride {
            Stride::Fixed(n) => format!("s={n}"),
            Stride::Os3 => "os3".into(),
        };
        if self.prefetch != DEFAULT_PREFETCH {
            label.push_str(&format!("+P{}", self.prefetch));
        }
        if self.async_verify {
            label.push_str("+async");
        }
        label
    }
}

/// Which kNN-LM decoder serves a generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// One search per token.
    Plain,
    /// Speculative kNN-LM.
    Spec(Spec),
}

/// A language model with a datastore: generates with kNN-LM, plain or speculative.
pub struct KnnLm<'a> {
    lm: &'a Lm,
    store: &'a Datastore,
    search: KeySearch,
    params: Params,
}

impl<'a> KnnLm<'a> {
    /// kNN-LM over `store` (built from `lm`) with `search` and `params`.
    pub fn new(
        lm: &'a Lm,
        store: &'a Datastore,
        search: KeySearch,
        params: Params,
    ) -> Result<KnnLm<'a>> {
        params.check().map_err(EngineError::BadRequest)?;
        store.search(search)?;
        let dim = lm.model.config().dim;
        if store.manifest().dim != dim {
            return Err(EngineError::BadRequest(format!(
                "the datastore's keys have {} values, the model's hidden states {dim}",
                store.manifest().dim
            )));
        }
        Ok(KnnLm {
            lm,
            store,
            search,
            params,
        })
    }

    /// The parameters.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The datastore.
    pub fn store(&self) -> &Datastore {
        self.store
    }

    /// Continues `prompt` (plain text, no chat template) greedily for up to `max_new` tokens
    /// or an end-of-text token.
    pub fn generate(&self, prompt: &str, max_new: usize, engine: Engine) -> Result<Generation> {
        self.generate_cancellable(prompt, max_new, engine, &mut |_| ControlFlow::Continue(()))
    }

    /// [`KnnLm::generate`], handing each token to `on_commit` as soon as it is final: a plain
    /// step's token at once, a speculated one only once its true neighbours confirmed it (or
    /// replaced it), so nothing passed on is ever taken back, and both engines pass on the same
    /// tokens one by one. When `on_commit` returns `Break(Halt::Cancel)`, no further step is
    /// generated and the result is [`EngineError::Cancelled`]; with `Break(Halt::Finish)` the
    /// generation ends after that token with [`Stop::Halted`].
    pub fn generate_cancellable(
        &self,
        prompt: &str,
        max_new: usize,
        engine: Engine,
        on_commit: &mut OnCommit<'_>,
    ) -> Result<Generation> {
        let start = Instant::now();
        let prompt_tokens = self.lm.tokenizer.encode(prompt);
        if prompt_tokens.is_empty() {
            return Err(EngineError::BadRequest("the prompt is empty".into()));
        }
        let context = self.lm.model.config().context;
        if prompt_tokens.len() + max_new > context {
            return Err(EngineError::BadRequest(format!(
                "the prompt is {} tokens; with {max_new} new tokens it needs more than the \
                 model's {context} positions",
                prompt_tokens.len()
            )));
        }
        let mut run = Run::new(self, &prompt_tokens, max_new, on_commit)?;
        if max_new > 0 {
            match engine {
                Engine::Plain => plain::run(&mut run)?,
                Engine::Spec(spec) => speculative::run(&mut run, spec)?,
            }
        }
        let stop = match run.halt {
            Some(Halt::Cancel) => return Err(EngineError::Cancelled),
            Some(Halt::Finish) => Stop::Halted,
            None => run.stop.unwrap_or(Stop::Length),
        };
        let mut stats = run.stats;
        stats.wall = start.elapsed();
        Ok(Generation {
            prompt_tokens: prompt_tokens.len(),
            text: self.lm.tokenizer.decode(&run.tokens),
            tokens: run.tokens,
            stop,
            stats,
        })
    }
}

/// The LM's output at one step: the hidden state (as the search query) and the logits.
pub(crate) struct State {
    query: Query,
    norm2: f32,
    logits: Vec<f32>,
    /// `mix::log_normalizer(logits)`, computed once.
    lse: f64,
}

/// One generation in flight: the KV cache, the tokens waiting to be fed, the committed
/// tokens, and the counters. Both decoders drive it.
pub(crate) struct Run<'a> {
    lm: &'a Lm,
    retriever: &'a dyn Retriever,
    values: &'a [u32],
    len: usize,
    params: Params,
    mixer: Mixer,
    cache: KvCache,
    /// Tokens the cache has not seen yet (the prompt, then each new token).
    feed: Vec<u32>,
    tokens: Vec<u32>,
    max_new: usize,
    stop: Option<Stop>,
    /// Told each committed token; its `Break` is kept in `halt`.
    on_commit: &'a mut OnCommit<'a>,
    halt: Option<Halt>,
    stats: Stats,
}

impl<'a> Run<'a> {
    fn new(
        knn: &KnnLm<'a>,
        prompt: &[u32],
        max_new: usize,
        on_commit: &'a mut OnCommit<'a>,
    ) -> Result<Run<'a>> {
        Ok(Run {
            lm: knn.lm,
            retriever: knn.store.search(knn.search)?,
            values: knn.store.values(),
            len: knn.store.len(),
            params: knn.params,
            mixer: Mixer::default(),
            cache: knn.lm.model.new_cache(prompt.len() + max_new),
            feed: prompt.to_vec(),
            tokens: Vec::with_capacity(max_new),
            max_new,
            stop: None,
            on_commit,
            halt: None,
            stats: Stats::default(),
        })
    }

    /// Feeds the waiting tokens; returns the state for the next token.
    fn forward(&mut self) -> Result<State> {
        let t = Instant::now();
        let out = self
            .lm
            .model
            .forward(&self.feed, &mut self.cache, Outputs::Last)?;
        self.feed.clear();
        self.stats.lm += t.elapsed();
        let norm2 = Metric::norm2(&out.hidden);
        Ok(State {
            query: Query::embedded("", out.hidden),
            norm2,
            lse: mix::log_normalizer(&out.logits),
            logits: out.logits,
        })
    }

    /// The nearest `k` (≥ the run's k) entries of every state, in one batched search.
    fn search(&mut self, states: &[State], k: usize) -> Result<(Vec<Vec<Hit>>, Duration)> {
        let t = Instant::now();
        let queries: Vec<Query> = states.iter().map(|s| s.query.clone()).collect();
        let hits = self.retriever.search(&queries, k)?;
        let took = t.elapsed();
        self.searched(states.len(), took);
        Ok((hits, took))
    }

    /// Counts one search call of `states` hidden states that took `took`.
    fn searched(&mut self, states: usize, took: Duration) {
        self.stats.search += took;
        self.stats.search_calls += 1;
        self.stats.searched += states;
    }

    /// The neighbours a speculative search fetches: `prefetch`, but never fewer than k nor,
    /// when k is within the retriever's consistent range, beyond it.
    fn fetch(&self, prefetch: usize) -> usize {
        let k = self.params.k;
        let consistent = self.retriever.consistent_k();
        if k > consistent {
            k
        } else {
            prefetch.clamp(k, consistent)
        }
    }

    /// The kNN-LM token of `state` given its nearest entries (the first k are used).
    fn choose(&mut self, state: &State, neighbours: &[Hit]) -> u32 {
        let k = self.params.k.min(neighbours.len());
        self.mixer.next_token(
            &self.params,
            &state.logits,
            state.lse,
            &neighbours[..k],
            state.norm2,
            self.values,
        )
    }

    /// Commits `token` (the caller feeds it) and hands it to the callback; true when
    /// generation is over (the text ended, the budget is spent, or the callback said `Break`).
    fn commit(&mut self, token: u32) -> bool {
        if self.lm.tokenizer.is_eog(token) {
            self.stop = Some(Stop::EndOfText);
            return true;
        }
        self.tokens.push(token);
        if let ControlFlow::Break(halt) = (self.on_commit)(std::slice::from_ref(&token)) {
            self.halt = Some(halt);
            return true;
        }
        if self.tokens.len() == self.max_new {
            self.stop = Some(Stop::Length);
            return true;
        }
        false
    }

    fn remaining(&self) -> usize {
        self.max_new - self.tokens.len()
    }
}
