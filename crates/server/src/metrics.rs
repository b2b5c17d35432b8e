//! Server metrics and their Prometheus text exposition (`GET /metrics`): request latency,
//! generation speed, retrieval calls, verification batch sizes, how many searches each call
//! to a retriever combined across requests, speculation accuracy, queue depth, and what was
//! refused or cancelled. Counters are atomics; histograms take a short
//! lock of their own (never the model's).

use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use ralmspec_engine::Stats;

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
        let i = self
            .bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(self.bounds.len());
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.buckets[i] += 1;
        s.sum += value;
        s.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, n) in self.bounds.iter().zip(&s.buckets) {
            cumulative += n;
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", s.count);
        let _ = writeln!(out, "{name}_sum {}\n{name}_count {}", s.sum, s.count);
    }
}

/// Everything `/metrics` reports.
#[derive(Debug)]
pub struct Metrics {
    latency: Histogram,
    queue_wait: Histogram,
    tokens_per_second: Histogram,
    verification_batch: Histogram,
    /// Searches (of different requests) served by each call to a retriever.
    combined_searches: Histogram,
    /// Finished requests by outcome.
    ok: AtomicU64,
    failed: AtomicU64,
    cancelled: AtomicU64,
    rejected: AtomicU64,
    invalid: AtomicU64,
    tokens: AtomicU64,
    retrieval_calls: AtomicU64,
    retrieval_queries: AtomicU64,
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
const RATE_BOUNDS: &[f64] = &[5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0];
const BATCH_BOUNDS: &[f64] = &[1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 32.0];

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            latency: Histogram::new(LATENCY_BOUNDS),
            queue_wait: Histogram::new(LATENCY_BOUNDS),
            tokens_per_second: Histogram::new(RATE_BOUNDS),
            verification_batch: Histogram::new(BATCH_BOUNDS),
            combined_searches: Histogram::new(BATCH_BOUNDS),
            ok: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            invalid: AtomicU64::new(0),
            tokens: AtomicU64::new(0),
            retrieval_calls: AtomicU64::new(0),
            retrieval_queries: AtomicU64::new(0),
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
    /// A request entered the queue.
    pub fn queued(&self) {
        self.queue_depth.fetch_add(1, Ordering::Relaxed);
    }

    /// A request counted by [`Metrics::queued`] was refused after all.
    pub fn unqueued(&self) {
        self.queue_depth.fetch_sub(1, Ordering::Relaxed);
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

    /// A request finished: `latency` from admission to the last token.
    pub fn finished(&self, latency: Duration, tokens: usize, stats: &Stats) {
        add(&self.ok, 1);
        self.latency.observe(latency.as_secs_f64());
        add(&self.tokens, tokens);
        let wall = stats.wall.as_secs_f64();
        if tokens > 0 && wall > 0.0 {
            self.tokens_per_second.observe(tokens as f64 / wall);
        }
        add(&self.retrieval_calls, stats.retrieval_calls);
        add(&self.retrieval_queries, stats.retrieval_queries);
        add(&self.speculated, stats.speculated);
        add(&self.matched, stats.matched);
        add(&self.overlapped, stats.overlapped);
        for &batch in &stats.strides {
            self.verification_batch.observe(batch as f64);
        }
    }

    /// One call to a retriever served `searches` searches, combined from concurrent requests.
    pub fn combined(&self, searches: usize) {
        add(&self.retriever_calls, 1);
        self.combined_searches.observe(searches as f64);
    }

    /// A generation failed.
    pub fn failed(&self) {
        add(&self.failed, 1);
    }

    /// A client went away; its work was stopped (or never started).
    pub fn cancelled(&self) {
        add(&self.cancelled, 1);
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
        self.cancelled.load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.latency.render(
            &mut out,
            "ralmspec_request_duration_seconds",
            "Time from admission to the last token of finished requests.",
        );
        self.queue_wait.render(
            &mut out,
            "ralmspec_queue_wait_seconds",
            "Time requests waited in the queue for a worker.",
        );
        self.tokens_per_second.render(
            &mut out,
            "ralmspec_generation_tokens_per_second",
            "New tokens per second of each finished request's generation.",
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
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP ralmspec_requests_total Requests by outcome.\n# TYPE ralmspec_requests_total counter"
        );
        for (outcome, counter) in [
            ("ok", &self.ok),
            ("failed", &self.failed),
            ("cancelled", &self.cancelled),
            ("rejected", &self.rejected),
            ("invalid", &self.invalid),
        ] {
            let _ = writeln!(
                out,
                "ralmspec_requests_total{{outcome=\"{outcome}\"}} {}",
                load(counter)
            );
        }
        let counters = [
            (
                "ralmspec_generated_tokens_total",
                "New tokens generated.",
                &self.tokens,
            ),
            (
                "ralmspec_retrieval_calls_total",
                "Searches the requests asked of the real retriever (before combining).",
                &self.retrieval_calls,
            ),
            (
                "ralmspec_retrieval_queries_total",
                "Queries sent to the real retriever.",
                &self.retrieval_queries,
            ),
            (
                "ralmspec_retriever_calls_total",
                "Calls to the retrievers themselves, each serving one or more combined searches.",
                &self.retriever_calls,
            ),
            (
                "ralmspec_speculated_total",
                "Retrieval steps taken with a speculated document.",
                &self.speculated,
            ),
            (
                "ralmspec_speculation_matched_total",
                "Speculated steps the retriever confirmed.",
                &self.matched,
            ),
            (
                "ralmspec_async_verifications_total",
                "Verifications run beside a speculation step (planned by OS³ where they pay).",
                &self.overlapped,
            ),
        ];
        for (name, help, counter) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                load(counter)
            );
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
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
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
        m.finished(Duration::from_secs(1), 16, &stats);
        m.stopped();
        let text = m.render();
        for line in [
            "ralmspec_requests_total{outcome=\"ok\"} 1",
            "ralmspec_generated_tokens_total 16",
            "ralmspec_retrieval_queries_total 5",
            "ralmspec_speculation_accuracy 0.75",
            "ralmspec_async_verifications_total 1",
            "ralmspec_verification_batch_size_count 2",
            "ralmspec_queue_depth 0",
            "ralmspec_request_duration_seconds_count 1",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }
}
