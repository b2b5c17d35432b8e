//! The combining retriever: searches that reach one knowledge base at the same time, from
//! different workers, become one call to its retriever (flat combining). It owns the searches
//! waiting for that call and the rule that batches them.
//!
//! A search that finds the retriever idle and nobody waiting calls it at once, on its own
//! queries (no copy). A search that finds it busy leaves a ticket (its queries and `k`) and
//! waits. When the call in progress ends, one waiter becomes the leader: it takes every
//! ticket left so far, calls the retriever once per distinct `k` with their queries
//! concatenated, hands each ticket its own rows, and wakes the others. Nothing waits on a
//! timer for more: batches form exactly when searches overlap, which is when workers verify
//! at the same time. Tickets are grouped by `k` rather than searched with the largest and cut,
//! because an approximate retriever's first hits may depend on `k` beyond
//! [`Retriever::consistent_k`].
//!
//! Answers do not change: a [`Retriever`]'s answer for a query does not depend on the other
//! queries of the batch. A failed call fails every ticket of its group (the first gets the
//! error, the others [`RetrievalError::Shared`] with its message); a panicking retriever fails
//! them the same way and leaves no one waiting.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use ralmspec_retrieval::{Hit, Query, Result, RetrievalError, Retriever, Snapshot};

use crate::metrics::Metrics;

/// A [`Retriever`] that combines concurrent searches into one call to `inner`.
pub struct CombiningRetriever {
    /// The knowledge base's name (the `retriever` label of its metrics).
    name: String,
    inner: Arc<dyn Retriever>,
    /// For an inner retriever with versions ([`Retriever::snapshot`]): the combiner of the
    /// version requests pinned last, shared by every request pinned to it.
    pinned: Mutex<Option<(u64, Arc<CombiningRetriever>)>>,
    state: Mutex<State>,
    /// Signalled whenever a call to `inner` ends.
    called: Condvar,
    metrics: Arc<Metrics>,
}

#[derive(Default)]
struct State {
    /// A thread is calling `inner`.
    busy: bool,
    /// Searches that left a ticket and have not collected their answer.
    tickets: Vec<Ticket>,
    next_id: u64,
}

struct Ticket {
    id: u64,
    k: usize,
    /// The queries, until a leader takes them.
    queries: Option<Vec<Query>>,
    answer: Option<Answer>,
}

/// What a leader took: a ticket's id, `k` and queries.
type Taken = (u64, usize, Vec<Query>);

/// A search's answer: each query's hits.
type Answer = Result<Vec<Vec<Hit>>>;

impl CombiningRetriever {
    /// Combines the searches on `inner`, the retriever of knowledge base `name`; `metrics`
    /// counts every search, the calls, and how many searches each served.
    pub fn new(
        name: impl Into<String>,
        inner: Arc<dyn Retriever>,
        metrics: Arc<Metrics>,
    ) -> CombiningRetriever {
        CombiningRetriever {
            name: name.into(),
            inner,
            pinned: Mutex::new(None),
            state: Mutex::new(State::default()),
            called: Condvar::new(),
            metrics,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One call to `inner` serving `searches` searches; a panic becomes an error.
    fn call(&self, queries: &[Query], k: usize, searches: usize) -> Answer {
        self.metrics.combined(searches);
        let hits = std::panic::catch_unwind(AssertUnwindSafe(|| self.inner.search(queries, k)))
            .unwrap_or_else(|_| Err(panicked()))?;
        if hits.len() != queries.len() {
            return Err(RetrievalError::Shared {
                reason: format!(
                    "the retriever answered {} of {} queries",
                    hits.len(),
                    queries.len()
                ),
            });
        }
        Ok(hits)
    }

    /// Answers every taken ticket: one call per distinct `k`, in the order of `k`.
    fn serve(&self, mut taken: Vec<Taken>, answers: &mut Vec<(u64, Answer)>) {
        taken.sort_by_key(|t| t.1);
        let mut rest = &mut taken[..];
        while !rest.is_empty() {
            let k = rest[0].1;
            let n = rest.iter().take_while(|t| t.1 == k).count();
            let (group, tail) = std::mem::take(&mut rest).split_at_mut(n);
            rest = tail;
            if let [(id, _, queries)] = group {
                answers.push((*id, self.call(queries, k, 1)));
                continue;
            }
            let total = group.iter().map(|t| t.2.len()).sum();
            let mut all = Vec::with_capacity(total);
            let mut lens = Vec::with_capacity(n);
            for (_, _, queries) in group.iter_mut() {
                lens.push(queries.len());
                all.append(queries);
            }
            match self.call(&all, k, n) {
                Ok(hits) => {
                    let mut rows = hits.into_iter();
                    for ((id, _, _), len) in group.iter().zip(lens) {
                        answers.push((*id, Ok(rows.by_ref().take(len).collect())));
                    }
                }
                Err(e) => {
                    for (id, _, _) in group.iter().skip(1) {
                        answers.push((*id, Err(e.share())));
                    }
                    answers.push((group[0].0, Err(e)));
                }
            }
        }
    }
}

/// The leader's turn: on drop (normal or unwinding) it delivers the answers, fails any taken
/// ticket left unanswered, frees the retriever and wakes the waiters.
struct Turn<'a> {
    combiner: &'a CombiningRetriever,
    answers: Vec<(u64, Answer)>,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut state = self.combiner.lock();
        for (id, answer) in self.answers.drain(..) {
            if let Some(t) = state.tickets.iter_mut().find(|t| t.id == id) {
                t.answer = Some(answer);
            }
        }
        for t in &mut state.tickets {
            if t.queries.is_none() && t.answer.is_none() {
                t.answer = Some(Err(panicked()));
            }
        }
        state.busy = false;
        drop(state);
        self.combiner.called.notify_all();
    }
}

