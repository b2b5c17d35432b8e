//! The web page at `/`: ask a question and watch RaLMSpec work (the answer with its sources,
//! a live timeline of rounds, guesses, batched verifications and rollbacks, a race against
//! the baseline, and the server's metrics). Plain HTML, CSS and JavaScript from
//! `crates/server/ui/`, embedded in the binary: the page works offline, with no build step
//! and nothing fetched but this server's own API. It reads the API like any client (the
//! `ralmspec.trace` events of a stream, `/health`, `/metrics`, `/v1/passages/{doc}`).

use axum::http::header;
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("../ui/index.html");
const SCRIPT: &str = include_str!("../ui/app.js");
const STYLE: &str = include_str!("../ui/style.css");

/// Only this server's own files and API: no CDN, no inline script.
const POLICY: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; \
                      script-src 'self'; connect-src 'self'; frame-ancestors 'none'";

fn file(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// `GET /`.
pub async fn index() -> Response {
    file("text/html; charset=utf-8", INDEX)
}

/// `GET /ui/app.js`.
pub async fn script() -> Response {
    file("text/javascript; charset=utf-8", SCRIPT)
}

/// `GET /ui/style.css`.
pub async fn style() -> Response {
    file("text/css; charset=utf-8", STYLE)
}

/// Whether `path` is one of the page's files (open without the API key: they hold no data;
/// the page sends the key the user gives it with each API call).
pub fn is_page(path: &str) -> bool {
    matches!(path, "/" | "/ui/app.js" | "/ui/style.css")
}
