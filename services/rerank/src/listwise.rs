//! Listwise re-ranking (RankGPT-style): the model writes a permutation of a window of
//! candidates; windows slide from the bottom of the list to the top so that good candidates
//! rise through overlapping windows.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use folio_core::{Candidate, RerankBudget, RerankError, Reranked, Reranker};
use folio_models::llm::{Llm, LlmError, Stop};
use tracing::{debug, warn};

use crate::prompt::{DEFAULT_LISTWISE, PromptKind, PromptTemplate};
use crate::{RankerError, render_list};

/// Listwise ranker settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ListwiseSettings {
    /// Prompt template: built-in `name-vN` or a file.
    pub prompt: String,
    /// Each candidate's text is cut to this many tokens.
    pub max_passage_tokens: usize,
    /// Candidates per window.
    pub window: usize,
    /// How far the window moves up each time (less than `window`, so windows overlap).
    pub step: usize,
}

impl Default for ListwiseSettings {
    fn default() -> Self {
        ListwiseSettings {
            prompt: DEFAULT_LISTWISE.into(),
            max_passage_tokens: 160,
            window: 20,
            step: 10,
        }
    }
}

/// What [`parse_permutation`] had to fix in a model's answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Repairs {
    /// Ids outside `1..=n`, dropped.
    pub invented: usize,
    /// Ids seen before, dropped.
    pub repeated: usize,
    /// Ids never written, appended in their previous order.
    pub missing: usize,
}

impl Repairs {
    /// True when the answer was a clean permutation.
    pub fn is_clean(&self) -> bool {
        *self == Repairs::default()
    }
}

/// Reads a permutation of `n` candidates (1-based ids as shown in the prompt) from a model's
/// answer and returns 0-based indices, best first, with the repairs made. Bracketed ids
/// (`[3]`) are read when any are present, else every number. Invented and repeated ids are
/// dropped; missing ones follow in their original order. Deterministic for any input.
pub fn parse_permutation(answer: &str, n: usize) -> (Vec<usize>, Repairs) {
    let bracketed = bracketed_numbers(answer);
    let numbers = if bracketed.is_empty() {
        all_numbers(answer)
    } else {
        bracketed
    };
    let mut seen = vec![false; n];
    let mut order = Vec::with_capacity(n);
    let mut repairs = Repairs::default();
    for id in numbers {
        match id.checked_sub(1).filter(|&i| i < n) {
            None => repairs.invented += 1,
            Some(i) if seen[i] => repairs.repeated += 1,
            Some(i) => {
                seen[i] = true;
                order.push(i);
            }
        }
    }
    for (i, s) in seen.iter().enumerate() {
        if !s {
            repairs.missing += 1;
            order.push(i);
        }
    }
    (order, repairs)
}

/// Numbers written as `[digits]`; a number too large for `usize` counts as `usize::MAX`.
fn bracketed_numbers(text: &str) -> Vec<usize> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        rest = &rest[open + 1..];
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits > 0 && rest[digits..].starts_with(']') {
            out.push(rest[..digits].parse().unwrap_or(usize::MAX));
        }
    }
    out
}

fn all_numbers(text: &str) -> Vec<usize> {
    text.split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap_or(usize::MAX))
        .collect()
}

/// The sliding windows `(start, end)` over `n` candidates, bottom first.
fn windows(n: usize, window: usize, step: usize) -> Vec<(usize, usize)> {
    let (window, step) = (window.max(2), step.clamp(1, window.max(2) - 1));
    let mut out = Vec::new();
    let mut end = n;
    while end > 0 {
        let start = end.saturating_sub(window);
        out.push((start, end));
        if start == 0 {
            break;
        }
        end -= step;
    }
    out
}

/// The RankGPT-style listwise ranker.
pub struct ListwiseRanker {
    llm: Arc<Llm>,
    template: PromptTemplate,
    settings: ListwiseSettings,
    name: String,
    answers: AtomicU64,
    repaired: AtomicU64,
}

impl ListwiseRanker {
    /// Loads the prompt template.
    pub fn new(llm: Arc<Llm>, settings: ListwiseSettings) -> Result<Self, RankerError> {
        let template = PromptTemplate::load_kind(&settings.prompt, PromptKind::Listwise)?;
        let name = format!("listwise/{}", template.id());
        Ok(ListwiseRanker {
            llm,
            template,
            settings,
            name,
            answers: AtomicU64::new(0),
            repaired: AtomicU64::new(0),
        })
    }

