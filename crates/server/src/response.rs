//! Turning a worker's events into OpenAI responses: the whole answer for a plain request, and
//! the chunks of a streamed one. Both endpoints share one shape ([`Completion`]); the endpoint
//! decides the `object` name and whether a choice carries `text` or a chat message.

use ralmspec_engine::Stop;
use serde_json::Value;

use crate::validation::{Endpoint, Validated};
use crate::wire::{ChatMessage, Choice, Completion, Delta, Source, Usage};
use crate::worker::Finished;

/// The identity shared by every chunk of one response.
pub struct Header {
    pub id: String,
    pub created: u64,
    pub model: String,
    pub endpoint: Endpoint,
}

/// OpenAI's `finish_reason` for a stop.
pub fn finish_reason(stop: Stop) -> &'static str {
    match stop {
        Stop::EndOfText => "stop",
        Stop::Length => "length",
    }
}

impl Header {
    fn object(&self, chunk: bool) -> &'static str {
        match (self.endpoint, chunk) {
            (Endpoint::Completions, _) => "text_completion",
            (Endpoint::Chat, false) => "chat.completion",
            (Endpoint::Chat, true) => "chat.completion.chunk",
        }
    }

    fn completion(
        &self,
        chunk: bool,
        choices: Vec<Choice>,
        usage: Option<Usage>,
        sources: Vec<Source>,
    ) -> Completion {
        Completion {
            id: self.id.clone(),
            object: self.object(chunk),
            created: self.created,
            model: self.model.clone(),
            choices,
            usage,
            sources,
        }
    }

    fn choice(&self, text: Option<String>, role: bool, finish: Option<&'static str>) -> Choice {
        let mut choice = Choice {
            index: 0,
            text: None,
            message: None,
            delta: None,
            logprobs: None,
            finish_reason: finish,
        };
        match self.endpoint {
            Endpoint::Completions => {
                choice.text = Some(text.unwrap_or_default());
                choice.logprobs = Some(Value::Null);
            }
            Endpoint::Chat => {
                choice.delta = Some(Delta {
                    role: role.then_some("assistant"),
                    content: text,
                })
            }
        }
        choice
    }

    /// The whole response of a plain request.
    pub fn full(&self, request: &Validated, done: Finished) -> Completion {
        let finish = Some(finish_reason(done.stop));
        let choice = match self.endpoint {
            Endpoint::Completions => self.choice(Some(done.text), false, finish),
            Endpoint::Chat => Choice {
                index: 0,
                text: None,
                message: Some(ChatMessage {
                    role: "assistant",
                    content: done.text,
                }),
                delta: None,
                logprobs: None,
                finish_reason: finish,
            },
        };
        let usage = Usage::new(request.prompt_tokens, done.completion_tokens);
        self.completion(false, vec![choice], Some(usage), done.sources)
    }

    /// The first chunk of a chat stream: the assistant role, no content yet.
    pub fn role_chunk(&self) -> Completion {
        let choice = self.choice(Some(String::new()), true, None);
        self.completion(true, vec![choice], None, Vec::new())
    }

    /// A chunk of committed text and the sources of its tokens.
    pub fn text_chunk(&self, text: String, sources: Vec<Source>) -> Completion {
        let choice = self.choice(Some(text), false, None);
        self.completion(true, vec![choice], None, sources)
    }

    /// The last chunk with a choice: why the answer ended.
    pub fn finish_chunk(&self, stop: Stop) -> Completion {
        let text = match self.endpoint {
            Endpoint::Completions => Some(String::new()),
            Endpoint::Chat => None,
        };
        let choice = self.choice(text, false, Some(finish_reason(stop)));
        self.completion(true, vec![choice], None, Vec::new())
    }

    /// The usage chunk (`stream_options.include_usage`): no choices.
    pub fn usage_chunk(&self, usage: Usage) -> Completion {
        self.completion(true, Vec::new(), Some(usage), Vec::new())
    }
}
