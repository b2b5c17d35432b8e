//! Choosing a token from the logits: greedy, or sampled in a way that keeps the identity
//! guarantee.
//!
//! RaLMSpec's answer equals the baseline's because every committed token is computed from the
//! same logits by the same function. Sampling keeps that true only if the random draw for a
//! token depends on nothing the engines do differently: not on how many draws came before
//! (speculated steps that were rolled back), not on a thread's RNG state. So the draw for the
//! token at answer position `p` is a pure function of `(seed, p)`: [`uniform`], a
//! counter-based generator (the SplitMix64 finaliser applied to the seed and the position;
//! written out here, ten lines, because a stateful RNG stream such as `rand`'s is exactly what
//! must be avoided, and a keyed hash needs no crate). A rollback that regenerates position `p`
//! with the same document sees the same logits and the same draw, hence the same token.
//!
//! The distribution is the usual one (as vLLM and llama.cpp apply it): logits divided by
//! `temperature`, softmax, the `top_k` most likely tokens kept, then the smallest set of the
//! most likely tokens whose probability reaches `top_p`; ties in likelihood go to the lower
//! token id, so the order is total. All arithmetic is in f64 over the f32 logits, in a fixed
//! order: bit-identical logits give a bit-identical choice.

use serde::Serialize;

/// How tokens are chosen. The default is greedy (arg-max, ties to the lowest id).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Sampling {
    /// Softmax temperature; 0 means greedy.
    pub temperature: f32,
    /// Nucleus sampling: keep the most likely tokens up to this much probability (1: all).
    pub top_p: f32,
    /// Keep only this many most likely tokens (0: all).
    pub top_k: usize,
    /// The seed of every draw.
    pub seed: u64,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling::GREEDY
    }
}

/// A sampling setting out of range: the field at fault and why.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct BadSampling {
    /// `temperature`, `top_p` or `top_k`.
    pub field: &'static str,
    pub message: String,
}

/// A seed for a request that gave none: the clock and a counter, mixed, below 2^53 so that
/// every JSON client reads it back exactly.
pub fn fresh_seed() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let bits = (uniform(nanos, n) * (1u64 << 53) as f64) as u64;
    bits & ((1 << 53) - 1)
}

/// The log-probability of a chosen token and of the most likely alternatives at its
/// position, under the model's distribution (softmax of the raw logits, before temperature,
/// `top_k` and `top_p`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TokenLogprob {
    /// The token chosen.
    pub token: u32,
    /// Its natural log-probability.
    pub logprob: f32,
    /// The most likely tokens at this position, most likely first (ties: lower id first).
    pub top: Vec<(u32, f32)>,
}

impl Sampling {
    /// Arg-max decoding.
    pub const GREEDY: Sampling = Sampling {
        temperature: 0.0,
        top_p: 1.0,
        top_k: 0,
        seed: 0,
    };

    /// A sampling setting from a request's numbers, each checked: `temperature` from 0 (greedy)
    /// to 2, `top_p` in (0, 1], `top_k` at most the vocabulary (0: all); the seed given, or a
    /// fresh one ([`fresh_seed`]) so that the answer can be reproduced with the seed returned.
    pub fn checked(
        temperature: f64,
        top_p: f64,
        top_k: u64,
        seed: Option<u64>,
        vocab: usize,
    ) -> Result<Sampling, BadSampling> {
        let bad = |field: &'static str, message: String| Err(BadSampling { field, message });
        if !(0.0..=2.0).contains(&temperature) {
            return bad(
                "temperature",
                format!("`temperature` is {temperature}; it must be between 0 and 2"),
            );
        }
        if !(top_p > 0.0 && top_p <= 1.0) {
            return bad("top_p", format!("`top_p` is {top_p}; it must be in (0, 1]"));
        }
        if top_k > vocab as u64 {
            return bad(
                "top_k",
                format!("`top_k` is {top_k}; the vocabulary has {vocab} tokens"),
            );
        }
        Ok(Sampling {
            temperature: temperature as f32,
            top_p: top_p as f32,
            top_k: top_k as usize,
            seed: seed.unwrap_or_else(fresh_seed),
        })
    }

