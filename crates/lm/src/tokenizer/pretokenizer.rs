//! Pre-tokenization: cutting text into the words that BPE merges within.
//!
//! A GGUF names its pre-tokenizer in `tokenizer.ggml.pre`; each name stands for the regex the
//! model's `tokenizer.json` used. Two are implemented natively (others go through the general
//! path, `fallback`):
//!
//! - `smollm`: every digit is a word of its own (HF `Digits(individual_digits)`), then GPT-2's
//!   regex runs over the text between digits.
//! - `qwen2`: Qwen2's regex (letters may carry one leading non-letter, digits one by one,
//!   newline runs kept together).
//!
//! Both regexes end in `\s+(?!\S)|\s+`, a lookahead the `regex` crate lacks. A backtracking
//! engine is several times slower, so the lookahead is replaced by a rule applied to the match:
//! a whitespace run matched by the final `\s+` that is followed by more text gives back its
//! last character (which then starts the next word, e.g. the space of `" word"`). The tests
//! check this against the original regexes run by `fancy-regex`.

use regex::Regex;

/// GPT-2's word regex (as in HF `ByteLevel`), without its `\s+(?!\S)` alternative.
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+";

/// Qwen2's word regex (from its `tokenizer.json`), without its `\s+(?!\S)` alternative.
const QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+";

/// Which regex family a [`PreTokenizer`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    /// Digits apart, then GPT-2's regex.
    SmolLm,
    /// Qwen2's regex.
    Qwen2,
}

/// Cuts text into BPE words; built once per tokenizer (the regex is compiled here only).
#[derive(Clone, Debug)]
pub(crate) struct PreTokenizer {
    family: Family,
    words: Regex,
}

impl PreTokenizer {
    /// The native pre-tokenizer for the name a GGUF gives in `tokenizer.ggml.pre`, if there
    /// is one.
    pub(crate) fn native(name: &str) -> Option<PreTokenizer> {
        let (family, pattern) = match name {
            "smollm" => (Family::SmolLm, GPT2),
            "qwen2" => (Family::Qwen2, QWEN2),
            _ => return None,
        };
        let words = Regex::new(pattern).expect("the built-in pre-tokenizer regexes are valid");
        Some(PreTokenizer { family, words })
    }

    /// Calls `word` with each word of `text`, in order; the words concatenate to `text`.
    pub(crate) fn split<'t>(&self, text: &'t str, mut word: impl FnMut(&'t str)) {
        match self.family {
            Family::Qwen2 => self.split_segment(text, &mut word),
            Family::SmolLm => {
                let mut start = 0;
                for (at, c) in text.char_indices() {
                    if c.is_numeric() {
                        self.split_segment(&text[start..at], &mut word);
                        let end = at + c.len_utf8();
                        word(&text[at..end]);
                        start = end;
                    }
                }
                self.split_segment(&text[start..], &mut word);
            }
        }
    }

    /// Runs the word regex over one segment, whose end counts as the end of the text.
    fn split_segment<'t>(&self, segment: &'t str, word: &mut impl FnMut(&'t str)) {
        let mut pos = 0;
        while pos < segment.len() {
            let Some(found) = self.words.find_at(segment, pos) else {
                word(&segment[pos..]);
                return;
            };
            if found.start() > pos {
                // Unreachable with these regexes (every character matches something); kept
                // so that no text is ever dropped.
                word(&segment[pos..found.start()]);
            }
            let mut end = found.end();
            if end < segment.len() && self.is_final_whitespace(found.as_str()) {
                // `\s+(?!\S)`: a run followed by a non-space keeps its last character back.
                let last = found.as_str().chars().next_back().map_or(0, char::len_utf8);
                if found.len() > last {
                    end -= last;
                }
            }
            word(&segment[found.start()..end]);
            pos = end;
        }
    }

