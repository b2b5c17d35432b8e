//! The edge: a request body becomes a [`Validated`] request, or a 4xx [`ApiError`] with a clear
//! message naming the field (also for every field the server cannot honour: never ignored;
//! kNN-LM requests, `"retrieval": {"knn": true}`, honour fewer). Nothing past this point sees unchecked input, and every request
//! that passes fits the model's context (see [`crate::ServerConfig::check`]).

use std::collections::BTreeMap;

use ralmspec_engine::knn;
use ralmspec_engine::{ChatMessage, Engine, Input, Sampling, SpecConfig, Stride};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::ApiError;
use crate::request::{Endpoint, Generator, Prompt, Validated};
use crate::state::AppState;
use crate::wire::SamplingFields;
use crate::wire::{ChatRequest, Common, CompletionRequest, Message, RetrievalOptions};

use crate::config::{MAX_PREFETCH, MAX_STRIDE};

/// Most alternatives per token a request may ask log-probabilities for (OpenAI's bound).
pub(crate) const MAX_TOP_LOGPROBS: u64 = 20;
/// Most stop sequences per request (OpenAI's bound).
pub(crate) const MAX_STOPS: usize = 4;
/// Fields that change no answer: accepted and unused.
pub(crate) const HARMLESS: &[&str] = &["user", "metadata", "store", "service_tier"];
/// OpenAI's fields this server cannot honour: accepted only with their neutral value (see
/// [`check_other_fields`]; `parallel_tool_calls` too, any boolean being neutral without tools).
pub(crate) const UNSUPPORTED: &[&str] = &[
    "response_format",
    "tools",
    "functions",
    "tool_choice",
    "function_call",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "echo",
    "best_of",
    "suffix",
    "modalities",
    "audio",
    "prediction",
    "reasoning_effort",
    "web_search_options",
];

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

