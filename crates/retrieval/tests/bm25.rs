//! BM25 over the real knowledge base (10,033 passages, built once per run into the target
//! folder): `score` equals `search` bit for bit on FanOutQA questions and on other documents,
//! `search` is the exact top-k of `score` over every document, batches answer like single
//! queries, ties go to the lower passage id, and index folders round-trip, record their
//! padding, and refuse damaged or mismatched files by name.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ralmspec_retrieval::bm25::{self, BuildProgress};
use ralmspec_retrieval::{
    Bm25Index, Corpus, Hit, Padding, Passage, Query, RetrievalError, Retriever,
};

const K: usize = 20;

fn kb() -> &'static (Corpus, Bm25Index) {
    static KB: OnceLock<(Corpus, Bm25Index)> = OnceLock::new();
    KB.get_or_init(|| {
        let corpus = Corpus::wiki_kb().unwrap();
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bm25-kb");
        let start = std::time::Instant::now();
        let mut reports = Vec::new();
        let index = Bm25Index::build(&corpus, None, &dir, &mut |p| reports.push(p)).unwrap();
        println!(
            "built BM25 over {} passages in {:.2} s",
            corpus.len(),
            start.elapsed().as_secs_f64()
        );
        assert!(reports.contains(&BuildProgress::Indexed {
            done: 10_000,
            total: corpus.len()
        }));
        assert_eq!(
            reports
                .iter()
                .rev()
                .find(|p| matches!(p, BuildProgress::Indexed { .. })),
            Some(&BuildProgress::Indexed {
                done: corpus.len(),
                total: corpus.len()
            })
        );
        (corpus, index)
    })
}

/// FanOutQA dev questions and sub-questions (the first `n`).
fn questions(n: usize) -> Vec<String> {
    let store = ralmspec_assets::Store::from_env().unwrap();
    let path = store.fetch(ralmspec_assets::Asset::FanOutQa).unwrap();
    let all: serde_json::Value = serde_json::from_slice(&fs::read(path).unwrap()).unwrap();
    let mut out = Vec::new();
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        if let Some(q) = v["question"].as_str() {
            out.push(q.to_owned());
        }
        for d in v["decomposition"].as_array().into_iter().flatten() {
            walk(d, out);
        }
    }
    for q in all.as_array().unwrap() {
        walk(q, &mut out);
    }
    out.truncate(n);
    out
}

fn assert_bits(hits: &[Hit], scores: &[f32]) {
    for (h, s) in hits.iter().zip(scores) {
        assert_eq!(
            h.score.to_bits(),
            s.to_bits(),
            "doc {}: {} vs {s}",
            h.doc,
            h.score
        );
    }
}

#[test]
fn score_equals_search_on_real_questions() {
    let (corpus, index) = kb();
    let texts = questions(120);
    assert_eq!(texts.len(), 120);
    // RaLM-style queries too: a question followed by passage text (about 32 words).
    let mut texts: Vec<String> = texts.clone();
    for (i, p) in corpus.iter().step_by(997).enumerate() {
        let words: Vec<&str> = texts[i]
            .split_whitespace()
            .chain(p.text.split_whitespace())
            .take(32)
            .collect();
        texts.push(words.join(" "));
    }
    let queries: Vec<Query> = texts.iter().map(Query::text).collect();
    let batch = index.search(&queries, K).unwrap();
    let all_ids = corpus.docs();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    for (q, hits) in queries.iter().zip(&batch) {
        assert_eq!(hits.len(), K, "{:?}", q.as_str());
        assert!(
            hits.windows(2).all(|w| w[0].rank_cmp(&w[1]).is_lt()),
            "{hits:?}"
        );
        let docs: Vec<u32> = hits.iter().map(|h| h.doc).collect();
        assert_bits(hits, &index.score(q, &docs).unwrap());
        // In reverse order, with repeats and random other documents mixed in.
        let mut mixed: Vec<u32> = docs.iter().rev().copied().collect();
        for _ in 0..30 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            mixed.push(all_ids[(rng % all_ids.len() as u64) as usize]);
        }
        mixed.extend_from_slice(&docs[..3]);
        let scores = index.score(q, &mixed).unwrap();
        for (d, s) in mixed.iter().zip(&scores) {
            if let Some(h) = hits.iter().find(|h| h.doc == *d) {
                assert_eq!(h.score.to_bits(), s.to_bits());
            }
        }
        // search is the exact top-k of score over every document.
        let every = index.score(q, &all_ids).unwrap();
        let mut ranked: Vec<Hit> = all_ids
            .iter()
            .zip(&every)
            .filter(|(_, s)| **s > 0.0)
            .map(|(&doc, &score)| Hit { doc, score })
            .collect();
        ranked.sort_by(Hit::rank_cmp);
        ranked.truncate(K);
        assert_eq!(&ranked, hits, "{:?}", q.as_str());
    }
    // Sanity: a question about a title finds it.
    let hits = index
        .search(&[Query::text("Which river flows through Cairo, Egypt?")], 5)
        .unwrap();
    let titles: Vec<String> = hits[0]
        .iter()
        .map(|h| corpus.get(h.doc).unwrap().title)
        .collect();
    assert!(
        titles
            .iter()
            .any(|t| t.contains("Nile") || t.contains("Cairo")),
        "{titles:?}"
    );
}

