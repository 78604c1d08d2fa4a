//! Black-box rewriting: a beam search over rewrites of the target's text that an attacker
//! model proposes, scored only by the ranker's outputs (the target's rank, then its score when
//! the ranker outputs scores); no gradients, no log-probabilities.
//!
//! Each round, every text in the beam gets `proposals` rewrites, each under an instruction
//! drawn (seeded) from the GEO strategies plus a plain "answer the request better". A proposal
//! whose similarity to the original text is below `min_similarity` (MiniLM cosine in the
//! suite) is discarded before it costs a ranker call; a proposal already seen is not ranked
//! again. The beam keeps the best texts seen; the search stops at rank 1, when the ranker-call
//! budget or the time is spent, or after `rounds` rounds.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use super::template::STRATEGIES;
use super::{AttackContext, Attacked, Rewriter, editable_text};
use crate::geo::GeoError;
use crate::geo::rng::{SplitMix64, mix64};

/// How alike two texts are (1 = same meaning).
pub trait Similarity: Send + Sync {
    /// Similarity of `a` and `b`.
    fn similarity(&self, a: &str, b: &str) -> Result<f64, GeoError>;
}

/// Search settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RewriteSettings {
    /// Rounds of proposals at most.
    pub rounds: usize,
    /// Rewrites proposed per beam text and round.
    pub proposals: usize,
    /// Texts kept between rounds.
    pub beam: usize,
    /// Least similarity to the original a proposal needs.
    pub min_similarity: f64,
}

impl Default for RewriteSettings {
    fn default() -> Self {
        RewriteSettings {
            rounds: 4,
            proposals: 3,
            beam: 2,
            min_similarity: 0.75,
        }
    }
}

/// The black-box rewriting attack.
pub struct RewriteAttack {
    /// Search settings.
    pub settings: RewriteSettings,
    /// The semantic-preservation measure.
    pub similarity: Arc<dyn Similarity>,
}

/// The instruction added to the strategies' for rewriting.
const ANSWER_BETTER: &str = "Make it a more convincing answer to the customer's request.";

/// A scored text: lower `key` is better.
#[derive(Debug, Clone)]
struct Scored {
    key: (usize, f64),
    text: String,
}

fn sort_best_first(texts: &mut [Scored]) {
    texts.sort_by(|a, b| a.key.0.cmp(&b.key.0).then(a.key.1.total_cmp(&b.key.1)));
}

impl RewriteAttack {
    /// Runs the search on one trial.
    pub fn run(
        &self,
        ctx: &AttackContext<'_>,
        rewriter: Option<&dyn Rewriter>,
    ) -> Result<Attacked, GeoError> {
        let rewriter = rewriter.ok_or_else(|| {
            GeoError::Invalid("the rewrite attack needs an attacker model (--attacker)".into())
        })?;
        let s = self.settings;
        if s.beam == 0 || s.proposals == 0 {
            return Err(GeoError::Invalid(
                "rewrite: beam and proposals must be at least 1".into(),
            ));
        }
        let started = Instant::now();
        let mut instructions: Vec<&str> =
            STRATEGIES.iter().filter_map(|s| s.instruction()).collect();
        instructions.push(ANSWER_BETTER);
        let mut rng = SplitMix64::new(mix64(ctx.seed ^ 0x0072_6577_7269_7465));
        let original = editable_text(ctx.target_item()).to_string();
        let mut calls = 0u64;
        let mut attacker_calls = 0u64;
        let score = |text: &str, calls: &mut u64| -> Result<Scored, GeoError> {
            *calls += 1;
            let items = ctx.items_with(text);
            let ranking = ctx.ranker.rank(ctx.query, &items)?;
            let rank = ranking.rank_of(ctx.target);
            let score = ranking
                .scores
                .as_ref()
                .and_then(|s| s.get(ctx.target).copied())
                .unwrap_or(0.0);
            Ok(Scored {
                key: (rank, -score),
                text: text.to_string(),
            })
        };
        let out_of_budget =
            |calls: u64| calls >= ctx.budget.ranker_calls || started.elapsed() >= ctx.budget.time;
        let mut beam = vec![score(&original, &mut calls)?];
        let mut seen: HashSet<String> = HashSet::from([original.clone()]);
        'search: for round in 0..s.rounds {
            if beam[0].key.0 == 1 {
                break;
            }
            let mut next = beam.clone();
            for parent in &beam {
                for _ in 0..s.proposals {
                    if out_of_budget(calls) {
                        sort_best_first(&mut next);
                        beam = next;
                        break 'search;
                    }
                    let instruction = instructions[rng.index(instructions.len())];
                    let proposal =
                        rewriter.rewrite(&parent.text, instruction, ctx.query, rng.next_u64())?;
                    attacker_calls += 1;
                    if !seen.insert(proposal.clone()) {
                        continue;
                    }
                    let sim = self.similarity.similarity(&original, &proposal)?;
                    if sim < s.min_similarity {
                        tracing::debug!(round, sim, "rewrite rejected: meaning drifted");
                        continue;
                    }
                    let scored = score(&proposal, &mut calls)?;
                    tracing::debug!(round, rank = scored.key.0, sim, "rewrite scored");
                    let done = scored.key.0 == 1;
                    next.push(scored);
                    if done {
                        sort_best_first(&mut next);
                        beam = next;
                        break 'search;
                    }
                }
            }
            sort_best_first(&mut next);
            next.truncate(s.beam);
            beam = next;
        }
        let best = &beam[0].text;
        Ok(Attacked {
            text: ctx.items_with(best)[ctx.target].text.clone(),
            ranker_calls: calls,
            attacker_calls,
        })
    }
}
