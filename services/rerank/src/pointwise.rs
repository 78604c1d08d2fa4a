//! Pointwise re-ranking: one prompt per candidate, scored from a single forward pass.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use folio_core::{Candidate, RerankBudget, RerankError, Reranked, Reranker};
use folio_models::llm::{Llm, LlmError};
use tracing::debug;

use crate::prompt::{DEFAULT_POINTWISE, PromptKind, PromptTemplate};
use crate::{RankerError, clean_and_truncate};

/// Pointwise ranker settings.
#[derive(Debug, Clone, PartialEq)]
pub struct PointwiseSettings {
    /// Prompt template: built-in `name-vN` or a file.
    pub prompt: String,
    /// Candidate text is cut to this many tokens.
    pub max_passage_tokens: usize,
    /// Prompts per forward pass.
    pub batch_size: usize,
}

impl Default for PointwiseSettings {
    fn default() -> Self {
        PointwiseSettings {
            prompt: DEFAULT_POINTWISE.into(),
            max_passage_tokens: 512,
            batch_size: 4,
        }
    }
}

/// A label's token ids (its surface forms) and value.
#[derive(Debug, Clone)]
struct LabelTokens {
    ids: Vec<u32>,
    value: f64,
}

/// Scores each candidate by the expected label value: the next-token log-probabilities of each
/// label's forms are summed (log-sum-exp), renormalised over the labels, and averaged with
/// the label values.
pub struct PointwiseRanker {
    llm: Arc<Llm>,
    template: PromptTemplate,
    labels: Vec<LabelTokens>,
    settings: PointwiseSettings,
    name: String,
}

impl PointwiseRanker {
    /// Loads the prompt and resolves each label form to a single token; a label with no
    /// single-token form is an error naming it.
    pub fn new(llm: Arc<Llm>, settings: PointwiseSettings) -> Result<Self, RankerError> {
        Self::of_kind(llm, settings, PromptKind::Pointwise)
    }

    /// [`PointwiseRanker::new`] for a prompt of another yes/no kind ([`PromptKind::Check`]).
    pub(crate) fn of_kind(
        llm: Arc<Llm>,
        settings: PointwiseSettings,
        kind: PromptKind,
    ) -> Result<Self, RankerError> {
        let template = PromptTemplate::load_kind(&settings.prompt, kind)?;
        let mut labels = Vec::with_capacity(template.labels.len());
        for label in &template.labels {
            let forms = match label.forms.is_empty() {
                true => std::slice::from_ref(&label.text),
                false => label.forms.as_slice(),
            };
            let mut ids: Vec<u32> = forms
                .iter()
                .filter_map(|f| llm.single_token(f).ok())
                .collect();
            ids.sort_unstable();
            ids.dedup();
            if ids.is_empty() {
                return Err(RankerError::Llm(LlmError::NotOneToken {
                    label: label.text.clone(),
                    ids: llm.encode(&label.text)?,
                }));
            }
            labels.push(LabelTokens {
                ids,
                value: label.value,
            });
        }
        let name = format!("pointwise/{}", template.id());
        Ok(PointwiseRanker {
            llm,
            template,
            labels,
            settings,
            name,
        })
    }

    /// The token ids of the prompt for one candidate.
    pub fn prompt_ids(&self, query: &str, passage: &str) -> Result<Vec<u32>, LlmError> {
        self.llm.encode(&self.prompt_text(query, passage)?)
    }

    /// The rendered prompt (chat template applied) for one candidate.
    pub fn prompt_text(&self, query: &str, passage: &str) -> Result<String, LlmError> {
        let query = self.llm.strip_special_tokens(query);
        let passage = clean_and_truncate(&self.llm, passage, self.settings.max_passage_tokens)?;
        let passage = self.template.defuse(&passage);
        let values = BTreeMap::from([("query", query.as_str()), ("passage", passage.as_str())]);
        self.llm.render(&self.template.messages(&values), true)
    }

    /// The model.
    pub fn llm(&self) -> &Arc<Llm> {
        &self.llm
    }

    /// The text of the label with the highest value (`yes`): the answer a manipulation of
    /// this ranker wants.
    pub fn best_label(&self) -> &str {
        self.template
            .labels
            .iter()
            .max_by(|a, b| a.value.total_cmp(&b.value))
            .map_or("", |l| l.text.as_str())
    }

    /// Scores prompts (one forward pass for the batch).
    pub fn score(&self, prompts: &[&[u32]]) -> Result<Vec<f64>, LlmError> {
        let logprobs = self.llm.next_token_logprobs(prompts)?.to_vec2::<f32>()?;
        Ok(logprobs
            .iter()
            .map(|row| self.expected_value(row))
            .collect())
    }

    fn expected_value(&self, logprobs: &[f32]) -> f64 {
        let per_label: Vec<f64> = self
            .labels
            .iter()
            .map(|l| {
                log_sum_exp(l.ids.iter().map(|&i| {
                    logprobs
                        .get(i as usize)
                        .map_or(f64::NEG_INFINITY, |&v| f64::from(v))
                }))
            })
            .collect();
        let norm = log_sum_exp(per_label.iter().copied());
        self.labels
            .iter()
            .zip(&per_label)
            .map(|(l, lp)| l.value * (lp - norm).exp())
            .sum()
    }
}

fn log_sum_exp(values: impl Iterator<Item = f64> + Clone) -> f64 {
    let max = values.clone().fold(f64::NEG_INFINITY, f64::max);
    if max == f64::NEG_INFINITY {
        return max;
    }
    max + values.map(|v| (v - max).exp()).sum::<f64>().ln()
}

impl Reranker for PointwiseRanker {
    fn name(&self) -> &str {
        &self.name
    }

    fn rerank(
        &self,
        query: &str,
        candidates: &[Candidate],
        budget: RerankBudget,
    ) -> Result<Vec<Reranked>, RerankError> {
        let started = Instant::now();
        let model_err = |e: LlmError| RerankError::Model(e.to_string());
        let n = candidates.len().min(budget.max_candidates);
        let prompts = candidates[..n]
            .iter()
            .map(|c| self.prompt_ids(query, &c.text))
            .collect::<Result<Vec<_>, _>>()
            .map_err(model_err)?;
        // Similar lengths share a batch, so little of it is padding.
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&i| (prompts[i].len(), i));
        let mut scores = vec![0.0; n];
        for chunk in order.chunks(self.settings.batch_size.max(1)) {
            if started.elapsed() >= budget.time {
                return Err(RerankError::Timeout(started.elapsed()));
            }
            let batch: Vec<&[u32]> = chunk.iter().map(|&i| prompts[i].as_slice()).collect();
            for (&i, s) in chunk.iter().zip(self.score(&batch).map_err(model_err)?) {
                scores[i] = s;
            }
        }
        debug!(ranker = %self.name, candidates = n, ms = started.elapsed().as_millis(), "pointwise done");
        let mut out: Vec<Reranked> = scores
            .into_iter()
            .enumerate()
            .map(|(index, score)| Reranked { index, score })
            .collect();
        out.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.index.cmp(&b.index)));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_sum_exp_is_stable() {
        let v = [1000.0, 1000.0];
        assert!((log_sum_exp(v.iter().copied()) - (1000.0 + 2f64.ln())).abs() < 1e-9);
        assert_eq!(
            log_sum_exp([f64::NEG_INFINITY].into_iter()),
            f64::NEG_INFINITY
        );
    }
}
