//! The GEO runner: every (scenario, trial) gets a seeded presentation order; every attack
//! rewrites the target once against the undefended ranker (the attacker does not know the
//! defense); every defense then ranks the clean and the attacked list. One [`TrialRecord`]
//! per (scenario, attack, defense, trial) is appended to `trials.jsonl` as soon as it is
//! known, and a rerun skips the ones already there, so an interrupted run resumes where it
//! stopped. Clean trials are recorded under the attack `none`: they are the baseline ranks and
//! the negatives of the detectors' ROC curves.
//!
//! Defenses (`folio_search::Defense`): `detect` runs the detectors over every candidate and
//! applies the policy to the flagged ones (demote by default); `harden` ranks with the
//! hardened prompt and, for retrieval scenarios, damps the ranker's order with the retrieval
//! order (reciprocal-rank fusion, as the search service does); `all` does both.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use folio_core::{Detector, Suspicion};
use folio_search::{Defense, DefensePolicy, apply_policy, damp};

use super::attacks::{Attack, AttackContext, Budget, Similarity, Tools};
use super::metrics::BootstrapOptions;
use super::ranker::{GeoRanker, Ranking};
use super::record::{TrialKey, TrialRecord, append_jsonl, read_completed, read_records};
use super::report::{GeoSummary, NO_ATTACK, markdown_table, summarize};
use super::scenario::{Candidate, Scenario};
use super::{GeoError, plots};
use crate::remembered::Remembered;

/// A defense of the suite: its name and what it turns on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedDefense {
    /// `none`, `detect`, `harden` or `all`.
    pub name: String,
    /// What it turns on.
    pub defense: Defense,
}

impl NamedDefense {
    /// Parses a defense name.
    pub fn parse(name: &str) -> Result<Self, GeoError> {
        Ok(NamedDefense {
            name: name.to_string(),
            defense: Defense::parse(name).map_err(|e| GeoError::Invalid(e.to_string()))?,
        })
    }
}

/// Measures fluency: the log-perplexity of a text under a reference model.
pub trait Fluency: Send + Sync {
    /// Mean negative log-probability per token of `text`.
    fn log_perplexity(&self, text: &str) -> Result<f64, GeoError>;
}

/// What a run uses.
pub struct Suite {
    /// The ranker with its plain prompt (attacked, and used without `harden`).
    pub ranker: Arc<dyn GeoRanker>,
    /// The same ranker with its hardened prompt (used with `harden`).
    pub hardened: Arc<dyn GeoRanker>,
    /// The detectors, run on every text under `detect` and recorded on every trial.
    pub detectors: Vec<Arc<dyn Detector>>,
    /// What happens to flagged candidates under `detect`.
    pub policy: DefensePolicy,
    /// Fluency of the texts the ranker read, when measured.
    pub fluency: Option<Arc<dyn Fluency>>,
    /// Similarity of attacked to clean texts, when measured.
    pub similarity: Option<Arc<dyn Similarity>>,
    /// The attacks.
    pub attacks: Vec<Attack>,
    /// Their tools (the attacker model).
    pub tools: Tools,
    /// The defenses.
    pub defenses: Vec<NamedDefense>,
}

/// Run settings.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// Trials (presentation orders) per scenario.
    pub trials: u64,
    /// Base seed.
    pub seed: u64,
    /// Each attack's budget per trial.
    pub budget: Budget,
    /// Output directory (`trials.jsonl`, `report.md`, `report.json`, `*.svg`).
    pub out: PathBuf,
    /// Draw a progress bar.
    pub progress: bool,
    /// Bootstrap for the report's intervals.
    pub bootstrap: BootstrapOptions,
    /// Run no trial: only write the report of the records already in `trials.jsonl`.
    pub report_only: bool,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// Trials run now.
    pub ran: usize,
    /// Trials found done in `trials.jsonl` and skipped.
    pub skipped: usize,
    /// The summaries of every recorded trial (this run's and earlier ones).
    pub summaries: Vec<GeoSummary>,
    /// Files written.
    pub files: Vec<PathBuf>,
}

