//! `ralmspec index build` and `ralmspec search`: index sets on disk ([`IndexSet`]). The
//! library owns the set; this maps flags to a [`Build`] and draws progress bars.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use ralmspec_retrieval::set::{Build, Source, Vectors, encoding};
use ralmspec_retrieval::{
    Corpus, Encoder, EncoderOptions, Format, IndexSet, Kind, NpyVectors, Precision,
};

use crate::flags::database::DatabaseFlags;
use crate::flags::knowledge::{Bars, format_parser, kind_parser, knowledge, precision_parser};
use crate::flags::model::Device;

#[derive(clap::Args)]
pub struct BuildArgs {
    /// The index set folder to write. The set is built beside it and swapped in whole when
    /// complete: a failed or killed build leaves the old set working. Optional with only
    /// database kinds: their vectors are then kept in the asset store's indexes folder.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Corpus file: BEIR `corpus.jsonl` ({"_id","title","text"}), Pyserini JSONL
    /// ({"id","contents"}), JSONL {"id","title","text"}, or DPR TSV (id, text, title; CSV
    /// quoting). Streamed, never held in memory. Default: the built-in knowledge base (10,033
    /// Wikipedia lead sections).
    #[arg(long)]
    corpus: Option<PathBuf>,
    /// Corpus format; default: from the extension (.tsv, .json) and, for .jsonl, the first
    /// line's keys.
    #[arg(long, value_parser = format_parser())]
    format: Option<Format>,
    /// Retrievers to build (comma-separated). pgvector and pgvector-hnsw load the set (its
    /// passages and flat vectors, padding included) into PostgreSQL (--database, --table):
    /// binary COPY into a new table, swapped in as the index's next version in one
    /// transaction; pgvector-hnsw also builds pgvector's HNSW index.
    #[arg(long, value_parser = kind_parser(), default_value = "bm25", value_delimiter = ',')]
    kind: Vec<Kind>,
    /// Grow the index to N passages with synthetic ones made from the real passages' sentences
    /// (for scale experiments; recorded in every manifest and report).
    #[arg(long)]
    pad_to: Option<usize>,
    /// Precomputed passage vectors for the dense kinds: a `.npy` file (f32 or f16, C order,
    /// rows × dims, row i = passage i of the corpus), made by `--encoder`. Without it the
    /// passages are encoded.
    #[arg(long)]
    vectors: Option<PathBuf>,
    /// The encoder of the passage vectors and of every query: `minilm` (all-MiniLM-L6-v2, the
    /// default) or a sentence-transformers folder of a BERT-family model (config.json,
    /// model.safetensors, tokenizer.json, pooling config). Recorded in the set; queries must
    /// use the same one.
    #[arg(long, default_value = "minilm")]
    encoder: String,
    /// Passages encoded between checkpoints: a killed build resumes from its last checkpoint
    /// (kept beside the set until the set is in place) with the same vectors, bit for bit.
    #[arg(long, default_value_t = encoding::DEFAULT_CHECKPOINT_EVERY)]
    checkpoint_every: usize,
    /// How the flat index stores its vectors: f32, or f16 (half the memory and half the bytes
    /// a search reads; recall@10 against f32 ≥ 0.99 on real questions). HNSW keeps f32.
    #[arg(long, value_parser = precision_parser(), default_value = "f32")]
    precision: Precision,
    /// Where the passages are encoded: cpu, or cuda (GPU 0; a build with `--features cuda`).
    /// Queries are still encoded on the CPU.
    #[arg(long, value_enum, default_value_t = Device::Cpu)]
    device: Device,
    /// Database kinds: seconds a replaced version stays readable, so that requests pinned to
    /// it finish (the version just replaced is always kept).
    #[arg(long, default_value_t = ralmspec_retrieval::pg::DEFAULT_KEEP_OLD_FOR.as_secs_f64())]
    keep_old_for: f64,
    #[command(flatten)]
    db: DatabaseFlags,
}

#[derive(clap::Args)]
pub struct SearchArgs {
    /// The query.
    query: String,
    /// An index set folder made by `ralmspec index build` (or --kind pgvector|pgvector-hnsw
    /// with --database).
    #[arg(long, required_unless_present = "database")]
    index: Option<PathBuf>,
    /// Which retriever (default: the first the set has of flat, hnsw, bm25; pgvector with
    /// --database).
    #[arg(long, value_parser = kind_parser())]
    kind: Option<Kind>,
    #[command(flatten)]
    db: DatabaseFlags,
    /// The encoder folder of a dense set's queries (default: the one the set records).
    #[arg(long)]
    encoder: Option<PathBuf>,
    /// Number of results.
    #[arg(short, default_value_t = 5)]
    k: usize,
}

