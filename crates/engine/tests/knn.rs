//! kNN-LM on the real model and real knowledge-base text: the datastore builds and reopens,
//! bad folders are clear errors, and speculative kNN-LM gives plain kNN-LM's tokens for many
//! real prompts, several k, both search kinds and every stride setting.

use std::path::Path;

use ralmspec_engine::Stop;
use ralmspec_engine::Stride;
use ralmspec_engine::knn;
use ralmspec_engine::knn::{BuildOptions, Datastore, KeySearch, KnnLm};
use ralmspec_lm::Lm;
use ralmspec_retrieval::{Corpus, HnswParams};

const MODEL: &str = "smollm2-test";

fn lm() -> Lm {
    let store = ralmspec_assets::Store::from_env().unwrap();
    Lm::open(store.fetch(ralmspec_assets::Asset::SmolLm2).unwrap()).unwrap()
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The first passages of the knowledge base: ~6,000 datastore entries.
fn corpus() -> Corpus {
    Corpus::wiki_kb().unwrap().head(60)
}

fn build(lm: &Lm, corpus: &Corpus, dir: &Path) -> Datastore {
    let options = BuildOptions {
        max_tokens: Some(6000),
        hnsw: Some(HnswParams::default()),
        ..BuildOptions::default()
    };
    let m = Datastore::build(lm, MODEL, corpus, dir, &options, &mut |_| {}).unwrap();
    assert_eq!(m.entries, 6000);
    assert!(m.passages > 20, "{m:?}");
    Datastore::open(dir, MODEL).unwrap()
}

/// Prompts: the openings of datastore passages (generation then follows stored text, where
/// speculation is right) and of held-out passages and questions (where it is often wrong).
fn prompts(lm: &Lm, corpus: &Corpus) -> Vec<String> {
    let n = env_usize("RALMSPEC_KNN_PROMPTS", 12);
    let mut out: Vec<String> = corpus
        .iter()
        .map(|p| {
            let ids = lm.tokenizer.encode(&p.prompt_text());
            lm.tokenizer.decode(&ids[..ids.len().min(12)])
        })
        .take(n - n / 3)
        .collect();
    out.extend(
        [
            "The capital of France is",
            "In 1969, the first humans",
            "The largest planet in the solar system",
            "Albert Einstein was born in",
        ]
        .iter()
        .take(n / 3)
        .map(|s| s.to_string()),
    );
    out
}

#[test]
fn speculative_knn_lm_equals_plain_knn_lm() {
    let lm = lm();
    let corpus = corpus();
    let dir = tempfile::tempdir().unwrap();
    let store = build(&lm, &corpus, &dir.path().join("ds"));
    let tokens = env_usize("RALMSPEC_KNN_TOKENS", 16);
    let mut checked = 0;
    let (mut speculated, mut accepted) = (0, 0);
    for search in [KeySearch::Exact, KeySearch::Approximate] {
        for k in [1, 16, 256] {
            let params = knn::Params {
                k,
                ..knn::Params::default()
            };
            let knn = KnnLm::new(&lm, &store, search, params).unwrap();
            for (i, prompt) in prompts(&lm, &corpus).iter().enumerate() {
                let plain = knn.generate(prompt, tokens, knn::Engine::Plain).unwrap();
                let steps = plain.tokens.len() + usize::from(plain.stop == Stop::EndOfText);
                assert_eq!(plain.stats.search_calls, steps);
                let settings = [
                    (Stride::Fixed(1), false),
                    (Stride::Fixed(4), false),
                    (Stride::Os3, false),
                    (Stride::Os3, true),
                    (Stride::Fixed(2 + (i * 7 + k) % 11), (i + k) % 2 == 1),
                ];
                for (stride, async_verify) in settings {
                    let spec = knn::Spec {
                        stride,
                        successors: [10, 1, 32][i % 3],
                        prefetch: [0, 64, 256, 1024][(i + k) % 4],
                        async_verify,
                    };
                    let got = knn
                        .generate(prompt, tokens, knn::Engine::Spec(spec))
                        .unwrap();
                    assert_eq!(
                        got.tokens, plain.tokens,
                        "{search:?} k={k} {spec:?} prompt {prompt:?}"
                    );
                    assert_eq!(got.stop, plain.stop);
                    speculated += got.stats.speculated;
                    accepted += got.stats.matched;
                    checked += 1;
                }
            }
        }
    }
    eprintln!("{checked} generations equal; {accepted} of {speculated} speculated steps accepted");
    assert!(speculated > 0 && accepted > 0 && accepted < speculated);
}

#[test]
fn damaged_or_foreign_datastores_are_clear_errors() {
    let lm = lm();
    let corpus = Corpus::wiki_kb().unwrap().head(3);
    let dir = tempfile::tempdir().unwrap();
    let ds = dir.path().join("ds");
    let options = BuildOptions {
        max_tokens: Some(200),
        ..BuildOptions::default()
    };
    Datastore::build(&lm, MODEL, &corpus, &ds, &options, &mut |_| {}).unwrap();
    let err = |model: &str| match Datastore::open(&ds, model) {
        Ok(_) => panic!("opened"),
        Err(e) => e.to_string(),
    };
    assert!(err("other-model").contains("built from model smollm2-test"));
    let store = Datastore::open(&ds, MODEL).unwrap();
    assert_eq!(store.len(), 200);
    let approx = KnnLm::new(&lm, &store, KeySearch::Approximate, knn::Params::default());
    assert!(approx.err().unwrap().to_string().contains("no HNSW graph"));
    let bad_k = knn::Params {
        k: 0,
        ..knn::Params::default()
    };
    assert!(KnnLm::new(&lm, &store, KeySearch::Exact, bad_k).is_err());
    drop(store);

    let values = ds.join("values.u32");
    let mut bytes = std::fs::read(&values).unwrap();
    bytes[5] ^= 1;
    std::fs::write(&values, &bytes).unwrap();
    assert!(err(MODEL).contains("corrupt"), "{}", err(MODEL));
    std::fs::write(&values, &bytes[..40]).unwrap();
    assert!(err(MODEL).contains("truncated"), "{}", err(MODEL));
    std::fs::remove_file(ds.join("datastore.json")).unwrap();
    assert!(err(MODEL).contains("missing"), "{}", err(MODEL));
    // A failed build leaves no folder behind.
    let empty = Corpus::new(Vec::new()).unwrap();
    let other = dir.path().join("other");
    assert!(Datastore::build(&lm, MODEL, &empty, &other, &options, &mut |_| {}).is_err());
    assert!(!other.exists());
}

/// A padded datastore is streamed to disk: copying the real entries of an unpadded twin gives
/// the same folder as running the LM again, an f16 datastore holds exactly the f32 keys
/// rounded to f16 (real and padding), and speculative kNN-LM over f16 keys still gives plain
/// kNN-LM's tokens.
#[test]
fn padded_and_f16_datastores_stream_and_keep_identity() {
    use ralmspec_retrieval::Precision;
    use ralmspec_retrieval::vectors::to_f16;

    let lm = lm();
    let corpus = corpus();
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    let build = |name: &str, pad_to: Option<usize>, reuse: bool, precision: Precision| {
        let options = BuildOptions {
            max_tokens: Some(2000),
            pad_to,
            reuse: reuse.then(|| path("real")),
            precision,
            ..BuildOptions::default()
        };
        let mut written = 0;
        let m = Datastore::build(&lm, MODEL, &corpus, &path(name), &options, &mut |p| {
            if let ralmspec_engine::knn::BuildProgress::Writing { done, total } = p {
                assert!(done > written && done <= total);
                written = done;
            }
        })
        .unwrap();
        assert_eq!(written, m.entries);
        Datastore::open(&path(name), MODEL).unwrap()
    };
    let real = build("real", None, false, Precision::F32);
    assert_eq!(real.len(), 2000);
    // 9,000 entries: the first chunk of the writer mixes real and padding keys.
    let reused = build("reused", Some(9000), true, Precision::F32);
    assert_eq!(reused.len(), 9000);
    let fresh = build("fresh", Some(9000), false, Precision::F32);
    let half = build("half", Some(9000), true, Precision::F16);
    assert_eq!(half.precision(), Precision::F16);
    let file = |name: &str, f: &str| std::fs::read(path(name).join(f)).unwrap();
    for f in [
        "keys/vectors.f32",
        "keys/manifest.json",
        "values.u32",
        "datastore.json",
    ] {
        assert!(file("reused", f) == file("fresh", f), "{f} differs");
    }
    assert_eq!(half.values(), fresh.values());
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for e in 0..fresh.len() {
        let want: Vec<f32> = fresh
            .key(e, &mut a)
            .unwrap()
            .iter()
            .map(|&x| to_f16(x).to_f32())
            .collect();
        assert_eq!(half.key(e, &mut b).unwrap(), &want[..], "entry {e}");
    }
    // Padding keys are displaced copies: entry 2000 + j is near, not equal to, real key j.
    assert_ne!(
        fresh.key(2000, &mut a).unwrap(),
        real.key(0, &mut b).unwrap()
    );

    let options = BuildOptions {
        max_tokens: Some(200),
        hnsw: Some(HnswParams::default()),
        precision: Precision::F16,
        ..BuildOptions::default()
    };
    let err = Datastore::build(&lm, MODEL, &corpus, &path("x"), &options, &mut |_| {});
    assert!(
        err.unwrap_err()
            .to_string()
            .contains("HNSW graph needs f32 keys")
    );

    let tokens = env_usize("RALMSPEC_KNN_TOKENS", 16);
    let mut checked = 0;
    for k in [1, 16] {
        let params = knn::Params {
            k,
            ..knn::Params::default()
        };
        let knn = KnnLm::new(&lm, &half, KeySearch::Exact, params).unwrap();
        for (i, prompt) in prompts(&lm, &corpus).iter().enumerate() {
            let plain = knn.generate(prompt, tokens, knn::Engine::Plain).unwrap();
            for (stride, async_verify) in
                [(Stride::Os3, false), (Stride::Fixed(3 + i % 5), i % 2 == 1)]
            {
                let spec = knn::Spec {
                    stride,
                    async_verify,
                    ..knn::Spec::default()
                };
                let got = knn
                    .generate(prompt, tokens, knn::Engine::Spec(spec))
                    .unwrap();
                assert_eq!(
                    got.tokens, plain.tokens,
                    "f16 k={k} {spec:?} prompt {prompt:?}"
                );
                assert_eq!(got.stop, plain.stop);
                checked += 1;
            }
        }
    }
    eprintln!("{checked} generations over f16 keys equal");
}

/// Streaming kNN-LM: the tokens handed to the commit callback, one by one, are exactly plain
/// kNN-LM's tokens for every engine (speculated tokens are passed on only once verified, so a
/// rollback never takes one back), and `Halt::Finish` / `Halt::Cancel` stop the generation
/// right after the token that asked.
#[test]
fn streamed_commits_are_plain_knn_lm_tokens_and_halts_stop_there() {
    use std::ops::ControlFlow;

    use ralmspec_engine::{EngineError, Halt};

    let lm = lm();
    let corpus = corpus();
    let dir = tempfile::tempdir().unwrap();
    let options = BuildOptions {
        max_tokens: Some(3000),
        ..BuildOptions::default()
    };
    let ds = dir.path().join("ds");
    Datastore::build(&lm, MODEL, &corpus, &ds, &options, &mut |_| {}).unwrap();
    let store = Datastore::open(&ds, MODEL).unwrap();
    let knn = KnnLm::new(&lm, &store, KeySearch::Exact, knn::Params::default()).unwrap();
    let tokens = env_usize("RALMSPEC_KNN_TOKENS", 16);
    let engines = [
        knn::Engine::Plain,
        knn::Engine::Spec(knn::Spec::default()),
        knn::Engine::Spec(knn::Spec {
            stride: Stride::Fixed(4),
            ..knn::Spec::default()
        }),
        knn::Engine::Spec(knn::Spec {
            stride: Stride::Fixed(3),
            async_verify: true,
            ..knn::Spec::default()
        }),
        knn::Engine::Spec(knn::Spec {
            async_verify: true,
            successors: 1,
            prefetch: 16,
            ..knn::Spec::default()
        }),
    ];
    let (mut rollbacks, mut streamed) = (0, 0);
    for prompt in prompts(&lm, &corpus).iter().step_by(2) {
        let plain = knn.generate(prompt, tokens, knn::Engine::Plain).unwrap();
        assert!(!plain.tokens.is_empty(), "{prompt:?}");
        for engine in engines {
            let mut seen = Vec::new();
            let got = knn
                .generate_cancellable(prompt, tokens, engine, &mut |c| {
                    assert_eq!(c.len(), 1, "one token per commit");
                    seen.extend_from_slice(c);
                    ControlFlow::Continue(())
                })
                .unwrap();
            assert_eq!(seen, plain.tokens, "{engine:?} streamed, prompt {prompt:?}");
            assert_eq!(got.tokens, plain.tokens, "{engine:?} prompt {prompt:?}");
            assert_eq!(got.stop, plain.stop);
            rollbacks += got.stats.rollbacks;
            streamed += 1;

            // Halt after the j-th token: the answer is the first j tokens; no token follows.
            let j = plain.tokens.len().div_ceil(2);
            for halt in [Halt::Finish, Halt::Cancel] {
                let mut seen = Vec::new();
                let result = knn.generate_cancellable(prompt, tokens, engine, &mut |c| {
                    seen.extend_from_slice(c);
                    if seen.len() == j {
                        ControlFlow::Break(halt)
                    } else {
                        ControlFlow::Continue(())
                    }
                });
                assert_eq!(seen, plain.tokens[..j], "{engine:?} {halt:?} {prompt:?}");
                match (halt, result) {
                    (Halt::Finish, Ok(g)) => {
                        assert_eq!(g.tokens, plain.tokens[..j]);
                        assert_eq!(g.stop, Stop::Halted);
                    }
                    (Halt::Cancel, Err(EngineError::Cancelled)) => {}
                    (halt, other) => panic!("{halt:?} gave {other:?}"),
                }
            }
        }
    }
    eprintln!("{streamed} streamed generations equal plain kNN-LM's ({rollbacks} rollbacks)");
    // Streaming was tested where speculation was wrong and rolled back, not only where it
    // was right.
    assert!(rollbacks > 0);
}
