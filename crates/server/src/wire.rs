//! OpenAI's wire format as this server speaks it: the request bodies of `/v1/completions` and
//! `/v1/chat/completions` (with the `retrieval` extension), the responses and streamed chunks
//! (with the `sources` extension), and `/v1/models`.
//!
//! Every request field is either honoured or refused: fields this server cannot honour
//! (`tools`, `response_format` other than text, `logit_bias`, penalties, …) and fields it does
//! not know are a 400 naming the field (`validation`), never ignored in silence. Only
//! `user`, `metadata`, `store` and `service_tier`, which change no answer, are accepted and
//! unused. Fields it knows must have the right type.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// `POST /v1/completions`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CompletionRequest {
    pub model: String,
    /// A string, or an array holding one string.
    pub prompt: Value,
    pub max_tokens: Option<u64>,
    #[serde(default)]
    pub stream: bool,
    #[serde(default, deserialize_with = "object")]
    pub stream_options: Option<StreamOptions>,
    /// Number of choices; only 1 is served.
    pub n: Option<u64>,
    /// 0 (greedy, the default) to 2.
    pub temperature: Option<f64>,
    /// In (0, 1]; 1 keeps every token.
    pub top_p: Option<f64>,
    /// Keep the k most likely tokens (0: all; an extension, as vLLM's).
    pub top_k: Option<u64>,
    /// The seed of every draw; one is chosen (and returned) when absent.
    pub seed: Option<u64>,
    /// A string or up to 4 strings: the answer ends before the first of them.
    pub stop: Option<Value>,
    /// Completions' `logprobs`: return this many alternatives per token (0 to 20).
    pub logprobs: Option<u64>,
    /// The extension: continue `prompt` as raw text, without the chat template.
    #[serde(default)]
    pub raw: bool,
    /// The retrieval extension.
    #[serde(default, deserialize_with = "object")]
    pub retrieval: Option<RetrievalOptions>,
    /// Every other field (refused unless harmless: see `validation`).
    #[serde(flatten)]
    #[schema(ignore)]
    pub other: BTreeMap<String, Value>,
}

/// The sampling fields both endpoints share (spelled out in each request, not flattened, so
/// that a type error names its field).
#[derive(Debug, Default)]
pub struct SamplingFields {
    /// 0 (greedy, the default) to 2.
    pub temperature: Option<f64>,
    /// In (0, 1]; 1 keeps every token.
    pub top_p: Option<f64>,
    /// Keep the k most likely tokens (0: all; an extension, as vLLM's).
    pub top_k: Option<u64>,
    /// The seed of every draw; one is chosen (and returned) when absent.
    pub seed: Option<u64>,
    /// A string or up to 4 strings: the answer ends before the first of them.
    pub stop: Option<Value>,
}

/// `POST /v1/chat/completions`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<Message>,
    pub max_tokens: Option<u64>,
    /// The newer name of `max_tokens` for chat.
    pub max_completion_tokens: Option<u64>,
    #[serde(default)]
    pub stream: bool,
    #[serde(default, deserialize_with = "object")]
    pub stream_options: Option<StreamOptions>,
    pub n: Option<u64>,
    /// 0 (greedy, the default) to 2.
    pub temperature: Option<f64>,
    /// In (0, 1]; 1 keeps every token.
    pub top_p: Option<f64>,
    /// Keep the k most likely tokens (0: all; an extension, as vLLM's).
    pub top_k: Option<u64>,
    /// The seed of every draw; one is chosen (and returned) when absent.
    pub seed: Option<u64>,
    /// A string or up to 4 strings: the answer ends before the first of them.
    pub stop: Option<Value>,
    /// Chat's `logprobs`: return each token's log-probability.
    pub logprobs: Option<bool>,
    /// With `logprobs`, this many alternatives per token (0 to 20).
    pub top_logprobs: Option<u64>,
    #[serde(default, deserialize_with = "object")]
    pub retrieval: Option<RetrievalOptions>,
    /// Every other field (refused unless harmless: see `validation`).
    #[serde(flatten)]
    #[schema(ignore)]
    pub other: BTreeMap<String, Value>,
}

/// The fields both endpoints share, once read.
#[derive(Debug)]
pub struct Common {
    pub max_tokens: Option<u64>,
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    pub n: Option<u64>,
    pub sampling: SamplingFields,
    /// Alternatives per token when log-probabilities are asked for.
    pub top_logprobs: Option<u64>,
    pub retrieval: Option<RetrievalOptions>,
    pub other: BTreeMap<String, Value>,
}

/// An optional object field (`null` or absent: `None`). serde's derive also reads a struct
/// from an array of its fields in order, so `"retrieval": ["flat"]` would pass for
/// `{"retriever": "flat"}`; this accepts only an object. Errors inside it keep their path
/// (`retrieval.prefetch`), since the object's own map is read in place.
fn object<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct Object<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Object<T> {
        type Value = Option<T>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_map(self)
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Some)
        }
    }
    deserializer.deserialize_option(Object(std::marker::PhantomData))
}

