//! The cancellation hook: a caller whose commit callback returns `Break` stops the request
//! at the next step, with `EngineError::Cancelled`; one that never does gets the plain answer.

mod common;

use std::ops::ControlFlow;

use ralmspec_engine::{Ask, Engine, EngineError, Halt, Ralm, SpecConfig, Stop};

#[test]
fn break_stops_the_request_and_continue_changes_nothing() {
    let (lm, knowledge) = common::smollm2_flat();
    let ralm = Ralm::new(&lm, &knowledge, common::short_docs());
    let question = "Who wrote the novel Nineteen Eighty-Four?";
    let ask = Ask::question(question, 24);
    for engine in [Engine::Baseline, Engine::Spec(SpecConfig::FULL)] {
        let plain = ralm.generate(&ask, engine).unwrap();
        assert!(
            plain.tokens.len() > 8,
            "{engine:?}: answer too short to cancel"
        );

        let mut commits = 0;
        let err = ralm
            .generate_cancellable(&ask, engine, &mut |_| {
                commits += 1;
                ControlFlow::Break(Halt::Cancel)
            })
            .unwrap_err();
        assert!(matches!(err, EngineError::Cancelled), "{engine:?}: {err}");
        assert_eq!(commits, 1, "{engine:?}: nothing is passed on after Break");

        let same = ralm
            .generate_cancellable(&ask, engine, &mut |_| ControlFlow::Continue(()))
            .unwrap();
        assert_eq!(same.tokens, plain.tokens, "{engine:?}");
        assert_eq!(same.spans, plain.spans, "{engine:?}");

        // `Finish` after the second commit: the answer is the first two commits, whole.
        let mut commits = 0;
        let mut seen = 0;
        let halted = ralm
            .generate_cancellable(&ask, engine, &mut |c| {
                commits += 1;
                seen = c.start + c.tokens.len();
                if commits == 2 {
                    ControlFlow::Break(Halt::Finish)
                } else {
                    ControlFlow::Continue(())
                }
            })
            .unwrap();
        assert_eq!(halted.stop, Stop::Halted, "{engine:?}");
        assert_eq!(commits, 2, "{engine:?}");
        assert_eq!(halted.tokens, plain.tokens[..seen], "{engine:?}");
    }

    // A smaller budget is a prefix of the same answer.
    let full = ralm.generate(&ask, Engine::Baseline).unwrap();
    let short = ralm
        .generate_cancellable(&Ask::question(question, 6), Engine::Baseline, &mut |_| {
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(short.tokens, full.tokens[..6]);
}
