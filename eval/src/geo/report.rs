//! Summaries of a ranking-manipulation run, one per (attack, defense) pair, and their
//! Markdown table.
//!
//! [`GeoSummary::new`] computes every metric of [`super::metrics`] over one pair's trials, each
//! rate with its bootstrap interval (all drawn with the same [`BootstrapOptions`], recorded in
//! the summary). [`summarize`] groups trial records by pair and pairs each attack with the
//! clean trials (attack [`NO_ATTACK`]) of the same defense for the detectors' AUC.
//! [`markdown_table`] renders summaries for a report.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use serde::{Deserialize, Serialize};

use super::metrics::{
    BootstrapOptions, Estimate, GeoMetricsError, RankStats, TrialOutcome, TrialStat,
    calls_per_trial, check_trials, detection_rates, detector_aucs, estimate, rank_stats,
};
use super::record::TrialRecord;

/// The attack name of clean trials, which the detectors' AUC compares attacked texts with.
pub const NO_ATTACK: &str = "none";

/// The metrics of one (attack, defense) pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeoSummary {
    /// Attack name.
    pub attack: String,
    /// Defense name.
    pub defense: String,
    /// Trials summarised.
    pub trials: usize,
    /// Distinct scenarios among them.
    pub scenarios: usize,
    /// Mean and median ranks before and after the attack.
    pub ranks: RankStats,
    /// Share of trials with the target first after the attack.
    pub top1: Estimate,
    /// Share with the target in the top 3 after the attack.
    pub top3: Estimate,
    /// Share where the target moved up.
    pub improved: Estimate,
    /// Share where the target moved down.
    pub worsened: Estimate,
    /// Improved share minus worsened share.
    pub advantage: Estimate,
    /// Mean of `rank_before - rank_after` (positive: moved up).
    pub mean_rank_gain: Estimate,
    /// Mean calls per trial.
    pub calls_per_trial: f64,
    /// Share of trials each detector flagged, by detector.
    pub detection: BTreeMap<String, f64>,
    /// Each detector's ROC AUC, attacked versus clean texts (empty without clean trials).
    pub detector_auc: BTreeMap<String, f64>,
    /// Mean log-perplexity of the texts the ranker read, when measured (fluency: lower reads
    /// more naturally).
    #[serde(default)]
    pub log_perplexity: Option<f64>,
    /// Mean similarity of the attacked texts to the clean ones, when measured.
    #[serde(default)]
    pub similarity: Option<f64>,
    /// How the intervals were drawn.
    pub bootstrap: BootstrapOptions,
}

impl GeoSummary {
    /// Summarises `trials` of one pair. `clean`, when given, are trials of the same defense
    /// without attack, whose detector scores the AUC compares with. Errors on no trials, a
    /// 0 rank, bad bootstrap options or a non-finite detector score.
    pub fn new(
        attack: impl Into<String>,
        defense: impl Into<String>,
        trials: &[TrialOutcome],
        clean: Option<&[TrialOutcome]>,
        bootstrap: &BootstrapOptions,
    ) -> Result<GeoSummary, GeoMetricsError> {
        check_trials(trials)?;
        let est = |stat| estimate(trials, stat, bootstrap);
        let detector_auc = match clean {
            Some(clean) => detector_aucs(trials, clean)?,
            None => BTreeMap::new(),
        };
        Ok(GeoSummary {
            attack: attack.into(),
            defense: defense.into(),
            trials: trials.len(),
            scenarios: trials
                .iter()
                .map(|t| t.scenario.as_str())
                .collect::<BTreeSet<_>>()
                .len(),
            ranks: rank_stats(trials)?,
            top1: est(TrialStat::TopK(1))?,
            top3: est(TrialStat::TopK(3))?,
            improved: est(TrialStat::Improved)?,
            worsened: est(TrialStat::Worsened)?,
            advantage: est(TrialStat::Advantage)?,
            mean_rank_gain: est(TrialStat::RankGain)?,
            calls_per_trial: calls_per_trial(trials)?,
            detection: detection_rates(trials),
            detector_auc,
            log_perplexity: None,
            similarity: None,
            bootstrap: *bootstrap,
        })
    }
}