/// Checks a `/v1/completions` request: the prompt through the chat template as one user
/// turn, or (`"raw": true`) continued as it is.
pub fn completion(state: &AppState, req: CompletionRequest) -> Result<Validated, ApiError> {
    check_model(state, &req.model)?;
    let text = match req.prompt {
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
    if text.trim().is_empty() {
        return Err(ApiError::invalid("The question (prompt) is empty"));
    }
    // kNN-LM is a language model: it continues the prompt as it is.
    let knn = req.retrieval.as_ref().is_some_and(|r| r.knn == Some(true));
    let prompt = if req.raw || knn {
        Prompt::Raw(text)
    } else {
        Prompt::Question(text)
    };
    let common = Common {
        max_tokens: req.max_tokens,
        stream: req.stream,
        stream_options: req.stream_options,
        n: req.n,
        sampling: SamplingFields {
            temperature: req.temperature,
            top_p: req.top_p,
            top_k: req.top_k,
            seed: req.seed,
            stop: req.stop,
        },
        top_logprobs: req.logprobs,
        retrieval: req.retrieval,
        other: req.other,
    };
    finish(
        state,
        Endpoint::Completions,
        prompt,
        None,
        common,
        "logprobs",
    )
}

/// Checks a `/v1/chat/completions` request: the whole conversation goes through the chat
/// template; retrieval queries come from the last user message.
pub fn chat(state: &AppState, req: ChatRequest) -> Result<Validated, ApiError> {
    check_model(state, &req.model)?;
    if req.messages.is_empty() {
        return Err(ApiError::invalid("`messages` must not be empty").param("messages"));
    }
    let mut messages = Vec::with_capacity(req.messages.len());
    for (i, message) in req.messages.iter().enumerate() {
        messages.push(chat_message(message, i)?);
    }
    let (index, last_user) = messages
        .iter()
        .enumerate()
        .rev()
        .find(|(_, m)| m.role == "user")
        .ok_or_else(|| ApiError::invalid("`messages` has no user message").param("messages"))?;
    if last_user.content.trim().is_empty() {
        return Err(
            ApiError::invalid("The question (the last user message) is empty")
                .param(format!("messages[{index}].content")),
        );
    }
    let top_logprobs = match (req.logprobs, req.top_logprobs) {
        (Some(true), n) => Some(n.unwrap_or(0)),
        (_, None | Some(0)) => None,
        (_, Some(_)) => {
            return Err(
                ApiError::invalid("`top_logprobs` needs `logprobs: true`").param("top_logprobs")
            );
        }
    };
    let common = Common {
        max_tokens: req.max_tokens,
        stream: req.stream,
        stream_options: req.stream_options,
        n: req.n,
        sampling: SamplingFields {
            temperature: req.temperature,
            top_p: req.top_p,
            top_k: req.top_k,
            seed: req.seed,
            stop: req.stop,
        },
        top_logprobs,
        retrieval: req.retrieval,
        other: req.other,
    };
    finish(
        state,
        Endpoint::Chat,
        Prompt::Chat(messages),
        req.max_completion_tokens,
        common,
        "top_logprobs",
    )
}

fn check_model(state: &AppState, model: &str) -> Result<(), ApiError> {
    if model == state.config.model {
        Ok(())
    } else {
        Err(ApiError::model_not_found(model, &state.config.model))
    }
}

/// One chat turn: a `system` (or `developer`), `user` or `assistant` role and text content.
fn chat_message(message: &Message, i: usize) -> Result<ChatMessage, ApiError> {
    let role = match message.role.as_str() {
        "system" | "developer" => "system",
        "user" => "user",
        "assistant" => "assistant",
        other => {
            return Err(ApiError::invalid(format!(
                "role `{other}` is not supported; use system, user or assistant (this server has no tools)"
            ))
            .param(format!("messages[{i}].role")));
        }
    };
    for (field, value) in &message.other {
        if !value.is_null() && field != "name" {
            return Err(ApiError::invalid(format!(
                "`{field}` in a message is not supported by this server"
            ))
            .param(format!("messages[{i}].{field}")));
        }
    }
    let content = message_text(message)
        .map_err(|why| ApiError::invalid(why).param(format!("messages[{i}].content")))?;
    Ok(ChatMessage::new(role, content))
}

/// The text of a message: a string, or the concatenated text parts of an array (an
/// assistant turn may have none).
fn message_text(message: &Message) -> Result<String, String> {
    match &message.content {
        Value::String(s) => Ok(s.clone()),
        Value::Null if message.role == "assistant" => Ok(String::new()),
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
        _ => Err("a message's `content` must be a string or text parts".to_string()),
    }
}

/// Refuses every field the server cannot honour, naming it; a field set to its neutral value
/// (`null`, `tools: []`, `response_format: {"type": "text"}`, penalties 0, …) is accepted.
pub(crate) fn check_other_fields(other: &BTreeMap<String, Value>) -> Result<(), ApiError> {
    for (field, value) in other {
        let neutral = match (field.as_str(), value) {
            (_, Value::Null) => true,
            (f, _) if HARMLESS.contains(&f) => true,
            ("response_format", v) => v.get("type").and_then(Value::as_str) == Some("text"),
            ("tools" | "functions", Value::Array(a)) => a.is_empty(),
            ("tool_choice" | "function_call", Value::String(s)) => s == "none",
            ("parallel_tool_calls", Value::Bool(_)) => true,
            ("presence_penalty" | "frequency_penalty", v) => v.as_f64() == Some(0.0),
            ("logit_bias", Value::Object(m)) => m.is_empty(),
            ("echo", Value::Bool(b)) => !b,
            ("best_of", v) => v.as_u64() == Some(1),
            ("suffix", Value::String(s)) => s.is_empty(),
            ("modalities", Value::Array(a)) => a.iter().all(|m| m == "text"),
            _ => false,
        };
        if !neutral {
            let message = if UNSUPPORTED.contains(&field.as_str()) {
                format!(
                    "`{field}` is not supported by this server (only its neutral value is accepted)"
                )
            } else {
                format!("Unrecognized request argument supplied: `{field}`")
            };
            return Err(ApiError::invalid(message).param(field.clone()));
        }
    }
    Ok(())
}

/// The request's sampling: greedy unless `temperature` > 0; the seed given, or a fresh one.
fn sampling(fields: &SamplingFields, vocab: usize) -> Result<Sampling, ApiError> {
    Sampling::checked(
        fields.temperature.unwrap_or(0.0),
        fields.top_p.unwrap_or(1.0),
        fields.top_k.unwrap_or(0),
        fields.seed,
        vocab,
    )
    .map_err(|e| ApiError::invalid(e.message).param(e.field))
}

/// `stop`: a string or up to four non-empty strings.
fn stops(stop: &Option<Value>) -> Result<Vec<String>, ApiError> {
    let bad = || {
        ApiError::invalid(format!(
            "`stop` must be a non-empty string or an array of at most {MAX_STOPS} non-empty strings"
        ))
        .param("stop")
    };
    let list = match stop {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) if items.len() <= MAX_STOPS => items
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or_else(bad))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad()),
    };
    if list.iter().any(String::is_empty) {
        return Err(bad());
    }
    Ok(list)
}

