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
    let out = ralmspec(&["generate", "--device", "cuda", "hi"]);
    assert_clean_failure(&out, "--device cuda");
}

#[test]
fn fetch_rejects_unknown_assets() {
    let out = ralmspec(&["fetch", "nope"]);
    assert_clean_failure(&out, "nope");
}