    /// Answers parsed so far and how many of them needed repairs.
    pub fn answer_counts(&self) -> (u64, u64) {
        (
            self.answers.load(Ordering::Relaxed),
            self.repaired.load(Ordering::Relaxed),
        )
    }

    /// The token ids of the prompt for one window of passages.
    pub fn prompt_ids(&self, query: &str, passages: &[&str]) -> Result<Vec<u32>, LlmError> {
        let text = render_list(
            &self.llm,
            &self.template,
            "[{id}] {passage}\n",
            query,
            passages,
            self.settings.max_passage_tokens,
        )?;
        self.llm.encode(&text)
    }
}

impl Reranker for ListwiseRanker {
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
        let deadline = started + budget.time;
        let model_err = |e: LlmError| RerankError::Model(e.to_string());
        let n = candidates.len().min(budget.max_candidates);
        let mut order: Vec<usize> = (0..n).collect();
        for (start, end) in windows(n, self.settings.window, self.settings.step) {
            let ids = &order[start..end];
            let texts: Vec<&str> = ids.iter().map(|&i| candidates[i].text.as_str()).collect();
            let prompt = self.prompt_ids(query, &texts).map_err(model_err)?;
            // "[12] > " is at most ~6 tokens a candidate.
            let max_new = 6 * ids.len() + 8;
            let answer = self
                .llm
                .generate(&prompt, max_new, Some(deadline))
                .map_err(model_err)?;
            if answer.stop == Stop::Deadline {
                return Err(RerankError::Timeout(started.elapsed()));
            }
            let (perm, repairs) = parse_permutation(&answer.text, ids.len());
            self.answers.fetch_add(1, Ordering::Relaxed);
            if !repairs.is_clean() {
                self.repaired.fetch_add(1, Ordering::Relaxed);
                let excerpt: String = answer.text.chars().take(120).collect();
                warn!(ranker = %self.name, ?repairs, answer = ?excerpt, "repaired a permutation");
            }
            let reordered: Vec<usize> = perm.iter().map(|&p| ids[p]).collect();
            order.splice(start..end, reordered);
        }
        debug!(ranker = %self.name, candidates = n, ms = started.elapsed().as_millis(), "listwise done");
        Ok(order
            .into_iter()
            .enumerate()
            .map(|(rank, index)| Reranked {
                index,
                score: (n - rank) as f64,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn clean_answers_parse_as_written() {
        let (order, repairs) = parse_permutation("[3] > [1] > [2]", 3);
        assert_eq!(order, vec![2, 0, 1]);
        assert!(repairs.is_clean());
    }

    #[test]
    fn answers_are_repaired_and_counted() {
        let (order, repairs) = parse_permutation("Ranking: [2] > [9] > [2] > [4]. Done", 4);
        assert_eq!(order, vec![1, 3, 0, 2]);
        assert_eq!(
            repairs,
            Repairs {
                invented: 1,
                repeated: 1,
                missing: 2
            }
        );
        // Without brackets every number counts; [0] is invented (ids are 1-based).
        assert_eq!(parse_permutation("2, 1", 3).0, vec![1, 0, 2]);
        assert_eq!(parse_permutation("[0] > [1]", 2).1.invented, 1);
        // No answer at all keeps the order.
        let (order, repairs) = parse_permutation("I cannot rank these.", 3);
        assert_eq!(order, vec![0, 1, 2]);
        assert_eq!(repairs.missing, 3);
        // Huge numbers do not overflow.
        assert_eq!(
            parse_permutation("[99999999999999999999999]", 1).1.invented,
            1
        );
    }

    #[test]
    fn windows_slide_bottom_up_and_cover_everything() {
        assert_eq!(windows(30, 20, 10), vec![(10, 30), (0, 20)]);
        assert_eq!(windows(5, 20, 10), vec![(0, 5)]);
        assert_eq!(windows(0, 20, 10), vec![]);
        assert_eq!(
            windows(25, 10, 5),
            vec![(15, 25), (10, 20), (5, 15), (0, 10)]
        );
        // A step not below the window is clamped so windows still overlap.
        assert_eq!(windows(4, 2, 5), vec![(2, 4), (1, 3), (0, 2)]);
    }

    proptest! {
        #[test]
        fn any_answer_gives_a_permutation(answer in ".{0,80}", n in 0usize..30) {
            let (order, _) = parse_permutation(&answer, n);
            let mut sorted = order.clone();
            sorted.sort_unstable();
            prop_assert_eq!(sorted, (0..n).collect::<Vec<_>>());
        }
    }
}
