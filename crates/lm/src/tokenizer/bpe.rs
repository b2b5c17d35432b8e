//! Byte-pair encoding of one pre-tokenized word.
//!
//! A word starts as one symbol per byte (each byte has its own token in a byte-level
//! vocabulary) and adjacent pairs are merged, lowest merge rank first and leftmost first
//! among equal ranks, until no adjacent pair has a merge. The symbols form a linked list over
//! a vector and candidate pairs wait in a binary heap, so a word of `n` bytes costs
//! `O(n log n)`; a heap entry made stale by an earlier merge is recognised on pop (its pair no
//! longer has that rank) and skipped.
//!
//! Some vocabularies lack a few bytes (SmolLM2 has no token for 0x04, 0xC0, 0xFF and a dozen
//! more, which occur in no text it was trained on). As in llama.cpp, such a byte is dropped
//! from the output and nothing merges across it.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

/// The merge table: for a pair of token ids, its rank and the id of the merged token.
pub(crate) struct Bpe {
    /// Token id of each single byte ([`NONE`] where the vocabulary has none).
    byte_ids: [u32; 256],
    merges: HashMap<u64, Merge, BuildHasherDefault<PairHasher>>,
}

#[derive(Clone, Copy, Debug)]
struct Merge {
    rank: u32,
    id: u32,
}

/// One symbol of a word being merged; `prev`/`next` link the live symbols.
#[derive(Clone, Copy)]
struct Symbol {
    id: u32,
    prev: u32,
    next: u32,
    alive: bool,
}

/// `prev`/`next` value for "no neighbour", and byte id for "no token".
pub(crate) const NONE: u32 = u32::MAX;

fn pair_key(left: u32, right: u32) -> u64 {
    (u64::from(left) << 32) | u64::from(right)
}

impl Bpe {
    /// A table from the id of each byte ([`NONE`] for none) and `(left, right, merged)` id triples in rank order
    /// (the first triple is applied first).
    pub(crate) fn new(
        byte_ids: [u32; 256],
        merges: impl IntoIterator<Item = (u32, u32, u32)>,
    ) -> Bpe {
        let mut table: HashMap<u64, Merge, BuildHasherDefault<PairHasher>> = HashMap::default();
        for (rank, (left, right, id)) in merges.into_iter().enumerate() {
            let rank = u32::try_from(rank).unwrap_or(u32::MAX);
            // A pair listed twice keeps its first (best) rank, as in HF tokenizers.
            table
                .entry(pair_key(left, right))
                .or_insert(Merge { rank, id });
        }
        Bpe {
            byte_ids,
            merges: table,
        }
    }

    fn merge_of(&self, left: u32, right: u32) -> Option<Merge> {
        self.merges.get(&pair_key(left, right)).copied()
    }

    /// Appends the token ids of `word` to `out`.
    pub(crate) fn encode_word(&self, word: &[u8], out: &mut Vec<u32>) {
        let missing = |b: &u8| self.byte_ids[usize::from(*b)] == NONE;
        if word.iter().any(missing) {
            for run in word.split(missing) {
                self.encode_run(run, out);
            }
        } else {
            self.encode_run(word, out);
        }
    }

    /// [`Bpe::encode_word`] of bytes that all have tokens.
    fn encode_run(&self, word: &[u8], out: &mut Vec<u32>) {
        match word {
            [] => return,
            [byte] => {
                out.push(self.byte_ids[usize::from(*byte)]);
                return;
            }
            _ => {}
        }
        let n = word.len() as u32;
        let mut symbols: Vec<Symbol> = word
            .iter()
            .enumerate()
            .map(|(i, &byte)| {
                let i = i as u32;
                Symbol {
                    id: self.byte_ids[usize::from(byte)],
                    prev: if i == 0 { NONE } else { i - 1 },
                    next: if i + 1 == n { NONE } else { i + 1 },
                    alive: true,
                }
            })
            .collect();
        // (rank, position of the left symbol): the heap pops the lowest rank, then leftmost.
        let mut heap: BinaryHeap<Reverse<(u32, u32)>> = BinaryHeap::with_capacity(word.len());
        for i in 0..word.len() - 1 {
            if let Some(merge) = self.merge_of(symbols[i].id, symbols[i + 1].id) {
                heap.push(Reverse((merge.rank, i as u32)));
            }
        }
        while let Some(Reverse((rank, left))) = heap.pop() {
            let l = left as usize;
            let right = symbols[l].next;
            if !symbols[l].alive || right == NONE {
                continue;
            }
            let r = right as usize;
            let Some(merge) = self.merge_of(symbols[l].id, symbols[r].id) else {
                continue;
            };
            if merge.rank != rank {
                continue; // stale: one side was merged into something else since
            }
            symbols[l].id = merge.id;
            symbols[l].next = symbols[r].next;
            symbols[r].alive = false;
            if symbols[r].next != NONE {
                let after = symbols[r].next as usize;
                symbols[after].prev = left;
                if let Some(m) = self.merge_of(merge.id, symbols[after].id) {
                    heap.push(Reverse((m.rank, left)));
                }
            }
            if symbols[l].prev != NONE {
                let before = symbols[l].prev;
                if let Some(m) = self.merge_of(symbols[before as usize].id, merge.id) {
                    heap.push(Reverse((m.rank, before)));
                }
            }
        }
        let mut at = 0u32;
        while at != NONE {
            let symbol = symbols[at as usize];
            out.push(symbol.id);
            at = symbol.next;
        }
    }
}

