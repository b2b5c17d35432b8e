//! What the server is started with: the served model's name, the iterative-RaLM rules, the
//! retrieval defaults a request may override, and the limits enforced at the edge. Plain data
//! with defaults; [`ServerConfig::check`] validates it once, against the model, at start-up.

use std::time::Duration;

use ralmspec_engine::{Engine, RalmConfig, SpecConfig, Stride};

use axum::http::HeaderValue;

use crate::error::ServerError;

/// Largest `prefetch` a request may ask for (the speculation cache holds what is prefetched);
/// the server's default is held to it too.
pub const MAX_PREFETCH: u64 = 256;
/// Largest fixed speculation stride a request may ask for, and the server's default.
pub const MAX_STRIDE: u64 = 64;

/// Everything the server needs besides the model and the knowledge bases. Its `Debug` shows
/// whether an API key is set, never the key.
#[derive(Clone)]
pub struct ServerConfig {
    /// The name clients put in `model` (e.g. `smollm2`); any other name is a 404.
    pub model: String,
    /// Retrieval stride, query and document lengths shared by every request.
    pub ralm: RalmConfig,
    /// The engine of a request that does not choose one.
    pub engine: Engine,
    /// `max_tokens` of a request that sets none.
    pub default_max_tokens: usize,
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
    /// With a key, every request but `GET /health` needs `Authorization: Bearer <key>`.
    pub api_key: Option<String>,
    /// Origins that browsers may call the API from (CORS); `*` for any; empty: none.
    pub allowed_origins: Vec<String>,
    /// Time a client has to send a request's head (from the moment the connection waits for
    /// one: idle keep-alive connections close after it too).
    pub header_read_timeout: Duration,
    /// Time a client has to send a request's whole body.
    pub body_read_timeout: Duration,
    /// Open connections at most; more wait in the kernel's backlog.
    pub max_connections: usize,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("model", &self.model)
            .field("ralm", &self.ralm)
            .field("engine", &self.engine)
            .field("default_max_tokens", &self.default_max_tokens)
            .field("max_tokens_limit", &self.max_tokens_limit)
            .field("max_prompt_tokens", &self.max_prompt_tokens)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("queue_capacity", &self.queue_capacity)
            .field("workers", &self.workers)
            .field("retry_after_secs", &self.retry_after_secs)
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .field("allowed_origins", &self.allowed_origins)
            .field("header_read_timeout", &self.header_read_timeout)
            .field("body_read_timeout", &self.body_read_timeout)
            .field("max_connections", &self.max_connections)
            .finish()
    }
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
            default_max_tokens: 128,
            max_tokens_limit: 512,
            max_prompt_tokens: 1024,
            max_body_bytes: 1 << 20,
            queue_capacity: 64,
            workers: default_workers(),
            retry_after_secs: 1,
            api_key: None,
            allowed_origins: Vec::new(),
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            max_connections: 512,
        }
    }
}

/// Positions of the chat framing around a question (system turn, role tags), with room to spare.
const FRAMING_SLACK: usize = 64;

impl ServerConfig {
    /// Checks the limits against a model whose context holds `context` positions: every request
    /// that passes validation must fit, so that no admitted request fails for its length.
    pub fn check(&self, context: usize) -> Result<(), ServerError> {
        self.check_flags()?;
        let needed =
            self.max_prompt_tokens + self.ralm.doc_tokens + self.max_tokens_limit + FRAMING_SLACK;
        if needed > context {
            return Err(ServerError::Config(format!(
                "a {}-token prompt, a {}-token document and {} new tokens need {needed} positions; the model's context holds {context}",
                self.max_prompt_tokens, self.ralm.doc_tokens, self.max_tokens_limit
            )));
        }
        Ok(())
    }

