//! In-process tests of the router (no socket): golden JSON of real responses on the default
//! model, every kind of bad input, streaming, identical answers under concurrent load,
//! admission control and cancellation.
//!
//! Golden files live in `tests/golden/`; `RALMSPEC_BLESS=1` rewrites them after a deliberate
//! change (ids and timestamps are normalized away).

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use ralmspec_server::{Server, ServerConfig};
use serde_json::{Value, json};
use tower::ServiceExt;

/// One server shared by the tests that need no special configuration.
fn shared() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| common::server(common::config()))
}

fn post(path: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.into())
        .unwrap()
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

/// Sends `request`; returns the status, the headers' Retry-After, and the body text.
async fn send(app: Router, request: Request<Body>) -> (StatusCode, Option<String>, String) {
    let response = app.oneshot(request).await.unwrap();
    let status = response.status();
    let retry = response
        .headers()
        .get(header::RETRY_AFTER)
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, retry, String::from_utf8(bytes.to_vec()).unwrap())
}

async fn send_json(app: Router, request: Request<Body>) -> (StatusCode, Value) {
    let (status, _, text) = send(app, request).await;
    let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (status, value)
}

/// The `data:` payloads of an SSE body, in order.
fn sse_data(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:")))
        .map(str::to_string)
        .collect()
}

fn golden(name: &str, mut got: Value) {
    common::normalize(&mut got);
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.json"));
    let text = serde_json::to_string_pretty(&got).unwrap() + "\n";
    if std::env::var_os("RALMSPEC_BLESS").is_some() {
        std::fs::write(&path, &text).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with RALMSPEC_BLESS=1 to create it",
            path.display()
        )
    });
    assert_eq!(
        text,
        want,
        "{name}: response differs from {}",
        path.display()
    );
}

#[tokio::test]
async fn completion_golden() {
    let body =
        json!({"model": "smollm2", "prompt": "What is the capital of France?", "max_tokens": 12});
    let (status, got) =
        send_json(shared().router(), post("/v1/completions", body.to_string())).await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert!(!got["sources"].as_array().unwrap().is_empty());
    golden("completion", got);
}

