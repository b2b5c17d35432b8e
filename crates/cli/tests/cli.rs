//! The `ralmspec` binary as a user runs it: real output on the default model, and a clear error
//! with a non-zero exit (never a panic) for every kind of bad input.

use std::process::{Command, Output};

fn ralmspec(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ralmspec"))
        .args(args)
        .output()
        .expect("run ralmspec")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_clean_failure(out: &Output, needle: &str) {
    let err = stderr(out);
    assert!(!out.status.success(), "succeeded: {err}");
    assert!(err.contains("error:"), "{err}");
    assert!(err.contains(needle), "expected `{needle}` in: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn generate_answers_on_the_default_model() {
    let out = ralmspec(&[
        "generate",
        "--max-tokens",
        "12",
        "What is the capital of France?",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Paris"));
}

#[test]
fn unknown_model_lists_the_known_ones() {
    let out = ralmspec(&["generate", "--model", "gpt5", "hi"]);
    assert_clean_failure(&out, "unknown model `gpt5`");
    assert!(stderr(&out).contains("smollm2"));
}

#[test]
fn missing_and_corrupt_model_files_are_clear_errors() {
    let out = ralmspec(&["generate", "--model", "/nonexistent/m.gguf", "hi"]);
    assert_clean_failure(&out, "does not exist");

    let dir = std::env::temp_dir().join(format!("ralmspec-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.gguf");
    std::fs::write(&bad, b"GGUF but not really").unwrap();
    let out = ralmspec(&["generate", "--model", bad.to_str().unwrap(), "hi"]);
    assert_clean_failure(&out, "not a valid GGUF model");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_prompt_longer_than_the_context_is_refused() {
    let long = "word ".repeat(9000);
    let out = ralmspec(&["generate", "--raw", &long]);
    assert_clean_failure(&out, "context holds 8192");
}

#[test]
fn cuda_request_on_a_cpu_build_is_a_clear_error() {
    for args in [
        &["generate", "--device", "cuda", "hi"][..],
        &["knn", "build", "--device", "cuda"],
        &["knn", "generate", "--device", "cuda", "hi"],
        &["bench", "knn", "--device", "cuda"],
        &[
            "index",
            "build",
            "--kind",
            "flat",
            "--out",
            "/nonexistent/set",
            "--device",
            "cuda",
        ],
    ] {
        assert_clean_failure(&ralmspec(args), "--device cuda");
    }
    assert!(!std::path::Path::new("/nonexistent/set").exists());
}

#[test]
fn fetch_rejects_unknown_assets() {
    let out = ralmspec(&["fetch", "nope"]);
    assert_clean_failure(&out, "nope");
}

#[test]
fn ask_answers_with_sources_and_matches_the_baseline() {
    let out = ralmspec(&[
        "ask",
        "--compare",
        "--async",
        "--max-tokens",
        "16",
        "What is the capital of France?",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Paris"), "{stdout}");
    assert!(stdout.contains("Sources:"), "{stdout}");
    assert!(
        stdout.contains("identical tokens and sources: yes"),
        "{stdout}"
    );
}

/// `ask` names its knowledge base with `serve`'s flags: `--index NEW_DIR --passages N` builds
/// a slice of the built-in one there, a second run answers from that set, and a folder holding
/// something else is refused before anything is written to it.
#[test]
fn ask_builds_and_reuses_a_knowledge_base_slice_like_serve() {
    let dir = tempfile::tempdir().unwrap();
    let set = dir.path().join("kb");
    let set = set.to_str().unwrap();
    let args = [
        "ask",
        "--index",
        set,
        "--passages",
        "40",
        "--max-tokens",
        "4",
        "Where is Cairo?",
    ];
    let first = ralmspec(&args);
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(dir.path().join("kb/set.json").exists());
    assert!(String::from_utf8_lossy(&first.stdout).contains("Sources:"));
    let second = ralmspec(&args);
    assert!(second.status.success(), "{}", stderr(&second));
    // The same answer and sources; the last line is the timing.
    let answer = |out: &Output| {
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, timing) = text.trim_end().rsplit_once('\n').unwrap();
        assert!(timing.contains("(40 passages)"), "{timing}");
        body.to_string()
    };
    assert_eq!(answer(&first), answer(&second));

    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("notes.txt"), "mine").unwrap();
    let refused = ralmspec(&[
        "ask",
        "--index",
        other.to_str().unwrap(),
        "--passages",
        "40",
        "hi",
    ]);
    assert_clean_failure(&refused, "holds no index set");
    assert_eq!(
        std::fs::read_to_string(other.join("notes.txt")).unwrap(),
        "mine"
    );
}

/// Sampled answers: the same seed gives the same text from `generate` twice and the same
/// tokens from both engines of `ask`; a run without a seed prints the one it drew; values out
/// of range name their flag.
#[test]
fn sampling_flags_reproduce_with_a_seed_and_keep_the_identity() {
    let sampled = ["--temperature", "0.9", "--top-p", "0.95", "--seed", "11"];
    let generate = |extra: &[&str]| {
        let mut args = vec!["generate", "--max-tokens", "16"];
        args.extend_from_slice(extra);
        args.push("Tell me a story about a fox.");
        let out = ralmspec(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr(&out),
        )
    };
    let (first, _) = generate(&sampled);
    let (again, _) = generate(&sampled);
    let (greedy, _) = generate(&[]);
    assert_eq!(first, again, "one seed, one answer");
    assert_ne!(first, greedy, "sampling changed nothing");
    let (_, log) = generate(&["--temperature", "0.9"]);
    assert!(log.contains("[seed "), "{log}");

    let mut args = vec!["ask", "--compare", "--stride", "2", "--max-tokens", "16"];
    args.extend_from_slice(&sampled);
    args.push("Who wrote Hamlet?");
    let out = ralmspec(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("identical tokens and sources: yes"),
        "{stdout}"
    );

    assert_clean_failure(
        &ralmspec(&["generate", "--temperature", "3", "hi"]),
        "--temperature",
    );
    assert_clean_failure(&ralmspec(&["ask", "--top-p", "0", "hi"]), "--top-p");
}

#[test]
fn ask_rejects_bad_input() {
    assert_clean_failure(&ralmspec(&["ask", "  "]), "the question is empty");
    let out = ralmspec(&["ask", "--stride", "0", "hi"]);
    assert!(!out.status.success() && stderr(&out).contains("expected `os3` or a number"));
}

#[test]
fn index_build_and_search_a_jsonl_corpus() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("c.jsonl");
    std::fs::write(
        &corpus,
        "{\"id\": 7, \"title\": \"Paris\", \"text\": \"Paris is the capital of France.\"}\n\
         {\"id\": 9, \"title\": \"Nile\", \"text\": \"The Nile flows through Cairo.\"}\n",
    )
    .unwrap();
    let set = dir.path().join("set");
    let (c, s) = (corpus.to_str().unwrap(), set.to_str().unwrap());
    let out = ralmspec(&[
        "index", "build", "--corpus", c, "--out", s, "--kind", "bm25",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = ralmspec(&["search", "--index", s, "-k", "1", "river through Cairo"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("[9] Nile"), "{stdout}");
    assert!(!stdout.contains("[7] Paris"), "{stdout}");

    // Missing kinds, missing sets and damaged files are clear errors.
    assert_clean_failure(
        &ralmspec(&["search", "--index", s, "--kind", "flat", "x"]),
        "has no flat index",
    );
    let nowhere = dir.path().join("nowhere");
    assert_clean_failure(
        &ralmspec(&["search", "--index", nowhere.to_str().unwrap(), "x"]),
        "not an index set",
    );
    std::fs::write(set.join("bm25").join("manifest.json"), "{").unwrap();
    assert_clean_failure(&ralmspec(&["search", "--index", s, "x"]), "manifest.json");
}

#[test]
fn a_malformed_corpus_line_is_reported_with_its_number() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("bad.jsonl");
    std::fs::write(
        &corpus,
        "{\"id\": 1, \"title\": \"A\", \"text\": \"a\"}\n{\"id\": 2, \"title\": \"B\"}\n",
    )
    .unwrap();
    let out = ralmspec(&[
        "index",
        "build",
        "--corpus",
        corpus.to_str().unwrap(),
        "--out",
        dir.path().join("set").to_str().unwrap(),
    ]);
    assert_clean_failure(&out, "bad.jsonl:2:");
    assert!(!dir.path().join("set").join("bm25").exists());
}

/// Builds the set `set` from `corpus` (BM25) and returns the command's output.
fn build_bm25(corpus: &std::path::Path, set: &std::path::Path) -> Output {
    ralmspec(&[
        "index",
        "build",
        "--corpus",
        corpus.to_str().unwrap(),
        "--out",
        set.to_str().unwrap(),
        "--kind",
        "bm25",
    ])
}

fn search_top(set: &std::path::Path, query: &str) -> String {
    let out = ralmspec(&["search", "--index", set.to_str().unwrap(), "-k", "1", query]);
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn beir_and_dpr_corpora_keep_their_string_ids() {
    let dir = tempfile::tempdir().unwrap();
    let beir = dir.path().join("corpus.jsonl");
    std::fs::write(
        &beir,
        "\u{feff}{\"_id\": \"doc-paris\", \"title\": \"Paris\", \"text\": \"Paris is the capital of France.\", \"metadata\": {}}\n\
         {\"_id\": \"doc-nile\", \"title\": \"Nile\", \"text\": \"The Nile flows through Cairo.\"}\n",
    )
    .unwrap();
    let set = dir.path().join("beir-set");
    let out = build_bm25(&beir, &set);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("(beir)"), "{}", stderr(&out));
    assert!(search_top(&set, "river through Cairo").contains("[doc-nile] Nile"));

    let tsv = dir.path().join("psgs.tsv");
    std::fs::write(
        &tsv,
        "id\ttext\ttitle\nw1\t\"Paris is\tthe capital of France.\"\tParis\nw2\tThe Nile flows through Cairo.\tNile\n",
    )
    .unwrap();
    let set = dir.path().join("tsv-set");
    let out = build_bm25(&tsv, &set);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(search_top(&set, "capital of France").contains("[w1] Paris"));
}

#[test]
fn a_rebuild_over_another_corpus_replaces_the_set_and_a_failed_one_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, bad) = (
        dir.path().join("a.jsonl"),
        dir.path().join("b.jsonl"),
        dir.path().join("bad.jsonl"),
    );
    std::fs::write(
        &a,
        "{\"id\": 1, \"title\": \"Nile\", \"text\": \"The Nile flows through Cairo.\"}\n",
    )
    .unwrap();
    std::fs::write(
        &b,
        "{\"id\": \"b1\", \"title\": \"Danube\", \"text\": \"The Danube flows through Vienna.\"}\n",
    )
    .unwrap();
    std::fs::write(
        &bad,
        "{\"id\": 1, \"title\": \"A\", \"text\": \"a\"}\n{\"id\": 2}\n",
    )
    .unwrap();
    let set = dir.path().join("set");
    assert!(build_bm25(&a, &set).status.success());
    assert!(search_top(&set, "river").contains("[1] Nile"));
    // Another corpus over the same folder: the set is replaced whole.
    let out = build_bm25(&b, &set);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(search_top(&set, "river").contains("[b1] Danube"));
    // A failed build leaves it working, and nothing beside it.
    assert_clean_failure(&build_bm25(&bad, &set), "bad.jsonl:2:");
    assert!(search_top(&set, "river").contains("[b1] Danube"));
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_killed_build_leaves_the_old_set_and_its_leftovers_are_cleaned() {
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small.jsonl");
    std::fs::write(
        &small,
        "{\"id\": 1, \"title\": \"Nile\", \"text\": \"The Nile flows through Cairo.\"}\n",
    )
    .unwrap();
    // Large enough that the build is still running when it is killed.
    let big = dir.path().join("big.jsonl");
    let mut lines = String::new();
    for i in 0..400_000 {
        lines.push_str(&format!(
            "{{\"id\": {i}, \"title\": \"T{i}\", \"text\": \"passage number {i} about rivers and towns {}\"}}\n",
            i * 7919 % 1000
        ));
    }
    std::fs::write(&big, lines).unwrap();
    let set = dir.path().join("set");
    assert!(build_bm25(&small, &set).status.success());

    let mut child = Command::new(env!("CARGO_BIN_EXE_ralmspec"))
        .args(["index", "build", "--corpus", big.to_str().unwrap()])
        .args(["--out", set.to_str().unwrap(), "--kind", "bm25"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let tmp_exists = || {
        std::fs::read_dir(dir.path()).unwrap().any(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".set.tmp-")
        })
    };
    let start = std::time::Instant::now();
    while !tmp_exists() && start.elapsed() < std::time::Duration::from_secs(60) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(tmp_exists(), "the build never started");
    std::thread::sleep(std::time::Duration::from_millis(300));
    child.kill().unwrap(); // SIGKILL: no cleanup runs
    assert!(
        !child.wait().unwrap().success(),
        "the build finished before it was killed"
    );
    assert!(tmp_exists(), "a killed build leaves its temporary folder");
    assert!(search_top(&set, "river Cairo").contains("[1] Nile"));
    // The next build of the set removes the leftover.
    assert!(build_bm25(&small, &set).status.success());
    assert!(!tmp_exists());
}

#[test]
fn a_killed_encoding_resumes_to_the_same_vectors() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("c.jsonl");
    let mut lines = String::new();
    for i in 0..192 {
        lines.push_str(&format!(
            "{{\"id\": \"p{i}\", \"title\": \"Town {i}\", \"text\": \"Town {i} lies on river {} and has {} bridges, a market and an old church.\"}}\n",
            i % 17,
            i * 7 % 23
        ));
    }
    std::fs::write(&corpus, lines).unwrap();
    let build = |set: &std::path::Path| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ralmspec"));
        cmd.args(["index", "build", "--corpus", corpus.to_str().unwrap()])
            .args(["--out", set.to_str().unwrap(), "--kind", "flat"])
            .args(["--checkpoint-every", "16"]);
        cmd
    };
    let whole = dir.path().join("whole");
    let out = build(&whole).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));

    let set = dir.path().join("set");
    let mut child = build(&set)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let done = || -> usize {
        std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(".set.encode-")
            })
            .and_then(|p| std::fs::read_to_string(p.join("done")).ok())
            .map_or(0, |t| t.trim().parse().unwrap())
    };
    let start = std::time::Instant::now();
    while done() < 48 && start.elapsed() < std::time::Duration::from_secs(120) {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.kill().unwrap();
    assert!(
        !child.wait().unwrap().success(),
        "finished before it was killed"
    );
    let at = done();
    assert!((48..192).contains(&at), "killed at {at}");
    assert!(!set.exists(), "a killed first build leaves no set");

    let out = build(&set).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("resuming at passage"),
        "{}",
        stderr(&out)
    );
    let vectors = |s: &std::path::Path| std::fs::read(s.join("flat").join("vectors.f32")).unwrap();
    assert!(vectors(&set) == vectors(&whole), "resumed vectors differ");
    // The checkpoint is gone once the set is in place.
    assert_eq!(done(), 0);
}

