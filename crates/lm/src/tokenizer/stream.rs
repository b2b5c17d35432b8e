//! Streaming detokenization: text for each new token as soon as it is complete UTF-8.
//!
//! A byte-level token can end in the middle of a character (an emoji or a CJK character is
//! often two or three tokens). [`TextStream`] holds such a tail back until the next token
//! completes it, so what it emits, concatenated, equals [`Tokenizer::decode`] of all tokens.

use super::Tokenizer;

/// Turns generated token ids into printable text, one token at a time.
///
/// ```ignore
/// let mut stream = tokenizer.stream();
/// for id in generated {
///     if let Some(text) = stream.push(id) { print!("{text}"); }
/// }
/// print!("{}", stream.finish());
/// ```
pub struct TextStream<'a> {
    tokenizer: &'a Tokenizer,
    /// Bytes of an incomplete character at the end of what was pushed.
    pending: Vec<u8>,
}

impl<'a> TextStream<'a> {
    pub(crate) fn new(tokenizer: &'a Tokenizer) -> TextStream<'a> {
        TextStream {
            tokenizer,
            pending: Vec::new(),
        }
    }

    /// Adds one token; returns the text it completes, if any. Invalid bytes come out as
    /// U+FFFD, as in [`Tokenizer::decode`].
    pub fn push(&mut self, id: u32) -> Option<String> {
        self.pending
            .extend_from_slice(self.tokenizer.token_bytes(id));
        let mut out = String::new();
        let mut start = 0;
        loop {
            match std::str::from_utf8(&self.pending[start..]) {
                Ok(valid) => {
                    out.push_str(valid);
                    start = self.pending.len();
                    break;
                }
                Err(err) => {
                    let valid_end = start + err.valid_up_to();
                    let valid = std::str::from_utf8(&self.pending[start..valid_end])
                        .expect("from_utf8 reported this prefix valid");
                    out.push_str(valid);
                    match err.error_len() {
                        // An incomplete character at the end: wait for the next token.
                        None => {
                            start = valid_end;
                            break;
                        }
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            start = valid_end + bad;
                        }
                    }
                }
            }
        }
        self.pending.drain(..start);
        (!out.is_empty()).then_some(out)
    }

    /// The held-back tail, if generation ended inside a character (as U+FFFD).
    pub fn finish(self) -> String {
        String::from_utf8_lossy(&self.pending).into_owned()
    }
}
