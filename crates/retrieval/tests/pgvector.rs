//! The pgvector retrievers against a real PostgreSQL (`scripts/postgres.sh start`; the URL in
//! `RALMSPEC_TEST_DATABASE`, a streaming replica's in `RALMSPEC_TEST_REPLICA`), on real
//! knowledge-base passages, their real MiniLM vectors and real FanOutQA questions:
//!
//! - `score` equals `search` bit for bit, for both kinds;
//! - `pgvector` ranks like our flat index over the same vectors (measured and printed: the
//!   database sums the inner product in its own order, so scores may differ in the last bits);
//! - `pgvector-hnsw` answers every k ≤ ef_search with a prefix of one list, and caps k above;
//! - versions: a retriever pinned to a version keeps answering from it while later loads swap
//!   newer ones in, until the load after next drops it; the view follows the current one;
//! - refusals: a user's own table, an index never loaded, a bad name;
//! - the replica answers like the primary once replication has caught up.
//!
//! Without `RALMSPEC_TEST_DATABASE` every test prints that it is skipped and passes, unless
//! `RALMSPEC_REQUIRE_POSTGRES=1` (scripts/test.sh sets it when it starts the databases).
//! Tables are named `t_pg_*`, one name per test; each test removes its tables first (leftovers
//! of a failed run) and last.

use std::io::Write;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ralmspec_retrieval::index::Verify;
use ralmspec_retrieval::pg::{self, DatabaseOptions, Load, TableInfo};
use ralmspec_retrieval::questions::fanoutqa_dev;
use ralmspec_retrieval::set::{Build, Quiet, Source, Vectors, encoder_record, encoding};
use ralmspec_retrieval::{
    Corpus, Encoder, FlatIndex, Hit, IndexSet, Kind, Passage, PassageSource, PgRetriever,
    Precision, Query, RetrievalError, Retriever,
};

/// Knowledge-base passages loaded (the slice the engine's and server's tests use, so its
/// vectors are encoded once and cached in the asset store).
fn passages() -> usize {
    std::env::var("RALMSPEC_PG_PASSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

const QUESTIONS: usize = 50;
const K: usize = 10;

/// The URL in `var`, or `None` after printing that `test` is skipped; with
/// `RALMSPEC_REQUIRE_POSTGRES=1` a missing URL fails the test instead. Written to stderr
/// directly, past the test harness's capture, so a skip is seen in a plain `cargo test`.
fn database_url(var: &str, test: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("RALMSPEC_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "RALMSPEC_REQUIRE_POSTGRES=1 but {var} is unset (scripts/postgres.sh start)"
            );
            let line = format!("{test}: skipped: no {var} (scripts/postgres.sh start)\n");
            let _ = std::io::stderr().write_all(line.as_bytes());
            None
        }
    }
}

fn database(test: &str) -> Option<String> {
    database_url("RALMSPEC_TEST_DATABASE", test)
}

// ---- SQL beside the library, to look at and clean up what it did ----------------------

/// Runs `f` with a plain connection to `url`.
fn with_client<T>(url: &str, f: impl AsyncFnOnce(&tokio_postgres::Client) -> T) -> T {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        f(&client).await
    })
}

/// `relkind` of relation `name` (`r` table, `v` view), `None` when there is none.
fn relkind(url: &str, name: &str) -> Option<char> {
    with_client(url, async |c| {
        c.query_opt(
            "SELECT relkind::\"char\" FROM pg_class WHERE oid = to_regclass($1)",
            &[&name],
        )
        .await
        .unwrap()
        .map(|r| r.get::<_, i8>(0) as u8 as char)
    })
}

