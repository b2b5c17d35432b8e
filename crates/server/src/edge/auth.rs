//! The API key: with `--api-key`, every request but `GET /health` (a liveness probe that
//! reveals nothing) and the web page's own files (`crate::ui`) must carry `Authorization: Bearer <key>`; `/metrics` is protected like the
//! API (Prometheus sends the key with `authorization: {credentials: ...}`). A missing or wrong
//! key gets 401 in OpenAI's error shape, with `WWW-Authenticate: Bearer`. CORS preflights are
//! answered by the CORS layer outside this one and never need the key.
//!
//! Hand-written rather than tower-http's `ValidateRequestHeaderLayer::bearer`: that layer
//! answers with an empty body, and OpenAI clients expect the error object.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// The expected `Authorization` value.
pub struct ApiKey {
    expected: Vec<u8>,
}

impl ApiKey {
    pub fn new(key: &str) -> ApiKey {
        ApiKey {
            expected: format!("Bearer {key}").into_bytes(),
        }
    }

    /// Compares in time independent of where the values differ.
    fn matches(&self, given: &[u8]) -> bool {
        given.len() == self.expected.len()
            && given
                .iter()
                .zip(&self.expected)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

/// The middleware.
pub async fn require_key(State(key): State<Arc<ApiKey>>, request: Request, next: Next) -> Response {
    if request.uri().path() == "/health" || crate::ui::is_page(request.uri().path()) {
        return next.run(request).await;
    }
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if key.matches(given) {
        next.run(request).await
    } else {
        ApiError::unauthorized().into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_bearer_value_matches() {
        let key = ApiKey::new("s3cret");
        assert!(key.matches(b"Bearer s3cret"));
        for bad in [
            &b""[..],
            b"s3cret",
            b"Bearer s3cre",
            b"Bearer s3cret2",
            b"bearer s3cret",
        ] {
            assert!(!key.matches(bad), "{}", String::from_utf8_lossy(bad));
        }
    }
}