pub fn build(args: BuildArgs) -> Result<()> {
    if args.kind.is_empty() {
        bail!("--kind needs at least one of flat, hnsw, bm25, pgvector, pgvector-hnsw");
    }
    let database: Vec<Kind> = args
        .kind
        .iter()
        .copied()
        .filter(|k| k.is_database())
        .collect();
    let Some(&db_kind) = database.first() else {
        let Some(out) = &args.out else {
            bail!("--out DIR is needed: the index set folder to write");
        };
        build_set(&args, out, &args.kind)?;
        return Ok(());
    };
    // A database index is loaded from a set holding the flat vectors.
    let urls = args.db.urls(db_kind)?;
    ralmspec_retrieval::pg::check_name(&args.db.table)?;
    let mut kinds: Vec<Kind> = args
        .kind
        .iter()
        .copied()
        .filter(|k| !k.is_database())
        .collect();
    if !kinds.contains(&Kind::Flat) {
        kinds.push(Kind::Flat);
    }
    let set = match (&args.out, &args.corpus) {
        (Some(out), _) => build_set(&args, out, &kinds)?,
        (None, Some(_)) => {
            let out = crate::flags::knowledge::indexes_root(None)?.join(&args.db.table);
            eprintln!("the set's vectors go to {}", out.display());
            build_set(&args, &out, &kinds)?
        }
        (None, None) => crate::flags::knowledge::lazy_set(
            &crate::flags::knowledge::indexes_root(None)?,
            "wiki-kb",
            &|| Ok(Corpus::wiki_kb()?),
            Kind::Flat,
            args.pad_to,
            args.precision,
        )?,
    };
    let hnsw = database.contains(&Kind::PgvectorHnsw);
    if !(args.keep_old_for.is_finite() && args.keep_old_for >= 0.0) {
        bail!("--keep-old-for must be a number of seconds ≥ 0");
    }
    let keep = std::time::Duration::from_secs_f64(args.keep_old_for);
    crate::flags::database::load(urls, &args.db.table, &set, hnsw, keep)
}

/// Builds the set of `args` with `kinds` into `out`.
fn build_set(args: &BuildArgs, out: &Path, kinds: &[Kind]) -> Result<IndexSet> {
    let kb;
    let source = match &args.corpus {
        Some(path) => Source::File {
            path,
            format: match args.format {
                Some(f) => f,
                None => Format::detect(path)?,
            },
        },
        None => {
            kb = Corpus::wiki_kb().context("loading the knowledge base")?;
            Source::Corpus {
                corpus: &kb,
                name: "wiki-kb",
            }
        }
    };
    let dense = kinds.iter().any(|k| k.is_dense());
    if args.vectors.is_some() && !dense {
        bail!("--vectors is for the dense kinds (--kind flat or hnsw)");
    }
    if args.device == Device::Cuda && (args.vectors.is_some() || !dense) {
        bail!("--device cuda is for encoding passages (a dense --kind without --vectors)");
    }
    let encoder = match dense {
        true => Some(load_encoder(&args.encoder, args.device)?),
        false => None,
    };
    let npy = match &args.vectors {
        Some(path) => Some(NpyVectors::open(path)?),
        None => None,
    };
    let vectors = match (&encoder, &npy) {
        (Some(e), Some(npy)) => Some(Vectors::Npy(npy, e)),
        (Some(e), None) => Some(Vectors::Encode(e)),
        _ => None,
    };
    let build = Build {
        source,
        kinds,
        pad_to: args.pad_to,
        vectors,
        checkpoint_every: args.checkpoint_every,
        precision: args.precision,
    };
    let mut bars = Bars::default();
    let set = IndexSet::build(out, &build, &mut bars)
        .with_context(|| format!("building the index set {}", out.display()))?;
    bars.finish();
    let m = set.manifest();
    eprintln!(
        "{}: {} passages from {} ({}){}; {}",
        out.display(),
        m.passages,
        m.source,
        m.format,
        set.padding()
            .map_or(String::new(), |p| format!(", padded to {}", p.total())),
        set.kinds()
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(set)
}

pub fn search(args: SearchArgs) -> Result<()> {
    let knowledge = match (&args.index, args.kind) {
        (None, kind) => {
            let kind = kind.unwrap_or(Kind::Pgvector);
            if !kind.is_database() {
                bail!("--kind {kind} searches an index set: pass --index DIR");
            }
            args.db.knowledge(kind, None, args.encoder.as_deref())?
        }
        (Some(dir), kind) => {
            let set = crate::flags::knowledge::open_set(dir)?;
            let kind = match kind {
                Some(kind) => kind,
                None => Kind::LOCAL
                    .into_iter()
                    .find(|&k| set.has(k))
                    .with_context(|| format!("{} holds no index", dir.display()))?,
            };
            knowledge(&set, kind, args.encoder.as_deref())?
        }
    };
    let kind = knowledge.name().to_string();
    let query = knowledge.query(args.query.clone())?;
    let hits = knowledge.search(std::slice::from_ref(&query), args.k)?;
    println!(
        "{} over {} passages{}:",
        kind,
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
            passage.id,
            passage.title,
            snippet
        );
    }
    Ok(())
}

/// `--encoder minilm|DIR` on `device` (GPU 0 for cuda).
fn load_encoder(name: &str, device: Device) -> Result<Encoder> {
    if device == Device::Cuda && !cfg!(feature = "cuda") {
        bail!("--device cuda: {}", ralmspec_lm::LmError::CudaNotBuilt);
    }
    let options = EncoderOptions {
        gpu: (device == Device::Cuda).then_some(0),
        ..EncoderOptions::default()
    };
    if name == "minilm" {
        return Encoder::minilm_with(&options).context("loading the MiniLM encoder");
    }
    let dir = Path::new(name);
    if !dir.is_dir() {
        bail!("--encoder {name}: not `minilm` nor a sentence-transformers folder");
    }
    Encoder::open_with(dir, &options).with_context(|| format!("loading the encoder in {name}"))
}

/// The corpus a command reads into memory: `path` in `format` (detected when `None`), or the
/// built-in knowledge base.
pub fn load_corpus(path: Option<&Path>, format: Option<Format>) -> Result<Corpus> {
    let Some(path) = path else {
        return Corpus::wiki_kb().context("loading the knowledge base");
    };
    let format = match format {
        Some(f) => f,
        None => Format::detect(path)?,
    };
    let corpus = Corpus::load(path, format)?;
    if corpus.is_empty() {
        bail!("{} holds no passages", path.display());
    }
    Ok(corpus)
}
