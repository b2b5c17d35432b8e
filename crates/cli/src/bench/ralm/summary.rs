//! Per-engine statistics of a benchmark group and the Markdown report.

use ralmspec_engine::{Generation, SpecConfig};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The measurements of one (retriever, size) group, per engine.
pub struct Runs {
    baseline: Vec<Generation>,
    oracle: Vec<Generation>,
    spec: Vec<Vec<Generation>>,
}

/// One line of the report: an engine on a (retriever, size).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Row {
    pub retriever: String,
    pub passages: usize,
    pub padding: Option<String>,
    pub engine: String,
    pub mean_s: f64,
    pub p50_s: f64,
    pub p95_s: f64,
    /// Mean baseline latency over this engine's mean latency.
    pub speedup: f64,
    /// Retrieval latency per call over LM latency per step, both from the baseline.
    pub b_over_a: f64,
    /// Fraction of speculated steps that were right.
    pub gamma: Option<f64>,
    /// Mean speculation stride.
    pub mean_stride: Option<f64>,
    /// Fraction of verification rounds that ran asynchronously.
    pub overlapped: Option<f64>,
    /// Retriever calls per request.
    pub retrieval_calls: f64,
}

impl Runs {
    pub fn new(variants: usize) -> Runs {
        Runs {
            baseline: Vec::new(),
            oracle: Vec::new(),
            spec: vec![Vec::new(); variants],
        }
    }

    pub fn push(&mut self, baseline: Generation, oracle: Generation, spec: Vec<Generation>) {
        self.baseline.push(baseline);
        self.oracle.push(oracle);
        for (runs, g) in self.spec.iter_mut().zip(spec) {
            runs.push(g);
        }
    }

    pub fn rows(
        &self,
        retriever: &str,
        passages: usize,
        padding: Option<String>,
        variants: &[SpecConfig],
    ) -> Vec<Row> {
        let base_mean = mean(&walls(&self.baseline));
        let calls: usize = self.baseline.iter().map(|g| g.stats.retrieval_calls).sum();
        let retrieval: f64 = self
            .baseline
            .iter()
            .map(|g| g.stats.retrieval_time.as_secs_f64())
            .sum();
        let total: f64 = walls(&self.baseline).iter().sum();
        let b_over_a = if calls == 0 || total <= retrieval {
            0.0
        } else {
            retrieval / (total - retrieval)
        };
        let row = |engine: String, runs: &[Generation]| {
            let w = walls(runs);
            let speculated: usize = runs.iter().map(|g| g.stats.speculated).sum();
            let matched: usize = runs.iter().map(|g| g.stats.matched).sum();
            let strides: Vec<usize> = runs.iter().flat_map(|g| g.stats.strides.clone()).collect();
            let rounds = strides.iter().filter(|&&s| s > 0).count();
            let overlapped: usize = runs.iter().map(|g| g.stats.overlapped).sum();
            Row {
                retriever: retriever.to_string(),
                passages,
                padding: padding.clone(),
                engine,
                mean_s: mean(&w),
                p50_s: percentile(&w, 0.50),
                p95_s: percentile(&w, 0.95),
                speedup: base_mean / mean(&w),
                b_over_a,
                gamma: (speculated > 0).then(|| matched as f64 / speculated as f64),
                mean_stride: (!strides.is_empty())
                    .then(|| strides.iter().sum::<usize>() as f64 / strides.len() as f64),
                overlapped: (rounds > 0).then(|| overlapped as f64 / rounds as f64),
                retrieval_calls: runs.iter().map(|g| g.stats.retrieval_calls).sum::<usize>() as f64
                    / runs.len().max(1) as f64,
            }
        };
        let mut rows = vec![
            row("baseline".into(), &self.baseline),
            row("oracle floor".into(), &self.oracle),
        ];
        for (variant, runs) in variants.iter().zip(&self.spec) {
            rows.push(row(format!("RaLMSpec {}", variant.label()), runs));
        }
        rows
    }
}

fn walls(runs: &[Generation]) -> Vec<f64> {
    runs.iter().map(|g| g.stats.wall.as_secs_f64()).collect()
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

/// The `q` quantile (nearest rank) of `values`.
fn percentile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// The report as Markdown: the setting, then one table row per (retriever, size, engine).
pub fn markdown(report: &Value, rows: &[Row]) -> String {
    let mut out = format!(
        "RaLM latency per request: {} questions, model {}, {} (config {})\n\n",
        report["questions"], report["model"], report["machine"], report["config"]
    );
    out.push_str("| retriever | passages | engine | mean s | p50 s | p95 s | speed-up | b/a | γ | mean stride | async rounds | retriever calls |\n");
    out.push_str("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in rows {
        let opt = |v: Option<f64>, digits: usize| {
            v.map_or("–".to_string(), |v| format!("{v:.digits$}"))
        };
        out.push_str(&format!(
            "| {} | {}{} | {} | {:.2} | {:.2} | {:.2} | {:.2}× | {:.2} | {} | {} | {} | {:.1} |\n",
            r.retriever,
            r.passages,
            if r.padding.is_some() { " (padded)" } else { "" },
            r.engine,
            r.mean_s,
            r.p50_s,
            r.p95_s,
            r.speedup,
            r.b_over_a,
            opt(r.gamma, 2),
            opt(r.mean_stride, 1),
            r.overlapped
                .map_or("–".to_string(), |o| format!("{:.0}%", o * 100.0)),
            r.retrieval_calls
        ));
    }
    for padding in rows
        .iter()
        .filter_map(|r| r.padding.as_deref())
        .collect::<std::collections::BTreeSet<_>>()
    {
        out.push_str(&format!("\nPadding: {padding}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v = [5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(percentile(&v, 0.5), 3.0);
        assert_eq!(percentile(&v, 0.95), 5.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(mean(&v), 3.0);
    }
}
