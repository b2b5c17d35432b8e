//! Index sets as a user builds them, on real passages and the real MiniLM: a BEIR corpus with
//! precomputed `.npy` vectors (f32 and f16) answers like one the set encodes itself, bad vector
//! files are refused with the old set kept, a set built by one encoder refuses another's
//! queries, and a kind can be added to an existing set.

use std::path::{Path, PathBuf};

use ralmspec_retrieval::set::{Build, Quiet, Source, Vectors, encoding};
use ralmspec_retrieval::{
    Corpus, Encoder, EncoderOptions, Format, IndexSet, Kind, NpyVectors, Query, RetrievalError,
};

const N: usize = 60;

/// The first `N` knowledge-base passages as a BEIR `corpus.jsonl` with string ids.
fn beir(dir: &Path) -> (PathBuf, Corpus) {
    let kb = Corpus::wiki_kb().unwrap().head(N);
    let mut text = String::new();
    for p in kb.iter() {
        let line =
            serde_json::json!({"_id": format!("kb-{}", p.doc), "title": p.title, "text": p.text});
        text.push_str(&line.to_string());
        text.push('\n');
    }
    let path = dir.join("corpus.jsonl");
    std::fs::write(&path, text).unwrap();
    (path, kb)
}

/// A `.npy` file of `rows`, `dims` wide, in `<f4` or `<f2`.
fn write_npy(path: &Path, rows: &[f32], dims: usize, f16: bool) {
    let n = rows.len() / dims;
    let descr = if f16 { "<f2" } else { "<f4" };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ({n}, {dims}), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    for &x in rows {
        if f16 {
            bytes.extend(half::f16::from_f32(x).to_le_bytes());
        } else {
            bytes.extend(x.to_le_bytes());
        }
    }
    std::fs::write(path, bytes).unwrap();
}

fn build(
    dir: &Path,
    corpus: &Path,
    kinds: &[Kind],
    vectors: Option<Vectors<'_>>,
) -> ralmspec_retrieval::Result<IndexSet> {
    let build = Build {
        source: Source::File {
            path: corpus,
            format: Format::detect(corpus).unwrap(),
        },
        kinds,
        pad_to: None,
        vectors,
        checkpoint_every: encoding::DEFAULT_CHECKPOINT_EVERY,
        precision: ralmspec_retrieval::Precision::F32,
    };
    IndexSet::build(dir, &build, &mut Quiet)
}

fn top_ids(set: &IndexSet, kind: Kind, encoder: &Encoder, question: &str) -> Vec<String> {
    let retriever = set.retriever(kind).unwrap();
    let hits = retriever
        .search(&[Query::encode(encoder, question).unwrap()], 5)
        .unwrap();
    hits[0]
        .iter()
        .map(|h| set.corpus().get(h.doc).unwrap().id)
        .collect()
}

#[test]
fn npy_vectors_answer_like_encoded_ones() {
    let root = tempfile::tempdir().unwrap();
    let (corpus, _) = beir(root.path());
    let encoder = Encoder::minilm().unwrap();
    let encoded = build(
        &root.path().join("encoded"),
        &corpus,
        &[Kind::Flat],
        Some(Vectors::Encode(&encoder)),
    )
    .unwrap();
    assert_eq!(encoded.manifest().format, Format::Beir);
    let flat = encoded
        .flat(ralmspec_retrieval::index::Verify::Full)
        .unwrap();
    let rows = flat.vectors().to_vec();

    // f32 vectors: the same index, bit for bit.
    let npy32 = root.path().join("v32.npy");
    write_npy(&npy32, &rows, 384, false);
    let v32 = NpyVectors::open(&npy32).unwrap();
    let set = build(
        &root.path().join("npy32"),
        &corpus,
        &[Kind::Flat, Kind::Hnsw],
        Some(Vectors::Npy(&v32, &encoder)),
    )
    .unwrap();
    assert_eq!(
        set.flat(ralmspec_retrieval::index::Verify::Full)
            .unwrap()
            .vectors(),
        &rows[..]
    );
    let question = "Which ancient city was the capital of the Achaemenid Empire?";
    let want = top_ids(&encoded, Kind::Flat, &encoder, question);
    assert!(want[0].starts_with("kb-"), "{want:?}");
    assert_eq!(top_ids(&set, Kind::Flat, &encoder, question), want);
    assert_eq!(top_ids(&set, Kind::Hnsw, &encoder, question)[0], want[0]);

    // f16 vectors: the same first hit on real questions.
    let npy16 = root.path().join("v16.npy");
    write_npy(&npy16, &rows, 384, true);
    let v16 = NpyVectors::open(&npy16).unwrap();
    let set16 = build(
        &root.path().join("npy16"),
        &corpus,
        &[Kind::Flat],
        Some(Vectors::Npy(&v16, &encoder)),
    )
    .unwrap();
    for q in [
        "What is the capital of France?",
        "Who painted the Mona Lisa?",
        question,
    ] {
        assert_eq!(
            top_ids(&set16, Kind::Flat, &encoder, q)[0],
            top_ids(&encoded, Kind::Flat, &encoder, q)[0],
            "{q}"
        );
    }

    // Bad vector files: a clear error, and the set in place stays as it was.
    let short = root.path().join("short.npy");
    write_npy(&short, &rows[..(N - 1) * 384], 384, false);
    let err = build(
        &root.path().join("npy32"),
        &corpus,
        &[Kind::Flat],
        Some(Vectors::Npy(&NpyVectors::open(&short).unwrap(), &encoder)),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("59 rows, the corpus 60 passages"),
        "{err}"
    );
    let narrow = root.path().join("narrow.npy");
    write_npy(&narrow, &rows[..N * 128], 128, false);
    let err = build(
        &root.path().join("npy32"),
        &corpus,
        &[Kind::Flat],
        Some(Vectors::Npy(&NpyVectors::open(&narrow).unwrap(), &encoder)),
    )
    .unwrap_err();
    assert!(err.to_string().contains("dimension 128"), "{err}");
    let mut nan = rows.clone();
    nan[17 * 384 + 5] = f32::NAN;
    let bad = root.path().join("nan.npy");
    write_npy(&bad, &nan, 384, false);
    let err = build(
        &root.path().join("npy32"),
        &corpus,
        &[Kind::Flat],
        Some(Vectors::Npy(&NpyVectors::open(&bad).unwrap(), &encoder)),
    )
    .unwrap_err();
    assert!(err.to_string().contains("row 17"), "{err}");
    let kept = IndexSet::open(&root.path().join("npy32")).unwrap();
    assert_eq!(kept.kinds(), [Kind::Flat, Kind::Hnsw]);
    assert_eq!(top_ids(&kept, Kind::Flat, &encoder, question), want);
}

