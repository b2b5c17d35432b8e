//! The tokenizer on the real models' GGUF files, checked against llama.cpp.
//!
//! Each model's tokenizer is rebuilt from its GGUF and compared token for token with
//! `scripts/reference_tokenize.py` (llama.cpp through llama-cpp-python, an independent
//! implementation) on the first 1,000 knowledge-base passages plus hand-picked hard cases.
//! The Python interpreter is `$RALMSPEC_PYTHON` (default `python3`); `scripts/test.sh` sets
//! it to a venv with `scripts/requirements.txt`. Without those packages the tests fail.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

use candle_core::quantized::gguf_file;
use ralmspec_assets::{Asset, Store};
use ralmspec_lm::Tokenizer;

/// How many knowledge-base passages are compared with the reference.
const PASSAGES: usize = 1000;

/// Texts where tokenizers tend to differ: digits, Unicode, whitespace runs, code,
/// contractions, special-token strings in plain text.
const HARD_CASES: &[&str] = &[
    "In 1999, 3.14159 people paid $1,000,000.00 for 12345678901234567890 items (about 42%).",
    "Ça va? Größe, naïve café, Ærøskøbing, İstanbul, ﬁne — “quotes” ‘single’ … ½ ² ³ Ⅻ ٣٤ ๓",
    "東京は日本の首都です。中文测试，한국어 텍스트, русский текст, ελληνικά, עברית, العربية",
    "Emoji: 🙂 👩‍👩‍👧 🇫🇷 👍🏽 ❤️ and a lone combining mark e\u{301} and \u{200b}zero width",
    "a  b   c\t\td\n\n\ne   \n  f  \r\n\r\ng \u{a0}h\u{3000}i\u{2028}j \u{85}k",
    "   leading and trailing spaces   ",
    "\n\n\n",
    " ",
    "fn main() {\n    let x: Vec<u32> = vec![1, 2, 3];\n    println!(\"{:?}\", x[0] + 42);\n}\n",
    "def f(a, b=2):\n\treturn a**b  # comment\n\nif __name__ == '__main__':\n    print(f(3))\n",
    "<html><body class=\"x\">&amp; &#39;</body></html> https://example.com/a_b?c=1&d=2#e",
    "I'm, you're, they'll, we've, he'd, it's, It'S, DON'T, 'tis, rock 'n' roll, O'Neill's",
    "<|im_start|>user\nhello<|im_end|>\n<|endoftext|><tool_call>{}</tool_call><|im_end",
    "MiXeD CaSe WORDS and snake_case and camelCase and kebab-case and SCREAMING_CASE",
    "x\u{0}y\u{1}z\u{7f}\u{1b}[0m tabs\tand\u{b}vertical\u{c}feed",
    // Bytes SmolLM2's vocabulary has no token for: dropped, without merging across them.
    "a\u{4}b\u{6}c \u{13}\u{14} d\u{16}\u{1d}e",
];

/// `text` without the characters `tok` has no token for (dropped by encoding).
fn encodable(tok: &Tokenizer, text: &str) -> String {
    text.chars()
        .filter(|c| !tok.encode(c.encode_utf8(&mut [0; 4])).is_empty())
        .collect()
}

struct Model {
    name: &'static str,
    path: PathBuf,
    tokenizer: Tokenizer,
}

fn store() -> Store {
    Store::from_env().expect("asset store location")
}

fn load(asset: Asset, name: &'static str) -> Model {
    let path = store().fetch(asset).expect("fetching the model");
    let mut file = std::fs::File::open(&path).expect("opening the GGUF");
    let content = gguf_file::Content::read(&mut file).expect("reading GGUF metadata");
    let tokenizer = Tokenizer::from_gguf(&content).expect("building the tokenizer");
    Model {
        name,
        path,
        tokenizer,
    }
}

fn smollm2() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| load(Asset::SmolLm2, "SmolLM2-135M-Instruct"))
}

fn qwen() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| load(Asset::Qwen25Coder05B, "Qwen2.5-Coder-0.5B-Instruct"))
}

