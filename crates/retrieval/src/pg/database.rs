//! Connections to a database and its replicas: one deadpool pool per URL, every call under a
//! timeout, reads spread round-robin. A database that fails or times out is marked down and
//! skipped; a background probe (`SELECT 1` every [`DatabaseOptions::retry_after`]) marks it
//! up again once it answers, so requests never wait on a database that is known to be down
//! while another one answers. When every database is down, a call tries them all anyway (one
//! may be back before its probe noticed). A call fails with [`RetrievalError::Unavailable`]
//! only when every database failed it.
//!
//! The retriever seam is synchronous; the database side is tokio-postgres, so a `Database`
//! owns a small tokio runtime and its callers block on it. Callers must not be tokio tasks
//! (the engine runs on plain threads).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

use crate::error::{Result, RetrievalError};

/// Prepared statements kept per connection (a retriever uses four per table version).
const MAX_STATEMENTS: usize = 64;

/// How a [`Database`] connects and when it gives up.
#[derive(Clone, Debug)]
pub struct DatabaseOptions {
    /// Connections per URL: the most queries one database runs at once for this process.
    pub pool_size: usize,
    /// The longest one call may take (connecting, waiting for a connection, running), and
    /// the server-side `statement_timeout`.
    pub timeout: Duration,
    /// How often a database that failed is probed; it is skipped until it answers.
    pub retry_after: Duration,
    /// Session settings (`SET name = value` on each connection).
    pub settings: Vec<(String, String)>,
}

impl Default for DatabaseOptions {
    fn default() -> DatabaseOptions {
        DatabaseOptions {
            pool_size: 16,
            timeout: Duration::from_secs(10),
            retry_after: Duration::from_secs(2),
            settings: Vec::new(),
        }
    }
}

/// A database and its replicas, read through pooled connections.
pub struct Database {
    /// `Some` until drop, which shuts it down without blocking (a server may drop it from
    /// async code).
    runtime: Option<tokio::runtime::Runtime>,
    replicas: Vec<Arc<Replica>>,
    next: AtomicUsize,
    options: DatabaseOptions,
}

struct Replica {
    /// The URL without its password, for messages.
    shown: String,
    pool: Pool,
    /// Failed its last call; skipped until its probe gets an answer.
    down: AtomicBool,
    /// A probe of it is running.
    probing: AtomicBool,
}

/// Why one database did not answer a call.
enum Failure {
    /// It is down or too slow: skip it for a while.
    Down(String),
    /// It lacks the table version asked for (a replica behind the primary, or a version
    /// dropped by later loads): another database may have it.
    Missing(String),
    /// An error every database would give.
    Fatal(RetrievalError),
}

impl Database {
    /// Pools for each of `urls` (`postgres://user@host:port/db`; the first is the primary,
    /// any others its read replicas), checked by one round trip: an error names every URL
    /// that did not answer when none did.
    pub fn connect(urls: &[String], options: DatabaseOptions) -> Result<Database> {
        if urls.is_empty() {
            return Err(RetrievalError::Database {
                reason: "no database URL given (--database postgres://…)".into(),
            });
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ralmspec-pg")
            .enable_all()
            .build()
            .map_err(|e| RetrievalError::Database {
                reason: format!("starting the database runtime: {e}"),
            })?;
        let replicas = {
            let _entered = runtime.enter();
            urls.iter()
                .map(|url| Replica::new(url, &options).map(Arc::new))
                .collect::<Result<Vec<_>>>()?
        };
        let db = Database {
            runtime: Some(runtime),
            replicas,
            next: AtomicUsize::new(0),
            options,
        };
        db.block_on(db.query("SELECT 1", &[]))?;
        Ok(db)
    }

    /// The URLs, passwords hidden.
    pub fn urls(&self) -> Vec<String> {
        self.replicas.iter().map(|r| r.shown.clone()).collect()
    }

    /// Runs `future` on the database's runtime, blocking the calling thread.
    pub(crate) fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime
            .as_ref()
            .expect("the runtime lives until drop")
            .block_on(future)
    }

