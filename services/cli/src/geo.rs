//! `folio eval geo`: the ranking-manipulation suite on catalogs or retrieval scenarios.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use folio_core::{DocInput, Embedder, Embedding};
use folio_eval::geo::attacks::gcg::{GcgAttack, GcgSettings};
use folio_eval::geo::attacks::template::STRATEGIES;
use folio_eval::geo::attacks::{
    Attack, Budget, LlmRewriter, RewriteAttack, RewriteSettings, Similarity, Strategy, Tools,
};
use folio_eval::geo::run::{Fluency, NamedDefense, RunSettings, Suite};
use folio_eval::geo::{
    BootstrapOptions, GeoError, LlmRanker, RankerKind, Scenario, TargetChoice, load_catalog,
    load_catalogs, markdown_table,
};
use folio_models::llm::{Llm, LoadOptions};
use folio_rerank::{InjectionJudge, InjectionSettings, PerplexityDetector, PerplexitySettings};
use folio_search::{DefensePolicy, InjectionPatterns};

#[derive(Args)]
pub struct GeoArgs {
    /// Scenarios: a catalog (.jsonl), a directory of catalogs, or a BEIR dataset directory
    /// (with --run).
    #[arg(long)]
    scenarios: PathBuf,
    /// For a BEIR dataset: the TREC run whose top --depth documents are each query's
    /// candidates (e.g. runs/rrf.trec from `folio eval retrieval`).
    #[arg(long)]
    run: Option<PathBuf>,
    /// Candidates per retrieval scenario.
    #[arg(long, default_value_t = 10)]
    depth: usize,
    /// Retrieval target: best-relevant (the best-judged relevant document not ranked first)
    /// or irrelevant@N (the document at rank N when it is not relevant).
    #[arg(long, default_value = "best-relevant")]
    target: String,
    /// Qrels split of a BEIR dataset.
    #[arg(long, default_value = "test")]
    split: String,
    /// Use at most this many scenarios (in load order; catalogs round-robin).
    #[arg(long)]
    max_scenarios: Option<usize>,
    /// The ranker's LLM: a .gguf file, a directory with one, or an HF model directory
    /// (default: models/SmolLM2-135M-Instruct-GGUF when present).
    #[arg(long, env = "FOLIO_RANKER")]
    ranker: Option<String>,
    /// Ranking style: recommend (the model writes a ranked list of names), pointwise or
    /// listwise. Default: recommend for catalogs, pointwise for retrieval scenarios.
    #[arg(long)]
    style: Option<String>,
    /// The attacker LLM of the template strategies and of rewriting (default: the ranker's).
    #[arg(long)]
    attacker: Option<String>,
    /// Attacks: template (all strategies), template:<strategy>, rewrite, gcg.
    #[arg(long, default_value = "template,rewrite,gcg")]
    attacks: String,
    /// Defenses: none, detect, harden, all.
    #[arg(long, default_value = "none,all")]
    defenses: String,
    /// What detect does to a flagged candidate: flag, demote or drop.
    #[arg(long, default_value = "demote")]
    defense_policy: DefensePolicy,
    /// Presentation orders per scenario.
    #[arg(long, default_value_t = 3)]
    trials: u64,
    /// Base seed of the presentation orders and attacks.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Ranker calls an attack may spend per trial.
    #[arg(long, default_value_t = 12)]
    budget_calls: u64,
    /// Seconds an attack may spend per trial.
    #[arg(long, default_value_t = 300)]
    budget_seconds: u64,
    /// Text embedder of the semantic-preservation constraint (default: the bundled MiniLM).
    #[arg(long)]
    similarity_model: Option<String>,
    /// Least MiniLM cosine a rewrite needs to its original.
    #[arg(long, default_value_t = 0.75)]
    min_similarity: f64,
    /// Windowed log-perplexity above which the perplexity detector flags a text.
    #[arg(long)]
    perplexity_threshold: Option<f64>,
    /// Probability of "yes" at or above which the LLM injection check (asked of the ranker's
    /// model) flags a text.
    #[arg(long)]
    injection_threshold: Option<f64>,
    /// GCG: suffix length in tokens.
    #[arg(long, default_value_t = 12)]
    gcg_suffix: usize,
    /// GCG: optimisation steps.
    #[arg(long, default_value_t = 20)]
    gcg_steps: usize,
    /// GCG: candidate substitutions evaluated per step.
    #[arg(long, default_value_t = 32)]
    gcg_candidates: usize,
    /// GCG: top-k tokens per position.
    #[arg(long, default_value_t = 64)]
    gcg_top_k: usize,
    /// Output directory: trials.jsonl (resumed when present), report.md, report.json, plots.
    #[arg(long)]
    out: PathBuf,
    /// Run no trial; write the report of the records already in <out>/trials.jsonl.
    #[arg(long)]
    report_only: bool,
}