/// A fast hasher for the `u64` pair keys (multiply-xorshift; keys are not attacker-chosen
/// in a way that matters: they come from the model's own merge list).
#[derive(Default)]
pub(crate) struct PairHasher(u64);

impl Hasher for PairHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, key: u64) {
        let x = (self.0 ^ key).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = x ^ (x >> 29);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy vocabulary: ids 0..256 are the bytes, then merged tokens.
    fn toy(merges: &[(&str, &str)]) -> (Bpe, Vec<Vec<u8>>) {
        let mut tokens: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
        let mut triples = Vec::new();
        for (left, right) in merges {
            let find =
                |t: &[u8], tokens: &[Vec<u8>]| tokens.iter().position(|x| x == t).unwrap() as u32;
            let l = find(left.as_bytes(), &tokens);
            let r = find(right.as_bytes(), &tokens);
            let merged = [left.as_bytes(), right.as_bytes()].concat();
            let id = match tokens.iter().position(|x| *x == merged) {
                Some(id) => id as u32,
                None => {
                    tokens.push(merged);
                    tokens.len() as u32 - 1
                }
            };
            triples.push((l, r, id));
        }
        let byte_ids = std::array::from_fn(|b| b as u32);
        (Bpe::new(byte_ids, triples), tokens)
    }

    /// Plain BPE as first written: repeatedly merge the best-ranked leftmost pair.
    fn naive(word: &[u8], merges: &[(&str, &str)]) -> Vec<Vec<u8>> {
        let mut parts: Vec<Vec<u8>> = word.iter().map(|&b| vec![b]).collect();
        loop {
            let best = (0..parts.len().saturating_sub(1))
                .filter_map(|i| {
                    merges
                        .iter()
                        .position(|(l, r)| parts[i] == l.as_bytes() && parts[i + 1] == r.as_bytes())
                        .map(|rank| (rank, i))
                })
                .min();
            let Some((_, i)) = best else { return parts };
            let right = parts.remove(i + 1);
            parts[i].extend(right);
        }
    }

    fn pieces(bpe: &Bpe, tokens: &[Vec<u8>], word: &str) -> Vec<Vec<u8>> {
        let mut ids = Vec::new();
        bpe.encode_word(word.as_bytes(), &mut ids);
        ids.iter().map(|&id| tokens[id as usize].clone()).collect()
    }

    #[test]
    fn merges_follow_rank_then_position() {
        let merges = [
            ("a", "a"),
            ("b", "c"),
            ("aa", "a"),
            ("a", "bc"),
            ("aa", "aa"),
        ];
        let (bpe, tokens) = toy(&merges);
        for word in [
            "aaaa",
            "aaa",
            "abc",
            "aabc",
            "aaaaaaa",
            "bcbca",
            "x",
            "abcaaabcaa",
        ] {
            assert_eq!(
                pieces(&bpe, &tokens, word),
                naive(word.as_bytes(), &merges),
                "{word}"
            );
        }
    }

    #[test]
    fn random_words_match_naive_bpe() {
        let merges = [
            ("a", "b"),
            ("b", "a"),
            ("ab", "a"),
            ("a", "a"),
            ("ba", "b"),
            ("aa", "b"),
            ("ab", "ab"),
            ("b", "b"),
            ("aba", "b"),
            ("bb", "a"),
            ("c", "a"),
            ("ca", "b"),
        ];
        let (bpe, tokens) = toy(&merges);
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..2000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = 1 + (state % 14) as usize;
            let word: String = (0..len)
                .map(|i| ['a', 'b', 'c'][((state >> (2 * i + 8)) % 3) as usize])
                .collect();
            assert_eq!(
                pieces(&bpe, &tokens, &word),
                naive(word.as_bytes(), &merges),
                "{word}"
            );
        }
    }
}
