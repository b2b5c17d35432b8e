//! OS³, the optimal speculation stride scheduler (the paper's §4).
//!
//! Before each round it plans the stride `s` that maximises the expected number of committed
//! steps per unit of time, and whether to verify asynchronously, from measured latencies: `a`,
//! one speculation step (cache lookup and one LM stride), and `b`, one batched verification;
//! and from the speculation accuracy γ estimated over the last rounds. Expected committed
//! steps per round: (1−γ^s)/(1−γ) (the matched steps, plus the corrected one after a mismatch).
//! - synchronous verification costs s·a + b per round;
//! - asynchronous verification overlaps the next step with verification: on a full match the
//!   round costs (s−1)·a + o, otherwise s·a + b, where o is the wall time of the overlapped
//!   pair. The paper assumes o = max(a, b), which holds only where the two do not slow each
//!   other down. Here o = max(a/σ_a, b/σ_b) with measured slowdowns: σ_b, the verifier's
//!   latency alone `b(s)` over its latency beside a step, and σ_a, the LM's latency per
//!   decoded token alone over beside the verifier (per token, because a step's latency varies
//!   with what it feeds: a document switch or not). Two jobs that share the cores evenly come
//!   out at o = a + b, no gain; whatever else the overlap costs (a thread, a pool's workers
//!   spinning down) shows up in the same two numbers. An engine that keeps speculating until
//!   the verification is done (kNN-LM) makes n = ⌈(b/σ_b)/(a/σ_a)⌉ steps beside it
//!   (1 ≤ n ≤ s), o = max(n·a/σ_a, b/σ_b), and a full match costs (s−n)·a + o.
//!
//! Refinements over the paper's model, each measured to matter:
//! - a mismatch costs one more stride, `a`, to generate the corrected step again (probability
//!   1−γ^s); the paper leaves it out, which makes s = 1 look free;
//! - s = 0 is a choice: retrieve for real, then generate (a + b per committed step, the
//!   baseline's cost). When retrieval costs little next to a wasted stride, speculating cannot
//!   win, and RaLMSpec then runs at the baseline's speed instead of below it;
//! - the verification cost grows with the batch, `b(s) = b₀ + c·s`, fitted by least squares to
//!   the recent verifications (constant until two batch sizes have been seen). An exact search
//!   is memory-bound for one query but compute-bound for many (`examples/flat_batch.rs` over
//!   2M × 576 keys: ~200 ms for one query and +17 ms for each more on 2 vCPUs; 45 ms and +9 ms
//!   on a 16-core Xeon), so a constant `b` overestimates what long strides save;
//! - asynchronous verification is a choice too, made per round when the engine allows it: it
//!   is planned only where the model expects it to beat the best synchronous plan, so a
//!   machine without spare cores runs synchronously instead of paying for a useless overlap;
//! - a plan must beat the next simpler one (speculation over s = 0, overlap over none) by
//!   [`MARGIN`]: their estimates are noisy, and a near tie costs the overheads the model leaves
//!   out (cache lookups, a thread).
//!
//! The first round uses s = 1; after that, the best s in 0..=max. Overlapped rounds are timed
//! only as pairs (their step and verification contend for the cores), so after
//! [`PROBE_EVERY`] overlapped rounds in a row one synchronous round refreshes `a` and `b`.

use std::collections::VecDeque;
use std::time::Duration;

/// Rounds the estimates of γ and of the overlap look back over.
const WINDOW: usize = 5;
/// Verifications (batch size, latency) the cost fit looks back over.
const VERIFY_WINDOW: usize = 16;
/// Speculation-step latencies the estimate of `a` looks back over.
const STEP_WINDOW: usize = 16;
/// γ̂ is kept in this range: low enough that the objective is finite, and not so low that one
/// bad round pins the stride at 1 (the reference code clips it at 0.6 too).
const GAMMA_RANGE: (f64, f64) = (0.6, 0.98);
/// By how much (relative) a plan's expected rate must beat the simpler one to be chosen.
const MARGIN: f64 = 0.02;
/// Overlapped rounds in a row after which one synchronous round refreshes `a` and `b`.
const PROBE_EVERY: usize = 8;
/// Measured speeds beside each other are clipped to this range.
const SPEED_RANGE: (f64, f64) = (0.05, 1.0);

/// How long one speculation step took.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StepTime {
    /// Wall time of the whole step.
    pub took: Duration,
    /// The LM's mean latency per decoded token (single-token forward) in the step, if it
    /// decoded any.
    pub per_token: Option<Duration>,
}