fn finish(
    state: &AppState,
    endpoint: Endpoint,
    prompt: Prompt,
    max_completion_tokens: Option<u64>,
    mut common: Common,
    logprobs_param: &str,
) -> Result<Validated, ApiError> {
    let config = &state.config;
    check_other_fields(&common.other)?;
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
        (None, None) => (config.default_max_tokens as u64, "max_tokens"),
    };
    if max_tokens == 0 || max_tokens > config.max_tokens_limit as u64 {
        return Err(ApiError::invalid(format!(
            "`{param}` is {max_tokens}; it must be between 1 and {}",
            config.max_tokens_limit
        ))
        .param(param));
    }
    if let Some(n) = common.top_logprobs
        && n > MAX_TOP_LOGPROBS
    {
        return Err(ApiError::invalid(format!(
            "`{logprobs_param}` is {n}; at most {MAX_TOP_LOGPROBS}"
        ))
        .param(logprobs_param));
    }
    let sampling = sampling(&common.sampling, state.lm.tokenizer.vocab_size())?;
    let stop = stops(&common.sampling.stop)?;
    // The prompt the LM reads besides the document: the conversation through the chat
    // template (or the raw text). A cheap bound first: no token is shorter than one byte.
    let field = match endpoint {
        Endpoint::Completions => "prompt",
        Endpoint::Chat => "messages",
    };
    let too_long = || {
        ApiError::invalid(format!(
            "The prompt exceeds {} tokens",
            config.max_prompt_tokens
        ))
        .param(field)
    };
    let bytes = match &prompt {
        Prompt::Question(s) | Prompt::Raw(s) => s.len(),
        Prompt::Chat(messages) => messages.iter().map(|m| m.content.len()).sum(),
    };
    if bytes > config.max_prompt_tokens * 64 {
        return Err(too_long());
    }
    let input = match &prompt {
        Prompt::Question(q) => Input::Question(q),
        Prompt::Raw(text) => Input::Raw(text),
        Prompt::Chat(messages) => Input::Chat(messages),
    };
    let prompt_tokens = ralmspec_engine::conversation_tokens(&state.lm, &input)
        .map_err(|e| ApiError::invalid(e.to_string()).param(field))?;
    if prompt_tokens > config.max_prompt_tokens {
        return Err(too_long());
    }
    let options = common.retrieval.take().unwrap_or_default();
    let generator = if options.knn == Some(true) {
        knn_generator(state, endpoint, common.top_logprobs, &sampling, &options)?
    } else {
        ralm_generator(state, &options)?
    };
    Ok(Validated {
        endpoint,
        prompt,
        max_tokens: max_tokens as usize,
        generator,
        stream: common.stream,
        include_usage: common.stream_options.is_some_and(|o| o.include_usage),
        sampling,
        stop,
        top_logprobs: common.top_logprobs.map(|n| n as usize),
        events: events(&options, common.stream)?,
    })
}

/// Iterative RaLM: the knowledge base `retriever` names (the first by default) and the engine.
fn ralm_generator(state: &AppState, options: &RetrievalOptions) -> Result<Generator, ApiError> {
    Ok(Generator::Ralm {
        engine: engine(state.config.engine, options)?,
        knowledge: knowledge(state, options.retriever.as_deref())?,
    })
}

/// kNN-LM (`"knn": true`): refused where the server has no datastore, on chat, and with what
/// it cannot honour (sampling, log-probabilities, a retriever); plain (`baseline`) or
/// speculative (`spec`, the default when the server's default engine is `spec`).
fn knn_generator(
    state: &AppState,
    endpoint: Endpoint,
    top_logprobs: Option<u64>,
    sampling: &Sampling,
    options: &RetrievalOptions,
) -> Result<Generator, ApiError> {
    let refuse = |field: &str, why: &str| Err(ApiError::invalid(why.to_string()).param(field));
    if state.knn.is_none() {
        return refuse(
            "retrieval.knn",
            "This server has no kNN-LM datastore (start it with `ralmspec serve --knn-datastore DIR`)",
        );
    }
    if endpoint == Endpoint::Chat {
        return refuse(
            "retrieval.knn",
            "kNN-LM continues a raw prompt: use /v1/completions, not /v1/chat/completions",
        );
    }
    if options.retriever.is_some() {
        return refuse(
            "retrieval.retriever",
            "kNN-LM searches the server's datastore, not a knowledge base: leave out `retriever`",
        );
    }
    if sampling.temperature > 0.0 {
        return refuse(
            "temperature",
            "kNN-LM generates greedily: `temperature` must be 0",
        );
    }
    if top_logprobs.is_some() {
        return refuse("logprobs", "kNN-LM does not return log-probabilities");
    }
    if options.events == Some(true) {
        return refuse(
            "retrieval.events",
            "speculation events are traced for RaLM, not (yet) for kNN-LM",
        );
    }
    let default = knn::Spec::default();
    let engine = match spec_options(matches!(state.config.engine, Engine::Spec(_)), options)? {
        None => knn::Engine::Plain,
        Some(asked) => knn::Engine::Spec(knn::Spec {
            stride: asked.stride.unwrap_or(default.stride),
            prefetch: asked.prefetch.unwrap_or(default.prefetch),
            async_verify: asked.async_verify.unwrap_or(default.async_verify),
            ..default
        }),
    };
    Ok(Generator::Knn(engine))
}

