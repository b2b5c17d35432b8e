//! The HTTP handlers. A generation request is validated at the edge, admitted to the queue
//! (or refused with 503), then answered whole or streamed from the worker's events; the
//! handler never touches the model beyond its tokenizer.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc;

use crate::edge::access;
use crate::error::ApiError;
use crate::metrics::Labels;
use crate::request::{Endpoint, Generator, Validated};
use crate::response::Header;
use crate::state::{AppState, unix_now};
use crate::validation;
use crate::wire::{ModelCard, ModelList, Passage, PassageQuery};
use crate::worker::{Event, Job};

type Shared = State<Arc<AppState>>;
type Body = Result<Bytes, BytesRejection>;

/// `POST /v1/completions`.
pub async fn completions(State(state): Shared, body: Body) -> Response {
    let checked = read(&state, body)
        .and_then(|body| validation::completion(&state, validation::parse(&body)?));
    generate(state, checked).await
}

/// `POST /v1/chat/completions`.
pub async fn chat(State(state): Shared, body: Body) -> Response {
    let checked =
        read(&state, body).and_then(|body| validation::chat(&state, validation::parse(&body)?));
    generate(state, checked).await
}

/// `GET /v1/models`.
pub async fn models(State(state): Shared) -> Json<ModelList> {
    Json(ModelList {
        object: "list",
        data: vec![ModelCard {
            id: state.config.model.clone(),
            object: "model",
            created: state.started,
            owned_by: "ralmspec",
        }],
    })
}

/// `GET /health`.
pub async fn health(State(state): Shared) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "status": "ok",
        "model": state.config.model,
        "retrievers": state.knowledge.iter().map(|k| k.name()).collect::<Vec<_>>(),
        "queue_depth": state.metrics.queue_depth(),
        "workers": state.config.workers,
        "knn": state.knn.as_ref().map(|k| serde_json::json!({
            "entries": k.store.len(),
            "search": k.search.name(),
            "k": k.params.k,
        })),
    }))
}

/// `GET /v1/passages/{doc}?retriever=NAME`: a document of a knowledge base (the default
/// one without `retriever`), as sources name it: `{"doc", "id", "title", "text"}`.
pub async fn passage(
    State(state): Shared,
    Path(doc): Path<String>,
    query: Result<Query<PassageQuery>, QueryRejection>,
) -> Result<Json<Passage>, ApiError> {
    let Query(query) = query.map_err(|e| {
        ApiError::invalid(format!("Invalid query string: {}", e.body_text())).param("retriever")
    })?;
    let knowledge = validation::knowledge(&state, query.retriever.as_deref())?;
    let doc: u32 = doc
        .parse()
        .map_err(|_| ApiError::invalid(format!("`{doc}` is not a document number")).param("doc"))?;
    let passage = state.knowledge[knowledge]
        .passage(doc)
        .map_err(|_| ApiError::not_found(format!("No document {doc} in this knowledge base")))?;
    Ok(Json(Passage {
        doc,
        id: passage.id,
        title: passage.title,
        text: passage.text,
    }))
}

/// `GET /metrics` (Prometheus text format).
pub async fn metrics(State(state): Shared) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

/// Any other path.
pub async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::no_route(method.as_str(), uri.path())
}

/// A known path with the wrong method.
pub async fn wrong_method(method: Method, uri: Uri) -> ApiError {
    let mut e = ApiError::invalid(format!(
        "{method} is not allowed on {}; see the API reference",
        uri.path()
    ));
    e.status = StatusCode::METHOD_NOT_ALLOWED;
    e
}

fn read(state: &AppState, body: Body) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(state.config.max_body_bytes)
        } else {
            ApiError::invalid(format!("Could not read the request body: {e}"))
        }
    })
}

async fn generate(state: Arc<AppState>, checked: Result<Validated, ApiError>) -> Response {
    let request = match checked {
        Ok(request) => request,
        Err(e) => {
            state.metrics.invalid();
            return e.into_response();
        }
    };
    let (tx, mut events) = mpsc::unbounded_channel();
    let job = Job {
        request: request.clone(),
        events: tx,
        admitted: Instant::now(),
        labels: match request.generator {
            Generator::Ralm { engine, knowledge } => {
                Labels::new(state.knowledge[knowledge].name(), engine)
            }
            Generator::Knn(engine) => Labels::knn(engine),
        },
        log: access::current(),
    };
    // Held while the client is there: dropping it takes the job out of the queue if no
    // worker has started it (the handler's future, or the stream's body, is dropped when the
    // client hangs up).
    let admission = match state.queue.submit(job) {
        Ok(admission) => admission,
        Err(e) => return e.into_response(),
    };
    let header = Header {
        id: state.response_id(match request.endpoint {
            Endpoint::Completions => "cmpl",
            Endpoint::Chat => "chatcmpl",
        }),
        created: unix_now(),
        model: state.config.model.clone(),
        endpoint: request.endpoint,
        seed: request.sampling.seed,
        logprobs: request.top_logprobs.is_some(),
    };
    if request.stream {
        return crate::stream::respond(header, &request, events)
            .map(|body| access::hold(body, admission));
    }
    // If the client leaves, this future is dropped with `events`, which stops the worker.
    loop {
        match events.recv().await {
            Some(Event::Commit(_) | Event::Trace(_)) => continue,
            Some(Event::Done(done)) => {
                drop(admission);
                return Json(header.full(&request, done)).into_response();
            }
            Some(Event::Failed(e)) => return e.into_response(),
            None => {
                return ApiError::internal("the worker stopped before the answer ended")
                    .into_response();
            }
        }
    }
}
