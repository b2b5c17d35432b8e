//! Knowledge bases as index sets ([`IndexSet`]), and the parsers of the retrieval flags
//! (`--retriever`/`--kind`, `--format`, `--precision`). The built-in knowledge base's sets live in the asset store
//! (`$RALMSPEC_HOME/indexes/wiki-kb[-pad<N>]`) and each retriever kind is built into them on
//! first use, with a progress bar; a padded set takes its real vectors from the unpadded one.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::builder::TypedValueParser as _;
use indicatif::{ProgressBar, ProgressStyle};
use ralmspec_assets::Store;
use ralmspec_engine::Knowledge;
use ralmspec_retrieval::index::Verify;
use ralmspec_retrieval::set::{Build, Progress, Source, Vectors, encoding};
use ralmspec_retrieval::{Corpus, Encoder, IndexSet, Kind, Precision};

/// `--retriever flat|hnsw|bm25`, `--kind ...`: a [`Kind`] with its names listed in `--help`.
pub fn kind_parser() -> impl clap::builder::TypedValueParser<Value = Kind> {
    clap::builder::PossibleValuesParser::new(Kind::ALL.map(Kind::name))
        .map(|s| s.parse::<Kind>().expect("one of the possible values"))
}

/// `--format`: a corpus format by name.
pub fn format_parser() -> impl clap::builder::TypedValueParser<Value = ralmspec_retrieval::Format> {
    use ralmspec_retrieval::Format;
    clap::builder::PossibleValuesParser::new(Format::ALL.map(Format::name))
        .map(|s| s.parse::<Format>().expect("one of the possible values"))
}

/// `--precision f32|f16`.
pub fn precision_parser() -> impl clap::builder::TypedValueParser<Value = Precision> {
    clap::builder::PossibleValuesParser::new(["f32", "f16"]).map(|s| match s.as_str() {
        "f16" => Precision::F16,
        _ => Precision::F32,
    })
}

/// The index set in `dir`.
pub fn open_set(dir: &Path) -> Result<IndexSet> {
    IndexSet::open(dir).with_context(|| format!("opening the index set {}", dir.display()))
}

/// The retriever of `kind` in `set`, with the encoder its queries need.
pub fn knowledge(set: &IndexSet, kind: Kind, encoder: Option<&Path>) -> Result<Knowledge> {
    let context = || format!("opening the {kind} index in {}", set.dir().display());
    let retriever = set.retriever(kind).with_context(context)?;
    let encoder = match kind.is_dense() {
        true => set.encoder(encoder).with_context(context)?.map(Arc::new),
        false => None,
    };
    Ok(Knowledge::new(
        kind.name(),
        retriever,
        encoder,
        set.corpus().clone(),
        set.padding(),
    ))
}

/// The built-in knowledge base (10,033 Wikipedia lead sections) behind `kind`, padded to
/// `pad_to` passages for scale experiments when given.
/// A padded set's flat vectors are stored in `precision` (its folder says `-f16`).
pub fn open(kind: Kind, pad_to: Option<usize>, precision: Precision) -> Result<Knowledge> {
    let root = Store::from_env()?.root().join("indexes");
    let kb = || Ok(Corpus::wiki_kb()?);
    let set = lazy_set(&root, "wiki-kb", &kb, kind, pad_to, precision)?;
    knowledge(&set, kind, None)
}

/// The set of `corpus` (named `name`, padded to `pad_to`) in `root/<name>[-pad<N>]`, holding
/// `kind`: opened, or built or extended on first use.
pub fn lazy_set(
    root: &Path,
    name: &str,
    corpus: &dyn Fn() -> Result<Corpus>,
    kind: Kind,
    pad_to: Option<usize>,
    precision: Precision,
) -> Result<IndexSet> {
    let dir = match (pad_to, precision) {
        (Some(n), Precision::F16) => root.join(format!("{name}-pad{n}-f16")),
        (Some(n), _) => root.join(format!("{name}-pad{n}")),
        (None, _) => root.join(name),
    };
    let base = || lazy_set(root, name, corpus, Kind::Flat, None, Precision::F32);
    let precision = if pad_to.is_some() {
        precision
    } else {
        Precision::F32
    };
    ensure(&dir, name, corpus, kind, (pad_to, precision), &base)
}

