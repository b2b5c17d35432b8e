//! The routes: which handler serves which method and path, and the body size limit, inside
//! the edge layers of `crate::edge` (request id, access log, CORS, API key, body deadline).

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use crate::edge::{self, InFlight};
use crate::handlers;
use crate::openapi;
use crate::state::AppState;
use crate::ui;

/// The server's routes over `state`, counting their requests in `in_flight`.
pub fn router(state: Arc<AppState>, in_flight: InFlight) -> Router {
    let limit = state.config.max_body_bytes;
    let config = state.config.clone();
    let routes = Router::new()
        .route("/v1/completions", post(handlers::completions))
        .route("/v1/chat/completions", post(handlers::chat))
        .route("/v1/models", get(handlers::models))
        .route("/health", get(handlers::health))
        .route("/metrics", get(handlers::metrics))
        .route("/v1/passages/{doc}", get(handlers::passage))
        .route("/", get(ui::index))
        .route("/ui/app.js", get(ui::script))
        .route("/ui/style.css", get(ui::style))
        .route("/openapi.json", get(openapi::serve))
        .fallback(handlers::not_found)
        .method_not_allowed_fallback(handlers::wrong_method)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state);
    edge::wrap(routes, &config, in_flight)
}
