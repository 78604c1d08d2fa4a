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

pub mod metrics;
pub mod record;
pub mod report;
pub mod rng;
pub mod scenario;

pub use metrics::{BootstrapOptions, Estimate, GeoMetricsError, Interval, TrialOutcome};
pub use record::{TrialKey, TrialRecord, append_jsonl, read_completed, read_records};
pub use report::{GeoSummary, markdown_table, summarize};
pub use scenario::{Candidate, Scenario, ScenarioError, TargetChoice, load_catalog, load_catalogs};
