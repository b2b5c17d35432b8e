//! What one request asks of an engine: its input (a question, a whole conversation, or raw
//! text to continue), its new-token budget, how tokens are chosen, and whether the answer's
//! log-probabilities come back. The budget is the request's, not the engine's (issue 18).

pub use ralmspec_lm::ChatMessage;

use crate::sampling::Sampling;

/// The text a request starts from.
#[derive(Clone, Copy, Debug)]
pub enum Input<'a> {
    /// One question, as the only user turn of the model's chat template.
    Question(&'a str),
    /// A whole conversation (system, user and assistant turns) through the model's chat
    /// template; the answer is the next assistant turn. Retrieval queries are cut from the
    /// last user turn and the answer so far.
    Chat(&'a [ChatMessage]),
    /// Raw text to continue, without any chat template: the document, a blank line, then the
    /// text (In-Context RALM's layout). Queries are cut from the text and the answer so far.
    Raw(&'a str),
}

/// One request.
#[derive(Clone, Copy, Debug)]
pub struct Ask<'a> {
    /// What the answer follows.
    pub input: Input<'a>,
    /// Stop after this many new tokens (or at end of text).
    pub max_new_tokens: usize,
    /// How each token is chosen (greedy by default); every engine chooses identically.
    pub sampling: Sampling,
    /// Return each answer token's log-probability with this many alternatives (`None`: no
    /// log-probabilities are computed).
    pub top_logprobs: Option<usize>,
}

impl<'a> Ask<'a> {
    /// A greedy answer to `question` within `max_new_tokens`.
    pub fn question(question: &'a str, max_new_tokens: usize) -> Ask<'a> {
        Ask {
            input: Input::Question(question),
            max_new_tokens,
            sampling: Sampling::GREEDY,
            top_logprobs: None,
        }
    }
}
