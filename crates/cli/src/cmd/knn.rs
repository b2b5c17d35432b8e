//! `ralmspec knn build` and `ralmspec knn generate`: kNN-LM datastores and generation with
//! them, plain or speculative.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use ralmspec_assets::Store;
use ralmspec_engine::Stride;
use ralmspec_engine::knn;
use ralmspec_engine::knn::{BuildOptions, BuildProgress, Datastore, KeySearch, KnnLm};
use ralmspec_lm::Lm;
use ralmspec_retrieval::{Corpus, HnswParams, Precision};

use crate::cmd::index::load_corpus;
use crate::flags::model::{Device, ModelFlags};

/// Real entries of the default datastore: about 5 minutes of LM time on 2 cores.
pub const DEFAULT_MAX_TOKENS: usize = 100_000;

/// Which corpus, model and size a datastore is built from. The GPU's hidden states differ from
/// the CPU's (within 1e-4), so a datastore belongs to the device that built it: GPU ones get
/// their own folder.
#[derive(clap::Args, Clone)]
pub struct SourceArgs {
    #[command(flatten)]
    pub model: ModelFlags,
    /// The datastore folder (default: one per model and size under $RALMSPEC_HOME/datastores).
    #[arg(long)]
    pub datastore: Option<PathBuf>,
    /// Real entries (tokens of corpus text) to store; 0 for the whole corpus (the knowledge base
    /// is ~1.3M tokens, about an hour on 2 cores).
    #[arg(long, default_value_t = DEFAULT_MAX_TOKENS)]
    pub max_tokens: usize,
    /// Grow the datastore to N entries with synthetic ones (scale experiments; recorded in the
    /// manifest).
    #[arg(long)]
    pub pad_to: Option<usize>,
    /// How the keys are stored: f32, or f16 (half the memory and the bytes each exact search
    /// reads; the default folder gets `-f16`; no --hnsw).
    #[arg(long, value_parser = crate::flags::knowledge::precision_parser(), default_value = "f32")]
    pub precision: Precision,
}

#[derive(clap::Args)]
pub struct BuildArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// Corpus file (any format `ralmspec index build --corpus` reads); default: the built-in
    /// knowledge base.
    #[arg(long)]
    corpus: Option<PathBuf>,
    /// Corpus format; default: from the file.
    #[arg(long, value_parser = crate::flags::knowledge::format_parser())]
    format: Option<ralmspec_retrieval::Format>,
    /// Also build an HNSW graph over the keys (for `--search hnsw`).
    #[arg(long)]
    hnsw: bool,
    /// Leave every N-th passage out (for perplexity on held-out text); 0 keeps all.
    #[arg(long, default_value_t = ralmspec_engine::knn::datastore::DEFAULT_HELD_OUT_EVERY)]
    held_out_every: u32,
}

/// The kNN-LM knobs shared by `knn generate` and `bench knn` (beside k, which the benchmark
/// takes as a list).
#[derive(clap::Args, Clone)]
pub struct KnnArgs {
    /// Weight of the kNN distribution.
    #[arg(long, visible_alias = "knn-lambda", default_value_t = 0.25)]
    pub lambda: f32,
    /// Temperature on the squared distances (kNN-LM's, not sampling's).
    #[arg(long, visible_alias = "knn-temperature", default_value_t = 1.0)]
    pub temperature: f32,
}

/// kNN-LM served beside RaLM by `ralmspec serve`: the datastore and how it is searched and
/// mixed (the same knobs as `knn generate`).
#[derive(clap::Args)]
pub struct ServeArgs {
    /// Serve kNN-LM on /v1/completions (`"retrieval": {"knn": true}`) over this datastore,
    /// built by `ralmspec knn build --datastore DIR` with the served model and device.
    #[arg(long = "knn-datastore", value_name = "DIR")]
    pub datastore: Option<PathBuf>,
    /// Neighbours per token of kNN-LM requests.
    #[arg(long = "knn-k", default_value_t = 16)]
    pub k: usize,
    /// exact (flat L2 over every key) or hnsw (needs a datastore built with --hnsw).
    #[arg(long = "knn-search", default_value = "exact", value_parser = ["exact", "hnsw"])]
    pub search: String,
    #[command(flatten)]
    pub knn: KnnArgs,
}

