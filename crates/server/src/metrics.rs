//! Server metrics and their Prometheus text exposition (`GET /metrics`): request latency,
//! time to first token and inter-token latency, generation speed, retrieval calls,
//! verification batch sizes, how many searches each call to a retriever combined across
//! requests, speculation accuracy, queue depth, and what was refused or cancelled.
//!
//! Request series carry `retriever` and `engine` labels (kNN-LM requests: retriever
//! `datastore`, engine `knn` or `knn-spec`). Work is counted when it is done, not
//! when a request ends well: tokens at each commit and retrieval calls at each search, so a
//! cancelled or failed request's tokens and searches are in the totals too.
//!
//! Hand-written rather than on a metrics crate: a few dozen series, one text format, and
//! histograms whose bucket bounds are part of the documented output. Counters are atomics;
//! histograms and the label maps take a short lock of their own (never the model's).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use ralmspec_engine::knn;
use ralmspec_engine::{Engine, Stats};

/// The labels of a request's series: the knowledge base's retriever and the engine.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Labels {
    pub retriever: String,
    pub engine: &'static str,
}

impl Labels {
    /// The labels of a request served by `retriever` with `engine`.
    pub fn new(retriever: &str, engine: Engine) -> Labels {
        Labels {
            retriever: retriever.to_string(),
            engine: match engine {
                Engine::Baseline => "baseline",
                Engine::Spec(_) => "spec",
            },
        }
    }

    /// The labels of a kNN-LM request served with `engine`.
    pub fn knn(engine: knn::Engine) -> Labels {
        Labels {
            retriever: crate::knn::RETRIEVER_LABEL.to_string(),
            engine: match engine {
                knn::Engine::Plain => "knn",
                knn::Engine::Spec(_) => "knn-spec",
            },
        }
    }

    fn render(&self) -> String {
        format!(
            "retriever=\"{}\",engine=\"{}\"",
            self.retriever, self.engine
        )
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A cumulative histogram with fixed upper bounds.
#[derive(Debug)]
struct Histogram {
    bounds: &'static [f64],
    state: Mutex<HistogramState>,
}

#[derive(Debug, Default)]
struct HistogramState {
    /// Observations ≤ each bound (not yet cumulative), then the +Inf bucket.
    buckets: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            state: Mutex::new(HistogramState {
                buckets: vec![0; bounds.len() + 1],
                ..HistogramState::default()
            }),
        }
    }

    fn observe(&self, value: f64) {
        self.observe_n(value, 1);
    }

    /// `n` observations of `value`.
    fn observe_n(&self, value: f64, n: u64) {
        let i = self
            .bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(self.bounds.len());
        let mut s = lock(&self.state);
        s.buckets[i] += n;
        s.sum += value * n as f64;
        s.count += n;
    }

