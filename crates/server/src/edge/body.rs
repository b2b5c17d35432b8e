//! The body deadline: a request's whole body must arrive within `body_read_timeout`, however
//! it trickles in, or the client gets 408 and the connection is closed. The body is read here
//! (bounded by `max_body_bytes`: 413 beyond) and handed on in memory; handlers read it at once.
//!
//! A tower-http `RequestBodyTimeoutLayer` would not do: its timeout restarts with every frame,
//! so a client sending a byte every few seconds would hold its connection for ever.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::error::ApiError;

/// The limits of a body.
pub struct Deadline {
    pub limit: usize,
    pub timeout: Duration,
}

/// The middleware.
pub async fn deadline(State(d): State<Arc<Deadline>>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let read = Limited::new(body, d.limit).collect();
    let bytes = match tokio::time::timeout(d.timeout, read).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return ApiError::too_large(d.limit).into_response();
        }
        Ok(Err(e)) => {
            return ApiError::invalid(format!("Could not read the request body: {e}"))
                .into_response();
        }
        Err(_) => {
            let mut response = ApiError::body_timeout(d.timeout).into_response();
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return response;
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}
