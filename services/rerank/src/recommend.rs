//! Generative recommendation ranking: the model sees the whole catalog in one prompt and writes
//! a numbered list of item names, best first; the ranking is the order in which the answer
//! names the items. This is how LLM shopping assistants rank products, and the ranker the
//! strategic-text-sequence attacks target.

use std::sync::Arc;
use std::time::Instant;

use folio_models::llm::{Llm, LlmError, Stop};
use tracing::debug;

use crate::prompt::{DEFAULT_RECOMMEND, PromptKind, PromptTemplate};
use crate::{RankerError, render_list};

/// Recommendation ranker settings.
#[derive(Debug, Clone, PartialEq)]
pub struct RecommendSettings {
    /// Prompt template (kind `recommend`): built-in `name-vN` or a file.
    pub prompt: String,
    /// Each item's text is cut to this many tokens.
    pub max_item_tokens: usize,
    /// Longest answer.
    pub max_new_tokens: usize,
}

impl Default for RecommendSettings {
    fn default() -> Self {
        RecommendSettings {
            prompt: DEFAULT_RECOMMEND.into(),
            max_item_tokens: 256,
            max_new_tokens: 160,
        }
    }
}

/// One catalog item as the ranker sees it.
#[derive(Debug, Clone, Copy)]
pub struct Item<'a> {
    /// The name the answer is searched for.
    pub name: &'a str,
    /// The entry shown in the prompt.
    pub text: &'a str,
}

/// The model's answer and the ranking read from it.
#[derive(Debug, Clone, PartialEq)]
pub struct Recommendation {
    /// Indices of the items the answer names, in the order it first names them; items it does
    /// not name are absent.
    pub order: Vec<usize>,
    /// The answer as written.
    pub answer: String,
    /// Whether the answer hit `max_new_tokens` before the end of its turn.
    pub truncated: bool,
}

/// Ranks a catalog by asking the model for recommendations.
pub struct RecommendationRanker {
    llm: Arc<Llm>,
    template: PromptTemplate,
    settings: RecommendSettings,
    name: String,
}

impl RecommendationRanker {
    /// Loads the prompt template (it must be of kind `recommend`).
    pub fn new(llm: Arc<Llm>, settings: RecommendSettings) -> Result<Self, RankerError> {
        let template = PromptTemplate::load_kind(&settings.prompt, PromptKind::Recommend)?;
        let name = format!("recommend/{}", template.id());
        Ok(RecommendationRanker {
            llm,
            template,
            settings,
            name,
        })
    }

    /// `recommend/<template id>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The model.
    pub fn llm(&self) -> &Arc<Llm> {
        &self.llm
    }

    /// The rendered prompt (chat template applied, ready for generation) for `items`.
    pub fn prompt_text(&self, query: &str, items: &[Item<'_>]) -> Result<String, LlmError> {
        let texts: Vec<&str> = items.iter().map(|i| i.text).collect();
        render_list(
            &self.llm,
            &self.template,
            "{passage}\n\n",
            query,
            &texts,
            self.settings.max_item_tokens,
        )
    }

    /// The text a well-behaved answer starts with when it recommends `name` first.
    pub fn first_line(name: &str) -> String {
        format!("1. {name}")
    }

    /// Asks for recommendations and reads the ranking from the answer.
    pub fn recommend(
        &self,
        query: &str,
        items: &[Item<'_>],
        deadline: Option<Instant>,
    ) -> Result<Recommendation, LlmError> {
        let started = Instant::now();
        let prompt = self.llm.encode(&self.prompt_text(query, items)?)?;
        let answer = self
            .llm
            .generate(&prompt, self.settings.max_new_tokens, deadline)?;
        let names: Vec<&str> = items.iter().map(|i| i.name).collect();
        let order = parse_recommendations(&answer.text, &names);
        debug!(ranker = %self.name, items = items.len(), named = order.len(),
            ms = started.elapsed().as_millis(), "recommendation done");
        Ok(Recommendation {
            order,
            truncated: answer.stop == Stop::Length,
            answer: answer.text,
        })
    }
}

/// The indices of `names` in the order `answer` first mentions them (ASCII case ignored).
/// Longer names are matched first and their spans masked, so a name contained in another
/// (`Classic` in `BrewMaster Classic`) only counts where it stands alone. Empty names and
/// names never mentioned are left out.
pub fn parse_recommendations(answer: &str, names: &[&str]) -> Vec<usize> {
    let mut text: Vec<u8> = answer.to_ascii_lowercase().into_bytes();
    let mut by_length: Vec<usize> = (0..names.len())
        .filter(|&i| !names[i].trim().is_empty())
        .collect();
    by_length.sort_by_key(|&i| (std::cmp::Reverse(names[i].len()), i));
    let mut first: Vec<(usize, usize)> = Vec::new();
    for i in by_length {
        let name = names[i].trim().to_ascii_lowercase().into_bytes();
        let mut found = None;
        let mut at = 0;
        while at + name.len() <= text.len() {
            if text[at..at + name.len()] == name[..] {
                found.get_or_insert(at);
                // Mask every occurrence, so shorter names cannot match inside it.
                text[at..at + name.len()].fill(0);
                at += name.len();
            } else {
                at += 1;
            }
        }
        if let Some(at) = found {
            first.push((at, i));
        }
    }
    first.sort_unstable();
    first.into_iter().map(|(_, i)| i).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_rank_items_by_first_mention() {
        let names = [
            "FrenchPress Classic",
            "BrewMaster Classic",
            "Classic",
            "Solo",
        ];
        let answer = "1. brewmaster classic - durable.\n2. Solo\n3. FrenchPress Classic\n\
                      Also: BrewMaster Classic again, and Classic.";
        assert_eq!(parse_recommendations(answer, &names), vec![1, 3, 0, 2]);
        assert_eq!(
            parse_recommendations("none of them", &names),
            Vec::<usize>::new()
        );
        assert_eq!(parse_recommendations("", &[""]), Vec::<usize>::new());
    }

    #[test]
    fn the_hardened_template_fences_items() -> Result<(), RankerError> {
        let t =
            PromptTemplate::load_kind(crate::prompt::HARDENED_RECOMMEND, PromptKind::Recommend)?;
        assert_eq!(t.fence.as_deref(), Some("item"));
        assert!(t.item.as_deref().is_some_and(|i| i.contains("<item>")));
        let plain = PromptTemplate::load_kind(DEFAULT_RECOMMEND, PromptKind::Recommend)?;
        assert!(plain.fence.is_none());
        Ok(())
    }
}
