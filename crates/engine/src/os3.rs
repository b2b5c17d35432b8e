//! OS³, the optimal speculation stride scheduler (the paper's §4).
//!
//! Before each round it picks the stride `s` that maximises the expected number of committed
//! steps per unit of time, from measured latencies: `a`, one speculation step (cache lookup
//! and one LM stride), and `b`, one batched verification; and from the speculation accuracy
//! γ estimated over the last rounds. Expected committed steps per round: (1−γ^s)/(1−γ) (the
//! matched steps, plus the corrected one after a mismatch).
//! - synchronous verification costs s·a + b per round;
//! - asynchronous verification overlaps the next step with verification: on a full match the
//!   round costs (s−1)·a + o, otherwise s·a + b, where o is the measured wall time of the
//!   overlapped pair (the paper assumes o = max(a, b); on 2 vCPUs the verifier and the LM share
//!   the cores and o comes out near a + b, so the model must see that).
//!
//! Two refinements over the paper's model, both measured to matter when retrieval is cheap:
//! - a mismatch costs one more stride, `a`, to generate the corrected step again (probability
//!   1−γ^s); the paper leaves it out, which makes s = 1 look free;
//! - s = 0 is a choice: retrieve for real, then generate (a + b per committed step, the
//!   baseline's cost). When retrieval costs little next to a wasted stride, speculating cannot
//!   win, and RaLMSpec then runs at the baseline's speed instead of below it.
//!
//! A third: the verification cost grows with the batch, `b(s) = b₀ + c·s`, fitted by least
//! squares to the recent verifications (constant until two batch sizes have been seen). An
//! exact search is memory-bound for one query but compute-bound for many on a small machine
//! (measured on 2 vCPUs over 2M kNN-LM keys: 230 ms for one query, +70 ms for each more), so a
//! constant `b` overestimates what long strides save.
//!
//! The first round uses s = 1; after that, the best s in 0..=max.

use std::collections::VecDeque;
use std::time::Duration;

/// Rounds the estimate of γ looks back over.
const WINDOW: usize = 5;
/// Verifications (batch size, latency) the cost fit looks back over.
const VERIFY_WINDOW: usize = 16;
/// Speculation-step latencies the estimate of `a` looks back over.
const STEP_WINDOW: usize = 16;
/// γ̂ is kept in this range: low enough that the objective is finite, and not so low that one
/// bad round pins the stride at 1 (the reference code clips it at 0.6 too).
const GAMMA_RANGE: (f64, f64) = (0.6, 0.98);

/// The scheduler's state for one request.
#[derive(Debug)]
pub(crate) struct Os3 {
    asynchronous: bool,
    /// Whether a mismatch costs a stride to regenerate the corrected step (RaLM: yes; kNN-LM:
    /// no, verification yields the corrected token itself).
    redo: bool,
    max_stride: usize,
    steps: VecDeque<f64>,
    /// (queries, seconds) of recent verifications.
    verifications: VecDeque<(f64, f64)>,
    /// Latencies of recent plain steps (s = 0), when the engine times them apart from
    /// speculation steps.
    plain_steps: VecDeque<f64>,
    /// Wall times of recent overlapped (verification ‖ one step) pairs.
    overlaps: VecDeque<f64>,
    /// (stride, matched steps) of recent rounds.
    rounds: VecDeque<(usize, usize)>,
}

impl Os3 {
    pub(crate) fn new(asynchronous: bool, max_stride: usize) -> Os3 {
        Os3 {
            asynchronous,
            redo: true,
            max_stride: max_stride.max(1),
            steps: VecDeque::with_capacity(STEP_WINDOW),
            verifications: VecDeque::with_capacity(VERIFY_WINDOW),
            overlaps: VecDeque::with_capacity(WINDOW),
            plain_steps: VecDeque::with_capacity(STEP_WINDOW),
            rounds: VecDeque::with_capacity(WINDOW),
        }
    }

    /// This scheduler for an engine whose mismatches cost no regeneration.
    pub(crate) fn without_redo(mut self) -> Os3 {
        self.redo = false;
        self
    }

