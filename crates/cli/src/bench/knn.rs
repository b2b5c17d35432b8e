//! `ralmspec bench knn`: speculative kNN-LM against plain kNN-LM on this machine. For each
//! datastore (the real one, and padded ones where exact search dominates as in the paper),
//! each search kind and each k, every prompt is continued by plain kNN-LM and by each
//! speculative setting, one after the other in the same run; every speculative continuation
//! is checked token for token against the plain one (a mismatch fails the benchmark).
//! Reports latency per token, speed-up, b/a (one search over one LM step), acceptance, strides
//! and searches per token, plus perplexity on held-out text, as JSON, Markdown and an SVG plot.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use ralmspec_engine::Stride;
use ralmspec_engine::knn;
use ralmspec_engine::knn::datastore::is_held_out;
use ralmspec_engine::knn::{Datastore, KeySearch, KnnLm};
use ralmspec_retrieval::{Corpus, Precision, Query};
use serde::Serialize;
use serde_json::json;

use crate::bench::report::ReportArgs;
use crate::cmd::knn::{self as knn_cmd, KnnArgs, SourceArgs, parse_search};
use crate::flags::model::ModelFlags;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelFlags,
    /// Real entries of the datastore (tokens of knowledge-base text); 0 for all.
    #[arg(long, default_value_t = knn_cmd::DEFAULT_MAX_TOKENS)]
    max_tokens: usize,
    /// Datastore sizes (comma-separated): 0 is the real datastore, N pads it to N entries.
    #[arg(long, default_value = "0", value_delimiter = ',')]
    sizes: Vec<usize>,
    /// How the keys are stored: f32, or f16 (half the bytes per exact search; for the
    /// paper-scale sizes that fit in memory only so).
    #[arg(long, value_parser = crate::flags::knowledge::precision_parser(), default_value = "f32")]
    precision: Precision,
    /// Neighbour counts (comma-separated).
    #[arg(long, default_value = "1,16,256,1024", value_delimiter = ',')]
    k: Vec<usize>,
    /// Searches (comma-separated): exact, hnsw (hnsw only where the datastore has a graph).
    #[arg(long, default_value = "exact,hnsw", value_delimiter = ',')]
    search: Vec<String>,
    /// Speculative settings (comma-separated strides: os3 or a number).
    #[arg(long, default_value = "os3", value_delimiter = ',')]
    strides: Vec<Stride>,
    /// Neighbours each real search fetches for the successor cache (comma-separated: one
    /// setting per value and stride; the default is the engine's `DEFAULT_PREFETCH`).
    #[arg(long, default_value = "256", value_delimiter = ',')]
    prefetch: Vec<usize>,
    /// Also measure each setting with asynchronous verification (planned by OS³ where it pays).
    #[arg(long = "async")]
    async_verify: bool,
    /// Prompts: the openings (16 tokens) of this many held-out knowledge-base passages.
    #[arg(long, default_value_t = 8)]
    prompts: usize,
    /// New tokens per prompt.
    #[arg(long, default_value_t = 32)]
    tokens: usize,
    /// Held-out tokens scored for perplexity (real datastore, exact search); 0 to skip.
    #[arg(long, default_value_t = 4000)]
    perplexity_tokens: usize,
    #[command(flatten)]
    knn: KnnArgs,
    #[command(flatten)]
    report: ReportArgs,
}

/// One (datastore, search, k, setting) measurement, totals over the prompts.
#[derive(Serialize)]
struct Row {
    entries: usize,
    padded: bool,
    search: &'static str,
    k: usize,
    setting: String,
    tokens: usize,
    plain_ms_per_token: f64,
    spec_ms_per_token: f64,
    speedup: f64,
    /// Mean single search over mean LM step, from the plain runs.
    b_over_a: f64,
    /// Each further query of a batched search over the mean LM step (c from [`batch_cost`]).
    c_over_a: f64,
    /// (a + b)/(a + c): the speed-up if every guess were right and strides endless (each
    /// token then costs one LM step and one further query of a batch).
    bound: f64,
    acceptance: Option<f64>,
    mean_stride: Option<f64>,
    /// Fraction of speculating rounds verified asynchronously.
    overlapped: Option<f64>,
    searches_per_token: f64,
    mismatches: usize,
}

#[derive(Serialize)]
struct PerplexityRow {
    k: usize,
    tokens: usize,
    lm: f64,
    knn: f64,
}

