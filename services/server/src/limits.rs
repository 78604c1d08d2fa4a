//! Per-request limits on `/v1/*`: a concurrency cap that answers 429 with `retry-after`, and a
//! time limit that answers 408. Both answer the API's JSON error.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use tracing::warn;

use crate::ApiError;
use crate::state::AppState;

/// Seconds a refused client is told to wait.
const RETRY_AFTER_SECONDS: u64 = 1;

/// Refusals since start, logged every so often rather than each time.
static REFUSED: AtomicU64 = AtomicU64::new(0);

/// Takes a slot for the request or answers 429; then runs it under the time limit.
pub(crate) async fn limit(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Ok(_permit) = state.in_flight.clone().try_acquire_owned() else {
        let n = REFUSED.fetch_add(1, Ordering::Relaxed);
        if n.is_power_of_two() {
            warn!(
                refused = n + 1,
                limit = state.config.max_concurrent,
                "refusing requests over the concurrency limit"
            );
        }
        return Err(ApiError::Busy(RETRY_AFTER_SECONDS));
    };
    let timeout = state.config.request_timeout;
    tokio::time::timeout(timeout, next.run(request))
        .await
        .map_err(|_| ApiError::Timeout(timeout.as_secs().max(1)))
}