/// What one round showed: OS³ learns only from these ([`Os3::observe`]).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Observation<'a> {
    /// The speculation steps run alone (not beside a verification), each timed.
    pub steps: &'a [StepTime],
    /// A plain step's latency (s = 0) without its search, when the engine times it apart
    /// (kNN-LM); until one is observed, s = 0 is costed at `a`.
    pub plain: Option<Duration>,
    /// The round's retriever call, if it made one.
    pub verification: Option<Verification>,
    /// Guesses checked, and how many of them were right before the first wrong one.
    pub checked: Option<(usize, usize)>,
}

/// One batched retriever call of a round.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Verification {
    pub queries: usize,
    pub took: Duration,
    /// The speculation step it ran beside, when it was overlapped.
    pub beside: Option<StepTime>,
}

/// What the next round does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Steps to speculate (0: a plain step, retrieval first).
    pub stride: usize,
    /// Verify on another thread while one more step is speculated.
    pub overlap: bool,
}

/// The scheduler's state for one request.
#[derive(Debug)]
pub(crate) struct Os3 {
    /// Whether rounds may be verified asynchronously.
    asynchronous: bool,
    /// Whether a mismatch costs a stride to regenerate the corrected step (RaLM: yes; kNN-LM:
    /// no, verification yields the corrected token itself).
    redo: bool,
    /// Whether an overlapped verification is beside as many steps as fit in it, up to a
    /// stride (kNN-LM), rather than one (RaLM).
    lookahead: bool,
    max_stride: usize,
    steps: VecDeque<f64>,
    /// (queries, seconds) of recent synchronous verifications.
    verifications: VecDeque<(f64, f64)>,
    /// Latencies of recent plain steps (s = 0), when the engine times them apart from
    /// speculation steps.
    plain_steps: VecDeque<f64>,
    /// LM latencies per decoded token of recent steps run alone.
    per_token: VecDeque<f64>,
    /// The LM's speed (σ_a, latency alone over latency beside the verifier) in recent
    /// overlapped rounds.
    lm_speeds: VecDeque<f64>,
    /// The verifier's speed (σ_b, likewise) in recent overlapped rounds.
    verifier_speeds: VecDeque<f64>,
    /// Overlapped rounds since the last synchronous verification.
    since_sync: usize,
    /// (stride, matched steps) of recent rounds.
    rounds: VecDeque<(usize, usize)>,
}

impl Os3 {
    /// A scheduler that may plan asynchronous rounds when `asynchronous`.
    pub(crate) fn new(asynchronous: bool, max_stride: usize) -> Os3 {
        Os3 {
            asynchronous,
            redo: true,
            lookahead: false,
            max_stride: max_stride.max(1),
            steps: VecDeque::with_capacity(STEP_WINDOW),
            verifications: VecDeque::with_capacity(VERIFY_WINDOW),
            per_token: VecDeque::with_capacity(STEP_WINDOW),
            lm_speeds: VecDeque::with_capacity(WINDOW),
            verifier_speeds: VecDeque::with_capacity(WINDOW),
            since_sync: 0,
            plain_steps: VecDeque::with_capacity(STEP_WINDOW),
            rounds: VecDeque::with_capacity(WINDOW),
        }
    }

    /// This scheduler for an engine whose mismatches cost no regeneration.
    pub(crate) fn without_redo(mut self) -> Os3 {
        self.redo = false;
        self
    }

    /// This scheduler for an engine that, beside an overlapped verification, speculates the
    /// next round's steps until the verification is done (at most a stride of them).
    pub(crate) fn speculating_until_verified(mut self) -> Os3 {
        self.lookahead = true;
        self
    }

    /// Learns from one round: its steps' latencies, its verification's (alone, or how much
    /// it and the step beside it were slowed), and its guesses' accuracy.
    pub(crate) fn observe(&mut self, round: &Observation<'_>) {
        for &step in round.steps {
            self.step_took(step);
        }
        if let Some(plain) = round.plain {
            self.plain_step_took(plain);
        }
        match round.verification {
            Some(Verification {
                queries,
                took,
                beside: Some(step),
            }) => self.overlap_took(queries, step, took),
            Some(Verification {
                queries,
                took,
                beside: None,
            }) => self.verification_took(queries, took),
            None => {}
        }
        if let Some((stride, matched)) = round.checked {
            self.round(stride, matched);
        }
    }

