//! `GET /openapi.json`: the OpenAPI 3.1 document of this server, as it runs: every route, every
//! request field the server accepts with the bounds it enforces (the served model's name, the
//! `max_tokens` limit, the vocabulary size for `top_k`, the served retrievers), the whole and the
//! streamed responses, and the errors each route can give in OpenAI's shape.
//!
//! The request schemas start from `utoipa`'s `ToSchema`, derived on the very types that
//! `validation` deserializes (`wire::CompletionRequest`, `ChatRequest`, `Message`,
//! `RetrievalOptions`, `StreamOptions`), so a field added there is in the document at once; the
//! bounds that `validation` checks by hand are then written over the derived fields here, each
//! refinement naming a field the derived schema must have (a test holds both sides). The simple
//! response types (`Usage`, `Source`, `TokenLogprob`, `ModelCard`, `ErrorBody`, …) are derived
//! too. Hand-written are the parts the types cannot say: the JSON-valued fields (`prompt`,
//! `stop`, `stride`, a message's `content`), the catch-all of OpenAI fields accepted only with
//! their neutral value (listed by `validation::HARMLESS` and `validation::UNSUPPORTED`), and the
//! four shapes of `wire::Completion`, one Rust type that serializes as a text completion, a chat
//! completion, or either's streamed chunk: deriving it would give one loose schema for all four,
//! so each is written out with `additionalProperties: false`, which makes the schema test
//! (`tests/schema.rs`, schemathesis against a real server) catch a response field added without
//! its schema.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

use crate::config::{MAX_PREFETCH, MAX_STRIDE};
use crate::error::ErrorBody;
use crate::state::AppState;
use crate::validation::{HARMLESS, MAX_STOPS, MAX_TOP_LOGPROBS};
use crate::wire::{
    ChatRequest, CompletionRequest, Message, ModelCard, ModelList, RetrievalOptions, Source,
    StreamOptions, TokenLogprob, TopLogprob, Usage,
};

/// `GET /openapi.json`.
pub async fn serve(State(state): State<Arc<AppState>>) -> Json<Value> {
    let retrievers: Vec<&str> = state.knowledge.iter().map(|k| k.name()).collect();
    Json(document(&Served {
        model: &state.config.model,
        max_tokens: state.config.max_tokens_limit,
        default_max_tokens: state.config.default_max_tokens,
        vocab: state.lm.tokenizer.vocab_size(),
        retrievers: &retrievers,
        api_key: state.config.api_key.is_some(),
    }))
}

/// What the document depends on besides the code: the running server's settings.
pub struct Served<'a> {
    pub model: &'a str,
    /// Largest `max_tokens`.
    pub max_tokens: usize,
    /// The answer length of a request that sets none.
    pub default_max_tokens: usize,
    /// Tokens in the model's vocabulary: the largest `top_k`.
    pub vocab: usize,
    /// The served knowledge bases; the first is the default.
    pub retrievers: &'a [&'a str],
    /// Whether requests need `Authorization: Bearer <key>`.
    pub api_key: bool,
}

/// The characters Rust's `str::trim` removes (Unicode `White_Space`): a question or prompt must
/// have one character outside them.
const NOT_BLANK: &str = "[^\\t\\n\\u000b\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]";

/// The schema `utoipa` derives for `T`, as JSON.
fn derived<T: ToSchema>() -> Value {
    serde_json::to_value(T::schema()).expect("a schema always serializes")
}

/// The derived schema of `T` with each `(field, schema)` of `refinements` written over the
/// field's derived schema (its keys replacing theirs). Panics on a field `T` does not have,
/// which the tests below would show.
fn refined<T: ToSchema>(refinements: Vec<(&str, Value)>) -> Value {
    let mut schema = derived::<T>();
    let properties = schema["properties"]
        .as_object_mut()
        .expect("a struct's schema has properties");
    for (field, patch) in refinements {
        let Some(Value::Object(target)) = properties.get_mut(field) else {
            panic!("{} has no field `{field}` to refine", T::name());
        };
        let Value::Object(patch) = patch else {
            panic!("a refinement is an object")
        };
        // A derived `Option<T>` field is `oneOf [T, null]`; a refinement that says the whole
        // schema replaces it.
        if patch.contains_key("oneOf") || patch.contains_key("anyOf") {
            target.clear();
        }
        target.extend(patch);
    }
    schema
}