    /// Records the latency of one speculation step.
    pub(crate) fn step_took(&mut self, d: Duration) {
        push_bounded(&mut self.steps, d.as_secs_f64(), STEP_WINDOW);
    }

    /// Records the latency of one batched verification of `queries` queries.
    pub(crate) fn verification_took(&mut self, queries: usize, d: Duration) {
        push_bounded(
            &mut self.verifications,
            (queries as f64, d.as_secs_f64()),
            VERIFY_WINDOW,
        );
    }

    /// Records the LM latency of one plain step (s = 0), which may cost less than a
    /// speculation step (no cache lookup); until one is recorded, s = 0 is costed at `a`.
    pub(crate) fn plain_step_took(&mut self, d: Duration) {
        push_bounded(&mut self.plain_steps, d.as_secs_f64(), STEP_WINDOW);
    }

    /// Records the wall time of one verification overlapped with one speculation step.
    pub(crate) fn overlap_took(&mut self, d: Duration) {
        push_bounded(&mut self.overlaps, d.as_secs_f64(), WINDOW);
    }

    /// The verification cost model fitted to the recent verifications.
    pub(crate) fn verify_cost(&self) -> Option<VerifyCost> {
        let v = &self.verifications;
        if v.is_empty() {
            return None;
        }
        let n = v.len() as f64;
        let (ms, mt) = (
            v.iter().map(|x| x.0).sum::<f64>() / n,
            v.iter().map(|x| x.1).sum::<f64>() / n,
        );
        let var: f64 = v.iter().map(|x| (x.0 - ms).powi(2)).sum();
        if var == 0.0 {
            return Some(VerifyCost {
                base: mt,
                per_query: 0.0,
            });
        }
        let cov: f64 = v.iter().map(|x| (x.0 - ms) * (x.1 - mt)).sum();
        let per_query = (cov / var).clamp(0.0, mt / ms);
        Some(VerifyCost {
            base: mt - per_query * ms,
            per_query,
        })
    }

    /// Records a round: `stride` steps speculated, the first `matched` of them right.
    pub(crate) fn round(&mut self, stride: usize, matched: usize) {
        push_bounded(&mut self.rounds, (stride, matched), WINDOW);
    }

    /// γ̂ = ΣM / (ΣM + #{rounds with M < s}), clipped to [`GAMMA_RANGE`].
    pub(crate) fn gamma(&self) -> Option<f64> {
        if self.rounds.is_empty() {
            return None;
        }
        let matched: usize = self.rounds.iter().map(|r| r.1).sum();
        let failed = self.rounds.iter().filter(|r| r.1 < r.0).count();
        let gamma = if matched + failed == 0 {
            0.0
        } else {
            matched as f64 / (matched + failed) as f64
        };
        Some(gamma.clamp(GAMMA_RANGE.0, GAMMA_RANGE.1))
    }

    /// The stride for the next round (0: no speculation, retrieve for real).
    pub(crate) fn stride(&self) -> usize {
        let (Some(gamma), Some(a), Some(b)) = (self.gamma(), mean(&self.steps), self.verify_cost())
        else {
            return 1;
        };
        // The first best (ties go to the shorter stride).
        (0..=self.max_stride)
            .map(|s| (s, self.objective(s, gamma, a, b)))
            .fold(
                (0, f64::MIN),
                |best, next| if next.1 > best.1 { next } else { best },
            )
            .0
    }

    /// Expected committed steps per second with stride `s`.
    pub(crate) fn objective(&self, s: usize, gamma: f64, a: f64, cost: VerifyCost) -> f64 {
        let b = cost.of(s.max(1));
        if s == 0 {
            return 1.0 / (mean(&self.plain_steps).unwrap_or(a) + b);
        }
        let gs = gamma.powi(s as i32);
        let steps = (1.0 - gs) / (1.0 - gamma);
        let s = s as f64;
        let redo = if self.redo { (1.0 - gs) * a } else { 0.0 };
        let time = if self.asynchronous {
            let overlap = mean(&self.overlaps).unwrap_or(a.max(b));
            gs * ((s - 1.0) * a + overlap) + (1.0 - gs) * (s * a + b) + redo
        } else {
            s * a + b + redo
        };
        steps / time
    }
}