#[test]
fn knn_build_and_generate_on_a_jsonl_corpus() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("c.jsonl");
    let mut lines = String::new();
    for (id, (title, text)) in [
        (
            "Paris",
            "Paris is the capital and largest city of France, on the Seine.",
        ),
        (
            "Nile",
            "The Nile is a major north-flowing river in northeastern Africa.",
        ),
        (
            "Moon",
            "The Moon is Earth's only natural satellite, about a quarter its width.",
        ),
    ]
    .iter()
    .enumerate()
    {
        lines.push_str(&format!(
            "{{\"id\": {id}, \"title\": \"{title}\", \"text\": \"{text}\"}}\n"
        ));
    }
    std::fs::write(&corpus, lines).unwrap();
    let ds = dir.path().join("ds");
    let (c, d) = (corpus.to_str().unwrap(), ds.to_str().unwrap());
    let out = ralmspec(&[
        "knn",
        "build",
        "--corpus",
        c,
        "--datastore",
        d,
        "--held-out-every",
        "0",
        "--hnsw",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("entries"));
    for search in ["exact", "hnsw"] {
        let out = ralmspec(&[
            "knn",
            "generate",
            "--datastore",
            d,
            "--search",
            search,
            "-k",
            "4",
            "--compare",
            "--max-new-tokens",
            "12",
            "The Nile is a major",
        ]);
        let err = stderr(&out);
        assert!(out.status.success(), "{err}");
        assert!(err.contains("tokens identical: yes"), "{err}");
        assert!(String::from_utf8_lossy(&out.stdout).starts_with("The Nile is a major"));
    }
    // Bad input: a missing datastore, k = 0, a foreign model's datastore.
    let nowhere = dir.path().join("nowhere");
    assert_clean_failure(
        &ralmspec(&[
            "knn",
            "generate",
            "--datastore",
            nowhere.to_str().unwrap(),
            "x",
        ]),
        "no datastore in",
    );
    assert_clean_failure(
        &ralmspec(&["knn", "generate", "--datastore", d, "-k", "0", "x"]),
        "k must be at least 1",
    );
    assert_clean_failure(
        &ralmspec(&[
            "knn",
            "generate",
            "--datastore",
            d,
            "--model",
            "qwen2.5-0.5b",
            "x",
        ]),
        "built from model",
    );
}

