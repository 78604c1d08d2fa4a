//! Metrics of a ranking-manipulation run, over per-trial outcomes.
//!
//! A trial shows a ranker the scenario's candidates twice, with the target's clean text and
//! with its attacked text, and records the target's 1-based rank each time
//! ([`TrialOutcome`]). Over a set of trials:
//!
//! - **Ranks**: mean and median rank before and after ([`RankStats`]); the *rank gain* of a
//!   trial is `rank_before - rank_after` (positive: the target moved up).
//! - **Rates** (shares of trials): top-1 after (`rank_after == 1`), top-k after, improved
//!   (`rank_after < rank_before`), worsened; **advantage** = improved share − worsened share,
//!   in [-1, 1], which is the mean of `sign(rank gain)`.
//! - **Confidence intervals**: percentile bootstrap ([`bootstrap_ci`]): `resamples` samples of
//!   the trials drawn with replacement by [`SplitMix64`] from the given seed, the statistic of
//!   each, and the `(1 - level) / 2` and `(1 + level) / 2` quantiles of those ([`quantile`]:
//!   linear interpolation between order statistics, R's type 7). Every statistic with the same
//!   options draws the same resamples (same seed, same trial count), so the intervals of one
//!   summary are computed on the same bootstrap worlds. Trials are resampled individually:
//!   trials of one scenario are treated as independent.
//! - **Detection**: the share of trials a detector flags ([`detection_rates`]), and the ROC
//!   curve and AUC of a detector's scores on attacked versus clean texts ([`roc`]; higher
//!   score = more suspicious; trapezoid AUC, so tied scores count half, as in the
//!   Mann–Whitney statistic).
//!
//! Empty input is an error ([`GeoMetricsError::NoTrials`]), never NaN; so is a rank of 0.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::rng::SplitMix64;

/// A metric cannot be computed.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum GeoMetricsError {
    /// No trials (or no values) to summarise.
    #[error("no trials to summarise")]
    NoTrials,
    /// A rank is 0; ranks are 1-based.
    #[error("scenario {scenario}, trial {trial}: ranks are 1-based, got 0")]
    ZeroRank {
        /// The trial's scenario.
        scenario: String,
        /// The trial number.
        trial: u64,
    },
    /// The bootstrap needs at least one resample.
    #[error("the bootstrap needs at least one resample")]
    NoResamples,
    /// A confidence level outside (0, 1).
    #[error("confidence level {0} is not in (0, 1)")]
    BadLevel(f64),
    /// A ROC curve needs scores of attacked texts.
    #[error("no scores of attacked texts")]
    NoAttacked,
    /// A ROC curve needs scores of clean texts.
    #[error("no scores of clean texts")]
    NoClean,
    /// A detector score is NaN or infinite.
    #[error("detector score {0} is not finite")]
    NonFiniteScore(f64),
}

/// The outcome of one trial.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TrialOutcome {
    /// Scenario id.
    pub scenario: String,
    /// Trial number within the scenario.
    pub trial: u64,
    /// The trial's seed (see [`super::rng::trial_seed`]).
    pub seed: u64,
    /// The target's 1-based rank with its clean text.
    pub rank_before: usize,
    /// The target's 1-based rank with its attacked text.
    pub rank_after: usize,
    /// Ranker (and attacker) calls the trial spent.
    pub calls: u64,
    /// Whether each detector flagged the text the ranker read, by detector name.
    #[serde(default)]
    pub flags: BTreeMap<String, bool>,
    /// Each detector's suspicion score of that text (higher = more suspicious).
    #[serde(default)]
    pub scores: BTreeMap<String, f64>,
}

impl TrialOutcome {
    /// `rank_before - rank_after`: positions the target gained (negative when it lost).
    pub fn rank_gain(&self) -> f64 {
        self.rank_before as f64 - self.rank_after as f64
    }
}