#[test]
fn batch_equals_single_and_odd_queries() {
    let (corpus, index) = kb();
    let mut texts = questions(40);
    texts.push(String::new());
    texts.push("  \"(:)\" -- ?? ".into());
    texts.push("qwzxqwzxqwzx".into());
    texts.push("title: \"Paris\" AND (France OR capital) -x +y ~2 ^3 [a TO b]".into());
    texts.push(corpus.get(42).unwrap().prompt_text());
    let queries: Vec<Query> = texts.iter().map(Query::text).collect();
    for k in [1, 7, K] {
        let batch = index.search(&queries, k).unwrap();
        for (q, hits) in queries.iter().zip(&batch) {
            assert_eq!(&index.search(std::slice::from_ref(q), k).unwrap()[0], hits);
        }
        let n = texts.len();
        // Queries without a known term rank the whole index at 0.0 by ascending id.
        let mut ascending = corpus.docs();
        ascending.sort_unstable();
        for hits in &batch[n - 5..n - 2] {
            let docs: Vec<u32> = hits.iter().map(|h| h.doc).collect();
            assert_eq!(docs, ascending[..k]);
            assert!(hits.iter().all(|h| h.score == 0.0));
        }
        assert_eq!(batch[n - 2].len(), k);
        assert_eq!(batch[n - 1][0].doc, corpus.get(42).unwrap().doc);
    }
    assert!(index.search(&queries, 0).unwrap().iter().all(Vec::is_empty));
    assert_eq!(index.score(&queries[40], &[0, 5]).unwrap(), [0.0, 0.0]);
    // A document without the terms scores 0.0 (and ranks after every match); unknown ids are
    // errors.
    let q = Query::text("Cairo");
    let s = index.score(&q, &corpus.docs()).unwrap();
    let matching = s.iter().filter(|s| **s > 0.0).count();
    assert!(matching > 0 && matching < 1000, "{matching}");
    let hits = &index.search(std::slice::from_ref(&q), 5000).unwrap()[0];
    assert_eq!(hits.len(), 5000);
    assert!(hits[..matching].iter().all(|h| h.score > 0.0));
    assert!(hits[matching..].iter().all(|h| h.score == 0.0));
    for (hit, score) in hits.iter().zip(
        index
            .score(&q, &hits.iter().map(|h| h.doc).collect::<Vec<_>>())
            .unwrap(),
    ) {
        assert_eq!(hit.score.to_bits(), score.to_bits());
    }
    let err = index.score(&q, &[3, corpus.len() as u32]).unwrap_err();
    assert!(
        matches!(err, RetrievalError::UnknownDoc { doc, len } if doc == corpus.len() as u32 && len == corpus.len()),
        "{err}"
    );
    assert_eq!(index.len(), corpus.len());
    // Word order and case do not change a score; repeating a term weighs it more.
    let a = index.score(&Query::text("nile river"), &[0, 1, 2]).unwrap();
    let b = index.score(&Query::text("River NILE"), &[0, 1, 2]).unwrap();
    assert_eq!(a, b);
}

fn passage(doc: u32, title: &str, text: &str) -> Passage {
    Passage {
        doc,
        id: format!("p{doc}"),
        title: title.into(),
        text: text.into(),
    }
}

