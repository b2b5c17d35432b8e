//! The general path for byte-level BPE GGUFs whose pre-tokenizer has no native implementation.
//!
//! A HF `tokenizers` pipeline is built from the GGUF's own vocabulary and merges: the
//! pre-tokenizer is the list of split regexes that llama.cpp uses for the GGUF's
//! `tokenizer.ggml.pre` name, each applied in turn to the pieces the previous one left (a match
//! and the text between matches each become a piece, as in llama.cpp's `unicode_regex_split`),
//! then byte-level spelling, then BPE. Special tokens are cut out before this, by the same code
//! as on the native path.
//!
//! The regexes run on `fancy-regex` (lookahead included), so the fallback is slower than the
//! native lookahead-free path; the native path stays for `smollm` and `qwen2`.
//!
//! Names llama.cpp does not know are refused (llama.cpp refuses them too): their split rules
//! are unknown, and guessing GPT-2's would tokenize differently from the model's training. A
//! GGUF without `tokenizer.ggml.pre` gets llama.cpp's `default` rules, as llama.cpp does.

use tokenizers::models::bpe::{BPE, Merges, Vocab};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{SplitDelimiterBehavior, Tokenizer as HfTokenizer};

use crate::error::{LmError, Result};

/// GPT-2's word regex as llama.cpp writes it (without the trailing `|\s+`: the text it would
/// match is left between matches and becomes a piece anyway).
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";

/// Llama 3's word regex, with its case-insensitive contractions spelled out in ASCII (as
/// llama.cpp does: `(?i:)` would also fold `ſ` and the Kelvin sign).
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Qwen2's word regex (Llama 3's with single digits).
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The split rules of one family of pre-tokenizer names.
struct Rules {
    /// The `tokenizer.ggml.pre` names that use these rules.
    names: &'static [&'static str],
    /// Regexes applied in order; each splits the pieces the previous ones left.
    regexes: &'static [&'static str],
    /// A word that is a whole vocabulary token is that token, merges or not (llama.cpp's
    /// `ignore_merges`, HF's `BPE.ignore_merges`).
    ignore_merges: bool,
    /// Prompts start with BOS when the GGUF has no `tokenizer.ggml.add_bos_token` (llama.cpp's
    /// default for these names).
    add_bos: bool,
}

/// llama.cpp's `default` rules (for `default` and for a GGUF without a pre-tokenizer name).
const DEFAULT: Rules = Rules {
    names: &["default"],
    regexes: &[r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", "[0-9][0-9][0-9]"],
    ignore_merges: false,
    add_bos: false,
};

/// The pre-tokenizer names the fallback implements, with llama.cpp's rules for each.
const RULES: &[Rules] = &[
    DEFAULT,
    Rules {
        names: &[
            "llama3",
            "llama-v3",
            "llama-bpe",
            "falcon3",
            "falcon-h1",
            "pixtral",
            "midm-2.0",
            "lfm2",
        ],
        regexes: &[LLAMA3],
        ignore_merges: true,
        add_bos: true,
    },
    Rules {
        names: &["dbrx", "smaug-bpe", "chatglm-bpe", "glm4"],
        regexes: &[LLAMA3],
        ignore_merges: false,
        add_bos: false,
    },
    Rules {
        names: &[
            "gpt-2",
            "phi-2",
            "jina-es",
            "jina-de",
            "gigachat",
            "jina-v2-es",
            "jina-v2-de",
            "a.x-4.0",
            "mellum",
            "mpt",
            "olmo",
            "jais",
            "trillion",
            "granite-docling",
            "exaone4",
        ],
        regexes: &[GPT2],
        ignore_merges: false,
        add_bos: false,
    },
    Rules {
        names: &[
            "smollm",
            "starcoder",
            "refact",
            "command-r",
            "codeshell",
            "exaone",
            "minerva-7b",
        ],
        regexes: &[r"\p{N}", GPT2],
        ignore_merges: false,
        add_bos: false,
    },
    Rules {
        names: &["falcon"],
        regexes: &[r"[\p{P}\$\+<=>\^~\|`]+", GPT2, "[0-9][0-9][0-9]"],
        ignore_merges: false,
        add_bos: false,
    },
    Rules {
        names: &[
            "qwen2",
            "deepseek-r1-qwen",
            "stablelm2",
            "megrez",
            "hunyuan",
            "solar-open",
            "grok-2",
        ],
        regexes: &[QWEN2],
        ignore_merges: false,
        add_bos: false,
    },
    Rules {
        names: &["deepseek-coder"],
        regexes: &[
            "[\r\n]",
            r"\s?\p{L}+",
            r"\s?\p{P}+",
            "[一-龥ࠀ-一가-퟿]+",
            r"\p{N}",
        ],
        ignore_merges: false,
        add_bos: false,
    },
    Rules {
        names: &["deepseek-v3"],
        regexes: &[
            r"\p{N}{1,3}",
            "[一-龥぀-ゟ゠-ヿ]+",
            r##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"##,
        ],
        ignore_merges: false,
        add_bos: false,
    },
    Rules {
        names: &["poro-chat", "bloom", "gpt3-finnish"],
        regexes: &[r" ?[^(\s|.,!?…。，、।۔،)]+"],
        ignore_merges: false,
        add_bos: false,
    },
    Rules {
        names: &["viking"],
        regexes: &[r" ?[^(\s|.,!?…。，、।۔،)]+", r"\p{N}"],
        ignore_merges: false,
        add_bos: false,
    },
    Rules {
        names: &["tekken"],
        regexes: &[
            r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        ],
        ignore_merges: true,
        add_bos: true,
    },
    Rules {
        names: &["gpt-4o", "llama4"],
        regexes: &[
            r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        ],
        ignore_merges: false,
        add_bos: false,
    },
    Rules {
        names: &["seed-coder"],
        regexes: &[
            r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+",
        ],
        ignore_merges: false,
        add_bos: false,
    },
];

/// Whether prompts start with BOS for a GGUF without `tokenizer.ggml.add_bos_token`, by its
/// pre-tokenizer name (llama.cpp's defaults: yes for the Llama 3 and Tekken families).
pub(crate) fn adds_bos_by_default(pre: Option<&str>) -> bool {
    pre.and_then(|name| RULES.iter().find(|r| r.names.contains(&name)))
        .is_some_and(|r| r.add_bos)
}

/// The pre-tokenizer names the fallback knows, for error messages.
pub(crate) fn known_names() -> Vec<&'static str> {
    RULES.iter().flat_map(|r| r.names.iter().copied()).collect()
}

