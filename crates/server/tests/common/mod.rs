//! Shared by the server's integration tests: the real default model (SmolLM2) and the exact
//! dense retriever over the first 1,000 knowledge-base passages (the slice `ralmspec-engine`'s
//! tests use, so its index is built once and cached under the asset store).

#![allow(dead_code)]

use std::sync::{Arc, OnceLock};

use ralmspec_engine::{Knowledge, RalmConfig};
use ralmspec_lm::Lm;
use ralmspec_retrieval::{Corpus, Encoder, FlatIndex};
use ralmspec_server::{Server, ServerConfig};

pub const PASSAGES: usize = 1000;

/// The model and the knowledge base, loaded once per test binary.
pub fn parts() -> (Arc<Lm>, Arc<Knowledge>) {
    static PARTS: OnceLock<(Arc<Lm>, Arc<Knowledge>)> = OnceLock::new();
    PARTS
        .get_or_init(|| {
            let store = ralmspec_assets::Store::from_env().unwrap();
            let lm = Lm::open(store.fetch(ralmspec_assets::Asset::SmolLm2).unwrap()).unwrap();
            let corpus = Arc::new(Corpus::wiki_kb().unwrap().head(PASSAGES));
            let encoder = Arc::new(Encoder::minilm().unwrap());
            let dir = store
                .root()
                .join("indexes")
                .join(format!("test-flat-{}", &corpus.hash()[..16]));
            let flat = FlatIndex::open_or_build(&dir, &encoder, &corpus).unwrap();
            let knowledge = Knowledge::new("flat", Arc::new(flat), Some(encoder), corpus, None);
            (Arc::new(lm), Arc::new(knowledge))
        })
        .clone()
}

/// The test configuration: short documents and answers, so each request takes well under a
/// second; everything else as the server's defaults.
pub fn config() -> ServerConfig {
    ServerConfig {
        ralm: RalmConfig {
            doc_tokens: 64,
            ..RalmConfig::default()
        },
        default_max_tokens: 12,
        ..ServerConfig::default()
    }
}

/// A server over the shared parts.
pub fn server(config: ServerConfig) -> Server {
    let (lm, knowledge) = parts();
    Server::start(lm, vec![knowledge], config).unwrap()
}

/// Replaces the fields that change run to run (response ids, `created`) by placeholders.
pub fn normalize(value: &mut serde_json::Value) {
    if let Some(object) = value.as_object_mut() {
        if object.contains_key("created") {
            object.insert("created".into(), 0.into());
        }
        // A response's seed is chosen afresh when the request gives none.
        if object.contains_key("system_fingerprint") {
            object.insert("seed".into(), 0.into());
        }
        if let Some(serde_json::Value::String(id)) = object.get("id")
            && (id.starts_with("cmpl-") || id.starts_with("chatcmpl-"))
        {
            object.insert("id".into(), "<id>".into());
        }
        for v in object.values_mut() {
            normalize(v);
        }
    } else if let Some(items) = value.as_array_mut() {
        items.iter_mut().for_each(normalize);
    }
}

/// Waits for a streamed body's first real chunk (not a keep-alive comment).
pub async fn first_chunk(body: &mut axum::body::Body) {
    use http_body_util::BodyExt;
    loop {
        let frame = body.frame().await.unwrap().unwrap();
        if frame.into_data().unwrap().starts_with(b"data:") {
            return;
        }
    }
}

/// Hangs up `body` and waits until `server` has cancelled a generation (at most 20 s: a long
/// generation takes far longer than the few steps it takes to notice).
pub async fn hang_up_and_wait_for_cancel(server: &Server, body: axum::body::Body) {
    let hung_up = std::time::Instant::now();
    drop(body);
    while server.metrics().cancelled_count() == 0 {
        assert!(
            hung_up.elapsed() < std::time::Duration::from_secs(20),
            "generation not cancelled"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Streams `request` from `/v1/completions`, hangs up after its first chunk, waits until the
/// server has cancelled the generation, and returns the metrics, checked to count one cancelled
/// request of `labels` (e.g. `retriever="flat",engine="baseline"`).
pub async fn hang_up_mid_stream(
    server: &Server,
    request: &serde_json::Value,
    labels: &str,
) -> String {
    use tower::ServiceExt;
    let http = axum::http::Request::post("/v1/completions")
        .header(axum::http::header::CONTENT_TYPE, "application/json")
        .body(axum::body::Body::from(request.to_string()))
        .unwrap();
    let response = server.router().oneshot(http).await.unwrap();
    assert_eq!(response.status(), axum::http::StatusCode::OK);
    let mut body = response.into_body();
    first_chunk(&mut body).await;
    hang_up_and_wait_for_cancel(server, body).await;
    let metrics = server.metrics().render();
    let cancelled = format!("ralmspec_requests_total{{outcome=\"cancelled\",{labels}}} 1");
    assert!(metrics.contains(&cancelled), "{metrics}");
    metrics
}

/// Runs the Python `script` with the server's `base` URL as its argument (the `openai` client
/// checks), failing with its output unless it succeeds; without `$RALMSPEC_PYTHON` it says it
/// skips and returns.
pub fn python_check(script: &str, base: &str) {
    let Some(python) = std::env::var_os("RALMSPEC_PYTHON") else {
        eprintln!(
            "skipping the openai client check: RALMSPEC_PYTHON is not set (scripts/test.sh sets it)"
        );
        return;
    };
    let out = std::process::Command::new(python)
        .args(["-c", script, base])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openai client: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprint!("{}", String::from_utf8_lossy(&out.stdout));
}

/// A server on a loopback socket; `shut_down` ends it.
pub struct Live {
    pub addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    serving: tokio::task::JoinHandle<Result<(), ralmspec_server::ServerError>>,
    runtime: tokio::runtime::Runtime,
}

impl Live {
    /// Serves `server` on a fresh loopback port, on a runtime of its own.
    pub fn start(server: Server) -> Live {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = runtime.spawn(server.serve(listener, async {
            let _ = stopped.await;
        }));
        Live {
            addr,
            stop: Some(stop),
            serving,
            runtime,
        }
    }

    /// Stops the server; returns how long `serve` took to return.
    pub fn shut_down(mut self) -> std::time::Duration {
        let started = std::time::Instant::now();
        self.stop.take().unwrap().send(()).unwrap();
        self.runtime
            .block_on(async {
                tokio::time::timeout(std::time::Duration::from_secs(30), self.serving).await
            })
            .expect("serve returned within 30 s")
            .unwrap()
            .expect("the server stops cleanly");
        started.elapsed()
    }
}

/// A server with `config` over the shared parts, on a loopback socket.
pub fn live(config: ServerConfig) -> Live {
    Live::start(server(config))
}

/// `curl -sS` with `args`; panics unless it succeeds. Returns what it printed.
pub fn curl(args: &[&str]) -> String {
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "120"])
        .args(args)
        .output()
        .expect("curl is installed");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
