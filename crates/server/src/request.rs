//! A request that passed the edge ([`Validated`]): what the handlers, the queue and the
//! workers pass along. Its own module, below `validation` (which makes it), `worker` (which
//! runs it) and `state`, so that none of them imports another through it.

use ralmspec_engine::knn;
use ralmspec_engine::{Ask, ChatMessage, Engine, Input, Sampling};

/// Which endpoint a request came through (it decides the response's shape).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Completions,
    Chat,
}

/// What the answer follows.
#[derive(Clone, Debug)]
pub enum Prompt {
    /// `/v1/completions`' prompt as the one user turn of the chat template.
    Question(String),
    /// `/v1/completions` with `"raw": true`: text continued without a template.
    Raw(String),
    /// `/v1/chat/completions`' messages.
    Chat(Vec<ChatMessage>),
}

/// What generates the answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Generator {
    /// Iterative retrieval-augmented generation over knowledge base `knowledge` (an index into
    /// the server's list).
    Ralm { engine: Engine, knowledge: usize },
    /// kNN-LM over the server's datastore; the prompt is [`Prompt::Raw`].
    Knn(knn::Engine),
}

/// A request that passed every check.
#[derive(Clone, Debug)]
pub struct Validated {
    pub endpoint: Endpoint,
    pub prompt: Prompt,
    pub max_tokens: usize,
    pub generator: Generator,
    pub stream: bool,
    pub include_usage: bool,
    /// How tokens are chosen; its seed is the one returned.
    pub sampling: Sampling,
    /// The answer ends before the first of these (matched on committed text).
    pub stop: Vec<String>,
    /// Log-probabilities with this many alternatives per token, when asked for.
    pub top_logprobs: Option<usize>,
    /// Speculation events go into the stream.
    pub events: bool,
}

impl Validated {
    /// The engine's view of the request.
    pub fn ask(&self) -> Ask<'_> {
        Ask {
            input: match &self.prompt {
                Prompt::Question(q) => Input::Question(q),
                Prompt::Raw(text) => Input::Raw(text),
                Prompt::Chat(messages) => Input::Chat(messages),
            },
            max_new_tokens: self.max_tokens,
            sampling: self.sampling,
            top_logprobs: self.top_logprobs,
        }
    }
}