/// MiniLM cosine similarity.
struct EmbedderSimilarity(Arc<dyn Embedder>);

impl Similarity for EmbedderSimilarity {
    fn similarity(&self, a: &str, b: &str) -> Result<f64, GeoError> {
        let docs = [DocInput::Text(a.to_string()), DocInput::Text(b.to_string())];
        let e = self
            .0
            .embed_documents(&docs)
            .map_err(|e| GeoError::Model(e.to_string()))?;
        match (e.first(), e.get(1)) {
            (Some(Embedding::Single(x)), Some(Embedding::Single(y))) => Ok(cosine(x, y)),
            _ => Err(GeoError::Model(
                "the similarity model must give single-vector embeddings".into(),
            )),
        }
    }
}

fn cosine(x: &[f32], y: &[f32]) -> f64 {
    let dot: f64 = x.iter().zip(y).map(|(a, b)| f64::from(a * b)).sum();
    let norm = |v: &[f32]| v.iter().map(|a| f64::from(a * a)).sum::<f64>().sqrt();
    dot / (norm(x) * norm(y)).max(1e-12)
}

/// Fluency from the perplexity detector's reference model.
struct ModelFluency(Arc<PerplexityDetector>);

impl Fluency for ModelFluency {
    fn log_perplexity(&self, text: &str) -> Result<f64, GeoError> {
        Ok(self.0.log_perplexity(text)?)
    }
}

fn load_llm(reference: Option<&str>, what: &str) -> Result<Arc<Llm>> {
    let reference = match reference {
        Some(r) => r.to_string(),
        None => super::default_ranker_dir()
            .map(|p| p.display().to_string())
            .context(
                "the GEO suite needs an LLM: pass --ranker <gguf|dir>, or run \
                 scripts/fetch-ranker-model.sh for the default SmolLM2",
            )?,
    };
    Ok(Arc::new(
        Llm::load(
            &reference,
            LoadOptions::default(),
            &folio_models::default_device(),
        )
        .with_context(|| format!("loading the {what} {reference}"))?,
    ))
}

/// The scenarios `args` name, and whether they are retrieval scenarios.
fn load_scenarios(args: &GeoArgs) -> Result<(Vec<Scenario>, bool)> {
    let path = &args.scenarios;
    let (mut scenarios, retrieval) = if path.is_file() {
        (load_catalog(path)?, false)
    } else if path.join("corpus.jsonl").is_file() {
        let run = args
            .run
            .as_deref()
            .context("a BEIR dataset needs --run <trec run> to build candidate lists from")?;
        let dataset = folio_datasets::BeirDataset::load(path, &args.split)?;
        let run = folio_eval::metrics::read_run(run)?;
        let choice = parse_target(&args.target)?;
        (
            folio_eval::geo::scenario::from_run(&dataset, &run, args.depth, choice),
            true,
        )
    } else if path.is_dir() {
        (round_robin(load_catalogs(path)?), false)
    } else {
        bail!("no such scenarios file or directory: {}", path.display());
    };
    if let Some(max) = args.max_scenarios {
        scenarios.truncate(max);
    }
    if scenarios.is_empty() {
        bail!(
            "{} gives no scenario (for a dataset: no query with a target of kind {})",
            path.display(),
            args.target
        );
    }
    Ok((scenarios, retrieval))
}

/// Interleaves the catalogs' scenarios, so that a prefix covers every catalog.
fn round_robin(scenarios: Vec<Scenario>) -> Vec<Scenario> {
    let mut by_source: Vec<Vec<Scenario>> = Vec::new();
    for s in scenarios {
        match by_source.iter_mut().find(|v| v[0].source == s.source) {
            Some(v) => v.push(s),
            None => by_source.push(vec![s]),
        }
    }
    let longest = by_source.iter().map(Vec::len).max().unwrap_or(0);
    let mut out = Vec::new();
    let mut iters: Vec<_> = by_source.into_iter().map(Vec::into_iter).collect();
    for _ in 0..longest {
        out.extend(iters.iter_mut().filter_map(Iterator::next));
    }
    out
}

fn parse_target(s: &str) -> Result<TargetChoice> {
    if s == "best-relevant" {
        return Ok(TargetChoice::BestRelevantNotFirst);
    }
    if let Some(n) = s.strip_prefix("irrelevant@")
        && let Ok(n) = n.parse::<usize>()
        && n >= 1
    {
        return Ok(TargetChoice::IrrelevantAtRank(n));
    }
    bail!("unknown --target {s:?}: best-relevant or irrelevant@N (N >= 1)")
}

