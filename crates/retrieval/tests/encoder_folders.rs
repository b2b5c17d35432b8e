//! Sentence-transformers folders as the encoder, on the real all-MiniLM-L6-v2 weights: copies
//! of the MiniLM folder (weights linked, not copied) with the sentence-transformers files that
//! other models ship (CLS pooling, a Normalize module, prompts, a token limit), checked
//! against the plain MiniLM encoder and its hidden states; the encoder's name for each; and
//! the clear errors for what is not supported.

use std::path::{Path, PathBuf};

use ralmspec_assets::{Asset, Store};
use ralmspec_retrieval::encoder::Pooling;
use ralmspec_retrieval::{ENCODER_NAME, Encoder, EncoderOptions, NpyVectors, RetrievalError};

const TEXTS: [&str; 4] = [
    "What is the capital of France?",
    "Paris is the capital and largest city of France.",
    "",
    "Ça va? 東京は日本の首都です",
];

const MODULES_NORMALIZE: &str = r#"[
  {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
  {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
  {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}
]"#;

const MODULES_RAW: &str = r#"[
  {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
  {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}
]"#;

const CLS_POOLING: &str = r#"{"word_embedding_dimension": 384, "pooling_mode_cls_token": true,
  "pooling_mode_mean_tokens": false, "pooling_mode_max_tokens": false,
  "pooling_mode_mean_sqrt_len_tokens": false, "include_prompt": true}"#;

fn minilm_dir() -> PathBuf {
    Store::from_env().unwrap().fetch(Asset::MiniLm).unwrap()
}

/// A folder `name` in a fresh temp dir holding MiniLM's three files (the weights as a link)
/// and `extra` files (relative path, text).
fn folder(name: &str, extra: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
    let src = minilm_dir();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join(name);
    std::fs::create_dir(&dir).unwrap();
    for file in ["config.json", "tokenizer.json"] {
        std::fs::copy(src.join(file), dir.join(file)).unwrap();
    }
    link(
        &src.join("model.safetensors"),
        &dir.join("model.safetensors"),
    );
    for (rel, text) in extra {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    (root, dir)
}

#[cfg(unix)]
fn link(from: &Path, to: &Path) {
    std::os::unix::fs::symlink(from, to).unwrap();
}

#[cfg(not(unix))]
fn link(from: &Path, to: &Path) {
    std::fs::copy(from, to).unwrap();
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn norm(v: &[f32]) -> f64 {
    v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| f64::from(x) * f64::from(y))
        .sum();
    dot / (norm(a) * norm(b))
}

#[test]
fn cls_pooling_with_normalize_is_the_unit_cls_state() {
    let minilm = Encoder::minilm().unwrap();
    let (_root, dir) = folder(
        "minilm-cls",
        &[
            ("modules.json", MODULES_NORMALIZE),
            ("1_Pooling/config.json", CLS_POOLING),
        ],
    );
    let cls = Encoder::open(&dir).unwrap();
    assert_eq!(cls.pipeline().pooling, Pooling::Cls);
    assert!(cls.normalises());
    assert_eq!((cls.dim(), cls.max_tokens()), (384, 256));
    let batch = cls.encode(&TEXTS).unwrap();
    for (i, text) in TEXTS.iter().enumerate() {
        let hidden = minilm.hidden_states(text).unwrap();
        let state = &hidden[..384];
        let n = norm(state);
        let want: Vec<f32> = state.iter().map(|&x| (f64::from(x) / n) as f32).collect();
        let got = &batch[i];
        assert!(
            (norm(got) - 1.0).abs() < 1e-5,
            "text {i}: norm {}",
            norm(got)
        );
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-6, "text {i}: {g} vs {w}");
        }
        assert_eq!(
            bits(got),
            bits(&cls.encode_one(text).unwrap()),
            "batch invariance"
        );
        let mean = minilm.encode_one(text).unwrap();
        let c = cosine(got, &mean);
        assert!(
            c < 0.999,
            "text {i}: CLS and mean pooling agree (cosine {c})"
        );
    }
}