    /// Runs one read-only statement on the next database that answers.
    pub(crate) async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>> {
        let n = self.replicas.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut failures = Vec::new();
        let mut all_missing = true;
        // First the databases that are up, then (all else failed) those that were marked
        // down before: one may be back already. A database is tried once per call: one that
        // failed in the first pass (and is marked down now) is not tried again, or a call
        // could take twice the timeout.
        let was_down: Vec<bool> = self.replicas.iter().map(|r| r.is_down()).collect();
        for down_pass in [false, true] {
            for i in 0..n {
                let index = (start + i) % n;
                if was_down[index] != down_pass {
                    continue;
                }
                let replica = &self.replicas[index];
                let result =
                    tokio::time::timeout(self.options.timeout, replica.query(sql, params)).await;
                let failure = match result {
                    Ok(Ok(rows)) => {
                        replica.mark_up();
                        return Ok(rows);
                    }
                    Ok(Err(failure)) => failure,
                    Err(_) => Failure::Down(format!("no answer within {:?}", self.options.timeout)),
                };
                match failure {
                    Failure::Fatal(e) => return Err(e),
                    Failure::Down(why) => {
                        Replica::mark_down(replica, &self.options);
                        all_missing = false;
                        failures.push(format!("{}: {why}", replica.shown));
                    }
                    Failure::Missing(why) => failures.push(format!("{}: {why}", replica.shown)),
                }
            }
        }
        let reason = failures.join("; ");
        Err(match all_missing {
            true => RetrievalError::Database { reason },
            false => RetrievalError::Unavailable { reason },
        })
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Replica {
    fn new(url: &str, options: &DatabaseOptions) -> Result<Replica> {
        let mut config: tokio_postgres::Config =
            url.parse().map_err(|e| RetrievalError::Database {
                reason: format!("{}: not a PostgreSQL URL: {e}", hide_password(url)),
            })?;
        config.connect_timeout(options.timeout);
        let mut settings = format!(
            "-c statement_timeout={} -c default_transaction_read_only=on",
            options.timeout.as_millis()
        );
        for (name, value) in &options.settings {
            settings.push_str(&format!(" -c {name}={value}"));
        }
        config.options(&settings);
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.timeout))
            .create_timeout(Some(options.timeout))
            .recycle_timeout(Some(options.timeout))
            .build()
            .map_err(|e| RetrievalError::Database {
                reason: format!("{}: {e}", hide_password(url)),
            })?;
        Ok(Replica {
            shown: hide_password(url),
            pool,
            down: AtomicBool::new(false),
            probing: AtomicBool::new(false),
        })
    }

    fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    /// Marks `replica` down and, unless one runs already, starts its probe on the runtime
    /// (this runs inside [`Database::block_on`]).
    fn mark_down(replica: &Arc<Replica>, options: &DatabaseOptions) {
        replica.down.store(true, Ordering::Relaxed);
        if replica.probing.swap(true, Ordering::AcqRel) {
            return;
        }
        let (replica, every, timeout) = (replica.clone(), options.retry_after, options.timeout);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let answer = tokio::time::timeout(timeout, replica.query("SELECT 1", &[])).await;
                if matches!(answer, Ok(Ok(_))) || !replica.is_down() {
                    break;
                }
            }
            replica.mark_up();
            replica.probing.store(false, Ordering::Release);
        });
    }

    fn mark_up(&self) {
        self.down.store(false, Ordering::Relaxed);
    }

    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> std::result::Result<Vec<Row>, Failure> {
        let client = self
            .pool
            .get()
            .await
            .map_err(|e| Failure::Down(describe(&e)))?;
        // Each table version has its own statements: a server that outlives many loads
        // would keep them all.
        if client.statement_cache.size() > MAX_STATEMENTS {
            client.statement_cache.clear();
        }
        let statement = client.prepare_cached(sql).await.map_err(classify)?;
        client.query(&statement, params).await.map_err(classify)
    }
}

