//! What the server is started with: the served model's name, the iterative-RaLM rules, the
//! retrieval defaults a request may override, and the limits enforced at the edge. Plain data
//! with defaults; [`ServerConfig::check`] validates it once, against the model, at start-up.

use ralmspec_engine::{Engine, RalmConfig, SpecConfig, Stride};

use crate::error::ServerError;

/// Everything the server needs besides the model and the knowledge bases.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The name clients put in `model` (e.g. `smollm2`); any other name is a 404.
    pub model: String,
    /// Retrieval stride, query and document lengths shared by every request. Its
    /// `max_new_tokens` is the default of a request that sets no `max_tokens`.
    pub ralm: RalmConfig,
    /// The engine of a request that does not choose one.
    pub engine: Engine,
    /// Largest `max_tokens` a request may ask for.
    pub max_tokens_limit: usize,
    /// Longest question, in tokens of the model's tokenizer.
    pub max_prompt_tokens: usize,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Requests admitted but not yet started; one more is refused with 503.
    pub queue_capacity: usize,
    /// Threads running generations, one request each (each with its own shared-document KV);
    /// their concurrent searches are combined into one retriever call.
    pub workers: usize,
    /// The `Retry-After` a refused request is told, in seconds.
    pub retry_after_secs: u32,
}

/// Half the logical CPUs, 1 to 4: one generation keeps about two cores busy (measured on a
/// 2-vCPU machine, 4 workers served 32 clients 13% slower than 1), so more workers only pay
/// where there are cores for them.
pub fn default_workers() -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cpus / 2).clamp(1, 4)
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            model: "smollm2".to_string(),
            ralm: RalmConfig::default(),
            engine: Engine::Spec(SpecConfig {
                stride: Stride::Os3,
                prefetch: 20,
                async_verify: false,
            }),
            max_tokens_limit: 512,
            max_prompt_tokens: 1024,
            max_body_bytes: 1 << 20,
            queue_capacity: 64,
            workers: default_workers(),
            retry_after_secs: 1,
        }
    }
}

/// Positions of the chat framing around a question (system turn, role tags), with room to spare.
const FRAMING_SLACK: usize = 64;

impl ServerConfig {
    /// Checks the limits against a model whose context holds `context` positions: every request
    /// that passes validation must fit, so that no admitted request fails for its length.
    pub fn check(&self, context: usize) -> Result<(), ServerError> {
        let bad = |why: String| Err(ServerError::Config(why));
        if self.model.is_empty() {
            return bad("the model name is empty".into());
        }
        if self.workers == 0 {
            return bad("at least one worker is needed".into());
        }
        if self.queue_capacity == 0 {
            return bad("the queue capacity must be at least 1".into());
        }
        if self.ralm.stride == 0 || self.max_tokens_limit == 0 || self.max_prompt_tokens == 0 {
            return bad("the stride and the token limits must be at least 1".into());
        }
        if self.ralm.max_new_tokens > self.max_tokens_limit {
            return bad(format!(
                "the default max_tokens {} exceeds the limit {}",
                self.ralm.max_new_tokens, self.max_tokens_limit
            ));
        }
        let needed =
            self.max_prompt_tokens + self.ralm.doc_tokens + self.max_tokens_limit + FRAMING_SLACK;
        if needed > context {
            return bad(format!(
                "a {}-token prompt, a {}-token document and {} new tokens need {needed} positions; the model's context holds {context}",
                self.max_prompt_tokens, self.ralm.doc_tokens, self.max_tokens_limit
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fit_an_8k_context_but_not_a_1k_one() {
        let config = ServerConfig::default();
        assert!(config.check(8192).is_ok());
        let err = config.check(1024).unwrap_err().to_string();
        assert!(err.contains("context holds 1024"), "{err}");
    }

    #[test]
    fn zero_workers_or_queue_are_refused() {
        for config in [
            ServerConfig {
                workers: 0,
                ..ServerConfig::default()
            },
            ServerConfig {
                queue_capacity: 0,
                ..ServerConfig::default()
            },
        ] {
            assert!(config.check(8192).is_err());
        }
    }
}