/// Removes index `name` from the database: its view, versions, build table and manifest row.
fn forget(url: &str, name: &str) {
    pg::check_name(name).unwrap();
    with_client(url, async |c| {
        let pattern = format!("^{name}(_v[0-9]+|_build)?$");
        let rows = c
            .query(
                "SELECT relname::text, relkind::\"char\" FROM pg_class
                 WHERE relnamespace = current_schema()::regnamespace AND relname ~ $1
                   AND relkind IN ('r', 'v')",
                &[&pattern],
            )
            .await
            .unwrap();
        for row in rows {
            let (rel, kind): (String, i8) = (row.get(0), row.get(1));
            let what = if kind as u8 == b'v' { "VIEW" } else { "TABLE" };
            c.batch_execute(&format!("DROP {what} IF EXISTS {rel}"))
                .await
                .unwrap();
        }
        c.execute("DELETE FROM ralmspec_indexes WHERE name = $1", &[&name])
            .await
            .or_else(|e| match e.code() {
                // No manifest table yet: nothing to forget.
                Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => Ok(0),
                _ => Err(e),
            })
            .unwrap();
    })
}

// ---- The knowledge base as an index set, and loads -------------------------------------

/// The first `passages()` knowledge-base passages and their MiniLM vectors (cached in the
/// asset store under the name the engine's tests use).
fn kb() -> (Corpus, Encoder, FlatIndex) {
    // Once per binary: the tests run in parallel, and the first run encodes the passages.
    static KB: OnceLock<(Corpus, FlatIndex)> = OnceLock::new();
    let encoder = Encoder::minilm().unwrap();
    let (corpus, flat) = KB.get_or_init(|| {
        let corpus = Corpus::wiki_kb().unwrap().head(passages());
        let store = ralmspec_assets::Store::from_env().unwrap();
        let dir = store
            .root()
            .join("indexes")
            .join(format!("test-flat-{}", &corpus.hash()[..16]));
        let flat = FlatIndex::open_or_build(&dir, &encoder, &corpus).unwrap();
        (corpus, flat)
    });
    (corpus.clone(), encoder, flat.clone())
}

/// An index set at `dir` of `corpus` whose flat index holds `flat`'s vectors.
fn index_set(dir: &Path, corpus: &Corpus, encoder: &Encoder, flat: &FlatIndex) -> IndexSet {
    let record = encoder_record(encoder);
    let build = Build {
        source: Source::Corpus {
            corpus,
            name: "wiki-kb",
        },
        kinds: &[Kind::Flat],
        pad_to: None,
        vectors: Some(Vectors::Index(flat, &record)),
        checkpoint_every: encoding::DEFAULT_CHECKPOINT_EVERY,
        precision: Precision::F32,
    };
    IndexSet::build(dir, &build, &mut Quiet).unwrap()
}

/// Another knowledge base over the same kind of data: the first `m` passages in reverse
/// order (so a document number names another passage than in the original) with their
/// vectors.
fn reversed(corpus: &Corpus, flat: &FlatIndex, m: usize) -> (Corpus, FlatIndex) {
    let dim = flat.dim();
    let passages: Vec<Passage> = (0..m)
        .map(|new| Passage {
            doc: new as u32,
            ..corpus.get((m - 1 - new) as u32).unwrap()
        })
        .collect();
    let mut vectors = Vec::with_capacity(m * dim);
    let mut row = Vec::new();
    for old in (0..m).rev() {
        vectors.extend_from_slice(flat.row_into(old, &mut row).unwrap());
    }
    let ids = (0..m as u32).collect();
    (
        Corpus::new(passages).unwrap(),
        FlatIndex::new(dim, vectors, ids).unwrap(),
    )
}

/// Loads `set` into `url` as `name`, returning the new version's manifest and the seconds.
fn load(url: &str, name: &str, set: &IndexSet, hnsw: bool) -> (TableInfo, f64) {
    let flat = set.flat(Verify::Full).unwrap();
    let start = Instant::now();
    let info = pg::load(
        url,
        &Load {
            name,
            set,
            flat: &flat,
            hnsw,
            keep_old_for: std::time::Duration::ZERO,
        },
        &mut Quiet,
    )
    .unwrap();
    (info, start.elapsed().as_secs_f64())
}

