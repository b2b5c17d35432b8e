//! The tokenizer: GPT-2 style byte-level BPE, rebuilt from a GGUF's metadata.
//!
//! Text goes through three stages (as in llama.cpp and HF tokenizers):
//!
//! 1. `special`: special tokens such as `<|im_start|>` are cut out whole (only in
//!    [`Tokenizer::encode_with_special`]; [`Tokenizer::encode`] treats them as plain text).
//! 2. `pretokenizer`: the rest is cut into words by the model's regex (`tokenizer.ggml.pre`).
//! 3. `bpe`: each word's bytes are merged by the ranked merge list into token ids.
//!
//! Stages 2 and 3 are native for the `smollm` and `qwen2` pre-tokenizers; any other name
//! llama.cpp knows goes through `fallback`, an HF `tokenizers` pipeline built from the same
//! vocabulary and merges with llama.cpp's split regexes for that name (slower, same ids).
//!
//! Decoding maps ids back to bytes (`bytes` undoes GPT-2's byte spelling of the vocabulary);
//! [`TextStream`] does it incrementally for printing while generating, and [`ChatTemplate`]
//! renders the model's chat prompt (its Jinja template). Everything is built once in [`Tokenizer::from_gguf`]; the
//! tokenizer is immutable afterwards and can be shared across threads.

mod bpe;
mod bytes;
mod chat;
mod fallback;
mod pretokenizer;
mod special;
mod stream;

use std::collections::HashMap;

use candle_core::quantized::gguf_file::{Content, Value};
use rayon::prelude::*;

use crate::error::{LmError, Result};
use bpe::Bpe;
use bytes::ByteDecoder;
pub use chat::{ChatMessage, ChatTemplate};
use fallback::Fallback;
use pretokenizer::PreTokenizer;
use special::{Piece, Specials};
pub use stream::TextStream;

/// `tokenizer.ggml.token_type` values (llama.cpp's `llama_token_type`).
const TYPE_CONTROL: i32 = 3;
const TYPE_USER_DEFINED: i32 = 4;

/// Control tokens that end a turn, besides the declared EOS (as in llama.cpp).
const END_OF_TURN: &[&str] = &[
    "<|im_end|>",
    "<|endoftext|>",
    "<|eot_id|>",
    "<|end_of_text|>",
    "<|end|>",
    "<end_of_turn>",
    "<|eom_id|>",
];

/// A byte-level BPE tokenizer with its special tokens and chat template.
pub struct Tokenizer {
    /// The bytes each token stands for, by id.
    tokens: Vec<Vec<u8>>,
    /// Plain text to ids (stages 2 and 3).
    words: Words,
    /// Control and user-defined tokens, matched by [`Tokenizer::encode_with_special`].
    specials: Specials,
    /// User-defined tokens only, which llama.cpp matches in plain text too.
    user_defined: Specials,
    bos: Option<u32>,
    eos: u32,
    /// Sorted ids that end a turn.
    eog: Vec<u32>,
    chat: ChatTemplate,
}

/// How plain text (no special tokens) becomes ids.
enum Words {
    /// The native pre-tokenizer and BPE (`smollm`, `qwen2`).
    Native { pre: PreTokenizer, bpe: Box<Bpe> },
    /// The HF `tokenizers` pipeline, for the other pre-tokenizers.
    Fallback(Box<Fallback>),
}

/// Which path [`Tokenizer::from_gguf_with`] builds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TokenizerPath {
    /// The native path where the pre-tokenizer has one, else the general (fallback) path.
    #[default]
    Auto,
    /// The general path whatever the pre-tokenizer (to check it against the native one).
    Fallback,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.tokens.len())
            .field("fallback", &self.uses_fallback())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("eog", &self.eog)
            .field("chat", &self.chat)
            .finish_non_exhaustive()
    }
}

