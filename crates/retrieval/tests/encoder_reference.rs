//! The candle MiniLM encoder against an independent reference: `scripts/reference_embed.py`
//! (a numpy float64 BERT forward pass over the same safetensors, tokenized by Hugging Face's
//! `tokenizers`), on 60 real knowledge-base passages spread over the whole corpus plus hard
//! cases (truncation at 256 tokens, Unicode, empty text). Tokens must match exactly and every
//! embedding must have cosine ≥ 0.9999 with the reference.
//!
//! The interpreter is `$RALMSPEC_PYTHON` (default `python3`); `scripts/test.sh` points it at a
//! venv with `scripts/requirements.txt`. Without those packages this test fails.
//!
//! A second test does the same for CLS pooling: a copy of the MiniLM folder whose
//! sentence-transformers files ask for the `[CLS]` state, normalised.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use ralmspec_assets::{Asset, Store};
use ralmspec_retrieval::{Corpus, Encoder};

const PASSAGES: usize = 60;

fn texts(corpus: &Corpus) -> Vec<String> {
    let step = corpus.len() / PASSAGES;
    let mut texts: Vec<String> = (0..PASSAGES)
        .map(|i| corpus.get((i * step) as u32).unwrap().prompt_text())
        .collect();
    // Longer than 256 tokens: three passages back to back.
    texts.push(texts[..3].join(" "));
    texts.push("Ça va? Größe, naïve café — “quotes” 東京は日本の首都です 🙂 e\u{301}".into());
    texts.push(String::new());
    texts.push("What is the capital of France?".into());
    texts
}

struct Reference {
    tokens: Vec<Vec<u32>>,
    embeddings: Vec<Vec<f64>>,
}

fn reference(model_dir: &Path, texts: &[String], pooling: &str) -> Reference {
    let python = std::env::var("RALMSPEC_PYTHON").unwrap_or_else(|_| "python3".to_string());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/reference_embed.py");
    let request = serde_json::json!({
        "model_dir": model_dir,
        "texts": texts,
        "max_tokens": Encoder::MAX_TOKENS,
        "pooling": pooling,
    });
    let mut child = Command::new(&python)
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| {
            panic!(
                "cannot run the reference encoder with `{python}` ($RALMSPEC_PYTHON): {err}. Run \
                 scripts/test.sh, which installs scripts/requirements.txt into a venv and points \
                 RALMSPEC_PYTHON at it."
            )
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "the reference encoder failed with `{python}` ($RALMSPEC_PYTHON): {}\nRun scripts/test.sh, \
         which installs scripts/requirements.txt (numpy, safetensors, tokenizers) into a venv and \
         points RALMSPEC_PYTHON at it.",
        String::from_utf8_lossy(&output.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("JSON from the reference");
    Reference {
        tokens: serde_json::from_value(v["tokens"].clone()).unwrap(),
        embeddings: serde_json::from_value(v["embeddings"].clone()).unwrap(),
    }
}

#[test]
fn minilm_matches_numpy_reference() {
    let dir = Store::from_env().unwrap().fetch(Asset::MiniLm).unwrap();
    let corpus = Corpus::wiki_kb().unwrap();
    let encoder = Encoder::open(&dir).unwrap();
    let texts = texts(&corpus);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let ours = encoder.encode(&refs).unwrap();
    let theirs = reference(&dir, &texts, "mean");
    assert_eq!(theirs.embeddings.len(), texts.len());

    let mut min_cos = f64::INFINITY;
    let mut max_abs = 0f64;
    for (i, text) in texts.iter().enumerate() {
        let ids = encoder.tokenize(text).unwrap();
        assert_eq!(
            ids, theirs.tokens[i],
            "tokens differ for text {i}: {text:?}"
        );
        assert!(ids.len() <= Encoder::MAX_TOKENS);
        let (a, b) = (&ours[i], &theirs.embeddings[i]);
        assert_eq!(a.len(), 384);
        let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * y).sum();
        let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
        let nb: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
        let cos = dot / (na * nb);
        assert!((na - 1.0).abs() < 1e-5, "text {i}: norm {na}");
        assert!(
            cos >= 0.9999,
            "text {i}: cosine {cos} with the reference: {text:?}"
        );
        min_cos = min_cos.min(cos);
        for (x, y) in a.iter().zip(b) {
            max_abs = max_abs.max((f64::from(*x) - y).abs());
        }
    }
    assert_eq!(
        theirs.tokens[PASSAGES].len(),
        Encoder::MAX_TOKENS,
        "the long text is truncated"
    );
    println!(
        "{} texts ({PASSAGES} passages): min cosine {min_cos:.9}, max |diff| {max_abs:.2e}",
        texts.len()
    );
}

#[test]
fn embeddings_do_not_depend_on_the_batch() {
    let corpus = Corpus::wiki_kb().unwrap();
    let encoder = Encoder::minilm().unwrap();
    let texts: Vec<String> = corpus.iter().take(12).map(|p| p.prompt_text()).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let batch = encoder.encode(&refs).unwrap();
    let flat = encoder.encode_flat(&refs[3..7]).unwrap();
    for (i, text) in refs.iter().enumerate() {
        let alone = encoder.encode_one(text).unwrap();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&alone), bits(&batch[i]), "text {i}");
        if (3..7).contains(&i) {
            assert_eq!(
                bits(&alone),
                bits(&flat[(i - 3) * 384..(i - 2) * 384]),
                "text {i}"
            );
        }
    }
}

#[test]
fn cls_pooling_matches_numpy_reference() {
    let src = Store::from_env().unwrap().fetch(Asset::MiniLm).unwrap();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    for file in ["config.json", "tokenizer.json", "model.safetensors"] {
        std::fs::copy(src.join(file), dir.join(file)).unwrap();
    }
    std::fs::write(
        dir.join("modules.json"),
        r#"[{"type": "sentence_transformers.models.Transformer", "path": ""},
            {"type": "sentence_transformers.models.Pooling", "path": "1_Pooling"},
            {"type": "sentence_transformers.models.Normalize", "path": "2_Normalize"}]"#,
    )
    .unwrap();
    std::fs::create_dir(dir.join("1_Pooling")).unwrap();
    std::fs::write(
        dir.join("1_Pooling/config.json"),
        r#"{"pooling_mode_cls_token": true, "pooling_mode_mean_tokens": false}"#,
    )
    .unwrap();
    let encoder = Encoder::open(dir).unwrap();
    let corpus = Corpus::wiki_kb().unwrap();
    let mut texts = texts(&corpus);
    texts.truncate(12);
    texts.push("What is the capital of France?".into());
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let ours = encoder.encode(&refs).unwrap();
    let theirs = reference(dir, &texts, "cls");
    for (i, text) in texts.iter().enumerate() {
        let (a, b) = (&ours[i], &theirs.embeddings[i]);
        let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * y).sum();
        let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
        let nb: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
        assert!(
            (na - 1.0).abs() < 1e-5 && (nb - 1.0).abs() < 1e-9,
            "text {i}: norms {na} {nb}"
        );
        let cos = dot / (na * nb);
        assert!(
            cos >= 0.9999,
            "text {i}: cosine {cos} with the reference: {text:?}"
        );
    }
}
