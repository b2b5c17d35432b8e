//! The trace of a request (`Ralm::generate_traced`) tells what the engine did, truthfully:
//! replaying its strides and verdicts rebuilds exactly the answer's sources, its retriever
//! calls and verdicts add up to the request's counters, and tracing changes no token.
//!
//! Real model (SmolLM2), the first 1,000 knowledge-base passages (the flat index `cancel.rs`
//! and `identity.rs` use), real FanOutQA questions, the baseline and four speculation settings,
//! among them the web page's forced-rollback setting (fixed stride 8, no prefetch).

mod common;

use std::ops::ControlFlow;
use std::time::Duration;

use ralmspec_engine::{Ask, Engine, Ralm, Span, SpecConfig, Stride, Trace};
use ralmspec_retrieval::questions::fanoutqa_dev;

/// Spans rebuilt from a trace: each stride kept unless a later verdict cut the answer back
/// over it; neighbours with the same document merged, as the engine's sources are.
fn replay(trace: &[Trace]) -> Vec<Span> {
    let mut kept: Vec<Span> = Vec::new();
    for event in trace {
        match *event {
            Trace::Step {
                doc, start, end, ..
            } => kept.push(Span { doc, start, end }),
            Trace::Verdict {
                rollback_to: Some(cut),
                ..
            } => kept.retain(|s| s.end <= cut),
            _ => {}
        }
    }
    let mut spans: Vec<Span> = Vec::new();
    for s in kept.into_iter().filter(|s| s.start < s.end) {
        match spans.last_mut() {
            Some(last) if last.doc == s.doc && last.end == s.start => last.end = s.end,
            _ => spans.push(s),
        }
    }
    spans
}

#[test]
fn a_trace_replays_to_the_answer_and_adds_up_to_its_counters() {
    let (lm, knowledge) = common::smollm2_flat();
    let ralm = Ralm::new(&lm, &knowledge, common::short_docs());
    let fixed8 = SpecConfig {
        stride: Stride::Fixed(8),
        prefetch: 0,
        ..SpecConfig::CACHE_ONLY
    };
    let engines = [
        Engine::Baseline,
        Engine::Spec(SpecConfig::CACHE_ONLY),
        Engine::Spec(fixed8),
        Engine::Spec(SpecConfig {
            async_verify: true,
            ..fixed8
        }),
        Engine::Spec(SpecConfig::FULL),
    ];
    let questions = fanoutqa_dev().unwrap();
    let mut rollbacks = 0;
    let mut overlapped = 0;
    for question in questions.iter().take(12) {
        let ask = Ask::question(&question.text, 24);
        let baseline = ralm.generate(&ask, Engine::Baseline).unwrap();
        for engine in engines {
            let mut trace = Vec::new();
            let traced = ralm
                .generate_traced(&ask, engine, &mut |_| ControlFlow::Continue(()), &mut |t| {
                    trace.push(t)
                })
                .unwrap();
            let what = format!("{engine:?} on {:?}", question.text);
            assert_eq!(traced.tokens, baseline.tokens, "{what}");
            assert_eq!(traced.spans, baseline.spans, "{what}");
            assert_eq!(replay(&trace), traced.spans, "{what}: replayed trace");

            let stats = &traced.stats;
            let (mut calls, mut queries, mut matched, mut wrong) = (0, 0, 0, 0);
            let mut last_round = 0;
            let mut last_at = Duration::ZERO;
            for event in &trace {
                match *event {
                    Trace::Retrieval {
                        round,
                        queries: q,
                        at,
                        overlapped: o,
                        ..
                    } => {
                        calls += 1;
                        queries += q;
                        overlapped += usize::from(o);
                        assert!(round >= last_round, "{what}: rounds go forward");
                        last_round = round;
                        assert!(at >= last_at || o, "{what}: times go forward");
                        last_at = at;
                    }
                    Trace::Step {
                        round, guess, at, ..
                    } => {
                        assert!(!(guess && engine == Engine::Baseline), "{what}");
                        assert!(round + 1 >= last_round, "{what}: rounds go forward");
                        last_at = last_at.max(at);
                    }
                    Trace::Verdict {
                        stride,
                        matched: m,
                        truth,
                        rollback_to,
                        ..
                    } => {
                        assert!(m <= stride, "{what}");
                        matched += m;
                        wrong += usize::from(truth.is_some());
                        assert_eq!(truth.is_some(), m < stride, "{what}: a wrong guess");
                        assert!(truth.is_none() || rollback_to.is_some(), "{what}");
                    }
                }
            }
            assert_eq!(calls, stats.retrieval_calls, "{what}: retriever calls");
            assert_eq!(queries, stats.retrieval_queries, "{what}: queries");
            assert_eq!(matched, stats.matched, "{what}: matched guesses");
            assert_eq!(wrong, stats.rollbacks, "{what}: rollbacks");
            rollbacks += wrong;
        }
    }
    assert!(rollbacks > 0, "no rollback to trace in 12 questions");
    assert!(overlapped > 0, "no overlapped verification to trace");
}