/// The fields both request bodies share, beyond their derived types.
fn common_refinements(served: &Served) -> Vec<(&'static str, Value)> {
    let token_bound = json!({
        "minimum": 1,
        "maximum": served.max_tokens,
        "description": format!(
            "Most tokens to generate, 1 to {} (default {}).",
            served.max_tokens, served.default_max_tokens
        ),
    });
    vec![
        (
            "model",
            json!({
                "enum": [served.model],
                "description": "The served model (`GET /v1/models`); any other name is a 404 \
                                `model_not_found`.",
            }),
        ),
        ("max_tokens", token_bound),
        (
            "n",
            json!({"minimum": 1, "maximum": 1, "description": "Choices to return: only 1."}),
        ),
        ("temperature", json!({"minimum": 0, "maximum": 2})),
        ("top_p", json!({"exclusiveMinimum": 0, "maximum": 1})),
        ("top_k", json!({"maximum": served.vocab})),
        ("seed", json!({"maximum": u64::MAX})),
        (
            "stop",
            json!({
                "oneOf": [
                    {"type": "null"},
                    {"type": "string", "minLength": 1},
                    {"type": "array", "maxItems": MAX_STOPS, "items": {"type": "string", "minLength": 1}},
                ],
                "description": format!(
                    "A string or up to {MAX_STOPS} strings: the answer ends before the first of them."
                ),
            }),
        ),
        (
            "stream",
            json!({"description": "Answer as server-sent events (`text/event-stream`)."}),
        ),
        (
            "retrieval",
            json!({"oneOf": [{"$ref": "#/components/schemas/RetrievalOptions"}, {"type": "null"}],
                   "description": "The retrieval extension: the retriever and the engine of this request."}),
        ),
    ]
}

/// OpenAI's fields accepted only with a neutral value, each with the schema of those values
/// (`null` is accepted for every field, known or not) and an example of one.
fn neutral_fields() -> Map<String, Value> {
    let only = |schema: Value, example: Value| {
        json!({"anyOf": [schema, {"type": "null"}], "examples": [example],
               "description": "Not supported by this server: only its neutral value is accepted."})
    };
    let mut fields = Map::new();
    for (field, schema, example) in [
        (
            "response_format",
            json!({"type": "object", "required": ["type"], "properties": {"type": {"const": "text"}}}),
            json!({"type": "text"}),
        ),
        ("tools", json!({"type": "array", "maxItems": 0}), json!([])),
        (
            "functions",
            json!({"type": "array", "maxItems": 0}),
            json!([]),
        ),
        ("tool_choice", json!({"const": "none"}), json!("none")),
        ("function_call", json!({"const": "none"}), json!("none")),
        (
            "parallel_tool_calls",
            json!({"type": "boolean"}),
            json!(false),
        ),
        ("presence_penalty", json!({"const": 0}), json!(0)),
        ("frequency_penalty", json!({"const": 0}), json!(0)),
        (
            "logit_bias",
            json!({"type": "object", "maxProperties": 0}),
            json!({}),
        ),
        ("echo", json!({"const": false}), json!(false)),
        ("best_of", json!({"type": "integer", "const": 1}), json!(1)),
        ("suffix", json!({"const": ""}), json!("")),
        (
            "modalities",
            json!({"type": "array", "items": {"const": "text"}}),
            json!(["text"]),
        ),
        ("audio", json!({"type": "null"}), Value::Null),
        ("prediction", json!({"type": "null"}), Value::Null),
        ("reasoning_effort", json!({"type": "null"}), Value::Null),
        ("web_search_options", json!({"type": "null"}), Value::Null),
    ] {
        fields.insert(field.to_string(), only(schema, example));
    }
    for field in HARMLESS {
        fields.insert(
            field.to_string(),
            json!({"description": "Accepted and unused: it changes no answer."}),
        );
    }
    fields
}

/// A request body's schema: its refined fields, the neutral-only OpenAI fields, and `null`
/// for any other field (a field with any other value is a 400 naming it).
fn request_body<T: ToSchema>(refinements: Vec<(&str, Value)>) -> Value {
    let mut schema = refined::<T>(refinements);
    let properties = schema["properties"].as_object_mut().expect("properties");
    for (field, neutral) in neutral_fields() {
        properties.entry(field).or_insert(neutral);
    }
    schema["additionalProperties"] = json!({"type": "null"});
    schema
}

fn completion_request(served: &Served) -> Value {
    let text = json!({"type": "string", "pattern": NOT_BLANK});
    let mut refinements = common_refinements(served);
    refinements.extend([
        (
            "prompt",
            json!({
                "oneOf": [text, {"type": "array", "minItems": 1, "maxItems": 1, "items": text}],
                "description": "The question (through the chat template as one user turn), or \
                                with `raw` the text to continue: a string, or an array of one \
                                string. Longer than the server's prompt limit is a 400.",
            }),
        ),
        (
            "logprobs",
            json!({"maximum": MAX_TOP_LOGPROBS,
                   "description": format!("Return the log-probability of each token and of this many alternatives (0 to {MAX_TOP_LOGPROBS}).")}),
        ),
    ]);
    request_body::<CompletionRequest>(refinements)
}

