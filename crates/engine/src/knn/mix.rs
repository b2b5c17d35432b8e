//! The kNN-LM distribution and its greedy token: `p = λ·p_kNN + (1−λ)·p_LM`, interpolated in
//! log space, with `p_kNN(w) ∝ Σ exp(−d²/T)` over the neighbours whose value is `w`.
//!
//! Plain and speculative kNN-LM pick every token through [`Mixer::next_token`]: the same
//! numbers in, the same operations in the same order, the same token out.

use ralmspec_lm::argmax;
use ralmspec_retrieval::{Hit, Metric};

/// kNN-LM's knobs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Params {
    /// Neighbours per token (1..=1024 is the useful range).
    pub k: usize,
    /// Weight of the kNN distribution (the paper's λ = 0.25).
    pub lambda: f32,
    /// Softmax temperature on the negative squared distances (the paper's T = 1).
    pub temperature: f32,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            k: 16,
            lambda: 0.25,
            temperature: 1.0,
        }
    }
}

impl Params {
    /// Checks the ranges: k ≥ 1, λ in [0, 1], T > 0.
    pub fn check(&self) -> Result<(), String> {
        if self.k == 0 {
            return Err("k must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.lambda) {
            return Err(format!("lambda {} is not in [0, 1]", self.lambda));
        }
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(format!("temperature {} is not > 0", self.temperature));
        }
        Ok(())
    }
}

/// Turns (LM logits, neighbours) into kNN-LM log-probabilities and greedy tokens, reusing its
/// scratch space from token to token.
#[derive(Debug, Default)]
pub struct Mixer {
    /// (value, log-weight −d²/T) of each neighbour, then grouped by value.
    scratch: Vec<(u32, f64)>,
}

impl Mixer {
    /// The greedy kNN-LM token: the arg-max of the mixed distribution (ties: the lower id).
    /// `lse_lm` is [`log_normalizer`]`(logits)`, `query_norm2` is ‖h‖² of the hidden state the
    /// neighbours were searched for.
    pub fn next_token(
        &mut self,
        params: &Params,
        logits: &[f32],
        lse_lm: f64,
        neighbours: &[Hit],
        query_norm2: f32,
        values: &[u32],
    ) -> u32 {
        let lm_best = argmax(logits);
        let (ln_l, ln_1l) = weights(params);
        let mut best = (
            lm_best,
            ln_1l + (f64::from(logits[lm_best as usize]) - lse_lm),
        );
        self.group(params, neighbours, query_norm2, values);
        let lse_knn = log_sum_exp(self.scratch.iter().map(|g| g.1));
        for &(token, log_w) in &self.scratch {
            let lm = ln_1l + (f64::from(logits[token as usize]) - lse_lm);
            let p = log_add_exp(ln_l + (log_w - lse_knn), lm);
            if p > best.1 || (p == best.1 && token < best.0) {
                best = (token, p);
            }
        }
        best.0
    }

    /// `log p(target)` under kNN-LM and under the LM alone.
    pub fn log_probs(
        &mut self,
        params: &Params,
        logits: &[f32],
        neighbours: &[Hit],
        query_norm2: f32,
        values: &[u32],
        target: u32,
    ) -> (f64, f64) {
        let lm = f64::from(logits[target as usize]) - log_normalizer(logits);
        let (ln_l, ln_1l) = weights(params);
        self.group(params, neighbours, query_norm2, values);
        let lse_knn = log_sum_exp(self.scratch.iter().map(|g| g.1));
        let knn = self
            .scratch
            .iter()
            .find(|g| g.0 == target)
            .map_or(f64::NEG_INFINITY, |g| g.1 - lse_knn);
        (log_add_exp(ln_l + knn, ln_1l + lm), lm)
    }

