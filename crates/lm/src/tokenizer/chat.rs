//! The chat prompt: the model's own Jinja template, rendered by minijinja.
//!
//! A GGUF carries its chat template as Jinja source (`tokenizer.chat_template`). It is compiled
//! once when the tokenizer is loaded and rendered for every conversation the way Hugging Face
//! transformers (and llama.cpp's Python binding) render it: a sandboxed environment with
//! `trim_blocks` and `lstrip_blocks`, the globals `messages`, `add_generation_prompt`,
//! `bos_token`, `eos_token` and `raise_exception`, and Python's string and dict methods
//! (`.strip()`, `.startswith()`, `.items()`, …, through minijinja-contrib's `pycompat`), so any
//! template written for transformers renders here, not a recognised subset.
//! `crates/lm/tests/tokenizer.rs` compares the rendering of multi-turn conversations with
//! Python's jinja2 for both real models.

use minijinja::syntax::SyntaxConfig;
use minijinja::{Environment, ErrorKind, Value, context};
use serde::Serialize;

use crate::error::{LmError, Result};

/// Name under which the template is registered in its environment.
const NAME: &str = "chat";

/// One turn of a conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant` (or whatever else the template knows).
    pub role: String,
    /// The turn's text.
    pub content: String,
}

impl ChatMessage {
    /// A turn by `role` saying `content`.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> ChatMessage {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// A model's compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos: String,
    eos: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let source = self.env.get_template(NAME).map(|t| t.source().len());
        f.debug_struct("ChatTemplate")
            .field("source_bytes", &source.ok())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .finish()
    }
}

impl ChatTemplate {
    /// Compiles `source`, with `bos` and `eos` as the `bos_token` and `eos_token` globals.
    /// A template that does not compile, or cannot render a one-question conversation, is
    /// refused here rather than at the first request.
    pub fn new(source: &str, bos: &str, eos: &str) -> Result<ChatTemplate> {
        let mut env = Environment::new();
        let syntax = SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(template_error)?;
        env.set_syntax(syntax);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_template_owned(NAME, source.to_string())
            .map_err(template_error)?;
        let template = ChatTemplate {
            env,
            bos: bos.to_string(),
            eos: eos.to_string(),
        };
        template.render(&[ChatMessage::new("user", "Hello")], true)?;
        Ok(template)
    }

    /// The prompt text of `messages`; with `add_generation_prompt`, ending where the
    /// assistant's reply begins. Special tokens appear as text: encode it with
    /// [`crate::Tokenizer::encode_with_special`]. A template's `raise_exception` (say, for
    /// roles out of order) is [`LmError::ChatTemplate`] with its message.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let template = self.env.get_template(NAME).map_err(template_error)?;
        template
            .render(context! {
                messages => Value::from(minijinja::value::Serde(messages)),
                add_generation_prompt => add_generation_prompt,
                bos_token => &self.bos,
                eos_token => &self.eos,
            })
            .map_err(template_error)
    }

    /// The prompt for one user turn, ending where the assistant's reply begins (the
    /// template's default system message included, if it has one).
    pub fn prompt(&self, user: &str) -> Result<String> {
        self.render(&[ChatMessage::new("user", user)], true)
    }
}

/// `raise_exception(message)`, as transformers defines it for templates.
fn raise_exception(message: String) -> std::result::Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
}

fn template_error(e: minijinja::Error) -> LmError {
    let message = match e.detail() {
        Some(detail) if e.kind() == ErrorKind::InvalidOperation => detail.to_string(),
        _ => e.to_string(),
    };
    LmError::ChatTemplate(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SmolLM2-135M-Instruct's template, as in its GGUF.
    const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    fn smollm2() -> ChatTemplate {
        ChatTemplate::new(SMOLLM2, "<|im_start|>", "<|im_end|>").unwrap()
    }

    #[test]
    fn one_user_turn_gets_the_default_system_message() {
        assert_eq!(
            smollm2().prompt("What is 2+2?").unwrap(),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn a_conversation_renders_every_turn() {
        let messages = [
            ChatMessage::new("system", "Be brief."),
            ChatMessage::new("user", "Hi"),
            ChatMessage::new("assistant", "Hello!"),
            ChatMessage::new("user", "2+2?"),
        ];
        assert_eq!(
            smollm2().render(&messages, true).unwrap(),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n"
        );
        assert!(
            !smollm2()
                .render(&messages, false)
                .unwrap()
                .ends_with("assistant\n")
        );
    }

    #[test]
    fn globals_and_python_methods() {
        let t = ChatTemplate::new(
            "{{ bos_token }}{% for m in messages %}{{ m.content.strip() | upper }}{% endfor %}{{ eos_token }}",
            "<s>",
            "</s>",
        )
        .unwrap();
        assert_eq!(
            t.render(&[ChatMessage::new("user", "  hi  ")], true)
                .unwrap(),
            "<s>HI</s>"
        );
    }

    #[test]
    fn raise_exception_is_a_typed_error_with_the_message() {
        let t = ChatTemplate::new(
            "{% if messages[-1].role != 'user' %}{{ raise_exception('Last turn must be the user') }}{% endif %}ok",
            "",
            "",
        )
        .unwrap();
        let e = t
            .render(&[ChatMessage::new("assistant", "x")], true)
            .unwrap_err();
        match e {
            LmError::ChatTemplate(m) => assert!(m.contains("Last turn must be the user"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_broken_template_is_refused_at_load() {
        assert!(matches!(
            ChatTemplate::new("{% for m in messages %}", "", ""),
            Err(LmError::ChatTemplate(_))
        ));
    }
}