/// One summary per (attack, defense) pair in `records`, sorted by attack then defense. Each
/// attacked pair's detector AUC compares it with the [`NO_ATTACK`] trials of its defense, when
/// there are some; the clean pairs get none.
pub fn summarize(
    records: &[TrialRecord],
    bootstrap: &BootstrapOptions,
) -> Result<Vec<GeoSummary>, GeoMetricsError> {
    let mut groups: BTreeMap<(&str, &str), Vec<TrialOutcome>> = BTreeMap::new();
    // (fluency values, similarity values) per pair.
    type Measured = (Vec<f64>, Vec<f64>);
    let mut measured: BTreeMap<(&str, &str), Measured> = BTreeMap::new();
    for r in records {
        let key = (r.attack.as_str(), r.defense.as_str());
        groups.entry(key).or_default().push(r.outcome());
        let (fluency, semantic) = measured.entry(key).or_default();
        fluency.extend(r.fluency);
        semantic.extend(r.semantic);
    }
    let mean_of = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    groups
        .iter()
        .map(|(&(attack, defense), trials)| {
            let clean = if attack == NO_ATTACK {
                None
            } else {
                groups.get(&(NO_ATTACK, defense)).map(Vec::as_slice)
            };
            let mut summary = GeoSummary::new(attack, defense, trials, clean, bootstrap)?;
            if let Some((fluency, semantic)) = measured.get(&(attack, defense)) {
                summary.log_perplexity = mean_of(fluency);
                summary.similarity = mean_of(semantic);
            }
            Ok(summary)
        })
        .collect()
}

/// A Markdown table of the summaries, one row each in the given order. Columns: attack,
/// defense, trials, top-1 rate with its interval, top-3 rate, advantage with its interval
/// (signed), mean rank before → after, calls per trial, mean log-perplexity and similarity
/// (`-` when not measured), and per detector its detection rate
/// (with the AUC when known), `-` without detectors. Rates, ranks and AUCs have 2 decimals,
/// calls 1. A `|` in a name is escaped.
pub fn markdown_table(summaries: &[GeoSummary]) -> String {
    let mut out = String::from(
        "| attack | defense | trials | top-1 rate [CI] | top-3 rate | advantage [CI] \
         | mean rank before → after | calls/trial | log-ppl | similarity | detection rates |\n\
         |---|---|---:|---|---:|---|---|---:|---:|---:|---|\n",
    );
    for s in summaries {
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.2} [{:.2}, {:.2}] | {:.2} | {:+.2} [{:+.2}, {:+.2}] \
             | {:.2} → {:.2} | {:.1} | {} | {} | {} |",
            escape(&s.attack),
            escape(&s.defense),
            s.trials,
            unsigned_zero(s.top1.value),
            unsigned_zero(s.top1.ci.low),
            unsigned_zero(s.top1.ci.high),
            unsigned_zero(s.top3.value),
            unsigned_zero(s.advantage.value),
            unsigned_zero(s.advantage.ci.low),
            unsigned_zero(s.advantage.ci.high),
            s.ranks.mean_before,
            s.ranks.mean_after,
            s.calls_per_trial,
            optional(s.log_perplexity),
            optional(s.similarity),
            detection_cell(s),
        );
    }
    out
}

