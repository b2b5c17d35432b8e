//! What every handler shares: the configuration, the model (read-only: its tokenizer checks
//! prompt lengths at the edge), the knowledge bases, the kNN-LM datastore if any, the job
//! queue and the metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use ralmspec_engine::Knowledge;
use ralmspec_lm::Lm;

use crate::config::ServerConfig;
use crate::knn::KnnDatastore;
use crate::metrics::Metrics;
use crate::queue::Queue;

/// The handlers' shared state.
pub struct AppState {
    pub config: ServerConfig,
    pub lm: Arc<Lm>,
    /// The served knowledge bases; the first is the default retriever.
    pub knowledge: Vec<Arc<Knowledge>>,
    /// The kNN-LM datastore, when the server was started with one.
    pub knn: Option<KnnDatastore>,
    pub queue: Queue,
    pub metrics: Arc<Metrics>,
    /// Unix time the server started (the model card's `created`).
    pub started: u64,
    next_id: AtomicU64,
}

impl AppState {
    pub fn new(
        config: ServerConfig,
        lm: Arc<Lm>,
        knowledge: Vec<Arc<Knowledge>>,
        knn: Option<KnnDatastore>,
        queue: Queue,
        metrics: Arc<Metrics>,
    ) -> AppState {
        AppState {
            config,
            lm,
            knowledge,
            knn,
            queue,
            metrics,
            started: unix_now(),
            next_id: AtomicU64::new(1),
        }
    }

    /// A fresh response id such as `cmpl-1f3a…`: the start time and a counter, so ids stay
    /// distinct across restarts.
    pub fn response_id(&self, prefix: &str) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        format!("{prefix}-{:x}{n:08x}", self.started)
    }
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
