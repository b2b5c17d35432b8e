//! How one request turns into LM input and retrieval queries, identically for every engine.
//!
//! - LM input: `[system turn holding the document] ⊕ [user turn with the question] ⊕ answer`.
//!   The document (`title\ntext`, cut to `doc_tokens` tokens) takes the place of the chat
//!   template's system message, in front of the prompt; a new document replaces the old one.
//! - Query: the text of the last `query_tokens` tokens of `question ⊕ answer`, never including
//!   the document or the chat framing. One builder for speculation and verification alike.

use std::collections::HashMap;

use ralmspec_lm::Lm;

use crate::config::RalmConfig;
use crate::error::{EngineError, Result};
use crate::knowledge::Knowledge;

/// The token sequences of one request.
pub(crate) struct Prompt<'a> {
    lm: &'a Lm,
    knowledge: &'a Knowledge,
    config: RalmConfig,
    /// The question's plain tokens (what queries are cut from).
    question: Vec<u32>,
    /// The user turn and the start of the assistant's reply.
    user_turn: Vec<u32>,
    /// Document id → the system turn holding it.
    documents: HashMap<u32, Vec<u32>>,
    /// Positions the KV cache needs: the longest prefix plus every new token.
    capacity: usize,
}

impl<'a> Prompt<'a> {
    pub(crate) fn new(
        lm: &'a Lm,
        knowledge: &'a Knowledge,
        config: RalmConfig,
        question: &str,
    ) -> Result<Prompt<'a>> {
        if question.trim().is_empty() {
            return Err(EngineError::BadRequest("the question is empty".into()));
        }
        if config.stride == 0 || config.query_tokens == 0 {
            return Err(EngineError::BadRequest(
                "stride and query length must be at least 1".into(),
            ));
        }
        let tokenizer = &lm.tokenizer;
        let template = tokenizer.chat_template();
        let user_turn = tokenizer.encode_with_special(&template.user_turn(question));
        let (open, close) = template.system_turn();
        let framing =
            tokenizer.encode_with_special(open).len() + tokenizer.encode_with_special(close).len();
        let capacity = framing + config.doc_tokens + user_turn.len() + config.max_new_tokens;
        let context = lm.model.config().context;
        if capacity > context {
            return Err(EngineError::TooLong {
                question: user_turn.len(),
                doc: config.doc_tokens,
                new: config.max_new_tokens,
                needed: capacity,
                context,
            });
        }
        Ok(Prompt {
            lm,
            knowledge,
            config,
            question: tokenizer.encode(question),
            user_turn,
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
        let n = self.config.query_tokens;
        let from_answer = answer.len().min(n);
        let from_question = (n - from_answer).min(self.question.len());
        let mut tokens = Vec::with_capacity(from_question + from_answer);
        tokens.extend_from_slice(&self.question[self.question.len() - from_question..]);
        tokens.extend_from_slice(&answer[answer.len() - from_answer..]);
        self.lm.tokenizer.decode(&tokens)
    }

    /// The LM input before the answer when `doc` is the document: the system turn holding
    /// it, and the user turn with the question.
    pub(crate) fn input(&mut self, doc: u32) -> Result<(&[u32], &[u32])> {
        if !self.documents.contains_key(&doc) {
            let passage = self.knowledge.passage(doc)?;
            let tokenizer = &self.lm.tokenizer;
            let (open, close) = tokenizer.chat_template().system_turn();
            let mut text = tokenizer.encode(&passage.prompt_text());
            text.truncate(self.config.doc_tokens);
            let mut document = tokenizer.encode_with_special(open);
            document.extend_from_slice(&text);
            document.extend(tokenizer.encode_with_special(close));
            self.documents.insert(doc, document);
        }
        Ok((&self.documents[&doc], &self.user_turn))
    }
}