fn connect(url: &str, name: &str, kind: Kind, ef_search: Option<usize>) -> PgRetriever {
    PgRetriever::connect(
        &[url.to_string()],
        name,
        kind,
        ef_search,
        DatabaseOptions::default(),
    )
    .unwrap()
}

fn questions(encoder: &Encoder) -> Vec<Query> {
    let all = fanoutqa_dev().unwrap();
    let texts: Vec<&str> = all
        .iter()
        .take(QUESTIONS)
        .map(|q| q.text.as_str())
        .collect();
    assert_eq!(texts.len(), QUESTIONS);
    Query::encode_all(encoder, &texts).unwrap()
}

fn bits(hits: &[Vec<Hit>]) -> Vec<Vec<(u32, u32)>> {
    hits.iter()
        .map(|h| h.iter().map(|h| (h.doc, h.score.to_bits())).collect())
        .collect()
}

// ---- The tests ------------------------------------------------------------------------

/// One table of the knowledge base with both kinds: scores, rankings against the flat
/// index, HNSW's prefixes, and the replica.
#[test]
fn knowledge_base_in_postgres() {
    let test = "knowledge_base_in_postgres";
    let Some(url) = database(test) else { return };
    let name = "t_pg_kb";
    forget(&url, name);
    let (corpus, encoder, flat) = kb();
    let root = tempfile::tempdir().unwrap();
    let set = index_set(&root.path().join("set"), &corpus, &encoder, &flat);
    let (info, secs) = load(&url, name, &set, true);
    eprintln!("loaded {} passages with HNSW in {secs:.2} s", info.passages);
    assert_eq!(info.version, 1);
    assert_eq!(info.passages, passages());
    assert_eq!(info.kinds, [Kind::Pgvector, Kind::PgvectorHnsw]);
    assert_eq!(relkind(&url, name), Some('v'));
    let queries = questions(&encoder);

    let exact = connect(&url, name, Kind::Pgvector, None);
    let hnsw = connect(&url, name, Kind::PgvectorHnsw, None);
    assert_eq!(exact.info(), &info);
    assert_eq!(exact.len(), passages());
    assert_eq!(exact.consistent_k(), usize::MAX);
    assert_eq!(hnsw.consistent_k(), 40);

    // score() == search(), bit for bit; a batch answers like its queries alone.
    for (kind, retriever) in [("pgvector", &exact), ("pgvector-hnsw", &hnsw)] {
        let start = Instant::now();
        let batch = retriever.search(&queries, K).unwrap();
        let ms = start.elapsed().as_secs_f64() * 1e3 / QUESTIONS as f64;
        eprintln!("{kind}: {ms:.1} ms per query in a batch of {QUESTIONS}");
        for (q, hits) in queries.iter().zip(&batch) {
            assert_eq!(hits.len(), K, "{kind} {:?}", q.as_str());
            assert!(
                hits.windows(2).all(|w| w[0].rank_cmp(&w[1]).is_lt()),
                "{hits:?}"
            );
            let docs: Vec<u32> = hits.iter().map(|h| h.doc).collect();
            let scores = retriever.score(q, &docs).unwrap();
            for (h, s) in hits.iter().zip(&scores) {
                assert_eq!(
                    h.score.to_bits(),
                    s.to_bits(),
                    "{kind} {:?} doc {}",
                    q.as_str(),
                    h.doc
                );
            }
            let alone = retriever.search(std::slice::from_ref(q), K).unwrap();
            assert_eq!(
                bits(&alone)[0],
                bits(std::slice::from_ref(hits))[0],
                "{kind}"
            );
        }
        // Passages come back as loaded.
        for doc in [0, 1, passages() as u32 - 1] {
            assert_eq!(retriever.passage(doc).unwrap(), corpus.get(doc));
        }
        assert_eq!(retriever.passage(passages() as u32).unwrap(), None);
        let err = retriever
            .score(&queries[0], &[passages() as u32])
            .unwrap_err();
        assert!(matches!(err, RetrievalError::UnknownDoc { .. }), "{err}");
    }

    // The exact batch's one-pass scan (k ≤ 40, the table has an HNSW index) answers exactly
    // like one ORDER BY statement per query (used for k above 40), bit for bit.
    for k in [1, 3, K] {
        let scanned = exact.search(&queries, k).unwrap();
        let ordered = exact.search(&queries, 41).unwrap();
        for (a, b) in scanned.iter().zip(&ordered) {
            assert_eq!(
                bits(std::slice::from_ref(a)),
                bits(&[b[..k].to_vec()]),
                "k={k}"
            );
        }
    }

    exact_ranks_like_flat(&exact, &flat, &queries);
    hnsw_prefixes(&url, name, &hnsw, &exact, &queries);
    replica_answers_alike(&url, name, info.version, &queries, test);
    forget(&url, name);
}

