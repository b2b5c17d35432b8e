//! Turning a worker's events into OpenAI responses: the whole answer for a plain request, and
//! the chunks of a streamed one. Both endpoints share one shape ([`Completion`]); the endpoint
//! decides the `object` name and whether a choice carries `text` or a chat message.

use ralmspec_engine::Stop;
use serde_json::{Map, Value, json};

use crate::request::{Endpoint, Validated};
use crate::wire::{
    ChatMessage, Choice, Completion, Delta, FINGERPRINT, Source, TokenLogprob, Usage,
};
use crate::worker::Finished;

/// The identity shared by every chunk of one response.
pub struct Header {
    pub id: String,
    pub created: u64,
    pub model: String,
    pub endpoint: Endpoint,
    /// The request's seed.
    pub seed: u64,
    /// Whether log-probabilities were asked for.
    pub logprobs: bool,
}

/// OpenAI's `finish_reason` for a stop (a stop sequence is `stop`, as the model's own end).
pub fn finish_reason(stop: Stop) -> &'static str {
    match stop {
        Stop::EndOfText | Stop::Halted => "stop",
        Stop::Length => "length",
    }
}

/// OpenAI's `logprobs` object for `entries`, whose text starts at `offset` characters into
/// the answer (completions' `text_offset`).
fn logprobs_value(endpoint: Endpoint, entries: &[TokenLogprob], offset: usize) -> Value {
    match endpoint {
        Endpoint::Chat => json!({ "content": entries }),
        Endpoint::Completions => {
            let mut offsets = Vec::with_capacity(entries.len());
            let mut at = offset;
            for e in entries {
                offsets.push(at);
                at += e.token.chars().count();
            }
            let top: Vec<Map<String, Value>> = entries
                .iter()
                .map(|e| {
                    e.top_logprobs
                        .iter()
                        .map(|t| (t.token.clone(), json!(t.logprob)))
                        .collect()
                })
                .collect();
            json!({
                "tokens": entries.iter().map(|e| &e.token).collect::<Vec<_>>(),
                "token_logprobs": entries.iter().map(|e| e.logprob).collect::<Vec<_>>(),
                "top_logprobs": top,
                "text_offset": offsets,
            })
        }
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
            seed: self.seed,
            system_fingerprint: FINGERPRINT,
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
    pub fn full(&self, _request: &Validated, done: Finished) -> Completion {
        let finish = Some(finish_reason(done.stop));
        let logprobs = self
            .logprobs
            .then(|| logprobs_value(self.endpoint, &done.logprobs, 0));
        let mut choice = match self.endpoint {
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
        if logprobs.is_some() {
            choice.logprobs = logprobs;
        }
        let usage = Usage::new(done.prompt_tokens, done.completion_tokens);
        self.completion(false, vec![choice], Some(usage), done.sources)
    }

    /// The first chunk of a chat stream: the assistant role, no content yet.
    pub fn role_chunk(&self) -> Completion {
        let choice = self.choice(Some(String::new()), true, None);
        self.completion(true, vec![choice], None, Vec::new())
    }

    /// A chunk of committed text, the sources of its tokens and, when asked for, their
    /// log-probabilities (`offset`: characters of the answer before this chunk's tokens).
    pub fn text_chunk(
        &self,
        text: String,
        sources: Vec<Source>,
        logprobs: &[TokenLogprob],
        offset: usize,
    ) -> Completion {
        let mut choice = self.choice(Some(text), false, None);
        if self.logprobs {
            choice.logprobs = Some(logprobs_value(self.endpoint, logprobs, offset));
        }
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
