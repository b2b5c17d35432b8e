//! Shared by the engine's integration tests: the dense knowledge base (the first passages of
//! the built-in one with their MiniLM vectors, cached in the asset store) and the same in a
//! real PostgreSQL with pgvector.
//!
//! Database tests need `RALMSPEC_TEST_DATABASE` (`scripts/postgres.sh start` prints it);
//! without it they print that they are skipped and pass, unless `RALMSPEC_REQUIRE_POSTGRES=1`
//! (scripts/test.sh sets it when it starts the database), which makes a missing database fail.
//! Each test loads its own index name (`t_ident_*`, `t_snap_*`); loading again only adds a
//! version (the library drops all but the last two), so reruns need no cleanup.

#![allow(dead_code)]

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use ralmspec_engine::Knowledge;
use ralmspec_retrieval::index::Verify;
use ralmspec_retrieval::pg::{self, DatabaseOptions, Load, TableInfo};
use ralmspec_retrieval::set::{Build, Quiet, Source, Vectors, encoder_record, encoding};
use ralmspec_retrieval::{
    Corpus, Encoder, FlatIndex, IndexSet, Kind, Passage, PgRetriever, Precision,
};

/// The test database's URL, or `None` after printing that `test` is skipped; with
/// `RALMSPEC_REQUIRE_POSTGRES=1` a missing URL fails the test instead. Written to stderr in
/// one piece, past the test harness's capture, so a skip shows in a plain `cargo test`.
pub fn database(test: &str) -> Option<String> {
    let var = "RALMSPEC_TEST_DATABASE";
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

/// The first `n` knowledge-base passages, MiniLM and the passages' vectors (encoded on first
/// use, then cached in the asset store: the server's and these tests share the 1,000 slice).
pub fn kb(n: usize) -> (Arc<Corpus>, Arc<Encoder>, FlatIndex) {
    let corpus = Corpus::wiki_kb().unwrap();
    let corpus = Arc::new(corpus.head(n));
    let encoder = Arc::new(Encoder::minilm().unwrap());
    let store = ralmspec_assets::Store::from_env().unwrap();
    let dir = store
        .root()
        .join("indexes")
        .join(format!("test-flat-{}", &corpus.hash()[..16]));
    let flat = FlatIndex::open_or_build(&dir, &encoder, &corpus).unwrap();
    (corpus, encoder, flat)
}

/// The tests' rules: the defaults with documents cut to 64 tokens, so that an answer takes well
/// under a second.
pub fn short_docs() -> ralmspec_engine::RalmConfig {
    ralmspec_engine::RalmConfig {
        doc_tokens: 64,
        ..ralmspec_engine::RalmConfig::default()
    }
}

/// SmolLM2 and the flat knowledge base of the first 1,000 passages.
pub fn smollm2_flat() -> (ralmspec_lm::Lm, Knowledge) {
    let store = ralmspec_assets::Store::from_env().unwrap();
    let lm = ralmspec_lm::Lm::open(store.fetch(ralmspec_assets::Asset::SmolLm2).unwrap()).unwrap();
    let (corpus, encoder, flat) = kb(1000);
    let knowledge = Knowledge::new("flat", Arc::new(flat), Some(encoder), corpus, None);
    (lm, knowledge)
}

/// An index set at `dir` of `corpus` whose flat index holds `flat`'s vectors.
pub fn index_set(dir: &Path, corpus: &Corpus, encoder: &Encoder, flat: &FlatIndex) -> IndexSet {
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

/// Another knowledge base of the same passages: the first `m` in reverse order with their
/// vectors, so that a document number names another passage than in the original, and the
/// passages from `m` on are gone.
pub fn reversed(corpus: &Corpus, flat: &FlatIndex, m: usize) -> (Corpus, FlatIndex) {
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
    (
        Corpus::new(passages).unwrap(),
        FlatIndex::new(dim, vectors, (0..m as u32).collect()).unwrap(),
    )
}

/// Loads `set` into the database at `url` as the next version of index `name`.
pub fn load(url: &str, name: &str, set: &IndexSet, hnsw: bool) -> TableInfo {
    let flat = set.flat(Verify::Sizes).unwrap();
    pg::load(
        url,
        &Load {
            name,
            set,
            flat: &flat,
            hnsw,
            keep_old_for: pg::DEFAULT_KEEP_OLD_FOR,
        },
        &mut Quiet,
    )
    .unwrap()
}

/// The `kind` retriever over index `name`, opened on its current version.
pub fn retriever(url: &str, name: &str, kind: Kind) -> PgRetriever {
    PgRetriever::connect(
        &[url.to_string()],
        name,
        kind,
        None,
        DatabaseOptions::default(),
    )
    .unwrap()
}

/// Index `name` as the engine's knowledge base, as `ralmspec ask --database` builds it: every
/// request pins the version current when it starts.
pub fn knowledge(url: &str, name: &str, kind: Kind, encoder: Arc<Encoder>) -> Knowledge {
    let retriever = Arc::new(retriever(url, name, kind));
    Knowledge::from_source(kind.name(), retriever.clone(), Some(encoder), retriever)
}