    /// Fills `scratch` with one (value, log Σ exp(−d²/T)) per distinct neighbour value, in
    /// value order.
    fn group(&mut self, params: &Params, neighbours: &[Hit], qn: f32, values: &[u32]) {
        let t = f64::from(params.temperature);
        self.scratch.clear();
        self.scratch.extend(neighbours.iter().map(|h| {
            let d2 = Metric::squared_distance(qn, h.score);
            (values[h.doc as usize], -f64::from(d2) / t)
        }));
        self.scratch
            .sort_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)));
        let mut out = 0;
        let mut i = 0;
        while i < self.scratch.len() {
            let token = self.scratch[i].0;
            let mut j = i;
            while j < self.scratch.len() && self.scratch[j].0 == token {
                j += 1;
            }
            let lse = log_sum_exp(self.scratch[i..j].iter().map(|g| g.1));
            self.scratch[out] = (token, lse);
            out += 1;
            i = j;
        }
        self.scratch.truncate(out);
    }
}

fn weights(params: &Params) -> (f64, f64) {
    let l = f64::from(params.lambda);
    (l.ln(), (1.0 - l).ln())
}

fn log_sum_exp(xs: impl Iterator<Item = f64> + Clone) -> f64 {
    let max = xs.clone().fold(f64::NEG_INFINITY, f64::max);
    if max == f64::NEG_INFINITY {
        return max;
    }
    max + xs.map(|x| (x - max).exp()).sum::<f64>().ln()
}

/// log Σ exp(logits): the LM's log-softmax normaliser, computed once per step by the callers
/// of [`Mixer::next_token`] (a pass over the whole vocabulary).
pub fn log_normalizer(logits: &[f32]) -> f64 {
    log_sum_exp(logits.iter().map(|&x| f64::from(x)))
}

fn log_add_exp(a: f64, b: f64) -> f64 {
    let max = a.max(b);
    if max == f64::NEG_INFINITY {
        return max;
    }
    max + ((a - max).exp() + (b - max).exp()).ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(doc: u32, d2: f32, qn: f32) -> Hit {
        // score = (‖q‖² − d²)/2
        Hit {
            doc,
            score: (qn - d2) / 2.0,
        }
    }

    #[test]
    fn lambda_zero_is_the_lm_and_one_is_the_neighbours() {
        let logits = [0.0, 3.0, 1.0, 2.5];
        let values = [2, 3, 3];
        let qn = 10.0;
        let near = [hit(0, 0.5, qn), hit(1, 1.0, qn), hit(2, 1.2, qn)];
        let mut m = Mixer::default();
        let mut token = |lambda| {
            let p = Params {
                k: 3,
                lambda,
                temperature: 1.0,
            };
            m.next_token(&p, &logits, log_normalizer(&logits), &near, qn, &values)
        };
        assert_eq!(token(0.0), 1);
        // Token 3 gets exp(−1) + exp(−1.2) > exp(−0.5) for token 2.
        assert_eq!(token(1.0), 3);
        // λ = 0.25: 0.75·p_LM(1) ≈ 0.44 beats 0.25·p_kNN(3) + 0.75·p_LM(3) ≈ 0.39.
        assert_eq!(token(0.25), 1);
    }

    #[test]
    fn log_probs_are_a_distribution_and_the_argmax_matches() {
        let logits: Vec<f32> = (0..50)
            .map(|i| ((i * 37 % 11) as f32).sin() * 2.0)
            .collect();
        let values: Vec<u32> = (0..20).map(|i| (i * 7 % 50) as u32).collect();
        let qn = 4.0;
        let near: Vec<Hit> = (0..20).map(|i| hit(i, 0.1 * i as f32, qn)).collect();
        let params = Params {
            k: 20,
            lambda: 0.4,
            temperature: 0.7,
        };
        let mut m = Mixer::default();
        let all: Vec<f64> = (0..50)
            .map(|t| m.log_probs(&params, &logits, &near, qn, &values, t).0)
            .collect();
        let total: f64 = all.iter().map(|x| x.exp()).sum();
        assert!((total - 1.0).abs() < 1e-9, "{total}");
        let best = (0..50u32)
            .max_by(|&a, &b| all[a as usize].total_cmp(&all[b as usize]).then(b.cmp(&a)))
            .unwrap();
        assert_eq!(
            m.next_token(
                &params,
                &logits,
                log_normalizer(&logits),
                &near,
                qn,
                &values
            ),
            best
        );
    }
}