/// `name rate (AUC x)` per detector, comma-separated; `-` when there are none.
fn detection_cell(s: &GeoSummary) -> String {
    let names: BTreeSet<&String> = s.detection.keys().chain(s.detector_auc.keys()).collect();
    if names.is_empty() {
        return "-".into();
    }
    names
        .into_iter()
        .map(|name| {
            let rate = s.detection.get(name);
            let auc = s.detector_auc.get(name);
            match (rate, auc) {
                (Some(r), Some(a)) => format!("{} {r:.2} (AUC {a:.2})", escape(name)),
                (Some(r), None) => format!("{} {r:.2}", escape(name)),
                (None, Some(a)) => format!("{} AUC {a:.2}", escape(name)),
                (None, None) => escape(name),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `x` with 2 decimals, `-` when not measured.
fn optional(x: Option<f64>) -> String {
    x.map_or("-".into(), |x| format!("{:.2}", unsigned_zero(x)))
}

/// `-0.0` as `0.0`, so that no `-0.00` or `+-0.00` is printed.
fn unsigned_zero(x: f64) -> f64 {
    x + 0.0
}

fn escape(s: &str) -> String {
    s.replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(
        scenario: &str,
        attack: &str,
        trial: u64,
        before: usize,
        after: usize,
    ) -> TrialRecord {
        TrialRecord {
            scenario: scenario.into(),
            attack: attack.into(),
            defense: "none".into(),
            trial,
            rank_before: before,
            rank_after: after,
            calls: 10,
            ..TrialRecord::default()
        }
    }

    #[test]
    fn summaries_and_their_table() -> anyhow::Result<()> {
        // Attack "suffix": 5->1, 4->1, 3->5, 6->6 over scenarios a, b.
        //   top-1 2/4 = 0.50; top-3 2/4 = 0.50; improved 2/4, worsened 1/4: advantage +0.25;
        //   mean ranks (5+4+3+6)/4 = 4.50 -> (1+1+5+6)/4 = 3.25; calls 10.
        // Clean runs ("none"): 2->2 twice: top-1 0, advantage 0, ranks 2 -> 2.
        let mut records = vec![
            record("a", "suffix", 0, 5, 1),
            record("a", "suffix", 1, 4, 1),
            record("b", "suffix", 0, 3, 5),
            record("b", "suffix", 1, 6, 6),
            record("a", NO_ATTACK, 0, 2, 2),
            record("b", NO_ATTACK, 0, 2, 2),
        ];
        // Detector "ppl": flags suffix trials 0, 1, 2 and scores them 0.9, 0.8, 0.7, 0.1;
        // clean texts score 0.2 and 0.1 and one is flagged.
        // AUC pairs: 0.9, 0.8, 0.7 beat both clean (6); 0.1 loses to 0.2 and ties 0.1 (0.5):
        // 6.5 / 8 = 0.8125 -> "0.81".
        for (r, (flag, score)) in records.iter_mut().zip([
            (true, 0.9),
            (true, 0.8),
            (true, 0.7),
            (false, 0.1),
            (true, 0.2),
            (false, 0.1),
        ]) {
            r.flags.insert("ppl".into(), flag);
            r.scores.insert("ppl".into(), score);
        }
        // The intervals are random draws: checked below to hold the estimates, and fixed by
        // hand for the table.
        let options = BootstrapOptions {
            resamples: 200,
            seed: 0,
            level: 0.9,
        };
        let summaries = summarize(&records, &options)?;
        assert_eq!(summaries.len(), 2);
        let (clean, suffix) = (&summaries[0], &summaries[1]);
        assert_eq!(
            (clean.attack.as_str(), suffix.attack.as_str()),
            ("none", "suffix")
        );
        assert_eq!((suffix.trials, suffix.scenarios), (4, 2));
        assert_eq!(suffix.top1.value, 0.5);
        assert_eq!(suffix.top3.value, 0.5);
        assert_eq!(suffix.advantage.value, 0.25);
        assert_eq!(suffix.worsened.value, 0.25);
        assert_eq!(suffix.mean_rank_gain.value, 1.25);
        assert_eq!(
            (suffix.ranks.mean_before, suffix.ranks.mean_after),
            (4.5, 3.25)
        );
        assert_eq!(suffix.detection["ppl"], 0.75);
        assert_eq!(suffix.detector_auc["ppl"], 0.8125);
        assert!(clean.detector_auc.is_empty());
        assert_eq!(clean.detection["ppl"], 0.5);
        for e in [suffix.top1, suffix.advantage, suffix.mean_rank_gain] {
            assert!(e.ci.low <= e.value && e.value <= e.ci.high, "{e:?}");
        }

        // The table, with intervals fixed by hand so the expected text is exact.
        let mut fixed = summaries.clone();
        fixed[1].top1.ci.low = 0.25;
        fixed[1].top1.ci.high = 0.75;
        fixed[1].advantage.ci.low = -0.25;
        fixed[1].advantage.ci.high = 0.75;
        fixed[0].top1.ci.low = 0.0;
        fixed[0].top1.ci.high = 0.0;
        fixed[0].advantage.ci.low = -0.0;
        fixed[0].advantage.ci.high = 0.0;
        fixed[0].attack = "none|x".into();
        fixed[0].detection.clear();
        fixed[1].log_perplexity = Some(3.5);
        fixed[1].similarity = Some(0.9);
        let expected = "\
| attack | defense | trials | top-1 rate [CI] | top-3 rate | advantage [CI] | mean rank before → after | calls/trial | log-ppl | similarity | detection rates |
|---|---|---:|---|---:|---|---|---:|---:|---:|---|
| none\\|x | none | 2 | 0.00 [0.00, 0.00] | 1.00 | +0.00 [+0.00, +0.00] | 2.00 → 2.00 | 10.0 | - | - | - |
| suffix | none | 4 | 0.50 [0.25, 0.75] | 0.50 | +0.25 [-0.25, +0.75] | 4.50 → 3.25 | 10.0 | 3.50 | 0.90 | ppl 0.75 (AUC 0.81) |
";
        assert_eq!(markdown_table(&fixed), expected);
        assert_eq!(
            markdown_table(&[]),
            "| attack | defense | trials | top-1 rate [CI] | top-3 rate | advantage [CI] | mean rank before → after | calls/trial | log-ppl | similarity | detection rates |\n|---|---|---:|---|---:|---|---|---:|---:|---:|---|\n"
        );
        Ok(())
    }

    #[test]
    fn summaries_round_trip_through_json() -> anyhow::Result<()> {
        let records = vec![
            record("a", "suffix", 0, 3, 1),
            record("a", "suffix", 1, 2, 2),
        ];
        let options = BootstrapOptions {
            resamples: 50,
            ..BootstrapOptions::default()
        };
        let s = summarize(&records, &options)?;
        let json = serde_json::to_string(&s)?;
        let back: Vec<GeoSummary> = serde_json::from_str(&json)?;
        assert_eq!(back, s);
        Ok(())
    }

    #[test]
    fn no_trials_is_an_error() {
        let options = BootstrapOptions::default();
        assert_eq!(
            GeoSummary::new("a", "d", &[], None, &options),
            Err(GeoMetricsError::NoTrials)
        );
        assert_eq!(summarize(&[], &options), Ok(Vec::new()));
    }
}