impl ServeArgs {
    /// The datastore to serve, opened and checked against `lm` (loaded from `model_path` on
    /// `device`); `None` without `--knn-datastore`.
    pub fn open(
        &self,
        lm: &Lm,
        model_path: &Path,
        device: Device,
    ) -> Result<Option<ralmspec_server::KnnDatastore>> {
        let Some(dir) = &self.datastore else {
            return Ok(None);
        };
        let served = ralmspec_server::KnnDatastore {
            store: std::sync::Arc::new(open_existing(dir, model_path, device)?),
            search: parse_search(&self.search)?,
            params: self.knn.params(self.k),
        };
        served.check(lm)?;
        Ok(Some(served))
    }
}

impl KnnArgs {
    pub fn params(&self, k: usize) -> knn::Params {
        knn::Params {
            k,
            lambda: self.lambda,
            temperature: self.temperature,
        }
    }
}

#[derive(clap::Args)]
pub struct GenerateArgs {
    /// The text to continue (plain text: kNN-LM is a language model, no chat template).
    prompt: String,
    #[command(flatten)]
    source: SourceArgs,
    /// Neighbours per token.
    #[arg(short, long, default_value_t = 16)]
    k: usize,
    #[command(flatten)]
    knn: KnnArgs,
    /// exact (flat L2 over every key) or hnsw (needs a datastore built with --hnsw).
    #[arg(long, default_value = "exact", value_parser = ["exact", "hnsw"])]
    search: String,
    /// plain (one search per token) or spec (speculative kNN-LM).
    #[arg(long, default_value = "spec", value_parser = ["plain", "spec"])]
    engine: String,
    /// Speculation stride: os3 or a fixed number of steps.
    #[arg(long, default_value = "os3")]
    stride: Stride,
    /// Successors cached per true neighbour.
    #[arg(long, default_value_t = ralmspec_engine::knn::DEFAULT_SUCCESSORS)]
    successors: usize,
    /// Neighbours each real search fetches to fill the speculation cache (at least k).
    #[arg(long, default_value_t = ralmspec_engine::knn::DEFAULT_PREFETCH)]
    prefetch: usize,
    /// Verify on another thread while the LM speculates one more step.
    #[arg(long = "async")]
    async_verify: bool,
    /// Stop after this many new tokens.
    #[arg(long, default_value_t = 64)]
    max_new_tokens: usize,
    /// Also run the other engine and print the speed-up and whether the tokens are identical.
    #[arg(long)]
    compare: bool,
}

pub fn build(args: BuildArgs) -> Result<()> {
    let (lm, model_path) = load_model(&args.source)?;
    let corpus = load_corpus(args.corpus.as_deref(), args.format)?;
    let dir = datastore_dir(&args.source)?;
    let options = BuildOptions {
        max_tokens: (args.source.max_tokens > 0).then_some(args.source.max_tokens),
        held_out_every: args.held_out_every,
        pad_to: args.source.pad_to,
        hnsw: args.hnsw.then(HnswParams::default),
        reuse: unpadded_dir(&args.source)?,
        precision: args.source.precision,
    };
    let m = build_with_progress(
        &lm,
        &model_id(&model_path, args.source.model.device),
        &corpus,
        &dir,
        &options,
    )?;
    println!(
        "datastore {}: {} entries ({} real, from {} passages), {} keys of width {}{}",
        dir.display(),
        m.entries,
        m.real_entries,
        m.passages,
        args.source.precision,
        m.dim,
        if m.hnsw { ", with an HNSW graph" } else { "" }
    );
    Ok(())
}