#[test]
fn cls_pooling_without_normalize_is_the_raw_cls_state() {
    let minilm = Encoder::minilm().unwrap();
    let (_root, dir) = folder(
        "minilm-cls-raw",
        &[
            ("modules.json", MODULES_RAW),
            ("1_Pooling/config.json", CLS_POOLING),
        ],
    );
    let raw = Encoder::open(&dir).unwrap();
    assert!(!raw.normalises());
    for text in TEXTS {
        let hidden = minilm.hidden_states(text).unwrap();
        assert_eq!(bits(&raw.encode_one(text).unwrap()), bits(&hidden[..384]));
    }
    assert!(raw.name().contains("/cls-pool/raw/256/"), "{}", raw.name());
}

#[test]
fn prompts_go_before_queries_and_passages_only() {
    let minilm = Encoder::minilm().unwrap();
    let (_root, dir) = folder(
        "minilm-e5",
        &[(
            "config_sentence_transformers.json",
            r#"{"prompts": {"query": "query: ", "passage": "passage: "}, "default_prompt_name": null}"#,
        )],
    );
    let e5 = Encoder::open(&dir).unwrap();
    assert_eq!(e5.pipeline().query_prefix, "query: ");
    assert_eq!(e5.pipeline().passage_prefix, "passage: ");
    let queries = e5.encode_queries(&TEXTS).unwrap();
    let passages = e5.encode_passages(&TEXTS).unwrap();
    let flat = e5.encode_passages_flat(&TEXTS).unwrap();
    // Passages are batched: the same call with the prompt written in gives the same bits.
    let prompted: Vec<String> = TEXTS.iter().map(|t| format!("passage: {t}")).collect();
    let prompted: Vec<&str> = prompted.iter().map(String::as_str).collect();
    let batched = minilm.encode_passages(&prompted).unwrap();
    for (i, text) in TEXTS.iter().enumerate() {
        let q = minilm.encode_one(&format!("query: {text}")).unwrap();
        let p = minilm.encode_one(&format!("passage: {text}")).unwrap();
        assert_eq!(bits(&queries[i]), bits(&q), "text {i}");
        assert_eq!(bits(&e5.encode_query(text).unwrap()), bits(&q), "text {i}");
        assert_eq!(bits(&passages[i]), bits(&batched[i]), "text {i}");
        assert_eq!(
            bits(&e5.encode_passage(text).unwrap()),
            bits(&p),
            "text {i}"
        );
        assert_eq!(
            bits(&flat[i * 384..(i + 1) * 384]),
            bits(&batched[i]),
            "text {i}"
        );
        let dot: f64 = passages[i]
            .iter()
            .zip(&p)
            .map(|(x, y)| f64::from(*x) * f64::from(*y))
            .sum();
        assert!(
            dot >= 0.9999,
            "text {i}: cosine {dot} with the passage alone"
        );
        // The prompt-free entry points stay prompt-free.
        let plain = minilm.encode_one(text).unwrap();
        assert_eq!(
            bits(&e5.encode_one(text).unwrap()),
            bits(&plain),
            "text {i}"
        );
        assert_ne!(bits(&q), bits(&plain), "text {i}");
    }

    // Options override the folder: no query prompt, another passage prompt.
    let options = EncoderOptions {
        query_prefix: Some(String::new()),
        passage_prefix: Some("doc: ".into()),
        ..EncoderOptions::default()
    };
    let over = Encoder::open_with(&dir, &options).unwrap();
    assert_eq!(
        bits(&over.encode_query("x").unwrap()),
        bits(&minilm.encode_one("x").unwrap())
    );
    assert_eq!(
        bits(&over.encode_passage("x").unwrap()),
        bits(&minilm.encode_one("doc: x").unwrap())
    );
    assert_ne!(over.name(), e5.name());

    // MiniLM itself has no prompts: queries and passages are the texts as given.
    assert_eq!(
        bits(&minilm.encode_query(TEXTS[0]).unwrap()),
        bits(&minilm.encode_one(TEXTS[0]).unwrap())
    );
}