    /// True when the choice is the arg-max whatever the draw.
    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0 || self.top_k == 1
    }

    /// The token at answer position `position`, chosen from `logits`.
    pub fn choose(&self, logits: &[f32], position: usize) -> u32 {
        if self.is_greedy() || logits.is_empty() {
            return ralmspec_lm::argmax(logits);
        }
        let inv_t = 1.0 / f64::from(self.temperature);
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let weight = |l: f32| ((f64::from(l) - f64::from(max)) * inv_t).exp();
        let u = uniform(self.seed, position as u64);
        let truncated = (self.top_k > 0 && self.top_k < logits.len()) || self.top_p < 1.0;
        if !truncated {
            // The whole vocabulary in id order: no sort needed.
            let total: f64 = logits.iter().map(|&l| weight(l)).sum();
            return pick(
                logits
                    .iter()
                    .enumerate()
                    .map(|(i, &l)| (i as u32, weight(l))),
                u * total,
            );
        }
        let mut order = ranked(logits, self.top_k);
        let weights: Vec<f64> = order.iter().map(|&i| weight(logits[i as usize])).collect();
        let total: f64 = weights.iter().sum();
        let mut keep = order.len();
        if self.top_p < 1.0 {
            let bound = f64::from(self.top_p) * total;
            let mut sum = 0.0;
            for (n, w) in weights.iter().enumerate() {
                sum += w;
                if sum >= bound {
                    keep = n + 1;
                    break;
                }
            }
        }
        order.truncate(keep);
        let kept: f64 = weights[..keep].iter().sum();
        pick(order.iter().copied().zip(weights.iter().copied()), u * kept)
    }
}

/// The first token whose cumulative weight exceeds `target` (the last one if rounding left
/// `target` at the very end).
fn pick(weights: impl Iterator<Item = (u32, f64)>, target: f64) -> u32 {
    let mut sum = 0.0;
    let mut last = 0;
    for (token, w) in weights {
        sum += w;
        last = token;
        if sum > target {
            return token;
        }
    }
    last
}

/// Token ids by decreasing logit, ties to the lower id; only the first `k` when `k > 0`.
fn ranked(logits: &[f32], k: usize) -> Vec<u32> {
    let mut order: Vec<u32> = (0..logits.len() as u32).collect();
    let cmp = |a: &u32, b: &u32| {
        logits[*b as usize]
            .total_cmp(&logits[*a as usize])
            .then(a.cmp(b))
    };
    if k > 0 && k < order.len() {
        order.select_nth_unstable_by(k - 1, cmp);
        order.truncate(k);
    }
    order.sort_unstable_by(cmp);
    order
}

/// The log-probabilities at one position: the chosen token's and the `top` most likely.
pub(crate) fn logprobs(logits: &[f32], token: u32, top: usize) -> TokenLogprob {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits
        .iter()
        .map(|&l| (f64::from(l) - f64::from(max)).exp())
        .sum();
    let log_z = f64::from(max) + sum.ln();
    let lp = |id: u32| (f64::from(logits[id as usize]) - log_z) as f32;
    TokenLogprob {
        token,
        logprob: lp(token),
        top: if top == 0 {
            Vec::new()
        } else {
            ranked(logits, top)
                .into_iter()
                .map(|id| (id, lp(id)))
                .collect()
        },
    }
}

