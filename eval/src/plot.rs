//! Small, dependency-free SVG charts for evaluation reports: a bar chart of one metric per
//! system, curves of several series (line chart, log axes optional), and a histogram of
//! per-query differences between two systems.

use std::fmt::Write;

pub(crate) const WIDTH: f64 = 640.0;
pub(crate) const HEIGHT: f64 = 360.0;
pub(crate) const MARGIN_LEFT: f64 = 60.0;
pub(crate) const MARGIN_RIGHT: f64 = 20.0;
pub(crate) const MARGIN_TOP: f64 = 40.0;
pub(crate) const MARGIN_BOTTOM: f64 = 50.0;
pub(crate) const BAR: &str = "#4878a8";
pub(crate) const BEST: &str = "#d08030";

/// `s` with the XML special characters escaped, for SVG text and attributes.
pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The opening `<svg>` tag, a white background and the title.
pub(crate) fn open(title: &str) -> String {
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
pub(crate) fn axes(svg: &mut String, max: f64, label: &str) {
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
pub(crate) fn nice_ceiling(x: f64) -> f64 {
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

/// `v` with 3 decimals at most and no trailing zeros.
pub(crate) fn trim(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Series colours, in order.
pub(crate) const COLORS: [&str; 8] = [
    BAR, BEST, "#50a050", "#c04848", "#8060b0", "#806040", "#d070b0", "#606060",
];

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

/// Curves of several named series of (x, y) points, each drawn in its own colour with its
/// points marked and named in a legend; either axis can be logarithmic (points with a value
/// of 0 or less on a log axis are left out). Axes span round numbers around the data (on a log
/// axis 1, 2 or 5 times a power of ten).
pub fn line_chart(
    title: &str,
    (x_label, log_x): (&str, bool),
    (y_label, log_y): (&str, bool),
    series: &[(String, Vec<(f64, f64)>)],
) -> String {
    let keep = |&(x, y): &(f64, f64)| {
        x.is_finite() && y.is_finite() && (!log_x || x > 0.0) && (!log_y || y > 0.0)
    };
    let points = || series.iter().flat_map(|s| s.1.iter().filter(|p| keep(p)));
    let range = |values: Vec<f64>, log: bool| -> (f64, f64, Vec<f64>) {
        let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if !lo.is_finite() {
            return (0.0, 1.0, vec![0.0, 1.0]);
        }
        if log {
            // 1, 2 and 5 times powers of ten, from the last one at or below the data to the
            // first one at or above it.
            let all: Vec<f64> = (lo.log10().floor() as i32..=hi.log10().ceil() as i32)
                .flat_map(|e| [1.0, 2.0, 5.0].map(|m| m * 10f64.powi(e)))
                .collect();
            let a = (all.iter().copied())
                .filter(|t| *t <= lo * (1.0 + 1e-9))
                .fold(f64::NAN, f64::max);
            let b = (all.iter().copied())
                .find(|t| *t >= hi * (1.0 - 1e-9))
                .unwrap_or(hi);
            let a = if a.is_finite() { a } else { lo };
            let b = if b > a { b } else { a * 10.0 };
            let ticks = all.into_iter().filter(|t| *t >= a && *t <= b).collect();
            return (a, b, ticks);
        }
        let step = nice_ceiling(((hi - lo) / 5.0).max(hi.abs() * 1e-3).max(1e-12));
        let (a, b) = ((lo / step).floor() * step, (hi / step).ceil() * step);
        let b = if b > a { b } else { a + step };
        let ticks = (0..=((b - a) / step).round() as usize)
            .map(|i| a + step * i as f64)
            .collect();
        (a, b, ticks)
    };
    let (x0, x1, x_ticks) = range(points().map(|p| p.0).collect(), log_x);
    let (y0, y1, y_ticks) = range(points().map(|p| p.1).collect(), log_y);
    let plot_w = WIDTH - MARGIN_LEFT - MARGIN_RIGHT;
    let plot_h = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM;
    let scale = |v: f64, lo: f64, hi: f64, log: bool| {
        if log {
            (v.log10() - lo.log10()) / (hi.log10() - lo.log10())
        } else {
            (v - lo) / (hi - lo)
        }
    };
    let px = |x: f64| MARGIN_LEFT + plot_w * scale(x, x0, x1, log_x);
    let py = |y: f64| HEIGHT - MARGIN_BOTTOM - plot_h * scale(y, y0, y1, log_y);
    // Tick labels: 1500 -> 1.5k, 2000000 -> 2M, so that wide values fit the margin.
    let short = |v: f64| match v.abs() {
        a if a >= 1e6 => format!("{}M", trim(v / 1e6)),
        a if a >= 1e4 => format!("{}k", trim(v / 1e3)),
        _ => trim(v),
    };
    let mut svg = open(title);
    for &t in &y_ticks {
        let _ = writeln!(
            svg,
            "<line x1=\"{MARGIN_LEFT}\" y1=\"{0:.1}\" x2=\"{1:.1}\" y2=\"{0:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{2:.1}\" y=\"{3:.1}\" text-anchor=\"end\">{4}</text>",
            py(t),
            WIDTH - MARGIN_RIGHT,
            MARGIN_LEFT - 6.0,
            py(t) + 4.0,
            short(t)
        );
    }
    for &t in &x_ticks {
        let _ = writeln!(
            svg,
            "<line x1=\"{0:.1}\" y1=\"{MARGIN_TOP}\" x2=\"{0:.1}\" y2=\"{1:.1}\" stroke=\"#eee\"/>\
             <text x=\"{0:.1}\" y=\"{2:.1}\" text-anchor=\"middle\">{3}</text>",
            px(t),
            HEIGHT - MARGIN_BOTTOM,
            HEIGHT - MARGIN_BOTTOM + 18.0,
            short(t)
        );
    }
    let _ = writeln!(
        svg,
        "<line x1=\"{MARGIN_LEFT}\" y1=\"{0:.1}\" x2=\"{1:.1}\" y2=\"{0:.1}\" stroke=\"black\"/>\
         <line x1=\"{MARGIN_LEFT}\" y1=\"{MARGIN_TOP}\" x2=\"{MARGIN_LEFT}\" y2=\"{0:.1}\" stroke=\"black\"/>\
         <text x=\"16\" y=\"{2:.1}\" transform=\"rotate(-90 16 {2:.1})\" text-anchor=\"middle\">{3}</text>\
         <text x=\"{4:.1}\" y=\"{5:.1}\" text-anchor=\"middle\">{6}</text>",
        HEIGHT - MARGIN_BOTTOM,
        WIDTH - MARGIN_RIGHT,
        MARGIN_TOP + plot_h / 2.0,
        escape(&format!("{y_label}{}", if log_y { " (log)" } else { "" })),
        MARGIN_LEFT + plot_w / 2.0,
        HEIGHT - 12.0,
        escape(&format!("{x_label}{}", if log_x { " (log)" } else { "" })),
    );
    for (i, (name, pts)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let pts: Vec<(f64, f64)> = pts.iter().copied().filter(keep).collect();
        let path: Vec<String> = pts
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        let _ = writeln!(
            svg,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"2\"/>",
            path.join(" ")
        );
        for &(x, y) in &pts {
            let _ = writeln!(
                svg,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{color}\"/>",
                px(x),
                py(y)
            );
        }
        let ly = MARGIN_TOP + 12.0 + 16.0 * i as f64;
        let lx = WIDTH - MARGIN_RIGHT - 130.0;
        let _ = writeln!(
            svg,
            "<line x1=\"{lx:.1}\" y1=\"{0:.1}\" x2=\"{1:.1}\" y2=\"{0:.1}\" stroke=\"{color}\" stroke-width=\"2\"/>\
             <text x=\"{2:.1}\" y=\"{3:.1}\">{4}</text>",
            ly,
            lx + 20.0,
            lx + 26.0,
            ly + 4.0,
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
    fn line_chart_draws_every_series_on_log_axes() {
        let series = vec![
            ("a<1>".to_string(), vec![(0.9, 1000.0), (0.99, 200.0)]),
            ("b".to_string(), vec![(0.8, 5000.0), (0.95, 0.0)]),
        ];
        let svg = line_chart("t", ("recall@10", false), ("QPS", true), &series);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(count(&svg, "<polyline"), 2);
        // The point at QPS 0 has no place on a log axis.
        assert_eq!(count(&svg, "<circle"), 3);
        assert!(svg.contains("a&lt;1&gt;") && svg.contains("QPS (log)"));
        // Ticks 200, 500, 1000, 2000, 5000 on y: round values around the data.
        assert!(svg.contains(">200<") && svg.contains(">5000<") && !svg.contains(">10k<"));
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