/// The records file of a run directory.
pub fn trials_path(out: &Path) -> PathBuf {
    out.join("trials.jsonl")
}

/// Runs the suite over `scenarios`, appending to (and resuming from) `<out>/trials.jsonl`,
/// then writes the report.
pub fn run(
    suite: &Suite,
    scenarios: &[Scenario],
    settings: &RunSettings,
) -> Result<RunOutcome, GeoError> {
    if suite.defenses.is_empty() {
        return Err(GeoError::Invalid(
            "no defenses to run (give at least none)".into(),
        ));
    }
    if settings.trials == 0 {
        return Err(GeoError::Invalid("--trials must be at least 1".into()));
    }
    std::fs::create_dir_all(&settings.out).map_err(|source| GeoError::Io {
        path: settings.out.clone(),
        source,
    })?;
    let path = trials_path(&settings.out);
    let done: HashSet<TrialKey> = read_completed(&path)?;
    let total = scenarios.len() as u64 * settings.trials;
    let bar = folio_indexer::progress_bar(total, "trials", settings.progress);
    let (mut ran, mut skipped) = (0, 0);
    let todo = if settings.report_only {
        &[][..]
    } else {
        scenarios
    };
    let memo = Memo::new(&suite.detectors);
    for scenario in todo {
        for trial in 0..settings.trials {
            bar.set_message(scenario.id.clone());
            let (r, s) = run_trial(suite, &memo, scenario, trial, settings, &done, &path)?;
            ran += r;
            skipped += s;
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    let records = read_records(&path)?;
    let summaries = summarize(&records, &settings.bootstrap)?;
    let files = write_report(&settings.out, &summaries, &records, suite)?;
    Ok(RunOutcome {
        ran,
        skipped,
        summaries,
        files,
    })
}

/// One (scenario, trial): its clean records and each attack's. Returns (records written,
/// records skipped).
fn run_trial(
    suite: &Suite,
    memo: &Memo,
    scenario: &Scenario,
    trial: u64,
    settings: &RunSettings,
    done: &HashSet<TrialKey>,
    path: &Path,
) -> Result<(usize, usize), GeoError> {
    let seed = scenario.trial_seed(settings.seed, trial);
    let (order, target) = scenario.shuffled(seed);
    let items: Vec<Candidate> = order
        .iter()
        .map(|&i| scenario.candidates[i].clone())
        .collect();
    let key = |attack: &str, defense: &str| {
        (
            scenario.id.clone(),
            attack.to_string(),
            defense.to_string(),
            trial,
        )
    };
    let mut attacks: Vec<(String, Option<&Attack>)> = vec![(NO_ATTACK.to_string(), None)];
    attacks.extend(suite.attacks.iter().map(|a| (a.name(), Some(a))));
    let (mut ran, mut skipped) = (0, 0);
    let clean_text = items[target].text.clone();
    for (name, attack) in attacks {
        let pending: Vec<&NamedDefense> = suite
            .defenses
            .iter()
            .filter(|d| !done.contains(&key(&name, &d.name)))
            .collect();
        skipped += suite.defenses.len() - pending.len();
        if pending.is_empty() {
            continue;
        }
        let started = Instant::now();
        let (text, calls) = match attack {
            None => (clean_text.clone(), 0),
            Some(attack) => {
                let ctx = AttackContext {
                    query: &scenario.query,
                    items: &items,
                    target,
                    ranker: suite.ranker.as_ref(),
                    seed,
                    budget: settings.budget,
                };
                let attacked = attack.run(&ctx, &suite.tools)?;
                (
                    attacked.text,
                    attacked.ranker_calls + attacked.attacker_calls,
                )
            }
        };
        let attack_seconds = started.elapsed().as_secs_f64();
        let mut attacked_items = items.clone();
        attacked_items[target].text = text.clone();
        let (flags, scores) = memo.record(&text);
        let fluency = suite
            .fluency
            .as_ref()
            .map(|f| f.log_perplexity(&text))
            .transpose()?;
        let semantic = match (&suite.similarity, attack) {
            (Some(sim), Some(_)) => Some(sim.similarity(&clean_text, &text)?),
            _ => None,
        };
        for defense in pending {
            let started = Instant::now();
            // The clean list's ranking and verdicts are memoised: this is cheap after the
            // first attack.
            let before = defended_rank(suite, memo, scenario, &order, &items, target, defense)?;
            let after = match attack {
                None => before,
                Some(_) => defended_rank(
                    suite,
                    memo,
                    scenario,
                    &order,
                    &attacked_items,
                    target,
                    defense,
                )?,
            };
            let record = TrialRecord {
                scenario: scenario.id.clone(),
                attack: name.clone(),
                defense: defense.name.clone(),
                trial,
                seed,
                order: order.clone(),
                target_position: target,
                rank_before: before,
                rank_after: after,
                calls,
                seconds: attack_seconds + started.elapsed().as_secs_f64(),
                attacked_text: text.clone(),
                flags: flags.clone(),
                scores: scores.clone(),
                fluency,
                semantic,
            };
            append_jsonl(path, &record)?;
            ran += 1;
        }
    }
    Ok((ran, skipped))
}

/// Work a run does once: the detectors' verdicts on each text (the clean candidates recur in
/// every trial, attack and defense of a scenario, and a model-based detector costs a forward
/// pass), and the rankings of each list (`none` and `detect` rank the same list with the same
/// prompt, as do `harden` and `all`; the rankers decode greedily).
struct Memo {
    detectors: Vec<Remembered>,
    rankings: RefCell<HashMap<RankingKey, Ranking>>,
}

/// A ranking's inputs: hardened prompt or not, the query, the items' texts in order.
type RankingKey = (bool, String, Vec<String>);

impl Memo {
    fn new(detectors: &[Arc<dyn Detector>]) -> Self {
        Memo {
            detectors: detectors.iter().cloned().map(Remembered::new).collect(),
            rankings: RefCell::new(HashMap::new()),
        }
    }

    /// The plain or hardened ranker's ranking of `items` for `query`.
    fn ranking(
        &self,
        suite: &Suite,
        hardened: bool,
        query: &str,
        items: &[Candidate],
    ) -> Result<Ranking, GeoError> {
        let key = (
            hardened,
            query.to_string(),
            items.iter().map(|c| c.text.clone()).collect(),
        );
        if let Some(r) = self.rankings.borrow().get(&key) {
            return Ok(r.clone());
        }
        let ranker = if hardened {
            &suite.hardened
        } else {
            &suite.ranker
        };
        let r = ranker.rank(query, items)?;
        self.rankings.borrow_mut().insert(key, r.clone());
        Ok(r)
    }

    /// The first detector's suspicion of `text`, as the serving path's detect defense sees it.
    fn suspicion(&self, text: &str) -> Option<Suspicion> {
        self.detectors.iter().find_map(|d| d.inspect(text))
    }

    /// Each detector's verdict and score on `text`, by detector name, for a trial record.
    fn record(&self, text: &str) -> (BTreeMap<String, bool>, BTreeMap<String, f64>) {
        let mut flags = BTreeMap::new();
        let mut scores = BTreeMap::new();
        for d in &self.detectors {
            let (suspicion, score) = d.assess(text);
            flags.insert(d.name().to_string(), suspicion.is_some());
            scores.insert(d.name().to_string(), score);
        }
        (flags, scores)
    }
}

/// The target's 1-based rank when `items` (presentation order `order` of the scenario's
/// candidates) are ranked under `defense`.
fn defended_rank(
    suite: &Suite,
    memo: &Memo,
    scenario: &Scenario,
    order: &[usize],
    items: &[Candidate],
    target: usize,
    defense: &NamedDefense,
) -> Result<usize, GeoError> {
    let d = defense.defense;
    let ranking = memo.ranking(suite, d.harden, &scenario.query, items)?;
    // Items the ranker left out follow the ones it named, tied, in presentation order.
    let mut ranked = ranking.order.clone();
    let named: HashSet<usize> = ranked.iter().copied().collect();
    let mut tied: HashSet<usize> = (0..items.len()).filter(|i| !named.contains(i)).collect();
    ranked.extend((0..items.len()).filter(|i| tied.contains(i)));
    if d.harden && scenario.ranked {
        // Damp with the retrieval order: positions are canonical (retrieval) ranks.
        let mut canonical: Vec<usize> = ranked.iter().map(|&i| order[i]).collect();
        damp(&mut canonical);
        ranked = canonical
            .iter()
            .filter_map(|c| order.iter().position(|o| o == c))
            .collect();
        tied.clear();
    }
    if d.detect && !suite.detectors.is_empty() {
        let suspicions = ranked
            .iter()
            .map(|&i| memo.suspicion(&items[i].text))
            .collect();
        ranked = apply_policy(suite.policy, ranked, suspicions).0;
    }
    Ok(match ranked.iter().position(|&i| i == target) {
        // Items ahead of the target count, except those tied with it.
        Some(p) => {
            1 + ranked[..p]
                .iter()
                .filter(|j| !(tied.contains(j) && tied.contains(&target)))
                .count()
        }
        // Dropped by the policy: ranked after everything.
        None => items.len() + 1,
    })
}

/// Writes `report.md`, `report.json` and the plots.
fn write_report(
    out: &Path,
    summaries: &[GeoSummary],
    records: &[TrialRecord],
    suite: &Suite,
) -> Result<Vec<PathBuf>, GeoError> {
    let mut files = Vec::new();
    let mut write = |name: &str, text: String| -> Result<(), GeoError> {
        let path = out.join(name);
        std::fs::write(&path, text).map_err(|source| GeoError::Io {
            path: path.clone(),
            source,
        })?;
        files.push(path);
        Ok(())
    };
    let ranker = suite.ranker.name();
    let mut md = format!(
        "# Ranking-manipulation report\n\nRanker: `{ranker}` (hardened: `{}`). {} trial records \
         in `trials.jsonl`.\n\nRates are shares of trials (presentation orders); brackets are \
         {:.0}% bootstrap intervals. Advantage = share of trials where the target moved up \
         minus share where it moved down. log-ppl = mean log-perplexity of the text the \
         ranker read under the reference model (lower reads more naturally); similarity = \
         mean similarity of the attacked text to the clean one.\n\n",
        suite.hardened.name(),
        records.len(),
        100.0 * summaries.first().map_or(0.95, |s| s.bootstrap.level),
    );
    md.push_str(&markdown_table(summaries));
    md.push_str("\n![promotion](promotion.svg)\n");
    let mut charts = Vec::new();
    for s in summaries.iter().filter(|s| s.attack != NO_ATTACK) {
        let name = format!(
            "ranks-{}-{}.svg",
            file_safe(&s.attack),
            file_safe(&s.defense)
        );
        md.push_str(&format!(
            "\n![ranks of {} under {}]({name})\n",
            s.attack, s.defense
        ));
        charts.push((
            name,
            plots::rank_distribution_chart(records, &s.attack, &s.defense),
        ));
    }
    let detectors: Vec<&str> = suite.detectors.iter().map(|d| d.name()).collect();
    for d in &detectors {
        md.push_str(&format!("\n![ROC of {d}](roc-{d}.svg)\n"));
    }
    write("report.md", md)?;
    let json = serde_json::to_string_pretty(summaries)
        .map_err(|e| GeoError::Invalid(format!("report.json: {e}")))?;
    write("report.json", json)?;
    write("promotion.svg", plots::promotion_chart(summaries))?;
    for (name, chart) in charts {
        write(&name, chart)?;
    }
    for d in detectors {
        write(&format!("roc-{d}.svg"), plots::roc_chart(records, d))?;
    }
    Ok(files)
}

/// `name` with every character but ASCII letters, digits and `-` replaced by `-`.
fn file_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}