/// A byte-level BPE pipeline of HF `tokenizers` for one GGUF vocabulary.
pub(crate) struct Fallback {
    pipeline: HfTokenizer,
}

impl Fallback {
    /// Builds the pipeline for pre-tokenizer `pre` (`None`: the GGUF names none) from the
    /// GGUF's tokens as spelled, the merges whose three tokens all exist (in rank order), and
    /// the spelling of the bytes the vocabulary has no token for (dropped, with nothing merged
    /// across them, as llama.cpp does).
    pub(crate) fn new(
        pre: Option<&str>,
        spelled: &[&str],
        merges: Merges,
        missing_bytes: &[char],
    ) -> Result<Fallback> {
        let rules = match pre {
            None => &DEFAULT,
            Some(name) => RULES
                .iter()
                .find(|r| r.names.contains(&name))
                .ok_or_else(|| unknown(name))?,
        };
        let vocab: Vocab = spelled
            .iter()
            .enumerate()
            .map(|(id, s)| ((*s).to_string(), id as u32))
            .collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .ignore_merges(rules.ignore_merges)
            .build()
            .map_err(|e| LmError::Tokenizer(format!("building the BPE model: {e}")))?;

        let split = |pattern: String, behavior| -> Result<PreTokenizerWrapper> {
            Split::new(SplitPattern::Regex(pattern.clone()), behavior, false)
                .map(PreTokenizerWrapper::from)
                .map_err(|e| LmError::Tokenizer(format!("pre-tokenizer regex `{pattern}`: {e}")))
        };
        let mut steps = Vec::with_capacity(rules.regexes.len() + 2);
        for regex in rules.regexes {
            steps.push(split(
                (*regex).to_string(),
                SplitDelimiterBehavior::Isolated,
            )?);
        }
        steps.push(ByteLevel::new(false, false, false).into());
        if !missing_bytes.is_empty() {
            let alternatives: Vec<String> = missing_bytes
                .iter()
                .map(|c| regex::escape(c.encode_utf8(&mut [0; 4])))
                .collect();
            steps.push(split(
                alternatives.join("|"),
                SplitDelimiterBehavior::Removed,
            )?);
        }
        let mut pipeline = HfTokenizer::new(bpe);
        pipeline.with_pre_tokenizer(Some(Sequence::new(steps)));
        Ok(Fallback { pipeline })
    }

    /// Appends the ids of `text` (plain text: special tokens are cut out by the caller).
    pub(crate) fn encode(&self, text: &str, out: &mut Vec<u32>) {
        if text.is_empty() {
            return;
        }
        // The pipeline has no normalizer, no added tokens, no unknown token and no
        // post-processor, so nothing in it returns an error: even a regex that hits
        // fancy-regex's backtrack limit only ends that split (the rest stays one piece).
        let encoding = self
            .pipeline
            .encode_fast(text, false)
            .expect("the fallback tokenizer pipeline cannot fail on plain text");
        out.extend_from_slice(encoding.get_ids());
    }
}

fn unknown(name: &str) -> LmError {
    LmError::Unsupported(format!(
        "tokenizer pre-tokenizer `{name}` (natively supported: smollm, qwen2; through the \
         general path: {})",
        known_names().join(", ")
    ))
}