fn panicked() -> RetrievalError {
    RetrievalError::Shared {
        reason: "the retriever panicked".into(),
    }
}

impl Retriever for CombiningRetriever {
    fn search(&self, queries: &[Query], k: usize) -> Result<Vec<Vec<Hit>>> {
        self.metrics.searched(&self.name, queries.len());
        let mut state = self.lock();
        if !state.busy && state.tickets.is_empty() {
            // Nobody else is searching: call at once, on the caller's own queries.
            state.busy = true;
            drop(state);
            let _turn = Turn {
                combiner: self,
                answers: Vec::new(),
            };
            return self.call(queries, k, 1);
        }
        let id = state.next_id;
        state.next_id += 1;
        state.tickets.push(Ticket {
            id,
            k,
            queries: Some(queries.to_vec()),
            answer: None,
        });
        loop {
            let i = state
                .tickets
                .iter()
                .position(|t| t.id == id)
                .expect("a ticket stays until its caller collects it");
            if state.tickets[i].answer.is_some() {
                let ticket = state.tickets.swap_remove(i);
                return ticket.answer.expect("checked above");
            }
            if !state.busy {
                // Lead: take every ticket waiting (this one among them) and serve them.
                state.busy = true;
                let taken: Vec<Taken> = state
                    .tickets
                    .iter_mut()
                    .filter_map(|t| t.queries.take().map(|q| (t.id, t.k, q)))
                    .collect();
                drop(state);
                let mut turn = Turn {
                    combiner: self,
                    answers: Vec::with_capacity(taken.len()),
                };
                self.serve(taken, &mut turn.answers);
                drop(turn);
                state = self.lock();
                continue;
            }
            state = self
                .called
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn score(&self, query: &Query, docs: &[u32]) -> Result<Vec<f32>> {
        self.inner.score(query, docs)
    }

    fn len(&self) -> usize {
        self.inner.len()
    }

    fn consistent_k(&self) -> usize {
        self.inner.consistent_k()
    }

    /// The inner retriever's snapshot, combined: requests pinned to the same version share
    /// one combiner, so their searches still become one call.
    fn snapshot(&self) -> Result<Option<Snapshot>> {
        let Some(snapshot) = self.inner.snapshot()? else {
            return Ok(None);
        };
        let mut pinned = self.pinned.lock().unwrap_or_else(PoisonError::into_inner);
        let combiner = match &*pinned {
            Some((version, combiner)) if *version == snapshot.version => combiner.clone(),
            _ => {
                let combiner = Arc::new(CombiningRetriever::new(
                    self.name.clone(),
                    snapshot.retriever.clone(),
                    self.metrics.clone(),
                ));
                *pinned = Some((snapshot.version, combiner.clone()));
                combiner
            }
        };
        Ok(Some(Snapshot {
            retriever: combiner,
            ..snapshot
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Barrier;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::thread;
    use std::time::Duration;

    use ralmspec_retrieval::FlatIndex;

    use super::*;

    const DIM: usize = 8;
    const DOCS: u32 = 300;

    /// A small exact index with scrambled, deterministic vectors.
    fn index() -> Arc<FlatIndex> {
        let vectors = (0..DOCS as usize * DIM)
            .map(|i| ((i * 7919 + 13) % 101) as f32 / 101.0 - 0.5)
            .collect();
        Arc::new(FlatIndex::new(DIM, vectors, (0..DOCS).collect()).unwrap())
    }

    fn query(seed: usize) -> Query {
        let embedding = (0..DIM)
            .map(|j| ((seed * 31 + j * 17 + 5) % 23) as f32 / 23.0 - 0.5)
            .collect();
        Query::embedded(format!("q{seed}"), embedding)
    }

    /// The test double: counts the calls and how many queries each had, sleeps inside each
    /// call so that concurrent searches overlap, and fails or panics on demand.
    struct Slow {
        inner: Arc<FlatIndex>,
        calls: AtomicUsize,
        queries: AtomicUsize,
        fail: Option<bool>,
    }

    impl Slow {
        fn new(fail: Option<bool>) -> Arc<Slow> {
            Arc::new(Slow {
                inner: index(),
                calls: AtomicUsize::new(0),
                queries: AtomicUsize::new(0),
                fail,
            })
        }
    }

    impl Retriever for Slow {
        fn search(&self, queries: &[Query], k: usize) -> Result<Vec<Vec<Hit>>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.queries.fetch_add(queries.len(), Ordering::SeqCst);
            thread::sleep(Duration::from_millis(20));
            match self.fail {
                Some(true) => panic!("test double panics"),
                Some(false) => Err(RetrievalError::BadIndexData {
                    reason: "test double fails".into(),
                }),
                None => self.inner.search(queries, k),
            }
        }
        fn score(&self, query: &Query, docs: &[u32]) -> Result<Vec<f32>> {
            self.inner.score(query, docs)
        }
        fn len(&self) -> usize {
            self.inner.len()
        }
    }

    /// `threads` threads, started together, each making `rounds` searches of its own
    /// queries with its own `k`; returns every answer next to the one `FlatIndex` gives alone.
    fn hammer(
        slow: &Arc<Slow>,
        threads: usize,
        rounds: usize,
        k_of: fn(usize) -> usize,
    ) -> Vec<(Answer, Vec<Vec<Hit>>)> {
        let combiner = Arc::new(CombiningRetriever::new(
            "test",
            slow.clone(),
            Arc::new(Metrics::default()),
        ));
        let barrier = Arc::new(Barrier::new(threads));
        let alone = index();
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let combiner = combiner.clone();
                let barrier = barrier.clone();
                let alone = alone.clone();
                thread::spawn(move || {
                    barrier.wait();
                    (0..rounds)
                        .map(|r| {
                            // 1 to 4 queries per search, different per thread and round.
                            let queries: Vec<Query> = (0..1 + (t + r) % 4)
                                .map(|i| query(t * 100 + r * 7 + i))
                                .collect();
                            let k = k_of(t);
                            let got = combiner.search(&queries, k);
                            (got, alone.search(&queries, k).unwrap())
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    }

    #[test]
    fn concurrent_searches_equal_searches_alone_in_fewer_calls() {
        let slow = Slow::new(None);
        let results = hammer(&slow, 8, 6, |_| 5);
        for (got, alone) in &results {
            assert_eq!(got.as_ref().unwrap(), alone);
        }
        let calls = slow.calls.load(Ordering::SeqCst);
        assert!(
            calls < results.len(),
            "{calls} calls for {} searches",
            results.len()
        );
        let queries: usize = results.iter().map(|(_, alone)| alone.len()).sum();
        assert_eq!(slow.queries.load(Ordering::SeqCst), queries);
    }

    #[test]
    fn each_k_gets_its_own_answer() {
        let slow = Slow::new(None);
        let results = hammer(&slow, 6, 4, |t| [1, 3, 40][t % 3]);
        for (got, alone) in &results {
            assert_eq!(got.as_ref().unwrap(), alone);
        }
        assert!(slow.calls.load(Ordering::SeqCst) < results.len());
    }

    #[test]
    fn an_error_reaches_every_caller_of_its_group() {
        let slow = Slow::new(Some(false));
        let results = hammer(&slow, 4, 3, |_| 2);
        for (got, _) in &results {
            let message = got.as_ref().unwrap_err().to_string();
            assert!(message.contains("test double fails"), "{message}");
        }
        assert!(slow.calls.load(Ordering::SeqCst) < results.len());
    }

    #[test]
    fn a_panic_fails_every_caller_and_leaves_none_waiting() {
        let slow = Slow::new(Some(true));
        let results = hammer(&slow, 4, 3, |_| 2);
        for (got, _) in &results {
            let message = got.as_ref().unwrap_err().to_string();
            assert!(message.contains("panicked"), "{message}");
        }
    }

    #[test]
    fn calls_and_combined_searches_are_counted() {
        let metrics = Arc::new(Metrics::default());
        let combiner = CombiningRetriever::new("flat", index(), metrics.clone());
        combiner.search(&[query(1), query(2)], 3).unwrap();
        assert_eq!(combiner.len(), DOCS as usize);
        let text = metrics.render();
        for line in [
            "ralmspec_retriever_calls_total 1",
            "ralmspec_combined_searches_count 1",
            "ralmspec_combined_searches_sum 1",
            "ralmspec_retrieval_calls_total{retriever=\"flat\"} 1",
            "ralmspec_retrieval_queries_total{retriever=\"flat\"} 2",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }
}
