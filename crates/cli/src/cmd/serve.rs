//! `ralmspec serve`: the OpenAI-compatible HTTP server. Checks the flags, opens the model, the
//! kNN-LM datastore if one is given (`--knn-datastore`) and the knowledge base, starts `ralmspec-server` on `--addr`, logs one access line per request
//! to stderr (`tracing`; `RUST_LOG` filters it), and shuts down gracefully on Ctrl-C or
//! SIGTERM (requests in flight finish; after `--grace` seconds the process exits anyway, with
//! an error naming how many were still in flight).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ralmspec_engine::RalmConfig;
use ralmspec_server::{Server, ServerConfig};

use crate::flags::engine::EngineFlags;
use crate::flags::model::ModelFlags;
use crate::flags::retriever::RetrieverFlags;

#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: String,
    #[command(flatten)]
    model: ModelFlags,
    /// The knowledge base (requests name its retriever in `retrieval.retriever`).
    #[command(flatten)]
    retriever: RetrieverFlags,
    /// Default engine of requests that do not choose one.
    #[command(flatten)]
    engine: EngineFlags,
    #[command(flatten)]
    knn: crate::cmd::knn::ServeArgs,
    /// `max_tokens` of a request that sets none.
    #[arg(long, default_value_t = 128)]
    max_tokens: usize,
    /// Largest `max_tokens` a request may ask for.
    #[arg(long, default_value_t = 512)]
    max_tokens_limit: usize,
    /// Requests waiting for a worker; beyond it, 503 with Retry-After.
    #[arg(long, default_value_t = 64)]
    queue: usize,
    /// Generation threads, each running one request at a time. Requests on different threads
    /// interleave at every LM step and speculation round, and searches that coincide
    /// (verifications, mostly) are sent to the retriever as one batch. Default: half the
    /// logical CPUs, 1 to 4.
    #[arg(long, default_value_t = ralmspec_server::config::default_workers())]
    workers: usize,
    /// Seconds to let in-flight requests finish after a shutdown signal.
    #[arg(long, default_value_t = 30)]
    grace: u64,
    /// Require `Authorization: Bearer <KEY>` on every request but GET /health (401 otherwise).
    #[arg(long, env = "RALMSPEC_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Origins browsers may call the API from (CORS), comma-separated, or `*` for any.
    #[arg(long, value_delimiter = ',')]
    allowed_origins: Vec<String>,
    /// Seconds a client has to send a request's headers (idle keep-alive connections close
    /// after it too).
    #[arg(long, default_value_t = 10)]
    header_timeout: u64,
    /// Seconds a client has to send a request's whole body (408 otherwise).
    #[arg(long, default_value_t = 30)]
    body_timeout: u64,
    /// Open connections at most; more wait until one closes.
    #[arg(long, default_value_t = 512)]
    max_connections: usize,
}

pub fn run(args: Args) -> Result<()> {
    let config = ServerConfig {
        model: served_name(&args.model.name),
        ralm: RalmConfig::default(),
        default_max_tokens: args.max_tokens,
        engine: args.engine.engine(),
        max_tokens_limit: args.max_tokens_limit,
        queue_capacity: args.queue,
        workers: args.workers,
        api_key: args.api_key.clone(),
        allowed_origins: args.allowed_origins.clone(),
        header_read_timeout: Duration::from_secs(args.header_timeout),
        body_read_timeout: Duration::from_secs(args.body_timeout),
        max_connections: args.max_connections,
        ..ServerConfig::default()
    };
    // The flags are checked before minutes go into loading the model and the index.
    config.check_flags()?;
    init_access_log();
    let lm = Arc::new(args.model.load()?);
    // The datastore is checked before minutes go into the knowledge base.
    let knn = args.knn.open(&lm, &args.model.path()?, args.model.device)?;
    let knowledge = Arc::new(args.retriever.open()?);
    let model = config.model.clone();
    let passages = knowledge.len();
    let knn_line = knn.as_ref().map(|k| {
        format!(
            "; kNN-LM over {} entries ({} search, k = {})",
            k.store.len(),
            k.search.name(),
            k.params.k
        )
    });
    let server = Server::start_with_knn(lm, vec![knowledge], knn, config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&args.addr)
            .await
            .with_context(|| format!("listening on {}", args.addr))?;
        eprintln!(
            "serving `{model}` with the {} retriever over {passages} passages{} on http://{} (Ctrl-C to stop)",
            args.retriever.retriever.name(),
            knn_line.unwrap_or_default(),
            listener.local_addr()?
        );
        let (signalled_tx, signalled_rx) = tokio::sync::oneshot::channel();
        let shutdown = async move {
            shutdown_signal().await;
            eprintln!("shutting down: finishing in-flight requests");
            let _ = signalled_tx.send(());
        };
        let grace = Duration::from_secs(args.grace);
        let in_flight = server.in_flight();
        let serve = server.serve(listener, shutdown);
        tokio::select! {
            result = serve => result.map_err(anyhow::Error::from),
            _ = async { let _ = signalled_rx.await; tokio::time::sleep(grace).await } => {
                bail!(
                    "{} requests were still in flight after {} s; exiting",
                    in_flight.count(),
                    args.grace
                )
            }
        }
    })
}

/// Access-log lines (target `ralmspec::access`) and warnings to stderr; `RUST_LOG` overrides
/// the default filter (`info`).
fn init_access_log() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}

/// The name clients use in `model`: the built-in name, or a GGUF file's stem.
fn served_name(model: &str) -> String {
    if model.ends_with(".gguf")
        && let Some(stem) = std::path::Path::new(model).file_stem()
    {
        return stem.to_string_lossy().into_owned();
    }
    model.to_string()
}

/// Ctrl-C, or SIGTERM on Unix.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => return ctrl_c.await,
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await;
}
