//! The server against its own OpenAPI document: the real server (SmolLM2, the wiki knowledge
//! base) on a loopback socket; every operation `GET /openapi.json` lists is served (neither the
//! 404 of an unknown path nor a 405); then schemathesis (PyPI) generates requests from the
//! document, valid and invalid, and checks every response: no 5xx, a documented status code,
//! content type and headers, and a body inside the documented schema.
//!
//! Runs are reproducible (a fixed seed, deterministic generation) and bounded: answers are held
//! to `MAX_TOKENS` through the server's `max_tokens` limit, which the document states as the
//! field's maximum. schemathesis comes from the venv of `scripts/test.sh` (`$RALMSPEC_PYTHON`,
//! pinned in `scripts/requirements.txt`); without `$RALMSPEC_PYTHON` the test is skipped with
//! a message, as `e2e.rs` is.

mod common;

use std::process::Command;
use std::time::Instant;

use ralmspec_server::ServerConfig;
use serde_json::Value;

use common::curl;

/// The largest answer a request may ask for here.
const MAX_TOKENS: usize = 8;
/// Generated cases per operation and phase.
const EXAMPLES: usize = 25;
/// schemathesis' seed.
const SEED: u64 = 15;

const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_headers_conformance,response_schema_conformance";

#[test]
fn the_server_keeps_to_its_openapi_document() {
    let config = ServerConfig {
        default_max_tokens: MAX_TOKENS,
        max_tokens_limit: MAX_TOKENS,
        ..common::config()
    };
    let server = common::live(config);
    let base = format!("http://{}", server.addr);

    let doc: Value = serde_json::from_str(&curl(&[&format!("{base}/openapi.json")])).unwrap();
    assert_eq!(
        doc["components"]["schemas"]["CompletionRequest"]["properties"]["max_tokens"]["maximum"],
        MAX_TOKENS
    );
    // Every documented operation is served: with an empty body, each answers something other
    // than an unknown path or a wrong method.
    let paths = doc["paths"].as_object().unwrap();
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            let out = curl(&[
                "-X",
                &method.to_uppercase(),
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &format!("{base}{path}"),
            ]);
            assert!(
                out != "404" && out != "405",
                "{method} {path}: {out} (documented but not served)"
            );
        }
    }

    match std::env::var_os("RALMSPEC_PYTHON") {
        None => {
            eprintln!("skipping schemathesis: RALMSPEC_PYTHON is not set (scripts/test.sh sets it)")
        }
        Some(python) => {
            let probe = Command::new(&python)
                .args(["-c", "import schemathesis"])
                .output()
                .unwrap();
            assert!(
                probe.status.success(),
                "{python:?} has no schemathesis; install scripts/requirements.txt into it \
                 (scripts/test.sh does): {}",
                String::from_utf8_lossy(&probe.stderr)
            );
            let started = Instant::now();
            let examples = EXAMPLES.to_string();
            let seed = SEED.to_string();
            let out = Command::new(python)
                .args(["-m", "schemathesis.cli", "run"])
                .arg(format!("{base}/openapi.json"))
                .args(["--checks", CHECKS])
                .args(["--max-examples", &examples, "--seed", &seed])
                // The seed fixes the cases; no database of earlier failures replays others.
                .args(["--generation-database", "none"])
                .args(["--workers", "1", "--request-timeout", "60", "--no-color"])
                // Anything it writes (a hypothesis folder) goes with the build, not the tree.
                .current_dir(env!("CARGO_TARGET_TMPDIR"))
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "schemathesis failed (a 5xx or a response outside the document):\n{stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            eprintln!(
                "schemathesis passed in {:.0} s:\n{stdout}",
                started.elapsed().as_secs_f64()
            );
        }
    }

    server.shut_down();
}