/// A per-trial quantity whose mean over trials is a reported statistic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TrialStat {
    /// 1 when `rank_after <= k`: its mean is the top-k rate.
    TopK(usize),
    /// 1 when the target moved up: the improved rate.
    Improved,
    /// 1 when the target moved down: the worsened rate.
    Worsened,
    /// `sign(rank_before - rank_after)`: its mean is the advantage.
    Advantage,
    /// `rank_before - rank_after`: its mean is the mean rank gain.
    RankGain,
}

impl TrialStat {
    /// The quantity for one trial.
    pub fn value(self, t: &TrialOutcome) -> f64 {
        let indicator = |b: bool| if b { 1.0 } else { 0.0 };
        match self {
            TrialStat::TopK(k) => indicator(t.rank_after <= k),
            TrialStat::Improved => indicator(t.rank_after < t.rank_before),
            TrialStat::Worsened => indicator(t.rank_after > t.rank_before),
            TrialStat::Advantage => match t.rank_after.cmp(&t.rank_before) {
                Ordering::Less => 1.0,
                Ordering::Equal => 0.0,
                Ordering::Greater => -1.0,
            },
            TrialStat::RankGain => t.rank_gain(),
        }
    }
}

/// How bootstrap intervals are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BootstrapOptions {
    /// Number of resamples (at least 1).
    pub resamples: usize,
    /// Seed of the resampling generator.
    pub seed: u64,
    /// Confidence level in (0, 1).
    pub level: f64,
}

impl Default for BootstrapOptions {
    /// 10,000 resamples, seed 0, 95%.
    fn default() -> Self {
        BootstrapOptions {
            resamples: 10_000,
            seed: 0,
            level: 0.95,
        }
    }
}

/// A confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// Lower bound.
    pub low: f64,
    /// Upper bound.
    pub high: f64,
}

/// A statistic with its bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// The statistic over all trials.
    pub value: f64,
    /// Its bootstrap confidence interval.
    pub ci: Interval,
}

/// Mean and median ranks.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RankStats {
    /// Mean 1-based rank with the clean text.
    pub mean_before: f64,
    /// Mean rank with the attacked text.
    pub mean_after: f64,
    /// Median rank with the clean text (mean of the two middle values for an even count).
    pub median_before: f64,
    /// Median rank with the attacked text.
    pub median_after: f64,
}

/// Checks that there are trials and that every rank is 1-based.
pub fn check_trials(trials: &[TrialOutcome]) -> Result<(), GeoMetricsError> {
    if trials.is_empty() {
        return Err(GeoMetricsError::NoTrials);
    }
    match trials
        .iter()
        .find(|t| t.rank_before == 0 || t.rank_after == 0)
    {
        Some(t) => Err(GeoMetricsError::ZeroRank {
            scenario: t.scenario.clone(),
            trial: t.trial,
        }),
        None => Ok(()),
    }
}

/// The arithmetic mean; [`GeoMetricsError::NoTrials`] when empty.
pub fn mean(values: &[f64]) -> Result<f64, GeoMetricsError> {
    if values.is_empty() {
        return Err(GeoMetricsError::NoTrials);
    }
    Ok(values.iter().sum::<f64>() / values.len() as f64)
}

/// The median (mean of the two middle values for an even count); [`GeoMetricsError::NoTrials`]
/// when empty.
pub fn median(values: &[f64]) -> Result<f64, GeoMetricsError> {
    if values.is_empty() {
        return Err(GeoMetricsError::NoTrials);
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Ok(if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    })
}

/// Mean and median ranks before and after.
pub fn rank_stats(trials: &[TrialOutcome]) -> Result<RankStats, GeoMetricsError> {
    check_trials(trials)?;
    let before: Vec<f64> = trials.iter().map(|t| t.rank_before as f64).collect();
    let after: Vec<f64> = trials.iter().map(|t| t.rank_after as f64).collect();
    Ok(RankStats {
        mean_before: mean(&before)?,
        mean_after: mean(&after)?,
        median_before: median(&before)?,
        median_after: median(&after)?,
    })
}