/// The engine a request asks for, each unset option taken from the server's default.
fn engine(default: Engine, options: &RetrievalOptions) -> Result<Engine, ApiError> {
    let base = match default {
        Engine::Spec(spec) => spec,
        Engine::Baseline => SpecConfig::FULL,
    };
    Ok(
        match spec_options(matches!(default, Engine::Spec(_)), options)? {
            None => Engine::Baseline,
            Some(asked) => Engine::Spec(SpecConfig {
                stride: asked.stride.unwrap_or(base.stride),
                prefetch: asked.prefetch.unwrap_or(base.prefetch),
                async_verify: asked.async_verify.unwrap_or(base.async_verify),
            }),
        },
    )
}

/// The speculation options a request sets (`None`: left to the default).
struct SpecAsked {
    stride: Option<Stride>,
    prefetch: Option<usize>,
    async_verify: Option<bool>,
}

/// Whether a request speculates (`None`: the non-speculative `baseline`) and the options it
/// sets. Without `engine`, it speculates when `default_spec` or when it sets an option.
fn spec_options(
    default_spec: bool,
    options: &RetrievalOptions,
) -> Result<Option<SpecAsked>, ApiError> {
    let spec_asked =
        options.stride.is_some() || options.prefetch.is_some() || options.async_verify.is_some();
    let use_spec = match options.engine.as_deref() {
        None => default_spec || spec_asked,
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
        return Ok(None);
    }
    let stride = match &options.stride {
        None => None,
        Some(Value::String(s)) => match s.parse::<Stride>() {
            Ok(Stride::Fixed(k)) if k as u64 > MAX_STRIDE => return Err(bad_stride()),
            Ok(stride) => Some(stride),
            Err(_) => return Err(bad_stride()),
        },
        Some(Value::Number(n)) => match n.as_u64() {
            Some(k) if (1..=MAX_STRIDE).contains(&k) => Some(Stride::Fixed(k as usize)),
            _ => return Err(bad_stride()),
        },
        Some(_) => return Err(bad_stride()),
    };
    let prefetch = match options.prefetch {
        None => None,
        Some(k) if k <= MAX_PREFETCH => Some(k as usize),
        Some(k) => {
            return Err(
                ApiError::invalid(format!("`prefetch` is {k}; at most {MAX_PREFETCH}"))
                    .param("retrieval.prefetch"),
            );
        }
    };
    Ok(Some(SpecAsked {
        stride,
        prefetch,
        async_verify: options.async_verify,
    }))
}

/// The index of the knowledge base a request names by retriever (the first without a name).
pub fn knowledge(state: &AppState, retriever: Option<&str>) -> Result<usize, ApiError> {
    let Some(name) = retriever else { return Ok(0) };
    state
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
        })
}

/// Whether the stream carries speculation events (only a stream can).
fn events(options: &RetrievalOptions, stream: bool) -> Result<bool, ApiError> {
    let events = options.events.unwrap_or(false);
    if events && !stream {
        return Err(ApiError::invalid(
            "`events` are sent in the stream: set `\"stream\": true`".to_string(),
        )
        .param("retrieval.events"));
    }
    Ok(events)
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
        // An object field given as an array of its values is refused, not read in order.
        for (body, param) in [
            (
                r#"{"model":"m","prompt":"p","retrieval":["flat"]}"#,
                "retrieval",
            ),
            (
                r#"{"model":"m","prompt":"p","stream_options":[true]}"#,
                "stream_options",
            ),
        ] {
            let e = parse::<CompletionRequest>(body.as_bytes()).unwrap_err();
            assert!(
                e.body.message.contains("expected an object"),
                "{}",
                e.body.message
            );
            assert_eq!(e.body.param.as_deref(), Some(param));
        }
        let chat = br#"{"model":"m","messages":[],"retrieval":[true]}"#;
        let e = parse::<ChatRequest>(chat).unwrap_err();
        assert_eq!(e.body.param.as_deref(), Some("retrieval"));
        // Inside the object, errors still name their field; null is the same as absent.
        let e = parse::<CompletionRequest>(
            br#"{"model":"m","prompt":"p","retrieval":{"prefetch":"x"}}"#,
        )
        .unwrap_err();
        assert_eq!(e.body.param.as_deref(), Some("retrieval.prefetch"));
        let ok = parse::<CompletionRequest>(
            br#"{"model":"m","prompt":"p","retrieval":null,"stream_options":{"include_usage":true}}"#,
        )
        .unwrap();
        assert!(ok.retrieval.is_none() && ok.stream_options.unwrap().include_usage);
    }
}