#[test]
fn ties_go_to_the_lower_passage_id() {
    // 40 identical passages, between distinct ones.
    let mut passages = Vec::new();
    for i in 0..40u32 {
        passages.push(passage(2 * i, "Twin", "apple banana cherry"));
        passages.push(passage(
            2 * i + 1,
            &format!("Other {i}"),
            &format!("apple text number {i}"),
        ));
    }
    passages.push(passage(80, "Best", "apple banana cherry cherry"));
    let corpus = Corpus::new(passages).unwrap();
    let root = tempfile::tempdir().unwrap();
    let index = Bm25Index::build(&corpus, None, &root.path().join("ix"), &mut |_| {}).unwrap();
    let q = Query::text("banana cherry");
    let twins: Vec<u32> = (0..40u32).map(|i| 2 * i).collect();
    for k in [1, 2, 5, 17, 41, 100] {
        let hits = &index.search(std::slice::from_ref(&q), k).unwrap()[0];
        assert_eq!(hits.len(), k.min(corpus.len()));
        assert_eq!(hits[0].doc, 80);
        let matching = k.min(41);
        let docs: Vec<u32> = hits[1..matching].iter().map(|h| h.doc).collect();
        assert_eq!(docs, twins[..matching - 1], "k={k}");
        assert!(
            hits[1..matching]
                .windows(2)
                .all(|w| w[0].score == w[1].score)
        );
        // Past the matches: the other passages at 0.0, by ascending doc.
        let rest: Vec<u32> = hits[matching..].iter().map(|h| h.doc).collect();
        assert_eq!(
            rest,
            (0..(hits.len() - matching) as u32)
                .map(|i| 2 * i + 1)
                .collect::<Vec<_>>(),
            "k={k}"
        );
        assert_bits(hits, &index.score(&q, &docs_of(hits)).unwrap());
    }
}

fn docs_of(hits: &[Hit]) -> Vec<u32> {
    hits.iter().map(|h| h.doc).collect()
}

#[test]
fn round_trip_and_replace() {
    let (corpus, built) = kb();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("bm25");
    let small = corpus.head(500);
    let index = Bm25Index::build(&small, None, &dir, &mut |_| {}).unwrap();
    let m = index.manifest().clone();
    assert_eq!((m.kind.as_str(), m.count, m.real_count), ("bm25", 500, 500));
    assert_eq!(m.corpus_hash, small.hash());
    assert_eq!(m.analyzer, bm25::ANALYZER);
    assert_eq!((m.k1, m.b), (1.2, 0.75));
    assert!(m.padding.is_none());
    assert!(
        m.files.contains_key("meta.json") && m.files.len() > 3,
        "{:?}",
        m.files
    );
    let json = fs::read_to_string(dir.join(bm25::MANIFEST)).unwrap();
    assert!(json.contains("\"padding\": null"), "{json}");
    let opened = Bm25Index::open(&dir, &small.hash()).unwrap();
    assert_eq!(opened.manifest(), &m);
    let queries: Vec<Query> = questions(10).iter().map(Query::text).collect();
    assert_eq!(
        opened.search(&queries, K).unwrap(),
        index.search(&queries, K).unwrap()
    );
    // Statistics are the index's own: the same question scores differently over the full KB.
    let full = built.score(&queries[0], &[0]).unwrap()[0];
    let part = opened.score(&queries[0], &[0]).unwrap()[0];
    assert!(full == 0.0 || full != part);
    // Rebuilding replaces the folder and leaves nothing else behind.
    drop((index, opened));
    Bm25Index::build(&small, None, &dir, &mut |_| {}).unwrap();
    let names: Vec<_> = fs::read_dir(root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("bm25")]);
}

/// The largest file of the index that is not the manifest or meta.json.
fn a_segment_file(dir: &Path) -> PathBuf {
    let m = Bm25Index::open(dir, &kb().0.head(300).hash())
        .unwrap()
        .manifest()
        .clone();
    let (name, _) = m
        .files
        .iter()
        .filter(|(n, _)| !n.ends_with(".json"))
        .max_by_key(|(_, f)| f.bytes)
        .unwrap();
    dir.join(name)
}

