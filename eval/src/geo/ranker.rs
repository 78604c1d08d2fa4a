//! The rankers under attack, behind one [`GeoRanker`] interface.
//!
//! - [`LlmRanker::Pointwise`]: the search service's pointwise re-ranker (a yes/no relevance
//!   judgement per candidate, scored from the next-token distribution);
//! - [`LlmRanker::Listwise`]: its listwise re-ranker (a RankGPT-style permutation);
//! - [`LlmRanker::Recommend`]: a generative recommender that writes a numbered list of item
//!   names, the target's position parsed from the answer.
//!
//! Each is built with the plain or the hardened prompt. Rankers that read a causal language
//! model also expose what gradient attacks need: the model and a [`SlotPrompt`], the prompt
//! split where an adversarial suffix of the target goes, with the answer that promotes it.

use std::sync::Arc;

use folio_core::{Candidate as Passage, DocId, FusedHit, PageKey, RerankBudget, Reranker};
use folio_models::llm::Llm;
use folio_rerank::prompt::{
    DEFAULT_LISTWISE, DEFAULT_POINTWISE, DEFAULT_RECOMMEND, HARDENED_LISTWISE, HARDENED_POINTWISE,
    HARDENED_RECOMMEND,
};
use folio_rerank::{
    Item, ListwiseRanker, ListwiseSettings, PointwiseRanker, PointwiseSettings, RecommendSettings,
    RecommendationRanker,
};

use super::GeoError;
use super::scenario::Candidate;

/// A ranker's answer for one presentation of the candidates.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranking {
    /// Indices into the presented slice, best first. A generative ranker may leave out the
    /// items it did not name; they share the rank after the last named one.
    pub order: Vec<usize>,
    /// The ranker's score of each presented item, when it outputs scores (pointwise).
    pub scores: Option<Vec<f64>>,
}

impl Ranking {
    /// The 1-based rank of presented item `i`: its place in `order`, or `order.len() + 1` when
    /// the ranker left it out.
    pub fn rank_of(&self, i: usize) -> usize {
        self.order
            .iter()
            .position(|&j| j == i)
            .map_or(self.order.len() + 1, |p| p + 1)
    }
}

/// The prompt that ranks a target, split around the end of the target's text, with the
/// answer that promotes it: a gradient attack inserts its tokens between `before` and `after`
/// and makes `answer` likely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotPrompt {
    /// Prompt text up to the end of the target's text.
    pub before: String,
    /// The rest of the prompt.
    pub after: String,
    /// What the ranker answers when it promotes the target (`yes`; `1. <name>`).
    pub answer: String,
}

/// A ranker under attack.
pub trait GeoRanker: Send + Sync {
    /// Stable name, e.g. `recommend/recommend-v1`.
    fn name(&self) -> &str;

    /// Ranks `items` (in presentation order, their texts as the ranker should read them) for
    /// `query`. One call of this is one "ranker call" of an attack's budget.
    fn rank(&self, query: &str, items: &[Candidate]) -> Result<Ranking, GeoError>;

    /// The causal language model behind the ranker, for attacks that read its
    /// log-probabilities or gradients; `None` for rankers that are not one.
    fn language_model(&self) -> Option<&Arc<Llm>> {
        None
    }

    /// The prompt around the end of `items[target]`'s text (see [`SlotPrompt`]); `None` when
    /// the ranker has no single prompt whose answer decides the target's rank.
    fn slot_prompt(
        &self,
        _query: &str,
        _items: &[Candidate],
        _target: usize,
    ) -> Result<Option<SlotPrompt>, GeoError> {
        Ok(None)
    }

    /// Log-probability that the model gives the promoting answer for `items[target]`
    /// (teacher-forced), when the ranker exposes one.
    fn answer_logprob(
        &self,
        query: &str,
        items: &[Candidate],
        target: usize,
    ) -> Result<Option<f64>, GeoError> {
        let (Some(llm), Some(slot)) = (
            self.language_model(),
            self.slot_prompt(query, items, target)?,
        ) else {
            return Ok(None);
        };
        let prompt = llm.encode(&format!("{}{}", slot.before, slot.after))?;
        let answer = llm.encode(&slot.answer)?;
        let losses = llm
            .model()
            .target_losses(&[prompt.as_slice()], &answer)
            .map_err(|e| GeoError::Model(e.to_string()))?;
        Ok(losses.first().map(|l| -f64::from(*l) * answer.len() as f64))
    }
}

/// Which LLM ranking style to attack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RankerKind {
    /// [`LlmRanker::Pointwise`].
    Pointwise,
    /// [`LlmRanker::Listwise`].
    Listwise,
    /// [`LlmRanker::Recommend`].
    Recommend,
}

impl std::str::FromStr for RankerKind {
    type Err = GeoError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pointwise" => Ok(RankerKind::Pointwise),
            "listwise" => Ok(RankerKind::Listwise),
            "recommend" => Ok(RankerKind::Recommend),
            other => Err(GeoError::Invalid(format!(
                "unknown ranker style {other:?}; available: pointwise, listwise, recommend"
            ))),
        }
    }
}

/// The project's LLM rankers as [`GeoRanker`]s.
pub enum LlmRanker {
    /// One yes/no judgement per item; order by score.
    Pointwise(PointwiseRanker),
    /// One permutation per window of items.
    Listwise(ListwiseRanker),
    /// One numbered list of names for the whole catalog.
    Recommend(RecommendationRanker),
}