    /// The series lines, with `labels` (`a="x",b="y"` or empty) on each.
    fn render_series(&self, out: &mut String, name: &str, labels: &str) {
        let s = lock(&self.state);
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (bound, n) in self.bounds.iter().zip(&s.buckets) {
            cumulative += n;
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", s.count);
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(
            out,
            "{name}_sum{braces} {}\n{name}_count{braces} {}",
            s.sum, s.count
        );
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        header(out, name, help, "histogram");
        self.render_series(out, name, "");
    }
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// How a request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Failed,
    Cancelled,
}

const OUTCOMES: [(Outcome, &str); 3] = [
    (Outcome::Ok, "ok"),
    (Outcome::Failed, "failed"),
    (Outcome::Cancelled, "cancelled"),
];

/// The series of one (retriever, engine).
#[derive(Debug)]
struct Family {
    outcomes: [AtomicU64; 3],
    tokens: AtomicU64,
    latency: Histogram,
    first_token: Histogram,
    inter_token: Histogram,
    tokens_per_second: Histogram,
}

impl Default for Family {
    fn default() -> Self {
        Family {
            outcomes: Default::default(),
            tokens: AtomicU64::new(0),
            latency: Histogram::new(LATENCY_BOUNDS),
            first_token: Histogram::new(LATENCY_BOUNDS),
            inter_token: Histogram::new(TOKEN_GAP_BOUNDS),
            tokens_per_second: Histogram::new(RATE_BOUNDS),
        }
    }
}

/// The retrieval series of one retriever.
#[derive(Debug, Default)]
struct Retrieval {
    calls: AtomicU64,
    queries: AtomicU64,
}

/// Everything `/metrics` reports.
#[derive(Debug)]
pub struct Metrics {
    families: Mutex<BTreeMap<Labels, Arc<Family>>>,
    retrieval: Mutex<BTreeMap<String, Arc<Retrieval>>>,
    queue_wait: Histogram,
    verification_batch: Histogram,
    /// Searches (of different requests) served by each call to a retriever.
    combined_searches: Histogram,
    rejected: AtomicU64,
    invalid: AtomicU64,
    retriever_calls: AtomicU64,
    speculated: AtomicU64,
    matched: AtomicU64,
    overlapped: AtomicU64,
    /// Admitted requests no worker has picked up yet.
    queue_depth: AtomicUsize,
    /// Requests a worker is generating.
    running: AtomicUsize,
}

const LATENCY_BOUNDS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 60.0, 120.0];
const TOKEN_GAP_BOUNDS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];
const RATE_BOUNDS: &[f64] = &[5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0];
const BATCH_BOUNDS: &[f64] = &[1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 32.0];

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            families: Mutex::default(),
            retrieval: Mutex::default(),
            queue_wait: Histogram::new(LATENCY_BOUNDS),
            verification_batch: Histogram::new(BATCH_BOUNDS),
            combined_searches: Histogram::new(BATCH_BOUNDS),
            rejected: AtomicU64::new(0),
            invalid: AtomicU64::new(0),
            retriever_calls: AtomicU64::new(0),
            speculated: AtomicU64::new(0),
            matched: AtomicU64::new(0),
            overlapped: AtomicU64::new(0),
            queue_depth: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
        }
    }
}

fn add(counter: &AtomicU64, n: usize) {
    counter.fetch_add(n as u64, Ordering::Relaxed);
}

impl Metrics {
    fn family(&self, labels: &Labels) -> Arc<Family> {
        lock(&self.families)
            .entry(labels.clone())
            .or_default()
            .clone()
    }

    fn retrieval(&self, retriever: &str) -> Arc<Retrieval> {
        let mut map = lock(&self.retrieval);
        if let Some(r) = map.get(retriever) {
            return r.clone();
        }
        map.entry(retriever.to_string()).or_default().clone()
    }

    /// A request entered the queue.
    pub fn queued(&self) {
        self.queue_depth.fetch_add(1, Ordering::Relaxed);
    }

    /// A queued request's client left before a worker took it.
    pub fn withdrawn(&self, labels: &Labels) {
        self.queue_depth.fetch_sub(1, Ordering::Relaxed);
        self.ended(labels, Outcome::Cancelled);
    }

    /// A worker took a request off the queue after it waited `waited`.
    pub fn started(&self, waited: Duration) {
        self.queue_depth.fetch_sub(1, Ordering::Relaxed);
        self.running.fetch_add(1, Ordering::Relaxed);
        self.queue_wait.observe(waited.as_secs_f64());
    }

    /// A worker is done with a request (whatever the outcome, recorded separately).
    pub fn stopped(&self) {
        self.running.fetch_sub(1, Ordering::Relaxed);
    }

    /// `tokens` new tokens became final, `since_admission` after the request was admitted;
    /// `gap` is the time since the request's previous commit (`None` for its first). The gap is
    /// spread evenly over the tokens it produced (a verified speculation commits several at
    /// once): one inter-token observation per token.
    pub fn committed(
        &self,
        labels: &Labels,
        tokens: usize,
        since_admission: Duration,
        gap: Option<Duration>,
    ) {
        if tokens == 0 {
            return;
        }
        let family = self.family(labels);
        add(&family.tokens, tokens);
        match gap {
            None => {
                family.first_token.observe(since_admission.as_secs_f64());
                if tokens > 1 {
                    family.inter_token.observe_n(0.0, tokens as u64 - 1);
                }
            }
            Some(gap) => family
                .inter_token
                .observe_n(gap.as_secs_f64() / tokens as f64, tokens as u64),
        }
    }

