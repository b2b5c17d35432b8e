//! `ralmspec bench ralm`: the paper's Table 1 on this machine. For each retriever and
//! knowledge-base size, every question is answered by the baseline, by the oracle floor (the
//! baseline's documents replayed, retrieval free) and by each RaLMSpec variant, one after the
//! other in the same run, each starting cold (no document KV kept from an earlier run). Every
//! speculative answer is checked token for token against the baseline's; a mismatch fails the
//! benchmark. Reports mean/p50/p95 latency, speed-up over the baseline, b/a, speculation
//! accuracy, strides and retriever calls, as a table, JSON, Markdown and an SVG plot.

mod chart;
mod summary;

use anyhow::{Result, bail};
use ralmspec_engine::{Ask, Engine, Generation, Ralm, RalmConfig, SpecConfig, Stride};
use ralmspec_retrieval::Kind;
use ralmspec_retrieval::questions::fanoutqa_dev;
use serde_json::json;

use crate::bench::report::ReportArgs;
use crate::flags::database::DatabaseFlags;
use crate::flags::knowledge::{self, kind_parser};
use crate::flags::model::ModelFlags;
use summary::Runs;

#[derive(clap::Args)]
pub struct Args {
    /// Number of FanOutQA questions (the first N single-hop questions of the dev set).
    #[arg(long, default_value_t = 100)]
    questions: usize,
    /// Retrievers to measure (comma-separated).
    #[arg(long, value_parser = kind_parser(), default_value = "flat", value_delimiter = ',')]
    retrievers: Vec<Kind>,
    /// Knowledge-base sizes (comma-separated): 0 is the real 10,033 passages, N pads to N.
    #[arg(
        long,
        default_value = "0",
        value_delimiter = ',',
        conflicts_with = "index"
    )]
    sizes: Vec<usize>,
    /// Measure these index sets (comma-separated folders made by `ralmspec index build`)
    /// instead of the built-in knowledge base.
    #[arg(long, value_delimiter = ',')]
    index: Vec<std::path::PathBuf>,
    /// How padded sizes store their flat vectors (f16: half the memory; 21M × 384 needs it on
    /// a 23 GB machine).
    #[arg(long, value_parser = knowledge::precision_parser(), default_value = "f32")]
    precision: ralmspec_retrieval::Precision,
    #[command(flatten)]
    model: ModelFlags,
    /// New tokens per answer.
    #[arg(long, default_value_t = 128)]
    max_tokens: usize,
    #[command(flatten)]
    report: ReportArgs,
    /// For --retrievers pgvector,pgvector-hnsw: the database (each size is the index
    /// `--table`, with `_pad<N>` appended when padded, loaded from the built-in knowledge
    /// base on first use).
    #[command(flatten)]
    db: DatabaseFlags,
}

/// The variants of the paper's ablation (Table 1 and 4): cache only, then each component.
fn variants() -> Vec<SpecConfig> {
    let cache_only = SpecConfig::CACHE_ONLY;
    vec![
        cache_only,
        SpecConfig {
            prefetch: 20,
            ..cache_only
        },
        SpecConfig {
            stride: Stride::Os3,
            ..cache_only
        },
        SpecConfig {
            async_verify: true,
            ..cache_only
        },
        SpecConfig::FULL,
    ]
}