/// `stream_options`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

/// One chat message; `content` is a string or an array of `{"type": "text", "text": ...}`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct Message {
    pub role: String,
    #[serde(default)]
    pub content: Value,
    /// Any other field (`name` is accepted; `tool_calls` and the like are refused).
    #[serde(flatten)]
    #[schema(ignore)]
    pub other: BTreeMap<String, Value>,
}

/// The `retrieval` extension: how this request retrieves (defaults from the server).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetrievalOptions {
    /// A knowledge base the server was started with, by retriever name (e.g. `flat`).
    pub retriever: Option<String>,
    /// Generate with kNN-LM over the server's datastore instead (`/v1/completions` only; the
    /// prompt is continued as raw text).
    pub knn: Option<bool>,
    /// `baseline` or `spec` (with `knn`: plain or speculative kNN-LM).
    pub engine: Option<String>,
    /// Speculation steps per verification: `"os3"` or a number ≥ 1.
    pub stride: Option<Value>,
    /// Top-k documents of every real retrieval put into the speculation cache (0: top-1 only);
    /// with `knn`, neighbours each real search fetches for the cache (at least k).
    pub prefetch: Option<u64>,
    /// Verify asynchronously while the model keeps speculating.
    #[serde(rename = "async")]
    pub async_verify: Option<bool>,
    /// Add the engine's speculation events to the stream (`ralmspec.trace` SSE events;
    /// needs `"stream": true`).
    pub events: Option<bool>,
}

/// `GET /v1/passages/{doc}`'s query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassageQuery {
    /// The knowledge base, by retriever name (the default one when absent).
    pub retriever: Option<String>,
}

/// `GET /v1/passages/{doc}`: a document of a knowledge base.
#[derive(Debug, Serialize)]
pub struct Passage {
    pub doc: u32,
    pub id: String,
    pub title: String,
    pub text: String,
}

/// A document behind a span of the answer: answer tokens `start..end` were generated with it.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct Source {
    pub doc: u32,
    pub id: String,
    pub title: String,
    pub start: usize,
    pub end: usize,
}

impl From<ralmspec_engine::Source> for Source {
    fn from(s: ralmspec_engine::Source) -> Source {
        Source {
            doc: s.doc,
            id: s.id,
            title: s.title,
            start: s.start,
            end: s.end,
        }
    }
}

/// One answer token's log-probability, with the most likely alternatives at its position
/// (chat's `logprobs.content[i]`; completions' `logprobs` is built from the same entries).
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct TokenLogprob {
    pub token: String,
    pub logprob: f32,
    pub bytes: Vec<u8>,
    pub top_logprobs: Vec<TopLogprob>,
}

/// An alternative token at a position.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct TopLogprob {
    pub token: String,
    pub logprob: f32,
    pub bytes: Vec<u8>,
}

/// Token counts of a response. `prompt_tokens` counts every prompt token the model read: for
/// each document the answer switched to, that document's tokens plus the conversation's (chat
/// template included); `completion_tokens` the answer's tokens (up to the one that completed a
/// stop sequence).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, ToSchema)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub total_tokens: usize,
}

impl Usage {
    pub fn new(prompt_tokens: usize, completion_tokens: usize) -> Usage {
        Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
        }
    }
}

/// The response (or a streamed chunk) of either endpoint.
#[derive(Debug, Serialize)]
pub struct Completion {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub model: String,
    pub choices: Vec<Choice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// The documents used, each with the answer span it informed (in a chunk: those of the
    /// tokens it carries).
    pub sources: Vec<Source>,
    /// The seed of the request's draws (the one given, or the one chosen): the same request
    /// with this seed gets the same answer, from either engine.
    pub seed: u64,
    /// `ralmspec-<version>`: the build that answered.
    pub system_fingerprint: &'static str,
}

/// The server's `system_fingerprint`.
pub const FINGERPRINT: &str = concat!("ralmspec-", env!("CARGO_PKG_VERSION"));

/// One choice: `text` for completions, `message` or `delta` for chat.
#[derive(Debug, Serialize)]
pub struct Choice {
    pub index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<ChatMessage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta: Option<Delta>,
    /// Completions carry `logprobs: null` unless asked for; chat leaves it out unless asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<Value>,
    pub finish_reason: Option<&'static str>,
}

/// A whole assistant message.
#[derive(Debug, Serialize)]
pub struct ChatMessage {
    pub role: &'static str,
    pub content: String,
}

/// A streamed piece of an assistant message.
#[derive(Debug, Default, Serialize)]
pub struct Delta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// `GET /v1/models`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelList {
    pub object: &'static str,
    pub data: Vec<ModelCard>,
}

/// One served model.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelCard {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub owned_by: &'static str,
}
