//! Faults of a real PostgreSQL under the real `ralmspec` binary: a database that is down at
//! start, one that goes away (and comes back) under a running server, one that hangs
//! (SIGSTOP), and a replica or primary lost in the middle of concurrent load.
//!
//! Each test runs its own private clusters (`scripts/postgres.sh` with names `faults-*` and
//! ports 55511–55514; the shared primary and replica of `scripts/test.sh` are never touched),
//! destroyed when the test ends, also when it panics. The tests run one at a time (they time
//! failures, which two servers decoding side by side on a small machine would blur).
//!
//! They need the PostgreSQL install of `scripts/postgres.sh`: without `RALMSPEC_TEST_DATABASE`
//! (`scripts/test.sh` sets it once PostgreSQL runs) they are skipped with a message, unless
//! `RALMSPEC_REQUIRE_POSTGRES=1` makes that a failure. The database-down-at-start test needs
//! no database and always runs.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// `--database-timeout` of the servers under test.
const DB_TIMEOUT: Duration = Duration::from_secs(3);
/// What a failing request may take beyond `DB_TIMEOUT` (it fails at its first database call,
/// the snapshot of the index version; the rest is a slow machine).
const SLACK: Duration = Duration::from_secs(2);
const MAX_TOKENS: u64 = 16;
const TABLE: &str = "faults";

/// FanOutQA dev questions (some shortened).
const QUESTIONS: [&str; 8] = [
    "Who are the directors of the top 5 highest-grossing films?",
    "What law schools did the most recent four Supreme Court justices attend?",
    "What were the release dates of the studio albums released by the band Destiny's Child?",
    "What are the mythical Pokemon introduced between generations 1 and 3?",
    "What were box office values of the Star Wars films in the prequel trilogy?",
    "What are the names of the 6 Metropolitan cities in Korea?",
    "What is the batting hand of each of the first five picks in the 1998 MLB draft?",
    "Who won the World Car of the Year Award from 2019 to 2023?",
];

// --- the test environment ----------------------------------------------------------------------

/// One test at a time.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether PostgreSQL is there to test against (see the module docs).
fn postgres_available(test: &str) -> bool {
    if std::env::var_os("RALMSPEC_TEST_DATABASE").is_some_and(|v| !v.is_empty()) {
        return true;
    }
    if std::env::var("RALMSPEC_REQUIRE_POSTGRES").as_deref() == Ok("1") {
        panic!(
            "{test}: RALMSPEC_REQUIRE_POSTGRES=1 but RALMSPEC_TEST_DATABASE is unset \
             (scripts/test.sh sets it once scripts/postgres.sh started PostgreSQL)"
        );
    }
    eprintln!(
        "skipping {test}: RALMSPEC_TEST_DATABASE is unset, so PostgreSQL is not set up here \
         (scripts/test.sh starts it; RALMSPEC_REQUIRE_POSTGRES=1 turns this skip into a failure)"
    );
    false
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/postgres.sh")
}

fn postgres_sh(args: &[&str]) -> Output {
    Command::new(script())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run scripts/postgres.sh")
}