pub fn run(args: Args) -> Result<()> {
    if args.questions == 0 || args.retrievers.is_empty() || args.sizes.is_empty() {
        bail!("--questions, --retrievers and --sizes must be non-empty");
    }
    let lm = args.model.load()?;
    let questions: Vec<String> = fanoutqa_dev()?
        .into_iter()
        .take(args.questions)
        .map(|q| q.text)
        .collect();
    let config = RalmConfig::default();
    let mut rows = Vec::new();
    let mut mismatches = 0;
    let sets = args
        .index
        .iter()
        .map(|dir| knowledge::open_set(dir))
        .collect::<Result<Vec<_>>>()?;
    for &kind in &args.retrievers {
        let sources: Vec<Option<usize>> = match sets.is_empty() {
            true => args.sizes.clone().into_iter().map(Some).collect(),
            false => (0..sets.len()).map(|_| None).collect(),
        };
        for (i, &size) in sources.iter().enumerate() {
            let knowledge = match size {
                Some(size) if kind.is_database() => {
                    args.db.kb_knowledge(kind, size, args.precision)?
                }
                Some(size) => knowledge::open(kind, (size > 0).then_some(size), args.precision)?,
                None if kind.is_database() => {
                    bail!("--index is for in-process retrievers; {kind} reads --database --table")
                }
                None => knowledge::knowledge(&sets[i], kind, None)?,
            };
            let ralm = Ralm::new(&lm, &knowledge, config);
            let mut runs = Runs::new(variants().len());
            for (i, question) in questions.iter().enumerate() {
                let ask = Ask::question(question, args.max_tokens);
                ralm.clear_doc_kv();
                let base = ralm.generate(&ask, Engine::Baseline)?;
                ralm.clear_doc_kv();
                let oracle = ralm.replay(&ask, &base.spans)?;
                let mut spec = Vec::new();
                for variant in variants() {
                    ralm.clear_doc_kv();
                    let g = ralm.generate(&ask, Engine::Spec(variant))?;
                    if !same(&g, &base) {
                        mismatches += 1;
                        eprintln!("MISMATCH: {question:?} with {}", variant.label());
                    }
                    spec.push(g);
                }
                eprintln!(
                    "{} {} [{}/{}] baseline {:.2}s, oracle {:.2}s, full {:.2}s",
                    kind.name(),
                    knowledge.len(),
                    i + 1,
                    questions.len(),
                    base.stats.wall.as_secs_f64(),
                    oracle.stats.wall.as_secs_f64(),
                    spec.last().map_or(0.0, |g| g.stats.wall.as_secs_f64()),
                );
                runs.push(base, oracle, spec);
            }
            let padding = knowledge.padding().map(|p| p.describe()).or_else(|| {
                (kind.is_database() && size.is_some_and(|s| s > 0))
                    .then(|| format!("the knowledge base padded to {} passages", knowledge.len()))
            });
            rows.extend(runs.rows(kind.name(), knowledge.len(), padding, &variants()));
        }
    }
    let report = json!({
        "machine": crate::bench::machine::describe(),
        "model": args.model.name,
        "device": format!("{:?}", args.model.device).to_lowercase(),
        "questions": questions.len(),
        "config": crate::bench::report::ralm_config(config, args.max_tokens),
        "method": "each question answered by the baseline, the oracle floor (baseline documents \
                   replayed, retrieval free) and each variant, one after the other, each run \
                   starting with no cached document KV; latency is wall clock per request",
        "rows": rows,
        "mismatches": mismatches,
    });
    print!("{}", summary::markdown(&report, &rows));
    args.report
        .write(&report, &summary::markdown(&report, &rows), || {
            chart::speedup_svg(&rows)
        })?;
    if mismatches > 0 {
        bail!("{mismatches} speculative answers differed from the baseline's");
    }
    Ok(())
}

fn same(a: &Generation, b: &Generation) -> bool {
    a.tokens == b.tokens && a.spans == b.spans && a.stop == b.stop
}

/// `ralmspec bench plot`: draws the plot of a saved `bench ralm` report again.
#[derive(clap::Args)]
pub struct PlotArgs {
    /// A report written by `bench ralm --json`.
    json: std::path::PathBuf,
    /// Where to write the SVG.
    #[arg(long)]
    svg: std::path::PathBuf,
}

pub fn plot(args: PlotArgs) -> Result<()> {
    use anyhow::Context;
    let text = std::fs::read_to_string(&args.json)
        .with_context(|| format!("reading {}", args.json.display()))?;
    let report: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not JSON", args.json.display()))?;
    let rows: Vec<summary::Row> = serde_json::from_value(report["rows"].clone())
        .with_context(|| format!("{} is not a `bench ralm` report", args.json.display()))?;
    if rows.is_empty() {
        bail!("{} holds no rows", args.json.display());
    }
    std::fs::write(&args.svg, chart::speedup_svg(&rows))
        .with_context(|| format!("writing {}", args.svg.display()))?;
    eprintln!("wrote {}", args.svg.display());
    Ok(())
}
