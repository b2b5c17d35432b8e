//! Snapshot consistency: requests served from a PostgreSQL index while another thread keeps
//! loading new versions of it. Every request pins the version current when it starts
//! (`Knowledge::pinned`), so its answer is that version's whole answer: never retrievals from
//! one version and passages (or shared document KV) from another.
//!
//! Two versions alternate under one name: A, the first 1,000 knowledge-base passages, and B,
//! the first 700 of them in reverse order (a document number names another passage in B, and
//! A's top document is missing from B for some questions, so answers differ). Each question's
//! baseline answer on A and on B is computed first; then speculative requests (several
//! settings, among them stride 8 without prefetching, which rolls back often) run while a
//! loader swaps A, B, A, B, … in. Each answer must equal the question's baseline answer on A
//! or on B in full (tokens, spans, stop), and on the version's own where no load finished
//! during the request; loads must have finished during requests.
//!
//! The loader starts its next load only after the request running when the last one was
//! swapped in has finished: a version stays readable until the load after next drops it
//! (`pg::load`), so a request that outlived two loads would fail (with an error naming its
//! table, never with a mixed answer; the retrieval crate's `pgvector` test checks that).

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ralmspec_engine::{Ask, Engine, Generation, Ralm, SpecConfig, Stride};
use ralmspec_lm::Lm;
use ralmspec_retrieval::questions::fanoutqa_dev;
use ralmspec_retrieval::{Kind, Retriever};

const QUESTIONS: usize = 10;

fn settings() -> [SpecConfig; 4] {
    [
        SpecConfig::CACHE_ONLY,
        SpecConfig {
            stride: Stride::Fixed(8),
            prefetch: 0,
            async_verify: false,
        },
        SpecConfig {
            stride: Stride::Os3,
            prefetch: 20,
            async_verify: false,
        },
        SpecConfig::FULL,
    ]
}

/// What must be equal: the whole answer.
fn answer(g: &Generation) -> impl PartialEq + std::fmt::Debug + '_ {
    (&g.tokens, &g.spans, g.stop)
}

#[test]
fn requests_read_one_version_while_loads_swap_versions() {
    let Some(url) = common::database("requests_read_one_version_while_loads_swap_versions") else {
        return;
    };
    let started = Instant::now();
    let name = "t_snap_exact";
    let store = ralmspec_assets::Store::from_env().unwrap();
    let lm = Lm::open(store.fetch(ralmspec_assets::Asset::SmolLm2).unwrap()).unwrap();
    let (corpus, encoder, flat) = common::kb(1000);
    let (corpus_b, flat_b) = common::reversed(&corpus, &flat, 700);
    let root = tempfile::tempdir().unwrap();
    let sets = [
        common::index_set(&root.path().join("a"), &corpus, &encoder, &flat),
        common::index_set(&root.path().join("b"), &corpus_b, &encoder, &flat_b),
    ];
    let questions: Vec<String> = fanoutqa_dev()
        .unwrap()
        .into_iter()
        .take(QUESTIONS)
        .map(|q| q.text)
        .collect();
    let config = common::short_docs();

    // Which set each version holds.
    let mut holds: HashMap<u64, usize> = HashMap::new();
    let info = common::load(&url, name, &sets[0], false);
    holds.insert(info.version, 0);
    let knowledge = common::knowledge(&url, name, Kind::Pgvector, encoder);
    let ralm = Ralm::new(&lm, &knowledge, config);
    let watcher = common::retriever(&url, name, Kind::Pgvector);
    let current = || watcher.snapshot().unwrap().unwrap().version;

    // Each question's baseline answer on A, then on B.
    let mut baseline: [Vec<Generation>; 2] = [vec![], vec![]];
    for (i, set) in sets.iter().enumerate() {
        if i == 1 {
            let info = common::load(&url, name, set, false);
            holds.insert(info.version, 1);
        }
        assert_eq!(holds[&current()], i);
        for q in &questions {
            baseline[i].push(
                ralm.generate(&Ask::question(q, 16), Engine::Baseline)
                    .unwrap(),
            );
        }
    }
    let differ = (0..QUESTIONS)
        .filter(|&i| baseline[0][i].tokens != baseline[1][i].tokens)
        .count();
    eprintln!("A and B give different tokens for {differ} of {QUESTIONS} questions");
    assert!(differ > 0);
    assert!((0..QUESTIONS).all(|i| answer(&baseline[0][i]) != answer(&baseline[1][i])));
    let before_requests = started.elapsed();

    let stop = AtomicBool::new(false);
    let finished = AtomicUsize::new(0);
    let holds = std::sync::Mutex::new(holds);
    let (mut during, mut on) = (0, [0, 0]);
    let mut slowest = Duration::ZERO;
    let loads = std::thread::scope(|s| {
        let loader = s.spawn(|| {
            let mut loads = 0;
            let mut times = Vec::new();
            let mut next = 0;
            while !stop.load(Ordering::Acquire) {
                let start = Instant::now();
                let info = common::load(&url, name, &sets[next], false);
                times.push(start.elapsed());
                holds.lock().unwrap().insert(info.version, next);
                loads += 1;
                next = 1 - next;
                // Wait for the request that may have pinned the version before this one.
                let seen = finished.load(Ordering::Acquire);
                while finished.load(Ordering::Acquire) == seen && !stop.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            let mean = times.iter().sum::<Duration>() / times.len().max(1) as u32;
            eprintln!("{loads} loads, {mean:.2?} each on average");
            loads
        });
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            for spec in settings() {
                for (i, q) in questions.iter().enumerate() {
                    let first = current();
                    let start = Instant::now();
                    let got = ralm.generate(&Ask::question(q, 16), Engine::Spec(spec));
                    slowest = slowest.max(start.elapsed());
                    let last = current();
                    finished.fetch_add(1, Ordering::Release);
                    let got = got.unwrap_or_else(|e| panic!("{q:?} with {spec:?}: {e}"));
                    let holds = holds.lock().unwrap();
                    let matches: Vec<usize> = (0..2)
                        .filter(|&set| answer(&got) == answer(&baseline[set][i]))
                        .collect();
                    assert!(
                        !matches.is_empty(),
                        "{q:?} with {spec:?} (versions {first}..={last}): {:?} is neither A's \
                         {:?} nor B's {:?}",
                        answer(&got),
                        answer(&baseline[0][i]),
                        answer(&baseline[1][i])
                    );
                    if first == last {
                        // No load finished during the request: it read version `first`.
                        assert!(matches.contains(&holds[&first]), "{q:?} with {spec:?}");
                    } else {
                        during += 1;
                    }
                    on[matches[0]] += 1;
                }
            }
        }));
        stop.store(true, Ordering::Release);
        let loads = loader.join().unwrap();
        if let Err(panic) = result {
            std::panic::resume_unwind(panic);
        }
        loads
    });
    let requests = settings().len() * QUESTIONS;
    eprintln!(
        "{requests} requests ({:.1?} before them, {:.1?} in all, slowest {slowest:.2?}): \
         {loads} loads, {during} requests with a load finishing during them, \
         answers of A {} and of B {}",
        before_requests,
        started.elapsed(),
        on[0],
        on[1]
    );
    assert!(loads > 0 && during > 0, "no load finished during a request");
    assert!(on[0] > 0 && on[1] > 0, "requests read only one of A and B");
}
