//! Asynchronous verification: a round's batched retrieval on another thread while the LM
//! speculates on (one more step for RaLM; for kNN-LM, steps until the verification is done).
//!
//! The retrieval runs on a thread pool of its own. On the process-wide pool, which the LM's
//! forward pass and the query encoder use, it would hold every worker for its whole scan and the
//! step beside it would wait for a free worker: no overlap at all (measured on 2 vCPUs over 1M
//! passages: the step's query encoding waited the scan's ~80 ms out). With two pools the
//! operating system shares the cores between them, and OS³ measures how well that works.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::error::{EngineError, Result};

/// The verification pool: as many threads as the process-wide pool.
fn pool() -> &'static rayon::ThreadPool {
    static POOL: OnceLock<rayon::ThreadPool> = OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(rayon::current_num_threads())
            .thread_name(|i| format!("ralmspec-verify-{i}"))
            .build()
            .expect("building the verification thread pool")
    })
}

/// Runs `verify` on the verification pool while `step` runs on this thread; returns what
/// each returned and how long `verify` took. `step` is given a flag that turns true when
/// `verify` is done, so that it can stop speculating then.
pub(crate) fn overlap<V, S>(
    verify: impl FnOnce() -> V + Send,
    step: impl FnOnce(&AtomicBool) -> S,
) -> Result<(V, Duration, S)>
where
    V: Send,
{
    let done = AtomicBool::new(false);
    let (verified, stepped) = std::thread::scope(|scope| {
        let verifier = scope.spawn(|| {
            let start = Instant::now();
            let v = pool().install(verify);
            let took = start.elapsed();
            done.store(true, Ordering::Release);
            (v, took)
        });
        let stepped = step(&done);
        (verifier.join(), stepped)
    });
    let (v, took) = verified.map_err(|_| EngineError::Verifier("panicked".into()))?;
    Ok((v, took, stepped))
}