/// A uniform draw in `[0, 1)` for `(seed, position)`: a pure function (counter-based), so
/// any engine, in any order, after any rollback, draws the same number for the same position.
pub fn uniform(seed: u64, position: u64) -> f64 {
    let x = mix(seed ^ mix(position.wrapping_add(0x9E37_79B9_7F4A_7C15)));
    (x >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// The SplitMix64 finaliser (Steele, Lea and Flood 2014): a bijection on u64 with full
/// avalanche.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {

    #[test]
    fn checked_names_the_field_out_of_range_and_draws_a_seed_when_none_is_given() {
        for (t, p, k, field) in [
            (2.5, 1.0, 0, "temperature"),
            (-0.1, 1.0, 0, "temperature"),
            (0.7, 0.0, 0, "top_p"),
            (0.7, 1.5, 0, "top_p"),
            (0.7, 1.0, 101, "top_k"),
        ] {
            assert_eq!(
                Sampling::checked(t, p, k, None, 100).unwrap_err().field,
                field
            );
        }
        let given = Sampling::checked(0.7, 0.9, 5, Some(42), 100).unwrap();
        assert_eq!(
            (given.temperature, given.top_p, given.top_k, given.seed),
            (0.7, 0.9, 5, 42)
        );
        let a = Sampling::checked(0.7, 1.0, 0, None, 100).unwrap().seed;
        let b = Sampling::checked(0.7, 1.0, 0, None, 100).unwrap().seed;
        assert_ne!(a, b, "fresh seeds differ");
        assert!(a < 1 << 53 && b < 1 << 53, "JSON-exact seeds");
    }

    use super::*;

    fn sampling(temperature: f32, top_p: f32, top_k: usize, seed: u64) -> Sampling {
        Sampling {
            temperature,
            top_p,
            top_k,
            seed,
        }
    }

    #[test]
    fn draws_depend_only_on_seed_and_position() {
        assert_eq!(uniform(7, 3), uniform(7, 3));
        assert_ne!(uniform(7, 3), uniform(7, 4));
        assert_ne!(uniform(7, 3), uniform(8, 3));
        // Roughly uniform: the mean of many draws is near 1/2, all in [0, 1).
        let draws: Vec<f64> = (0..10_000).map(|p| uniform(42, p)).collect();
        assert!(draws.iter().all(|u| (0.0..1.0).contains(u)));
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        assert!((mean - 0.5).abs() < 0.02, "{mean}");
    }

    #[test]
    fn greedy_settings_take_the_argmax() {
        let logits = [0.0, 3.0, 3.0, 1.0];
        assert_eq!(Sampling::GREEDY.choose(&logits, 0), 1);
        assert_eq!(sampling(1.0, 1.0, 1, 9).choose(&logits, 5), 1);
    }

    #[test]
    fn top_k_and_top_p_restrict_the_choice() {
        let logits = [0.0, 5.0, 4.9, 1.0, -3.0];
        for p in 0..500 {
            let k2 = sampling(2.0, 1.0, 2, 1).choose(&logits, p);
            assert!(k2 == 1 || k2 == 2, "{k2}");
            let nucleus = sampling(1.0, 0.5, 0, 1).choose(&logits, p);
            assert_eq!(
                nucleus, 1,
                "top_p 0.5 keeps only the most likely token here"
            );
        }
    }

    #[test]
    fn sampling_follows_the_distribution() {
        // p = softmax([ln 1, ln 3]) = [1/4, 3/4].
        let logits = [0.0f32, 3f32.ln()];
        let s = sampling(1.0, 1.0, 0, 11);
        let ones = (0..20_000).filter(|&p| s.choose(&logits, p) == 1).count();
        let share = ones as f64 / 20_000.0;
        assert!((share - 0.75).abs() < 0.02, "{share}");
        // The truncated path (sorting) gives the same distribution.
        let t = sampling(1.0, 0.999_999, 0, 11);
        let ones_t = (0..20_000).filter(|&p| t.choose(&logits, p) == 1).count();
        assert!((ones_t as f64 / 20_000.0 - 0.75).abs() < 0.02);
    }

    #[test]
    fn logprobs_are_log_softmax() {
        let logits = [1.0f32, 2.0, 3.0];
        let lp = logprobs(&logits, 0, 2);
        let z: f64 = logits.iter().map(|&l| f64::from(l).exp()).sum();
        assert!((f64::from(lp.logprob) - (1.0 - z.ln())).abs() < 1e-6);
        assert_eq!(lp.top.iter().map(|t| t.0).collect::<Vec<_>>(), vec![2, 1]);
        assert!(logprobs(&logits, 0, 0).top.is_empty());
    }
}
