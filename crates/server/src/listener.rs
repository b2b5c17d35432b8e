//! The accept loop: HTTP/1.1 connections served by hyper with the limits `axum::serve` does
//! not expose.
//!
//! - **Header deadline** (`header_read_timeout`): a client must send a request's whole head
//!   within it, counted from the moment the connection waits for one (so an idle keep-alive
//!   connection is closed after it too); a client dribbling headers a byte at a time is cut off.
//!   The body has its own deadline (`crate::edge::body`).
//! - **Connection cap** (`max_connections`): beyond it, new connections wait in the kernel's
//!   backlog until one closes; slow clients cannot take every file descriptor.
//! - **Half-closed sockets**: a client that shuts down its write side after sending its
//!   request (`shutdown(SHUT_WR)`) still gets its response.
//! - **Graceful shutdown**: on the signal, stop accepting, let each connection finish the
//!   request it serves, close idle ones, and wait for the requests in flight
//!   ([`InFlight`]), not for connections: a stalled connection holds no request and does not
//!   delay the shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::edge::InFlight;

/// The connection limits.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
}

/// How long a response that has ended may take to leave its socket once nothing is in flight.
const FLUSH: Duration = Duration::from_secs(1);

/// Serves `app` on `listener` until `shutdown` completes and the requests in flight are done.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    in_flight: InFlight,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .half_close(true)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, a connection reset before accept, ...: the
                    // listener itself is fine; wait a little rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let connection =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let connection = graceful.watch(connection);
        connections.spawn(async move {
            // A connection's errors (a client that left, a header timeout) are its own.
            let _ = connection.await;
            drop(slot);
        });
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let closed = graceful.shutdown();
    in_flight.idle().await;
    let _ = tokio::time::timeout(FLUSH, closed).await;
    connections.shutdown().await;
    Ok(())
}
