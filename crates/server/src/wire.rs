//! OpenAI's wire format as this server speaks it: the request bodies of `/v1/completions` and
//! `/v1/chat/completions` (with the `retrieval` extension), the responses and streamed chunks
//! (with the `sources` extension), and `/v1/models`.
//!
//! Request fields this server does not use (`temperature`, `top_p`, `user`, ...) are accepted
//! and ignored, as OpenAI clients send them by default; fields it knows must have the right
//! type. Decoding is greedy.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `POST /v1/completions`.
#[derive(Debug, Deserialize)]
pub struct CompletionRequest {
    pub model: String,
    /// A string, or an array holding one string.
    pub prompt: Value,
    pub max_tokens: Option<u64>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    /// Number of choices; only 1 is served.
    pub n: Option<u64>,
    /// The retrieval extension.
    pub retrieval: Option<RetrievalOptions>,
}

/// `POST /v1/chat/completions`.
#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<Message>,
    pub max_tokens: Option<u64>,
    /// The newer name of `max_tokens` for chat.
    pub max_completion_tokens: Option<u64>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    pub n: Option<u64>,
    pub retrieval: Option<RetrievalOptions>,
}

/// The fields both endpoints share, once read (fields are spelled out in each request, not
/// flattened, so that a type error names its field).
#[derive(Debug)]
pub struct Common {
    pub max_tokens: Option<u64>,
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    pub n: Option<u64>,
    pub retrieval: Option<RetrievalOptions>,
}

/// `stream_options`.
#[derive(Debug, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

/// One chat message; `content` is a string or an array of `{"type": "text", "text": ...}`.
#[derive(Debug, Deserialize)]
pub struct Message {
    pub role: String,
    #[serde(default)]
    pub content: Value,
}

/// The `retrieval` extension: how this request retrieves (defaults from the server).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrievalOptions {
    /// A knowledge base the server was started with, by retriever name (e.g. `flat`).
    pub retriever: Option<String>,
    /// `baseline` or `spec`.
    pub engine: Option<String>,
    /// Speculation steps per verification: `"os3"` or a number ≥ 1.
    pub stride: Option<Value>,
    /// Top-k documents of every real retrieval put into the speculation cache (0: top-1 only).
    pub prefetch: Option<u64>,
    /// Verify asynchronously while the model keeps speculating.
    #[serde(rename = "async")]
    pub async_verify: Option<bool>,
}

/// A document behind a span of the answer: answer tokens `start..end` were generated with it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Source {
    pub doc: u32,
    pub id: String,
    pub title: String,
    pub start: usize,
    pub end: usize,
}

/// Token counts of a response.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
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
}

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
    /// Completions carry `logprobs: null`; chat leaves it out.
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
#[derive(Debug, Serialize)]
pub struct ModelList {
    pub object: &'static str,
    pub data: Vec<ModelCard>,
}

/// One served model.
#[derive(Debug, Serialize)]
pub struct ModelCard {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub owned_by: &'static str,
}
