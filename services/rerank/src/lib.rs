//! LLM re-rankers behind Folio's [`Reranker`](folio_core::Reranker) seam.
//!
//! - [`PointwiseRanker`]: one prompt per (query, candidate); the score is the expected label
//!   value under the model's next-token distribution restricted to the labels (`yes`/`no`,
//!   or a graded scale), read from one forward pass, candidates batched with padding.
//! - [`ListwiseRanker`]: RankGPT-style; the model writes a permutation such as
//!   `[3] > [1] > [2]` for a window of candidates, windows slide from the bottom of the list to
//!   the top, and malformed answers are repaired deterministically ([`parse_permutation`]).
//! - [`RecommendationRanker`]: generative; the model sees a whole catalog and writes a
//!   numbered list of item names, read back with [`parse_recommendations`]. Not a re-ranking
//!   stage of search: the ranking-manipulation suite attacks it.
//!
//! - [`PerplexityDetector`] and [`InjectionJudge`]: detectors of manipulated candidate text
//!   for the serving path's `detect` defense (windowed perplexity; an LLM yes/no check for
//!   instructions addressed to an AI).
//!
//! Prompts are versioned JSON files ([`prompt`]); the model is any chat
//! [`Llm`](folio_models::llm::Llm) (Llama 3.1 from an HF directory, SmolLM2 from a GGUF, ...).
//! Untrusted text (query and passages) is stripped of the model's special-token strings before
//! it enters a prompt.

pub mod injection;
mod listwise;
pub mod perplexity;
mod pointwise;
pub mod prompt;
mod recommend;

use std::str::FromStr;
use std::sync::Arc;

use folio_core::Reranker;
use folio_models::llm::{Llm, LlmError};
use thiserror::Error;

pub use injection::{InjectionJudge, InjectionSettings};
pub use listwise::{ListwiseRanker, ListwiseSettings, Repairs, parse_permutation};
pub use perplexity::{PerplexityDetector, PerplexitySettings};
pub use pointwise::{PointwiseRanker, PointwiseSettings};
pub use prompt::PromptTemplate;
pub use recommend::{
    Item, RecommendSettings, Recommendation, RecommendationRanker, parse_recommendations,
};

/// Building or running a ranker failed.
#[derive(Debug, Error)]
pub enum RankerError {
    /// A prompt template is missing or malformed.
    #[error("prompt: {0}")]
    Prompt(String),
    /// The model failed.
    #[error(transparent)]
    Llm(#[from] LlmError),
    /// The requested ranker cannot run in this build.
    #[error("{0}")]
    Unavailable(String),
}

/// Which re-ranking stage a search runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RerankMode {
    /// Fused order.
    None,
    /// [`PointwiseRanker`].
    Pointwise,
    /// [`ListwiseRanker`].
    Listwise,
    /// A vision-language page re-ranker (needs the Qwen2-VL model family).
    Vlm,
}

/// The names [`RerankMode::from_str`] accepts.
pub const RERANK_MODES: [&str; 4] = ["none", "pointwise", "listwise", "vlm"];

impl FromStr for RerankMode {
    type Err = RankerError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(RerankMode::None),
            "pointwise" => Ok(RerankMode::Pointwise),
            "listwise" => Ok(RerankMode::Listwise),
            "vlm" => Ok(RerankMode::Vlm),
            other => Err(RankerError::Prompt(format!(
                "unknown re-ranker {other:?}; available: {}",
                RERANK_MODES.join(", ")
            ))),
        }
    }
}

/// Why the VLM page re-ranker cannot be built yet.
pub const VLM_UNAVAILABLE: &str = "the vlm re-ranker scores page images with a Qwen2-VL-family \
model, which this build of Folio cannot load yet; use pointwise or listwise";