impl LlmRanker {
    /// The ranker of `kind` over `llm`, with its plain or hardened prompt.
    pub fn new(llm: Arc<Llm>, kind: RankerKind, hardened: bool) -> Result<Self, GeoError> {
        let pick = |plain: &str, hard: &str| if hardened { hard } else { plain }.to_string();
        Ok(match kind {
            RankerKind::Pointwise => LlmRanker::Pointwise(PointwiseRanker::new(
                llm,
                PointwiseSettings {
                    prompt: pick(DEFAULT_POINTWISE, HARDENED_POINTWISE),
                    ..PointwiseSettings::default()
                },
            )?),
            RankerKind::Listwise => LlmRanker::Listwise(ListwiseRanker::new(
                llm,
                ListwiseSettings {
                    prompt: pick(DEFAULT_LISTWISE, HARDENED_LISTWISE),
                    ..ListwiseSettings::default()
                },
            )?),
            RankerKind::Recommend => LlmRanker::Recommend(RecommendationRanker::new(
                llm,
                RecommendSettings {
                    prompt: pick(DEFAULT_RECOMMEND, HARDENED_RECOMMEND),
                    ..RecommendSettings::default()
                },
            )?),
        })
    }
}

/// A marker that cannot occur in rendered prompts, used to split one at the target's end.
const SLOT: &str = "\u{e000}FOLIO-SLOT\u{e000}";

fn split_at_slot(rendered: &str, answer: String) -> Result<SlotPrompt, GeoError> {
    let (before, after) = rendered
        .split_once(SLOT)
        .ok_or_else(|| GeoError::Invalid("the prompt lost the slot marker".into()))?;
    Ok(SlotPrompt {
        before: before.to_string(),
        after: after.to_string(),
        answer,
    })
}

impl GeoRanker for LlmRanker {
    fn name(&self) -> &str {
        match self {
            LlmRanker::Pointwise(r) => r.name(),
            LlmRanker::Listwise(r) => r.name(),
            LlmRanker::Recommend(r) => r.name(),
        }
    }

    fn rank(&self, query: &str, items: &[Candidate]) -> Result<Ranking, GeoError> {
        match self {
            LlmRanker::Pointwise(r) => {
                let prompts = items
                    .iter()
                    .map(|c| r.prompt_ids(query, &c.text))
                    .collect::<Result<Vec<_>, _>>()?;
                let mut scores = Vec::with_capacity(items.len());
                for chunk in prompts.chunks(4) {
                    let batch: Vec<&[u32]> = chunk.iter().map(Vec::as_slice).collect();
                    scores.extend(r.score(&batch)?);
                }
                let mut order: Vec<usize> = (0..items.len()).collect();
                order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
                Ok(Ranking {
                    order,
                    scores: Some(scores),
                })
            }
            LlmRanker::Listwise(r) => {
                let passages: Vec<Passage> = items
                    .iter()
                    .enumerate()
                    .map(|(i, c)| Passage {
                        hit: FusedHit {
                            page: PageKey {
                                doc_id: DocId(c.id.clone()),
                                page: 1 + i as u32,
                            },
                            score: 0.0,
                            ranks: Default::default(),
                            passage: None,
                        },
                        text: c.text.clone(),
                    })
                    .collect();
                let budget = RerankBudget {
                    max_candidates: items.len(),
                    time: std::time::Duration::from_secs(3600),
                };
                let reranked = Reranker::rerank(r, query, &passages, budget)?;
                Ok(Ranking {
                    order: reranked.into_iter().map(|r| r.index).collect(),
                    scores: None,
                })
            }
            LlmRanker::Recommend(r) => {
                let listed: Vec<Item<'_>> = items
                    .iter()
                    .map(|c| Item {
                        name: &c.title,
                        text: &c.text,
                    })
                    .collect();
                let answer = r.recommend(query, &listed, None)?;
                Ok(Ranking {
                    order: answer.order,
                    scores: None,
                })
            }
        }
    }

    fn language_model(&self) -> Option<&Arc<Llm>> {
        match self {
            LlmRanker::Pointwise(r) => Some(r.llm()),
            LlmRanker::Listwise(_) => None,
            LlmRanker::Recommend(r) => Some(r.llm()),
        }
    }

    fn slot_prompt(
        &self,
        query: &str,
        items: &[Candidate],
        target: usize,
    ) -> Result<Option<SlotPrompt>, GeoError> {
        let Some(chosen) = items.get(target) else {
            return Err(GeoError::Invalid(format!(
                "target {target} is outside the {} items",
                items.len()
            )));
        };
        let marked = format!("{}{SLOT}", chosen.text);
        Ok(match self {
            LlmRanker::Pointwise(r) => Some(split_at_slot(
                &r.prompt_text(query, &marked)?,
                r.best_label().to_string(),
            )?),
            LlmRanker::Listwise(_) => None,
            LlmRanker::Recommend(r) => {
                let listed: Vec<Item<'_>> = items
                    .iter()
                    .enumerate()
                    .map(|(i, c)| Item {
                        name: &c.title,
                        text: if i == target { &marked } else { &c.text },
                    })
                    .collect();
                Some(split_at_slot(
                    &r.prompt_text(query, &listed)?,
                    RecommendationRanker::first_line(&chosen.title),
                )?)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn left_out_items_share_the_rank_after_the_named_ones() {
        let r = Ranking {
            order: vec![2, 0],
            scores: None,
        };
        assert_eq!(r.rank_of(2), 1);
        assert_eq!(r.rank_of(0), 2);
        assert_eq!(r.rank_of(1), 3);
        assert_eq!(r.rank_of(3), 3);
    }

    #[test]
    fn ranker_styles_parse() {
        assert_eq!(
            "recommend".parse::<RankerKind>().ok(),
            Some(RankerKind::Recommend)
        );
        let err = "magic".parse::<RankerKind>().err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("pointwise, listwise, recommend")));
    }
}