/// The mean of `stat` over the trials.
pub fn stat_mean(trials: &[TrialOutcome], stat: TrialStat) -> Result<f64, GeoMetricsError> {
    check_trials(trials)?;
    mean(&values(trials, stat))
}

/// Share of trials with the target in the top `k` after the attack (`k = 1`: promotion to
/// the top).
pub fn top_k_rate(trials: &[TrialOutcome], k: usize) -> Result<f64, GeoMetricsError> {
    stat_mean(trials, TrialStat::TopK(k))
}

/// Share of trials where the target's rank improved.
pub fn improved_rate(trials: &[TrialOutcome]) -> Result<f64, GeoMetricsError> {
    stat_mean(trials, TrialStat::Improved)
}

/// Share of trials where the target's rank worsened.
pub fn worsened_rate(trials: &[TrialOutcome]) -> Result<f64, GeoMetricsError> {
    stat_mean(trials, TrialStat::Worsened)
}

/// Improved share minus worsened share, in [-1, 1].
pub fn advantage(trials: &[TrialOutcome]) -> Result<f64, GeoMetricsError> {
    stat_mean(trials, TrialStat::Advantage)
}

/// Mean of `rank_before - rank_after` (positive: the target moved up on average).
pub fn mean_rank_gain(trials: &[TrialOutcome]) -> Result<f64, GeoMetricsError> {
    stat_mean(trials, TrialStat::RankGain)
}

/// Mean calls per trial.
pub fn calls_per_trial(trials: &[TrialOutcome]) -> Result<f64, GeoMetricsError> {
    check_trials(trials)?;
    mean(&trials.iter().map(|t| t.calls as f64).collect::<Vec<_>>())
}

/// `stat` over the trials with its bootstrap interval of the mean.
pub fn estimate(
    trials: &[TrialOutcome],
    stat: TrialStat,
    options: &BootstrapOptions,
) -> Result<Estimate, GeoMetricsError> {
    check_trials(trials)?;
    let v = values(trials, stat);
    Ok(Estimate {
        value: mean(&v)?,
        ci: bootstrap_ci(&v, mean_unchecked, options)?,
    })
}

/// Percentile-bootstrap interval of `statistic` over `values` (see the module documentation):
/// `options.resamples` resamples of `values.len()` values drawn with replacement (each draw
/// a uniform index from [`SplitMix64`] seeded with `options.seed`, resample after resample),
/// then the `(1 - level) / 2` and `(1 + level) / 2` [`quantile`]s of the statistics.
/// Deterministic given the options. A single value gives the interval `[s, s]`.
pub fn bootstrap_ci(
    values: &[f64],
    statistic: impl Fn(&[f64]) -> f64,
    options: &BootstrapOptions,
) -> Result<Interval, GeoMetricsError> {
    if values.is_empty() {
        return Err(GeoMetricsError::NoTrials);
    }
    if options.resamples == 0 {
        return Err(GeoMetricsError::NoResamples);
    }
    if !(options.level > 0.0 && options.level < 1.0) {
        return Err(GeoMetricsError::BadLevel(options.level));
    }
    let mut rng = SplitMix64::new(options.seed);
    let mut sample = vec![0.0; values.len()];
    let mut stats = Vec::with_capacity(options.resamples);
    for _ in 0..options.resamples {
        for slot in sample.iter_mut() {
            *slot = values[rng.index(values.len())];
        }
        stats.push(statistic(&sample));
    }
    stats.sort_by(f64::total_cmp);
    let alpha = 1.0 - options.level;
    Ok(Interval {
        low: quantile(&stats, alpha / 2.0),
        high: quantile(&stats, 1.0 - alpha / 2.0),
    })
}

