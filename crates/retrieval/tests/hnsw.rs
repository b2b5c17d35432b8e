//! HNSW and padded dense indexes over real MiniLM vectors of real knowledge-base passages,
//! queried with real FanOutQA questions.
//!
//! Uses the cached flat index of the whole knowledge base when it exists
//! (`examples/flat_kb.rs` or `examples/dense_bench.rs` build it, ~9 min); otherwise encodes the
//! first 1,000 passages (~1 min). Checks: recall@10 ≥ 0.95 against flat at the default
//! parameters, `score` equals `search` (and flat's scores) bit for bit, a batch answers like
//! its queries alone, the build is deterministic whatever the threads, a padded index survives
//! a save/load round trip (mapped or not), and damaged files are errors naming the file.

#[path = "../examples/common/mod.rs"]
mod common;

use std::fs;
use std::path::Path;

use ralmspec_retrieval::index::{Expect, Verify};
use ralmspec_retrieval::padding::DEFAULT_SEED;
use ralmspec_retrieval::{
    Corpus, ENCODER_NAME, Encoder, FlatIndex, HnswIndex, HnswParams, Padding, Query,
    RetrievalError, Retriever,
};

const HEAD: usize = 1000;
const QUESTIONS: usize = 200;

struct Setup {
    corpus: Corpus,
    flat: FlatIndex,
    queries: Vec<Query>,
}

fn setup() -> Setup {
    let encoder = Encoder::minilm().unwrap();
    let full = Corpus::wiki_kb().unwrap();
    let dir = common::kb_flat_dir().unwrap();
    let hash = full.hash();
    let expect = Expect {
        corpus_hash: &hash,
        encoder: ENCODER_NAME,
    };
    let (corpus, flat) = match FlatIndex::open(&dir, &expect, Verify::Full) {
        Ok((flat, _)) => (full, flat),
        Err(e) => {
            println!("no cached full-KB index ({e}); encoding the first {HEAD} passages");
            let head = full.head(HEAD);
            let flat = FlatIndex::build(&encoder, &head).unwrap();
            (head, flat)
        }
    };
    let texts = common::fanoutqa_questions(QUESTIONS).unwrap();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let queries = Query::encode_all(&encoder, &refs).unwrap();
    println!("{} passages, {} questions", corpus.len(), queries.len());
    Setup {
        corpus,
        flat,
        queries,
    }
}

/// Recall, exactness of scores, batch invariance of `hnsw` against `flat`.
fn check(hnsw: &HnswIndex, flat: &FlatIndex, queries: &[Query], min_recall: f64) -> f64 {
    let k = 10;
    let exact = flat.search(queries, k).unwrap();
    let approx = hnsw.search(queries, k).unwrap();
    let recall = common::recall(&exact, &approx);
    println!(
        "recall@{k} {recall:.4} over {} queries ({} vectors, {:?})",
        queries.len(),
        flat.len(),
        hnsw.params()
    );
    assert!(recall >= min_recall, "recall@{k} {recall} < {min_recall}");
    for (i, (q, hits)) in queries.iter().zip(&approx).enumerate() {
        assert_eq!(hits.len(), k);
        assert!(hits.windows(2).all(|w| w[0].rank_cmp(&w[1]).is_lt()));
        let docs: Vec<u32> = hits.iter().map(|h| h.doc).collect();
        let scores = hnsw.score(q, &docs).unwrap();
        let flat_scores = flat.score(q, &docs).unwrap();
        for ((h, s), f) in hits.iter().zip(&scores).zip(&flat_scores) {
            assert_eq!(h.score.to_bits(), s.to_bits(), "doc {}", h.doc);
            assert_eq!(h.score.to_bits(), f.to_bits(), "doc {}", h.doc);
        }
        if i % 10 == 0 {
            assert_eq!(&hnsw.search(std::slice::from_ref(q), k).unwrap()[0], hits);
        }
    }
    // A batch in another order answers each query the same.
    let reversed: Vec<Query> = queries.iter().rev().take(33).cloned().collect();
    let back = hnsw.search(&reversed, k).unwrap();
    for (j, hits) in back.iter().enumerate() {
        assert_eq!(hits, &approx[queries.len() - 1 - j]);
    }
    recall
}

#[test]
fn hnsw_over_real_passages() {
    let s = setup();
    let start = std::time::Instant::now();
    let hnsw = HnswIndex::build(s.flat.clone(), HnswParams::default()).unwrap();
    println!("built in {:.1} s", start.elapsed().as_secs_f64());
    check(&hnsw, &s.flat, &s.queries, 0.95);

    // Deterministic: one thread builds the same graph as the pool.
    let root = tempfile::tempdir().unwrap();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let again = pool.install(|| HnswIndex::build(s.flat.clone(), HnswParams::default()).unwrap());
    let hash = s.corpus.hash();
    let a = hnsw
        .save(&root.path().join("a"), &hash, ENCODER_NAME)
        .unwrap();
    let b = again
        .save(&root.path().join("b"), &hash, ENCODER_NAME)
        .unwrap();
    assert_eq!(a, b);
    assert!(a.hnsw.is_some() && a.padding.is_none());

    // ef_search is adjustable: a wider beam never finds less here, and ef=k still works.
    let mut wide = hnsw.clone();
    wide.set_ef_search(256);
    let r_wide = check(&wide, &s.flat, &s.queries, 0.97);
    let narrow = hnsw.search_with_ef(&s.queries, 10, 10).unwrap();
    let r_narrow = common::recall(&s.flat.search(&s.queries, 10).unwrap(), &narrow);
    println!("recall@10 at ef 10: {r_narrow:.4}, at ef 256: {r_wide:.4}");
    assert!(r_narrow <= r_wide);
}