    /// The checks that need no model: each setting alone and against the others, and the
    /// server's defaults against the caps a request is held to.
    pub fn check_flags(&self) -> Result<(), ServerError> {
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
        if let Engine::Spec(spec) = self.engine {
            if spec.prefetch > MAX_PREFETCH as usize {
                return bad(format!(
                    "the default prefetch {} exceeds {MAX_PREFETCH}, the most a request may ask for",
                    spec.prefetch
                ));
            }
            if let Stride::Fixed(n) = spec.stride
                && !(1..=MAX_STRIDE as usize).contains(&n)
            {
                return bad(format!(
                    "the default stride {n} is not between 1 and {MAX_STRIDE}, the range a request may ask for"
                ));
            }
        }
        if self.api_key.as_deref().is_some_and(|k| {
            k.is_empty() || k.len() > 512 || !k.bytes().all(|b| b.is_ascii_graphic())
        }) {
            return bad(
                "the API key must be 1 to 512 printable ASCII characters, no spaces".into(),
            );
        }
        for origin in &self.allowed_origins {
            check_origin(origin).or_else(bad)?;
        }
        if self.header_read_timeout.is_zero() || self.body_read_timeout.is_zero() {
            return bad("the header and body read timeouts must be above zero".into());
        }
        if self.max_connections == 0 {
            return bad("at least one connection must be allowed".into());
        }
        if self.ralm.stride == 0 || self.max_tokens_limit == 0 || self.max_prompt_tokens == 0 {
            return bad("the stride and the token limits must be at least 1".into());
        }
        if self.default_max_tokens > self.max_tokens_limit {
            return bad(format!(
                "the default max_tokens {} exceeds the limit {}",
                self.default_max_tokens, self.max_tokens_limit
            ));
        }
        Ok(())
    }
}

/// Checks one allowed origin: `*`, or `scheme://host[:port]` with no path.
pub fn check_origin(origin: &str) -> Result<(), String> {
    if origin == "*" {
        return Ok(());
    }
    let host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    match host {
        Some(host)
            if !host.is_empty() && !host.contains('/') && HeaderValue::from_str(origin).is_ok() =>
        {
            Ok(())
        }
        _ => Err(format!(
            "`{origin}` is not an origin: use `*` or scheme://host[:port], e.g. https://chat.example.com"
        )),
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
    fn server_defaults_obey_the_request_caps() {
        let config = ServerConfig {
            engine: Engine::Spec(SpecConfig {
                prefetch: 100_000,
                ..SpecConfig::FULL
            }),
            ..ServerConfig::default()
        };
        let err = config.check(8192).unwrap_err().to_string();
        assert!(err.contains("prefetch 100000 exceeds 256"), "{err}");
        let config = ServerConfig {
            engine: Engine::Spec(SpecConfig {
                stride: Stride::Fixed(1000),
                ..SpecConfig::FULL
            }),
            ..ServerConfig::default()
        };
        assert!(config.check(8192).is_err());
    }

    #[test]
    fn bad_edge_settings_are_refused() {
        for config in [
            ServerConfig {
                api_key: Some("has space".into()),
                ..ServerConfig::default()
            },
            ServerConfig {
                allowed_origins: vec!["example.com".into()],
                ..ServerConfig::default()
            },
            ServerConfig {
                header_read_timeout: Duration::ZERO,
                ..ServerConfig::default()
            },
            ServerConfig {
                max_connections: 0,
                ..ServerConfig::default()
            },
        ] {
            assert!(config.check(8192).is_err(), "{config:?}");
        }
        let keyed = ServerConfig {
            api_key: Some("s3cret".into()),
            ..ServerConfig::default()
        };
        assert!(!format!("{keyed:?}").contains("s3cret"));
    }

    #[test]
    fn origins_are_checked() {
        for ok in ["*", "https://chat.example.com", "http://localhost:3000"] {
            assert!(check_origin(ok).is_ok(), "{ok}");
        }
        for bad in [
            "chat.example.com",
            "https://x.com/path",
            "ftp://x",
            "https://",
        ] {
            assert!(check_origin(bad).is_err(), "{bad}");
        }
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