    /// A request ended with `outcome`.
    pub fn ended(&self, labels: &Labels, outcome: Outcome) {
        let family = self.family(labels);
        let i = OUTCOMES
            .iter()
            .position(|(o, _)| *o == outcome)
            .unwrap_or(0);
        add(&family.outcomes[i], 1);
    }

    /// A request finished well: `latency` from admission to the last token.
    pub fn finished(&self, labels: &Labels, latency: Duration, tokens: usize, stats: &Stats) {
        self.ended(labels, Outcome::Ok);
        let family = self.family(labels);
        family.latency.observe(latency.as_secs_f64());
        let wall = stats.wall.as_secs_f64();
        if tokens > 0 && wall > 0.0 {
            family.tokens_per_second.observe(tokens as f64 / wall);
        }
        add(&self.speculated, stats.speculated);
        add(&self.matched, stats.matched);
        add(&self.overlapped, stats.overlapped);
        for &batch in &stats.strides {
            self.verification_batch.observe(batch as f64);
        }
    }

    /// A request asked `retriever` for `queries` queries in one search (whatever becomes of
    /// the request).
    pub fn searched(&self, retriever: &str, queries: usize) {
        self.searches(retriever, 1, queries);
    }

    /// A request made `calls` searches of `retriever`, for `queries` queries in all.
    pub fn searches(&self, retriever: &str, calls: usize, queries: usize) {
        let r = self.retrieval(retriever);
        add(&r.calls, calls);
        add(&r.queries, queries);
    }

    /// A kNN-LM request finished well (as [`Metrics::finished`]); its datastore searches are
    /// counted here, at its end.
    pub fn finished_knn(
        &self,
        labels: &Labels,
        latency: Duration,
        tokens: usize,
        knn: &knn::Stats,
    ) {
        self.searches(&labels.retriever, knn.search_calls, knn.searched);
        let stats = Stats {
            wall: knn.wall,
            lm_time: knn.lm,
            retrieval_calls: knn.search_calls,
            retrieval_queries: knn.searched,
            retrieval_time: knn.search,
            // Accuracy over the speculated steps that were checked.
            speculated: knn.verified,
            matched: knn.matched,
            rollbacks: knn.rollbacks,
            // A plain step (stride 0) is no verification batch.
            strides: knn.strides.iter().copied().filter(|&s| s > 0).collect(),
            overlapped: knn.overlapped,
            ..Stats::default()
        };
        self.finished(labels, latency, tokens, &stats);
    }

    /// One call to a retriever served `searches` searches, combined from concurrent requests.
    pub fn combined(&self, searches: usize) {
        add(&self.retriever_calls, 1);
        self.combined_searches.observe(searches as f64);
    }

    /// The queue was full: 503.
    pub fn rejected(&self) {
        add(&self.rejected, 1);
    }

    /// A request failed validation: 4xx.
    pub fn invalid(&self) {
        add(&self.invalid, 1);
    }

    /// Requests admitted and not yet started.
    pub fn queue_depth(&self) -> usize {
        self.queue_depth.load(Ordering::Relaxed)
    }

