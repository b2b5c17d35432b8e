//! SVG plots of speed-ups, written by hand (no plotting dependency for a few charts): line
//! plots (one line per series, log-scaled x) and grouped bar charts, each with a dashed line
//! at 1×.

use std::collections::BTreeMap;
use std::fmt::Write;

const W: f64 = 720.0;
const H: f64 = 400.0;
const MARGIN: f64 = 60.0;
const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
];

/// A plot of `lines` (label → (x, speed-up) points; x > 0, drawn on a log scale).
pub fn speedup_svg(
    title: &str,
    x_label: &str,
    lines: &BTreeMap<String, Vec<(f64, f64)>>,
) -> String {
    let xs: Vec<f64> = lines.values().flatten().map(|p| p.0.log10()).collect();
    let ys: Vec<f64> = lines.values().flatten().map(|p| p.1).collect();
    let (x0, x1) = span(&xs, 0.5);
    let (_, y1) = span(&ys, 0.5);
    let (y0, y1) = (0.0, y1.max(2.0));
    let px = |x: f64| MARGIN + (x.log10() - x0) / (x1 - x0) * (W - 2.0 * MARGIN);
    let py = |y: f64| H - MARGIN - (y - y0) / (y1 - y0) * (H - 2.0 * MARGIN);

    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"20\" text-anchor=\"middle\" font-size=\"14\">{title}</text>\n",
        W / 2.0
    );
    // Axes, ticks at powers of ten and at whole speed-ups.
    let _ = writeln!(
        svg,
        "<line x1=\"{m}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"black\"/><line x1=\"{m}\" y1=\"{t}\" x2=\"{m}\" y2=\"{b}\" stroke=\"black\"/>",
        m = MARGIN,
        b = H - MARGIN,
        r = W - MARGIN,
        t = MARGIN
    );
    for e in x0.ceil() as i32..=x1.floor() as i32 {
        let x = px(10f64.powi(e));
        let _ = writeln!(
            svg,
            "<text x=\"{x}\" y=\"{}\" text-anchor=\"middle\">1e{e}</text>",
            H - MARGIN + 18.0
        );
    }
    for s in 0..=y1.floor() as usize {
        let y = py(s as f64);
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{s}×</text>",
            MARGIN - 6.0,
            y + 4.0
        );
    }
    let _ = writeln!(
        svg,
        "<line x1=\"{MARGIN}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"gray\" stroke-dasharray=\"4 4\"/>",
        W - MARGIN,
        y = py(1.0)
    );
    let _ = writeln!(
        svg,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{x_label}</text>",
        W / 2.0,
        H - 15.0
    );
    for (i, (label, points)) in lines.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let path: Vec<String> = points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        let _ = writeln!(
            svg,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"2\"/>",
            path.join(" ")
        );
        for &(x, y) in points {
            let _ = writeln!(
                svg,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"{color}\"><title>{label} {x}: {y:.2}×</title></circle>",
                px(x),
                py(y)
            );
        }
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"{}\" fill=\"{color}\">{label}</text>",
            MARGIN + 10.0,
            MARGIN + 16.0 * i as f64
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// How a bar chart's values read: their unit, the grid step, the least axis maximum and where
/// a dashed reference line goes (1× for speed-ups).
pub struct BarScale {
    pub unit: &'static str,
    pub step: f64,
    pub min_max: f64,
    pub reference: Option<f64>,
}

impl BarScale {
    /// Speed-ups: a grid line every 1×, at least up to 2×, dashed at 1×.
    pub const SPEEDUP: BarScale = BarScale {
        unit: "×",
        step: 1.0,
        min_max: 2.0,
        reference: Some(1.0),
    };
    /// Percentages: a grid line every 10, up to the one above the largest value.
    pub const PERCENT: BarScale = BarScale {
        unit: "%",
        step: 10.0,
        min_max: 10.0,
        reference: None,
    };
}

/// Horizontal bars of speed-ups: one block per group (its title above it), one bar per
/// (label, speed-up) with its value written at its end; a dashed line marks 1×.
pub fn bars_svg(title: &str, groups: &[(String, Vec<(String, f64)>)]) -> String {
    scaled_bars_svg(title, groups, &BarScale::SPEEDUP)
}

/// Horizontal bars of values read by `scale`, laid out as [`bars_svg`].
pub fn scaled_bars_svg(
    title: &str,
    groups: &[(String, Vec<(String, f64)>)],
    scale: &BarScale,
) -> String {
    const BAR: f64 = 22.0;
    const LABEL: f64 = 230.0;
    let unit = scale.unit;
    let bars: usize = groups.iter().map(|(_, b)| b.len()).sum();
    let h = MARGIN + (bars as f64 + 1.5 * groups.len() as f64) * BAR + MARGIN;
    let max = (groups
        .iter()
        .flat_map(|(_, b)| b.iter().map(|p| p.1))
        .fold(scale.min_max, f64::max)
        / scale.step)
        .ceil()
        * scale.step;
    let px = |v: f64| LABEL + v / max * (W - LABEL - MARGIN);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"20\" text-anchor=\"middle\" font-size=\"14\">{title}</text>\n",
        W / 2.0
    );
    let bottom = h - MARGIN + 4.0;
    for i in 0..=(max / scale.step).round() as usize {
        let s = i as f64 * scale.step;
        let x = px(s);
        let reference = scale.reference == Some(s);
        let _ = writeln!(
            svg,
            "<line x1=\"{x:.1}\" y1=\"{MARGIN}\" x2=\"{x:.1}\" y2=\"{bottom}\" stroke=\"{}\" {}/><text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{s}{unit}</text>",
            if reference { "gray" } else { "#e0e0e0" },
            if reference {
                "stroke-dasharray=\"4 4\""
            } else {
                ""
            },
            bottom + 16.0
        );
    }
    let mut y = MARGIN;
    for (g, (group, bars)) in groups.iter().enumerate() {
        let _ = writeln!(
            svg,
            "<text x=\"10\" y=\"{:.1}\" font-weight=\"bold\">{group}</text>",
            y + BAR * 0.9
        );
        y += 1.5 * BAR;
        for (label, value) in bars {
            let color = COLORS[g % COLORS.len()];
            let _ = writeln!(
                svg,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{label}</text>\
                 <rect x=\"{LABEL}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{color}\"><title>{label}: {value:.2}{unit}</title></rect>\
                 <text x=\"{:.1}\" y=\"{:.1}\">{value:.2}{unit}</text>",
                LABEL - 8.0,
                y + BAR * 0.65,
                y + 3.0,
                px(*value) - LABEL,
                BAR - 6.0,
                px(*value) + 4.0,
                y + BAR * 0.65,
            );
            y += BAR;
        }
    }
    svg.push_str("</svg>\n");
    svg
}

/// The range of `values` widened by `pad` on each side (a unit range around a single value).
fn span(values: &[f64], pad: f64) -> (f64, f64) {
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    (lo - pad, hi + pad)
}