fn parse_attacks(
    args: &GeoArgs,
    similarity: &Arc<dyn Similarity>,
    ranker: &Arc<Llm>,
) -> Result<Vec<Attack>> {
    let mut attacks = Vec::new();
    for name in args
        .attacks
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        match name {
            "template" => attacks.extend(STRATEGIES.into_iter().map(Attack::Template)),
            "rewrite" => attacks.push(Attack::Rewrite(RewriteAttack {
                settings: RewriteSettings {
                    min_similarity: args.min_similarity,
                    ..RewriteSettings::default()
                },
                similarity: similarity.clone(),
            })),
            "gcg" => attacks.push(Attack::Gcg(Box::new(GcgAttack::new(
                ranker.clone(),
                GcgSettings {
                    suffix_tokens: args.gcg_suffix,
                    steps: args.gcg_steps,
                    candidates_per_step: args.gcg_candidates,
                    top_k: args.gcg_top_k,
                    seed: args.seed,
                    ..GcgSettings::default()
                },
            )?))),
            other => match other.strip_prefix("template:") {
                Some(s) => attacks.push(Attack::Template(Strategy::parse(s)?)),
                None => {
                    bail!("unknown attack {other:?}: template, template:<strategy>, rewrite or gcg")
                }
            },
        }
    }
    if attacks.is_empty() {
        bail!("--attacks names no attack");
    }
    Ok(attacks)
}

pub fn eval_geo(args: GeoArgs) -> Result<()> {
    let (scenarios, retrieval) = load_scenarios(&args)?;
    let style: RankerKind = match &args.style {
        Some(s) => s.parse()?,
        None if retrieval => RankerKind::Pointwise,
        None => RankerKind::Recommend,
    };
    let defenses = args
        .defenses
        .split(',')
        .map(|d| NamedDefense::parse(d.trim()))
        .collect::<Result<Vec<_>, _>>()?;
    let llm = load_llm(args.ranker.as_deref(), "ranker")?;
    let attacker = match &args.attacker {
        Some(a) => load_llm(Some(a), "attacker")?,
        None => llm.clone(),
    };
    let (embedder, _) = super::load_embedder(args.similarity_model.clone(), None)?;
    let similarity: Arc<dyn Similarity> = Arc::new(EmbedderSimilarity(embedder));
    let mut ppl_settings = PerplexitySettings::default();
    if let Some(t) = args.perplexity_threshold {
        ppl_settings.threshold = t;
    }
    let perplexity = Arc::new(PerplexityDetector::new(llm.clone(), ppl_settings)?);
    let mut check_settings = InjectionSettings::default();
    if let Some(t) = args.injection_threshold {
        check_settings.threshold = t;
    }
    let judge = Arc::new(InjectionJudge::new(llm.clone(), check_settings)?);
    let attacks = parse_attacks(&args, &similarity, &llm)?;
    let suite = Suite {
        ranker: Arc::new(LlmRanker::new(llm.clone(), style, false)?),
        hardened: Arc::new(LlmRanker::new(llm.clone(), style, true)?),
        detectors: vec![Arc::new(InjectionPatterns), judge, perplexity.clone()],
        policy: args.defense_policy,
        fluency: Some(Arc::new(ModelFluency(perplexity))),
        similarity: Some(similarity),
        attacks,
        tools: Tools {
            rewriter: Some(Arc::new(LlmRewriter::new(attacker, 160))),
        },
        defenses,
    };
    let settings = RunSettings {
        trials: args.trials,
        seed: args.seed,
        budget: Budget {
            ranker_calls: args.budget_calls,
            time: Duration::from_secs(args.budget_seconds),
        },
        out: args.out.clone(),
        progress: true,
        bootstrap: BootstrapOptions::default(),
        report_only: args.report_only,
    };
    println!(
        "{} scenarios x {} trials, ranker {}, attacks {}, defenses {}",
        scenarios.len(),
        args.trials,
        suite.ranker.name(),
        suite
            .attacks
            .iter()
            .map(Attack::name)
            .collect::<Vec<_>>()
            .join(","),
        args.defenses
    );
    let outcome = folio_eval::geo::run::run(&suite, &scenarios, &settings)?;
    print!("{}", markdown_table(&outcome.summaries));
    println!(
        "\n{} trial records written now, {} already done; report: {}",
        outcome.ran,
        outcome.skipped,
        report_path(&args.out).display()
    );
    Ok(())
}

fn report_path(out: &Path) -> PathBuf {
    out.join("report.md")
}