/// A verification's latency as a function of its batch size: `base + per_query·queries`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct VerifyCost {
    pub base: f64,
    pub per_query: f64,
}

impl VerifyCost {
    /// A cost that does not depend on the batch.
    #[cfg(test)]
    pub(crate) fn flat(b: f64) -> VerifyCost {
        VerifyCost {
            base: b,
            per_query: 0.0,
        }
    }

    fn of(&self, queries: usize) -> f64 {
        self.base + self.per_query * queries as f64
    }
}

fn push_bounded<T>(queue: &mut VecDeque<T>, value: T, bound: usize) {
    if queue.len() == bound {
        queue.pop_front();
    }
    queue.push_back(value);
}

fn mean(values: &VecDeque<f64>) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scheduler(asynchronous: bool, a: f64, b: f64, rounds: &[(usize, usize)]) -> Os3 {
        let mut os3 = Os3::new(asynchronous, 16);
        os3.step_took(Duration::from_secs_f64(a));
        os3.verification_took(1, Duration::from_secs_f64(b));
        for &(s, m) in rounds {
            os3.round(s, m);
        }
        os3
    }

    #[test]
    fn starts_at_one() {
        assert_eq!(Os3::new(false, 16).stride(), 1);
    }

    #[test]
    fn gamma_estimate() {
        // 2+3+1 matched, two rounds fell short.
        let os3 = scheduler(false, 1.0, 1.0, &[(3, 2), (3, 3), (2, 1)]);
        assert!((os3.gamma().unwrap() - 6.0 / 8.0).abs() < 1e-12);
        // All right: clipped below 1.
        let os3 = scheduler(false, 1.0, 1.0, &[(3, 3)]);
        assert_eq!(os3.gamma(), Some(GAMMA_RANGE.1));
    }

    #[test]
    fn expensive_retrieval_and_good_guesses_mean_long_strides() {
        let cheap = scheduler(false, 1.0, 0.05, &[(3, 3), (3, 3)]).stride();
        let costly = scheduler(false, 1.0, 20.0, &[(3, 3), (3, 3)]).stride();
        let costly_bad = scheduler(false, 1.0, 20.0, &[(3, 0), (3, 1)]).stride();
        assert_eq!(cheap, 0, "cheap retrieval: no speculation");
        assert!(costly > 5, "{costly}");
        assert!(costly_bad < costly, "{costly_bad} vs {costly}");
    }

    #[test]
    fn stride_maximises_the_objective() {
        for (a, b, asynchronous) in [(1.0, 3.0, false), (1.0, 3.0, true), (0.2, 0.9, true)] {
            let os3 = scheduler(asynchronous, a, b, &[(4, 3), (2, 2)]);
            let gamma = os3.gamma().unwrap();
            let s = os3.stride();
            let cost = VerifyCost::flat(b);
            let best = (0..=16)
                .map(|s| os3.objective(s, gamma, a, cost))
                .fold(f64::MIN, f64::max);
            assert!(
                (os3.objective(s, gamma, a, cost) - best).abs() < 1e-12,
                "{a} {b} {asynchronous}"
            );
        }
    }

    #[test]
    fn a_verification_cost_growing_with_the_batch_shortens_strides() {
        let mut fixed = Os3::new(false, 32);
        let mut growing = Os3::new(false, 32);
        for os3 in [&mut fixed, &mut growing] {
            os3.step_took(Duration::from_secs_f64(1.0));
            for _ in 0..5 {
                os3.round(8, 8);
            }
        }
        for s in [1, 4, 8] {
            fixed.verification_took(s, Duration::from_secs_f64(16.0));
            growing.verification_took(s, Duration::from_secs_f64(11.0 + 5.0 * s as f64));
        }
        let cost = growing.verify_cost().unwrap();
        assert!((cost.base - 11.0).abs() < 1e-9 && (cost.per_query - 5.0).abs() < 1e-9);
        assert!(
            growing.stride() < fixed.stride(),
            "{} vs {}",
            growing.stride(),
            fixed.stride()
        );
    }
}
