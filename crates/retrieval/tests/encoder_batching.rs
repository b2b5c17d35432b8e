//! The batched passage path ([`Encoder::encode_passages`]: sorted by length, padded, masked)
//! against its plain oracle, every passage encoded alone and unpadded
//! ([`Encoder::encode_passage`]), on 300 real knowledge-base passages spread over the corpus
//! plus hard cases (empty, longer than the token limit, a duplicate). Also: the result is a
//! pure function of the call's texts (same bits with 1, 2 and 3 threads, each in a child
//! process), a call of one text
//! gives that text's unpadded bits, and queries are untouched by batching.

use ralmspec_retrieval::{Corpus, Encoder};

const PASSAGES: usize = 300;

fn texts(corpus: &Corpus) -> Vec<String> {
    let step = corpus.len() / PASSAGES;
    let mut texts: Vec<String> = (0..PASSAGES)
        .map(|i| corpus.get((i * step) as u32).unwrap().prompt_text())
        .collect();
    texts.push(String::new());
    // Longer than 256 tokens: truncated, so it shares a batch with full-length passages.
    texts.push(texts[..3].join(" "));
    texts.push(texts[7].clone());
    texts.push("Ça va? 東京は日本の首都です 🙂".into());
    texts
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb).max(1e-30)
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn batched_passages_match_each_passage_alone() {
    let corpus = Corpus::wiki_kb().unwrap();
    let encoder = Encoder::minilm().unwrap();
    let texts = texts(&corpus);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let batched = encoder.encode_passages(&refs).unwrap();
    let flat = encoder.encode_passages_flat(&refs).unwrap();
    assert_eq!(batched.len(), refs.len());
    assert_eq!(flat.len(), refs.len() * encoder.dim());
    let mut min_cos = f64::INFINITY;
    for (i, text) in refs.iter().enumerate() {
        let alone = encoder.encode_passage(text).unwrap();
        let cos = cosine(&batched[i], &alone);
        assert!(cos >= 0.9999, "passage {i}: cosine {cos}: {text:?}");
        min_cos = min_cos.min(cos);
        assert_eq!(
            bits(&flat[i * encoder.dim()..(i + 1) * encoder.dim()]),
            bits(&batched[i]),
            "passage {i}"
        );
    }
    // The duplicate shares the call, hence the same bits.
    assert_eq!(bits(&batched[PASSAGES + 2]), bits(&batched[7]));
    println!("{} passages: min cosine {min_cos:.9}", refs.len());
}

/// Set in the child processes of [`the_same_call_gives_the_same_bits_whatever_the_threads`].
const CHILD: &str = "RALMSPEC_BATCHING_CHILD";

/// In a child process only: prints a hash of the batched embeddings of every fourth text.
#[test]
fn batched_bits_child() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let corpus = Corpus::wiki_kb().unwrap();
    let encoder = Encoder::minilm().unwrap();
    let texts: Vec<String> = texts(&corpus).into_iter().step_by(4).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let hash = bits(&encoder.encode_passages_flat(&refs).unwrap())
        .into_iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    println!("BITS={hash:016x} THREADS={}", rayon::current_num_threads());
}

/// `RAYON_NUM_THREADS` sets both rayon's pool and candle's matmul threads, once per process,
/// so each thread count runs in a child process of this test binary.
#[test]
fn the_same_call_gives_the_same_bits_whatever_the_threads() {
    let exe = std::env::current_exe().unwrap();
    let hashes: Vec<String> = ["1", "2", "3"]
        .into_iter()
        .map(|threads| {
            let out = std::process::Command::new(&exe)
                .args([
                    "--exact",
                    "batched_bits_child",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD, "1")
                .env("RAYON_NUM_THREADS", threads)
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "{threads} threads: {stdout}");
            // libtest prints `test batched_bits_child ... ` on the same line.
            let line = stdout
                .lines()
                .find_map(|l| l.find("BITS=").map(|at| &l[at..]))
                .unwrap_or_else(|| panic!("{threads} threads: no hash in {stdout}"));
            assert!(line.ends_with(&format!("THREADS={threads}")), "{line}");
            line.split_whitespace().next().unwrap().to_owned()
        })
        .collect();
    assert_eq!(hashes[0], hashes[1], "1 and 2 threads");
    assert_eq!(hashes[0], hashes[2], "1 and 3 threads");
}

#[test]
fn one_passage_and_queries_are_unpadded() {
    let corpus = Corpus::wiki_kb().unwrap();
    let encoder = Encoder::minilm().unwrap();
    let texts: Vec<String> = corpus.iter().take(8).map(|p| p.prompt_text()).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let queries = encoder.encode_queries(&refs).unwrap();
    for (i, text) in refs.iter().enumerate() {
        let alone = encoder.encode_one(text).unwrap();
        let one = encoder.encode_passages(&[text]).unwrap();
        assert_eq!(bits(&one[0]), bits(&alone), "passage {i}");
        assert_eq!(bits(&queries[i]), bits(&alone), "query {i}");
    }
    assert!(encoder.encode_passages(&[]).unwrap().is_empty());
}