/// Builds the re-ranker for `mode` over `llm`, with the default prompt of its kind unless
/// `prompt` names another (built-in `name-vN` or a file). `None` for [`RerankMode::None`].
pub fn build_reranker(
    mode: RerankMode,
    llm: Arc<Llm>,
    prompt: Option<&str>,
) -> Result<Option<Arc<dyn Reranker>>, RankerError> {
    Ok(match mode {
        RerankMode::None => None,
        RerankMode::Pointwise => {
            let mut settings = PointwiseSettings::default();
            if let Some(p) = prompt {
                settings.prompt = p.to_string();
            }
            Some(Arc::new(PointwiseRanker::new(llm, settings)?))
        }
        RerankMode::Listwise => {
            let mut settings = ListwiseSettings::default();
            if let Some(p) = prompt {
                settings.prompt = p.to_string();
            }
            Some(Arc::new(ListwiseRanker::new(llm, settings)?))
        }
        RerankMode::Vlm => return Err(RankerError::Unavailable(VLM_UNAVAILABLE.into())),
    })
}

/// The rendered chat prompt of a list template (listwise, recommend): each text cleaned, cut
/// to `max_tokens`, defused and filled into the template's `item` (or `default_item`), the
/// list filled into the user message with the query and the count.
fn render_list(
    llm: &Llm,
    template: &prompt::PromptTemplate,
    default_item: &str,
    query: &str,
    texts: &[&str],
    max_tokens: usize,
) -> Result<String, LlmError> {
    use std::collections::BTreeMap;
    let entry = template.item.as_deref().unwrap_or(default_item);
    let mut listed = String::new();
    for (i, t) in texts.iter().enumerate() {
        let text = template.defuse(&clean_and_truncate(llm, t, max_tokens)?);
        let id = (i + 1).to_string();
        listed.push_str(&prompt::fill(
            entry,
            &BTreeMap::from([("id", id.as_str()), ("passage", text.as_str())]),
        ));
    }
    let query = llm.strip_special_tokens(query);
    let count = texts.len().to_string();
    let values = BTreeMap::from([
        ("query", query.as_str()),
        ("count", count.as_str()),
        ("passages", listed.as_str()),
    ]);
    llm.render(&template.messages(&values), true)
}

/// `text` without special-token strings, cut to at most `max_tokens` tokens.
fn clean_and_truncate(llm: &Llm, text: &str, max_tokens: usize) -> Result<String, LlmError> {
    let clean = llm.strip_special_tokens(text);
    let ids = llm.encode(&clean)?;
    if ids.len() <= max_tokens {
        return Ok(clean);
    }
    llm.decode(&ids[..max_tokens])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_unknown_ones_list_the_choices() {
        for name in RERANK_MODES {
            assert!(name.parse::<RerankMode>().is_ok());
        }
        let err = "rankgpt".parse::<RerankMode>().unwrap_err().to_string();
        assert!(err.contains("pointwise, listwise"), "{err}");
    }
}

/// Models the unit tests load: the tiny random Llama fixture and the real SmolLM2.
#[cfg(test)]
pub(crate) mod test_models {
    use std::path::PathBuf;
    use std::sync::Arc;

    use folio_models::Device;
    use folio_models::llm::{Llm, LoadOptions};

    /// The tiny random Llama-3.1-shaped fixture of folio-models.
    pub(crate) fn tiny() -> anyhow::Result<Arc<Llm>> {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../models/tests/fixtures/llama/tiny-llama31"
        );
        Ok(Arc::new(Llm::load(
            dir,
            LoadOptions::default(),
            &Device::Cpu,
        )?))
    }

    /// The SmolLM2 GGUF fetched by `scripts/fetch-ranker-model.sh`, or `None` (with a printed
    /// reason) when it is absent; in CI its absence is a failure.
    pub(crate) fn smollm2() -> anyhow::Result<Option<Arc<Llm>>> {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../models/SmolLM2-135M-Instruct-GGUF/SmolLM2-135M-Instruct.Q4_1.gguf");
        if !path.is_file() {
            assert!(
                std::env::var_os("CI").is_none(),
                "{} is missing in CI: run scripts/fetch-ranker-model.sh",
                path.display()
            );
            eprintln!("skipped: {} not found", path.display());
            return Ok(None);
        }
        let llm = Llm::load(
            &path.display().to_string(),
            LoadOptions::default(),
            &Device::Cpu,
        )?;
        Ok(Some(Arc::new(llm)))
    }
}