/// The datastore folder `source` names or implies.
pub fn datastore_dir(source: &SourceArgs) -> Result<PathBuf> {
    if let Some(d) = &source.datastore {
        return Ok(d.clone());
    }
    let name: String = source
        .model
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let size = match source.max_tokens {
        0 => "all".to_string(),
        n => n.to_string(),
    };
    let pad = source
        .pad_to
        .map(|n| format!("-pad{n}"))
        .unwrap_or_default();
    let device = match source.model.device {
        Device::Cpu => "",
        Device::Cuda => "-cuda",
    };
    let precision = match source.precision {
        Precision::F32 => "",
        Precision::F16 => "-f16",
    };
    Ok(Store::from_env()?
        .root()
        .join("datastores")
        .join(format!("{name}-{size}{pad}{precision}{device}")))
}

/// For a padded datastore, the default folder of its unpadded (f32) twin, whose entries the
/// build copies instead of running the LM again when it exists.
fn unpadded_dir(source: &SourceArgs) -> Result<Option<PathBuf>> {
    if source.pad_to.is_none() {
        return Ok(None);
    }
    let twin = SourceArgs {
        datastore: None,
        pad_to: None,
        precision: Precision::F32,
        ..source.clone()
    };
    datastore_dir(&twin).map(Some)
}

/// The model's identity in a datastore manifest: its GGUF file name, with `@cuda` for keys
/// computed on the GPU (which a CPU model must not search, nor the other way round).
pub fn model_id(path: &Path, device: Device) -> String {
    let file = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    match device {
        Device::Cpu => file,
        Device::Cuda => format!("{file}@cuda"),
    }
}

/// Loads `source`'s model on its device; returns it with the GGUF path.
pub fn load_model(source: &SourceArgs) -> Result<(Lm, PathBuf)> {
    let lm = source.model.load()?;
    Ok((lm, source.model.path()?))
}

/// Builds a datastore with progress bars (tokens/s while the LM runs).
pub fn build_with_progress(
    lm: &Lm,
    model_id: &str,
    corpus: &Corpus,
    dir: &Path,
    options: &BuildOptions,
) -> Result<ralmspec_engine::knn::DatastoreManifest> {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{msg} {bar:40} {pos}/{len} tokens {per_sec} {eta}")
            .expect("a valid template"),
    );
    bar.set_message("datastore");
    let mut writing = false;
    let manifest = Datastore::build(lm, model_id, corpus, dir, options, &mut |p| match p {
        BuildProgress::Encoding { done, total } => {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        }
        BuildProgress::Writing { done, total } => {
            if !writing {
                writing = true;
                bar.set_message("writing keys");
                bar.set_style(
                    ProgressStyle::with_template("{msg} {bar:40} {pos}/{len} keys {per_sec} {eta}")
                        .expect("a valid template"),
                );
                bar.reset();
            }
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        }
        BuildProgress::Graph { entries } => {
            bar.set_message(format!("HNSW graph over {entries} keys"))
        }
    })
    .with_context(|| format!("building the datastore in {}", dir.display()))?;
    bar.finish_and_clear();
    Ok(manifest)
}

/// Opens the datastore `source` names, building the default one on first use (with an HNSW
/// graph when `hnsw`).
pub fn open_or_build(
    lm: &Lm,
    model_path: &Path,
    source: &SourceArgs,
    hnsw: bool,
) -> Result<Datastore> {
    let dir = datastore_dir(source)?;
    let model = model_id(model_path, source.model.device);
    if source.datastore.is_some() {
        return open_existing(&dir, model_path, source.model.device);
    }
    if !dir.join("datastore.json").exists() {
        eprintln!(
            "Building the kNN-LM datastore ({} tokens of the knowledge base) in {} (first use only)…",
            match source.max_tokens {
                0 => "all".to_string(),
                n => n.to_string(),
            },
            dir.display()
        );
        let corpus = Corpus::wiki_kb().context("loading the knowledge base")?;
        let options = BuildOptions {
            max_tokens: (source.max_tokens > 0).then_some(source.max_tokens),
            pad_to: source.pad_to,
            reuse: unpadded_dir(source)?,
            hnsw: hnsw.then(HnswParams::default),
            precision: source.precision,
            ..BuildOptions::default()
        };
        build_with_progress(lm, &model, &corpus, &dir, &options)?;
    }
    Datastore::open(&dir, &model)
        .with_context(|| format!("opening the datastore in {}", dir.display()))
}