#[test]
fn padded_index_round_trip_and_damage() {
    let s = setup();
    let total = s.corpus.len() * 3;
    let padding = Padding::new(&s.corpus, total, DEFAULT_SEED).unwrap();
    let padded = s.flat.pad(&padding, 0.1).unwrap();
    assert_eq!(padded.len(), total);
    let record = padded.padding().unwrap().clone();
    assert!(record.description.contains("padded from"), "{record:?}");
    let params = HnswParams::default();
    let hnsw = HnswIndex::build(padded.clone(), params).unwrap();
    // Real questions over the padded index: still close to exact.
    check(&hnsw, &padded, &s.queries, 0.9);

    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("padded-hnsw");
    let hash = s.corpus.hash();
    let expect = Expect {
        corpus_hash: &hash,
        encoder: ENCODER_NAME,
    };
    let m = hnsw.save(&dir, &hash, ENCODER_NAME).unwrap();
    assert_eq!(m.padding.as_ref(), Some(&record));
    assert_eq!(m.count, total);
    let json = fs::read_to_string(dir.join("manifest.json")).unwrap();
    assert!(
        json.contains("\"padding\"") && json.contains("padded from"),
        "{json}"
    );
    for verify in [Verify::Full, Verify::Sizes] {
        let (back, m2) = HnswIndex::open(&dir, &expect, verify).unwrap();
        assert_eq!(m2, m);
        assert!(back.flat().is_mapped());
        assert_eq!(back.flat().padding(), Some(&record));
        assert_eq!(
            back.search(&s.queries, 10).unwrap(),
            hnsw.search(&s.queries, 10).unwrap()
        );
    }
    // The folder is a flat index too.
    let (flat_back, _) = FlatIndex::load(&dir, &expect).unwrap();
    assert_eq!(flat_back.vectors(), padded.vectors());
    // open_or_build finds it, and refuses other parameters.
    assert!(HnswIndex::open_or_build(&dir, &expect, &padded, params).is_ok());
    let other = HnswParams { m: 8, ..params };
    let err = HnswIndex::open_or_build(&dir, &expect, &padded, other).unwrap_err();
    assert!(err.to_string().contains("manifest.json"), "{err}");

    damage(&dir, &expect);
}

/// Each kind of damage is a `BadIndex` error naming the damaged file.
fn damage(dir: &Path, expect: &Expect<'_>) {
    let check = |file: &str, want: &str, verify: Verify| {
        let err = HnswIndex::open(dir, expect, verify).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, RetrievalError::BadIndex { .. }), "{msg}");
        assert!(msg.contains(&dir.join(file).display().to_string()), "{msg}");
        assert!(msg.contains(want), "{msg}");
    };
    let flip = |file: &str| {
        let path = dir.join(file);
        let mut bytes = fs::read(&path).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 0x10;
        fs::write(&path, bytes).unwrap();
    };
    let keep = |file: &str| fs::read(dir.join(file)).unwrap();

    for file in ["vectors.f32", "hnsw_layer0.u32"] {
        let good = keep(file);
        flip(file);
        check(file, "corrupt", Verify::Full);
        // A sizes-only open trusts the mapped file, and a damaged graph still answers.
        let (ix, _) = HnswIndex::open(dir, expect, Verify::Sizes).unwrap();
        let q = Query::embedded("q", ix.flat().vectors()[..384].to_vec());
        assert_eq!(ix.search(&[q], 5).unwrap()[0].len(), 5);
        fs::write(dir.join(file), &good[..good.len() - 8]).unwrap();
        check(file, "truncated", Verify::Sizes);
        fs::remove_file(dir.join(file)).unwrap();
        check(file, "missing", Verify::Sizes);
        fs::write(dir.join(file), good).unwrap();
    }
    for file in ["ids.u32", "hnsw_levels.u8", "hnsw_upper.u32"] {
        let good = keep(file);
        flip(file);
        check(file, "corrupt", Verify::Sizes);
        fs::remove_file(dir.join(file)).unwrap();
        check(file, "missing", Verify::Sizes);
        fs::write(dir.join(file), good).unwrap();
    }
    let good = keep("manifest.json");
    let text = String::from_utf8(good.clone()).unwrap();
    fs::write(
        dir.join("manifest.json"),
        text.replace("\"format_version\": 2", "\"format_version\": 9"),
    )
    .unwrap();
    check("manifest.json", "format_version is 9", Verify::Sizes);
    fs::write(dir.join("manifest.json"), &good[..good.len() / 2]).unwrap();
    check("manifest.json", "unreadable", Verify::Sizes);
    fs::write(dir.join("manifest.json"), &good).unwrap();
    assert!(HnswIndex::open(dir, expect, Verify::Full).is_ok());
}