    /// Records the latency of one speculation step run alone (not overlapped).
    fn step_took(&mut self, step: StepTime) {
        push_bounded(&mut self.steps, step.took.as_secs_f64(), STEP_WINDOW);
        if let Some(t) = step.per_token {
            push_bounded(&mut self.per_token, t.as_secs_f64(), STEP_WINDOW);
        }
    }

    /// Records the latency of one synchronous batched verification of `queries` queries.
    fn verification_took(&mut self, queries: usize, d: Duration) {
        self.since_sync = 0;
        push_bounded(
            &mut self.verifications,
            (queries as f64, d.as_secs_f64()),
            VERIFY_WINDOW,
        );
    }

    /// Records the latency of one plain step (s = 0), which may cost less than a speculation
    /// step (no cache lookup); until one is recorded, s = 0 is costed at `a`.
    fn plain_step_took(&mut self, d: Duration) {
        push_bounded(&mut self.plain_steps, d.as_secs_f64(), STEP_WINDOW);
    }

    /// Records one verification of `queries` queries that took `verifying` beside a speculation
    /// step: how much each was slowed against its latency alone.
    fn overlap_took(&mut self, queries: usize, step: StepTime, verifying: Duration) {
        self.since_sync += 1;
        if let Some(cost) = self.verify_cost() {
            let speed = cost.of(queries) / verifying.as_secs_f64().max(f64::MIN_POSITIVE);
            push_bounded(&mut self.verifier_speeds, clip_speed(speed), WINDOW);
        }
        if let (Some(alone), Some(beside)) = (mean(&self.per_token), step.per_token) {
            let speed = alone / beside.as_secs_f64().max(f64::MIN_POSITIVE);
            push_bounded(&mut self.lm_speeds, clip_speed(speed), WINDOW);
        }
    }

    /// An overlapped verification of latency `b` alone beside steps of latency `a` alone, each
    /// slowed as measured (not at all, the paper's assumption, until measured): the steps made
    /// beside it (as many as fit, at least one and at most `max_steps`) and the wall time until
    /// both are done.
    fn overlapped(&self, a: f64, b: f64, max_steps: usize) -> (f64, f64) {
        let step = a / mean(&self.lm_speeds).unwrap_or(1.0);
        let verify = b / mean(&self.verifier_speeds).unwrap_or(1.0);
        let steps = (verify / step).ceil().clamp(1.0, max_steps.max(1) as f64);
        (steps, (steps * step).max(verify))
    }