/// pgvector's exact search against our flat index over the same f32 vectors. The two sum
/// 384 products in different orders, so a score may differ in its last bits and two
/// documents closer than that may swap; nothing else may differ.
fn exact_ranks_like_flat(exact: &PgRetriever, flat: &FlatIndex, queries: &[Query]) {
    const TIE: f32 = 1e-5;
    let ours = flat.search(queries, K).unwrap();
    let theirs = exact.search(queries, K).unwrap();
    let (mut same_order, mut same_set, mut same_bits, mut scores) = (0, 0, 0, 0);
    let mut max_diff = 0f32;
    for ((q, ours), theirs) in queries.iter().zip(&ours).zip(&theirs) {
        let docs = |h: &[Hit]| h.iter().map(|h| h.doc).collect::<Vec<_>>();
        let (a, b) = (docs(ours), docs(theirs));
        same_order += usize::from(a == b);
        let (mut sa, mut sb) = (a.clone(), b.clone());
        sa.sort_unstable();
        sb.sort_unstable();
        same_set += usize::from(sa == sb);
        // Every score pgvector gives, against ours for the same document.
        let flat_scores = flat.score(q, &b).unwrap();
        for (h, f) in theirs.iter().zip(&flat_scores) {
            scores += 1;
            same_bits += usize::from(h.score.to_bits() == f.to_bits());
            max_diff = max_diff.max((h.score - f).abs());
        }
        // Where the rankings differ, the documents are a near tie by our own scores: at
        // each rank, the two documents there score within TIE.
        let their_flat: Vec<f32> = flat_scores;
        for i in 0..K {
            if a[i] != b[i] {
                assert!(
                    (ours[i].score - their_flat[i]).abs() <= TIE,
                    "{:?}: rank {i}: flat has doc {} ({}), pgvector doc {} (flat score {})",
                    q.as_str(),
                    a[i],
                    ours[i].score,
                    b[i],
                    their_flat[i]
                );
            }
        }
    }
    eprintln!(
        "pgvector vs flat, {} questions, top-{K}: same order {same_order}, same set \
         {same_set}; scores bit-equal {same_bits}/{scores}, largest difference {max_diff:e}",
        queries.len()
    );
    assert!(max_diff <= TIE, "{max_diff}");
}