fn chat_request(served: &Served) -> Value {
    let mut refinements = common_refinements(served);
    refinements.extend([
        (
            "messages",
            json!({"minItems": 1,
                   "contains": {"type": "object", "required": ["role"],
                                "properties": {"role": {"const": "user"}}},
                   "description": "The conversation; the last user message is the question \
                                   retrieval searches for, and must not be blank."}),
        ),
        (
            "max_completion_tokens",
            json!({"minimum": 1, "maximum": served.max_tokens,
                   "description": "The newer name of `max_tokens`; it wins when both are given."}),
        ),
        (
            "top_logprobs",
            json!({"maximum": MAX_TOP_LOGPROBS,
                   "description": format!("With `logprobs: true`, this many alternatives per token (0 to {MAX_TOP_LOGPROBS}).")}),
        ),
    ]);
    request_body::<ChatRequest>(refinements)
}

/// A chat message: a system (or developer), user or assistant turn with text content (an
/// assistant's may be absent); `name` is accepted, any other field only as `null`.
fn message() -> Value {
    let parts = json!({
        "type": "array",
        "items": {"type": "object", "required": ["type", "text"],
                  "properties": {"type": {"const": "text"}, "text": {"type": "string"}}},
    });
    let content = json!({"oneOf": [{"type": "string"}, parts]});
    let mut schema = refined::<Message>(vec![
        (
            "role",
            json!({"enum": ["system", "developer", "user", "assistant"]}),
        ),
        ("content", content.clone()),
    ]);
    schema["properties"]["name"] = json!({"description": "Accepted and unused."});
    schema["additionalProperties"] = json!({"type": "null"});
    // Content is required but for an assistant turn, where it may be absent or null.
    schema["oneOf"] = json!([
        {"required": ["content"], "properties": {"role": {"enum": ["system", "developer", "user"]}}},
        {"properties": {"role": {"const": "assistant"},
                        "content": {"oneOf": [{"type": "string"}, parts, {"type": "null"}]}}},
    ]);
    schema
}

fn retrieval_options(served: &Served) -> Value {
    refined::<RetrievalOptions>(vec![
        (
            "retriever",
            json!({"enum": served.retrievers.iter().map(|r| Value::from(*r)).chain([Value::Null]).collect::<Vec<_>>(),
                   "description": format!("A served knowledge base (default `{}`).", served.retrievers.first().copied().unwrap_or_default())}),
        ),
        (
            "engine",
            json!({"enum": ["baseline", "spec", null],
                   "description": "`baseline` (retrieve every stride) or `spec` (RaLMSpec); \
                                   `stride`, `prefetch` and `async` are the `spec` engine's and \
                                   are a 400 with `baseline`."}),
        ),
        (
            "stride",
            json!({
                "oneOf": [
                    {"type": "null"},
                    {"type": "integer", "minimum": 1, "maximum": MAX_STRIDE},
                    {"type": "string", "pattern": stride_pattern()},
                ],
                "description": format!("Speculation steps per verification: `\"os3\"` (adaptive) or 1 to {MAX_STRIDE}."),
            }),
        ),
        ("prefetch", json!({"maximum": MAX_PREFETCH})),
    ])
}

/// `os3`, or a decimal number from 1 to `MAX_STRIDE` as Rust's `usize::from_str` reads it
/// (an optional `+`, leading zeros).
fn stride_pattern() -> String {
    let numbers: Vec<String> = (1..=MAX_STRIDE).map(|k| k.to_string()).collect();
    format!("^(os3|\\+?0*({}))$", numbers.join("|"))
}