/// Regression (issue 15): `--model <a directory>` said the file did not exist.
#[test]
fn a_model_directory_is_named_as_such() {
    let dir = std::env::temp_dir();
    let out = ralmspec(&["generate", "--model", dir.to_str().unwrap(), "hi"]);
    assert_clean_failure(&out, "is a directory");
    assert!(stderr(&out).contains("GGUF file"), "{}", stderr(&out));
}

/// Regression (issue 15): `serve --prefetch 100000` was accepted although a request may ask
/// for 256 at most; bad edge flags are refused too, all before the model is loaded.
#[test]
fn serve_refuses_flags_beyond_the_request_caps() {
    for (flags, needle) in [
        (&["--prefetch", "100000"][..], "prefetch 100000 exceeds 256"),
        (&["--stride", "1000"], "stride 1000"),
        (&["--allowed-origins", "example.com"], "not an origin"),
        (&["--header-timeout", "0"], "timeouts must be above zero"),
    ] {
        let started = std::time::Instant::now();
        let out = ralmspec(&[&["serve", "--addr", "127.0.0.1:0"][..], flags].concat());
        assert_clean_failure(&out, needle);
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }
}

/// Regression (issue 15): with `RUST_BACKTRACE=1`, a bad model file printed a backtrace.
#[test]
fn user_errors_print_no_backtrace() {
    let dir = std::env::temp_dir().join(format!("ralmspec-cli-bt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = ralmspec_assets_path();
    let real = std::fs::read(store).unwrap();
    let cut = dir.join("cut.gguf");
    std::fs::write(&cut, &real[..real.len() / 2]).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ralmspec"))
        .args(["generate", "--model", cut.to_str().unwrap(), "hi"])
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_clean_failure(&out, "not a valid GGUF model");
    let err = stderr(&out);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!err.contains(".rs:"), "{err}");
}

/// The cached SmolLM2 file (the tests' model).
fn ralmspec_assets_path() -> std::path::PathBuf {
    let home = std::env::var_os("RALMSPEC_HOME")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/ralmspec")
        });
    home.join("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// Regression (issue 15): one stalled connection made SIGTERM wait the whole `--grace` and
/// exit 1 saying requests were in flight. Also: the access log reaches stderr.
#[test]
fn sigterm_with_a_stalled_connection_exits_at_once() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::time::{Duration, Instant};

    let mut child = Command::new(env!("CARGO_BIN_EXE_ralmspec"))
        .args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--passages",
            "10",
            "--grace",
            "20",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = lines_tx.send(line);
        }
    });
    let mut seen = Vec::new();
    let addr = loop {
        let line = lines
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("no serving line: {seen:?}"));
        seen.push(line.clone());
        if let Some(at) = line.find("http://") {
            break line[at + 7..]
                .split_whitespace()
                .next()
                .unwrap()
                .to_string();
        }
    };
    let mut health = std::net::TcpStream::connect(&addr).unwrap();
    health
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut reply = String::new();
    health.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let mut stalled = std::net::TcpStream::connect(&addr).unwrap();
    stalled
        .write_all(b"POST /v1/completions HTTP/1.1\r\nHo")
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));

    let signalled = Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(10),
            "still running {:?} after SIGTERM",
            signalled.elapsed()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    std::thread::sleep(Duration::from_millis(100));
    seen.extend(lines.try_iter());
    let log = seen.join("\n");
    assert!(status.success(), "{status}: {log}");
    assert!(!log.contains("in flight after"), "{log}");
    assert!(
        log.contains("ralmspec::access")
            && log.contains("path=/health")
            && log.contains("status=200"),
        "{log}"
    );
}

