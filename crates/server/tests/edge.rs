//! The edge (issue 15): API key, CORS, request ids, the access log, the latency histograms and
//! their labels, and the probes that broke it: slow headers and bodies, idle connections
//! beyond the cap, half-closed sockets, a stalled connection at shutdown, and queued requests
//! whose clients left. The real server on the real model, in process or on a loopback socket.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use ralmspec_server::ServerConfig;
use serde_json::{Value, json};
use tower::ServiceExt;

use common::live;

fn completion(max_tokens: u32, stream: bool) -> String {
    json!({"model": "smollm2", "prompt": "What is the capital of France?", "max_tokens": max_tokens, "stream": stream}).to_string()
}

fn post(path: &str) -> axum::http::request::Builder {
    Request::post(path).header(header::CONTENT_TYPE, "application/json")
}

async fn body_json(response: axum::response::Response) -> Value {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{e}: {bytes:?}"))
}

#[tokio::test]
async fn api_key_is_required_except_for_health() {
    let server = common::server(ServerConfig {
        api_key: Some("s3cret".into()),
        ..common::config()
    });
    for auth in [None, Some("Bearer wrong"), Some("s3cret")] {
        let mut request = post("/v1/completions");
        if let Some(auth) = auth {
            request = request.header(header::AUTHORIZATION, auth);
        }
        let response = server
            .router()
            .oneshot(request.body(Body::from(completion(2, false))).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{auth:?}");
        assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
        assert!(response.headers().contains_key("x-request-id"));
        let body = body_json(response).await;
        assert_eq!(body["error"]["code"], "invalid_api_key", "{body}");
        assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
    }
    let metrics = server
        .router()
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(metrics.status(), StatusCode::UNAUTHORIZED);
    let health = server
        .router()
        .oneshot(Request::get("/health").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let ok = server
        .router()
        .oneshot(
            post("/v1/completions")
                .header(header::AUTHORIZATION, "Bearer s3cret")
                .body(Body::from(completion(2, false)))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
}

#[tokio::test]
async fn cors_answers_preflights_for_allowed_origins_only() {
    let server = common::server(ServerConfig {
        allowed_origins: vec!["https://ui.example.com".into()],
        api_key: Some("k".into()),
        ..common::config()
    });
    let preflight = |origin: &str| {
        Request::builder()
            .method("OPTIONS")
            .uri("/v1/chat/completions")
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(
                header::ACCESS_CONTROL_REQUEST_HEADERS,
                "authorization,content-type",
            )
            .body(Body::empty())
            .unwrap()
    };
    // The preflight needs no key (browsers never send one with it).
    let ok = server
        .router()
        .oneshot(preflight("https://ui.example.com"))
        .await
        .unwrap();
    assert!(ok.status().is_success(), "{}", ok.status());
    let h = ok.headers();
    assert_eq!(
        h[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://ui.example.com"
    );
    let methods = h[header::ACCESS_CONTROL_ALLOW_METHODS].to_str().unwrap();
    assert!(methods.contains("POST"), "{methods}");
    let allowed = h[header::ACCESS_CONTROL_ALLOW_HEADERS].to_str().unwrap();
    assert!(allowed.contains("authorization"), "{allowed}");
    let other = server
        .router()
        .oneshot(preflight("https://evil.example.com"))
        .await
        .unwrap();
    assert!(
        !other
            .headers()
            .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN)
    );
    // A real request from the allowed origin is marked readable, and its id exposed.
    let get = server
        .router()
        .oneshot(
            Request::get("/health")
                .header(header::ORIGIN, "https://ui.example.com")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        get.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://ui.example.com"
    );
    let exposed = get.headers()[header::ACCESS_CONTROL_EXPOSE_HEADERS]
        .to_str()
        .unwrap();
    assert!(exposed.contains("x-request-id"), "{exposed}");
}

#[tokio::test]
async fn request_ids_are_echoed_or_made_on_every_response() {
    let server = common::server(common::config());
    let send = |request: Request<Body>| server.router().oneshot(request);
    // Taken from the request: on a success, an error and a stream.
    for (body, status) in [
        (completion(2, false), StatusCode::OK),
        ("{not json".to_string(), StatusCode::BAD_REQUEST),
        (completion(2, true), StatusCode::OK),
    ] {
        let response = send(
            post("/v1/completions")
                .header("x-request-id", "client-42")
                .body(Body::from(body))
                .unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(response.status(), status);
        assert_eq!(response.headers()["x-request-id"], "client-42");
        let _ = response.into_body().collect().await.unwrap();
    }
    // Made when absent: distinct per request, on unknown paths too.
    let mut ids = Vec::new();
    for path in ["/health", "/nowhere", "/health"] {
        let response = send(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(id.starts_with("req-"), "{id}");
        ids.push(id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 3, "{ids:?}");
}

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn one_access_log_line_per_request() {
    // The process-wide subscriber: a scoped one would miss events, as the other tests of
    // this binary register the same call sites from their threads at the same time.
    static CAPTURED: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
    let captured = CAPTURED
        .get_or_init(|| {
            let captured = Captured::default();
            let writer = captured.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_writer(move || writer.clone())
                .with_ansi(false)
                .finish();
            tracing::subscriber::set_global_default(subscriber).unwrap();
            captured
        })
        .clone();
    let server = common::server(common::config());
    let response = server
        .router()
        .oneshot(
            post("/v1/completions")
                .header("x-request-id", "log-1")
                .body(Body::from(completion(6, true)))
                .unwrap(),
        )
        .await
        .unwrap();
    let _ = response.into_body().collect().await.unwrap();
    let response = server
        .router()
        .oneshot(
            post("/v1/completions")
                .header("x-request-id", "log-2")
                .body(Body::from("{}"))
                .unwrap(),
        )
        .await
        .unwrap();
    let _ = response.into_body().collect().await.unwrap();
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.contains("ralmspec::access")
                && (l.contains("request_id=log-1") || l.contains("request_id=log-2"))
        })
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    for needle in [
        "method=POST",
        "path=/v1/completions",
        "status=200",
        "request_id=log-1",
        "completion_tokens=6",
        "latency_ms=",
        "complete=true",
    ] {
        assert!(lines[0].contains(needle), "{needle} not in {}", lines[0]);
    }
    assert!(
        lines[1].contains("status=400") && lines[1].contains("request_id=log-2"),
        "{}",
        lines[1]
    );
    // Nothing was generated: no token count.
    assert!(!lines[1].contains("completion_tokens"), "{}", lines[1]);
}

#[tokio::test]
async fn latency_histograms_with_retriever_and_engine_labels() {
    let server = common::server(common::config());
    for engine in ["baseline", "spec"] {
        let body = json!({"model": "smollm2", "prompt": "Who wrote Hamlet?", "max_tokens": 8, "retrieval": {"engine": engine}}).to_string();
        let response = server
            .router()
            .oneshot(post("/v1/completions").body(Body::from(body)).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let _ = response.into_body().collect().await.unwrap();
    }
    let text = server.metrics().render();
    for engine in ["baseline", "spec"] {
        let labels = format!("retriever=\"flat\",engine=\"{engine}\"");
        for line in [
            format!("ralmspec_time_to_first_token_seconds_count{{{labels}}} 1"),
            format!("ralmspec_requests_total{{outcome=\"ok\",{labels}}} 1"),
            format!("ralmspec_request_duration_seconds_count{{{labels}}} 1"),
        ] {
            assert!(text.contains(&line), "missing {line} in\n{text}");
        }
        let itl = format!("ralmspec_inter_token_latency_seconds_count{{{labels}}} ");
        let count: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix(&itl))
            .unwrap_or_else(|| panic!("no {itl} in\n{text}"))
            .parse()
            .unwrap();
        assert!(count >= 1, "{text}");
    }
    assert!(text.contains("ralmspec_retrieval_calls_total{retriever=\"flat\"}"));
}

/// Regression (issue 15): a queued request whose client left kept its slot until a worker
/// reached it, and new requests got 503 meanwhile.
#[tokio::test]
async fn a_queued_request_whose_client_left_frees_its_slot() {
    let server = common::server(ServerConfig {
        workers: 1,
        queue_capacity: 1,
        max_tokens_limit: 512,
        ..common::config()
    });
    let long = json!({"model": "smollm2", "prompt": "Tell me the history of Rome.", "max_tokens": 400, "stream": true, "retrieval": {"engine": "baseline"}}).to_string();
    // The worker is busy with this one...
    let running = server
        .router()
        .oneshot(
            post("/v1/completions")
                .body(Body::from(long.clone()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(running.status(), StatusCode::OK);
    let mut running = running.into_body();
    loop {
        let frame = running.frame().await.unwrap().unwrap();
        if frame.into_data().unwrap().starts_with(b"data:") {
            break;
        }
    }
    // ... this one waits in the only slot, and its client leaves.
    let waiting = server
        .router()
        .oneshot(
            post("/v1/completions")
                .body(Body::from(long.clone()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(waiting.status(), StatusCode::OK);
    assert_eq!(server.metrics().queue_depth(), 1);
    drop(waiting);
    assert_eq!(server.metrics().queue_depth(), 0);
    // The next request is admitted at once.
    let next = server
        .router()
        .oneshot(post("/v1/completions").body(Body::from(long)).unwrap())
        .await
        .unwrap();
    assert_eq!(
        next.status(),
        StatusCode::OK,
        "the left request still holds the slot"
    );
    assert_eq!(server.metrics().cancelled_count(), 1);
}

/// Reads until the server closes the connection (or `limit` passes); returns what came.
fn read_all(stream: &mut TcpStream, limit: Duration) -> (String, bool) {
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut out = Vec::new();
    let closed = match stream.read_to_end(&mut out) {
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => true,
        Err(_) => false,
    };
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

/// Regression (issue 15): a client sending its headers a byte at a time held its connection
/// for as long as it liked; a body trickling in did the same.
#[test]
fn slow_headers_and_bodies_are_cut_off() {
    let server = live(ServerConfig {
        header_read_timeout: Duration::from_secs(1),
        body_read_timeout: Duration::from_secs(1),
        ..common::config()
    });
    let mut slow = TcpStream::connect(server.addr).unwrap();
    let started = Instant::now();
    let head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut cut = false;
    for byte in head {
        if slow.write_all(&[*byte]).is_err() {
            cut = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if !cut {
        let (_, closed) = read_all(&mut slow, Duration::from_secs(5));
        cut = closed;
    }
    assert!(cut, "the slow client still holds its connection");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );

    // A body that never completes: 408 after the body deadline.
    let mut slow = TcpStream::connect(server.addr).unwrap();
    slow.write_all(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"model\":")
        .unwrap();
    let started = Instant::now();
    let (reply, _) = read_all(&mut slow, Duration::from_secs(5));
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(reply.contains("request_timeout"), "{reply}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    server.shut_down();
}

/// Regression (issue 15): 200 connections dribbling their headers all stayed open; now each
/// is closed at the header deadline, and the server answers others meanwhile.
#[test]
fn two_hundred_slow_connections_are_all_closed() {
    let server = live(ServerConfig {
        header_read_timeout: Duration::from_secs(1),
        ..common::config()
    });
    let mut slow: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut s = TcpStream::connect(server.addr).unwrap();
            s.write_all(b"GET /health HTTP/1.1\r\nHo").unwrap();
            s
        })
        .collect();
    let mut health = TcpStream::connect(server.addr).unwrap();
    health
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let (reply, _) = read_all(&mut health, Duration::from_secs(5));
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let started = Instant::now();
    for s in &mut slow {
        let left = Duration::from_secs(5).saturating_sub(started.elapsed());
        let (_, closed) = read_all(s, left.max(Duration::from_millis(10)));
        assert!(
            closed,
            "a slow connection is still open after {:?}",
            started.elapsed()
        );
    }
    server.shut_down();
}

/// Connections beyond `max_connections` wait until one closes.
#[test]
fn connections_beyond_the_cap_wait() {
    let server = live(ServerConfig {
        max_connections: 2,
        header_read_timeout: Duration::from_secs(60),
        ..common::config()
    });
    let idle: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(server.addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut third = TcpStream::connect(server.addr).unwrap();
    third
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let (reply, _) = read_all(&mut third, Duration::from_millis(700));
    assert!(reply.is_empty(), "served beyond the cap: {reply}");
    drop(idle);
    let (reply, _) = read_all(&mut third, Duration::from_secs(5));
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    server.shut_down();
}

/// Regression (issue 15): a client that half-closed its socket after sending got no response.
#[test]
fn a_half_closed_client_gets_its_response() {
    let server = live(common::config());
    let body = completion(6, false);
    let mut client = TcpStream::connect(server.addr).unwrap();
    write!(
        client,
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let (reply, _) = read_all(&mut client, Duration::from_secs(60));
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply:?}");
    assert!(reply.contains("\"text_completion\""), "{reply}");
    server.shut_down();
}

/// Regression (issue 15): one stalled connection made a graceful shutdown wait the whole
/// grace period, as if a request were in flight.
#[test]
fn a_stalled_connection_does_not_hold_the_shutdown() {
    let server = live(ServerConfig {
        header_read_timeout: Duration::from_secs(60),
        ..common::config()
    });
    let mut stalled = TcpStream::connect(server.addr).unwrap();
    stalled.write_all(b"GET /health HTTP/1.1\r\nHo").unwrap();
    let mut idle = TcpStream::connect(server.addr).unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let took = server.shut_down();
    assert!(took < Duration::from_secs(3), "shutdown took {took:?}");
}
