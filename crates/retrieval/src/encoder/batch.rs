//! Length-bucketed batches for the passage path: which texts share a forward pass
//! ([`plan`]), and one padded forward pass with masked pooling ([`Padded`]).
//!
//! Why: one text at a time, every matmul of the encoder is `tokens × 384` by `384 × 1536` or
//! smaller, too thin for the GEMM kernels to reach their speed, and a layer's dozen small
//! tensor ops cost as much again in overhead. Stacking texts of similar length multiplies the
//! rows of every projection while padding stays small, because the texts are sorted by token
//! count before they are cut into batches (see the measured numbers in the encoder's module
//! docs).
//!
//! Identity: the plan depends only on the token counts of the call's texts and their
//! positions (a stable sort, then a greedy cut), so the same call gives the same batches and
//! the same bits, whatever the thread count; a text's embedding may differ in the last bits
//! from the one it gets alone or in another call. Queries never come here.

use candle_core::{Device, Tensor};

use super::pipeline::Pipeline;

/// At most this many texts share a forward pass.
pub(crate) const MAX_TEXTS: usize = 16;

/// At most this many token slots (texts × the longest text's tokens, padding included) share
/// a forward pass.
pub(crate) const MAX_SLOTS: usize = 2048;

/// The batches of a call whose texts have `lens` tokens: indices into `lens`, each batch in
/// ascending token count and the batches in ascending order of their longest text. Texts are
/// sorted by token count (ties keep the caller's order), then cut greedily: a batch grows
/// while it has fewer than `max_texts` texts and its padded size (texts × longest) stays
/// within `max_slots`; a text longer than `max_slots` gets a batch of its own. Every index
/// appears exactly once.
pub(crate) fn plan(lens: &[usize], max_texts: usize, max_slots: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lens.len()).collect();
    order.sort_by_key(|&i| lens[i]);
    let mut batches: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    for i in order {
        // Ascending order: the newcomer is the batch's longest text.
        let fits = current.len() < max_texts.max(1) && (current.len() + 1) * lens[i] <= max_slots;
        if !fits && !current.is_empty() {
            batches.push(std::mem::take(&mut current));
        }
        current.push(i);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

/// One batch of token sequences, right-padded to the longest with an attention mask.
pub(crate) struct Padded {
    /// `texts × width` token ids, padding with the model's pad id.
    pub ids: Tensor,
    /// `texts × width`, 1 for real tokens, 0 for padding.
    pub mask: Tensor,
    /// Real tokens of each text.
    pub lens: Vec<usize>,
    /// Tokens per row (the longest text's).
    pub width: usize,
}

impl Padded {
    /// The sequences `seqs`, right-padded with `pad_id`.
    pub fn new(seqs: &[&[u32]], pad_id: u32, device: &Device) -> candle_core::Result<Padded> {
        let width = seqs.iter().map(|s| s.len()).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(seqs.len() * width);
        let mut mask = Vec::with_capacity(seqs.len() * width);
        for s in seqs {
            ids.extend_from_slice(s);
            ids.resize(ids.len() + width - s.len(), pad_id);
            mask.extend((0..width).map(|t| u32::from(t < s.len())));
        }
        let shape = (seqs.len(), width);
        Ok(Padded {
            ids: Tensor::from_vec(ids, shape, device)?,
            mask: Tensor::from_vec(mask, shape, device)?,
            lens: seqs.iter().map(|s| s.len()).collect(),
            width,
        })
    }

    /// One embedding per text from the last hidden states `hidden` (`texts × width × dim`
    /// floats, row-major): each text pooled over its real tokens only, exactly as
    /// [`Pipeline::pool`] pools an unpadded sequence.
    pub fn pool(&self, hidden: &[f32], dim: usize, pipeline: &Pipeline) -> Vec<Vec<f32>> {
        let row = self.width * dim;
        self.lens
            .iter()
            .enumerate()
            .map(|(i, &len)| {
                let start = i * row;
                let real = hidden.get(start..start + len * dim).unwrap_or(&[]);
                pipeline.pool(real, dim)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(lens: &[usize], max_texts: usize, max_slots: usize) -> Vec<Vec<usize>> {
        let batches = plan(lens, max_texts, max_slots);
        let mut seen: Vec<usize> = batches.concat();
        seen.sort_unstable();
        assert_eq!(seen, (0..lens.len()).collect::<Vec<_>>(), "{batches:?}");
        for b in &batches {
            assert!(!b.is_empty());
            let longest = b.iter().map(|&i| lens[i]).max().unwrap();
            assert!(
                b.len() == 1 || (b.len() <= max_texts && b.len() * longest <= max_slots),
                "{b:?} of {lens:?}"
            );
            assert!(
                b.windows(2)
                    .all(|w| (lens[w[0]], w[0]) < (lens[w[1]], w[1]))
            );
        }
        batches
    }

    #[test]
    fn plans_sort_by_length_and_respect_the_limits() {
        assert!(plan(&[], 4, 100).is_empty());
        assert_eq!(check(&[5, 3, 5, 1], 2, 100), vec![vec![3, 1], vec![0, 2]]);
        // Slots: 3 texts of 30 fit 100, a fourth would not.
        assert_eq!(
            check(&[30, 30, 30, 30, 10], 8, 100),
            vec![vec![4, 0, 1], vec![2, 3]]
        );
        // A text longer than the slot budget goes alone.
        assert_eq!(check(&[500, 2, 3], 8, 100), vec![vec![1, 2], vec![0]]);
        let lens: Vec<usize> = (0..1000).map(|i| (i * 7919) % 257 + 2).collect();
        let batches = check(&lens, MAX_TEXTS, MAX_SLOTS);
        assert_eq!(batches, plan(&lens, MAX_TEXTS, MAX_SLOTS));
        // Degenerate limits still cover every text, one per batch.
        assert_eq!(check(&[3, 1], 0, 0), vec![vec![1], vec![0]]);
    }

    #[test]
    fn padding_and_masked_pooling() {
        let padded = Padded::new(&[&[7, 8, 9], &[5]], 0, &Device::Cpu).unwrap();
        assert_eq!(padded.width, 3);
        assert_eq!(
            padded.ids.to_vec2::<u32>().unwrap(),
            vec![vec![7, 8, 9], vec![5, 0, 0]]
        );
        assert_eq!(
            padded.mask.to_vec2::<u32>().unwrap(),
            vec![vec![1, 1, 1], vec![1, 0, 0]]
        );
        let p = Pipeline {
            normalise: false,
            ..Pipeline::default()
        };
        // Two texts × 3 tokens × dim 2; the padding rows of the second hold junk.
        let hidden = [
            1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 9.0, 99.0, 99.0, -99.0, 0.0,
        ];
        assert_eq!(
            padded.pool(&hidden, 2, &p),
            vec![vec![3.0, 4.0], vec![8.0, 9.0]]
        );
    }
}
