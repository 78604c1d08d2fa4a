//! SVG charts for the ranking-manipulation (GEO) report, drawn with the helpers of
//! [`crate::plot`]:
//!
//! - [`promotion_chart`]: the top-1 promotion rate of each (attack, defense) pair with its
//!   bootstrap interval, bars grouped by attack.
//! - [`rank_distribution_chart`]: how the target's ranks are spread before and after the
//!   attack, for one pair.
//! - [`roc_chart`]: a detector's ROC curve, attacked texts against clean ones, with its AUC.
//!
//! Every chart is a complete SVG document; with nothing to draw it says "no data" (and why)
//! instead of failing.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::metrics::roc;
use super::record::TrialRecord;
use super::report::{GeoSummary, NO_ATTACK};
use crate::plot::{
    BAR, BEST, COLORS, HEIGHT, MARGIN_BOTTOM, MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, WIDTH, axes,
    escape, nice_ceiling, open, trim,
};

const PLOT_W: f64 = WIDTH - MARGIN_LEFT - MARGIN_RIGHT;
const PLOT_H: f64 = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM;
/// The defense name of undefended trials.
const NO_DEFENSE: &str = "none";
/// ROC curves with more points than this are drawn without point markers.
const MARKED_POINTS: usize = 30;
/// Rough width of a character of the 12px sans-serif labels, for laying out legends.
const CHAR_W: f64 = 7.0;

/// A chart with only its title and a centred "no data" note saying why.
fn no_data(title: &str, why: &str) -> String {
    let mut svg = open(title);
    let _ = writeln!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"14\" fill=\"#888\">\
         no data: {}</text>",
        WIDTH / 2.0,
        HEIGHT / 2.0,
        escape(why)
    );
    svg.push_str("</svg>\n");
    svg
}

/// A horizontal legend of colour swatches and names, centred at height `y`.
fn legend(svg: &mut String, y: f64, entries: &[(&str, &str)]) {
    let widths: Vec<f64> = entries
        .iter()
        .map(|(name, _)| 16.0 + CHAR_W * name.chars().count() as f64 + 14.0)
        .collect();
    let mut x = ((WIDTH - widths.iter().sum::<f64>()) / 2.0).max(4.0);
    for ((name, color), w) in entries.iter().zip(widths) {
        let _ = writeln!(
            svg,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"12\" height=\"12\" fill=\"{color}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            y - 10.0,
            x + 16.0,
            y,
            escape(name)
        );
        x += w;
    }
}

/// Names in order of first appearance.
fn first_seen<'a>(names: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for n in names {
        if !out.contains(&n) {
            out.push(n);
        }
    }
    out
}

