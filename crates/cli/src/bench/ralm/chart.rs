//! The plot of `bench ralm`: RaLMSpec's speed-up against knowledge-base size, one line per
//! retriever (full RaLMSpec); or, when each retriever was measured at one size only, every
//! engine's speed-up (the oracle floor and each variant) as bars.

use std::collections::BTreeMap;

use super::summary::Row;

/// Speed-up of the last RaLMSpec variant of each group (full RaLMSpec) against passages,
/// log-scaled x; a dashed line marks 1×. With one size per retriever: bars of every engine.
pub fn speedup_svg(rows: &[Row]) -> String {
    let mut sizes: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for r in rows {
        let s = sizes.entry(r.retriever.as_str()).or_default();
        if !s.contains(&r.passages) {
            s.push(r.passages);
        }
    }
    if sizes.values().all(|s| s.len() == 1) {
        return bars_svg(rows);
    }
    let mut lines: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    let mut last: BTreeMap<(&str, usize), f64> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.engine.starts_with("RaLMSpec")) {
        last.insert((r.retriever.as_str(), r.passages), r.speedup);
    }
    for ((retriever, passages), speedup) in last {
        lines
            .entry(retriever.to_string())
            .or_default()
            .push((passages as f64, speedup));
    }
    crate::bench::plot::speedup_svg(
        "RaLMSpec (full) speed-up over the baseline",
        "knowledge-base passages (log scale)",
        &lines,
    )
}

/// Every engine but the baseline, as bars, one group per (retriever, size).
fn bars_svg(rows: &[Row]) -> String {
    let mut groups: Vec<(String, Vec<(String, f64)>)> = Vec::new();
    for r in rows.iter().filter(|r| r.engine != "baseline") {
        let group = format!(
            "{}, {} passages (b/a {:.2})",
            r.retriever, r.passages, r.b_over_a
        );
        match groups.iter_mut().find(|(g, _)| *g == group) {
            Some((_, bars)) => bars.push((r.engine.clone(), r.speedup)),
            None => groups.push((group, vec![(r.engine.clone(), r.speedup)])),
        }
    }
    crate::bench::plot::bars_svg("Speed-up over the baseline (same run)", &groups)
}