#[tokio::test]
async fn chat_golden_with_baseline_engine() {
    let body = json!({
        "model": "smollm2",
        "messages": [
            {"role": "system", "content": "You are helpful."},
            {"role": "user", "content": "Who painted the Mona Lisa?"}
        ],
        "max_tokens": 12,
        "retrieval": {"engine": "baseline", "retriever": "flat"}
    });
    let (status, got) = send_json(
        shared().router(),
        post("/v1/chat/completions", body.to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{got}");
    golden("chat", got);
}

#[tokio::test]
async fn models_health_and_metrics() {
    let (status, got) = send_json(shared().router(), get("/v1/models")).await;
    assert_eq!(status, StatusCode::OK);
    golden("models", got);
    let (status, got) = send_json(shared().router(), get("/health")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["status"], "ok");
    let (status, _, text) = send(shared().router(), get("/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    for family in [
        "ralmspec_request_duration_seconds_bucket",
        "ralmspec_generation_tokens_per_second",
        "ralmspec_retrieval_calls_total",
        "ralmspec_verification_batch_size",
        "ralmspec_combined_searches_bucket",
        "ralmspec_retriever_calls_total",
        "ralmspec_speculation_accuracy",
        "ralmspec_queue_depth",
    ] {
        assert!(text.contains(family), "missing {family}:\n{text}");
    }
}

#[tokio::test]
async fn bad_input_gets_openai_errors() {
    let cases: Vec<(&str, &str, &str, StatusCode)> = vec![
        (
            "malformed_json",
            "/v1/completions",
            r#"{"model": "smollm2", "prompt": "#,
            StatusCode::BAD_REQUEST,
        ),
        (
            "wrong_type",
            "/v1/completions",
            r#"{"model": "smollm2", "prompt": "hi", "max_tokens": "ten"}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            "missing_prompt",
            "/v1/completions",
            r#"{"model": "smollm2"}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            "max_tokens_too_large",
            "/v1/completions",
            r#"{"model": "smollm2", "prompt": "hi", "max_tokens": 100000}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            "max_tokens_zero",
            "/v1/chat/completions",
            r#"{"model": "smollm2", "messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 0}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            "unknown_model",
            "/v1/chat/completions",
            r#"{"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]}"#,
            StatusCode::NOT_FOUND,
        ),
        (
            "unknown_retriever",
            "/v1/completions",
            r#"{"model": "smollm2", "prompt": "hi", "retrieval": {"retriever": "hnsw"}}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            "unknown_retrieval_field",
            "/v1/completions",
            r#"{"model": "smollm2", "prompt": "hi", "retrieval": {"topk": 3}}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            "bad_stride",
            "/v1/completions",
            r#"{"model": "smollm2", "prompt": "hi", "retrieval": {"stride": 0}}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            "no_user_message",
            "/v1/chat/completions",
            r#"{"model": "smollm2", "messages": [{"role": "system", "content": "hi"}]}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            "empty_prompt",
            "/v1/completions",
            r#"{"model": "smollm2", "prompt": "  "}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            "two_prompts",
            "/v1/completions",
            r#"{"model": "smollm2", "prompt": ["a", "b"]}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            "n_two",
            "/v1/completions",
            r#"{"model": "smollm2", "prompt": "a", "n": 2}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            "tools",
            "/v1/chat/completions",
            r#"{"model": "smollm2", "messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function", "function": {"name": "f"}}]}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            "response_format_json",
            "/v1/chat/completions",
            r#"{"model": "smollm2", "messages": [{"role": "user", "content": "hi"}], "response_format": {"type": "json_object"}}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            "logit_bias",
            "/v1/completions",
            r#"{"model": "smollm2", "prompt": "a", "logit_bias": {"50256": -100}}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            "unknown_field",
            "/v1/completions",
            r#"{"model": "smollm2", "prompt": "a", "temprature": 0.5}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            "tool_role",
            "/v1/chat/completions",
            r#"{"model": "smollm2", "messages": [{"role": "tool", "content": "x"}, {"role": "user", "content": "hi"}]}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            "temperature_too_high",
            "/v1/completions",
            r#"{"model": "smollm2", "prompt": "a", "temperature": 3}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            "too_many_stops",
            "/v1/completions",
            r#"{"model": "smollm2", "prompt": "a", "stop": ["a", "b", "c", "d", "e"]}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            "top_logprobs_without_logprobs",
            "/v1/chat/completions",
            r#"{"model": "smollm2", "messages": [{"role": "user", "content": "hi"}], "top_logprobs": 2}"#,
            StatusCode::BAD_REQUEST,
        ),
    ];
    let mut all = serde_json::Map::new();
    for (name, path, body, want) in cases {
        let (status, got) = send_json(shared().router(), post(path, body.to_string())).await;
        assert_eq!(status, want, "{name}: {got}");
        assert!(got["error"]["message"].is_string(), "{name}: {got}");
        // A refused field is named.
        if let Some(field) = [
            "tools",
            "response_format",
            "logit_bias",
            "temprature",
            "temperature",
            "stop",
            "top_logprobs",
        ]
        .iter()
        .find(|f| name.starts_with(&f[..4]) && body.contains(*f))
        {
            assert_eq!(got["error"]["param"], json!(field), "{name}: {got}");
        }
        assert!(got["error"]["type"].is_string(), "{name}: {got}");
        all.insert(name.to_string(), got);
    }
    // Longer than the prompt limit (1,024 tokens).
    let long = json!({"model": "smollm2", "prompt": "word ".repeat(3000)});
    let (status, got) =
        send_json(shared().router(), post("/v1/completions", long.to_string())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{got}");
    all.insert("prompt_too_long".into(), got);
    let (status, got) = send_json(shared().router(), get("/v1/nothing")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    all.insert("unknown_path".into(), got);
    let (status, got) = send_json(shared().router(), get("/v1/completions")).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    all.insert("wrong_method".into(), got);
    golden("errors", Value::Object(all));
}

#[tokio::test]
async fn oversized_body_is_413() {
    let body = format!(
        r#"{{"model": "smollm2", "prompt": "{}"}}"#,
        "a".repeat(2 << 20)
    );
    let (status, got) = send_json(shared().router(), post("/v1/completions", body)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{got}");
    assert!(
        got["error"]["message"]
            .as_str()
            .unwrap()
            .contains("exceeds")
    );
}

/// A streamed answer is the plain answer: its chunks' text concatenates to it, and their
/// sources cover it in order, each with the document of the plain answer's span.
#[tokio::test]
async fn streaming_equals_the_whole_answer() {
    for (path, request) in [
        (
            "/v1/completions",
            json!({"model": "smollm2", "prompt": "Who wrote Hamlet?", "max_tokens": 16}),
        ),
        (
            "/v1/chat/completions",
            json!({"model": "smollm2", "messages": [{"role": "user", "content": "Who wrote Hamlet?"}], "max_tokens": 16, "retrieval": {"stride": 2, "async": true}}),
        ),
    ] {
        let (status, whole) = send_json(shared().router(), post(path, request.to_string())).await;
        assert_eq!(status, StatusCode::OK, "{whole}");
        let mut streamed_request = request.clone();
        streamed_request["stream"] = json!(true);
        streamed_request["stream_options"] = json!({"include_usage": true});
        let (status, _, text) =
            send(shared().router(), post(path, streamed_request.to_string())).await;
        assert_eq!(status, StatusCode::OK);
        let data = sse_data(&text);
        assert_eq!(data.last().unwrap(), "[DONE]", "{text}");
        let chunks: Vec<Value> = data[..data.len() - 1]
            .iter()
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        let ids: std::collections::HashSet<&str> =
            chunks.iter().map(|c| c["id"].as_str().unwrap()).collect();
        assert_eq!(ids.len(), 1, "one id per stream");
        let (mut text_out, mut sources, mut finish, mut usage) =
            (String::new(), Vec::new(), None, None);
        for chunk in &chunks {
            if let Some(choice) = chunk["choices"].get(0) {
                let piece = choice
                    .get("text")
                    .or_else(|| choice["delta"].get("content"));
                text_out.push_str(piece.and_then(Value::as_str).unwrap_or(""));
                if !choice["finish_reason"].is_null() {
                    finish = Some(choice["finish_reason"].clone());
                }
            }
            sources.extend(chunk["sources"].as_array().unwrap().iter().cloned());
            if !chunk["usage"].is_null() {
                usage = Some(chunk["usage"].clone());
            }
        }
        let choice = &whole["choices"][0];
        let whole_text = choice.get("text").unwrap_or(&choice["message"]["content"]);
        assert_eq!(text_out, whole_text.as_str().unwrap(), "{path}");
        assert_eq!(finish.as_ref(), Some(&choice["finish_reason"]), "{path}");
        assert_eq!(usage.as_ref(), Some(&whole["usage"]), "{path}");
        // Streamed sources are per commit; merged, they are the whole answer's spans.
        let mut merged: Vec<Value> = Vec::new();
        for s in sources {
            match merged.last_mut() {
                Some(last) if last["doc"] == s["doc"] && last["end"] == s["start"] => {
                    last["end"] = s["end"].clone()
                }
                _ => merged.push(s),
            }
        }
        assert_eq!(Value::Array(merged), whole["sources"], "{path}");
    }
}

fn answer_of(response: &Value) -> (Value, Value) {
    let choice = &response["choices"][0];
    let text = choice
        .get("text")
        .unwrap_or(&choice["message"]["content"])
        .clone();
    (text, response["sources"].clone())
}

/// Many requests at once, on two and on four workers (whose concurrent searches are combined
/// into shared retriever calls): every answer equals the same request served alone.
#[tokio::test]
async fn concurrent_answers_equal_single_answers() {
    let server = common::server(ServerConfig {
        workers: 1,
        ..common::config()
    });
    let questions = [
        "What is the capital of France?",
        "Who discovered penicillin?",
        "What is the largest planet in the solar system?",
        "Who wrote Pride and Prejudice?",
    ];
    let engines = [
        json!({"engine": "baseline"}),
        json!({"stride": 3}),
        json!({"stride": "os3", "prefetch": 20, "async": true}),
    ];
    let mut requests = Vec::new();
    for (i, q) in questions.iter().enumerate() {
        for engine in &engines {
            requests.push(
                json!({"model": "smollm2", "prompt": q, "max_tokens": 8 + i, "retrieval": engine}),
            );
        }
    }
    let mut alone = Vec::new();
    for r in &requests {
        let (status, got) =
            send_json(server.router(), post("/v1/completions", r.to_string())).await;
        assert_eq!(status, StatusCode::OK, "{got}");
        alone.push(answer_of(&got));
    }
    // The three engines agree with each other too (the identity guarantee, through HTTP).
    for chunk in alone.chunks(engines.len()) {
        assert!(chunk.iter().all(|a| *a == chunk[0]), "{chunk:?}");
    }
    for workers in [2, 4] {
        let server = common::server(ServerConfig {
            workers,
            ..common::config()
        });
        let tasks: Vec<_> = requests
            .iter()
            .chain(requests.iter())
            .map(|r| {
                tokio::spawn(send_json(
                    server.router(),
                    post("/v1/completions", r.to_string()),
                ))
            })
            .collect();
        for (i, task) in tasks.into_iter().enumerate() {
            let (status, got) = task.await.unwrap();
            assert_eq!(status, StatusCode::OK, "{got}");
            assert_eq!(
                answer_of(&got),
                alone[i % requests.len()],
                "request {i}, {workers} workers"
            );
        }
        // Every search of every request went through the combiner, once.
        let text = server.metrics().render();
        let value = |name: &str| -> f64 {
            let line = text.lines().find(|l| l.starts_with(name)).unwrap();
            line[name.len()..].trim().parse().unwrap()
        };
        let searches = value("ralmspec_combined_searches_sum ");
        let calls = value("ralmspec_retriever_calls_total ");
        assert_eq!(
            searches,
            value("ralmspec_retrieval_calls_total{retriever=\"flat\"} "),
            "{text}"
        );
        assert!(
            calls > 0.0 && calls <= searches,
            "{calls} calls, {searches} searches"
        );
        eprintln!("{workers} workers: {searches} searches in {calls} retriever calls");
    }
}

fn long_stream() -> String {
    json!({"model": "smollm2", "prompt": "Tell me the history of Rome.", "max_tokens": 400, "stream": true, "retrieval": {"engine": "baseline"}}).to_string()
}

/// Beyond the queue's capacity a request is refused at once with 503 and Retry-After; a
/// refused or abandoned request leaves nothing behind.
#[tokio::test]
async fn full_queue_is_503_with_retry_after() {
    let server = common::server(ServerConfig {
        queue_capacity: 1,
        max_tokens_limit: 512,
        ..common::config()
    });
    let mut kept = Vec::new();
    let mut refused = 0;
    for _ in 0..3 {
        let response = server
            .router()
            .oneshot(post("/v1/completions", long_stream()))
            .await
            .unwrap();
        match response.status() {
            StatusCode::OK => kept.push(response),
            StatusCode::SERVICE_UNAVAILABLE => {
                refused += 1;
                assert_eq!(response.headers()[header::RETRY_AFTER], "1");
                let bytes = response.into_body().collect().await.unwrap().to_bytes();
                let body: Value = serde_json::from_slice(&bytes).unwrap();
                assert_eq!(body["error"]["code"], "overloaded", "{body}");
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(
        refused >= 1,
        "a queue of one with a busy worker must refuse the third request"
    );
    // Abandon the admitted streams: the worker stops them and serves new requests again.
    drop(kept);
    let started = Instant::now();
    loop {
        let body = json!({"model": "smollm2", "prompt": "Hi", "max_tokens": 4}).to_string();
        let (status, _, _) = send(server.router(), post("/v1/completions", body)).await;
        if status == StatusCode::OK {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "still refused: {status}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(server.metrics().queue_depth(), 0);
}

/// A client that leaves mid-stream stops its generation early.
#[tokio::test]
async fn disconnect_cancels_the_generation() {
    let server = common::server(ServerConfig {
        max_tokens_limit: 512,
        ..common::config()
    });
    let request: Value = serde_json::from_str(&long_stream()).unwrap();
    let labels = r#"retriever="flat",engine="baseline""#;
    let text = common::hang_up_mid_stream(&server, &request, labels).await;
    assert!(
        text.contains(&format!(
            "ralmspec_requests_total{{outcome=\"ok\",{labels}}} 0"
        )),
        "{text}"
    );
    // The cancelled request's work is counted: the tokens it generated before it stopped.
    let tokens = text
        .lines()
        .find_map(|l| l.strip_prefix(&format!("ralmspec_generated_tokens_total{{{labels}}} ")))
        .map(|v| v.parse::<u64>().unwrap());
    assert!(tokens.is_some_and(|t| t > 0), "{text}");
}

/// The `content` or `text` of a response's choice.
fn text_of(response: &Value) -> String {
    answer_of(response).0.as_str().unwrap().to_string()
}

/// Sampling keeps the identity guarantee over HTTP: the same seed gives the same answer from
/// the baseline and from RaLMSpec (several settings), and a response without a seed returns
/// the one it used, which reproduces it.
#[tokio::test]
async fn same_seed_same_answer_from_every_engine() {
    let conversation = json!([
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "Who wrote Hamlet?"},
        {"role": "assistant", "content": "William Shakespeare."},
        {"role": "user", "content": "What else did he write?"}
    ]);
    let mut answers = std::collections::HashSet::new();
    for seed in [1u64, 77, 4242] {
        let mut texts = Vec::new();
        for retrieval in [
            json!({"engine": "baseline"}),
            json!({"engine": "spec", "stride": 3}),
            json!({"engine": "spec", "stride": "os3", "prefetch": 20, "async": true}),
        ] {
            let body = json!({
                "model": "smollm2", "messages": conversation, "max_tokens": 16,
                "temperature": 1.0, "top_p": 0.95, "seed": seed, "retrieval": retrieval
            });
            let (status, got) = send_json(
                shared().router(),
                post("/v1/chat/completions", body.to_string()),
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{got}");
            assert_eq!(got["seed"], json!(seed));
            texts.push((text_of(&got), got["sources"].clone(), got["usage"].clone()));
        }
        assert!(
            texts.iter().all(|t| *t == texts[0]),
            "seed {seed}: {texts:?}"
        );
        answers.insert(texts[0].0.clone());
    }
    assert!(
        answers.len() > 1,
        "different seeds should sample different answers"
    );

    // No seed: the response says which one was used, and it reproduces the answer.
    let body = json!({"model": "smollm2", "prompt": "Tell me about the Nile.", "max_tokens": 12, "temperature": 0.8});
    let (status, first) =
        send_json(shared().router(), post("/v1/completions", body.to_string())).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let seed = first["seed"].as_u64().expect("a chosen seed is returned");
    let mut again = body.clone();
    again["seed"] = json!(seed);
    again["retrieval"] = json!({"engine": "spec", "stride": 2});
    let (_, second) = send_json(
        shared().router(),
        post("/v1/completions", again.to_string()),
    )
    .await;
    assert_eq!(text_of(&first), text_of(&second));
}

/// A stop sequence ends the answer before it, in the whole response and in the stream (which
/// never carries text past it), with `finish_reason: stop`.
#[tokio::test]
async fn stop_sequences_cut_committed_text() {
    let base =
        json!({"model": "smollm2", "prompt": "What is the capital of France?", "max_tokens": 12});
    let (_, plain) = send_json(shared().router(), post("/v1/completions", base.to_string())).await;
    let full = text_of(&plain);
    let word = "Paris";
    let at = full
        .find(word)
        .unwrap_or_else(|| panic!("no {word:?} in {full:?}"));
    for engine in ["baseline", "spec"] {
        let mut body = base.clone();
        body["stop"] = json!(["zzz", word]);
        body["retrieval"] = json!({"engine": engine});
        let (status, got) =
            send_json(shared().router(), post("/v1/completions", body.to_string())).await;
        assert_eq!(status, StatusCode::OK, "{got}");
        assert_eq!(text_of(&got), full[..at], "{engine}");
        assert_eq!(got["choices"][0]["finish_reason"], "stop");
        let used = got["usage"]["completion_tokens"].as_u64().unwrap();
        assert!(used < plain["usage"]["completion_tokens"].as_u64().unwrap());
        let last_end = got["sources"].as_array().unwrap().last().unwrap()["end"].as_u64();
        assert_eq!(
            last_end,
            Some(used),
            "sources end at the last counted token"
        );

        body["stream"] = json!(true);
        let (_, _, text) = send(shared().router(), post("/v1/completions", body.to_string())).await;
        let data = sse_data(&text);
        let mut streamed = String::new();
        for d in &data[..data.len() - 1] {
            let chunk: Value = serde_json::from_str(d).unwrap();
            if let Some(t) = chunk["choices"][0]["text"].as_str() {
                streamed.push_str(t);
            }
        }
        assert_eq!(streamed, full[..at], "{engine}: streamed");
    }
}

/// `logprobs` in OpenAI's two shapes, from the committed tokens' distributions: equal between
/// engines, one entry per token, the chosen token's log-probability ≤ 0.
#[tokio::test]
async fn logprobs_in_both_shapes() {
    let chat = json!({
        "model": "smollm2", "messages": [{"role": "user", "content": "Who wrote Hamlet?"}],
        "max_tokens": 8, "logprobs": true, "top_logprobs": 2
    });
    let (status, got) = send_json(
        shared().router(),
        post("/v1/chat/completions", chat.to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{got}");
    let content = got["choices"][0]["logprobs"]["content"].as_array().unwrap();
    assert_eq!(
        content.len() as u64,
        got["usage"]["completion_tokens"].as_u64().unwrap()
    );
    let joined: String = content
        .iter()
        .map(|e| e["token"].as_str().unwrap())
        .collect();
    assert_eq!(joined, text_of(&got));
    for e in content {
        assert!(e["logprob"].as_f64().unwrap() <= 0.0);
        assert_eq!(e["top_logprobs"].as_array().unwrap().len(), 2);
        assert!(e["bytes"].is_array());
    }
    let mut spec = chat.clone();
    spec["retrieval"] = json!({"engine": "spec", "stride": 2});
    let (_, again) = send_json(
        shared().router(),
        post("/v1/chat/completions", spec.to_string()),
    )
    .await;
    assert_eq!(
        again["choices"][0]["logprobs"],
        got["choices"][0]["logprobs"]
    );

    let completion =
        json!({"model": "smollm2", "prompt": "Who wrote Hamlet?", "max_tokens": 8, "logprobs": 1});
    let (status, got) = send_json(
        shared().router(),
        post("/v1/completions", completion.to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{got}");
    let lp = &got["choices"][0]["logprobs"];
    let n = lp["tokens"].as_array().unwrap().len();
    assert_eq!(lp["token_logprobs"].as_array().unwrap().len(), n);
    assert_eq!(lp["top_logprobs"].as_array().unwrap().len(), n);
    assert_eq!(lp["text_offset"][0], json!(0));
}

/// The conversation counts: a multi-turn chat reads more prompt tokens than its last turn
/// alone, and so does the same question with a raw completion's document and prompt.
#[tokio::test]
async fn usage_counts_the_whole_prompt_and_raw_mode_skips_the_template() {
    let one = json!({"model": "smollm2", "messages": [{"role": "user", "content": "Who wrote Hamlet?"}], "max_tokens": 4});
    let (_, single) = send_json(
        shared().router(),
        post("/v1/chat/completions", one.to_string()),
    )
    .await;
    let three = json!({"model": "smollm2", "messages": [
        {"role": "user", "content": "Hello there, I have a literature question."},
        {"role": "assistant", "content": "Sure, ask away."},
        {"role": "user", "content": "Who wrote Hamlet?"}], "max_tokens": 4});
    let (status, multi) = send_json(
        shared().router(),
        post("/v1/chat/completions", three.to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{multi}");
    let prompt = |v: &Value| v["usage"]["prompt_tokens"].as_u64().unwrap();
    // At least a document's worth of tokens is in every count.
    assert!(prompt(&single) > 20, "{single}");
    assert!(prompt(&multi) > prompt(&single) + 10, "{multi} vs {single}");

    let raw = json!({"model": "smollm2", "prompt": "The Nile is a river in", "max_tokens": 6, "raw": true});
    let (status, got) =
        send_json(shared().router(), post("/v1/completions", raw.to_string())).await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert!(!text_of(&got).is_empty());
}

/// `"retrieval": {"events": true}` adds `ralmspec.trace` events to a stream and changes
/// nothing else in it: its `data:` lines are the same stream's without events, byte for byte
/// once ids and times are normalized; the events' strides, replayed with their verdicts'
/// rollbacks, are the answer's sources; a forced-rollback setting shows a rollback.
#[tokio::test]
async fn trace_events_ride_along_an_unchanged_stream() {
    let mut rollbacks = 0;
    for (question, retrieval) in [
        ("Who wrote Hamlet?", json!({"engine": "baseline"})),
        ("Who wrote Hamlet?", json!({"stride": 8, "prefetch": 0})),
        (
            "What is the capital of France?",
            json!({"stride": 8, "prefetch": 0, "async": true}),
        ),
        (
            "When did the Second World War end?",
            json!({"stride": "os3", "prefetch": 20}),
        ),
    ] {
        let request = |events: bool| {
            let mut retrieval = retrieval.clone();
            retrieval["events"] = json!(events);
            json!({"model": "smollm2", "prompt": question, "max_tokens": 24, "stream": true,
                   "retrieval": retrieval})
            .to_string()
        };
        let (status, _, plain) =
            send(shared().router(), post("/v1/completions", request(false))).await;
        assert_eq!(status, StatusCode::OK, "{plain}");
        let (status, _, traced) =
            send(shared().router(), post("/v1/completions", request(true))).await;
        assert_eq!(status, StatusCode::OK, "{traced}");
        let chunks = |text: &str| -> Vec<Value> {
            sse_data(text)
                .iter()
                .filter(|d| d.as_str() != "[DONE]" && !d.contains("\"type\""))
                .map(|d| {
                    let mut v: Value = serde_json::from_str(d).unwrap();
                    common::normalize(&mut v);
                    v
                })
                .collect()
        };
        assert_eq!(
            chunks(&traced),
            chunks(&plain),
            "{retrieval}: the text stream"
        );
        // Every trace event is a named event; replay them.
        let mut kept: Vec<(u64, u64, u64)> = Vec::new();
        let mut events = 0;
        for block in traced.split("\n\n") {
            let field = |name: &str| {
                block.lines().find_map(|l| {
                    l.strip_prefix(name)
                        .map(|v| v.strip_prefix(' ').unwrap_or(v))
                })
            };
            if field("event:") != Some("ralmspec.trace") {
                continue;
            }
            events += 1;
            let event: Value = serde_json::from_str(field("data:").unwrap()).unwrap();
            match event["type"].as_str().unwrap() {
                "step" => {
                    assert!(event["title"].is_string() && event["lm_ms"].as_f64().unwrap() >= 0.0);
                    let n = |k: &str| event[k].as_u64().unwrap();
                    kept.push((n("doc"), n("start"), n("end")));
                }
                "retrieval" => assert!(event["queries"].as_u64().unwrap() >= 1),
                "verdict" => {
                    if let Some(cut) = event["rollback_to"].as_u64() {
                        kept.retain(|s| s.2 <= cut);
                    }
                    if !event["truth"].is_null() {
                        rollbacks += 1;
                        assert!(event["truth_title"].is_string());
                    }
                }
                other => panic!("unknown trace event {other}"),
            }
        }
        assert!(events > 0, "{retrieval}: no trace events");
        let mut spans: Vec<(u64, u64, u64)> = Vec::new();
        for s in kept.into_iter().filter(|s| s.1 < s.2) {
            match spans.last_mut() {
                Some(last) if last.0 == s.0 && last.2 == s.1 => last.2 = s.2,
                _ => spans.push(s),
            }
        }
        let mut sources: Vec<(u64, u64, u64)> = Vec::new();
        for chunk in chunks(&plain) {
            for s in chunk["sources"].as_array().unwrap() {
                let n = |k: &str| s[k].as_u64().unwrap();
                match sources.last_mut() {
                    Some(last) if last.0 == n("doc") && last.2 == n("start") => last.2 = n("end"),
                    _ => sources.push((n("doc"), n("start"), n("end"))),
                }
            }
        }
        assert_eq!(spans, sources, "{retrieval}: the replayed trace");
    }
    assert!(
        rollbacks > 0,
        "the forced-rollback settings rolled nothing back"
    );

    let (status, e) = send_json(
        shared().router(),
        post(
            "/v1/completions",
            json!({"model": "smollm2", "prompt": "hi", "retrieval": {"events": true}}).to_string(),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(e["error"]["param"], "retrieval.events", "{e}");
}

/// The page's files and the passages it shows.
#[tokio::test]
async fn page_and_passages() {
    for (path, kind) in [
        ("/", "text/html"),
        ("/ui/app.js", "text/javascript"),
        ("/ui/style.css", "text/css"),
    ] {
        let response = shared().router().oneshot(get(path)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let content_type = response.headers()[header::CONTENT_TYPE].to_str().unwrap();
        assert!(content_type.starts_with(kind), "{path}: {content_type}");
        assert!(
            response
                .headers()
                .contains_key(header::CONTENT_SECURITY_POLICY)
        );
    }
    let (status, passage) = send_json(shared().router(), get("/v1/passages/3")).await;
    assert_eq!(status, StatusCode::OK, "{passage}");
    assert_eq!(passage["doc"], 3);
    assert!(!passage["text"].as_str().unwrap().is_empty() && passage["id"].is_string());
    let (status, same) = send_json(shared().router(), get("/v1/passages/3?retriever=flat")).await;
    assert_eq!((status, &same), (StatusCode::OK, &passage));
    for (path, code, param) in [
        ("/v1/passages/999999", StatusCode::NOT_FOUND, None),
        ("/v1/passages/x", StatusCode::BAD_REQUEST, Some("doc")),
        (
            "/v1/passages/3?retriever=nope",
            StatusCode::BAD_REQUEST,
            Some("retrieval.retriever"),
        ),
        // Found by schemathesis: axum's own rejection was text/plain.
        (
            "/v1/passages/3?retriever=a&retriever=b",
            StatusCode::BAD_REQUEST,
            Some("retriever"),
        ),
    ] {
        let (status, e) = send_json(shared().router(), get(path)).await;
        assert_eq!(status, code, "{path}: {e}");
        assert_eq!(e["error"]["param"].as_str(), param, "{path}");
    }
}
