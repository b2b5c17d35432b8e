//! Growing a knowledge base to N passages for scale experiments (`--pad-to N`).
//!
//! The paper's retriever searches 21M Wikipedia passages; ours has 10k. Padding adds synthetic
//! passages built from the real ones, so that retrieval costs what it costs at scale while
//! every document still has text for the LM. Padding passage `id` (ids after the real ones)
//! draws [`SOURCES`] real passages from a seeded hash of `id`, and takes one sentence of each:
//! its text reads like Wikipedia (BM25 sees real term statistics) and a dense index can give it
//! a vector near its sources' ([`Padding::sources`]). Everything is a pure function of
//! `(seed, id)`: nothing is stored, and two builds with the same seed agree.
//!
//! An index that holds padding says so in its manifest ([`Padding::describe`]).

use serde::{Deserialize, Serialize};

use crate::corpus::{Corpus, Passage};
use crate::error::{Result, RetrievalError};

/// How many real passages each padding passage is made from.
pub const SOURCES: usize = 3;

/// The default seed of `--pad-to`.
pub const DEFAULT_SEED: u64 = 0x5eed_2024;

/// A rule that extends a corpus of `real` passages to `total` ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Padding {
    first: u32,
    total: usize,
    real: usize,
    seed: u64,
}

impl Padding {
    /// Padding of `corpus` up to `total` passages, numbered after the real ones. `total`
    /// below the corpus size is an error.
    pub fn new(corpus: &Corpus, total: usize, seed: u64) -> Result<Padding> {
        let real = corpus.len();
        if real == 0 || total < real {
            return Err(RetrievalError::BadIndexData {
                reason: format!("cannot pad a corpus of {real} passages to {total}"),
            });
        }
        let first = real as u32;
        if (first as u64) + ((total - real) as u64) > u64::from(u32::MAX) {
            return Err(RetrievalError::BadIndexData {
                reason: format!("padding to {total} passages overflows 32-bit ids"),
            });
        }
        Ok(Padding {
            first,
            total,
            real,
            seed,
        })
    }

    /// Number of passages after padding.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Number of padding passages.
    pub fn count(&self) -> usize {
        self.total - self.real
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The ids of the padding passages, in order.
    pub fn ids(&self) -> std::ops::Range<u32> {
        self.first..self.first + self.count() as u32
    }

    /// True when `id` is a padding passage.
    pub fn contains(&self, id: u32) -> bool {
        self.ids().contains(&id)
    }

    /// The rows (positions in corpus order) of the real passages padding passage `id` is made
    /// from. Panics when `id` is not a padding id.
    pub fn sources(&self, id: u32) -> [usize; SOURCES] {
        assert!(self.contains(id), "{id} is not a padding passage");
        let mut state = self.seed ^ u64::from(id).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        std::array::from_fn(|_| (splitmix64(&mut state) % self.real as u64) as usize)
    }

    /// Padding passage `id` (its corpus id is `pad-<id>`): titled after its first source,
    /// one sentence from each source.
    pub fn passage(&self, corpus: &Corpus, id: u32) -> Passage {
        let sources = self.sources(id).map(|row| {
            corpus.get(row as u32).unwrap_or_else(|| {
                panic!("padding source {row} is outside the corpus it was made for")
            })
        });
        let mut state = self.seed.rotate_left(17) ^ u64::from(id);
        let mut text = String::new();
        for source in &sources {
            let sentences: Vec<&str> = sentences(&source.text).collect();
            let pick = (splitmix64(&mut state) % sentences.len().max(1) as u64) as usize;
            if let Some(sentence) = sentences.get(pick) {
                if !text.is_empty() {
                    text.push(' ');
                }
                text.push_str(sentence);
            }
        }
        let [first, ..] = sources;
        Passage {
            doc: id,
            id: format!("pad-{id}"),
            title: first.title,
            text,
        }
    }

    /// How an index was padded, for manifests and reports.
    pub fn describe(&self) -> String {
        format!(
            "padded from {} real passages to {} with {} synthetic passages (ids {}..{}), each \
             one sentence from each of {SOURCES} real passages chosen by seed {:#x}",
            self.real,
            self.total,
            self.count(),
            self.first,
            self.first as u64 + self.count() as u64,
            self.seed
        )
    }
}

/// How an index was padded: written in its manifest, printed by every report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaddingRecord {
    /// [`Padding::describe`] and how the vectors were made.
    pub description: String,
    /// Passages of the real corpus.
    pub real: usize,
    /// Passages after padding.
    pub total: usize,
    /// The padding seed.
    pub seed: u64,
    /// Noise length relative to the mean of the source vectors.
    pub noise: f32,
}

// `noise` is finite (checked where records are made and loaded), so equality is an equivalence.
impl Eq for PaddingRecord {}

impl PaddingRecord {
    /// The record of `padding` with vectors made with `noise`.
    pub fn new(padding: &Padding, noise: f32) -> PaddingRecord {
        PaddingRecord {
            description: format!(
                "{}; vectors: normalize(mean of the sources' vectors + seeded uniform noise of \
                 relative length {noise})",
                padding.describe()
            ),
            real: padding.total() - padding.count(),
            total: padding.total(),
            seed: padding.seed(),
            noise,
        }
    }
}

/// The sentences of `text`: split after '.', '!' or '?' followed by a space.
fn sentences(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text.trim();
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = rest
            .match_indices(['.', '!', '?'])
            .map(|(i, _)| i + 1)
            .find(|&i| rest[i..].starts_with(' '))
            .unwrap_or(rest.len());
        let (sentence, tail) = rest.split_at(end);
        rest = tail.trim_start();
        Some(sentence)
    })
}

/// One step of the splitmix64 generator.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus() -> Corpus {
        Corpus::from_parts((0..5).map(|i| {
            (
                format!("p{i}"),
                format!("T{i}"),
                format!("First of {i}. Second of {i}! Third of {i}? Dr.Who"),
            )
        }))
        .unwrap()
    }

    #[test]
    fn splits_sentences() {
        let s: Vec<&str> = sentences("A b. C d! E? F.G end").collect();
        assert_eq!(s, ["A b.", "C d!", "E?", "F.G end"]);
        assert_eq!(sentences("  ").count(), 0);
    }

    #[test]
    fn padding_is_deterministic_and_after_real_ids() {
        let c = corpus();
        let p = Padding::new(&c, 25, 7).unwrap();
        assert_eq!(p.ids(), 5..25);
        assert_eq!(p.count(), 20);
        for id in p.ids() {
            let a = p.passage(&c, id);
            assert_eq!(a, p.passage(&c, id));
            assert_eq!(a.doc, id);
            assert_eq!(a.id, format!("pad-{id}"));
            assert!(!a.text.is_empty());
            let first = c.get(p.sources(id)[0] as u32).unwrap();
            assert_eq!(a.title, first.title);
            let source_text: String = p
                .sources(id)
                .map(|r| c.get(r as u32).unwrap().text)
                .join(" ");
            assert!(a.text.split(' ').all(|w| source_text.contains(w)), "{a:?}");
        }
        let other = Padding::new(&c, 25, 8).unwrap();
        assert!(p.ids().any(|id| p.sources(id) != other.sources(id)));
    }

    #[test]
    fn rejects_shrinking() {
        assert!(Padding::new(&corpus(), 4, 1).is_err());
        assert!(Padding::new(&corpus(), 5, 1).unwrap().count() == 0);
    }
}