#[test]
fn damaged_or_mismatched_index_names_the_file() {
    let corpus = kb().0.head(300);
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("bm25");
    Bm25Index::build(&corpus, None, &dir, &mut |_| {}).unwrap();
    let hash = corpus.hash();
    let check = |file: &Path, want: &str, hash: &str| {
        let err = Bm25Index::open(&dir, hash).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, RetrievalError::BadIndex { .. }), "{msg}");
        assert!(msg.contains(&file.display().to_string()), "{msg}");
        assert!(msg.contains(want), "{msg}");
    };
    let manifest = dir.join(bm25::MANIFEST);
    check(&manifest, "corpus_hash is", "0123");

    let seg = a_segment_file(&dir);
    let bytes = fs::read(&seg).unwrap();
    let mut flipped = bytes.clone();
    flipped[bytes.len() / 2] ^= 0x10;
    fs::write(&seg, &flipped).unwrap();
    check(&seg, "corrupt", &hash);
    fs::write(&seg, &bytes[..bytes.len() - 7]).unwrap();
    check(&seg, "truncated", &hash);
    fs::remove_file(&seg).unwrap();
    check(&seg, "missing", &hash);
    fs::write(&seg, &bytes).unwrap();
    Bm25Index::open(&dir, &hash).unwrap();

    let meta = dir.join("meta.json");
    let meta_bytes = fs::read(&meta).unwrap();
    fs::remove_file(&meta).unwrap();
    check(&meta, "missing", &hash);
    fs::write(&meta, &meta_bytes).unwrap();

    let text = fs::read_to_string(&manifest).unwrap();
    fs::write(
        &manifest,
        text.replace("\"kind\": \"bm25\"", "\"kind\": \"flat\""),
    )
    .unwrap();
    check(&manifest, "kind is flat, expected bm25", &hash);
    fs::write(&manifest, text.replace(bm25::ANALYZER, "whitespace")).unwrap();
    check(&manifest, "analyzer is whitespace", &hash);
    fs::write(&manifest, &text[..text.len() / 2]).unwrap();
    check(&manifest, "unreadable", &hash);
    fs::remove_file(&manifest).unwrap();
    check(&manifest, "missing", &hash);

    // A flat index folder is not a BM25 index.
    let flat = ralmspec_retrieval::FlatIndex::new(2, vec![1.0, 0.0], vec![7]).unwrap();
    let flat_dir = root.path().join("flat");
    flat.save(&flat_dir, &hash, "enc").unwrap();
    let err = Bm25Index::open(&flat_dir, &hash).unwrap_err();
    assert!(err.to_string().contains("unreadable"), "{err}");
}

#[test]
fn padded_index_records_its_padding() {
    let corpus = kb().0.head(300);
    let padding = Padding::new(&corpus, 2_000, 7).unwrap();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("padded");
    let index = Bm25Index::build(&corpus, Some(padding), &dir, &mut |_| {}).unwrap();
    assert_eq!(index.len(), 2_000);
    let m = Bm25Index::open(&dir, &corpus.hash())
        .unwrap()
        .manifest()
        .clone();
    assert_eq!((m.count, m.real_count), (2_000, 300));
    let record = m.padding.clone().unwrap();
    assert_eq!(
        (record.total, record.seed, record.count, record.first_id),
        (2_000, 7, 1_700, 300)
    );
    assert_eq!(record.description, padding.describe());
    assert_eq!(record.padding(&corpus).unwrap(), padding);
    assert!(record.padding(&kb().0.head(299)).is_err());
    assert!(
        fs::read_to_string(dir.join(bm25::MANIFEST))
            .unwrap()
            .contains("synthetic passages")
    );
    // Padding passages are searchable by their own text, and score equals search there too.
    let pad = padding.passage(&corpus, 1_234);
    let q = Query::text(pad.prompt_text());
    let hits = &index.search(std::slice::from_ref(&q), K).unwrap()[0];
    assert_eq!(hits[0].doc, 1_234);
    assert_bits(hits, &index.score(&q, &docs_of(hits)).unwrap());
    // Padding made for another corpus is refused.
    let other = Padding::new(&kb().0.head(200), 2_000, 7).unwrap();
    assert!(Bm25Index::build(&corpus, Some(other), &root.path().join("x"), &mut |_| {}).is_err());
}