#[test]
fn bench_quality_scores_answers_with_and_without_retrieval() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("quality.json");
    let out = ralmspec(&[
        "bench",
        "quality",
        "--questions",
        "3",
        "--retrievers",
        "none,bm25",
        "--max-tokens",
        "8",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["questions"], 3);
    let rows = report["rows"].as_array().unwrap();
    let retrievers: Vec<&str> = rows
        .iter()
        .map(|r| r["retriever"].as_str().unwrap())
        .collect();
    assert_eq!(retrievers, ["none", "bm25"]);
    assert!(rows[0]["all"]["recall_at_10"].is_null());
    let recall = rows[1]["all"]["recall_at_10"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&recall), "{recall}");
    let titles = &report["retrieved_titles"][0]["titles"];
    assert_eq!(titles.as_array().unwrap().len(), 3);
    assert_eq!(titles[0].as_array().unwrap().len(), 10);
    // Each row's F1 is the mean of its answers' F1, and every answer was generated.
    for (row, set) in rows.iter().zip(report["answers"].as_array().unwrap()) {
        let answers = set["answers"].as_array().unwrap();
        assert_eq!(answers.len(), 3);
        assert!(
            answers
                .iter()
                .all(|a| !a["text"].as_str().unwrap().trim().is_empty())
        );
        let mean = answers
            .iter()
            .map(|a| a["f1"].as_f64().unwrap())
            .sum::<f64>()
            / 3.0;
        assert!((row["all"]["f1"].as_f64().unwrap() - mean).abs() < 1e-9);
    }
}
