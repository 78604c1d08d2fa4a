//! API keys: an admin key for writes, search keys for reads, compared in constant time and
//! never logged.

use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::Response;
use subtle::ConstantTimeEq;

use crate::ApiError;
use crate::state::AppState;

/// The keys the server accepts. With none configured, the API is open.
#[derive(Clone, Default)]
pub struct ApiKeys {
    admin: Vec<Vec<u8>>,
    search: Vec<Vec<u8>>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys never reach a log: only how many there are.
        f.debug_struct("ApiKeys")
            .field("admin", &format_args!("{} redacted", self.admin.len()))
            .field("search", &format_args!("{} redacted", self.search.len()))
            .finish()
    }
}

/// What a request may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    /// Search and read.
    Read,
    /// Also ingest and delete.
    Admin,
}

impl ApiKeys {
    /// Keys from lists; empty strings are ignored. Keys shorter than 16 bytes are refused, so
    /// that a guessable key is never configured by mistake.
    pub fn new(admin: &[String], search: &[String]) -> Result<Self, String> {
        let clean = |keys: &[String], what: &str| -> Result<Vec<Vec<u8>>, String> {
            keys.iter()
                .map(|k| k.trim())
                .filter(|k| !k.is_empty())
                .map(|k| {
                    if k.len() < 16 {
                        Err(format!(
                            "an {what} key is {} characters long; use at least 16",
                            k.len()
                        ))
                    } else {
                        Ok(k.as_bytes().to_vec())
                    }
                })
                .collect()
        };
        Ok(ApiKeys {
            admin: clean(admin, "admin")?,
            search: clean(search, "search")?,
        })
    }

    /// True when no key is configured: every request is allowed.
    pub fn is_open(&self) -> bool {
        self.admin.is_empty() && self.search.is_empty()
    }

    /// What `presented` grants, if anything. Every configured key is compared, in constant
    /// time each, so timing tells nothing about which key or how much of it matched.
    pub fn access(&self, presented: &[u8]) -> Option<Access> {
        let matches = |keys: &[Vec<u8>]| {
            keys.iter().fold(subtle::Choice::from(0), |found, k| {
                found | k.as_slice().ct_eq(presented)
            })
        };
        let admin = bool::from(matches(&self.admin));
        let search = bool::from(matches(&self.search));
        if admin {
            Some(Access::Admin)
        } else if search {
            Some(Access::Read)
        } else {
            None
        }
    }
}

/// The access an API request needs: writes need admin, everything else read.
fn needed(method: &Method, path: &str) -> Access {
    let write = match *method {
        Method::GET | Method::HEAD | Method::OPTIONS => false,
        Method::POST => path != "/v1/search",
        _ => true,
    };
    if write { Access::Admin } else { Access::Read }
}

/// Middleware on `/v1/*`: checks the bearer key against what the request needs.
pub(crate) async fn require_key(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let keys = &state.config.keys;
    if keys.is_open() || request.method() == Method::OPTIONS {
        return Ok(next.run(request).await);
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or_else(|| {
            ApiError::Unauthorized(
                "this server needs an API key: send `authorization: Bearer <key>`".into(),
            )
        })?;
    let granted = keys
        .access(presented.as_bytes())
        .ok_or_else(|| ApiError::Unauthorized("unknown API key".into()))?;
    let need = needed(request.method(), request.uri().path());
    if granted < need {
        return Err(ApiError::Forbidden(
            "this key may search and read; writing needs an admin key".into(),
        ));
    }
    Ok(next.run(request).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> ApiKeys {
        ApiKeys::new(
            &["admin-key-0123456789".into()],
            &["search-key-0123456789".into(), " ".into()],
        )
        .unwrap_or_default()
    }

    #[test]
    fn keys_grant_their_level_only() {
        let k = keys();
        assert!(!k.is_open());
        assert_eq!(k.access(b"admin-key-0123456789"), Some(Access::Admin));
        assert_eq!(k.access(b"search-key-0123456789"), Some(Access::Read));
        assert_eq!(k.access(b"search-key-012345678"), None);
        assert_eq!(k.access(b""), None);
        assert!(ApiKeys::default().is_open());
    }

    #[test]
    fn short_keys_are_refused_and_debug_redacts() {
        assert!(ApiKeys::new(&["short".into()], &[]).is_err());
        let shown = format!("{:?}", keys());
        assert!(!shown.contains("0123456789"), "{shown}");
        assert!(shown.contains("1 redacted"), "{shown}");
    }

    #[test]
    fn writes_need_admin() {
        assert_eq!(needed(&Method::POST, "/v1/search"), Access::Read);
        assert_eq!(needed(&Method::GET, "/v1/documents"), Access::Read);
        assert_eq!(needed(&Method::POST, "/v1/documents"), Access::Admin);
        assert_eq!(needed(&Method::DELETE, "/v1/documents/x"), Access::Admin);
    }
}