pub fn run(args: Args) -> Result<()> {
    if args.sizes.is_empty()
        || args.k.is_empty()
        || args.strides.is_empty()
        || args.prefetch.is_empty()
        || args.prompts == 0
    {
        bail!("--sizes, --k, --strides, --prefetch and --prompts must be non-empty");
    }
    let searches: Vec<KeySearch> = args
        .search
        .iter()
        .map(|s| parse_search(s))
        .collect::<Result<_>>()?;
    let lm = args.model.load()?;
    let model_path = args.model.path()?;
    let corpus = Corpus::wiki_kb().context("loading the knowledge base")?;
    let mut rows = Vec::new();
    let mut perplexity = Vec::new();
    let mut manifests = Vec::new();
    for &size in &args.sizes {
        let source = SourceArgs {
            model: args.model.clone(),
            datastore: None,
            max_tokens: args.max_tokens,
            pad_to: (size > 0).then_some(size),
            precision: args.precision,
        };
        // A graph over a padded datastore takes long; it is built only for the real size
        // (and over f32 keys only).
        let hnsw = size == 0
            && args.precision == Precision::F32
            && searches.contains(&KeySearch::Approximate);
        let store = knn_cmd::open_or_build(&lm, &model_path, &source, hnsw)?;
        let m = store.manifest().clone();
        manifests.push(m.clone());
        let prompts = prompts(&lm, &corpus, m.held_out_every, args.prompts)?;
        for &search in &searches {
            if search == KeySearch::Approximate && !m.hnsw {
                eprintln!(
                    "skipping hnsw on {} entries: no graph (knn build --hnsw)",
                    m.entries
                );
                continue;
            }
            for &k in &args.k {
                let knn = KnnLm::new(&lm, &store, search, args.knn.params(k))?;
                knn.generate(&prompts[0], 2, knn::Engine::Plain)?; // page the keys in
                rows.extend(measure(&knn, &store, search, k, &prompts, &args)?);
                if size == 0 && search == KeySearch::Exact && args.perplexity_tokens > 0 {
                    let p = knn.perplexity(&corpus, args.perplexity_tokens)?;
                    eprintln!(
                        "perplexity k={k}: LM {:.2}, kNN-LM {:.2} over {} held-out tokens",
                        p.lm, p.knn, p.tokens
                    );
                    perplexity.push(PerplexityRow {
                        k,
                        tokens: p.tokens,
                        lm: p.lm,
                        knn: p.knn,
                    });
                }
                // Rewritten after every k, so that an interrupted run keeps what it measured.
                report(&args, &rows, &perplexity, &manifests)?;
            }
        }
    }
    let (md, mismatches) = report(&args, &rows, &perplexity, &manifests)?;
    print!("{md}");
    if mismatches > 0 {
        bail!("{mismatches} speculative continuations differed from plain kNN-LM");
    }
    Ok(())
}

/// Writes the report files for what has been measured so far; returns the Markdown and the
/// number of mismatched continuations.
fn report(
    args: &Args,
    rows: &[Row],
    perplexity: &[PerplexityRow],
    manifests: &[ralmspec_engine::knn::DatastoreManifest],
) -> Result<(String, usize)> {
    let mismatches: usize = rows.iter().map(|r| r.mismatches).sum();
    let report = json!({
        "machine": crate::bench::machine::describe(),
        "model": args.model.name,
        "device": format!("{:?}", args.model.device).to_lowercase(),
        "datastores": manifests,
        "prompts": args.prompts,
        "tokens": args.tokens,
        "lambda": args.knn.lambda,
        "temperature": args.knn.temperature,
        "method": "each prompt (the first 16 tokens of a held-out knowledge-base passage) is \
                   continued by plain kNN-LM and by each speculative setting, one after the \
                   other, the LM on the given device and every search on the CPU cores; \
                   latency per token is total wall clock over total tokens; b/a is the plain \
                   runs' mean search over their mean LM step; c is each further query of a \
                   batched search ((b(8) − b(1))/7, fastest of 3, before the runs); bound = \
                   (a+b)/(a+c), the speed-up with every guess right and endless strides",
        "precision": args.precision.to_string(),
        "rows": rows,
        "perplexity": perplexity,
        "mismatches": mismatches,
    });
    let md = markdown(&report, rows, perplexity);
    args.report.write(&report, &md, || svg(rows))?;
    Ok((md, mismatches))
}

