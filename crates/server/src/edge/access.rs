//! The access log and the count of requests in flight.
//!
//! Each request is counted from the moment it reaches the router until its response body has
//! ended (or its client has gone), which for a stream is the last event. When that happens,
//! one `tracing` event at INFO (target `ralmspec::access`) reports it:
//! `method`, `path`, `status`, `latency_ms` (to the end of the body), `request_id`,
//! `completion_tokens` (when the request generated any) and `complete` (false: the client left
//! before the body ended).
//!
//! A graceful shutdown waits for [`InFlight`] to reach zero, not for the connections to close:
//! an idle keep-alive connection, or one stalled in the middle of its headers, holds no
//! request and does not delay it.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use tokio::sync::Notify;

use super::REQUEST_ID;

/// What the access log learns about a request while it runs (shared with its job).
#[derive(Debug, Default)]
pub struct RequestLog {
    tokens: AtomicUsize,
    generated: AtomicBool,
}

impl RequestLog {
    /// `n` more tokens became final.
    pub fn add_tokens(&self, n: usize) {
        self.generated.store(true, Ordering::Relaxed);
        self.tokens.fetch_add(n, Ordering::Relaxed);
    }

    fn tokens(&self) -> Option<usize> {
        self.generated
            .load(Ordering::Relaxed)
            .then(|| self.tokens.load(Ordering::Relaxed))
    }
}

tokio::task_local! {
    static LOG: Arc<RequestLog>;
}

/// The log of the request this task serves (a fresh one outside the access layer).
pub fn current() -> Arc<RequestLog> {
    LOG.try_with(Arc::clone).unwrap_or_default()
}

/// Requests between reaching the router and the end of their response.
#[derive(Clone, Debug, Default)]
pub struct InFlight(Arc<Counter>);

#[derive(Debug, Default)]
struct Counter {
    count: AtomicUsize,
    idle: Notify,
}

/// One request in flight; it leaves the count when dropped.
#[derive(Debug)]
pub struct Entered(InFlight);

impl Drop for Entered {
    fn drop(&mut self) {
        if self.0.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.0.idle.notify_waiters();
        }
    }
}

impl InFlight {
    fn enter(&self) -> Entered {
        self.0.count.fetch_add(1, Ordering::AcqRel);
        Entered(self.clone())
    }

    /// Requests in flight now.
    pub fn count(&self) -> usize {
        self.0.count.load(Ordering::Acquire)
    }

    /// Resolves once no request is in flight.
    pub async fn idle(&self) {
        loop {
            let notified = self.0.idle.notified();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// The middleware.
pub async fn log(State(in_flight): State<InFlight>, request: Request, next: Next) -> Response {
    let entered = in_flight.enter();
    let mut line = Line {
        started: Instant::now(),
        method: request.method().clone(),
        path: request.uri().path().to_string(),
        request_id: request
            .headers()
            .get(REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_string(),
        // Until a response exists: nginx's "client closed the request".
        status: StatusCode::from_u16(499).expect("a valid status code"),
        log: Arc::new(RequestLog::default()),
        complete: false,
        _entered: entered,
    };
    let response = LOG.scope(line.log.clone(), next.run(request)).await;
    line.status = response.status();
    response.map(|body| {
        Body::new(Guarded {
            body,
            guard: line,
            on_end: |line| line.complete = true,
        })
    })
}

/// The access-log line of a request, written when dropped (with its body).
struct Line {
    started: Instant,
    method: Method,
    path: String,
    request_id: String,
    status: StatusCode,
    log: Arc<RequestLog>,
    complete: bool,
    _entered: Entered,
}

impl Drop for Line {
    fn drop(&mut self) {
        tracing::info!(
            target: "ralmspec::access",
            method = %self.method,
            path = %self.path,
            status = self.status.as_u16(),
            latency_ms = self.started.elapsed().as_secs_f64() * 1e3,
            request_id = %self.request_id,
            completion_tokens = self.log.tokens(),
            complete = self.complete,
        );
    }
}

/// `body` holding `guard` until the body is dropped (a queued job's admission, for one).
pub fn hold<G: Send + Unpin + 'static>(body: Body, guard: G) -> Body {
    Body::new(Guarded {
        body,
        guard,
        on_end: |_| {},
    })
}

/// A response body that keeps `guard` until it is dropped and tells it (`on_end`) when the
/// body ended: the access-log line (which writes itself when dropped) or an admission.
struct Guarded<G> {
    body: Body,
    guard: G,
    on_end: fn(&mut G),
}

impl<G: Send + Unpin + 'static> HttpBody for Guarded<G> {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            let this = &mut *self;
            (this.on_end)(&mut this.guard);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
