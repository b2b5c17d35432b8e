//! The bounded job queue between the handlers and the workers.
//!
//! A handler [`Queue::submit`]s a job and holds the [`Admission`] it gets back for as long as
//! its client is there. Dropping it (the client hung up: axum drops the handler's future, or
//! the response body) takes the job out of the queue at once if no worker has started it, so
//! a queued request whose client left never holds a slot that a new request could use. A full
//! queue refuses at once with 503 and `Retry-After`; nothing waits unbounded.
//!
//! Plain `Mutex` + `Condvar` rather than a channel: a channel cannot remove an element from its
//! middle, and a job must leave the queue the moment its client does.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use crate::error::ApiError;
use crate::job::Job;
use crate::metrics::Metrics;

/// The sending side (cheap to clone). The workers stop once every clone is dropped and the
/// queue is drained.
#[derive(Clone)]
pub struct Queue {
    shared: Arc<Shared>,
    /// Counts the live senders: when the last clone goes, the queue closes.
    _open: Arc<Open>,
    retry_after: u32,
}

/// The receiving side, one per worker.
#[derive(Clone)]
pub struct Jobs {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    ready: Condvar,
    capacity: usize,
    metrics: Arc<Metrics>,
}

#[derive(Default)]
struct State {
    jobs: VecDeque<(u64, Job)>,
    next_id: u64,
    closed: bool,
}

struct Open(Arc<Shared>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.lock().closed = true;
        self.0.ready.notify_all();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A queue of at most `capacity` waiting jobs: its sending and receiving sides.
pub fn bounded(capacity: usize, retry_after: u32, metrics: Arc<Metrics>) -> (Queue, Jobs) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State::default()),
        ready: Condvar::new(),
        capacity,
        metrics,
    });
    let queue = Queue {
        _open: Arc::new(Open(shared.clone())),
        shared: shared.clone(),
        retry_after,
    };
    (queue, Jobs { shared })
}

/// A job admitted to the queue. Dropping it before a worker took the job withdraws the job.
#[must_use = "dropping the admission withdraws the job"]
pub struct Admission {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        if let Some(i) = state.jobs.iter().position(|(id, _)| *id == self.id) {
            let (_, job) = state.jobs.remove(i).expect("found above");
            drop(state);
            self.shared.metrics.withdrawn(&job.labels);
        }
    }
}

impl Queue {
    /// Admits `job`, or refuses it at once: 503 when the queue is full or the workers are gone.
    pub fn submit(&self, job: Job) -> Result<Admission, ApiError> {
        let mut state = self.shared.lock();
        if state.closed {
            return Err(ApiError::shutting_down());
        }
        if state.jobs.len() >= self.shared.capacity {
            drop(state);
            self.shared.metrics.rejected();
            return Err(ApiError::overloaded(self.retry_after));
        }
        let id = state.next_id;
        state.next_id += 1;
        state.jobs.push_back((id, job));
        self.shared.metrics.queued();
        drop(state);
        self.shared.ready.notify_one();
        Ok(Admission {
            shared: self.shared.clone(),
            id,
        })
    }

    /// Jobs waiting for a worker.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.shared.lock().jobs.len()
    }
}

impl Jobs {
    /// The next job, waiting for one; `None` once the queue is closed and empty.
    pub fn next(&self) -> Option<Job> {
        let mut state = self.shared.lock();
        loop {
            if let Some((_, job)) = state.jobs.pop_front() {
                return Some(job);
            }
            if state.closed {
                return None;
            }
            state = self
                .shared
                .ready
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::tests::job;

    #[test]
    fn a_withdrawn_job_frees_its_slot_at_once() {
        let metrics = Arc::new(Metrics::default());
        let (queue, jobs) = bounded(2, 1, metrics.clone());
        let first = queue.submit(job()).unwrap();
        let _second = queue.submit(job()).unwrap();
        let refused = queue.submit(job()).err().unwrap();
        assert_eq!(refused.status, axum::http::StatusCode::SERVICE_UNAVAILABLE);
        drop(first);
        assert_eq!(queue.len(), 1);
        assert_eq!(metrics.queue_depth(), 1);
        let _third = queue.submit(job()).unwrap();
        assert!(jobs.next().is_some());
        assert!(jobs.next().is_some());
        drop(queue);
        assert!(jobs.next().is_none());
    }
}