    /// Cancelled requests so far.
    pub fn cancelled_count(&self) -> u64 {
        lock(&self.families)
            .values()
            .map(|f| f.outcomes[2].load(Ordering::Relaxed))
            .sum()
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let families: Vec<(String, Arc<Family>)> = lock(&self.families)
            .iter()
            .map(|(l, f)| (l.render(), f.clone()))
            .collect();
        type Pick = fn(&Family) -> &Histogram;
        let histograms: [(&str, &str, Pick); 4] = [
            (
                "ralmspec_request_duration_seconds",
                "Time from admission to the last token of finished requests.",
                |f| &f.latency,
            ),
            (
                "ralmspec_time_to_first_token_seconds",
                "Time from admission to the first committed token.",
                |f| &f.first_token,
            ),
            (
                "ralmspec_inter_token_latency_seconds",
                "Time between committed tokens (a commit's wait spread over its tokens).",
                |f| &f.inter_token,
            ),
            (
                "ralmspec_generation_tokens_per_second",
                "New tokens per second of each finished request's generation.",
                |f| &f.tokens_per_second,
            ),
        ];
        for (name, help, pick) in histograms {
            header(&mut out, name, help, "histogram");
            for (labels, family) in &families {
                pick(family).render_series(&mut out, name, labels);
            }
        }
        self.queue_wait.render(
            &mut out,
            "ralmspec_queue_wait_seconds",
            "Time requests waited in the queue for a worker.",
        );
        self.verification_batch.render(
            &mut out,
            "ralmspec_verification_batch_size",
            "Queries per batched verification call of the speculative engine.",
        );
        self.combined_searches.render(
            &mut out,
            "ralmspec_combined_searches",
            "Searches, from requests in flight at once, served by each call to a retriever.",
        );
        header(
            &mut out,
            "ralmspec_requests_total",
            "Requests by outcome.",
            "counter",
        );
        for (labels, family) in &families {
            for (i, (_, outcome)) in OUTCOMES.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "ralmspec_requests_total{{outcome=\"{outcome}\",{labels}}} {}",
                    load(&family.outcomes[i])
                );
            }
        }
        for (outcome, counter) in [("rejected", &self.rejected), ("invalid", &self.invalid)] {
            let _ = writeln!(
                out,
                "ralmspec_requests_total{{outcome=\"{outcome}\"}} {}",
                load(counter)
            );
        }
        header(
            &mut out,
            "ralmspec_generated_tokens_total",
            "New tokens committed, whatever became of their request.",
            "counter",
        );
        for (labels, family) in &families {
            let _ = writeln!(
                out,
                "ralmspec_generated_tokens_total{{{labels}}} {}",
                load(&family.tokens)
            );
        }
        let retrieval: Vec<(String, Arc<Retrieval>)> = lock(&self.retrieval)
            .iter()
            .map(|(name, r)| (name.clone(), r.clone()))
            .collect();
        for (name, help, pick) in [
            (
                "ralmspec_retrieval_calls_total",
                "Searches the requests asked of the real retriever (before combining), whatever became of the request.",
                (|r| &r.calls) as fn(&Retrieval) -> &AtomicU64,
            ),
            (
                "ralmspec_retrieval_queries_total",
                "Queries sent to the real retriever, whatever became of the request.",
                |r| &r.queries,
            ),
        ] {
            header(&mut out, name, help, "counter");
            for (retriever, r) in &retrieval {
                let _ = writeln!(out, "{name}{{retriever=\"{retriever}\"}} {}", load(pick(r)));
            }
        }
        let counters = [
            (
                "ralmspec_retriever_calls_total",
                "Calls to the retrievers themselves, each serving one or more combined searches.",
                &self.retriever_calls,
            ),
            (
                "ralmspec_speculated_total",
                "Retrieval steps taken with a speculated document (finished requests).",
                &self.speculated,
            ),
            (
                "ralmspec_speculation_matched_total",
                "Speculated steps the retriever confirmed (finished requests).",
                &self.matched,
            ),
            (
                "ralmspec_async_verifications_total",
                "Verifications run beside a speculation step (planned by OS³ where they pay).",
                &self.overlapped,
            ),
        ];
        for (name, help, counter) in counters {
            header(&mut out, name, help, "counter");
            let _ = writeln!(out, "{name} {}", load(counter));
        }
        let speculated = load(&self.speculated);
        let accuracy = if speculated == 0 {
            0.0
        } else {
            load(&self.matched) as f64 / speculated as f64
        };
        let gauges = [
            (
                "ralmspec_speculation_accuracy",
                "Fraction of speculated steps confirmed so far.",
                accuracy,
            ),
            (
                "ralmspec_queue_depth",
                "Requests admitted and waiting for a worker.",
                self.queue_depth() as f64,
            ),
            (
                "ralmspec_requests_running",
                "Requests a worker is generating.",
                self.running.load(Ordering::Relaxed) as f64,
            ),
        ];
        for (name, help, value) in gauges {
            header(&mut out, name, help, "gauge");
            let _ = writeln!(out, "{name} {value}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::new(&[1.0, 2.0]);
        for v in [0.5, 1.5, 1.7, 9.0] {
            h.observe(v);
        }
        let mut out = String::new();
        h.render(&mut out, "x", "test");
        assert!(out.contains("x_bucket{le=\"1\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"2\"} 3\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 4\n"), "{out}");
        assert!(out.contains("x_count 4\n"), "{out}");
    }

    fn labels() -> Labels {
        Labels::new("flat", Engine::Baseline)
    }

    #[test]
    fn finished_requests_feed_every_family() {
        let m = Metrics::default();
        m.queued();
        m.started(Duration::from_millis(5));
        let stats = Stats {
            wall: Duration::from_secs(1),
            retrieval_calls: 2,
            retrieval_queries: 5,
            speculated: 4,
            matched: 3,
            strides: vec![1, 4],
            overlapped: 1,
            ..Stats::default()
        };
        m.searched("flat", 5);
        m.committed(&labels(), 4, Duration::from_millis(300), None);
        m.committed(
            &labels(),
            12,
            Duration::from_secs(1),
            Some(Duration::from_millis(120)),
        );
        m.finished(&labels(), Duration::from_secs(1), 16, &stats);
        m.stopped();
        let text = m.render();
        let l = "retriever=\"flat\",engine=\"baseline\"";
        for line in [
            format!("ralmspec_requests_total{{outcome=\"ok\",{l}}} 1"),
            format!("ralmspec_generated_tokens_total{{{l}}} 16"),
            "ralmspec_retrieval_queries_total{retriever=\"flat\"} 5".to_string(),
            "ralmspec_speculation_accuracy 0.75".to_string(),
            "ralmspec_async_verifications_total 1".to_string(),
            "ralmspec_verification_batch_size_count 2".to_string(),
            "ralmspec_queue_depth 0".to_string(),
            format!("ralmspec_request_duration_seconds_count{{{l}}} 1"),
            format!("ralmspec_time_to_first_token_seconds_bucket{{{l},le=\"0.5\"}} 1"),
            // 3 zero gaps inside the first commit, 12 gaps of 10 ms.
            format!("ralmspec_inter_token_latency_seconds_bucket{{{l},le=\"0.005\"}} 3"),
            format!("ralmspec_inter_token_latency_seconds_count{{{l}}} 15"),
        ] {
            assert!(text.contains(&line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn cancelled_and_failed_work_is_counted() {
        let m = Metrics::default();
        m.searched("flat", 3);
        m.committed(&labels(), 5, Duration::from_millis(200), None);
        m.ended(&labels(), Outcome::Cancelled);
        m.committed(&labels(), 2, Duration::from_millis(200), None);
        m.ended(&labels(), Outcome::Failed);
        let text = m.render();
        let l = "retriever=\"flat\",engine=\"baseline\"";
        for line in [
            format!("ralmspec_requests_total{{outcome=\"cancelled\",{l}}} 1"),
            format!("ralmspec_requests_total{{outcome=\"failed\",{l}}} 1"),
            format!("ralmspec_generated_tokens_total{{{l}}} 7"),
            "ralmspec_retrieval_calls_total{retriever=\"flat\"} 1".to_string(),
        ] {
            assert!(text.contains(&line), "missing {line:?} in\n{text}");
        }
        assert_eq!(m.cancelled_count(), 1);
    }
}
