//! The edge: a request body becomes a [`Validated`] request, or a 4xx [`ApiError`] with a clear
//! message naming the field. Nothing past this point sees unchecked input, and every request
//! that passes fits the model's context (see [`crate::ServerConfig::check`]).

use ralmspec_engine::{Engine, SpecConfig, Stride};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::ApiError;
use crate::state::AppState;
use crate::wire::{ChatRequest, Common, CompletionRequest, Message, RetrievalOptions};

use crate::config::{MAX_PREFETCH, MAX_STRIDE};

/// Which endpoint a request came through (it decides the response's shape).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Completions,
    Chat,
}

/// A request that passed every check.
#[derive(Clone, Debug)]
pub struct Validated {
    pub endpoint: Endpoint,
    pub question: String,
    /// Tokens of the question (`usage.prompt_tokens`).
    pub prompt_tokens: usize,
    pub max_tokens: usize,
    pub engine: Engine,
    /// Index of the knowledge base in the server's list.
    pub knowledge: usize,
    pub stream: bool,
    pub include_usage: bool,
}

/// Parses a JSON body into `T`, naming the field of a type error.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            return ApiError::invalid(format!("The request body is not valid JSON: {inner}"));
        }
        let error = ApiError::invalid(format!("Invalid request body: {inner}"));
        if path.is_empty() || path == "." {
            error
        } else {
            error.param(path)
        }
    })?;
    de.end()
        .map_err(|e| ApiError::invalid(format!("The request body is not valid JSON: {e}")))?;
    Ok(value)
}

/// Checks a `/v1/completions` request.
pub fn completion(state: &AppState, req: CompletionRequest) -> Result<Validated, ApiError> {
    check_model(state, &req.model)?;
    let question = match req.prompt {
        Value::String(s) => s,
        Value::Array(items) => match <[Value; 1]>::try_from(items) {
            Ok([Value::String(s)]) => s,
            _ => return Err(ApiError::invalid(
                "`prompt` must be a string or an array of exactly one string; send one request per prompt",
            )
            .param("prompt")),
        },
        _ => return Err(ApiError::invalid("`prompt` must be a string").param("prompt")),
    };
    let common = Common {
        max_tokens: req.max_tokens,
        stream: req.stream,
        stream_options: req.stream_options,
        n: req.n,
        retrieval: req.retrieval,
    };
    finish(state, Endpoint::Completions, question, None, common)
}

/// Checks a `/v1/chat/completions` request: the question is the last user message.
pub fn chat(state: &AppState, req: ChatRequest) -> Result<Validated, ApiError> {
    check_model(state, &req.model)?;
    if req.messages.is_empty() {
        return Err(ApiError::invalid("`messages` must not be empty").param("messages"));
    }
    let (index, last_user) = req
        .messages
        .iter()
        .enumerate()
        .rev()
        .find(|(_, m)| m.role == "user")
        .ok_or_else(|| ApiError::invalid("`messages` has no user message").param("messages"))?;
    let question = message_text(last_user)
        .map_err(|why| ApiError::invalid(why).param(format!("messages[{index}].content")))?;
    let common = Common {
        max_tokens: req.max_tokens,
        stream: req.stream,
        stream_options: req.stream_options,
        n: req.n,
        retrieval: req.retrieval,
    };
    finish(
        state,
        Endpoint::Chat,
        question,
        req.max_completion_tokens,
        common,
    )
}

fn check_model(state: &AppState, model: &str) -> Result<(), ApiError> {
    if model == state.config.model {
        Ok(())
    } else {
        Err(ApiError::model_not_found(model, &state.config.model))
    }
}

/// The text of a message: a string, or the concatenated text parts of an array.
fn message_text(message: &Message) -> Result<String, String> {
    match &message.content {
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => {
            let mut text = String::new();
            for part in parts {
                match (part.get("type"), part.get("text")) {
                    (Some(Value::String(t)), Some(Value::String(s))) if t == "text" => {
                        text.push_str(s)
                    }
                    _ => return Err("only text content parts are supported".to_string()),
                }
            }
            Ok(text)
        }
        _ => Err("the user message's `content` must be a string or text parts".to_string()),
    }
}

fn finish(
    state: &AppState,
    endpoint: Endpoint,
    question: String,
    max_completion_tokens: Option<u64>,
    common: Common,
) -> Result<Validated, ApiError> {
    let config = &state.config;
    if question.trim().is_empty() {
        return Err(ApiError::invalid("The question (prompt) is empty"));
    }
    if let Some(n) = common.n
        && n != 1
    {
        return Err(
            ApiError::invalid(format!("`n` is {n}; this server returns one choice")).param("n"),
        );
    }
    let (max_tokens, param) = match (max_completion_tokens, common.max_tokens) {
        (Some(n), _) => (n, "max_completion_tokens"),
        (None, Some(n)) => (n, "max_tokens"),
        (None, None) => (config.ralm.max_new_tokens as u64, "max_tokens"),
    };
    if max_tokens == 0 || max_tokens > config.max_tokens_limit as u64 {
        return Err(ApiError::invalid(format!(
            "`{param}` is {max_tokens}; it must be between 1 and {}",
            config.max_tokens_limit
        ))
        .param(param));
    }
    // A cheap bound before tokenizing: no token is shorter than one byte.
    let too_long = || {
        ApiError::invalid(format!(
            "The prompt exceeds {} tokens",
            config.max_prompt_tokens
        ))
        .param(match endpoint {
            Endpoint::Completions => "prompt",
            Endpoint::Chat => "messages",
        })
    };
    if question.len() > config.max_prompt_tokens * 64 {
        return Err(too_long());
    }
    let prompt_tokens = state.lm.tokenizer.encode(&question).len();
    if prompt_tokens > config.max_prompt_tokens {
        return Err(too_long());
    }
    let options = common.retrieval.unwrap_or_default();
    let knowledge = match &options.retriever {
        None => 0,
        Some(name) => state
            .knowledge
            .iter()
            .position(|k| k.name() == name)
            .ok_or_else(|| {
                let served: Vec<&str> = state.knowledge.iter().map(|k| k.name()).collect();
                ApiError::invalid(format!(
                    "Unknown retriever `{name}`; this server serves: {}",
                    served.join(", ")
                ))
                .param("retrieval.retriever")
            })?,
    };
    Ok(Validated {
        endpoint,
        question,
        prompt_tokens,
        max_tokens: max_tokens as usize,
        engine: engine(config.engine, &options)?,
        knowledge,
        stream: common.stream,
        include_usage: common.stream_options.is_some_and(|o| o.include_usage),
    })
}