/// Grouped bars of the top-1 promotion rate: a group per attack, in it a bar per defense (a
/// colour each, named in the legend under the chart), with the rate written above the bar and
/// its bootstrap interval as an error bar. Attacks and defenses keep the order in which they
/// first appear in `summaries`, except that the clean runs (attack [`NO_ATTACK`]) and the
/// undefended ones (defense `none`) come first; a pair without a summary leaves a gap.
pub fn promotion_chart(summaries: &[GeoSummary]) -> String {
    const TITLE: &str = "Top-1 promotion rate by attack and defense";
    if summaries.is_empty() {
        return no_data(TITLE, "no summaries");
    }
    let mut attacks = first_seen(summaries.iter().map(|s| s.attack.as_str()));
    let mut defenses = first_seen(summaries.iter().map(|s| s.defense.as_str()));
    // The baselines first (stable sorts: the others keep their order).
    attacks.sort_by_key(|a| *a != NO_ATTACK);
    defenses.sort_by_key(|d| *d != NO_DEFENSE);
    let by_pair: BTreeMap<(&str, &str), &GeoSummary> = summaries
        .iter()
        .map(|s| ((s.attack.as_str(), s.defense.as_str()), s))
        .collect();
    let color = |d: usize| COLORS[d % COLORS.len()];

    let mut svg = open(TITLE);
    axes(&mut svg, 1.0, "top-1 rate");
    let group_w = PLOT_W / attacks.len() as f64;
    let bar_w = group_w * 0.8 / defenses.len() as f64;
    let y_of = |rate: f64| HEIGHT - MARGIN_BOTTOM - PLOT_H * rate.clamp(0.0, 1.0);
    for (a, attack) in attacks.iter().enumerate() {
        let group_x = MARGIN_LEFT + group_w * a as f64;
        for (d, defense) in defenses.iter().enumerate() {
            let Some(s) = by_pair.get(&(*attack, *defense)) else {
                continue;
            };
            let rate = if s.top1.value.is_finite() {
                s.top1.value
            } else {
                0.0
            };
            let x = group_x + group_w * 0.1 + bar_w * d as f64;
            let centre = x + bar_w / 2.0;
            let top = y_of(rate);
            let _ = writeln!(
                svg,
                "<rect x=\"{x:.1}\" y=\"{top:.1}\" width=\"{:.1}\" height=\"{:.1}\" \
                 fill=\"{}\"><title>{} / {}: {rate:.3} [{:.3}, {:.3}] over {} trials</title>\
                 </rect>",
                (bar_w - 2.0).max(1.0),
                HEIGHT - MARGIN_BOTTOM - top,
                color(d),
                escape(attack),
                escape(defense),
                s.top1.ci.low,
                s.top1.ci.high,
                s.trials,
            );
            let (low, high) = (s.top1.ci.low, s.top1.ci.high);
            let mut label_y = top - 4.0;
            if low.is_finite() && high.is_finite() {
                let (y_low, y_high) = (y_of(low), y_of(high));
                let cap = (bar_w * 0.2).min(5.0);
                let _ = writeln!(
                    svg,
                    "<path d=\"M{centre:.1} {y_low:.1}V{y_high:.1}M{:.1} {y_low:.1}H{:.1}\
                     M{:.1} {y_high:.1}H{:.1}\" stroke=\"black\" fill=\"none\"/>",
                    centre - cap,
                    centre + cap,
                    centre - cap,
                    centre + cap
                );
                label_y = label_y.min(y_high - 4.0);
            }
            let _ = writeln!(
                svg,
                "<text x=\"{centre:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"10\">\
                 {rate:.2}</text>",
                label_y.max(MARGIN_TOP - 2.0)
            );
        }
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            group_x + group_w / 2.0,
            HEIGHT - MARGIN_BOTTOM + 16.0,
            escape(attack)
        );
    }
    let entries: Vec<(&str, &str)> = defenses
        .iter()
        .enumerate()
        .map(|(d, name)| (*name, color(d)))
        .collect();
    legend(&mut svg, HEIGHT - 10.0, &entries);
    svg.push_str("</svg>\n");
    svg
}

/// Side-by-side histograms of the target's rank before (clean text) and after (attacked
/// text) over the trials of one (attack, defense) pair: for each rank from 1 to the largest
/// one seen, the share of trials with the target there, before and after. The title gives the
/// trial count and the mean ranks.
pub fn rank_distribution_chart(records: &[TrialRecord], attack: &str, defense: &str) -> String {
    let title = format!("Target rank before and after: {attack} / {defense}");
    let trials: Vec<&TrialRecord> = records
        .iter()
        .filter(|r| r.attack == attack && r.defense == defense)
        .filter(|r| r.rank_before > 0 && r.rank_after > 0)
        .collect();
    if trials.is_empty() {
        return no_data(&title, "no trials of this attack and defense");
    }
    let max_rank = trials
        .iter()
        .map(|r| r.rank_before.max(r.rank_after))
        .max()
        .unwrap_or(1);
    let (mut before, mut after) = (vec![0usize; max_rank], vec![0usize; max_rank]);
    for r in &trials {
        before[r.rank_before - 1] += 1;
        after[r.rank_after - 1] += 1;
    }
    let n = trials.len() as f64;
    let mean = |f: fn(&TrialRecord) -> usize| trials.iter().map(|r| f(r) as f64).sum::<f64>() / n;
    let title = format!(
        "{title} ({} trials, mean rank {} → {})",
        trials.len(),
        trim((mean(|r| r.rank_before) * 100.0).round() / 100.0),
        trim((mean(|r| r.rank_after) * 100.0).round() / 100.0),
    );
    let share = |c: usize| c as f64 / n;
    let top = before
        .iter()
        .chain(&after)
        .map(|&c| share(c))
        .fold(0.0, f64::max);
    let top = nice_ceiling(top).min(1.0);

    let mut svg = open(&title);
    axes(&mut svg, top, "share of trials");
    let slot = PLOT_W / max_rank as f64;
    let bar_w = slot * 0.4;
    // Label every rank while they fit, else about 20 of them.
    let label_every = max_rank.div_ceil(20);
    for rank in 1..=max_rank {
        let x = MARGIN_LEFT + slot * (rank - 1) as f64 + slot * 0.1;
        for (i, (counts, color, when)) in [(&before, BAR, "before"), (&after, BEST, "after")]
            .into_iter()
            .enumerate()
        {
            let c = counts[rank - 1];
            let h = PLOT_H * share(c) / top;
            let _ = writeln!(
                svg,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" \
                 fill=\"{color}\"><title>rank {rank} {when}: {c} of {} trials</title></rect>",
                x + bar_w * i as f64,
                HEIGHT - MARGIN_BOTTOM - h,
                (bar_w - 1.0).max(0.5),
                trials.len(),
            );
        }
        if (rank - 1) % label_every == 0 || rank == max_rank {
            let _ = writeln!(
                svg,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{rank}</text>",
                x + bar_w,
                HEIGHT - MARGIN_BOTTOM + 16.0
            );
        }
    }
    let _ = writeln!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">rank of the target (1 = first)\
         </text>",
        MARGIN_LEFT + PLOT_W / 2.0,
        HEIGHT - MARGIN_BOTTOM + 32.0
    );
    legend(
        &mut svg,
        HEIGHT - 4.0,
        &[
            ("before (clean text)", BAR),
            ("after (attacked text)", BEST),
        ],
    );
    svg.push_str("</svg>\n");
    svg
}

