//! Errors raised at the seams. Each variant says whose fault it is: the caller's input or the
//! service.

use thiserror::Error;

/// An embedder failed.
#[derive(Debug, Error)]
pub enum EmbedError {
    /// The input cannot be embedded (empty, wrong kind for this model, ...).
    #[error("invalid input for embedder: {0}")]
    InvalidInput(String),
    /// The model failed while running.
    #[error("embedder failed: {0}")]
    Model(String),
}

/// A route failed.
#[derive(Debug, Error)]
pub enum RetrieveError {
    /// The query cannot be run by this route (e.g. no embedding for a dense route).
    #[error("invalid query for route {route}: {message}")]
    InvalidQuery {
        /// The route.
        route: String,
        /// What is wrong.
        message: String,
    },
    /// The index failed.
    #[error("route {route} failed: {message}")]
    Index {
        /// The route.
        route: String,
        /// What failed.
        message: String,
    },
    /// The database behind the route cannot be reached or failed; retrying later may work.
    #[error("route {route} is unavailable: {message}")]
    Unavailable {
        /// The route.
        route: String,
        /// What failed.
        message: String,
    },
}

/// A re-ranker failed.
#[derive(Debug, Error)]
pub enum RerankError {
    /// The time budget ran out.
    #[error("re-ranker ran out of time after {0:?}")]
    Timeout(std::time::Duration),
    /// The model failed.
    #[error("re-ranker failed: {0}")]
    Model(String),
}