/// The first [`PASSAGES`] knowledge-base passages by title, as `title\nextract`, then the
/// hard cases.
fn texts() -> &'static [String] {
    static TEXTS: OnceLock<Vec<String>> = OnceLock::new();
    TEXTS.get_or_init(|| {
        let path = store()
            .fetch(Asset::WikiKb)
            .expect("fetching the knowledge base");
        let raw = std::fs::read_to_string(&path).expect("reading the knowledge base");
        let kb: BTreeMap<String, serde_json::Value> =
            serde_json::from_str(&raw).expect("knowledge base JSON");
        let mut texts: Vec<String> = kb
            .values()
            .take(PASSAGES)
            .map(|entry| {
                let field = |k: &str| entry[k].as_str().unwrap_or_default().to_string();
                format!("{}\n{}", field("title"), field("extract"))
            })
            .collect();
        assert_eq!(
            texts.len(),
            PASSAGES,
            "the knowledge base has too few passages"
        );
        texts.extend(HARD_CASES.iter().map(|s| s.to_string()));
        texts
    })
}

/// The Python interpreter with llama-cpp-python (`$RALMSPEC_PYTHON`, default `python3`).
fn python() -> String {
    std::env::var("RALMSPEC_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// Runs the reference script on `texts` and returns its output lines.
fn reference(gguf: &Path, texts: &[String], mode: Option<&str>) -> Vec<String> {
    let dir = std::env::temp_dir().join(format!("ralmspec-tok-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // One file per call: tests run in parallel and may share a mode.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let input = dir.join(format!(
        "texts-{}-{}.jsonl",
        mode.unwrap_or("plain").trim_start_matches('-'),
        CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let mut file = std::fs::File::create(&input).unwrap();
    for text in texts {
        writeln!(file, "{}", serde_json::to_string(text).unwrap()).unwrap();
    }
    drop(file);
    let python = python();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/reference_tokenize.py");
    let mut command = Command::new(&python);
    command.arg(&script).arg(gguf).arg(&input);
    command.args(mode);
    let output = command.output().unwrap_or_else(|err| {
        panic!("cannot run the reference tokenizer with `{python}` ($RALMSPEC_PYTHON): {err}. Run scripts/test.sh, which installs scripts/requirements.txt into a venv and points RALMSPEC_PYTHON at it.")
    });
    let _ = std::fs::remove_file(&input);
    assert!(
        output.status.success(),
        "the reference tokenizer failed with `{python}` ($RALMSPEC_PYTHON): {}\nRun scripts/test.sh, which installs scripts/requirements.txt (llama-cpp-python) into a venv and points RALMSPEC_PYTHON at it.",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<String> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(
        lines.len(),
        texts.len(),
        "the reference printed one line per text"
    );
    lines
}

fn reference_ids(gguf: &Path, texts: &[String], mode: Option<&str>) -> Vec<Vec<u32>> {
    reference(gguf, texts, mode)
        .iter()
        .map(|line| serde_json::from_str(line).expect("a JSON list of ids"))
        .collect()
}

/// Describes where `ours` and `theirs` first differ, with the tokens around it.
fn divergence(tok: &Tokenizer, text: &str, ours: &[u32], theirs: &[u32]) -> String {
    let at = ours.iter().zip(theirs).take_while(|(a, b)| a == b).count();
    let show = |ids: &[u32]| -> String {
        let window = &ids[at.saturating_sub(3)..(at + 5).min(ids.len())];
        window
            .iter()
            .map(|&id| format!("{id}:{:?}", String::from_utf8_lossy(tok.token_bytes(id))))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut out = String::new();
    writeln!(out, "text: {text:?}").unwrap();
    writeln!(
        out,
        "first difference at token {at} (ours {} tokens, reference {}), after {:?}",
        ours.len(),
        theirs.len(),
        tok.decode(&ours[..at])
    )
    .unwrap();
    writeln!(out, "ours:      {}", show(ours)).unwrap();
    write!(out, "reference: {}", show(theirs)).unwrap();
    out
}

/// Encodes [`texts`] with `model` and with llama.cpp and asserts token-for-token equality.
fn matches_reference(model: &Model) {
    let texts = texts();
    let tok = &model.tokenizer;

    let start = Instant::now();
    let ours: Vec<Vec<u32>> = texts.iter().map(|t| tok.encode(t)).collect();
    let serial = start.elapsed();
    let start = Instant::now();
    let batch = tok.encode_batch(texts);
    let parallel = start.elapsed();
    assert_eq!(batch, ours, "encode_batch equals encode");
    let tokens: usize = ours.iter().map(Vec::len).sum();
    eprintln!(
        "{}: encoded {} texts ({tokens} tokens) in {:.1} ms: {:.0} texts/s on one thread, {:.0} texts/s with encode_batch",
        model.name,
        texts.len(),
        serial.as_secs_f64() * 1e3,
        texts.len() as f64 / serial.as_secs_f64(),
        texts.len() as f64 / parallel.as_secs_f64(),
    );

    let theirs = reference_ids(&model.path, texts, None);
    let differing: Vec<usize> = (0..texts.len()).filter(|&i| ours[i] != theirs[i]).collect();
    if let Some(&first) = differing.first() {
        panic!(
            "{}: {} of {} texts tokenize differently from llama.cpp; the first:\n{}",
            model.name,
            differing.len(),
            texts.len(),
            divergence(tok, &texts[first], &ours[first], &theirs[first])
        );
    }
    eprintln!(
        "{}: {} texts ({tokens} tokens) equal to llama.cpp",
        model.name,
        texts.len()
    );

    // Round trip on everything (lossless but for bytes without a token).
    for (text, ids) in texts.iter().zip(&ours) {
        assert_eq!(
            tok.decode(ids),
            encodable(tok, text),
            "{}: decode(encode(x)) == x",
            model.name
        );
    }
}

#[test]
fn smollm2_matches_llama_cpp_on_knowledge_base() {
    matches_reference(smollm2());
}

#[test]
fn qwen_matches_llama_cpp_on_knowledge_base() {
    matches_reference(qwen());
}

/// Chat prompts: the exact strings, the template rendered by jinja2, and their encoding with
/// special tokens equal to llama.cpp's.
fn chat_prompt_matches(model: &Model, system: &str) {
    let tok = &model.tokenizer;
    let users = [
        "What is the capital of France?".to_string(),
        "Write a haiku about 2 cats\nand 3 dogs.".to_string(),
    ];
    for user in &users {
        let expected = format!(
            "<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(tok.chat_prompt(user).unwrap(), expected, "{}", model.name);
    }
    let rendered: Vec<String> = reference(&model.path, &users, Some("--chat"))
        .iter()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let prompts: Vec<String> = users.iter().map(|u| tok.chat_prompt(u).unwrap()).collect();
    assert_eq!(
        prompts, rendered,
        "{}: chat_prompt equals the rendered template",
        model.name
    );

    let ours: Vec<Vec<u32>> = prompts.iter().map(|p| tok.encode_with_special(p)).collect();
    let theirs = reference_ids(&model.path, &prompts, Some("--special"));
    for i in 0..prompts.len() {
        assert!(
            ours[i] == theirs[i],
            "{}: encode_with_special differs from llama.cpp:\n{}",
            model.name,
            divergence(tok, &prompts[i], &ours[i], &theirs[i])
        );
    }
    let im_start = tok.token_id("<|im_start|>").unwrap();
    let im_end = tok.token_id("<|im_end|>").unwrap();
    assert_eq!(ours[0][0], im_start);
    assert_eq!(ours[0].iter().filter(|&&id| id == im_end).count(), 2);
}

/// Whole conversations (system, user and assistant turns, with and without a system message,
/// a system turn holding a document placeholder, text with template-looking characters) render
/// through the GGUF's template exactly as Python's jinja2 renders them, set up as transformers.
fn conversations_match_jinja2(model: &Model) {
    use ralmspec_lm::ChatMessage;
    let m = ChatMessage::new;
    let conversations: Vec<Vec<ChatMessage>> = vec![
        vec![m("user", "What is the capital of France?")],
        vec![
            m("system", "You answer in one sentence."),
            m("user", "Who wrote Hamlet?"),
            m("assistant", "William Shakespeare wrote Hamlet."),
            m("user", "When was it written?\nGive a year."),
        ],
        vec![
            m("user", "Hi"),
            m("assistant", "Hello! How can I help?"),
            m(
                "user",
                "{{ not a template }} {% raw %} 'quotes' \"and\" <|im_end|> text",
            ),
        ],
        vec![
            m("system", "\u{E000}\n\nBe brief."),
            m("user", "Tell me about the Nile."),
        ],
    ];
    let texts: Vec<String> = conversations
        .iter()
        .map(|c| serde_json::to_string(c).unwrap())
        .collect();
    let rendered: Vec<String> = reference(&model.path, &texts, Some("--conversation"))
        .iter()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let template = model.tokenizer.chat_template();
    for (conversation, expected) in conversations.iter().zip(&rendered) {
        assert_eq!(
            &template.render(conversation, true).unwrap(),
            expected,
            "{}: {conversation:?}",
            model.name
        );
    }
}

#[test]
fn smollm2_conversations_match_jinja2() {
    conversations_match_jinja2(smollm2());
}

#[test]
fn qwen_conversations_match_jinja2() {
    conversations_match_jinja2(qwen());
}

#[test]
fn smollm2_chat_prompt() {
    chat_prompt_matches(
        smollm2(),
        "You are a helpful AI assistant named SmolLM, trained by Hugging Face",
    );
}

#[test]
fn qwen_chat_prompt() {
    chat_prompt_matches(
        qwen(),
        "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
    );
}

#[test]
fn vocabulary_and_end_of_generation() {
    let smol = &smollm2().tokenizer;
    assert_eq!(smol.vocab_size(), 49_152);
    assert_eq!(smol.bos_id(), None, "SmolLM2 adds no BOS");
    assert_eq!(smol.eos_id(), 2);
    assert_eq!(smol.token_bytes(2), b"<|im_end|>");
    assert!(
        smol.is_eog(2) && smol.is_eog(0),
        "<|im_end|> and <|endoftext|> end a turn"
    );
    assert!(!smol.is_eog(1), "<|im_start|> does not");
    assert_eq!(smol.token_bytes(u32::MAX), b"");
    assert_eq!(
        smol.encode("\u{4}"),
        Vec::<u32>::new(),
        "SmolLM2 has no token for byte 0x04"
    );
    assert_eq!(smol.decode(&smol.encode("a\u{4}b")), "ab");

    let qwen = &qwen().tokenizer;
    assert_eq!(qwen.vocab_size(), 151_936);
    assert_eq!(qwen.bos_id(), None);
    assert_eq!(qwen.eos_id(), 151_645);
    for name in ["<|im_end|>", "<|endoftext|>"] {
        assert!(qwen.is_eog(qwen.token_id(name).unwrap()), "{name}");
    }
    assert!(!qwen.is_eog(qwen.token_id("<|im_start|>").unwrap()));
}

#[test]
fn special_tokens_are_split_only_when_asked() {
    for model in [smollm2(), qwen()] {
        let tok = &model.tokenizer;
        let text = "<|im_start|>user\nhi<|im_end|>\n<|endoftext|>";
        let plain = tok.encode(text);
        let special = tok.encode_with_special(text);
        let im_start = tok.token_id("<|im_start|>").unwrap();
        let im_end = tok.token_id("<|im_end|>").unwrap();
        let eot = tok.token_id("<|endoftext|>").unwrap();
        assert!(!plain.contains(&im_start) && !plain.contains(&im_end) && !plain.contains(&eot));
        let expected: Vec<u32> = [im_start]
            .into_iter()
            .chain(tok.encode("user\nhi"))
            .chain([im_end])
            .chain(tok.encode("\n"))
            .chain([eot])
            .collect();
        assert_eq!(special, expected, "{}", model.name);
        assert_eq!(tok.decode(&plain), text);
        assert_eq!(tok.decode(&special), text);
    }
}

#[test]
fn round_trip_on_tricky_strings() {
    let tricky = [
        "",
        " ",
        "  ",
        "\t\n\r",
        "a",
        "é",
        "日本語",
        "🙂",
        "👩‍👩‍👧",
        "e\u{301}",
        "\u{0}",
        "\u{10FFFF}",
        "1234567890",
        "x  \n  y",
        "'s'S's",
        "<|im_start|",
        "Ġ Ċ ĉ",
        "\u{FEFF}bom",
        "a\u{2028}b",
    ];
    for model in [smollm2(), qwen()] {
        let tok = &model.tokenizer;
        for text in tricky.iter().copied().chain(HARD_CASES.iter().copied()) {
            let ids = tok.encode(text);
            assert_eq!(
                tok.decode(&ids),
                encodable(tok, text),
                "{}: {text:?}",
                model.name
            );
        }
    }
}

#[test]
fn text_stream_holds_back_split_characters() {
    let text = "Zürich 東京 🙂👩‍👩‍👧 naïve — done";
    for model in [smollm2(), qwen()] {
        let tok = &model.tokenizer;
        let ids = tok.encode(text);
        let partial = ids
            .iter()
            .filter(|&&id| std::str::from_utf8(tok.token_bytes(id)).is_err())
            .count();
        assert!(
            partial > 0,
            "{}: some tokens end inside a character",
            model.name
        );
        let mut stream = tok.stream();
        let mut out = String::new();
        let mut held = 0;
        for &id in &ids {
            match stream.push(id) {
                Some(piece) => out.push_str(&piece),
                None => held += 1,
            }
        }
        out.push_str(&stream.finish());
        assert_eq!(out, text, "{}", model.name);
        assert!(
            held > 0,
            "{}: the stream held back incomplete characters",
            model.name
        );

        // Invalid and truncated bytes come out as U+FFFD, as in decode: a piece of a
        // character, then `x`, then the piece again.
        let piece = *ids
            .iter()
            .find(|&&id| std::str::from_utf8(tok.token_bytes(id)).is_err())
            .unwrap();
        let broken: Vec<u32> = [piece]
            .into_iter()
            .chain(tok.encode("x"))
            .chain([piece])
            .collect();
        let mut stream = tok.stream();
        let mut out: String = broken.iter().filter_map(|&id| stream.push(id)).collect();
        out.push_str(&stream.finish());
        assert_eq!(out, tok.decode(&broken), "{}", model.name);
        assert!(out.contains('\u{FFFD}'));
    }
}

// The general (fallback) path, for pre-tokenizers without a native implementation.

/// [`texts`] and words with a byte SmolLM2 has no token for inside a run that merges
/// (punctuation, spaces): the byte is dropped and nothing merges across it.
fn general_path_texts() -> Vec<String> {
    let mut all = texts().to_vec();
    all.extend(
        [
            "!\u{4}!",
            "a..\u{13}..b",
            "((\u{14}))",
            "   \u{16}   x",
            "--\u{1d}--\u{6}==",
        ]
        .map(String::from),
    );
    all
}

/// A copy of `src` in `dir` with its metadata edited by `edit` (tensors copied as they are).
fn rewritten(
    src: &Path,
    dir: &Path,
    name: &str,
    edit: impl FnOnce(&mut std::collections::HashMap<String, gguf_file::Value>),
) -> PathBuf {
    let mut file = std::fs::File::open(src).unwrap();
    let content = gguf_file::Content::read(&mut file).unwrap();
    let mut metadata = content.metadata.clone();
    edit(&mut metadata);
    let mut tensors = Vec::new();
    for name in content.tensor_infos.keys() {
        let tensor = content
            .tensor(&mut file, name, &candle_core::Device::Cpu)
            .unwrap();
        tensors.push((name.clone(), tensor));
    }
    let path = dir.join(name);
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let metadata: Vec<(&str, &gguf_file::Value)> =
        metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensors: Vec<(&str, &candle_core::quantized::QTensor)> =
        tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
    gguf_file::write(&mut out, &metadata, &tensors).unwrap();
    out.flush().unwrap();
    path
}

fn set_string(
    key: &str,
    value: &str,
) -> impl FnOnce(&mut std::collections::HashMap<String, gguf_file::Value>) {
    let (key, value) = (key.to_string(), value.to_string());
    move |metadata| {
        metadata.insert(key, gguf_file::Value::String(value));
    }
}

fn content_of(path: &Path) -> gguf_file::Content {
    gguf_file::Content::read(&mut std::fs::File::open(path).unwrap()).unwrap()
}

/// Forced through the general path, each model's tokenizer gives the native path's ids on
/// every text, plain and with special tokens; prints what the general path costs.
#[test]
fn fallback_equals_native_path() {
    let texts = &general_path_texts();
    for model in [smollm2(), qwen()] {
        let content = content_of(&model.path);
        let fallback =
            Tokenizer::from_gguf_with(&content, ralmspec_lm::TokenizerPath::Fallback).unwrap();
        assert!(fallback.uses_fallback() && !model.tokenizer.uses_fallback());
        let time = |tok: &Tokenizer| {
            let start = Instant::now();
            let ids: Vec<Vec<u32>> = texts.iter().map(|t| tok.encode(t)).collect();
            (ids, start.elapsed().as_secs_f64())
        };
        let (native_ids, native_s) = time(&model.tokenizer);
        let (fallback_ids, fallback_s) = time(&fallback);
        for (i, text) in texts.iter().enumerate() {
            if native_ids[i] != fallback_ids[i] {
                panic!(
                    "{}: the general path differs from the native one:\n{}",
                    model.name,
                    divergence(&fallback, text, &fallback_ids[i], &native_ids[i])
                );
            }
            assert_eq!(
                fallback.encode_with_special(text),
                model.tokenizer.encode_with_special(text),
                "{}: {text:?}",
                model.name
            );
        }
        let tokens: usize = native_ids.iter().map(Vec::len).sum();
        eprintln!(
            "{}: {} texts ({tokens} tokens) on one thread: native {:.1} ms, general path {:.1} ms ({:.1}x)",
            model.name,
            texts.len(),
            native_s * 1e3,
            fallback_s * 1e3,
            fallback_s / native_s
        );
    }
}

/// SmolLM2's GGUF relabelled with a name of each family of split rules the general path
/// implements (and with none, which llama.cpp reads as `default`) loads through the general
/// path and tokenizes as llama.cpp does with the same relabelled file. The second field says
/// whether the rules split the texts differently from SmolLM2's own `smollm` (the `starcoder`
/// family has the same rules).
#[test]
fn other_pre_tokenizers_match_llama_cpp() {
    let dir = tempfile::tempdir().unwrap();
    let texts = &general_path_texts();
    for (pre, differs) in [
        (None, true),
        (Some("default"), true),
        (Some("llama3"), true),
        (Some("dbrx"), true),
        (Some("gpt-2"), true),
        (Some("starcoder"), false),
        (Some("falcon"), true),
        (Some("deepseek-r1-qwen"), true),
        (Some("chatglm-bpe"), true),
        (Some("deepseek-coder"), true),
        (Some("deepseek-v3"), true),
        (Some("poro-chat"), true),
        (Some("viking"), true),
        (Some("tekken"), true),
        (Some("gpt-4o"), true),
        (Some("seed-coder"), true),
        (Some("grok-2"), true),
    ] {
        let label = pre.unwrap_or("no-pre");
        let path = rewritten(
            &smollm2().path,
            dir.path(),
            &format!("{label}.gguf"),
            |m| match pre {
                Some(pre) => set_string("tokenizer.ggml.pre", pre)(m),
                None => {
                    m.remove("tokenizer.ggml.pre");
                }
            },
        );
        let tok = Tokenizer::from_gguf(&content_of(&path)).unwrap();
        assert!(tok.uses_fallback(), "{label}");
        let theirs = reference_ids(&path, texts, None);
        let ours: Vec<Vec<u32>> = texts.iter().map(|t| tok.encode(t)).collect();
        let differing: Vec<usize> = (0..texts.len()).filter(|&i| ours[i] != theirs[i]).collect();
        if let Some(&first) = differing.first() {
            panic!(
                "SmolLM2 as `{label}`: {} of {} texts tokenize differently from llama.cpp; the first:\n{}",
                differing.len(),
                texts.len(),
                divergence(&tok, &texts[first], &ours[first], &theirs[first])
            );
        }
        let native = &smollm2().tokenizer;
        assert_eq!(
            texts
                .iter()
                .zip(&ours)
                .any(|(t, ids)| native.encode(t) != *ids),
            differs,
            "{label}: whether some text tokenizes differently from `smollm`"
        );
        let special = reference_ids(
            &path,
            &HARD_CASES.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            Some("--special"),
        );
        for (text, theirs) in HARD_CASES.iter().zip(special) {
            assert_eq!(
                tok.encode_with_special(text),
                theirs,
                "{label} --special: {text:?}"
            );
        }
        eprintln!(
            "SmolLM2 as `{label}`: {} texts equal to llama.cpp",
            texts.len()
        );
    }
    // The whole model loads with the general-path tokenizer.
    let path = rewritten(
        &smollm2().path,
        dir.path(),
        "llama3-lm.gguf",
        set_string("tokenizer.ggml.pre", "llama3"),
    );
    let lm = ralmspec_lm::Lm::open(&path).unwrap();
    assert!(lm.tokenizer.uses_fallback());
}

/// Without `tokenizer.ggml.add_bos_token`, a prompt starts with BOS exactly where llama.cpp
/// adds one by default (`llama3`: yes; `gpt-2`: no).
#[test]
fn default_bos_follows_llama_cpp() {
    let dir = tempfile::tempdir().unwrap();
    for (pre, bos) in [("llama3", true), ("gpt-2", false)] {
        let path = rewritten(
            &smollm2().path,
            dir.path(),
            &format!("{pre}-bos.gguf"),
            |m| {
                set_string("tokenizer.ggml.pre", pre)(m);
                m.remove("tokenizer.ggml.add_bos_token");
            },
        );
        let tok = Tokenizer::from_gguf(&content_of(&path)).unwrap();
        assert_eq!(tok.bos_id().is_some(), bos, "{pre}");
        let ours: Vec<u32> = tok
            .bos_id()
            .into_iter()
            .chain(tok.encode("Hello world"))
            .collect();
        let python = python();
        let out = Command::new(python)
            .arg("-c")
            .arg("import sys\nfrom llama_cpp import Llama\nllm = Llama(model_path=sys.argv[1], vocab_only=True, verbose=False)\nprint(llm.tokenize(b'Hello world', add_bos=True, special=False))")
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let theirs: Vec<u32> = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            ours, theirs,
            "{pre}: BOS and ids as llama.cpp's tokenize(add_bos=True)"
        );
    }
}

/// A pre-tokenizer name neither we nor llama.cpp know, an architecture other than llama and
/// qwen2, and a tokenizer model other than `gpt2` are errors naming what is unsupported.
#[test]
fn unsupported_pre_tokenizer_architecture_and_tokenizer_model_are_named() {
    let dir = tempfile::tempdir().unwrap();
    // SmolLM2's GGUF with one metadata string changed (the llama.* keys stay), and the error
    // loading it.
    let refused = |key: &str, value: &str| {
        let path = rewritten(
            &smollm2().path,
            dir.path(),
            &format!("{value}.gguf"),
            set_string(key, value),
        );
        match ralmspec_lm::Lm::open(&path) {
            Ok(_) => panic!("{key} = {value} loaded"),
            Err(e) => (path, e.to_string()),
        }
    };

    let (path, err) = refused("tokenizer.ggml.pre", "no-such-pre");
    assert!(
        err.contains("pre-tokenizer `no-such-pre`") && err.contains("llama3"),
        "{err}"
    );
    // llama.cpp refuses the name too.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/reference_tokenize.py");
    let out = Command::new(python())
        .arg(script)
        .arg(&path)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "llama.cpp loaded pre-tokenizer `no-such-pre`"
    );

    let (_, err) = refused("general.architecture", "mamba");
    assert!(
        err.contains("architecture `mamba`") && err.contains("llama, qwen2"),
        "{err}"
    );

    let (_, err) = refused("tokenizer.ggml.model", "llama");
    assert!(err.contains("tokenizer model `llama`"), "{err}");
}