/// The first 16 tokens of the first `n` held-out passages.
fn prompts(lm: &ralmspec_lm::Lm, corpus: &Corpus, every: u32, n: usize) -> Result<Vec<String>> {
    let out: Vec<String> = corpus
        .iter()
        .filter(|p| is_held_out(p.doc, every))
        .take(n)
        .map(|p| {
            let ids = lm.tokenizer.encode(&p.prompt_text());
            lm.tokenizer.decode(&ids[..ids.len().min(16)])
        })
        .collect();
    if out.len() < n {
        bail!(
            "the datastore holds out {} passages, {n} prompts asked",
            out.len()
        );
    }
    Ok(out)
}

/// Plain and every speculative setting on every prompt.
fn measure(
    knn: &KnnLm<'_>,
    store: &Datastore,
    search: KeySearch,
    k: usize,
    prompts: &[String],
    args: &Args,
) -> Result<Vec<Row>> {
    let asyncs: &[bool] = if args.async_verify {
        &[false, true]
    } else {
        &[false]
    };
    let mut settings = Vec::new();
    for &stride in &args.strides {
        for &prefetch in &args.prefetch {
            for &async_verify in asyncs {
                settings.push(knn::Spec {
                    stride,
                    prefetch,
                    async_verify,
                    ..knn::Spec::default()
                });
            }
        }
    }
    let c = batch_cost(store, search, k)?;
    let mut plain = Totals::default();
    let mut spec: Vec<Totals> = settings.iter().map(|_| Totals::default()).collect();
    let mut mismatches = vec![0; settings.len()];
    for (i, prompt) in prompts.iter().enumerate() {
        let p = knn.generate(prompt, args.tokens, knn::Engine::Plain)?;
        plain.add(&p.stats, p.tokens.len());
        let mut line = format!(
            "{} {} k={k} [{}/{}] plain {:.2}s",
            store.len(),
            search.name(),
            i + 1,
            prompts.len(),
            p.stats.wall.as_secs_f64()
        );
        for (j, &setting) in settings.iter().enumerate() {
            let g = knn.generate(prompt, args.tokens, knn::Engine::Spec(setting))?;
            if g.tokens != p.tokens || g.stop != p.stop {
                mismatches[j] += 1;
                eprintln!("MISMATCH: {prompt:?} with {}", setting.label());
            }
            spec[j].add(&g.stats, g.tokens.len());
            line.push_str(&format!(
                ", {} {:.2}s",
                setting.label(),
                g.stats.wall.as_secs_f64()
            ));
        }
        eprintln!("{line}");
    }
    let manifest = store.manifest();
    let a = plain.lm / plain.steps as f64;
    let b = plain.search / plain.calls as f64;
    Ok(settings
        .iter()
        .zip(spec)
        .zip(mismatches)
        .map(|((setting, s), mismatches)| {
            let label = setting.label();
            Row {
                entries: manifest.entries,
                padded: manifest.padding.is_some(),
                search: search.name(),
                k,
                setting: label,
                tokens: s.tokens,
                plain_ms_per_token: plain.ms_per_token(),
                spec_ms_per_token: s.ms_per_token(),
                speedup: plain.wall / s.wall,
                b_over_a: b / a,
                c_over_a: c / a,
                bound: (a + b) / (a + c),
                acceptance: (s.verified > 0).then(|| s.accepted as f64 / s.verified as f64),
                mean_stride: (s.rounds > 0).then(|| s.speculated as f64 / s.rounds as f64),
                overlapped: (s.rounds > 0).then(|| s.overlapped as f64 / s.rounds as f64),
                searches_per_token: s.calls as f64 / s.tokens.max(1) as f64,
                mismatches,
            }
        })
        .collect())
}

/// Queries in the batch [`batch_cost`] times.
const PROBE_BATCH: usize = 8;