/// HNSW: within ef_search every k is a prefix of one re-ranked candidate list; above it, k
/// is capped; a smaller ef_search caps lower. Recall against exact is printed.
fn hnsw_prefixes(
    url: &str,
    name: &str,
    hnsw: &PgRetriever,
    exact: &PgRetriever,
    queries: &[Query],
) {
    let ef = hnsw.consistent_k();
    let full = bits(&hnsw.search(queries, ef).unwrap());
    assert!(full.iter().all(|h| h.len() == ef));
    for k in [1, 2, 5, 10, 39, 40] {
        let got = bits(&hnsw.search(queries, k).unwrap());
        for (g, f) in got.iter().zip(&full) {
            assert_eq!(g[..], f[..k], "k = {k}");
        }
    }
    for k in [41, 100, 10_000] {
        assert_eq!(bits(&hnsw.search(queries, k).unwrap()), full, "k = {k}");
    }
    let narrow = connect(url, name, Kind::PgvectorHnsw, Some(16));
    assert_eq!(narrow.consistent_k(), 16);
    assert!(
        narrow
            .search(queries, 100)
            .unwrap()
            .iter()
            .all(|h| h.len() == 16)
    );

    let truth = exact.search(queries, K).unwrap();
    let found = hnsw.search(queries, K).unwrap();
    let hits: usize = truth
        .iter()
        .zip(&found)
        .map(|(t, f)| {
            t.iter()
                .filter(|h| f.iter().any(|g| g.doc == h.doc))
                .count()
        })
        .sum();
    let top1 = truth
        .iter()
        .zip(&found)
        .filter(|(t, f)| t[0].doc == f[0].doc)
        .count();
    eprintln!(
        "pgvector-hnsw (ef_search {ef}) recall@{K} {:.3}, same top-1 {top1}/{}",
        hits as f64 / (K * queries.len()) as f64,
        queries.len()
    );
}