/// The unpadded set of `corpus` (named `name`) at `dir` holding `kind`: opened, or built or
/// extended on first use.
pub fn lazy_set_at(
    dir: &Path,
    name: &str,
    corpus: &dyn Fn() -> Result<Corpus>,
    kind: Kind,
) -> Result<IndexSet> {
    let base = || unreachable!("an unpadded set needs no base");
    ensure(dir, name, corpus, kind, (None, Precision::F32), &base)
}

/// The set at `dir` holding `kind`, built from `corpus` (padded to `pad_to`, with the real
/// vectors of `base`) or extended on first use.
fn ensure(
    dir: &Path,
    name: &str,
    corpus: &dyn Fn() -> Result<Corpus>,
    kind: Kind,
    (pad_to, precision): (Option<usize>, Precision),
    base: &dyn Fn() -> Result<IndexSet>,
) -> Result<IndexSet> {
    let mut set = match dir.join("set.json").exists() {
        true => Some(IndexSet::open(dir).with_context(|| format!("opening {}", dir.display()))?),
        false => None,
    };
    if let Some(set) = set.as_ref().filter(|s| s.has(kind)) {
        return Ok(set.clone());
    }
    // What a dense build needs: MiniLM for the real passages, or the unpadded set's vectors.
    let reuses_flat = kind == Kind::Hnsw && set.as_ref().is_some_and(|s| s.has(Kind::Flat));
    let (encoder, base) = match (kind.is_dense() && !reuses_flat, pad_to) {
        (false, _) => (None, None),
        (true, None) => (
            Some(Encoder::minilm().context("loading the MiniLM encoder")?),
            None,
        ),
        (true, Some(_)) => {
            let base = base()?;
            let flat = base.flat(Verify::Sizes)?;
            let record = base
                .manifest()
                .encoder
                .clone()
                .expect("a flat set has an encoder");
            (None, Some((flat, record)))
        }
    };
    let vectors = match (&encoder, &base) {
        (Some(e), _) => Some(Vectors::Encode(e)),
        (_, Some((flat, record))) => Some(Vectors::Index(flat, record)),
        _ => None,
    };
    eprintln!(
        "Building the {kind} index of {} in {} (first use only{})…",
        name,
        dir.display(),
        match (kind, &encoder) {
            (_, Some(_)) => "; MiniLM encodes 10,000 passages in about 10 minutes on 2 cores",
            (Kind::Hnsw, _) => "; about 15 s per 10,000 vectors on 2 cores",
            _ => "",
        }
    );
    let mut bars = Bars::default();
    let set = match set.as_mut() {
        Some(set) => {
            set.add(kind, vectors, precision, &mut bars)?;
            set.clone()
        }
        None => {
            let corpus = corpus().context("loading the knowledge base")?;
            let build = Build {
                source: Source::Corpus {
                    corpus: &corpus,
                    name,
                },
                kinds: &[kind],
                pad_to,
                vectors,
                checkpoint_every: encoding::DEFAULT_CHECKPOINT_EVERY,
                precision,
            };
            IndexSet::build(dir, &build, &mut bars)?
        }
    };
    bars.finish();
    Ok(set)
}

/// Progress bars on stderr, one per stage of a build.
#[derive(Default)]
pub struct Bars {
    bar: Option<ProgressBar>,
}

impl Bars {
    /// Clears the last bar.
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Progress for Bars {
    fn stage(&mut self, what: &str, total: Option<u64>) {
        self.finish();
        let bar = match total {
            Some(n) => ProgressBar::new(n).with_style(
                ProgressStyle::with_template(
                    "{msg:>24} {bar:40} {human_pos}/{human_len} {per_sec} ETA {eta}",
                )
                .expect("a valid template"),
            ),
            None => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{msg:>24} {spinner} {human_pos} {per_sec} {elapsed}")
                    .expect("a valid template"),
            ),
        };
        bar.set_message(what.to_string());
        if bar.is_hidden() {
            // Not a terminal (a log, a pipe): one line per stage instead of a bar.
            eprintln!("{what}…");
        }
        self.bar = Some(bar);
    }

    fn advance(&mut self, done: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
        }
    }
}

impl Drop for Bars {
    fn drop(&mut self) {
        self.finish();
    }
}

/// `dir/…` as given, or under the asset store's `indexes/`.
pub fn indexes_root(dir: Option<&PathBuf>) -> Result<PathBuf> {
    Ok(match dir {
        Some(d) => d.clone(),
        None => Store::from_env()?.root().join("indexes"),
    })
}
