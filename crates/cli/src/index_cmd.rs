//! `ralmspec index build` and `ralmspec search`: index sets on disk.
//!
//! An index set is a folder holding `source.json` (where the corpus comes from, its hash,
//! its padding) and one sub-folder per retriever kind (`flat/`, `hnsw/`, `bm25/`), each with
//! its own validated manifest. `ask --index DIR` and `serve --index DIR` serve such a folder.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use ralmspec_engine::Knowledge;
use ralmspec_retrieval::dense_padding::DEFAULT_NOISE;
use ralmspec_retrieval::hnsw::{HnswIndex, HnswParams};
use ralmspec_retrieval::index::{Expect, Verify};
use ralmspec_retrieval::padding::DEFAULT_SEED;
use ralmspec_retrieval::{Bm25Index, Corpus, ENCODER_NAME, Encoder, FlatIndex, Padding, Retriever};
use serde::{Deserialize, Serialize};

use crate::knowledge_arg::{RetrieverKind, bm25_index, encode_with_progress};

const SOURCE: &str = "source.json";

/// Where an index set's corpus comes from.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Source {
    /// `wiki-kb` (the built-in knowledge base) or the corpus file's absolute path.
    corpus: String,
    /// `wiki-kb`, `jsonl` or `tsv`.
    format: String,
    /// [`Corpus::hash`] of the real passages.
    corpus_hash: String,
    /// Real passages.
    passages: usize,
    /// Passages after padding, and the padding seed, when padded.
    pad_to: Option<usize>,
    seed: Option<u64>,
}

#[derive(clap::Args)]
pub struct BuildArgs {
    /// The index set folder to write (each kind goes to DIR/<kind>, replaced atomically).
    #[arg(long)]
    out: PathBuf,
    /// Corpus file (JSONL `{"id","title","text"}` or DPR TSV `id\ttext\ttitle`); default: the
    /// built-in knowledge base (10,033 Wikipedia lead sections).
    #[arg(long)]
    corpus: Option<PathBuf>,
    /// Corpus format; default: from the file extension (.jsonl, .tsv).
    #[arg(long, value_parser = ["jsonl", "tsv"])]
    format: Option<String>,
    /// Retrievers to build (comma-separated).
    #[arg(long, value_enum, default_value = "bm25", value_delimiter = ',')]
    kind: Vec<RetrieverKind>,
    /// Grow the index to N passages with synthetic ones made from the real passages' sentences
    /// (for scale experiments; recorded in every manifest and report).
    #[arg(long)]
    pad_to: Option<usize>,
}

#[derive(clap::Args)]
pub struct SearchArgs {
    /// The query.
    query: String,
    /// An index set folder made by `ralmspec index build`.
    #[arg(long)]
    index: PathBuf,
    /// Which retriever of the set (default: the only one, or the first of flat, hnsw, bm25).
    #[arg(long, value_enum)]
    kind: Option<RetrieverKind>,
    /// Number of results.
    #[arg(short, default_value_t = 5)]
    k: usize,
}