fn ralmspec(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ralmspec"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run ralmspec")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A private cluster of `scripts/postgres.sh`, destroyed on drop (after a SIGCONT, should a
/// test have stopped its processes).
struct Cluster {
    name: String,
    port: u16,
    url: String,
    pgdata: PathBuf,
}

impl Cluster {
    /// A new cluster `name` on `port` (whatever an earlier run left under that name is
    /// destroyed first); a hot-standby replica of `replica_of` when given.
    fn create(name: &str, port: u16, replica_of: Option<&Cluster>) -> Cluster {
        let out = postgres_sh(&["destroy", "--name", name]);
        assert!(
            out.status.success(),
            "destroy {name}: {}",
            text(&out.stderr)
        );
        let port_arg = port.to_string();
        let mut args = vec!["start", "--name", name, "--port", &port_arg];
        if let Some(primary) = replica_of {
            args.extend(["--replica-of", &primary.name]);
        }
        // From here on the cluster exists: destroy it whatever happens next.
        let mut cluster = Cluster {
            name: name.to_string(),
            port,
            url: String::new(),
            pgdata: PathBuf::new(),
        };
        let out = postgres_sh(&args);
        assert!(out.status.success(), "start {name}: {}", text(&out.stderr));
        cluster.url = text(&out.stdout).trim().to_string();
        assert!(cluster.url.starts_with("postgres://"), "{}", cluster.url);
        let out = postgres_sh(&["status", "--name", name]);
        let status = text(&out.stdout);
        let pgdata = status
            .split("data ")
            .nth(1)
            .and_then(|s| s.split(';').next())
            .unwrap_or_else(|| panic!("no data folder in `status --name {name}`: {status}"));
        cluster.pgdata = PathBuf::from(pgdata);
        cluster
    }

    /// Starts it again after [`Cluster::kill`].
    fn restart(&self) {
        let out = postgres_sh(&["start", "--name", &self.name]);
        assert!(
            out.status.success(),
            "restart {}: {}",
            self.name,
            text(&out.stderr)
        );
    }

    /// `stop --immediate`: a crash, as clients see it.
    fn kill(&self) {
        let out = postgres_sh(&["stop", "--name", &self.name, "--immediate"]);
        assert!(
            out.status.success(),
            "stop {}: {}",
            self.name,
            text(&out.stderr)
        );
    }

    /// The postmaster and every process it forked (backends, checkpointer, ...).
    fn processes(&self) -> Vec<u32> {
        let Ok(pidfile) = std::fs::read_to_string(self.pgdata.join("postmaster.pid")) else {
            return Vec::new();
        };
        let Some(postmaster) = pidfile.lines().next().and_then(|l| l.trim().parse().ok()) else {
            return Vec::new();
        };
        let mut pids = vec![postmaster];
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // pid (comm) state ppid ...: comm may hold spaces and parentheses.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if ppid == Some(postmaster) {
                pids.push(pid);
            }
        }
        pids
    }

    /// Open TCP connections to it (from clients on this machine: here, the server's pool).
    fn connections(&self) -> usize {
        let tcp = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
        let remote = format!("0100007F:{:04X}", self.port);
        tcp.lines()
            .skip(1)
            .filter(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                // sl local_address rem_address st: 01 is ESTABLISHED.
                fields.get(2) == Some(&remote.as_str()) && fields.get(3) == Some(&"01")
            })
            .count()
    }

    /// Sends `signal` (`STOP`, `CONT`) to all its processes.
    fn signal(&self, signal: &str) {
        let pids: Vec<String> = self.processes().iter().map(u32::to_string).collect();
        if pids.is_empty() {
            return;
        }
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .args(&pids)
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.signal("CONT");
        let out = postgres_sh(&["destroy", "--name", &self.name]);
        if !out.status.success() {
            eprintln!("destroy {}: {}", self.name, text(&out.stderr));
        }
    }
}

/// Loads the built-in knowledge base into `cluster` as [`TABLE`].
fn load_table(cluster: &Cluster) {
    let started = Instant::now();
    let out = ralmspec(&[
        "index",
        "build",
        "--kind",
        "pgvector",
        "--database",
        &cluster.url,
        "--table",
        TABLE,
    ]);
    assert!(out.status.success(), "index build: {}", text(&out.stderr));
    eprintln!(
        "loaded {TABLE} into {} in {:.1?}",
        cluster.url,
        started.elapsed()
    );
}

/// `ralmspec serve` on a free loopback port, killed on drop.
struct Server {
    child: Child,
    base: String,
    log: Arc<Mutex<String>>,
}

