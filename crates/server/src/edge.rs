//! The layers every request passes through before a handler, outermost first:
//!
//! 1. **Request id** (tower-http `SetRequestId` + `PropagateRequestId`): a client's
//!    `X-Request-Id` is kept, a request without one gets `req-<start><counter>`; every response
//!    carries it (errors, 401s, preflights and event streams included).
//! 2. **Access log** ([`access`]): one `tracing` event per request (target `ralmspec::access`)
//!    when its response ends: method, path, status, latency, request id, tokens; it also counts
//!    the requests in flight, which is what a graceful shutdown waits for.
//! 3. **CORS** (tower-http `CorsLayer`, only with `allowed_origins`): preflights answered,
//!    `Access-Control-Allow-Origin` for the listed origins.
//! 4. **API key** ([`auth`], only with `api_key`): `Authorization: Bearer <key>` on every path
//!    but `/health`, else 401 in OpenAI's error shape.
//! 5. **Body deadline** ([`body`]): the whole body must arrive within `body_read_timeout`, else
//!    408 (headers have their own deadline, in the accept loop of `crate::listener`).

pub mod access;
pub mod auth;
pub mod body;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::http::{HeaderName, HeaderValue, Method, Request, header};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};

pub use access::{InFlight, RequestLog};

use crate::config::ServerConfig;

/// The request id header.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Wraps `routes` in the edge layers that `config` asks for.
pub fn wrap(routes: Router, config: &ServerConfig, in_flight: InFlight) -> Router {
    let routes = routes.layer(axum::middleware::from_fn_with_state(
        Arc::new(body::Deadline {
            limit: config.max_body_bytes,
            timeout: config.body_read_timeout,
        }),
        body::deadline,
    ));
    let routes = match &config.api_key {
        Some(key) => routes.layer(axum::middleware::from_fn_with_state(
            Arc::new(auth::ApiKey::new(key)),
            auth::require_key,
        )),
        None => routes,
    };
    let routes = match cors(&config.allowed_origins) {
        Some(cors) => routes.layer(cors),
        None => routes,
    };
    routes
        .layer(axum::middleware::from_fn_with_state(in_flight, access::log))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeId::default()))
}

/// The CORS layer for `origins` (`*`: any origin); `None` when the list is empty.
fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, REQUEST_ID])
            .expose_headers([REQUEST_ID])
            .max_age(std::time::Duration::from_secs(600)),
    )
}

/// Makes `req-<start time><counter>` ids: distinct within a process (one counter for every
/// router) and across restarts.
#[derive(Clone)]
struct MakeId {
    started: u64,
}

impl Default for MakeId {
    fn default() -> Self {
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        MakeId { started }
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl MakeRequestId for MakeId {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let id = format!("req-{:x}{n:08x}", self.started);
        HeaderValue::from_str(&id).ok().map(RequestId::new)
    }
}
