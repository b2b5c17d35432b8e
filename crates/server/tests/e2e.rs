//! End to end: the real server on a loopback socket, called by real clients: curl (plain and
//! streaming) and the official `openai` Python client (plain and streaming, with the
//! `retrieval` extension and the `sources` field; a multi-turn conversation sampled with a
//! seed, equal from the baseline and RaLMSpec; a stop sequence; log-probabilities); a client
//! that hangs up on a stream cancels its work; then a graceful shutdown that lets an in-flight
//! stream finish.
//!
//! The `openai` part runs with the venv of `scripts/test.sh` (`$RALMSPEC_PYTHON`, which has
//! `openai` from `scripts/requirements.txt`); without it, it is skipped with a message.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::curl;

fn data_lines(sse: &str) -> Vec<&str> {
    sse.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect()
}

const OPENAI_CHECK: &str = r#"
import sys, openai
client = openai.OpenAI(base_url=sys.argv[1] + "/v1", api_key="unused")
models = [m.id for m in client.models.list()]
assert models == ["smollm2"], models
chat = client.chat.completions.create(
    model="smollm2",
    messages=[{"role": "user", "content": "What is the capital of France?"}],
    max_tokens=12,
    extra_body={"retrieval": {"engine": "spec", "stride": "os3", "prefetch": 20}},
)
text = chat.choices[0].message.content
sources = chat.model_extra["sources"]
assert text and sources and sources[0]["title"], chat
assert chat.usage.completion_tokens > 0
streamed, streamed_sources = "", []
for chunk in client.chat.completions.create(
    model="smollm2",
    messages=[{"role": "user", "content": "What is the capital of France?"}],
    max_tokens=12,
    stream=True,
):
    if chunk.choices and chunk.choices[0].delta.content:
        streamed += chunk.choices[0].delta.content
    streamed_sources += chunk.model_extra.get("sources") or []
assert streamed == text, (streamed, text)
assert {s["doc"] for s in streamed_sources} == {s["doc"] for s in sources}
done = client.completions.create(model="smollm2", prompt="Who wrote Hamlet?", max_tokens=8)
assert done.choices[0].text
try:
    client.completions.create(model="gpt-4", prompt="hi", max_tokens=4)
    raise SystemExit("an unknown model must fail")
except openai.NotFoundError as e:
    assert e.body["code"] == "model_not_found", e.body
# A multi-turn conversation with sampling and a seed: the same answer from the baseline and
# from RaLMSpec; the seed comes back; a stop sequence and log-probabilities in the client's types.
conversation = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "Who wrote Hamlet?"},
    {"role": "assistant", "content": "William Shakespeare."},
    {"role": "user", "content": "What else did he write?"},
]
answers = []
for retrieval in ({"engine": "baseline"}, {"engine": "spec", "stride": 3, "prefetch": 20}):
    r = client.chat.completions.create(
        model="smollm2", messages=conversation, max_tokens=16, temperature=0.9, top_p=0.95,
        seed=1234, logprobs=True, top_logprobs=2, extra_body={"retrieval": retrieval},
    )
    assert r.model_extra["seed"] == 1234, r
    assert len(r.choices[0].logprobs.content) == r.usage.completion_tokens, r
    answers.append((r.choices[0].message.content, [c.logprob for c in r.choices[0].logprobs.content]))
assert answers[0] == answers[1], answers
stopped = client.completions.create(model="smollm2", prompt="What is the capital of France?",
                                    max_tokens=12, stop=["Paris"])
assert "Paris" not in stopped.choices[0].text and stopped.choices[0].finish_reason == "stop", stopped
print("openai ok:", repr(text), [s["title"] for s in sources], repr(answers[0][0]))
"#;

#[test]
fn real_server_with_curl_and_openai_client() {
    let live = common::live(common::config());
    let addr = live.addr;
    let base = format!("http://{addr}");

    // curl, whole answer.
    let body = r#"{"model":"smollm2","prompt":"What is the capital of France?","max_tokens":12}"#;
    let whole: Value = serde_json::from_str(&curl(&[
        "-H",
        "Content-Type: application/json",
        "-d",
        body,
        &format!("{base}/v1/completions"),
    ]))
    .unwrap();
    let text = whole["choices"][0]["text"].as_str().unwrap().to_string();
    assert!(text.contains("Paris"), "{whole}");
    assert!(whole["sources"][0]["title"].is_string(), "{whole}");

    // curl, streamed: the chunks add up to the same answer.
    let streamed_body = r#"{"model":"smollm2","prompt":"What is the capital of France?","max_tokens":12,"stream":true}"#;
    let sse = curl(&[
        "-N",
        "-H",
        "Content-Type: application/json",
        "-d",
        streamed_body,
        &format!("{base}/v1/completions"),
    ]);
    let data = data_lines(&sse);
    assert_eq!(data.last(), Some(&"[DONE]"), "{sse}");
    let joined: String = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .map(|c| c["choices"][0]["text"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(joined, text);

    // curl, an error in OpenAI's shape.
    let error: Value = serde_json::from_str(&curl(&[
        "-d",
        "{not json",
        &format!("{base}/v1/chat/completions"),
    ]))
    .unwrap();
    assert_eq!(error["error"]["type"], "invalid_request_error", "{error}");

    // The official openai client.
    common::python_check(OPENAI_CHECK, &base);

    // A client that gives up on a stream stops its generation. (One that closes its socket
    // while waiting for a whole answer cannot be told from one that only half-closed it, which
    // is allowed: it is noticed when the answer is written; see the README.)
    let slow = r#"{"model":"smollm2","prompt":"Tell me about the history of Rome.","max_tokens":400,"stream":true}"#;
    let gave_up = Command::new("curl")
        .args(["-sS", "-N", "--max-time", "1", "-d", slow])
        .arg(format!("{base}/v1/completions"))
        .output()
        .unwrap();
    assert!(!gave_up.status.success(), "400 tokens took under a second?");
    let started = Instant::now();
    while !curl(&[&format!("{base}/metrics")]).contains(
        "ralmspec_requests_total{outcome=\"cancelled\",retriever=\"flat\",engine=\"spec\"} 1",
    ) {
        assert!(started.elapsed() < Duration::from_secs(30), "not cancelled");
        std::thread::sleep(Duration::from_millis(50));
    }

    // Graceful shutdown: a stream in flight when it begins still ends with [DONE].
    let long = r#"{"model":"smollm2","prompt":"Tell me about the history of Rome.","max_tokens":40,"stream":true}"#;
    let in_flight = Command::new("curl")
        .args(["-sS", "-N", "--max-time", "120", "-d", long])
        .arg(format!("{base}/v1/completions"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !curl(&[&format!("{base}/metrics")]).contains("ralmspec_requests_running 1") {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "stream never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    live.shut_down();
    let out = in_flight.wait_with_output().unwrap();
    let sse = String::from_utf8(out.stdout).unwrap();
    assert_eq!(data_lines(&sse).last(), Some(&"[DONE]"), "{sse}");
    // And it no longer listens.
    assert!(std::net::TcpStream::connect(addr).is_err());
}