/// The `p`-quantile of ascending `sorted` values by linear interpolation between order
/// statistics (R's type 7, numpy's default): `h = (n - 1) p`, then
/// `x[floor h] + (h - floor h) (x[floor h + 1] - x[floor h])`. `p` is clamped to [0, 1];
/// NaN for an empty slice.
pub fn quantile(sorted: &[f64], p: f64) -> f64 {
    let Some(&last) = sorted.last() else {
        return f64::NAN;
    };
    let h = (sorted.len() - 1) as f64 * p.clamp(0.0, 1.0);
    let lo = h.floor() as usize;
    match sorted.get(lo + 1) {
        Some(&next) => sorted[lo] + (h - lo as f64) * (next - sorted[lo]),
        None => last,
    }
}

/// The share of trials each detector flagged, by detector name: for each name in any trial's
/// `flags`, flagged trials over the trials that carry a flag of that detector. No trials, or
/// no flags, give an empty map.
pub fn detection_rates(trials: &[TrialOutcome]) -> BTreeMap<String, f64> {
    let mut counts: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for t in trials {
        for (name, &flagged) in &t.flags {
            let c = counts.entry(name.as_str()).or_default();
            c.0 += usize::from(flagged);
            c.1 += 1;
        }
    }
    counts
        .into_iter()
        .map(|(name, (flagged, seen))| (name.to_string(), flagged as f64 / seen as f64))
        .collect()
}

/// The AUC of each detector that scored texts in both `attacked` and `clean` trials (see
/// [`roc`]); a detector missing from either side is left out.
pub fn detector_aucs(
    attacked: &[TrialOutcome],
    clean: &[TrialOutcome],
) -> Result<BTreeMap<String, f64>, GeoMetricsError> {
    let names = |trials: &[TrialOutcome]| -> BTreeSet<String> {
        trials
            .iter()
            .flat_map(|t| t.scores.keys().cloned())
            .collect()
    };
    let both: BTreeSet<String> = names(attacked)
        .intersection(&names(clean))
        .cloned()
        .collect();
    let scores = |trials: &[TrialOutcome], name: &str| -> Vec<f64> {
        trials
            .iter()
            .filter_map(|t| t.scores.get(name).copied())
            .collect()
    };
    both.into_iter()
        .map(|name| {
            let curve = roc(&scores(attacked, &name), &scores(clean, &name))?;
            Ok((name, curve.auc))
        })
        .collect()
}

/// One point of a ROC curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RocPoint {
    /// Texts with a score `>= threshold` are flagged; `+inf` for the first point (nothing
    /// flagged).
    pub threshold: f64,
    /// Share of clean texts flagged.
    pub fpr: f64,
    /// Share of attacked texts flagged.
    pub tpr: f64,
}

/// A ROC curve and the area under it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Roc {
    /// From (0, 0) to (1, 1), one point per distinct score, thresholds descending.
    pub points: Vec<RocPoint>,
    /// Trapezoid area under `points`: 1 for a detector that scores every attacked text above
    /// every clean one, 0.5 for a constant score, 0 when it always scores clean texts higher.
    pub auc: f64,
}