/// The replica, read alone, answers like the primary once it has the version.
fn replica_answers_alike(url: &str, name: &str, version: u64, queries: &[Query], test: &str) {
    let Some(replica) = database_url("RALMSPEC_TEST_REPLICA", test) else {
        return;
    };
    let start = Instant::now();
    let kinds = [Kind::Pgvector, Kind::PgvectorHnsw];
    let on_replica: Vec<PgRetriever> = kinds
        .iter()
        .map(|&kind| {
            loop {
                match PgRetriever::connect(
                    std::slice::from_ref(&replica),
                    name,
                    kind,
                    None,
                    DatabaseOptions::default(),
                ) {
                    Ok(r) if r.info().version == version => break r,
                    Ok(_) | Err(RetrievalError::NotLoaded { .. }) => {}
                    Err(e) => panic!("{e}"),
                }
                assert!(
                    start.elapsed() < Duration::from_secs(60),
                    "the replica has not caught up with version {version} in 60 s"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        })
        .collect();
    eprintln!(
        "the replica had version {version} after {:.2} s",
        start.elapsed().as_secs_f64()
    );
    for (kind, r) in kinds.iter().zip(&on_replica) {
        let primary = connect(url, name, *kind, None);
        assert_eq!(
            bits(&r.search(queries, K).unwrap()),
            bits(&primary.search(queries, K).unwrap()),
            "{kind}"
        );
        assert_eq!(r.passage(7).unwrap(), primary.passage(7).unwrap());
    }
}

/// Loads swap versions in; a retriever keeps reading the version it was opened (or pinned)
/// on until the load after next drops it; the view names the current one.
#[test]
fn versions_pin_and_retire() {
    let Some(url) = database("versions_pin_and_retire") else {
        return;
    };
    let name = "t_pg_versions";
    forget(&url, name);
    let (corpus, encoder, flat) = kb();
    let root = tempfile::tempdir().unwrap();
    let a = index_set(&root.path().join("a"), &corpus, &encoder, &flat);
    let (corpus_b, flat_b) = reversed(&corpus, &flat, passages() * 7 / 10);
    let b = index_set(&root.path().join("b"), &corpus_b, &encoder, &flat_b);
    let queries = questions(&encoder);
    let count = |url: &str| -> i64 {
        with_client(url, async |c| {
            c.query_one(&format!("SELECT count(*) FROM {name}"), &[])
                .await
                .unwrap()
                .get(0)
        })
    };

    let (v1, _) = load(&url, name, &a, false);
    assert_eq!(v1.version, 1);
    let first = connect(&url, name, Kind::Pgvector, None);
    let pinned1 = first.snapshot().unwrap().unwrap();
    assert_eq!(pinned1.version, 1);
    let on_a = bits(&first.search(&queries, K).unwrap());
    assert_eq!(count(&url), passages() as i64);
    // Loaded without HNSW: that kind is refused, saying so.
    let err = PgRetriever::connect(
        std::slice::from_ref(&url),
        name,
        Kind::PgvectorHnsw,
        None,
        DatabaseOptions::default(),
    )
    .err()
    .unwrap();
    assert!(
        err.to_string().contains("loaded without pgvector-hnsw"),
        "{err}"
    );

    let (v2, _) = load(&url, name, &b, false);
    assert_eq!(v2.version, 2);
    assert_eq!(v2.passages, corpus_b.len());
    assert_eq!(relkind(&url, name), Some('v'));
    assert_eq!(
        count(&url),
        corpus_b.len() as i64,
        "the view shows version 2"
    );
    // Version 1, through the pinned snapshot and the retriever opened on it: as before.
    assert_eq!(bits(&pinned1.retriever.search(&queries, K).unwrap()), on_a);
    assert_eq!(bits(&first.search(&queries, K).unwrap()), on_a);
    assert_eq!(pinned1.passages.passage(0).unwrap(), corpus.get(0));
    assert_eq!(first.len(), passages());
    // A new snapshot reads version 2: B's answers (other document numbers, passages).
    let pinned2 = first.snapshot().unwrap().unwrap();
    assert_eq!(pinned2.version, 2);
    assert_eq!(pinned2.retriever.len(), corpus_b.len());
    let on_b = bits(&pinned2.retriever.search(&queries, K).unwrap());
    let flat_b_hits = bits(&flat_b.search(&queries, K).unwrap());
    let differ = on_a.iter().zip(&on_b).filter(|(x, y)| x != y).count();
    assert!(differ > 0, "A and B answer alike");
    assert_eq!(pinned2.passages.passage(0).unwrap(), corpus_b.get(0));
    assert_ne!(corpus_b.get(0).unwrap().id, corpus.get(0).unwrap().id);
    let top1 = |h: &[Vec<(u32, u32)>]| h.iter().map(|h| h[0].0).collect::<Vec<_>>();
    assert_eq!(
        top1(&on_b),
        top1(&flat_b_hits),
        "version 2 ranks B's vectors"
    );

    let (v3, _) = load(&url, name, &a, false);
    assert_eq!(v3.version, 3);
    assert_eq!(
        relkind(&url, &format!("{name}_v1")),
        None,
        "version 1 is dropped"
    );
    assert_eq!(relkind(&url, &format!("{name}_v2")), Some('r'));
    assert_eq!(relkind(&url, &format!("{name}_v3")), Some('r'));
    assert_eq!(relkind(&url, &format!("{name}_build")), None);
    assert_eq!(count(&url), passages() as i64, "the view shows version 3");
    // Version 2 still answers as it did; version 1 fails loudly, never answers from another.
    assert_eq!(bits(&pinned2.retriever.search(&queries, K).unwrap()), on_b);
    let err = pinned1.retriever.search(&queries[..1], K).unwrap_err();
    assert!(
        matches!(&err, RetrievalError::Database { reason } if reason.contains("t_pg_versions_v1")),
        "{err:?}"
    );
    // Version 3 holds A again: A's answers.
    let pinned3 = first.snapshot().unwrap().unwrap();
    assert_eq!(pinned3.version, 3);
    assert_eq!(bits(&pinned3.retriever.search(&queries, K).unwrap()), on_a);
    forget(&url, name);
}

/// What a load or a connect must refuse: a name that is a user's own table (left as it
/// was), a name never loaded, a name that is not a plain identifier.
#[test]
fn refusals() {
    let Some(url) = database("refusals") else {
        return;
    };
    let (user, never) = ("t_pg_user", "t_pg_never");
    forget(&url, never);
    with_client(&url, async |c| {
        c.batch_execute(&format!(
            "DROP TABLE IF EXISTS {user}; DROP TABLE IF EXISTS {user}_build;
             CREATE TABLE {user} (x int); INSERT INTO {user} VALUES (1), (2), (3)"
        ))
        .await
        .unwrap()
    });
    let corpus = Corpus::wiki_kb().unwrap().head(20);
    let encoder = Encoder::minilm().unwrap();
    let (_, _, flat) = kb();
    let rows: Vec<f32> = flat.vectors()[..20 * flat.dim()].to_vec();
    let flat20 = FlatIndex::new(flat.dim(), rows, (0..20).collect()).unwrap();
    let root = tempfile::tempdir().unwrap();
    let set = index_set(&root.path().join("set"), &corpus, &encoder, &flat20);
    let flat_of_set = set.flat(Verify::Full).unwrap();
    let load_as = |name: &str| {
        pg::load(
            &url,
            &Load {
                name,
                set: &set,
                flat: &flat_of_set,
                hnsw: false,
                keep_old_for: std::time::Duration::ZERO,
            },
            &mut Quiet,
        )
    };

    let err = load_as(user).unwrap_err();
    assert!(
        matches!(&err, RetrievalError::Database { reason } if reason.contains("did not make")),
        "{err:?}"
    );
    let sum: i64 = with_client(&url, async |c| {
        c.query_one(&format!("SELECT sum(x) FROM {user}"), &[])
            .await
            .unwrap()
            .get(0)
    });
    assert_eq!(
        (relkind(&url, user), sum),
        (Some('r'), 6),
        "the user's table is untouched"
    );
    assert_eq!(relkind(&url, &format!("{user}_build")), None);
    // A user's view of that name, likewise (a view is ralmspec's only with a manifest row).
    let view = "t_pg_user_view";
    forget(&url, view);
    with_client(&url, async |c| {
        c.batch_execute(&format!(
            "DROP VIEW IF EXISTS {view}; CREATE VIEW {view} AS SELECT 41 + 1 AS answer"
        ))
        .await
        .unwrap()
    });
    let err = load_as(view).unwrap_err();
    assert!(
        matches!(&err, RetrievalError::Database { reason } if reason.contains("did not make")),
        "{err:?}"
    );
    let answer: i32 = with_client(&url, async |c| {
        c.query_one(&format!("SELECT answer FROM {view}"), &[])
            .await
            .unwrap()
            .get(0)
    });
    assert_eq!(
        (relkind(&url, view), answer),
        (Some('v'), 42),
        "the user's view is untouched"
    );
    assert_eq!(relkind(&url, &format!("{view}_v1")), None);
    with_client(&url, async |c| {
        c.batch_execute(&format!("DROP VIEW {view}")).await.unwrap()
    });
    let err = PgRetriever::connect(
        std::slice::from_ref(&url),
        user,
        Kind::Pgvector,
        None,
        DatabaseOptions::default(),
    )
    .err()
    .unwrap();
    assert!(matches!(err, RetrievalError::NotLoaded { .. }), "{err:?}");

    let err = PgRetriever::connect(
        std::slice::from_ref(&url),
        never,
        Kind::Pgvector,
        None,
        DatabaseOptions::default(),
    )
    .err()
    .unwrap();
    assert!(
        matches!(&err, RetrievalError::NotLoaded { name, .. } if name == never),
        "{err:?}"
    );
    assert!(err.to_string().contains("ralmspec index build"), "{err}");

    for bad in ["a-b", "T_pg", "t_pg;drop table t_pg_user"] {
        let err = load_as(bad).unwrap_err();
        assert!(
            err.to_string().contains("lower-case letters"),
            "{bad}: {err}"
        );
        let err = PgRetriever::connect(
            std::slice::from_ref(&url),
            bad,
            Kind::Pgvector,
            None,
            DatabaseOptions::default(),
        )
        .err()
        .unwrap();
        assert!(
            err.to_string().contains("lower-case letters"),
            "{bad}: {err}"
        );
    }
    assert_eq!(relkind(&url, user), Some('r'));
    with_client(&url, async |c| {
        c.batch_execute(&format!("DROP TABLE {user}"))
            .await
            .unwrap()
    });
}
