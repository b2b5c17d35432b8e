//! How one request turns into LM input and retrieval queries, identically for every engine.
//!
//! - LM input: `document ⊕ conversation ⊕ answer`. With a chat template ([`Input::Question`],
//!   [`Input::Chat`]) the conversation is rendered by the model's own template with the
//!   document at the start of the system turn: in place of the template's default system
//!   message, or in front of the conversation's own system message (separated by a blank
//!   line). The rendering is cut where the document goes: what comes before it (the system
//!   turn's opening) and the document's text belong to the document part (shared across
//!   requests as KV), the rest to the conversation. Raw text ([`Input::Raw`]) is
//!   `document ⊕ "\n\n" ⊕ text`. The document (`title\ntext`) is cut to `doc_tokens`
//!   tokens; a new document replaces the old one.
//! - Query: the text of the last `query_tokens` tokens of `last user turn ⊕ answer` (the raw
//!   text for [`Input::Raw`]), never the document, the template or earlier turns. One builder
//!   for speculation and verification alike.

use std::collections::HashMap;

use ralmspec_lm::{ChatMessage, Lm};

use crate::error::{EngineError, Result};
use crate::ralm::ask::Input;
use crate::ralm::config::RalmConfig;
use crate::ralm::knowledge::Knowledge;

/// Marks where the document goes in a rendered conversation (a private-use character no
/// template writes).
const DOCUMENT: &str = "\u{E000}";

/// A request's input without its document: what every document is combined with.
pub(crate) struct Conversation {
    /// Tokens before the document's text (a system turn's opening).
    before: Vec<u32>,
    /// Tokens between the document's text and the answer.
    after: Vec<u32>,
    /// The plain tokens queries are cut from (the last user turn, or the raw text).
    question: Vec<u32>,
}

impl Conversation {
    pub(crate) fn new(lm: &Lm, input: &Input<'_>) -> Result<Conversation> {
        let tokenizer = &lm.tokenizer;
        let (messages, question) = match *input {
            Input::Raw(text) => {
                if text.trim().is_empty() {
                    return Err(EngineError::BadRequest("the prompt is empty".into()));
                }
                return Ok(Conversation {
                    before: tokenizer.bos_id().into_iter().collect(),
                    after: [tokenizer.encode("\n\n"), tokenizer.encode(text)].concat(),
                    question: tokenizer.encode(text),
                });
            }
            Input::Question(q) => (vec![ChatMessage::new("user", q)], q),
            Input::Chat(messages) => {
                let last_user = messages
                    .iter()
                    .rev()
                    .find(|m| m.role == "user")
                    .ok_or_else(|| EngineError::BadRequest("no user message".into()))?;
                (messages.to_vec(), last_user.content.as_str())
            }
        };
        if question.trim().is_empty() {
            return Err(EngineError::BadRequest("the question is empty".into()));
        }
        let mut messages = messages;
        match messages.first_mut() {
            Some(first) if first.role == "system" => {
                first.content = format!("{DOCUMENT}\n\n{}", first.content);
            }
            _ => messages.insert(0, ChatMessage::new("system", DOCUMENT)),
        }
        let rendered = tokenizer.chat_template().render(&messages, true)?;
        let mut parts = rendered.split(DOCUMENT);
        let (Some(before), Some(after), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(EngineError::BadRequest(
                "the model's chat template does not render a system turn once, where the document goes"
                    .into(),
            ));
        };
        Ok(Conversation {
            before: tokenizer.encode_with_special(before),
            after: tokenizer.encode_with_special(after),
            question: tokenizer.encode(question),
        })
    }

    /// Tokens the LM reads besides the document's text.
    pub(crate) fn len(&self) -> usize {
        self.before.len() + self.after.len()
    }
}

/// The prompt tokens of `input` besides the document's text (the conversation with its chat
/// template, or the raw text): what a server checks against its prompt limit.
pub fn conversation_tokens(lm: &Lm, input: &Input<'_>) -> Result<usize> {
    Ok(Conversation::new(lm, input)?.len())
}

/// The token sequences of one request.
pub(crate) struct Prompt<'a> {
    lm: &'a Lm,
    knowledge: &'a Knowledge,
    config: RalmConfig,
    conversation: Conversation,
    /// Document id → the document part of the input (framing and text).
    documents: HashMap<u32, Vec<u32>>,
    /// Positions the KV cache needs: the longest prefix plus every new token.
    capacity: usize,
}

impl<'a> Prompt<'a> {
    pub(crate) fn new(
        lm: &'a Lm,
        knowledge: &'a Knowledge,
        config: RalmConfig,
        input: &Input<'_>,
        max_new_tokens: usize,
    ) -> Result<Prompt<'a>> {
        if config.stride == 0 || config.query_tokens == 0 {
            return Err(EngineError::BadRequest(
                "stride and query length must be at least 1".into(),
            ));
        }
        let conversation = Conversation::new(lm, input)?;
        let capacity = conversation.len() + config.doc_tokens + max_new_tokens;
        let context = lm.model.config().context;
        if capacity > context {
            return Err(EngineError::TooLong {
                question: conversation.len(),
                doc: config.doc_tokens,
                new: max_new_tokens,
                needed: capacity,
                context,
            });
        }
        Ok(Prompt {
            lm,
            knowledge,
            config,
            conversation,
            documents: HashMap::new(),
            capacity,
        })
    }

    /// Positions a KV cache for this request must hold.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// The retrieval query after `answer` (the tokens generated so far).
    pub(crate) fn query_text(&self, answer: &[u32]) -> String {
        let question = &self.conversation.question;
        let n = self.config.query_tokens;
        let from_answer = answer.len().min(n);
        let from_question = (n - from_answer).min(question.len());
        let mut tokens = Vec::with_capacity(from_question + from_answer);
        tokens.extend_from_slice(&question[question.len() - from_question..]);
        tokens.extend_from_slice(&answer[answer.len() - from_answer..]);
        self.lm.tokenizer.decode(&tokens)
    }

    /// The LM input before the answer when `doc` is the document: the document part, and the
    /// conversation after it.
    pub(crate) fn input(&mut self, doc: u32) -> Result<(&[u32], &[u32])> {
        if !self.documents.contains_key(&doc) {
            let passage = self.knowledge.passage(doc)?;
            let mut text = self.lm.tokenizer.encode(&passage.prompt_text());
            text.truncate(self.config.doc_tokens);
            let document = [self.conversation.before.as_slice(), &text].concat();
            self.documents.insert(doc, document);
        }
        Ok((&self.documents[&doc], &self.conversation.after))
    }

    /// Prompt tokens read with `doc` in front (0 for a document never used).
    pub(crate) fn tokens_with(&self, doc: u32) -> usize {
        self.documents
            .get(&doc)
            .map_or(0, |d| d.len() + self.conversation.after.len())
    }
}