#[test]
fn another_encoder_is_refused_and_kinds_can_be_added() {
    let root = tempfile::tempdir().unwrap();
    let (corpus, _) = beir(root.path());
    let mut set = build(&root.path().join("set"), &corpus, &[Kind::Bm25], None).unwrap();
    assert!(set.encoder(None).unwrap().is_none());
    let err = set.retriever(Kind::Flat).err().unwrap();
    assert!(err.to_string().contains("has no flat index"), "{err}");

    // A dense kind added later, with prefixes: the set records that encoder.
    let minilm_dir = ralmspec_assets::Store::from_env()
        .unwrap()
        .fetch(ralmspec_assets::Asset::MiniLm)
        .unwrap();
    let options = EncoderOptions {
        query_prefix: Some("query: ".into()),
        passage_prefix: Some("passage: ".into()),
        ..EncoderOptions::default()
    };
    let prefixed = Encoder::open_with(&minilm_dir, &options).unwrap();
    assert_ne!(prefixed.name(), ralmspec_retrieval::ENCODER_NAME);
    set.add(
        Kind::Flat,
        Some(Vectors::Encode(&prefixed)),
        ralmspec_retrieval::Precision::F32,
        &mut Quiet,
    )
    .unwrap();
    let set = IndexSet::open(&root.path().join("set")).unwrap();
    assert_eq!(set.kinds(), [Kind::Bm25, Kind::Flat]);
    assert_eq!(
        set.manifest().encoder.as_ref().unwrap().name,
        prefixed.name()
    );

    // MiniLM without the prefixes is another encoder: refused for queries.
    let err = set.encoder(Some(&minilm_dir)).err().unwrap();
    assert!(
        matches!(err, RetrievalError::EncoderMismatch { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("--encoder"), "{err}");
}

/// A real corpus's flat index is streamed from its source chunk by chunk: a `.npy` file longer
/// than one read chunk (16,384 rows) and encodings read back from checkpoints of any size give
/// exactly the source's vectors, in order.
#[test]
fn flat_indexes_stream_their_vectors_in_chunks() {
    let root = tempfile::tempdir().unwrap();
    let encoder = Encoder::minilm().unwrap();
    const ROWS: usize = 20_000;
    let mut text = String::new();
    for i in 0..ROWS {
        text.push_str(
            &serde_json::json!({"id": format!("p{i}"), "contents": format!("passage {i}")})
                .to_string(),
        );
        text.push('\n');
    }
    let corpus = root.path().join("many.jsonl");
    std::fs::write(&corpus, text).unwrap();
    let mut state = 7u64;
    let mut rows = Vec::with_capacity(ROWS * 384);
    for _ in 0..ROWS {
        let row: Vec<f32> = (0..384)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect();
        let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        rows.extend(row.iter().map(|x| x / norm));
    }
    let npy = root.path().join("many.npy");
    write_npy(&npy, &rows, 384, false);
    let vectors = NpyVectors::open(&npy).unwrap();
    let set = build(
        &root.path().join("many"),
        &corpus,
        &[Kind::Flat],
        Some(Vectors::Npy(&vectors, &encoder)),
    )
    .unwrap();
    let flat = set.flat(ralmspec_retrieval::index::Verify::Full).unwrap();
    assert_eq!(flat.vectors(), &rows[..]);
    assert_eq!(flat.ids(), (0..ROWS as u32).collect::<Vec<_>>());

    let (kb, _) = beir(root.path());
    let encoded = |name: &str, every: usize| {
        let build = Build {
            source: Source::File {
                path: &kb,
                format: Format::Beir,
            },
            kinds: &[Kind::Flat],
            pad_to: None,
            vectors: Some(Vectors::Encode(&encoder)),
            checkpoint_every: every,
            precision: ralmspec_retrieval::Precision::F32,
        };
        let set = IndexSet::build(&root.path().join(name), &build, &mut Quiet).unwrap();
        set.flat(ralmspec_retrieval::index::Verify::Full)
            .unwrap()
            .vectors()
            .to_vec()
    };
    // 60 passages in checkpoints of 8: seven of 8 and a last of 4, each encoded as one call
    // (an encoder call's bits depend on its batch, so that is what the index must hold).
    let passages = Corpus::wiki_kb().unwrap().head(N);
    let texts: Vec<String> = passages.iter().map(|p| p.prompt_text()).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let want: Vec<f32> = refs
        .chunks(8)
        .flat_map(|chunk| encoder.encode_passages_flat(chunk).unwrap())
        .collect();
    assert_eq!(want.len(), N * 384);
    assert!(encoded("eights", 8) == want);
}