/// The engine a request asks for, each unset option taken from the server's default.
fn engine(default: Engine, options: &RetrievalOptions) -> Result<Engine, ApiError> {
    let base = match default {
        Engine::Spec(spec) => spec,
        Engine::Baseline => SpecConfig::FULL,
    };
    let spec_asked =
        options.stride.is_some() || options.prefetch.is_some() || options.async_verify.is_some();
    let use_spec = match options.engine.as_deref() {
        None => matches!(default, Engine::Spec(_)) || spec_asked,
        Some("spec") => true,
        Some("baseline") if spec_asked => {
            return Err(ApiError::invalid(
                "`stride`, `prefetch` and `async` configure the `spec` engine, not `baseline`",
            )
            .param("retrieval.engine"));
        }
        Some("baseline") => false,
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "Unknown engine `{other}`; use `baseline` or `spec`"
            ))
            .param("retrieval.engine"));
        }
    };
    if !use_spec {
        return Ok(Engine::Baseline);
    }
    let stride = match &options.stride {
        None => base.stride,
        Some(Value::String(s)) if s == "os3" => Stride::Os3,
        Some(Value::Number(n)) => match n.as_u64() {
            Some(k) if (1..=MAX_STRIDE).contains(&k) => Stride::Fixed(k as usize),
            _ => return Err(bad_stride()),
        },
        Some(_) => return Err(bad_stride()),
    };
    let prefetch = match options.prefetch {
        None => base.prefetch,
        Some(k) if k <= MAX_PREFETCH => k as usize,
        Some(k) => {
            return Err(
                ApiError::invalid(format!("`prefetch` is {k}; at most {MAX_PREFETCH}"))
                    .param("retrieval.prefetch"),
            );
        }
    };
    Ok(Engine::Spec(SpecConfig {
        stride,
        prefetch,
        async_verify: options.async_verify.unwrap_or(base.async_verify),
    }))
}

fn bad_stride() -> ApiError {
    ApiError::invalid(format!(
        "`stride` must be \"os3\" or a number from 1 to {MAX_STRIDE}"
    ))
    .param("retrieval.stride")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(json: &str) -> RetrievalOptions {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn engine_options_override_the_default() {
        let default = Engine::Spec(SpecConfig::CACHE_ONLY);
        assert_eq!(engine(default, &options("{}")).unwrap(), default);
        assert_eq!(
            engine(default, &options(r#"{"engine":"baseline"}"#)).unwrap(),
            Engine::Baseline
        );
        assert_eq!(
            engine(
                default,
                &options(r#"{"stride":"os3","prefetch":5,"async":true}"#)
            )
            .unwrap(),
            Engine::Spec(SpecConfig {
                stride: Stride::Os3,
                prefetch: 5,
                async_verify: true
            })
        );
        assert_eq!(
            engine(Engine::Baseline, &options(r#"{"stride":2}"#)).unwrap(),
            Engine::Spec(SpecConfig {
                stride: Stride::Fixed(2),
                ..SpecConfig::FULL
            })
        );
    }

    #[test]
    fn bad_engine_options_name_the_field() {
        let default = Engine::Spec(SpecConfig::FULL);
        for (json, needle) in [
            (r#"{"engine":"turbo"}"#, "Unknown engine `turbo`"),
            (r#"{"stride":0}"#, "`stride` must be"),
            (r#"{"stride":"fast"}"#, "`stride` must be"),
            (r#"{"prefetch":100000}"#, "at most 256"),
            (
                r#"{"engine":"baseline","stride":3}"#,
                "configure the `spec` engine",
            ),
        ] {
            let e = engine(default, &options(json)).unwrap_err();
            assert!(
                e.body.message.contains(needle),
                "{json}: {}",
                e.body.message
            );
            assert!(e.body.param.as_deref().unwrap().starts_with("retrieval."));
        }
    }

    #[test]
    fn parse_errors_name_the_field() {
        let e = parse::<CompletionRequest>(br#"{"model":"m","prompt":"p","max_tokens":"ten"}"#)
            .unwrap_err();
        assert!(
            e.body.message.contains("invalid type"),
            "{}",
            e.body.message
        );
        assert_eq!(e.body.param.as_deref(), Some("max_tokens"));
        let e = parse::<CompletionRequest>(b"{\"model\":").unwrap_err();
        assert!(
            e.body.message.contains("not valid JSON"),
            "{}",
            e.body.message
        );
        let e = parse::<CompletionRequest>(br#"{"model":"m","prompt":"p","retrieval":{"k":1}}"#)
            .unwrap_err();
        assert!(
            e.body.message.contains("unknown field `k`"),
            "{}",
            e.body.message
        );
    }
}
