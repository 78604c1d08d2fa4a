//! Small, dependency-free SVG charts for evaluation reports: a bar chart of one metric per
//! system, and a histogram of per-query differences between two systems.

use std::fmt::Write;

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 360.0;
const MARGIN_LEFT: f64 = 60.0;
const MARGIN_RIGHT: f64 = 20.0;
const MARGIN_TOP: f64 = 40.0;
const MARGIN_BOTTOM: f64 = 50.0;
const BAR: &str = "#4878a8";
const BEST: &str = "#d08030";

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn open(title: &str) -> String {
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         viewBox=\"0 0 {WIDTH} {HEIGHT}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    let _ = writeln!(
        svg,
        "<text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">{}</text>",
        WIDTH / 2.0,
        escape(title)
    );
    svg
}

/// Draws the y axis from 0 to `max` with 5 ticks, and the x axis line.
fn axes(svg: &mut String, max: f64, label: &str) {
    let plot_h = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM;
    for i in 0..=5 {
        let v = max * f64::from(i) / 5.0;
        let y = HEIGHT - MARGIN_BOTTOM - plot_h * f64::from(i) / 5.0;
        let _ = writeln!(
            svg,
            "<line x1=\"{MARGIN_LEFT}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            WIDTH - MARGIN_RIGHT,
            MARGIN_LEFT - 6.0,
            y + 4.0,
            trim(v)
        );
    }
    let _ = writeln!(
        svg,
        "<line x1=\"{MARGIN_LEFT}\" y1=\"{0:.1}\" x2=\"{1:.1}\" y2=\"{0:.1}\" stroke=\"black\"/>\
         <text x=\"16\" y=\"{2:.1}\" transform=\"rotate(-90 16 {2:.1})\" text-anchor=\"middle\">{3}</text>",
        HEIGHT - MARGIN_BOTTOM,
        WIDTH - MARGIN_RIGHT,
        MARGIN_TOP + plot_h / 2.0,
        escape(label)
    );
}

/// The smallest of 1, 2, 2.5 or 5 times a power of ten that is at least `x`: a round axis top.
fn nice_ceiling(x: f64) -> f64 {
    if x <= 0.0 || !x.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(x.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|v| *v >= x * (1.0 - 1e-12))
        .unwrap_or(10.0 * p)
}

fn trim(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// A bar per system with its value written above; the `best` system's bar is highlighted.
pub fn bar_chart(title: &str, metric: &str, systems: &[(String, f64)], best: &str) -> String {
    let mut svg = open(title);
    let max = systems.iter().map(|s| s.1).fold(0.0f64, f64::max);
    let top = if max > 0.0 {
        (max * 1.15).min(1.0).max(max)
    } else {
        1.0
    };
    axes(&mut svg, top, metric);
    let plot_w = WIDTH - MARGIN_LEFT - MARGIN_RIGHT;
    let plot_h = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM;
    let slot = plot_w / systems.len().max(1) as f64;
    for (i, (name, value)) in systems.iter().enumerate() {
        let h = plot_h * value / top;
        let x = MARGIN_LEFT + slot * i as f64 + slot * 0.2;
        let y = HEIGHT - MARGIN_BOTTOM - h;
        let color = if name == best { BEST } else { BAR };
        let _ = writeln!(
            svg,
            "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"{color}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{value:.4}</text>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            slot * 0.6,
            x + slot * 0.3,
            y - 5.0,
            x + slot * 0.3,
            HEIGHT - MARGIN_BOTTOM + 18.0,
            escape(name)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// A histogram of per-query differences in `[-1, 1]`: 21 bins of width 0.1 centred on
/// -1.0, -0.9, ..., +1.0, so that ties (difference 0) have a bin of their own in the middle.
pub fn difference_histogram(title: &str, axis: &str, diffs: &[f64]) -> String {
    const BINS: usize = 21;
    let mut counts = [0usize; BINS];
    for d in diffs {
        let bin = (d.clamp(-1.0, 1.0) * 10.0).round() + 10.0;
        counts[(bin.max(0.0) as usize).min(BINS - 1)] += 1;
    }
    let max = nice_ceiling(counts.iter().copied().max().unwrap_or(0).max(5) as f64);
    let mut svg = open(title);
    axes(&mut svg, max, "queries");
    let plot_w = WIDTH - MARGIN_LEFT - MARGIN_RIGHT;
    let plot_h = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM;
    let bin_w = plot_w / BINS as f64;
    for (i, &c) in counts.iter().enumerate() {
        let h = plot_h * c as f64 / max;
        let _ = writeln!(
            svg,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"{BAR}\"/>",
            MARGIN_LEFT + bin_w * i as f64 + 1.0,
            HEIGHT - MARGIN_BOTTOM - h,
            bin_w - 2.0
        );
    }
    for (v, bin) in [
        (-1.0, 0.0),
        (-0.5, 5.0),
        (0.0, 10.0),
        (0.5, 15.0),
        (1.0, 20.0),
    ] {
        let x = MARGIN_LEFT + bin_w * (bin + 0.5);
        let _ = writeln!(
            svg,
            "<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{v:+}</text>",
            HEIGHT - MARGIN_BOTTOM + 18.0
        );
    }
    let _ = writeln!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
        WIDTH / 2.0,
        HEIGHT - 12.0,
        escape(axis)
    );
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(haystack: &str, needle: &str) -> usize {
        haystack.matches(needle).count()
    }

    #[test]
    fn bar_chart_has_a_bar_per_system_and_escapes_names() {
        let svg = bar_chart(
            "nDCG@10 <test>",
            "ndcg@10",
            &[
                ("bm25".into(), 0.5),
                ("dense".into(), 0.25),
                ("a&b".into(), 0.0),
            ],
            "bm25",
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        // The background plus one rect per system.
        assert_eq!(count(&svg, "<rect"), 4);
        assert_eq!(count(&svg, BEST), 1);
        assert!(svg.contains("a&amp;b") && svg.contains("&lt;test&gt;"));
        assert!(svg.contains(">0.5000<"));
    }

    #[test]
    fn histogram_bins_every_difference_once() {
        // -0.04, 0.0 and 0.04 share the middle bin; 5 of them fill the axis (top = 5).
        let diffs = [-1.0, -0.04, 0.0, 0.0, 0.04, 0.04, 0.5, 1.0, 2.0];
        let svg = difference_histogram("t", "x", &diffs);
        assert_eq!(count(&svg, "<rect"), 1 + 21);
        let full = format!("height=\"{:.1}\"", HEIGHT - MARGIN_TOP - MARGIN_BOTTOM);
        assert_eq!(count(&svg, &full), 1, "{svg}");
    }

    #[test]
    fn axis_tops_are_round() {
        assert_eq!(nice_ceiling(0.77), 1.0);
        assert_eq!(nice_ceiling(0.19), 0.2);
        assert_eq!(nice_ceiling(211.0), 250.0);
        assert_eq!(nice_ceiling(5.0), 5.0);
        assert_eq!(nice_ceiling(0.0), 1.0);
    }
}