pub fn build(args: BuildArgs) -> Result<()> {
    if args.kind.is_empty() {
        bail!("--kind needs at least one of flat, hnsw, bm25");
    }
    let (corpus, source) = load_source(args.corpus.as_deref(), args.format.as_deref())?;
    let padding = args
        .pad_to
        .map(|n| Padding::new(&corpus, n, DEFAULT_SEED))
        .transpose()?;
    let source = Source {
        pad_to: padding.map(|p| p.total()),
        seed: padding.map(|p| p.seed()),
        ..source
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    write_source(&args.out, &source)?;
    let kinds = |k: RetrieverKind| args.kind.contains(&k);
    if kinds(RetrieverKind::Bm25) {
        let index = bm25_index(&args.out.join("bm25"), &corpus, padding)?;
        eprintln!(
            "bm25: {} passages in {}",
            index.len(),
            args.out.join("bm25").display()
        );
    }
    if kinds(RetrieverKind::Flat) || kinds(RetrieverKind::Hnsw) {
        let encoder = Encoder::minilm().context("loading the MiniLM encoder")?;
        let hash = corpus.hash();
        let mut flat = encode_with_progress(&encoder, &corpus)?;
        if let Some(padding) = &padding {
            eprintln!("padding the vectors to {}…", padding.total());
            flat = flat.pad(padding, DEFAULT_NOISE)?;
        }
        if kinds(RetrieverKind::Flat) {
            flat.save(&args.out.join("flat"), &hash, ENCODER_NAME)?;
            eprintln!(
                "flat: {} vectors in {}",
                flat.len(),
                args.out.join("flat").display()
            );
        }
        if kinds(RetrieverKind::Hnsw) {
            eprintln!("building the HNSW graph over {} vectors…", flat.len());
            let hnsw = HnswIndex::build(flat, HnswParams::default())?;
            hnsw.save(&args.out.join("hnsw"), &hash, ENCODER_NAME)?;
            eprintln!(
                "hnsw: {} vectors in {}",
                hnsw.len(),
                args.out.join("hnsw").display()
            );
        }
    }
    Ok(())
}

pub fn search(args: SearchArgs) -> Result<()> {
    let kind = match args.kind {
        Some(kind) => kind,
        None => [
            RetrieverKind::Flat,
            RetrieverKind::Hnsw,
            RetrieverKind::Bm25,
        ]
        .into_iter()
        .find(|k| args.index.join(k.name()).join("manifest.json").exists())
        .with_context(|| {
            format!(
                "{} holds no index; build one with `ralmspec index build --out {}`",
                args.index.display(),
                args.index.display()
            )
        })?,
    };
    let knowledge = open_set(&args.index, kind)?;
    let query = knowledge.query(args.query.clone())?;
    let hits = knowledge.search(std::slice::from_ref(&query), args.k)?;
    println!(
        "{} over {} passages{}:",
        kind.name(),
        knowledge.len(),
        knowledge
            .padding()
            .map_or(String::new(), |p| format!(" ({})", p.describe()))
    );
    for (rank, hit) in hits[0].iter().enumerate() {
        let passage = knowledge.passage(hit.doc)?;
        let snippet: String = passage.text.chars().take(90).collect();
        println!(
            "{:>3}. {:>10.5}  [{}] {} — {}…",
            rank + 1,
            hit.score,
            hit.doc,
            passage.title,
            snippet
        );
    }
    Ok(())
}

/// The `kind` retriever of the index set in `dir`, which must have been built.
pub fn open_set(dir: &Path, kind: RetrieverKind) -> Result<Knowledge> {
    let source = read_source(dir)?;
    let corpus = match source.format.as_str() {
        "wiki-kb" => Corpus::wiki_kb()?,
        "jsonl" => Corpus::from_jsonl(Path::new(&source.corpus))?,
        "tsv" => Corpus::from_dpr_tsv(Path::new(&source.corpus))?,
        other => bail!(
            "{}: unknown corpus format {other:?}",
            dir.join(SOURCE).display()
        ),
    };
    let hash = corpus.hash();
    if hash != source.corpus_hash {
        bail!(
            "the corpus {} changed since the index set {} was built; rebuild it",
            source.corpus,
            dir.display()
        );
    }
    let padding = match (source.pad_to, source.seed) {
        (Some(n), Some(seed)) => Some(Padding::new(&corpus, n, seed)?),
        _ => None,
    };
    let sub = dir.join(kind.name());
    if !sub.join("manifest.json").exists() {
        bail!(
            "{} has no {} index; build it with `ralmspec index build --out {} --kind {}`",
            dir.display(),
            kind.name(),
            dir.display(),
            kind.name()
        );
    }
    let corpus = Arc::new(corpus);
    let expect = Expect {
        corpus_hash: &hash,
        encoder: ENCODER_NAME,
    };
    let dense = || {
        Encoder::minilm()
            .map(Arc::new)
            .context("loading the MiniLM encoder")
    };
    let context = || format!("opening the {} index in {}", kind.name(), sub.display());
    Ok(match kind {
        RetrieverKind::Bm25 => {
            let index = Bm25Index::open(&sub, &hash).with_context(context)?;
            Knowledge::new("bm25", Arc::new(index), None, corpus, padding)
        }
        RetrieverKind::Flat => {
            let (index, _) = FlatIndex::open(&sub, &expect, Verify::Sizes).with_context(context)?;
            Knowledge::new("flat", Arc::new(index), Some(dense()?), corpus, padding)
        }
        RetrieverKind::Hnsw => {
            let (index, _) = HnswIndex::open(&sub, &expect, Verify::Sizes).with_context(context)?;
            Knowledge::new("hnsw", Arc::new(index), Some(dense()?), corpus, padding)
        }
    })
}

/// The corpus a build reads, and its source record.
pub(crate) fn load_source(path: Option<&Path>, format: Option<&str>) -> Result<(Corpus, Source)> {
    let Some(path) = path else {
        let corpus = Corpus::wiki_kb().context("loading the knowledge base")?;
        let source = source("wiki-kb", "wiki-kb", &corpus);
        return Ok((corpus, source));
    };
    let format = match format {
        Some(f) => f,
        None => match path.extension().and_then(|e| e.to_str()) {
            Some("jsonl") => "jsonl",
            Some("tsv") => "tsv",
            _ => bail!(
                "cannot tell the format of {} from its extension; pass --format jsonl|tsv",
                path.display()
            ),
        },
    };
    let corpus = match format {
        "jsonl" => Corpus::from_jsonl(path)?,
        _ => Corpus::from_dpr_tsv(path)?,
    };
    if corpus.is_empty() {
        bail!("{} holds no passages", path.display());
    }
    let absolute = std::fs::canonicalize(path).with_context(|| path.display().to_string())?;
    let source = source(&absolute.to_string_lossy(), format, &corpus);
    Ok((corpus, source))
}

fn source(corpus_name: &str, format: &str, corpus: &Corpus) -> Source {
    Source {
        corpus: corpus_name.to_string(),
        format: format.to_string(),
        corpus_hash: corpus.hash(),
        passages: corpus.len(),
        pad_to: None,
        seed: None,
    }
}

fn write_source(dir: &Path, source: &Source) -> Result<()> {
    let path = dir.join(SOURCE);
    let tmp = dir.join(format!(".{SOURCE}.tmp-{}", std::process::id()));
    std::fs::write(&tmp, serde_json::to_vec_pretty(source)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))
}

fn read_source(dir: &Path) -> Result<Source> {
    let path = dir.join(SOURCE);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "{} is not an index set (no {SOURCE}); build one with `ralmspec index build --out {}`",
            dir.display(),
            dir.display()
        )
    })?;
    serde_json::from_str(&text)
        .with_context(|| format!("{}: not a valid index set source", path.display()))
}