impl Server {
    fn start(databases: &str, extra: &[&str]) -> Server {
        let timeout = DB_TIMEOUT.as_secs().to_string();
        let max_tokens = MAX_TOKENS.to_string();
        let mut child = Command::new(env!("CARGO_BIN_EXE_ralmspec"))
            .args(["serve", "--addr", "127.0.0.1:0", "--retriever", "pgvector"])
            .args(["--database", databases, "--table", TABLE])
            .args(["--database-timeout", &timeout, "--max-tokens", &max_tokens])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ralmspec serve");
        let log = Arc::new(Mutex::new(String::new()));
        let (addr_tx, addr_rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
                if let Some(rest) = line.split_once(" on http://").map(|(_, r)| r) {
                    let addr = rest.split_whitespace().next().unwrap_or("").to_string();
                    let _ = addr_tx.send(addr);
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let mut server = Server {
            child,
            base: String::new(),
            log,
        };
        match addr_rx.recv_timeout(Duration::from_secs(120)) {
            Ok(addr) => server.base = format!("http://{addr}"),
            Err(_) => panic!("the server did not start: {}", server.log()),
        }
        server
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Panics unless the process still runs and answers `/health` and `/v1/models`.
    fn assert_up(&mut self) {
        assert!(
            self.child.try_wait().unwrap().is_none(),
            "the server exited: {}",
            self.log()
        );
        for path in ["/health", "/v1/models"] {
            let (status, body) = http("GET", &format!("{}{path}", self.base), None, false);
            assert_eq!(status, 200, "{path}: {body}");
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `method url` with curl (at most 60 s): the status (0 when curl got no answer) and the body.
fn http(method: &str, url: &str, body: Option<&Value>, stream: bool) -> (u16, String) {
    let mut curl = Command::new("curl");
    curl.args([
        "-sS",
        "--max-time",
        "60",
        "-X",
        method,
        "-w",
        "\n%{http_code}",
    ]);
    if stream {
        curl.arg("-N");
    }
    if let Some(body) = body {
        curl.args([
            "-H",
            "Content-Type: application/json",
            "-d",
            &body.to_string(),
        ]);
    }
    let out = curl.arg(url).output().expect("curl is installed");
    let stdout = text(&out.stdout);
    let (body, code) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    match code.trim().parse() {
        Ok(code) if out.status.success() => (code, body.to_string()),
        _ => (0, format!("curl failed: {}{}", text(&out.stderr), body)),
    }
}

fn chat_body(question: &str, stream: bool) -> Value {
    json!({
        "model": "smollm2",
        "messages": [{"role": "user", "content": question}],
        "max_tokens": MAX_TOKENS,
        "stream": stream,
    })
}

/// A chat completion: its status, body and how long it took.
fn chat(server: &Server, question: &str) -> (u16, Value, Duration) {
    let started = Instant::now();
    let (status, body) = http(
        "POST",
        &format!("{}/v1/chat/completions", server.base),
        Some(&chat_body(question, false)),
        false,
    );
    let elapsed = started.elapsed();
    let body = serde_json::from_str(&body).unwrap_or(Value::String(body));
    (status, body, elapsed)
}

/// What an answer is judged by: its text and its sources, in order.
#[derive(Clone, Debug, PartialEq)]
struct Answer {
    text: String,
    sources: Vec<u64>,
}

fn answer_of(body: &Value) -> Answer {
    Answer {
        text: body["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or_else(|| panic!("no answer in {body}"))
            .to_string(),
        sources: body["sources"]
            .as_array()
            .map(|s| s.iter().filter_map(|s| s["doc"].as_u64()).collect())
            .unwrap_or_default(),
    }
}

/// The answer of a request that must succeed.
fn answer(server: &Server, question: &str) -> Answer {
    let (status, body, _) = chat(server, question);
    assert_eq!(
        status,
        200,
        "{question}: {body}\nserver log:\n{}",
        server.log()
    );
    answer_of(&body)
}

/// Asserts a 503 `retriever_unavailable` within the database timeout and slack; returns how
/// long it took.
fn assert_unavailable(server: &Server, question: &str) -> Duration {
    let (status, body, elapsed) = chat(server, question);
    assert_eq!(status, 503, "{body}\nserver log:\n{}", server.log());
    assert_eq!(body["error"]["code"], "retriever_unavailable", "{body}");
    assert!(
        elapsed <= DB_TIMEOUT + SLACK,
        "the failure took {elapsed:.1?} (--database-timeout {DB_TIMEOUT:?})"
    );
    elapsed
}

/// Asserts that a streamed request ends in an `error` event `retriever_unavailable` (and no
/// `[DONE]`); returns how long it took.
fn assert_stream_unavailable(server: &Server, question: &str) -> Duration {
    let started = Instant::now();
    let (status, sse) = http(
        "POST",
        &format!("{}/v1/chat/completions", server.base),
        Some(&chat_body(question, true)),
        true,
    );
    let elapsed = started.elapsed();
    assert_eq!(status, 200, "{sse}");
    let data: Vec<&str> = sse
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    let last: Value = serde_json::from_str(data.last().copied().unwrap_or("null")).unwrap();
    assert_eq!(last["error"]["code"], "retriever_unavailable", "{sse}");
    assert!(!data.contains(&"[DONE]"), "{sse}");
    assert!(
        elapsed <= DB_TIMEOUT + SLACK,
        "the stream failed after {elapsed:.1?}"
    );
    elapsed
}

/// Asks `question` until it succeeds (within 60 s): its answer, how long that took and how
/// many requests failed before.
fn answer_once_back(server: &Server, question: &str) -> (Answer, Duration, usize) {
    let started = Instant::now();
    for failed in 0.. {
        let (status, body, _) = chat(server, question);
        if status == 200 {
            return (answer_of(&body), started.elapsed(), failed);
        }
        assert_eq!(body["error"]["code"], "retriever_unavailable", "{body}");
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "still failing 60 s after the database came back: {body}\nserver log:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    unreachable!()
}

/// A port nothing listens on (one the kernel just handed out and took back).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

// --- the tests ---------------------------------------------------------------------------------

#[test]
fn a_database_down_at_start_is_a_clear_error_not_a_hang() {
    let _serial = serial();
    let url = format!("postgres://ralmspec@127.0.0.1:{}/ralmspec", closed_port());
    for command in ["ask", "serve"] {
        let mut args = vec![command, "--retriever", "pgvector", "--database", &url];
        match command {
            "ask" => args.extend(["--max-tokens", "16", "Who wrote Hamlet?"]),
            _ => args.extend(["--addr", "127.0.0.1:0"]),
        }
        let started = Instant::now();
        let out = ralmspec(&args);
        let elapsed = started.elapsed();
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{command} succeeded: {err}");
        assert!(err.contains("error:") && !err.contains("panicked"), "{err}");
        assert!(
            err.contains(&url),
            "{command}: the message does not name {url}: {err}"
        );
        assert!(err.contains("unavailable"), "{command}: {err}");
        assert!(
            err.contains("refused"),
            "{command}: the message does not say why: {err}"
        );
        assert!(
            elapsed < Duration::from_secs(20),
            "{command} took {elapsed:.1?}"
        );
        eprintln!(
            "{command} with the database down: exit {} after {elapsed:.1?}: {err}",
            out.status
        );
    }
}

#[test]
fn a_database_lost_mid_serve_fails_requests_fast_and_they_recover() {
    if !postgres_available("a_database_lost_mid_serve_fails_requests_fast_and_they_recover") {
        return;
    }
    let _serial = serial();
    let db = Cluster::create("faults-gone", 55511, None);
    load_table(&db);
    let mut server = Server::start(&db.url, &[]);
    let question = QUESTIONS[0];
    let before = answer(&server, question);

    db.kill();
    let failed = assert_unavailable(&server, question);
    let stream_failed = assert_stream_unavailable(&server, question);
    server.assert_up();
    eprintln!(
        "database down: a request failed after {failed:.2?}, a stream after {stream_failed:.2?}"
    );

    let started = Instant::now();
    db.restart();
    let restarted = started.elapsed();
    let (after, back, failed) = answer_once_back(&server, question);
    assert_eq!(after, before, "the answer changed across the outage");
    assert_eq!(answer(&server, QUESTIONS[1]), answer(&server, QUESTIONS[1]));
    server.assert_up();
    eprintln!(
        "database restarted in {restarted:.1?}; answered {back:.2?} later ({failed} requests failed before)"
    );
}

#[test]
fn a_hung_database_fails_requests_within_the_timeout_and_they_recover() {
    if !postgres_available("a_hung_database_fails_requests_within_the_timeout_and_they_recover") {
        return;
    }
    let _serial = serial();
    let db = Cluster::create("faults-hung", 55512, None);
    load_table(&db);
    let mut server = Server::start(&db.url, &[]);
    let question = QUESTIONS[1];
    let before = answer(&server, question);

    db.signal("STOP");
    let first = assert_unavailable(&server, question);
    // Again, now that the database is marked down, and streamed.
    let second = assert_unavailable(&server, question);
    let streamed = assert_stream_unavailable(&server, question);
    server.assert_up();
    eprintln!(
        "database hung: requests failed after {first:.2?} and {second:.2?}, a stream after {streamed:.2?} \
         (--database-timeout {DB_TIMEOUT:?})"
    );

    db.signal("CONT");
    let (after, back, failed) = answer_once_back(&server, question);
    assert_eq!(after, before, "the answer changed across the hang");
    assert_eq!(answer(&server, QUESTIONS[2]), answer(&server, QUESTIONS[2]));
    eprintln!(
        "database resumed: answered {back:.2?} after SIGCONT ({failed} requests failed before)"
    );
}

/// Every question of [`QUESTIONS`] `rounds` times, all at once from one thread each; calls
/// `fault` once `fault_after` answers are in. Panics unless every answer is its reference.
fn load_with_fault(
    server: &Server,
    reference: &[Answer],
    rounds: usize,
    fault_after: usize,
    fault: impl FnOnce(),
) -> Duration {
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let results: Vec<(usize, u16, Value)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..QUESTIONS.len())
            .map(|q| {
                let done = done.clone();
                scope.spawn(move || {
                    (0..rounds)
                        .map(|_| {
                            let (status, body, _) = chat(server, QUESTIONS[q]);
                            done.fetch_add(1, Ordering::SeqCst);
                            (q, status, body)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        while done.load(Ordering::SeqCst) < fault_after {
            std::thread::sleep(Duration::from_millis(20));
        }
        fault();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert_eq!(results.len(), QUESTIONS.len() * rounds);
    for (q, status, body) in &results {
        assert_eq!(
            *status,
            200,
            "{}: {body}\nserver log:\n{}",
            QUESTIONS[*q],
            server.log()
        );
        assert_eq!(answer_of(body), reference[*q], "{}", QUESTIONS[*q]);
    }
    started.elapsed()
}

#[test]
fn losing_a_replica_or_the_primary_under_load_loses_no_request() {
    if !postgres_available("losing_a_replica_or_the_primary_under_load_loses_no_request") {
        return;
    }
    let _serial = serial();
    let primary = Cluster::create("faults-primary", 55513, None);
    load_table(&primary);
    let replica = Cluster::create("faults-replica", 55514, Some(&primary));
    let databases = format!("{},{}", primary.url, replica.url);
    let mut server = Server::start(&databases, &["--workers", "2"]);

    let started = Instant::now();
    let reference: Vec<Answer> = QUESTIONS.iter().map(|q| answer(&server, q)).collect();
    eprintln!(
        "{} reference answers in {:.1?}",
        QUESTIONS.len(),
        started.elapsed()
    );

    // Reads are spread: the server's pool holds connections to both.
    assert!(primary.connections() > 0 && replica.connections() > 0);

    let rounds = 2;
    let took = load_with_fault(&server, &reference, rounds, 4, || replica.kill());
    eprintln!(
        "{} requests, the replica killed after 4 answers: all right, in {took:.1?}",
        QUESTIONS.len() * rounds
    );
    server.assert_up();

    replica.restart();
    // The server probes a database it saw fail every 2 s (`retry_after`) and reads from it
    // again once it answers; requests never wait on it meanwhile.
    let back = Instant::now();
    while replica.connections() == 0 && back.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "the restarted replica is read again after {:.1?}",
        back.elapsed()
    );
    let took = load_with_fault(&server, &reference, rounds, 4, || {
        // The replica is read again.
        assert!(
            replica.connections() > 0,
            "the restarted replica gets no reads"
        );
        primary.kill()
    });
    eprintln!(
        "{} requests, the primary killed after 4 answers: all right, in {took:.1?}",
        QUESTIONS.len() * rounds
    );
    // Only the replica is left, and it answers everything.
    for (q, want) in QUESTIONS.iter().zip(&reference).take(3) {
        assert_eq!(&answer(&server, q), want, "{q}");
    }
    server.assert_up();
}