/// The ROC curve of a detector from its scores of attacked texts (positives) and clean texts
/// (negatives), higher = more suspicious. Equal scores are one threshold, so a tie between an
/// attacked and a clean text is a diagonal step worth half a pair in the AUC. Errors on an
/// empty side or a non-finite score.
pub fn roc(attacked: &[f64], clean: &[f64]) -> Result<Roc, GeoMetricsError> {
    if attacked.is_empty() {
        return Err(GeoMetricsError::NoAttacked);
    }
    if clean.is_empty() {
        return Err(GeoMetricsError::NoClean);
    }
    if let Some(&bad) = attacked.iter().chain(clean).find(|s| !s.is_finite()) {
        return Err(GeoMetricsError::NonFiniteScore(bad));
    }
    let mut scored: Vec<(f64, bool)> = attacked
        .iter()
        .map(|&s| (s, true))
        .chain(clean.iter().map(|&s| (s, false)))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (positives, negatives) = (attacked.len() as f64, clean.len() as f64);
    let mut points = vec![RocPoint {
        threshold: f64::INFINITY,
        fpr: 0.0,
        tpr: 0.0,
    }];
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut i = 0;
    while i < scored.len() {
        let threshold = scored[i].0;
        // `==` rather than total order: 0.0 and -0.0 are one threshold.
        while i < scored.len() && scored[i].0 == threshold {
            if scored[i].1 {
                tp += 1;
            } else {
                fp += 1;
            }
            i += 1;
        }
        points.push(RocPoint {
            threshold,
            fpr: fp as f64 / negatives,
            tpr: tp as f64 / positives,
        });
    }
    let auc = points
        .windows(2)
        .map(|w| (w[1].fpr - w[0].fpr) * (w[0].tpr + w[1].tpr) / 2.0)
        .sum();
    Ok(Roc { points, auc })
}

/// `stat` for each trial.
fn values(trials: &[TrialOutcome], stat: TrialStat) -> Vec<f64> {
    trials.iter().map(|t| stat.value(t)).collect()
}