/// Opens the datastore in `dir`, which must exist and belong to the model at `model_path`
/// on `device`.
pub fn open_existing(dir: &Path, model_path: &Path, device: Device) -> Result<Datastore> {
    if !dir.join("datastore.json").exists() {
        bail!(
            "no datastore in {} (build one with `ralmspec knn build --datastore {}`)",
            dir.display(),
            dir.display()
        );
    }
    Datastore::open(dir, &model_id(model_path, device))
        .with_context(|| format!("opening the datastore in {}", dir.display()))
}

pub fn parse_search(s: &str) -> Result<KeySearch> {
    match s {
        "exact" => Ok(KeySearch::Exact),
        "hnsw" => Ok(KeySearch::Approximate),
        other => bail!("unknown search {other:?}: use exact or hnsw"),
    }
}

pub fn generate(args: GenerateArgs) -> Result<()> {
    let search = parse_search(&args.search)?;
    let (lm, model_path) = load_model(&args.source)?;
    let store = open_or_build(
        &lm,
        &model_path,
        &args.source,
        search == KeySearch::Approximate,
    )?;
    let knn = KnnLm::new(&lm, &store, search, args.knn.params(args.k))?;
    let spec = knn::Engine::Spec(knn::Spec {
        stride: args.stride,
        successors: args.successors,
        prefetch: args.prefetch,
        async_verify: args.async_verify,
    });
    let (engine, other) = match args.engine.as_str() {
        "plain" => (knn::Engine::Plain, spec),
        _ => (spec, knn::Engine::Plain),
    };
    if args.compare {
        // Warm-up: page the datastore in, so neither timed run pays for it.
        knn.generate(&args.prompt, 1, knn::Engine::Plain)?;
    }
    let g = knn.generate(&args.prompt, args.max_new_tokens, engine)?;
    println!("{}{}", args.prompt, g.text);
    eprintln!("{}", summary(&g, engine, &store));
    if args.compare {
        let o = knn.generate(&args.prompt, args.max_new_tokens, other)?;
        eprintln!("{}", summary(&o, other, &store));
        let (plain, spec) = if engine == knn::Engine::Plain {
            (&g, &o)
        } else {
            (&o, &g)
        };
        eprintln!(
            "speed-up {:.2}× (plain {} / speculative {}); tokens identical: {}",
            plain.stats.wall.as_secs_f64() / spec.stats.wall.as_secs_f64(),
            secs(plain.stats.wall),
            secs(spec.stats.wall),
            if plain.tokens == spec.tokens {
                "yes"
            } else {
                "NO"
            }
        );
        if plain.tokens != spec.tokens {
            bail!("speculative kNN-LM differs from plain kNN-LM: this is a bug, please report it");
        }
    }
    Ok(())
}

fn summary(g: &knn::Generation, engine: knn::Engine, store: &Datastore) -> String {
    let s = &g.stats;
    let name = match engine {
        knn::Engine::Plain => "plain".to_string(),
        knn::Engine::Spec(spec) => format!("speculative ({})", spec.label()),
    };
    let mut line = format!(
        "{name}: {} tokens in {} ({:.1} ms/token; LM {}, search {}), {} searches of {} states over {} entries",
        g.tokens.len(),
        secs(s.wall),
        s.wall.as_secs_f64() * 1e3 / g.tokens.len().max(1) as f64,
        secs(s.lm),
        secs(s.search),
        s.search_calls,
        s.searched,
        store.len()
    );
    if let Some(a) = s.accuracy() {
        line.push_str(&format!(
            ", {:.0}% of {} speculated steps accepted, mean stride {:.1}, {} rounds verified asynchronously",
            a * 100.0,
            s.speculated,
            s.mean_stride().unwrap_or(0.0),
            s.overlapped
        ));
    }
    line
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}