    /// `a`: the mean speculation step, or before one was timed, the mean plain step.
    fn step_cost(&self) -> Option<f64> {
        mean(&self.steps).or_else(|| mean(&self.plain_steps))
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
    fn round(&mut self, stride: usize, matched: usize) {
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

    /// The plan for the next round.
    pub(crate) fn plan(&self) -> Plan {
        let (Some(gamma), Some(a), Some(cost)) =
            (self.gamma(), self.step_cost(), self.verify_cost())
        else {
            return Plan {
                stride: 1,
                overlap: self.asynchronous,
            };
        };
        let rate = |plan: Plan| self.objective(plan, gamma, a, cost);
        // The first best of a kind (ties go to the shorter stride).
        let best = |overlap: bool| {
            (1..=self.max_stride)
                .map(|stride| Plan { stride, overlap })
                .map(|plan| (plan, rate(plan)))
                .fold((Plan { stride: 0, overlap }, f64::MIN), |best, next| {
                    if next.1 > best.1 { next } else { best }
                })
        };
        let plain = Plan {
            stride: 0,
            overlap: false,
        };
        let mut chosen = (plain, rate(plain));
        let may_overlap = self.asynchronous && self.since_sync < PROBE_EVERY;
        for overlap in [false, true] {
            if overlap && !may_overlap {
                break;
            }
            let next = best(overlap);
            if next.1 > chosen.1 * (1.0 + MARGIN) {
                chosen = next;
            }
        }
        chosen.0
    }

    /// Expected committed steps per second with `plan`.
    pub(crate) fn objective(&self, plan: Plan, gamma: f64, a: f64, cost: VerifyCost) -> f64 {
        let b = cost.of(plan.stride.max(1));
        if plan.stride == 0 {
            return 1.0 / (mean(&self.plain_steps).unwrap_or(a) + b);
        }
        let gs = gamma.powi(plan.stride as i32);
        let steps = (1.0 - gs) / (1.0 - gamma);
        let s = plan.stride as f64;
        let redo = if self.redo { (1.0 - gs) * a } else { 0.0 };
        let time = if plan.overlap {
            // On a full match the steps made beside the verification start the next round.
            let beside = if self.lookahead { plan.stride } else { 1 };
            let (n, o) = self.overlapped(a, b, beside);
            gs * ((s - n) * a + o) + (1.0 - gs) * (s * a + b) + redo
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

fn clip_speed(speed: f64) -> f64 {
    if speed.is_nan() {
        SPEED_RANGE.1
    } else {
        speed.clamp(SPEED_RANGE.0, SPEED_RANGE.1)
    }
}

fn mean(values: &VecDeque<f64>) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(x: f64) -> Duration {
        Duration::from_secs_f64(x)
    }

    /// A step of `took` seconds that decoded 4 tokens at `per_token` seconds each.
    fn step(took: f64, per_token: f64) -> StepTime {
        StepTime {
            took: secs(took),
            per_token: Some(secs(per_token)),
        }
    }

    fn scheduler(asynchronous: bool, a: f64, b: f64, rounds: &[(usize, usize)]) -> Os3 {
        let mut os3 = Os3::new(asynchronous, 16);
        os3.step_took(step(a, a / 4.0));
        os3.verification_took(1, secs(b));
        for &(s, m) in rounds {
            os3.round(s, m);
        }
        os3
    }

    #[test]
    fn starts_at_one() {
        let first = Plan {
            stride: 1,
            overlap: false,
        };
        assert_eq!(Os3::new(false, 16).plan(), first);
        let overlapped = Plan {
            overlap: true,
            ..first
        };
        assert_eq!(Os3::new(true, 16).plan(), overlapped);
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
        let cheap = scheduler(false, 1.0, 0.05, &[(3, 3), (3, 3)]).plan().stride;
        let costly = scheduler(false, 1.0, 20.0, &[(3, 3), (3, 3)]).plan().stride;
        let costly_bad = scheduler(false, 1.0, 20.0, &[(3, 0), (3, 1)]).plan().stride;
        assert_eq!(cheap, 0, "cheap retrieval: no speculation");
        assert!(costly > 5, "{costly}");
        assert!(costly_bad < costly, "{costly_bad} vs {costly}");
    }

    #[test]
    fn the_plan_maximises_the_objective_up_to_the_margin() {
        for (a, b, asynchronous) in [
            (1.0, 3.0, false),
            (1.0, 3.0, true),
            (0.2, 0.9, true),
            (1.0, 0.01, false),
        ] {
            let os3 = scheduler(asynchronous, a, b, &[(4, 3), (2, 2)]);
            let gamma = os3.gamma().unwrap();
            let cost = VerifyCost::flat(b);
            let rate = |plan| os3.objective(plan, gamma, a, cost);
            let best = (0..=16)
                .flat_map(|stride| {
                    [false, true]
                        .into_iter()
                        .filter(move |&overlap| stride > 0 && (asynchronous || !overlap))
                        .map(move |overlap| Plan { stride, overlap })
                })
                .map(rate)
                .fold(
                    rate(Plan {
                        stride: 0,
                        overlap: false,
                    }),
                    f64::max,
                );
            let chosen = rate(os3.plan());
            assert!(
                chosen * (1.0 + MARGIN) >= best - 1e-12,
                "{a} {b} {asynchronous}: {chosen} vs {best}"
            );
        }
    }

    #[test]
    fn a_near_tie_stays_plain() {
        // Without redo and with free verification, s = 1 costs what s = 0 costs.
        let mut os3 = Os3::new(false, 16).without_redo();
        os3.step_took(step(1.0, 0.25));
        os3.plain_step_took(secs(1.0));
        os3.verification_took(1, secs(0.001));
        os3.round(1, 1);
        assert_eq!(os3.plan().stride, 0);
    }

    #[test]
    fn overlap_is_planned_only_where_it_was_measured_to_pay() {
        let rounds = [(4, 4), (4, 4), (4, 4)];
        // Unmeasured, the overlap is assumed perfect (the paper's model) and planned.
        let mut none = scheduler(true, 1.0, 3.0, &rounds);
        let mut perfect = scheduler(true, 1.0, 3.0, &rounds);
        assert!(none.plan().overlap);
        for _ in 0..3 {
            // Sharing the cores, each at half speed: the step (1 alone) ends at 2, the
            // verification (3 alone) at 4.
            none.overlap_took(4, step(2.0, 0.5), secs(4.0));
            // Each as fast as alone.
            perfect.overlap_took(4, step(1.0, 0.25), secs(3.0));
        }
        assert_eq!(mean(&none.lm_speeds), Some(0.5));
        assert_eq!(mean(&none.verifier_speeds), Some(0.75));
        assert_eq!(none.overlapped(1.0, 3.0, 1), (1.0, 4.0));
        assert_eq!(perfect.overlapped(1.0, 3.0, 1), (1.0, 3.0));
        assert!(!none.plan().overlap, "no overlap: synchronous");
        assert!(none.plan().stride > 0);
        assert!(perfect.plan().overlap);
        // A machine that does not overlap at all runs at least as fast synchronously.
        let sync = scheduler(false, 1.0, 3.0, &rounds);
        assert_eq!(none.plan().stride, sync.plan().stride);
    }

    #[test]
    fn an_lm_slowed_beside_a_fast_verifier_makes_the_overlap_cost() {
        let mut os3 = scheduler(true, 1.0, 0.5, &[(4, 4), (4, 4)]);
        // The verifier (0.5 alone) ran at full speed; the step (1 alone) took 1.4 beside it.
        os3.overlap_took(4, step(1.4, 0.35), secs(0.5));
        assert_eq!(mean(&os3.verifier_speeds), Some(1.0));
        let (steps, o) = os3.overlapped(1.0, 0.5, 1);
        assert!(steps == 1.0 && (o - 1.4).abs() < 1e-12);
        // Which is slower than no overlap at all (1 + 0.5 = 1.5, less the 2% margin).
        assert!(!os3.plan().overlap);
    }

    #[test]
    fn speculating_until_verified_hides_the_steps_that_fit() {
        let rounds = [(4, 4), (4, 4), (4, 4)];
        let one = scheduler(true, 1.0, 3.0, &rounds);
        let mut until = scheduler(true, 1.0, 3.0, &rounds).speculating_until_verified();
        // Three steps of 1 fit in a verification of 3, none slowed; at most a stride of them.
        assert_eq!(until.overlapped(1.0, 3.0, 8), (3.0, 3.0));
        assert_eq!(until.overlapped(1.0, 3.0, 2), (2.0, 3.0));
        assert_eq!(until.overlapped(1.0, 2.5, 8), (3.0, 3.0));
        let plan = Plan {
            stride: 4,
            overlap: true,
        };
        let (gamma, cost) = (until.gamma().unwrap(), VerifyCost::flat(3.0));
        assert!(until.objective(plan, gamma, 1.0, cost) > one.objective(plan, gamma, 1.0, cost));
        assert!(until.plan().overlap);
        // Beside a verifier that halves the LM's speed, only half as many steps fit.
        until.overlap_took(4, step(2.0, 0.5), secs(3.0));
        assert_eq!(until.overlapped(1.0, 3.0, 8), (2.0, 4.0));
    }

    #[test]
    fn long_runs_of_overlapped_rounds_are_probed_synchronously() {
        let mut os3 = scheduler(true, 1.0, 3.0, &[(4, 4), (4, 4)]);
        for _ in 0..PROBE_EVERY {
            assert!(os3.plan().overlap);
            os3.overlap_took(4, step(1.0, 0.25), secs(3.0));
        }
        assert!(!os3.plan().overlap);
        os3.verification_took(4, secs(3.0));
        assert!(os3.plan().overlap);
    }

    #[test]
    fn a_verification_cost_growing_with_the_batch_shortens_strides() {
        let mut fixed = Os3::new(false, 32);
        let mut growing = Os3::new(false, 32);
        for os3 in [&mut fixed, &mut growing] {
            os3.step_took(step(1.0, 0.25));
            for _ in 0..5 {
                os3.round(8, 8);
            }
        }
        for s in [1, 4, 8] {
            fixed.verification_took(s, secs(16.0));
            growing.verification_took(s, secs(11.0 + 5.0 * s as f64));
        }
        let cost = growing.verify_cost().unwrap();
        assert!((cost.base - 11.0).abs() < 1e-9 && (cost.per_query - 5.0).abs() < 1e-9);
        let (growing, fixed) = (growing.plan().stride, fixed.plan().stride);
        assert!(growing < fixed, "{growing} vs {fixed}");
    }
}