impl Tokenizer {
    /// Rebuilds the tokenizer from a GGUF's `tokenizer.*` metadata.
    ///
    /// Requires `tokenizer.ggml.model = "gpt2"` (byte-level BPE) and a `tokenizer.ggml.pre`
    /// that is native (`smollm`, `qwen2`) or one of the llama.cpp names the general path
    /// implements (absent: llama.cpp's `default`), else [`LmError::Unsupported`] naming it; and
    /// a `tokenizer.chat_template` that compiles and renders a one-question conversation, else
    /// [`LmError::ChatTemplate`].
    pub fn from_gguf(content: &Content) -> Result<Tokenizer> {
        Tokenizer::from_gguf_with(content, TokenizerPath::Auto)
    }

    /// [`Tokenizer::from_gguf`], choosing the path for plain text.
    pub fn from_gguf_with(content: &Content, path: TokenizerPath) -> Result<Tokenizer> {
        let meta = Metadata(&content.metadata);
        let model = meta.string("tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(LmError::Unsupported(format!(
                "tokenizer model `{model}` (only byte-level BPE, `gpt2`, is supported)"
            )));
        }
        let pre_name = match meta.get("tokenizer.ggml.pre") {
            None => None,
            Some(_) => Some(meta.string("tokenizer.ggml.pre")?),
        };
        let native = match (path, pre_name) {
            (TokenizerPath::Auto, Some(name)) => PreTokenizer::native(name),
            _ => None,
        };
        let spelled = meta.strings("tokenizer.ggml.tokens")?;
        let types = match meta.get("tokenizer.ggml.token_type") {
            None => vec![1; spelled.len()],
            Some(_) => meta.i32s("tokenizer.ggml.token_type")?,
        };
        if types.len() != spelled.len() {
            return Err(LmError::Tokenizer(format!(
                "{} token types for {} tokens",
                types.len(),
                spelled.len()
            )));
        }
        let vocab_size = u32::try_from(spelled.len())
            .map_err(|_| LmError::Tokenizer(format!("{} tokens is too many", spelled.len())))?;

        let decoder = ByteDecoder::new();
        let tokens: Vec<Vec<u8>> = spelled
            .iter()
            .map(|s| decoder.decode(s).unwrap_or_else(|| s.as_bytes().to_vec()))
            .collect();
        let ids: HashMap<&str, u32> = spelled
            .iter()
            .enumerate()
            .map(|(id, s)| (*s, id as u32))
            .collect();

        // A byte without a token is dropped when encoding, as llama.cpp does (see `bpe`).
        let mut byte_ids = [bpe::NONE; 256];
        for (id, c) in byte_ids.iter_mut().zip(bytes::byte_chars()) {
            if let Some(&found) = ids.get(c.to_string().as_str()) {
                *id = found;
            }
        }

        let merges = meta.strings("tokenizer.ggml.merges")?;
        // The merges whose three tokens exist, in rank order (one naming a token the
        // vocabulary lacks can never apply; HF skips it too).
        let mut usable = Vec::with_capacity(merges.len());
        for merge in &merges {
            let (left, right) = merge
                .split_once(' ')
                .ok_or_else(|| LmError::Tokenizer(format!("merge `{merge}` is not two tokens")))?;
            let merged = format!("{left}{right}");
            if let (Some(&l), Some(&r), Some(&m)) =
                (ids.get(left), ids.get(right), ids.get(merged.as_str()))
            {
                usable.push(((left, right), (l, r, m)));
            }
        }
        let words = match native {
            Some(pre) => Words::Native {
                pre,
                bpe: Box::new(Bpe::new(byte_ids, usable.iter().map(|(_, triple)| *triple))),
            },
            None => {
                let missing: Vec<char> = bytes::byte_chars()
                    .into_iter()
                    .zip(byte_ids)
                    .filter(|(_, id)| *id == bpe::NONE)
                    .map(|(c, _)| c)
                    .collect();
                let pairs = usable
                    .iter()
                    .map(|((l, r), _)| ((*l).to_string(), (*r).to_string()))
                    .collect();
                Words::Fallback(Box::new(Fallback::new(
                    pre_name, &spelled, pairs, &missing,
                )?))
            }
        };

        let special_of = |wanted: &[i32]| {
            Specials::new(
                spelled
                    .iter()
                    .zip(&types)
                    .enumerate()
                    .filter(|(_, (_, t))| wanted.contains(t))
                    .map(|(id, (s, _))| ((*s).to_string(), id as u32))
                    .collect(),
            )
        };
        let specials = special_of(&[TYPE_CONTROL, TYPE_USER_DEFINED]);
        let user_defined = special_of(&[TYPE_USER_DEFINED]);

        let token_id = |key: &str| -> Result<Option<u32>> {
            match meta.get(key) {
                None => Ok(None),
                Some(v) => {
                    let id = v
                        .to_u32()
                        .map_err(|_| LmError::MissingMetadata(key.to_string()))?;
                    if id >= vocab_size {
                        return Err(LmError::BadToken {
                            id,
                            vocab: tokens.len(),
                        });
                    }
                    Ok(Some(id))
                }
            }
        };
        let eos = token_id("tokenizer.ggml.eos_token_id")?
            .ok_or_else(|| LmError::MissingMetadata("tokenizer.ggml.eos_token_id".into()))?;
        let add_bos = match meta.get("tokenizer.ggml.add_bos_token") {
            None => fallback::adds_bos_by_default(pre_name),
            Some(v) => v
                .to_bool()
                .map_err(|_| LmError::MissingMetadata("tokenizer.ggml.add_bos_token".into()))?,
        };
        let bos = if add_bos {
            token_id("tokenizer.ggml.bos_token_id")?
        } else {
            None
        };

        let mut eog = vec![eos];
        for key in ["tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"] {
            eog.extend(token_id(key)?);
        }
        for name in END_OF_TURN {
            if let Some(&id) = ids.get(name)
                && types[id as usize] == TYPE_CONTROL
            {
                eog.push(id);
            }
        }
        eog.sort_unstable();
        eog.dedup();

        // The template's `bos_token`/`eos_token` are the declared tokens' text, whether or
        // not a BOS is added to prompts (as transformers passes them).
        let text_of = |id: Option<u32>| {
            id.map(|id| String::from_utf8_lossy(&tokens[id as usize]).into_owned())
                .unwrap_or_default()
        };
        let chat = ChatTemplate::new(
            meta.string("tokenizer.chat_template")?,
            &text_of(token_id("tokenizer.ggml.bos_token_id")?),
            &text_of(Some(eos)),
        )?;
        Ok(Tokenizer {
            tokens,
            words,
            specials,
            user_defined,
            bos,
            eos,
            eog,
            chat,
        })
    }

    /// Encodes plain text: special-token strings such as `<|im_start|>` are encoded as the
    /// characters they are made of (user-defined tokens such as Qwen's `<tool_call>` are still
    /// matched whole, as llama.cpp and HF do). No BOS is added (see [`Tokenizer::bos_id`]).
    /// Bytes the vocabulary has no token for (SmolLM2 lacks a few control bytes) are dropped.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        self.encode_pieces(text, &self.user_defined)
    }

    /// Encodes text in which special tokens (`<|im_start|>`, `<|im_end|>`,
    /// `<|endoftext|>`, …: every control or user-defined token) stand for themselves, as in a
    /// chat prompt.
    pub fn encode_with_special(&self, text: &str) -> Vec<u32> {
        self.encode_pieces(text, &self.specials)
    }

    /// [`Tokenizer::encode`] of many texts, in parallel.
    pub fn encode_batch<S: AsRef<str> + Sync>(&self, texts: &[S]) -> Vec<Vec<u32>> {
        texts.par_iter().map(|t| self.encode(t.as_ref())).collect()
    }

    fn encode_pieces(&self, text: &str, specials: &Specials) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 3 + 1);
        if specials.is_empty() {
            self.encode_text(text, &mut out);
        } else {
            specials.split(text, |piece| match piece {
                Piece::Text(t) => self.encode_text(t, &mut out),
                Piece::Special(id) => out.push(id),
            });
        }
        out
    }

    fn encode_text(&self, text: &str, out: &mut Vec<u32>) {
        match &self.words {
            Words::Native { pre, bpe } => {
                pre.split(text, |word| bpe.encode_word(word.as_bytes(), out))
            }
            Words::Fallback(fallback) => fallback.encode(text, out),
        }
    }

    /// True if plain text goes through the general (HF `tokenizers`) path rather than the
    /// native one.
    pub fn uses_fallback(&self) -> bool {
        matches!(self.words, Words::Fallback(_))
    }

    /// Decodes ids to text; bytes that are not valid UTF-8 become U+FFFD. Special tokens
    /// appear as their text; ids outside the vocabulary are skipped.
    pub fn decode(&self, ids: &[u32]) -> String {
        let bytes: Vec<u8> = ids
            .iter()
            .flat_map(|&id| self.token_bytes(id))
            .copied()
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The bytes token `id` stands for (empty for an id outside the vocabulary).
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        self.tokens.get(id as usize).map_or(&[], Vec::as_slice)
    }

    /// The id of a token given by its text (e.g. `"<|im_end|>"`), if the vocabulary has it
    /// (a linear scan: for setup, not for hot loops).
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.tokens
            .iter()
            .position(|t| t == text.as_bytes())
            .map(|id| id as u32)
    }

    /// Number of tokens in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// The token to put before a prompt, if the model wants one
    /// (`tokenizer.ggml.add_bos_token`, or when absent llama.cpp's default for the pre-tokenizer;
    /// neither bundled model does).
    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    /// The declared end-of-sequence token.
    pub fn eos_id(&self) -> u32 {
        self.eos
    }

    /// True for tokens that end generation: EOS and end-of-turn control tokens such as
    /// `<|im_end|>` and `<|endoftext|>`.
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.binary_search(&id).is_ok()
    }

    /// The model's chat format.
    pub fn chat_template(&self) -> &ChatTemplate {
        &self.chat
    }

    /// The prompt for one user turn in the model's chat format, ending where the assistant's
    /// reply begins, with the template's default system message. Encode it with
    /// [`Tokenizer::encode_with_special`].
    pub fn chat_prompt(&self, user: &str) -> Result<String> {
        self.chat.prompt(user)
    }

    /// A streaming decoder for printing tokens as they are generated.
    pub fn stream(&self) -> TextStream<'_> {
        TextStream::new(self)
    }
}