/// c, the cost in seconds of each further query of a batched search: (b(s) − b(1))/(s − 1)
/// for s = [`PROBE_BATCH`] queries (stored keys of entries spread over the real ones), each
/// time the fastest of three.
fn batch_cost(store: &Datastore, search: KeySearch, k: usize) -> Result<f64> {
    let real = store.manifest().real_entries;
    let mut buf = Vec::new();
    let queries: Vec<Query> = (0..PROBE_BATCH)
        .map(|i| {
            let key = store
                .key(i * real / PROBE_BATCH, &mut buf)
                .expect("a real entry");
            Query::embedded("", key.to_vec())
        })
        .collect();
    let retriever = store.search(search)?;
    let time = |n: usize| -> Result<f64> {
        let mut best = f64::INFINITY;
        for _ in 0..3 {
            let t = std::time::Instant::now();
            retriever.search(&queries[..n], k)?;
            best = best.min(t.elapsed().as_secs_f64());
        }
        Ok(best)
    };
    let one = time(1)?;
    let all = time(PROBE_BATCH)?;
    Ok(((all - one) / (PROBE_BATCH - 1) as f64).max(0.0))
}

/// Sums over prompts.
#[derive(Default)]
struct Totals {
    wall: f64,
    lm: f64,
    search: f64,
    calls: usize,
    steps: usize,
    tokens: usize,
    speculated: usize,
    verified: usize,
    accepted: usize,
    rounds: usize,
    overlapped: usize,
}

impl Totals {
    fn add(&mut self, s: &knn::Stats, tokens: usize) {
        self.wall += s.wall.as_secs_f64();
        self.lm += s.lm.as_secs_f64();
        self.search += s.search.as_secs_f64();
        self.calls += s.search_calls;
        self.steps += s.strides.iter().map(|&n| n.max(1)).sum::<usize>();
        self.tokens += tokens;
        self.speculated += s.speculated;
        self.accepted += s.matched;
        self.verified += s.verified;
        self.rounds += s.strides.iter().filter(|&&n| n > 0).count();
        self.overlapped += s.overlapped;
    }

    fn ms_per_token(&self) -> f64 {
        self.wall * 1e3 / self.tokens.max(1) as f64
    }
}

fn markdown(report: &serde_json::Value, rows: &[Row], ppl: &[PerplexityRow]) -> String {
    let mut md = format!(
        "## kNN-LM: speculative vs plain\n\nMachine: {}. Model: {}, on the {}. {} prompts × {} tokens, λ = {}, T = {}.\n\n",
        report["machine"].as_str().unwrap_or(""),
        report["model"].as_str().unwrap_or(""),
        match report["device"].as_str() {
            Some("cuda") => "GPU (searches on the CPU)",
            _ => "CPU",
        },
        report["prompts"],
        report["tokens"],
        report["lambda"],
        report["temperature"],
    );
    md.push_str("| entries | search | k | setting | b/a | c/a | bound (a+b)/(a+c) | plain ms/token | spec ms/token | speed-up | accepted | mean stride | async rounds | searches/token | identical |\n");
    md.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for r in rows {
        md.push_str(&format!(
            "| {}{} | {} | {} | {} | {:.2} | {:.2} | {:.2}× | {:.1} | {:.1} | {:.2}× | {} | {} | {} | {:.2} | {} |\n",
            r.entries,
            if r.padded { " (padded)" } else { "" },
            r.search,
            r.k,
            r.setting,
            r.b_over_a,
            r.c_over_a,
            r.bound,
            r.plain_ms_per_token,
            r.spec_ms_per_token,
            r.speedup,
            r.acceptance
                .map_or("–".into(), |a| format!("{:.0}%", a * 100.0)),
            r.mean_stride.map_or("–".into(), |s| format!("{s:.1}")),
            r.overlapped
                .map_or("–".into(), |o| format!("{:.0}%", o * 100.0)),
            r.searches_per_token,
            if r.mismatches == 0 { "yes" } else { "NO" },
        ));
    }
    if !ppl.is_empty() {
        md.push_str("\nPerplexity of held-out knowledge-base text (real datastore, exact search):\n\n| k | tokens | LM alone | kNN-LM |\n|---|---|---|---|\n");
        for p in ppl {
            md.push_str(&format!(
                "| {} | {} | {:.2} | {:.2} |\n",
                p.k, p.tokens, p.lm, p.knn
            ));
        }
    }
    md
}

fn svg(rows: &[Row]) -> String {
    let mut lines: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for r in rows {
        let label = format!("{} {} entries, {}", r.search, r.entries, r.setting);
        lines
            .entry(label)
            .or_default()
            .push((r.k as f64, r.speedup));
    }
    crate::bench::plot::speedup_svg(
        "Speculative kNN-LM: speed-up over plain kNN-LM",
        "neighbours k (log scale)",
        &lines,
    )
}
