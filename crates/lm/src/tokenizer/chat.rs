//! The chat prompt: the model's own template, recognised rather than interpreted.
//!
//! A GGUF carries its chat template as Jinja source (`tokenizer.chat_template`). Rather than
//! embed a Jinja engine, the template's family is recognised when the tokenizer is loaded and
//! the prompt for one user turn is written directly. Both supported models use ChatML
//! (`<|im_start|>role\n…<|im_end|>\n`); their templates differ only in the system message
//! they insert when the conversation has none, which is read out of the template text.

use crate::error::{LmError, Result};

/// The prompt format of a model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChatTemplate {
    /// `<|im_start|>{role}\n{content}<|im_end|>\n` per turn, then `<|im_start|>assistant\n`.
    ChatMl {
        /// The system message the template inserts when the conversation has none.
        default_system: Option<String>,
    },
}

const IM_START: &str = "<|im_start|>";
const IM_END: &str = "<|im_end|>";

impl ChatTemplate {
    /// Recognises the family of a Jinja chat template.
    pub fn detect(template: &str) -> Result<ChatTemplate> {
        let chatml = template.contains(IM_START)
            && template.contains(IM_END)
            && template.contains("add_generation_prompt")
            && template.contains("<|im_start|>assistant");
        if !chatml {
            let start: String = template.chars().take(80).collect();
            return Err(LmError::Unsupported(format!(
                "chat template of an unknown family (only ChatML is supported): {start:?}…"
            )));
        }
        Ok(ChatTemplate::ChatMl {
            default_system: default_system(template),
        })
    }

    /// The prompt for one user turn, ending where the assistant's reply begins (what the
    /// template renders with `add_generation_prompt = true`).
    pub fn prompt(&self, user: &str) -> String {
        match self {
            ChatTemplate::ChatMl { default_system } => {
                let mut out = String::new();
                if let Some(system) = default_system {
                    out.push_str(&format!("{IM_START}system\n{system}{IM_END}\n"));
                }
                out.push_str(&self.user_turn(user));
                out
            }
        }
    }

    /// The text around a system turn's content: (before, after). A retrieval engine puts a
    /// document there, in place of the default system message.
    pub fn system_turn(&self) -> (&'static str, &'static str) {
        match self {
            ChatTemplate::ChatMl { .. } => ("<|im_start|>system\n", "<|im_end|>\n"),
        }
    }

    /// One user turn and the start of the assistant's reply, without any system turn.
    pub fn user_turn(&self, user: &str) -> String {
        match self {
            ChatTemplate::ChatMl { .. } => {
                format!("{IM_START}user\n{user}{IM_END}\n{IM_START}assistant\n")
            }
        }
    }
}

/// The literal system message of a ChatML template: the text of the first
/// `<|im_start|>system\n…<|im_end|>` that is written out in full inside one string literal
/// (not built from `messages[0]['content']`). The newline may be a real one or a `\n` escape.
fn default_system(template: &str) -> Option<String> {
    let marker = format!("{IM_START}system");
    let mut rest = template;
    while let Some(at) = rest.find(&marker) {
        rest = &rest[at + marker.len()..];
        let body = rest.strip_prefix("\\n").or_else(|| rest.strip_prefix('\n'));
        let Some(body) = body else { continue };
        let Some(end) = body.find(IM_END) else {
            continue;
        };
        let text = &body[..end];
        let literal = !text.is_empty() && !text.contains(['\'', '"', '{', '}', '\\']);
        if literal {
            return Some(text.to_string());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SmolLM2-135M-Instruct's template, as in its GGUF.
    const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    /// The start of Qwen2.5's template (tools branch first, `\n` written as an escape).
    const QWEN25: &str = r"{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}";

    #[test]
    fn smollm2_prompt() {
        let t = ChatTemplate::detect(SMOLLM2).unwrap();
        assert_eq!(
            t.prompt("What is 2+2?"),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn system_and_user_turns_compose_the_prompt() {
        let t = ChatTemplate::detect(SMOLLM2).unwrap();
        let (open, close) = t.system_turn();
        let system = "You are a helpful AI assistant named SmolLM, trained by Hugging Face";
        assert_eq!(
            format!("{open}{system}{close}{}", t.user_turn("What is 2+2?")),
            t.prompt("What is 2+2?")
        );
    }

    #[test]
    fn qwen25_prompt() {
        let t = ChatTemplate::detect(QWEN25).unwrap();
        assert_eq!(
            t.prompt("hi"),
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn chatml_without_default_system() {
        let t = ChatTemplate::detect("{% for m in messages %}{{'<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}").unwrap();
        assert_eq!(
            t,
            ChatTemplate::ChatMl {
                default_system: None
            }
        );
        assert_eq!(
            t.prompt("x"),
            "<|im_start|>user\nx<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn other_families_are_refused() {
        let llama3 = "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>' }}";
        assert!(matches!(
            ChatTemplate::detect(llama3),
            Err(LmError::Unsupported(_))
        ));
    }
}