/// Sorts a database error into down (try another, later this one again), missing (try
/// another) or fatal.
fn classify(e: tokio_postgres::Error) -> Failure {
    if e.is_closed() {
        return Failure::Down(describe(&e));
    }
    let Some(db) = e.as_db_error() else {
        // No answer from the server: I/O, a broken protocol stream.
        return Failure::Down(describe(&e));
    };
    let code = db.code();
    let class = &code.code()[..2];
    if *code == SqlState::UNDEFINED_TABLE {
        Failure::Missing(db.message().to_string())
    } else if matches!(class, "08" | "53" | "57" | "58")
        || *code == SqlState::T_R_SERIALIZATION_FAILURE
    {
        // Connection exceptions, insufficient resources, operator intervention (shutdown,
        // statement timeout, recovery conflicts), system errors.
        Failure::Down(db.message().to_string())
    } else {
        Failure::Fatal(RetrievalError::Database {
            reason: db.message().to_string(),
        })
    }
}

/// `e` and its causes, `: `-separated. tokio-postgres leaves the cause out of an error's
/// text ("error connecting to server", not why), and deadpool's wraps that text.
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    text
}

/// `url` with any password replaced by `***`.
pub(crate) fn hide_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_string();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    /// A silent server: accepts connections, never answers. Its URL.
    fn silent_server() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("postgres://u@{}/db", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            let held: Vec<_> = listener.incoming().collect();
            drop(held);
        });
        url
    }

    /// Beside a database that answers, a hung one costs one call one timeout; then it is
    /// skipped (its probe keeps failing), and no later call waits on it.
    #[test]
    fn a_hung_database_beside_a_live_one_is_skipped() {
        let Ok(live) = std::env::var("RALMSPEC_TEST_DATABASE") else {
            assert!(
                std::env::var("RALMSPEC_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "RALMSPEC_REQUIRE_POSTGRES=1 but RALMSPEC_TEST_DATABASE is unset"
            );
            eprintln!("skipped: no RALMSPEC_TEST_DATABASE (scripts/postgres.sh start)");
            return;
        };
        let timeout = Duration::from_millis(600);
        let options = DatabaseOptions {
            timeout,
            retry_after: Duration::from_millis(200),
            ..DatabaseOptions::default()
        };
        let db = Database::connect(&[silent_server(), live], options).unwrap();
        // Calls for 2 s, ten retry periods: only one may wait on the hung database.
        let started = Instant::now();
        let (mut calls, mut slow) = (0, 0);
        while started.elapsed() < Duration::from_secs(2) {
            let call = Instant::now();
            db.block_on(db.query("SELECT 1", &[])).unwrap();
            calls += 1;
            slow += usize::from(call.elapsed() > timeout / 2);
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            slow <= 1,
            "{slow} of {calls} calls waited on the hung database"
        );
    }

    /// A database that hangs (accepts connections, never answers) costs one timeout per
    /// call, not one per pass over the databases.
    #[test]
    fn a_hung_database_is_tried_once_per_call() {
        let url = silent_server();
        let timeout = Duration::from_millis(800);
        let options = DatabaseOptions {
            timeout,
            ..DatabaseOptions::default()
        };
        let started = Instant::now();
        let err = Database::connect(std::slice::from_ref(&url), options)
            .err()
            .expect("a silent server cannot answer");
        let elapsed = started.elapsed();
        assert!(err.is_unavailable(), "{err}");
        assert_eq!(err.to_string().matches(&url).count(), 1, "{err}");
        assert!(err.to_string().contains("imeout"), "{err}");
        assert!(
            elapsed >= timeout && elapsed < timeout * 2,
            "took {elapsed:?} with a timeout of {timeout:?}: {err}"
        );
    }

    /// A database nothing listens on: the error says why, not only that connecting failed.
    #[test]
    fn a_refused_connection_says_so() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let url = format!("postgres://u@127.0.0.1:{port}/db");
        let err = Database::connect(std::slice::from_ref(&url), DatabaseOptions::default())
            .err()
            .expect("nothing listens there");
        let text = err.to_string();
        assert!(err.is_unavailable(), "{text}");
        assert!(text.contains(&url) && text.contains("refused"), "{text}");
    }

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(
            hide_password("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(hide_password("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(hide_password("host=h user=u"), "host=h user=u");
    }
}