/// The ROC curve of `detector`: the texts of attacked trials (attack other than
/// [`NO_ATTACK`]) are the positives, those of clean trials the negatives, each scored by the
/// detector's recorded score (trials without one are left out), through
/// [`roc`](super::metrics::roc). The AUC is in the title, and the dashed diagonal is a
/// detector that guesses; points are marked while there are at most [`MARKED_POINTS`].
/// Without scores on either side, or with a non-finite score, the chart says so.
pub fn roc_chart(records: &[TrialRecord], detector: &str) -> String {
    let (mut attacked, mut clean) = (Vec::new(), Vec::new());
    for r in records {
        if let Some(&score) = r.scores.get(detector) {
            if r.attack == NO_ATTACK {
                clean.push(score);
            } else {
                attacked.push(score);
            }
        }
    }
    let curve = match roc(&attacked, &clean) {
        Ok(curve) => curve,
        Err(e) => return no_data(&format!("ROC of {detector}"), &e.to_string()),
    };
    let mut svg = open(&format!(
        "ROC of {detector}: AUC {:.3} ({} attacked, {} clean texts)",
        curve.auc,
        attacked.len(),
        clean.len()
    ));
    let px = |fpr: f64| MARGIN_LEFT + PLOT_W * fpr;
    let py = |tpr: f64| HEIGHT - MARGIN_BOTTOM - PLOT_H * tpr;
    for i in 0..=5 {
        let v = f64::from(i) / 5.0;
        let _ = writeln!(
            svg,
            "<line x1=\"{MARGIN_LEFT}\" y1=\"{0:.1}\" x2=\"{1:.1}\" y2=\"{0:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{2:.1}\" y=\"{3:.1}\" text-anchor=\"end\">{4}</text>\
             <line x1=\"{5:.1}\" y1=\"{MARGIN_TOP}\" x2=\"{5:.1}\" y2=\"{6:.1}\" stroke=\"#eee\"/>\
             <text x=\"{5:.1}\" y=\"{7:.1}\" text-anchor=\"middle\">{4}</text>",
            py(v),
            px(1.0),
            MARGIN_LEFT - 6.0,
            py(v) + 4.0,
            trim(v),
            px(v),
            py(0.0),
            py(0.0) + 18.0,
        );
    }
    let _ = writeln!(
        svg,
        "<line x1=\"{0:.1}\" y1=\"{1:.1}\" x2=\"{2:.1}\" y2=\"{1:.1}\" stroke=\"black\"/>\
         <line x1=\"{0:.1}\" y1=\"{3:.1}\" x2=\"{0:.1}\" y2=\"{1:.1}\" stroke=\"black\"/>\
         <text x=\"16\" y=\"{4:.1}\" transform=\"rotate(-90 16 {4:.1})\" text-anchor=\"middle\">\
         true positive rate (attacked texts flagged)</text>\
         <text x=\"{5:.1}\" y=\"{6:.1}\" text-anchor=\"middle\">\
         false positive rate (clean texts flagged)</text>\
         <line x1=\"{0:.1}\" y1=\"{1:.1}\" x2=\"{2:.1}\" y2=\"{3:.1}\" stroke=\"#888\" \
         stroke-dasharray=\"5 4\"/>",
        px(0.0),
        py(0.0),
        px(1.0),
        py(1.0),
        MARGIN_TOP + PLOT_H / 2.0,
        MARGIN_LEFT + PLOT_W / 2.0,
        HEIGHT - 12.0,
    );
    let path: Vec<String> = curve
        .points
        .iter()
        .map(|p| format!("{:.1},{:.1}", px(p.fpr), py(p.tpr)))
        .collect();
    let _ = writeln!(
        svg,
        "<polyline points=\"{}\" fill=\"none\" stroke=\"{BAR}\" stroke-width=\"2\"/>",
        path.join(" ")
    );
    if curve.points.len() <= MARKED_POINTS {
        for p in &curve.points {
            let _ = writeln!(
                svg,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{BAR}\"><title>score &gt;= \
                 {}: {} of clean, {} of attacked texts flagged</title></circle>",
                px(p.fpr),
                py(p.tpr),
                trim(p.threshold),
                trim(p.fpr),
                trim(p.tpr),
            );
        }
    }
    // The legend sits bottom right, where a curve better than chance does not go.
    let (lx, ly) = (px(1.0) - 190.0, py(0.0) - 36.0);
    let _ = writeln!(
        svg,
        "<line x1=\"{lx:.1}\" y1=\"{ly:.1}\" x2=\"{0:.1}\" y2=\"{ly:.1}\" stroke=\"{BAR}\" \
         stroke-width=\"2\"/><text x=\"{1:.1}\" y=\"{2:.1}\">{3}</text>\
         <line x1=\"{lx:.1}\" y1=\"{4:.1}\" x2=\"{0:.1}\" y2=\"{4:.1}\" stroke=\"#888\" \
         stroke-dasharray=\"5 4\"/><text x=\"{1:.1}\" y=\"{5:.1}\">chance (AUC 0.5)</text>",
        lx + 20.0,
        lx + 26.0,
        ly + 4.0,
        escape(detector),
        ly + 16.0,
        ly + 20.0,
    );
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geo::metrics::BootstrapOptions;
    use crate::geo::report::summarize;

    /// Checks that `svg` is one `<svg>` element whose tags nest and close, and whose text
    /// holds no bare `<` or unknown entity. Returns the text content, joined by spaces.
    fn check_well_formed(svg: &str) -> String {
        assert!(svg.starts_with("<svg "), "{svg}");
        assert!(svg.trim_end().ends_with("</svg>"), "{svg}");
        let mut stack: Vec<String> = Vec::new();
        let mut text = Vec::new();
        let mut rest = svg;
        let mut closed_root = false;
        while let Some(lt) = rest.find('<') {
            let between = &rest[..lt];
            check_entities(between);
            if !between.trim().is_empty() {
                assert!(!stack.is_empty(), "text outside the root: {between:?}");
                text.push(between.trim().to_string());
            }
            let gt = rest[lt..].find('>').expect("a tag ends") + lt;
            let tag = &rest[lt + 1..gt];
            assert!(!tag.contains('<'), "'<' inside a tag: {tag:?}");
            assert!(!closed_root, "content after </svg>: {tag:?}");
            if let Some(name) = tag.strip_prefix('/') {
                let open = stack.pop().expect("a close tag has an open one");
                assert_eq!(open, name.trim(), "mismatched tags");
                closed_root = stack.is_empty();
            } else {
                check_entities(tag);
                assert_eq!(
                    tag.matches('"').count() % 2,
                    0,
                    "unbalanced quotes: {tag:?}"
                );
                let name: String = tag
                    .chars()
                    .take_while(|c| !c.is_whitespace() && *c != '/')
                    .collect();
                assert!(!name.is_empty(), "empty tag name");
                if !tag.ends_with('/') {
                    stack.push(name);
                }
            }
            rest = &rest[gt + 1..];
        }
        assert!(rest.trim().is_empty(), "trailing text {rest:?}");
        assert!(stack.is_empty() && closed_root, "unclosed: {stack:?}");
        text.join(" ")
    }

    fn check_entities(s: &str) {
        for (i, _) in s.match_indices('&') {
            let entity = &s[i..];
            assert!(
                ["&amp;", "&lt;", "&gt;", "&quot;"]
                    .iter()
                    .any(|e| entity.starts_with(e)),
                "bare & in {s:?}"
            );
        }
    }

    fn record(attack: &str, defense: &str, before: usize, after: usize) -> TrialRecord {
        TrialRecord {
            scenario: "s".into(),
            attack: attack.into(),
            defense: defense.into(),
            rank_before: before,
            rank_after: after,
            calls: 1,
            ..TrialRecord::default()
        }
    }

    fn scored(attack: &str, detector: &str, score: f64) -> TrialRecord {
        let mut r = record(attack, "none", 2, 2);
        r.scores.insert(detector.into(), score);
        r
    }

    fn records() -> Vec<TrialRecord> {
        let mut out = Vec::new();
        for (trial, (before, after)) in [(5, 1), (4, 1), (3, 5), (6, 6)].into_iter().enumerate() {
            for defense in ["none", "detect<&>"] {
                let mut r = record("suffix", defense, before, after);
                r.trial = trial as u64;
                out.push(r);
            }
        }
        let mut r = record("a&b", "none", 2, 1);
        r.trial = 9;
        out.push(r);
        out
    }

    fn count(haystack: &str, needle: &str) -> usize {
        haystack.matches(needle).count()
    }

    #[test]
    fn promotion_chart_groups_bars_by_attack_with_a_legend() -> anyhow::Result<()> {
        let options = BootstrapOptions {
            resamples: 50,
            ..BootstrapOptions::default()
        };
        let summaries = summarize(&records(), &options)?;
        // Pairs: (a&b, none), (suffix, detect<&>), (suffix, none).
        assert_eq!(summaries.len(), 3);
        let svg = promotion_chart(&summaries);
        let text = check_well_formed(&svg);
        assert!(text.contains("Top-1 promotion rate"), "{text}");
        // Group labels and legend entries, escaped.
        assert!(
            text.contains("a&amp;b") && text.contains("suffix"),
            "{text}"
        );
        assert!(text.contains("detect&lt;&amp;&gt;"), "{text}");
        // The background, 3 bars and 2 legend swatches; one error bar per bar.
        assert_eq!(count(&svg, "<rect"), 1 + 3 + 2);
        assert_eq!(count(&svg, "<path"), 3);
        // suffix: 2 of 4 trials first; a&b: 1 of 1.
        assert!(text.contains("0.50") && text.contains("1.00"), "{text}");
        // Bars of one defense share its colour: 2 bars + 1 swatch of the first defense.
        assert_eq!(count(&svg, &format!("fill=\"{}\"", COLORS[0])), 3);
        Ok(())
    }

    #[test]
    fn promotion_chart_puts_the_baselines_first() -> anyhow::Result<()> {
        let records: Vec<TrialRecord> = [("a", "all"), ("none", "all"), ("a", "none")]
            .into_iter()
            .map(|(attack, defense)| record(attack, defense, 2, 1))
            .collect();
        let options = BootstrapOptions {
            resamples: 10,
            ..BootstrapOptions::default()
        };
        let svg = promotion_chart(&summarize(&records, &options)?);
        let text = check_well_formed(&svg);
        assert!(text.contains("none / all"), "{text}");
        // Group labels (centred under the groups): none, then a.
        let at = |needle: &str| svg.find(needle).unwrap_or(usize::MAX);
        assert!(
            at("\"middle\">none</text>") < at("\"middle\">a</text>"),
            "{svg}"
        );
        // Legend (under the axis): none, then all.
        let legend_y = format!("y=\"{:.1}\"", HEIGHT - 10.0);
        assert!(
            at(&format!("{legend_y}>none</text>")) < at(&format!("{legend_y}>all</text>")),
            "{svg}"
        );
        assert_ne!(at(&format!("{legend_y}>all</text>")), usize::MAX, "{svg}");
        Ok(())
    }

    #[test]
    fn promotion_chart_without_summaries_says_no_data() {
        let svg = promotion_chart(&[]);
        let text = check_well_formed(&svg);
        assert!(text.contains("no data"), "{text}");
    }

    #[test]
    fn rank_distribution_chart_draws_before_and_after_per_rank() {
        let records = records();
        let svg = rank_distribution_chart(&records, "suffix", "none");
        let text = check_well_formed(&svg);
        // Ranks 1..=6, two bars each, plus the background and 2 legend swatches.
        assert_eq!(count(&svg, "<rect"), 1 + 12 + 2);
        assert!(text.contains("4 trials, mean rank 4.5 → 3.25"), "{text}");
        assert!(text.contains("before (clean text)") && text.contains("after (attacked text)"));
        // Rank 1 after holds 2 of 4 trials, the largest share: its bar fills the axis (top 0.5).
        assert!(svg.contains("rank 1 after: 2 of 4 trials"), "{svg}");
        let full = format!("height=\"{PLOT_H:.1}\"");
        assert_eq!(count(&svg, &full), 1, "one bar reaches the top (share 0.5)");
        assert!(
            text.split(' ').any(|w| w == "6"),
            "rank 6 is labelled: {text}"
        );
        // Names are escaped in the title.
        let svg = rank_distribution_chart(&records, "suffix", "detect<&>");
        let text = check_well_formed(&svg);
        assert!(text.contains("suffix / detect&lt;&amp;&gt;"), "{text}");
    }

    #[test]
    fn rank_distribution_chart_without_trials_says_no_data() {
        for records in [Vec::new(), records()] {
            let svg = rank_distribution_chart(&records, "nothing", "none");
            let text = check_well_formed(&svg);
            assert!(text.contains("no data"), "{text}");
        }
    }

    #[test]
    fn rank_labels_thin_out_on_long_lists() {
        let records: Vec<TrialRecord> = (1..=100).map(|r| record("x", "none", r, 1)).collect();
        let svg = rank_distribution_chart(&records, "x", "none");
        check_well_formed(&svg);
        // Every 5th rank (1, 6, ..., 96) and the last: 21 labels.
        // Besides the axis titles (y and x).
        assert_eq!(count(&svg, "text-anchor=\"middle\">") - 2, 21, "{svg}");
    }

    #[test]
    fn roc_chart_has_the_curve_and_the_auc() {
        // Attacked 0.9, 0.8, 0.7, 0.1 against clean 0.2, 0.1: AUC 6.5 / 8 = 0.8125.
        let mut records: Vec<TrialRecord> = [0.9, 0.8, 0.7, 0.1]
            .into_iter()
            .map(|s| scored("suffix", "ppl", s))
            .chain([0.2, 0.1].into_iter().map(|s| scored(NO_ATTACK, "ppl", s)))
            .collect();
        // A trial without a score of this detector is left out.
        records.push(scored("suffix", "other", 5.0));
        let svg = roc_chart(&records, "ppl");
        let text = check_well_formed(&svg);
        assert!(
            text.contains("ROC of ppl: AUC 0.812 (4 attacked, 2 clean texts)")
                || text.contains("ROC of ppl: AUC 0.813 (4 attacked, 2 clean texts)"),
            "{text}"
        );
        assert!(text.contains("false positive rate") && text.contains("chance"));
        // One curve through thresholds +inf, 0.9, 0.8, 0.7, 0.2, 0.1; (fpr, tpr) at 0.2 is
        // (0.5, 0.75).
        assert_eq!(count(&svg, "<polyline"), 1);
        assert_eq!(count(&svg, "<circle"), 6);
        assert!(
            svg.contains("score &gt;= 0.2: 0.5 of clean, 0.75 of attacked"),
            "{svg}"
        );
        // Without markers when the curve has many points.
        let many: Vec<TrialRecord> = (0..40)
            .map(|i| scored("suffix", "ppl", f64::from(i)))
            .chain([scored(NO_ATTACK, "ppl", 0.5)])
            .collect();
        let svg = roc_chart(&many, "ppl");
        check_well_formed(&svg);
        assert_eq!(count(&svg, "<circle"), 0);
    }

    #[test]
    fn roc_chart_without_both_sides_says_no_data() {
        let only_attacked = vec![scored("suffix", "ppl", 1.0)];
        let text = check_well_formed(&roc_chart(&only_attacked, "ppl"));
        assert!(text.contains("no data: no scores of clean texts"), "{text}");
        let text = check_well_formed(&roc_chart(&[], "a<b"));
        assert!(text.contains("ROC of a&lt;b"), "{text}");
        assert!(
            text.contains("no data: no scores of attacked texts"),
            "{text}"
        );
    }

    #[test]
    fn the_checker_catches_broken_svg() {
        for bad in [
            "<svg a=\"1\"><g></svg>",
            "<svg a=\"1\"><text>a < b</text></svg>",
            "<svg a=\"1\"><text>a & b</text></svg>",
            "<svg a=\"1\"></svg><g/>",
        ] {
            let caught = std::panic::catch_unwind(|| check_well_formed(bad)).is_err();
            assert!(caught, "{bad}");
        }
    }
}