#[test]
fn max_seq_length_truncates() {
    let (_root, dir) = folder(
        "minilm-short",
        &[("sentence_bert_config.json", r#"{"max_seq_length": 8}"#)],
    );
    let short = Encoder::open(&dir).unwrap();
    assert_eq!(short.max_tokens(), 8);
    let ids = short.tokenize(TEXTS[1]).unwrap();
    assert_eq!(ids.len(), 8);
    assert!(
        short.name().contains("/mean-pool/l2/8/"),
        "{}",
        short.name()
    );
}

#[test]
fn names_tell_encoders_apart_and_keep_minilm_s() {
    let minilm = Encoder::minilm().unwrap();
    assert_eq!(minilm.name(), ENCODER_NAME);
    assert_eq!(
        minilm.weights_sha256(),
        "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
    );
    // The same weights and settings in another folder are the same encoder.
    let (_a, plain) = folder("my-copy", &[]);
    assert_eq!(Encoder::open(&plain).unwrap().name(), ENCODER_NAME);
    // So is a folder whose sentence-transformers files spell out MiniLM's defaults.
    let mean = r#"{"pooling_mode_mean_tokens": true, "pooling_mode_cls_token": false}"#;
    let (_b, explicit) = folder(
        "explicit",
        &[
            ("modules.json", MODULES_NORMALIZE),
            ("1_Pooling/config.json", mean),
            ("sentence_bert_config.json", r#"{"max_seq_length": 256}"#),
        ],
    );
    assert_eq!(Encoder::open(&explicit).unwrap().name(), ENCODER_NAME);

    let (_c, cls) = folder(
        "minilm-cls",
        &[
            ("modules.json", MODULES_NORMALIZE),
            ("1_Pooling/config.json", CLS_POOLING),
        ],
    );
    let cls = Encoder::open(&cls).unwrap();
    assert_eq!(cls.name(), "minilm-cls/cls-pool/l2/256/53aa51172d142c89");
    let (_d, e5) = folder(
        "minilm-e5",
        &[(
            "config_sentence_transformers.json",
            r#"{"prompts": {"query": "query: ", "passage": "passage: "}}"#,
        )],
    );
    let e5 = Encoder::open(&e5).unwrap();
    assert_eq!(
        e5.name(),
        r#"minilm-e5/mean-pool/l2/256/query="query: "/passage="passage: "/53aa51172d142c89"#
    );
}

#[test]
fn unsupported_folders_are_clear_errors() {
    let config = std::fs::read_to_string(minilm_dir().join("config.json")).unwrap();
    let roberta = config.replace(r#""model_type": "bert""#, r#""model_type": "xlm-roberta""#);
    assert_ne!(
        roberta, config,
        "MiniLM's config.json names model_type bert"
    );
    let (_a, dir) = folder("roberta", &[]);
    std::fs::write(dir.join("config.json"), roberta).unwrap();
    let err = Encoder::open(&dir).err().unwrap();
    assert!(
        matches!(&err, RetrievalError::UnsupportedModel { model_type, .. } if model_type == "xlm-roberta"),
        "{err:?}"
    );
    assert!(err.to_string().contains("config.json"), "{err}");

    let (_b, dir) = folder(
        "max-pool",
        &[
            ("modules.json", MODULES_NORMALIZE),
            (
                "1_Pooling/config.json",
                r#"{"pooling_mode_max_tokens": true, "pooling_mode_mean_tokens": false}"#,
            ),
        ],
    );
    let err = Encoder::open(&dir).err().unwrap();
    assert!(
        matches!(err, RetrievalError::EncoderConfig { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("1_Pooling/config.json") && msg.contains(r#"pooling mode "max_tokens""#),
        "{msg}"
    );

    let (_c, dir) = folder(
        "too-long",
        &[("sentence_bert_config.json", r#"{"max_seq_length": 1024}"#)],
    );
    let msg = Encoder::open(&dir).err().unwrap().to_string();
    assert!(msg.contains("max_position_embeddings 512"), "{msg}");
}

#[test]
fn vectors_file_checked_against_the_encoder() {
    let minilm = Encoder::minilm().unwrap();
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("vectors.npy");
    // Two rows of dimension 768, float32.
    let mut header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 768), }".to_string();
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    bytes.extend(std::iter::repeat_n(0u8, 2 * 768 * 4));
    std::fs::write(&path, bytes).unwrap();
    let vectors = NpyVectors::open(&path).unwrap();
    let msg = vectors.check_for(2, &minilm).unwrap_err().to_string();
    assert!(
        msg.ends_with(&format!(
            "vectors.npy has dimension 768, the encoder {ENCODER_NAME} gives 384"
        )),
        "{msg}"
    );
    let msg = vectors.check_for(3, &minilm).unwrap_err().to_string();
    assert!(
        msg.ends_with("vectors.npy has 2 rows, the corpus 3 passages"),
        "{msg}"
    );
}
