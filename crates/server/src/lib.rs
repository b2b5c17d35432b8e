//! An OpenAI-compatible HTTP server for retrieval-augmented generation with RaLMSpec.
//!
//! `POST /v1/completions` and `POST /v1/chat/completions` answer a prompt or a conversation
//! with iterative retrieval-augmented generation, whole or streamed as
//! server-sent events, with a `sources` field: the documents used and the answer tokens each
//! informed. A `retrieval` object on the request picks the retriever and the engine
//! (`baseline` or `spec`, with `stride`, `prefetch`, `async`). With `"knn": true` there,
//! `/v1/completions` continues the raw prompt with kNN-LM over the datastore the server was
//! started with ([`knn`]), plain (`baseline`) or speculative (`spec`), with the same tokens.
//! `GET /v1/models`, `/health` and `/metrics` (Prometheus) complete it.
//!
//! One request's path: `listener` (hyper: header deadline, connection cap, half-closed
//! sockets) → [`edge`] (request id, access log, CORS, API key, body deadline) → `router` →
//! `handlers` → `validation` (the edge: OpenAI-shaped 4xx for
//! any bad input) → `worker::Queue::submit` (bounded: 503 + `Retry-After` when full) → a
//! worker thread that owns generation runs the engine and sends each commit back over the
//! request's channel → `response` (whole) or `stream` (SSE). A streamed token is always final.
//!
//! Concurrency (details in `worker`): requests are served concurrently by `workers` threads
//! (4 by default), each running one request at a time to its end, so requests interleave at
//! every LM step and speculation round. Searches that reach a knowledge base at the same time
//! (the verifications of several requests, typically) are combined into one retriever call by
//! [`batcher`]'s combining retriever, which every worker shares. Every response equals what the
//! request gets alone (the engine is deterministic and batch-invariant).
//!
//! Modules: [`config`] (what the server is started with), [`error`] (the one error → HTTP
//! mapping), [`wire`] (OpenAI's JSON), [`metrics`], [`batcher`] (combined searches), [`knn`]
//! (the kNN-LM datastore served), [`edge`]
//! (the layers around the routes), and privately `listener`, `job`, `queue`, `validation`,
//! `request` (the validated request), `worker`, `stop` (stop sequences on committed text),
//! `handlers`, `response`, `stream`, `router`, `state`, `openapi` (`GET /openapi.json`).
//!
//! Requests: `/v1/chat/completions` renders the whole conversation through the model's chat
//! template; `/v1/completions` renders its prompt as one user turn, or continues it as raw text
//! (`"raw": true`). `temperature`, `top_p`, `top_k` and `seed` sample with a draw that depends
//! only on (seed, position), so both engines give the same answer for the same seed; every
//! response returns its `seed`. `stop`, `logprobs` and `usage` follow OpenAI; fields the server
//! cannot honour are a 400 naming them.

pub mod batcher;
pub mod config;
pub mod edge;
pub mod error;
mod handlers;
mod job;
pub mod knn;
mod listener;
pub mod metrics;
mod openapi;
mod queue;
mod request;
mod response;
mod router;
mod state;
mod stop;
mod stream;
mod trace;
mod ui;
mod validation;
pub mod wire;
mod worker;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use ralmspec_engine::Knowledge;
use ralmspec_lm::Lm;
use tokio::net::TcpListener;

pub use batcher::CombiningRetriever;
pub use config::ServerConfig;
pub use edge::InFlight;
pub use error::{ApiError, ServerError};
pub use knn::KnnDatastore;
pub use metrics::Metrics;

use state::AppState;
use worker::Workers;

/// A started server: its workers are running; [`Server::serve`] answers HTTP.
pub struct Server {
    state: Arc<AppState>,
    workers: Workers,
    in_flight: InFlight,
}

impl Server {
    /// Checks `config` against the model and starts the workers. `knowledge` lists the served
    /// knowledge bases by retriever name; the first is the default. Each is served through one
    /// [`CombiningRetriever`] shared by all workers.
    pub fn start(
        lm: Arc<Lm>,
        knowledge: Vec<Arc<Knowledge>>,
        config: ServerConfig,
    ) -> Result<Server, ServerError> {
        Server::start_with_knn(lm, knowledge, None, config)
    }

    /// [`Server::start`], also serving kNN-LM over `knn` (checked against the model here,
    /// before anything is served).
    pub fn start_with_knn(
        lm: Arc<Lm>,
        knowledge: Vec<Arc<Knowledge>>,
        knn: Option<KnnDatastore>,
        config: ServerConfig,
    ) -> Result<Server, ServerError> {
        config.check(lm.model.config().context)?;
        if let Some(knn) = &knn {
            knn.check(&lm)?;
        }
        if knowledge.is_empty() {
            return Err(ServerError::Config("no knowledge base to serve".into()));
        }
        for (i, k) in knowledge.iter().enumerate() {
            if knowledge[..i].iter().any(|other| other.name() == k.name()) {
                return Err(ServerError::Config(format!(
                    "two knowledge bases are named `{}`",
                    k.name()
                )));
            }
        }
        let metrics = Arc::new(Metrics::default());
        let knowledge: Vec<Arc<Knowledge>> = knowledge
            .iter()
            .map(|k| {
                let combined =
                    CombiningRetriever::new(k.name(), k.retriever().clone(), metrics.clone());
                Arc::new(k.with_retriever(Arc::new(combined)))
            })
            .collect();
        let (workers, queue) = Workers::start(
            lm.clone(),
            knowledge.clone(),
            knn.clone(),
            &config,
            metrics.clone(),
        )?;
        let state = Arc::new(AppState::new(config, lm, knowledge, knn, queue, metrics));
        Ok(Server {
            state,
            workers,
            in_flight: InFlight::default(),
        })
    }

    /// The routes with the edge layers, for serving or for in-process tests
    /// (`tower::ServiceExt::oneshot`).
    pub fn router(&self) -> Router {
        router::router(self.state.clone(), self.in_flight.clone())
    }

    /// The count of requests in flight (a handle that stays valid while the server runs).
    pub fn in_flight(&self) -> InFlight {
        self.in_flight.clone()
    }

    /// The server's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.state.metrics
    }

    /// Serves HTTP on `listener` until `shutdown` completes, then stops accepting, lets every
    /// request in flight finish (streams end with `[DONE]`), closes the connections that hold
    /// none (idle, or stalled in their headers), and stops the workers.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let Server {
            state,
            workers,
            in_flight,
        } = self;
        let limits = listener::Limits {
            header_read_timeout: state.config.header_read_timeout,
            max_connections: state.config.max_connections,
        };
        let app = router::router(state, in_flight.clone());
        listener::serve(listener, app, limits, in_flight, shutdown).await?;
        // Every handler is done and the router with its queue handle is gone: the workers
        // drain what is left (nothing, normally) and stop.
        tokio::task::spawn_blocking(move || workers.join())
            .await
            .map_err(|e| ServerError::Io(std::io::Error::other(e)))?;
        Ok(())
    }
}
