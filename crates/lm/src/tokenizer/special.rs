//! Finding special tokens (`<|im_start|>`, `<|endoftext|>`, …) in text.
//!
//! Special tokens are matched whole, before pre-tokenization, and the text between them is
//! encoded as usual. Matching is leftmost-longest, as HF tokenizers does: the earliest
//! occurrence wins, and among tokens that start at the same place the longest.

/// A piece of text cut at special tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Piece<'t> {
    /// Ordinary text, to pre-tokenize and BPE-encode.
    Text(&'t str),
    /// A special token, by id.
    Special(u32),
}

/// A set of special tokens to cut text at.
#[derive(Clone, Debug, Default)]
pub(crate) struct Specials {
    /// `(text, id)`, longest text first.
    tokens: Vec<(String, u32)>,
}

impl Specials {
    pub(crate) fn new(mut tokens: Vec<(String, u32)>) -> Specials {
        tokens.retain(|(text, _)| !text.is_empty());
        tokens.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));
        Specials { tokens }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Calls `piece` with the pieces of `text` in order (empty text pieces are left out).
    pub(crate) fn split<'t>(&self, text: &'t str, mut piece: impl FnMut(Piece<'t>)) {
        // Next occurrence of each token at or after `cursor` (None: no more in the text).
        let mut next: Vec<Option<usize>> = self
            .tokens
            .iter()
            .map(|(t, _)| text.find(t.as_str()))
            .collect();
        let mut cursor = 0;
        loop {
            let mut best: Option<(usize, usize)> = None; // (position, token index)
            for (i, (token, _)) in self.tokens.iter().enumerate() {
                if let Some(at) = next[i]
                    && at < cursor
                {
                    next[i] = text[cursor..].find(token.as_str()).map(|p| p + cursor);
                }
                if let Some(at) = next[i]
                    && best.is_none_or(|(b, _)| at < b)
                {
                    best = Some((at, i));
                }
            }
            let Some((at, i)) = best else { break };
            if at > cursor {
                piece(Piece::Text(&text[cursor..at]));
            }
            let (token, id) = &self.tokens[i];
            piece(Piece::Special(*id));
            cursor = at + token.len();
        }
        if cursor < text.len() {
            piece(Piece::Text(&text[cursor..]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(specials: &Specials, text: &str) -> Vec<String> {
        let mut out = Vec::new();
        specials.split(text, |p| {
            out.push(match p {
                Piece::Text(t) => format!("T:{t}"),
                Piece::Special(id) => format!("S:{id}"),
            })
        });
        out
    }

    #[test]
    fn cuts_at_leftmost_longest() {
        let specials = Specials::new(vec![
            ("<|im_start|>".into(), 1),
            ("<|im_end|>".into(), 2),
            ("<a>".into(), 3),
            ("<a><b>".into(), 4),
        ]);
        assert_eq!(
            split(&specials, "<|im_start|>user\nhi<|im_end|>\n"),
            ["S:1", "T:user\nhi", "S:2", "T:\n"]
        );
        assert_eq!(
            split(&specials, "x<a><b><a>y"),
            ["T:x", "S:4", "S:3", "T:y"]
        );
        assert_eq!(split(&specials, "<|im_end|><|im_end|>"), ["S:2", "S:2"]);
        assert_eq!(split(&specials, "plain"), ["T:plain"]);
        assert_eq!(split(&specials, ""), Vec::<String>::new());
        assert_eq!(split(&specials, "<|im_en"), ["T:<|im_en"]);
    }
}
