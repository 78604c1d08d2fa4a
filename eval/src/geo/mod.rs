//! Foundations of the ranking-manipulation (GEO) robustness suite: how far content-rewriting
//! attacks move a target candidate up an LLM ranker's ordering, and how often detectors catch
//! them.
//!
//! - [`scenario`]: the scenarios (query, candidates, target), loaded from product catalogs or
//!   built from retrieval results, and their reproducible presentation orders.
//! - [`rng`]: the seeded generator and the seed mixing that make every trial re-runnable alone.
//! - [`metrics`]: rank statistics, promotion rates, advantage, bootstrap intervals, detection
//!   rates and ROC/AUC over per-trial outcomes.
//! - [`record`]: one JSON line per finished trial, and reading them back to resume a run.
//! - [`report`]: a summary per (attack, defense) pair and its Markdown table.
//! - [`ranker`]: the rankers under attack behind one [`GeoRanker`] interface (pointwise,
//!   listwise and generative recommendation LLM rankers), with what gradient attacks need.
//! - [`attacks`]: template strategies, black-box rewriting and the gradient (GCG) attack.
//! - [`run`]: the resumable runner (`folio eval geo`) and its report; [`plots`]: its charts.

pub mod attacks;
pub mod metrics;
pub mod plots;
pub mod ranker;
pub mod record;
pub mod report;
pub mod rng;
pub mod run;
pub mod scenario;

pub use metrics::{BootstrapOptions, Estimate, GeoMetricsError, Interval, TrialOutcome};
pub use ranker::{GeoRanker, LlmRanker, RankerKind, Ranking, SlotPrompt};
pub use record::{TrialKey, TrialRecord, append_jsonl, read_completed, read_records};
pub use report::{GeoSummary, markdown_table, summarize};
pub use scenario::{Candidate, Scenario, ScenarioError, TargetChoice, load_catalog, load_catalogs};

/// A GEO run, attack or ranker failed.
#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    /// Building or running an LLM ranker failed.
    #[error("ranker: {0}")]
    Ranker(#[from] folio_rerank::RankerError),
    /// A re-ranker failed.
    #[error("ranker: {0}")]
    Rerank(#[from] folio_core::RerankError),
    /// The language model failed.
    #[error("language model: {0}")]
    Llm(#[from] folio_models::llm::LlmError),
    /// A model computation failed.
    #[error("model: {0}")]
    Model(String),
    /// Bad settings or input.
    #[error("{0}")]
    Invalid(String),
    /// Loading scenarios failed.
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    /// Reading or writing trial records failed.
    #[error(transparent)]
    Record(#[from] record::RecordError),
    /// Summarising failed.
    #[error(transparent)]
    Metrics(#[from] GeoMetricsError),
    /// A file could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
}