/// The mean of a non-empty slice (the bootstrap's resamples are never empty).
fn mean_unchecked(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trial(before: usize, after: usize) -> TrialOutcome {
        TrialOutcome {
            scenario: "s".into(),
            rank_before: before,
            rank_after: after,
            calls: 2,
            ..TrialOutcome::default()
        }
    }

    fn trials(pairs: &[(usize, usize)]) -> Vec<TrialOutcome> {
        pairs.iter().map(|&(b, a)| trial(b, a)).collect()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn hand_computed_rates_and_ranks() -> anyhow::Result<()> {
        // before -> after: 5->1 (up, top-1), 3->3 (same, top-3), 2->4 (down), 6->2 (up, top-3).
        let t = trials(&[(5, 1), (3, 3), (2, 4), (6, 2)]);
        // Mean before (5+3+2+6)/4 = 4; after (1+3+4+2)/4 = 2.5.
        // Median before: sorted 2,3,5,6 -> (3+5)/2 = 4; after: 1,2,3,4 -> (2+3)/2 = 2.5.
        let r = rank_stats(&t)?;
        assert_eq!(
            (r.mean_before, r.mean_after, r.median_before, r.median_after),
            (4.0, 2.5, 4.0, 2.5)
        );
        // Top-1: 1 of 4; top-3: 5->1, 3->3, 6->2 = 3 of 4.
        assert_eq!(top_k_rate(&t, 1)?, 0.25);
        assert_eq!(top_k_rate(&t, 3)?, 0.75);
        // Improved: 2 of 4; worsened: 1 of 4; advantage 0.5 - 0.25 = 0.25.
        assert_eq!(improved_rate(&t)?, 0.5);
        assert_eq!(worsened_rate(&t)?, 0.25);
        assert_eq!(advantage(&t)?, 0.25);
        // Gains 4, 0, -2, 4: mean 6/4 = 1.5 (= mean before - mean after = 4 - 2.5).
        assert_eq!(mean_rank_gain(&t)?, 1.5);
        assert_eq!(calls_per_trial(&t)?, 2.0);
        Ok(())
    }

    #[test]
    fn single_trial_and_all_ties() -> anyhow::Result<()> {
        // One trial 4 -> 2: every rate is 0 or 1 and every interval collapses to the point.
        let one = trials(&[(4, 2)]);
        let r = rank_stats(&one)?;
        assert_eq!((r.median_before, r.median_after), (4.0, 2.0));
        let options = BootstrapOptions {
            resamples: 100,
            ..BootstrapOptions::default()
        };
        let e = estimate(&one, TrialStat::RankGain, &options)?;
        assert_eq!(
            e,
            Estimate {
                value: 2.0,
                ci: Interval {
                    low: 2.0,
                    high: 2.0
                }
            }
        );
        assert_eq!(estimate(&one, TrialStat::TopK(1), &options)?.ci.high, 0.0);
        // All ties: rank unchanged everywhere -> no improvement, no worsening, advantage 0.
        let tied = trials(&[(3, 3), (3, 3), (3, 3)]);
        assert_eq!(advantage(&tied)?, 0.0);
        assert_eq!(improved_rate(&tied)?, 0.0);
        let e = estimate(&tied, TrialStat::Advantage, &options)?;
        assert_eq!((e.ci.low, e.ci.high), (0.0, 0.0));
        assert_eq!(median(&[3.0, 3.0, 3.0])?, 3.0);
        Ok(())
    }

    #[test]
    fn empty_input_and_bad_ranks_are_errors() {
        let none: Vec<TrialOutcome> = Vec::new();
        assert_eq!(rank_stats(&none), Err(GeoMetricsError::NoTrials));
        assert_eq!(top_k_rate(&none, 1), Err(GeoMetricsError::NoTrials));
        assert_eq!(advantage(&none), Err(GeoMetricsError::NoTrials));
        assert_eq!(mean(&[]), Err(GeoMetricsError::NoTrials));
        assert_eq!(median(&[]), Err(GeoMetricsError::NoTrials));
        let options = BootstrapOptions::default();
        assert_eq!(
            estimate(&none, TrialStat::Improved, &options),
            Err(GeoMetricsError::NoTrials)
        );
        assert!(detection_rates(&none).is_empty());
        let zero = trials(&[(1, 0)]);
        assert!(matches!(
            rank_stats(&zero),
            Err(GeoMetricsError::ZeroRank { .. })
        ));
        let v = [1.0];
        let no_resamples = BootstrapOptions {
            resamples: 0,
            ..options
        };
        assert_eq!(
            bootstrap_ci(&v, mean_unchecked, &no_resamples),
            Err(GeoMetricsError::NoResamples)
        );
        for level in [0.0, 1.0, f64::NAN, 1.5] {
            let bad = BootstrapOptions { level, ..options };
            assert!(matches!(
                bootstrap_ci(&v, mean_unchecked, &bad),
                Err(GeoMetricsError::BadLevel(_))
            ));
        }
    }

    #[test]
    fn quantiles_interpolate() {
        // [1, 2, 3, 4], p = 0.25: h = 3 * 0.25 = 0.75 -> 1 + 0.75 * (2 - 1) = 1.75.
        let x = [1.0, 2.0, 3.0, 4.0];
        assert!(close(quantile(&x, 0.25), 1.75));
        assert_eq!(quantile(&x, 0.0), 1.0);
        assert_eq!(quantile(&x, 1.0), 4.0);
        // p = 0.5: h = 1.5 -> 2.5 (the median).
        assert_eq!(quantile(&x, 0.5), 2.5);
        assert_eq!(quantile(&[7.0], 0.3), 7.0);
        assert!(quantile(&[], 0.5).is_nan());
    }

    #[test]
    fn bootstrap_matches_hand_computed_distributions() -> anyhow::Result<()> {
        let options = BootstrapOptions {
            resamples: 20_000,
            seed: 11,
            level: 0.95,
        };
        // Values [0, 1]: a resample mean is 0 (p 1/4), 0.5 (1/2) or 1 (1/4). The 2.5% and
        // 97.5% quantiles fall inside the outer atoms (0.25 > 0.025), so the interval is [0, 1].
        let ci = bootstrap_ci(&[0.0, 1.0], mean_unchecked, &options)?;
        assert_eq!((ci.low, ci.high), (0.0, 1.0));
        // Values [0, 0, 0, 1]: k ones of 4 draws, p = 1/4. P(k = 0) = (3/4)^4 = 0.316 > 0.025,
        // so low = 0. P(k <= 2) = 0.949, P(k <= 3) = 0.996: the 97.5% quantile is k = 3,
        // i.e. a mean of 0.75 (margins of 0.02 against a sampling error of ~0.0015).
        let ci = bootstrap_ci(&[0.0, 0.0, 0.0, 1.0], mean_unchecked, &options)?;
        assert_eq!((ci.low, ci.high), (0.0, 0.75));
        Ok(())
    }

    #[test]
    fn bootstrap_is_deterministic_and_about_right() -> anyhow::Result<()> {
        // 100 trials, 30 promoted to the top: the normal approximation gives
        // 0.3 +- 1.96 sqrt(0.3 * 0.7 / 100) = 0.3 +- 0.0898.
        let mut t = trials(&vec![(5, 1); 30]);
        t.extend(trials(&vec![(5, 4); 70]));
        let options = BootstrapOptions {
            resamples: 5_000,
            seed: 3,
            level: 0.95,
        };
        let e = estimate(&t, TrialStat::TopK(1), &options)?;
        assert!(close(e.value, 0.3));
        assert!((e.ci.low - 0.2102).abs() < 0.02, "{e:?}");
        assert!((e.ci.high - 0.3898).abs() < 0.02, "{e:?}");
        assert_eq!(estimate(&t, TrialStat::TopK(1), &options)?, e);
        let other = BootstrapOptions { seed: 4, ..options };
        // Continuous values, so that another seed's resamples show in the bounds.
        let mut rng = SplitMix64::new(1);
        let v: Vec<f64> = (0..50).map(|_| rng.next_f64()).collect();
        let a = bootstrap_ci(&v, mean_unchecked, &options)?;
        assert_eq!(bootstrap_ci(&v, mean_unchecked, &options)?, a);
        assert_ne!(bootstrap_ci(&v, mean_unchecked, &other)?, a);
        // A narrower level gives a narrower interval.
        let narrow = BootstrapOptions {
            level: 0.5,
            ..options
        };
        let n = estimate(&t, TrialStat::TopK(1), &narrow)?;
        assert!(n.ci.low >= e.ci.low && n.ci.high <= e.ci.high);
        Ok(())
    }

    #[test]
    fn detection_rates_count_the_trials_that_carry_a_flag() {
        // ppl flags 2 of 3 trials; judge is only present on 2 trials and flags 1: 1/2.
        let mut t = trials(&[(2, 1), (2, 1), (2, 1)]);
        t[0].flags = [("ppl".to_string(), true), ("judge".to_string(), true)].into();
        t[1].flags = [("ppl".to_string(), true), ("judge".to_string(), false)].into();
        t[2].flags = [("ppl".to_string(), false)].into();
        let rates = detection_rates(&t);
        assert_eq!(rates.len(), 2);
        assert!(close(rates["ppl"], 2.0 / 3.0));
        assert_eq!(rates["judge"], 0.5);
    }

    /// AUC by counting pairs: (attacked > clean) + 0.5 (attacked == clean), over all pairs.
    fn pairwise_auc(attacked: &[f64], clean: &[f64]) -> f64 {
        let mut wins = 0.0;
        for a in attacked {
            for c in clean {
                wins += if a > c {
                    1.0
                } else if a == c {
                    0.5
                } else {
                    0.0
                };
            }
        }
        wins / (attacked.len() * clean.len()) as f64
    }

    #[test]
    fn roc_hand_computed() -> anyhow::Result<()> {
        // Perfect detector: attacked {0.9, 0.8} above clean {0.2, 0.1}.
        // Points: (0,0) (0,0.5) (0,1) (0.5,1) (1,1): area 1.
        let r = roc(&[0.9, 0.8], &[0.2, 0.1])?;
        assert_eq!(r.auc, 1.0);
        let pts: Vec<(f64, f64)> = r.points.iter().map(|p| (p.fpr, p.tpr)).collect();
        assert_eq!(
            pts,
            [(0.0, 0.0), (0.0, 0.5), (0.0, 1.0), (0.5, 1.0), (1.0, 1.0)]
        );
        assert_eq!(r.points[0].threshold, f64::INFINITY);
        assert_eq!(r.points[1].threshold, 0.9);
        // Constant detector: one threshold takes (0,0) to (1,1): area 0.5.
        assert_eq!(roc(&[0.3, 0.3, 0.3], &[0.3, 0.3])?.auc, 0.5);
        assert_eq!(roc(&[0.3, 0.3, 0.3], &[0.3, 0.3])?.points.len(), 2);
        // Inverted detector: 0.
        assert_eq!(roc(&[0.1], &[0.9])?.auc, 0.0);
        // Ties across classes: attacked {0.8, 0.5}, clean {0.5, 0.2}.
        // Thresholds 0.8 -> (0, 0.5); 0.5 -> (0.5, 1) (one of each: a diagonal step);
        // 0.2 -> (1, 1). Area: 0 + 0.5 * (0.5 + 1) / 2 + 0.5 * 1 = 0.375 + 0.5 = 0.875.
        // Pairs: 0.8>0.5, 0.8>0.2, 0.5=0.5 (half), 0.5>0.2 -> 3.5 / 4 = 0.875.
        let r = roc(&[0.8, 0.5], &[0.5, 0.2])?;
        assert!(close(r.auc, 0.875));
        // 0.0 and -0.0 are one threshold.
        assert_eq!(roc(&[0.0], &[-0.0])?.auc, 0.5);
        Ok(())
    }

    #[test]
    fn roc_auc_equals_the_pairwise_count() -> anyhow::Result<()> {
        let mut rng = SplitMix64::new(5);
        for _ in 0..50 {
            let n = 1 + rng.index(12);
            let m = 1 + rng.index(12);
            // Few distinct values, so ties are common.
            let attacked: Vec<f64> = (0..n).map(|_| rng.index(5) as f64).collect();
            let clean: Vec<f64> = (0..m).map(|_| rng.index(5) as f64 - 1.0).collect();
            let r = roc(&attacked, &clean)?;
            assert!(
                close(r.auc, pairwise_auc(&attacked, &clean)),
                "{attacked:?} {clean:?}"
            );
            let last = r.points.last().map(|p| (p.fpr, p.tpr));
            assert_eq!(last, Some((1.0, 1.0)));
        }
        Ok(())
    }

    #[test]
    fn roc_errors() {
        assert_eq!(roc(&[], &[1.0]), Err(GeoMetricsError::NoAttacked));
        assert_eq!(roc(&[1.0], &[]), Err(GeoMetricsError::NoClean));
        assert!(matches!(
            roc(&[f64::NAN], &[1.0]),
            Err(GeoMetricsError::NonFiniteScore(_))
        ));
        assert!(matches!(
            roc(&[1.0], &[f64::INFINITY]),
            Err(GeoMetricsError::NonFiniteScore(_))
        ));
    }

    #[test]
    fn detector_aucs_pair_attacked_with_clean() -> anyhow::Result<()> {
        let mut attacked = trials(&[(2, 1), (2, 1)]);
        attacked[0].scores = [("ppl".to_string(), 0.9), ("only".to_string(), 1.0)].into();
        attacked[1].scores = [("ppl".to_string(), 0.4)].into();
        let mut clean = trials(&[(2, 2), (2, 2)]);
        clean[0].scores = [("ppl".to_string(), 0.5)].into();
        clean[1].scores = [("ppl".to_string(), 0.1)].into();
        // Pairs: 0.9>0.5, 0.9>0.1, 0.4<0.5, 0.4>0.1 -> 3/4. "only" has no clean scores.
        let aucs = detector_aucs(&attacked, &clean)?;
        assert_eq!(aucs.len(), 1);
        assert_eq!(aucs["ppl"], 0.75);
        Ok(())
    }
}