fn reference(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// `finish_reason` of a whole answer.
fn finish_reason() -> Value {
    json!({"enum": ["stop", "length"],
           "description": "`stop`: the model's end of text or a stop sequence; `length`: `max_tokens`."})
}

/// A response or chunk object: the fields every shape has, strict.
fn completion_shape(object: &str, id_prefix: &str, choice: Value, usage_required: bool) -> Value {
    let mut required = vec![
        "id",
        "object",
        "created",
        "model",
        "choices",
        "sources",
        "seed",
        "system_fingerprint",
    ];
    if usage_required {
        required.push("usage");
    }
    json!({
        "type": "object",
        "required": required,
        "additionalProperties": false,
        "properties": {
            "id": {"type": "string", "pattern": format!("^{id_prefix}-")},
            "object": {"const": object},
            "created": {"type": "integer", "minimum": 0},
            "model": {"type": "string"},
            "choices": {"type": "array", "maxItems": 1, "items": choice},
            "usage": reference("Usage"),
            "sources": {"type": "array", "items": reference("Source"),
                        "description": "The documents used, each with the answer tokens it informed \
                                        (in a chunk: those of its tokens)."},
            "seed": {"type": "integer", "minimum": 0,
                     "description": "The seed of the request's draws: the one given, or the one chosen."},
            "system_fingerprint": {"type": "string", "pattern": "^ralmspec-"},
        },
    })
}

/// Completions' `logprobs` object.
fn completion_logprobs() -> Value {
    json!({
        "type": "object",
        "required": ["tokens", "token_logprobs", "top_logprobs", "text_offset"],
        "additionalProperties": false,
        "properties": {
            "tokens": {"type": "array", "items": {"type": "string"}},
            "token_logprobs": {"type": "array", "items": {"type": "number"}},
            "top_logprobs": {"type": "array",
                             "items": {"type": "object", "additionalProperties": {"type": "number"}}},
            "text_offset": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        },
    })
}

/// Chat's `logprobs` object.
fn chat_logprobs() -> Value {
    json!({
        "type": "object",
        "required": ["content"],
        "additionalProperties": false,
        "properties": {"content": {"type": "array", "items": reference("TokenLogprob")}},
    })
}

/// The four shapes of `wire::Completion`.
fn completion_shapes() -> Vec<(&'static str, Value)> {
    let index = json!({"const": 0});
    let text_logprobs = json!({"oneOf": [{"type": "null"}, reference("CompletionLogprobs")]});
    let text_choice = |finish: Value| {
        json!({"type": "object", "additionalProperties": false,
               "required": ["index", "text", "logprobs", "finish_reason"],
               "properties": {"index": index, "text": {"type": "string"},
                              "logprobs": text_logprobs, "finish_reason": finish}})
    };
    // `message` (whole, role and content required) or `delta` (streamed, either may be absent).
    let chat_choice = |field: &str, required: &[&str], finish: Value| {
        let mut properties = Map::new();
        properties.insert("index".into(), index.clone());
        properties.insert(
            field.into(),
            json!({"type": "object", "additionalProperties": false, "required": required,
                   "properties": {"role": {"const": "assistant"}, "content": {"type": "string"}}}),
        );
        properties.insert("logprobs".into(), reference("ChatLogprobs"));
        properties.insert("finish_reason".into(), finish);
        json!({"type": "object", "additionalProperties": false,
               "required": ["index", field, "finish_reason"], "properties": properties})
    };
    let streamed_finish = json!({"oneOf": [{"type": "null"}, finish_reason()]});
    vec![
        (
            "TextCompletion",
            completion_shape(
                "text_completion",
                "cmpl",
                text_choice(finish_reason()),
                true,
            ),
        ),
        (
            "TextCompletionChunk",
            completion_shape(
                "text_completion",
                "cmpl",
                text_choice(streamed_finish.clone()),
                false,
            ),
        ),
        (
            "ChatCompletion",
            completion_shape(
                "chat.completion",
                "chatcmpl",
                chat_choice("message", &["role", "content"], finish_reason()),
                true,
            ),
        ),
        (
            "ChatCompletionChunk",
            completion_shape(
                "chat.completion.chunk",
                "chatcmpl",
                chat_choice("delta", &[], streamed_finish),
                false,
            ),
        ),
    ]
}

/// The component schemas.
fn schemas(served: &Served) -> Map<String, Value> {
    let mut schemas = Map::new();
    let mut put = |name: &str, schema: Value| {
        schemas.insert(name.to_string(), schema);
    };
    put("CompletionRequest", completion_request(served));
    put("ChatRequest", chat_request(served));
    put("Message", message());
    put("RetrievalOptions", retrieval_options(served));
    put("StreamOptions", derived::<StreamOptions>());
    for (name, schema) in completion_shapes() {
        put(name, schema);
    }
    put("CompletionLogprobs", completion_logprobs());
    put("ChatLogprobs", chat_logprobs());
    put("TokenLogprob", derived::<TokenLogprob>());
    put("TopLogprob", derived::<TopLogprob>());
    put("Usage", derived::<Usage>());
    put("Source", derived::<Source>());
    let mut card = derived::<ModelCard>();
    card["properties"]["object"] = json!({"const": "model"});
    put("ModelCard", card);
    let mut list = derived::<ModelList>();
    list["properties"]["object"] = json!({"const": "list"});
    put("ModelList", list);
    put(
        "Health",
        json!({
            "type": "object",
            "required": ["status", "model", "retrievers", "queue_depth", "workers", "knn"],
            "additionalProperties": false,
            "properties": {
                "status": {"const": "ok"},
                "model": {"type": "string"},
                "retrievers": {"type": "array", "items": {"type": "string"}},
                "queue_depth": {"type": "integer", "minimum": 0},
                "workers": {"type": "integer", "minimum": 1},
                "knn": {
                    "description": "The kNN-LM datastore, when the server has one.",
                    "oneOf": [
                        {"type": "null"},
                        {"type": "object", "additionalProperties": false,
                         "required": ["entries", "search", "k"],
                         "properties": {
                             "entries": {"type": "integer", "minimum": 0},
                             "search": {"enum": ["exact", "hnsw"]},
                             "k": {"type": "integer", "minimum": 1},
                         }},
                    ],
                },
            },
        }),
    );
    put("TraceEvent", trace_event());
    put(
        "Passage",
        json!({"type": "object", "additionalProperties": false,
        "required": ["doc", "id", "title", "text"],
        "properties": {
            "doc": {"type": "integer", "minimum": 0},
            "id": {"type": "string"},
            "title": {"type": "string"},
            "text": {"type": "string"},
        }}),
    );
    let mut body = derived::<ErrorBody>();
    body["required"] = json!(["message", "type", "param", "code"]);
    put("ErrorBody", body);
    put(
        "Error",
        json!({"type": "object", "required": ["error"], "additionalProperties": false,
               "properties": {"error": reference("ErrorBody")}}),
    );
    schemas
}

/// A speculation event of a stream that asked for them (`crate::trace::TraceEvent`).
fn trace_event() -> Value {
    let count = json!({"type": "integer", "minimum": 0});
    let ms = json!({"type": "number", "minimum": 0});
    let variant = |kind: &str, fields: Value| {
        let mut properties = fields.as_object().unwrap().clone();
        properties.insert("type".into(), json!({"const": kind}));
        properties.insert("round".into(), count.clone());
        let required: Vec<&String> = properties.keys().collect();
        json!({"type": "object", "additionalProperties": false,
               "required": required, "properties": properties})
    };
    json!({
        "description": "What the engine did (`retrieval.events`; SSE events named `ralmspec.trace`).",
        "oneOf": [
            variant("step", json!({
                "doc": count, "id": {"type": "string"}, "title": {"type": "string"},
                "guess": {"type": "boolean"}, "start": count, "end": count,
                "at_ms": ms, "lm_ms": ms,
            })),
            variant("retrieval", json!({
                "queries": {"type": "integer", "minimum": 1}, "at_ms": ms, "took_ms": ms,
                "overlapped": {"type": "boolean"},
            })),
            variant("verdict", json!({
                "stride": count, "matched": count,
                "truth": {"type": ["integer", "null"], "minimum": 0},
                "truth_title": {"type": ["string", "null"]},
                "rollback_to": {"type": ["integer", "null"], "minimum": 0},
            })),
        ],
    })
}

/// An error response of `description`, in OpenAI's shape.
fn error(description: &str) -> Value {
    json!({
        "description": description,
        "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}},
        "content": {"application/json": {"schema": reference("Error")}},
    })
}

/// The errors every route can give (the edge layers'), with 401 when a key is required.
fn edge_errors(served: &Served, route_needs_key: bool) -> Map<String, Value> {
    let mut errors = Map::new();
    errors.insert(
        "400".into(),
        error("The request is invalid (the message and `param` name what is wrong)."),
    );
    errors.insert(
        "408".into(),
        error("The request body did not arrive within the server's body timeout."),
    );
    errors.insert(
        "413".into(),
        error("The request body exceeds the server's limit."),
    );
    if served.api_key && route_needs_key {
        let mut unauthorized = error("Missing or wrong API key (`invalid_api_key`).");
        unauthorized["headers"]["WWW-Authenticate"] =
            json!({"required": true, "schema": {"const": "Bearer"}});
        errors.insert("401".into(), unauthorized);
    }
    errors
}

fn with_request_id(mut response: Value) -> Value {
    response["headers"] = json!({"X-Request-Id": {"$ref": "#/components/headers/RequestId"}});
    response
}

/// A `GET` operation answering `ok` (a response object), plus the edge's errors.
fn get(served: &Served, id: &str, summary: &str, ok: Value, needs_key: bool) -> Value {
    let mut responses = edge_errors(served, needs_key);
    responses.insert("200".into(), with_request_id(ok));
    let mut operation = json!({"operationId": id, "summary": summary, "responses": responses});
    if !needs_key {
        operation["security"] = json!([]);
    }
    operation
}

/// One server-sent event of a stream (OpenAPI 3.1 has `schema` describe each event): `data`
/// is `[DONE]`, or JSON holding a `chunk` or an `Error`; an event named `ralmspec.trace`
/// (only with `retrieval.events`) holds a `TraceEvent`.
fn event(chunk: &str) -> Value {
    json!({
        "type": "object",
        "required": ["data"],
        "properties": {
            "event": {"enum": ["message", crate::trace::EVENT_NAME]},
            "data": {"type": "string"},
        },
        "if": {"required": ["event"], "properties": {"event": {"const": crate::trace::EVENT_NAME}}},
        "then": {"properties": {"data": {"contentMediaType": "application/json",
                                         "contentSchema": reference("TraceEvent")}}},
        "else": {"properties": {"data": {
            "if": {"const": "[DONE]"},
            "else": {"contentMediaType": "application/json",
                     "contentSchema": {"oneOf": [reference(chunk), reference("Error")]}},
        }}},
    })
}

/// A generation endpoint: `request` in, `whole` or `chunk`s (SSE) out.
fn generation(
    served: &Served,
    id: &str,
    summary: &str,
    request: &str,
    whole: &str,
    chunk: &str,
) -> Value {
    let mut responses = edge_errors(served, true);
    responses.insert(
        "200".into(),
        with_request_id(json!({
            "description": format!(
                "The whole answer, or with `stream: true` server-sent events: one `data:` line per \
                 verified piece of the answer, each a `{chunk}` with the sources of its tokens; \
                 then the chunk with `finish_reason`, with `stream_options.include_usage` a chunk \
                 with `usage` and no choices, and `data: [DONE]`. A failure after the stream \
                 began is sent as a `data:` line holding an `Error`; keep-alive comments come \
                 every second."
            ),
            "content": {
                "application/json": {"schema": reference(whole)},
                "text/event-stream": {"schema": event(chunk)},
            },
        })),
    );
    responses.insert(
        "404".into(),
        error("`model` is not the served model (`model_not_found`)."),
    );
    responses.insert(
        "500".into(),
        error("Generation failed for a reason the client cannot fix."),
    );
    let mut unavailable = error(
        "The queue is full (`overloaded`), the server is shutting down (`shutting_down`), or the \
         retrieval backend is unreachable (`retriever_unavailable`); retry after `Retry-After` \
         seconds when given.",
    );
    unavailable["headers"]["Retry-After"] = json!({"description": "Seconds to wait before retrying.", "schema": {"type": "integer", "minimum": 0}});
    responses.insert("503".into(), unavailable);
    json!({
        "operationId": id,
        "summary": summary,
        "requestBody": {"required": true, "content": {"application/json": {"schema": reference(request)}}},
        "responses": responses,
    })
}

/// Example requests of the generation endpoints (schemathesis sends each): whole and streamed,
/// with the retrieval extension, sampling and log-probabilities.
fn request_examples(served: &Served) -> [(&'static str, Value); 2] {
    let max_tokens = served.max_tokens.min(12);
    let retriever = served.retrievers.first().copied();
    let example = |summary: &str, value: Value| json!({"summary": summary, "value": value});
    [
        (
            "/v1/completions",
            json!({
                "question": example("A question, answered whole with RaLMSpec.", json!({
                    "model": served.model, "prompt": "What is the capital of France?",
                    "max_tokens": max_tokens, "logprobs": 2,
                    "retrieval": {"retriever": retriever, "engine": "spec", "stride": "os3", "prefetch": 20},
                })),
                "traced": example("Streamed with RaLMSpec's speculation events.", json!({
                    "model": served.model, "prompt": "Who wrote Hamlet?",
                    "max_tokens": max_tokens, "stream": true,
                    "retrieval": {"engine": "spec", "stride": 2, "prefetch": 0, "events": true},
                })),
                "streamed": example("Raw text continued and streamed, with usage.", json!({
                    "model": served.model, "prompt": "The Eiffel Tower is", "raw": true,
                    "max_tokens": max_tokens, "stream": true, "stream_options": {"include_usage": true},
                    "stop": ["."],
                })),
            }),
        ),
        (
            "/v1/chat/completions",
            json!({
                "conversation": example("A conversation, sampled with a seed, with log-probabilities.", json!({
                    "model": served.model,
                    "messages": [
                        {"role": "system", "content": "Answer briefly."},
                        {"role": "user", "content": "Who wrote Hamlet?"},
                    ],
                    "max_completion_tokens": max_tokens, "temperature": 0.8, "top_p": 0.95,
                    "seed": 1234, "logprobs": true, "top_logprobs": 2,
                    "retrieval": {"engine": "baseline"},
                })),
                "streamed": example("A question streamed, with usage.", json!({
                    "model": served.model,
                    "messages": [{"role": "user", "content": [{"type": "text", "text": "What is the capital of France?"}]}],
                    "max_tokens": max_tokens, "stream": true, "stream_options": {"include_usage": true},
                    "logprobs": true, "top_logprobs": 1,
                })),
            }),
        ),
    ]
}

/// `GET /v1/passages/{doc}`: a document of a served knowledge base.
fn passage(served: &Served) -> Value {
    let mut operation = get(
        served,
        "getPassage",
        "A document of a knowledge base, as `sources` and trace events name it.",
        json!({"description": "The document.",
               "content": {"application/json": {"schema": reference("Passage")}}}),
        true,
    );
    operation["parameters"] = json!([
        {"name": "doc", "in": "path", "required": true,
         "description": "The document's number (a 400 unless a number from 0 to 2^32−1).",
         "schema": {"type": "string"}},
        {"name": "retriever", "in": "query", "required": false,
         "description": "The knowledge base, by retriever name (default: the first).",
         "schema": {"enum": served.retrievers}},
    ]);
    operation["responses"]["404"] = error("The knowledge base has no such document.");
    operation
}

/// The whole document.
pub fn document(served: &Served) -> Value {
    let json_of = |schema: &str, description: &str| json!({"description": description, "content": {"application/json": {"schema": reference(schema)}}});
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {
            "title": "ralmspec",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "OpenAI-compatible retrieval-augmented generation with RaLMSpec. \
                            Every answer carries `sources` (the documents used) and `seed`; the \
                            `retrieval` object picks the retriever and engine. Errors are \
                            OpenAI's `{\"error\": {message, type, param, code}}`. Any other \
                            path is a 404 (`unknown_url`); another method on a listed path is \
                            a 405. Every response has an `X-Request-Id` header (the client's, \
                            or a fresh one).",
        },
        "paths": {
            "/v1/completions": {"post": generation(served, "createCompletion",
                "Answer a question (or continue raw text) with retrieval-augmented generation.",
                "CompletionRequest", "TextCompletion", "TextCompletionChunk")},
            "/v1/chat/completions": {"post": generation(served, "createChatCompletion",
                "Answer the last user message of a conversation with retrieval-augmented generation.",
                "ChatRequest", "ChatCompletion", "ChatCompletionChunk")},
            "/v1/models": {"get": get(served, "listModels", "The served model.",
                json_of("ModelList", "The served model."), true)},
            "/health": {"get": get(served, "health", "Liveness, the served retrievers and the queue depth (never needs the API key).",
                json_of("Health", "The server is up."), false)},
            "/metrics": {"get": get(served, "metrics", "Prometheus metrics.",
                json!({"description": "Prometheus text format 0.0.4.",
                       "content": {"text/plain": {"schema": {"type": "string"}}}}), true)},
            "/v1/passages/{doc}": {"get": passage(served)},
            "/": {"get": get(served, "page", "The web page (the API key is not needed for it).",
                json!({"description": "The page.", "content": {"text/html": {"schema": {"type": "string"}}}}), false)},
            "/ui/app.js": {"get": get(served, "pageScript", "The web page's script.",
                json!({"description": "JavaScript.", "content": {"text/javascript": {"schema": {"type": "string"}}}}), false)},
            "/ui/style.css": {"get": get(served, "pageStyle", "The web page's style sheet.",
                json!({"description": "CSS.", "content": {"text/css": {"schema": {"type": "string"}}}}), false)},
            "/openapi.json": {"get": get(served, "openapi", "This document.",
                json!({"description": "The OpenAPI document of this server, as configured.",
                       "content": {"application/json": {"schema": {"type": "object"}}}}), true)},
        },
        "components": {
            "schemas": schemas(served),
            "headers": {"RequestId": {
                "description": "The request's id: the client's `X-Request-Id`, or a fresh `req-…`.",
                "required": true,
                "schema": {"type": "string", "minLength": 1},
            }},
        },
    });
    for (path, examples) in request_examples(served) {
        doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["examples"] =
            examples;
    }
    if served.api_key {
        doc["components"]["securitySchemes"] =
            json!({"bearer": {"type": "http", "scheme": "bearer"}});
        doc["security"] = json!([{"bearer": []}]);
    }
    doc
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::validation::{self, UNSUPPORTED};

    fn served(api_key: bool) -> Value {
        document(&Served {
            model: "smollm2",
            max_tokens: 512,
            default_max_tokens: 12,
            vocab: 49152,
            retrievers: &["flat", "ivf"],
            api_key,
        })
    }

    fn property_names(schema: &Value) -> BTreeSet<String> {
        schema["properties"]
            .as_object()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Every `$ref` in `value` names a component that exists.
    fn check_refs(value: &Value, doc: &Value) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    let path = r.strip_prefix("#/").expect("a local reference");
                    let target = path.split('/').fold(doc, |v, key| &v[key]);
                    assert!(!target.is_null(), "dangling {r}");
                }
                map.values().for_each(|v| check_refs(v, doc));
            }
            Value::Array(items) => items.iter().for_each(|v| check_refs(v, doc)),
            _ => {}
        }
    }

    #[test]
    fn the_document_is_json_with_no_dangling_reference() {
        for api_key in [false, true] {
            let doc = served(api_key);
            let text = serde_json::to_string(&doc).unwrap();
            let back: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(back, doc);
            assert_eq!(doc["openapi"], "3.1.0");
            check_refs(&doc, &doc);
            let paths = doc["paths"].as_object().unwrap();
            for (path, item) in paths {
                for (method, operation) in item.as_object().unwrap() {
                    let responses = operation["responses"].as_object().unwrap();
                    assert!(responses.contains_key("200"), "{method} {path}");
                    assert_eq!(
                        responses.contains_key("401"),
                        api_key && path != "/health" && !crate::ui::is_page(path),
                        "{method} {path}"
                    );
                }
            }
        }
    }

    /// The routes `router.rs` declares, read from its source: `(method, path)`.
    fn declared_routes() -> BTreeSet<(String, String)> {
        let source = include_str!("router.rs");
        let mut routes = BTreeSet::new();
        for piece in source.split(".route(\"").skip(1) {
            let (path, rest) = piece.split_once('"').unwrap();
            let method = rest
                .trim_start_matches([',', ' ', '\n'])
                .split('(')
                .next()
                .unwrap()
                .trim();
            routes.insert((method.to_string(), path.to_string()));
        }
        routes
    }

    #[test]
    fn every_route_of_the_router_is_documented_and_nothing_else() {
        let doc = served(false);
        let documented: BTreeSet<(String, String)> = doc["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, item)| {
                item.as_object()
                    .unwrap()
                    .keys()
                    .map(move |m| (m.clone(), path.clone()))
            })
            .collect();
        let declared = declared_routes();
        assert!(declared.len() >= 6, "router.rs was not read: {declared:?}");
        assert_eq!(documented, declared);
    }

    #[test]
    fn every_request_field_the_server_reads_is_documented() {
        let doc = served(false);
        let schemas = &doc["components"]["schemas"];
        // The fields of the types `validation` deserializes.
        for (name, fields) in [
            (
                "CompletionRequest",
                property_names(&derived::<CompletionRequest>()),
            ),
            ("ChatRequest", property_names(&derived::<ChatRequest>())),
            ("Message", property_names(&derived::<Message>())),
            (
                "RetrievalOptions",
                property_names(&derived::<RetrievalOptions>()),
            ),
            ("StreamOptions", property_names(&derived::<StreamOptions>())),
        ] {
            assert!(!fields.is_empty(), "{name}");
            let documented = property_names(&schemas[name]);
            assert!(
                fields.is_subset(&documented),
                "{name}: {:?} undocumented",
                fields.difference(&documented).collect::<Vec<_>>()
            );
        }
        // `RetrievalOptions` refuses unknown fields; serde's own list of the others agrees.
        let e = validation::parse::<RetrievalOptions>(br#"{"no_such_field": 1}"#).unwrap_err();
        let expected: BTreeSet<String> = e
            .body
            .message
            .split_once("expected one of")
            .unwrap()
            .1
            .split(" at line")
            .next()
            .unwrap()
            .split(',')
            .map(|f| f.trim().trim_matches('`').to_string())
            .collect();
        assert_eq!(expected, property_names(&schemas["RetrievalOptions"]));
        // The OpenAI fields accepted with a neutral value, in both request bodies.
        for body in ["CompletionRequest", "ChatRequest"] {
            let documented = property_names(&schemas[body]);
            for field in HARMLESS
                .iter()
                .chain(UNSUPPORTED)
                .chain(&["parallel_tool_calls"])
            {
                assert!(
                    documented.contains(*field),
                    "{body}: `{field}` undocumented"
                );
            }
            assert_eq!(
                schemas[body]["additionalProperties"],
                json!({"type": "null"})
            );
        }
    }

    #[test]
    fn documented_neutral_values_are_what_the_server_accepts() {
        for (field, schema) in neutral_fields() {
            let accept = |value: &Value| {
                validation::check_other_fields(&BTreeMap::from([(field.clone(), value.clone())]))
            };
            for example in schema["examples"].as_array().into_iter().flatten() {
                assert!(accept(example).is_ok(), "{field}: {example}");
            }
            // A value outside the schema is refused, naming the field; harmless fields take any.
            let odd = json!("not neutral");
            if HARMLESS.contains(&field.as_str()) {
                assert!(accept(&odd).is_ok(), "{field}");
            } else {
                let e = accept(&odd).unwrap_err();
                assert_eq!(e.body.param.as_deref(), Some(field.as_str()));
            }
        }
    }

    #[test]
    fn bounds_follow_the_running_server() {
        let doc = served(false);
        let schemas = &doc["components"]["schemas"];
        let completion = &schemas["CompletionRequest"]["properties"];
        assert_eq!(completion["max_tokens"]["maximum"], 512);
        assert_eq!(completion["model"]["enum"], json!(["smollm2"]));
        assert_eq!(completion["top_k"]["maximum"], 49152);
        assert_eq!(
            schemas["RetrievalOptions"]["properties"]["retriever"]["enum"],
            json!(["flat", "ivf", null])
        );
        assert_eq!(
            schemas["ChatRequest"]["properties"]["max_completion_tokens"]["maximum"],
            512
        );
    }
}