/// Typed access to GGUF metadata, with [`LmError::MissingMetadata`] for absent or mistyped
/// keys.
struct Metadata<'a>(&'a HashMap<String, Value>);

impl<'a> Metadata<'a> {
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.0.get(key)
    }

    fn require(&self, key: &str) -> Result<&'a Value> {
        self.get(key)
            .ok_or_else(|| LmError::MissingMetadata(key.to_string()))
    }

    fn string(&self, key: &str) -> Result<&'a str> {
        match self.require(key)? {
            Value::String(s) => Ok(s),
            _ => Err(LmError::MissingMetadata(key.to_string())),
        }
    }

    fn array(&self, key: &str) -> Result<&'a [Value]> {
        match self.require(key)? {
            Value::Array(values) => Ok(values),
            _ => Err(LmError::MissingMetadata(key.to_string())),
        }
    }

    fn strings(&self, key: &str) -> Result<Vec<&'a str>> {
        self.array(key)?
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.as_str()),
                _ => Err(LmError::MissingMetadata(key.to_string())),
            })
            .collect()
    }

    fn i32s(&self, key: &str) -> Result<Vec<i32>> {
        self.array(key)?
            .iter()
            .map(|v| match v {
                Value::I32(x) => Ok(*x),
                Value::U32(x) => {
                    i32::try_from(*x).map_err(|_| LmError::MissingMetadata(key.to_string()))
                }
                _ => Err(LmError::MissingMetadata(key.to_string())),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_can_be_shared_across_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<Tokenizer>();
    }
}
