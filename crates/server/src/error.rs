//! Errors: [`ServerError`] for starting and running the server, and [`ApiError`], what a client
//! is told, in OpenAI's error shape. This file is the one mapping from a failure to an HTTP
//! status.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ralmspec_engine::EngineError;
use serde::Serialize;

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The configuration is inconsistent (with itself or with the model).
    #[error("invalid server configuration: {0}")]
    Config(String),

    /// Listening or serving failed.
    #[error("serving failed: {0}")]
    Io(#[from] std::io::Error),

    /// A worker thread could not be started.
    #[error("could not start a worker thread: {0}")]
    Worker(std::io::Error),
}

/// An error response: the HTTP status and OpenAI's `{"error": {...}}` body.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
    /// Seconds to wait before retrying (a `Retry-After` header), for refused requests.
    pub retry_after: Option<u32>,
}

/// The `error` object of OpenAI's error responses.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub message: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<&'static str>,
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: &'a ErrorBody,
}

impl ApiError {
    fn new(
        status: StatusCode,
        kind: &'static str,
        code: Option<&'static str>,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            body: ErrorBody {
                message: message.into(),
                kind,
                param: None,
                code,
            },
            retry_after: None,
        }
    }

    /// Names the request field at fault.
    pub fn param(mut self, param: impl Into<String>) -> ApiError {
        self.body.param = Some(param.into());
        self
    }

    /// 400: the request is malformed or out of bounds.
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            None,
            message,
        )
    }

    /// 404 `model_not_found`.
    pub fn model_not_found(asked: &str, served: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            Some("model_not_found"),
            format!("The model `{asked}` does not exist; this server serves `{served}`."),
        )
        .param("model")
    }

    /// 404 for a path the server does not have.
    pub fn no_route(method: &str, path: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            Some("unknown_url"),
            format!("Unknown request URL: {method} {path}."),
        )
    }

    /// 404 for a resource the server does not have (a document number, say).
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            Some("not_found"),
            message,
        )
    }

    /// 401 `invalid_api_key` (OpenAI's answer to a missing or wrong key).
    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            Some("invalid_api_key"),
            "Incorrect or missing API key; send it as `Authorization: Bearer <key>`.",
        )
    }

    /// 408: the client did not send its whole body in time.
    pub fn body_timeout(limit: std::time::Duration) -> ApiError {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "invalid_request_error",
            Some("request_timeout"),
            format!(
                "The request body did not arrive within {} s.",
                limit.as_secs_f64()
            ),
        )
    }

    /// 413: the body exceeds the configured limit.
    pub fn too_large(limit: usize) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            None,
            format!("The request body exceeds {limit} bytes."),
        )
    }

    /// 503 with `Retry-After`: the queue is full.
    pub fn overloaded(retry_after: u32) -> ApiError {
        ApiError {
            retry_after: Some(retry_after),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                Some("overloaded"),
                "The server is at capacity; retry later.",
            )
        }
    }

    /// 503: the server is shutting down.
    pub fn shutting_down() -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            Some("shutting_down"),
            "The server is shutting down.",
        )
    }

    /// 503: the retrieval backend (a database) could not be reached for this request; the
    /// server goes on serving, and the same request may succeed once it is back.
    pub fn retriever_unavailable(e: impl std::fmt::Display) -> ApiError {
        ApiError {
            retry_after: Some(1),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                Some("retriever_unavailable"),
                e.to_string(),
            )
        }
    }

    /// 500: something failed that the client cannot fix.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            None,
            message,
        )
    }

    /// The body as JSON text (for a streamed error event).
    pub fn json(&self) -> String {
        serde_json::to_string(&Envelope { error: &self.body })
            .expect("an error body always serializes")
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> ApiError {
        match e {
            EngineError::TooLong { .. } => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some("context_length_exceeded"),
                e.to_string(),
            ),
            EngineError::BadRequest(_) => ApiError::invalid(e.to_string()),
            EngineError::Retrieval(r) if r.is_unavailable() => ApiError::retriever_unavailable(r),
            other => ApiError::internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            self.json(),
        )
            .into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_shape() {
        let e = ApiError::model_not_found("gpt-4", "smollm2");
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        let v: serde_json::Value = serde_json::from_str(&e.json()).unwrap();
        assert_eq!(v["error"]["code"], "model_not_found");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["param"], "model");
    }

    #[test]
    fn overloaded_says_when_to_retry() {
        let r = ApiError::overloaded(2).into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "2");
    }
}