    /// True if `matched` can only have come from the final `\s+` alternative (the one that
    /// stands for `\s+(?!\S)|\s+`). In Qwen2's regex a whitespace match that ends in a line
    /// break came from `\s*[\r\n]+` instead: `\s+` only wins where the run has no line break.
    fn is_final_whitespace(&self, matched: &str) -> bool {
        let all_space = matched.chars().all(char::is_whitespace);
        match self.family {
            Family::SmolLm => all_space,
            Family::Qwen2 => all_space && !matched.contains(['\r', '\n']),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The regexes exactly as the models' `tokenizer.json` files give them (the oracle).
    const GPT2_ORIGINAL: &str =
        r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
    const QWEN2_ORIGINAL: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    fn oracle_split(re: &fancy_regex::Regex, text: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut pos = 0;
        for m in re.find_iter(text) {
            let m = m.unwrap();
            if m.start() > pos {
                out.push(text[pos..m.start()].to_string());
            }
            out.push(m.as_str().to_string());
            pos = m.end();
        }
        if pos < text.len() {
            out.push(text[pos..].to_string());
        }
        out
    }

    /// The plain pre-tokenizer of a model: HF's regex (after `Digits(individual_digits)`
    /// for SmolLM2), run by a backtracking engine with the lookahead.
    struct Oracle {
        name: &'static str,
        regex: fancy_regex::Regex,
    }

    impl Oracle {
        fn new(name: &'static str) -> Oracle {
            let pattern = if name == "qwen2" {
                QWEN2_ORIGINAL
            } else {
                GPT2_ORIGINAL
            };
            Oracle {
                name,
                regex: fancy_regex::Regex::new(pattern).unwrap(),
            }
        }

        fn split(&self, text: &str) -> Vec<String> {
            if self.name == "qwen2" {
                return oracle_split(&self.regex, text);
            }
            let mut out = Vec::new();
            let mut start = 0;
            for (at, c) in text.char_indices() {
                if c.is_numeric() {
                    out.extend(oracle_split(&self.regex, &text[start..at]));
                    out.push(c.to_string());
                    start = at + c.len_utf8();
                }
            }
            out.extend(oracle_split(&self.regex, &text[start..]));
            out
        }
    }

    fn split(pre: &PreTokenizer, text: &str) -> Vec<String> {
        let mut out = Vec::new();
        pre.split(text, |w| out.push(w.to_string()));
        out
    }

    fn ours(name: &str, text: &str) -> Vec<String> {
        split(&PreTokenizer::native(name).unwrap(), text)
    }

    #[test]
    fn known_splits() {
        assert_eq!(
            ours("smollm", "Hello world 1234  x\n\n"),
            [
                "Hello", " world", " ", "1", "2", "3", "4", " ", " x", "\n\n"
            ]
        );
        assert_eq!(
            ours("qwen2", "Hello  world 1234\n\n  x"),
            [
                "Hello", " ", " world", " ", "1", "2", "3", "4", "\n\n", " ", " x"
            ]
        );
        assert_eq!(ours("qwen2", "don'T"), ["don", "'T"]);
        assert_eq!(ours("smollm", "don'T"), ["don", "'", "T"]);
    }

    #[test]
    fn only_two_names_are_native() {
        assert!(PreTokenizer::native("llama3").is_none());
        assert!(PreTokenizer::native("smollm").is_some());
        assert!(PreTokenizer::native("qwen2").is_some());
    }

    /// The lookahead-free fast path equals the original regexes on random text made of the
    /// pieces where they differ: whitespace runs of every kind next to letters, digits,
    /// punctuation and line breaks.
    #[test]
    fn fast_path_matches_the_original_regexes() {
        const PIECES: &[&str] = &[
            "a", "Zq", "é", "日本", "1", "٣", "²", " ", "  ", "\t", "\n", "\r", "\u{a0}",
            "\u{3000}", "'s", "'S", "'ll", "'", "!", ".,", "😀", "\u{301}", "_", "-", "x",
        ];
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let models: Vec<(PreTokenizer, Oracle)> = ["smollm", "qwen2"]
            .into_iter()
            .map(|name| (PreTokenizer::native(name).unwrap(), Oracle::new(name)))
            .collect();
        for _ in 0..5000 {
            let len = (next() % 12) as usize;
            let text: String = (0..len)
                .map(|_| PIECES[(next() % PIECES.len() as u64) as usize])
                .collect();
            for (pre, oracle) in &models {
                assert_eq!(
                    split(pre, &text),
                    oracle.split(&text),
                    "{}: {text:?}",
                    oracle.name
                );
            }
        }
    }
}
