//! The plot of `bench ralm`: RaLMSpec's speed-up against knowledge-base size, one line per
//! retriever (full RaLMSpec).

use std::collections::BTreeMap;

use super::summary::Row;

/// Speed-up of the last RaLMSpec variant of each group (full RaLMSpec) against passages,
/// log-scaled x; a dashed line marks 1×.
pub fn speedup_svg(rows: &[Row]) -> String {
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
    crate::plot::speedup_svg(
        "RaLMSpec (full) speed-up over the baseline",
        "knowledge-base passages (log scale)",
        &lines,
    )
}
