//! `ralmspec bench quality`: how well the answers are, with and without retrieval. On FanOutQA
//! dev's single-hop questions that have a gold answer, each model answers every question with
//! no retrieval (the LM alone on the question in its chat template, as `ralmspec generate`)
//! and with each retriever (the baseline engine of `ralmspec ask`; every engine gives the same
//! tokens). Scores: SQuAD exact match and token F1 of the whole generated text against the
//! gold answer, whether the answer contains the gold answer, and the retriever's evidence
//! recall@1 and @10 for the question text against the gold evidence title. Every score is
//! also given on the questions whose gold article is in the knowledge base at all.

mod metrics;

use std::collections::HashSet;
use std::time::Instant;

use anyhow::{Result, bail};
use clap::builder::TypedValueParser as _;
use indicatif::{ProgressBar, ProgressStyle};
use ralmspec_engine::{Ask, Engine, Knowledge, Ralm, RalmConfig};
use ralmspec_lm::Lm;
use ralmspec_retrieval::questions::{Question, fanoutqa_dev};
use ralmspec_retrieval::{Corpus, Kind, Precision};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::bench::report::ReportArgs;
use crate::flags::knowledge;
use crate::flags::model::{self, Device};

/// Retrieved titles kept per question: the deepest recall reported.
const DEPTH: usize = 10;

#[derive(clap::Args)]
pub struct Args {
    /// Models (comma-separated): smollm2, qwen2.5-0.5b, or paths to GGUF files.
    #[arg(long, default_value = "smollm2", value_delimiter = ',')]
    models: Vec<String>,
    /// Retrievers (comma-separated); `none` answers with the LM alone.
    #[arg(
        long,
        value_parser = retriever_parser(),
        default_value = "none,bm25,flat",
        value_delimiter = ','
    )]
    retrievers: Vec<Option<Kind>>,
    /// Number of questions: the first N single-hop questions with a gold answer.
    #[arg(long, default_value_t = 100)]
    questions: usize,
    /// New tokens per answer.
    #[arg(long, default_value_t = 32)]
    max_tokens: usize,
    /// Where the LM computes.
    #[arg(long, value_enum, default_value_t = Device::Cpu)]
    device: Device,
    #[command(flatten)]
    report: ReportArgs,
    /// Run nothing: write the Markdown and SVG of this saved `--json` report again.
    #[arg(long)]
    from_json: Option<std::path::PathBuf>,
}

/// `none`, or an in-process retriever of the built-in knowledge base.
fn retriever_parser() -> impl clap::builder::TypedValueParser<Value = Option<Kind>> {
    let names = std::iter::once("none").chain(
        Kind::ALL
            .into_iter()
            .filter(|k| !k.is_database())
            .map(Kind::name),
    );
    clap::builder::PossibleValuesParser::new(names.collect::<Vec<_>>()).map(|s| match s.as_str() {
        "none" => None,
        s => Some(s.parse::<Kind>().expect("one of the possible values")),
    })
}

fn retriever_name(kind: Option<Kind>) -> &'static str {
    kind.map_or("none", Kind::name)
}

/// No retrieval (`kind` none) or a retriever with its top titles for every question.
struct Source {
    kind: Option<Kind>,
    knowledge: Option<Knowledge>,
    titles: Vec<Vec<String>>,
}

/// One model's answer to one question, scored.
#[derive(Clone, Serialize)]
struct Answer {
    text: String,
    exact_match: f64,
    f1: f64,
    contains: f64,
    seconds: f64,
}

/// Mean scores over a set of questions.
#[derive(Serialize, Deserialize)]
struct Scores {
    questions: usize,
    exact_match: f64,
    f1: f64,
    contains: f64,
    recall_at_1: Option<f64>,
    recall_at_10: Option<f64>,
}

/// One line of the report: a model with a retriever (or none).
#[derive(Serialize, Deserialize)]
struct Row {
    model: String,
    retriever: String,
    /// Over every question.
    all: Scores,
    /// Over the questions whose gold article is a passage of the knowledge base.
    evidence_in_kb: Scores,
    /// Wall-clock time answering every question.
    seconds: f64,
}

pub fn run(args: Args) -> Result<()> {
    if let Some(path) = &args.from_json {
        return rewrite(path, &args.report);
    }
    if args.questions == 0 || args.retrievers.is_empty() || args.models.is_empty() {
        bail!("--questions, --retrievers and --models must be non-empty");
    }
    let all = fanoutqa_dev()?;
    let questions: Vec<Question> = all
        .iter()
        .filter(|q| !q.answer.trim().is_empty())
        .take(args.questions)
        .cloned()
        .collect();
    let kb_titles: HashSet<String> = Corpus::wiki_kb()?.iter().map(|p| p.title).collect();
    let in_kb: Vec<bool> = questions
        .iter()
        .map(|q| kb_titles.contains(&q.evidence))
        .collect();

    // The knowledge bases, and each retriever's top titles for every question (no LM).
    let mut retrievers: Vec<Source> = Vec::new();
    for &kind in &args.retrievers {
        let Some(kind) = kind else {
            retrievers.push(Source {
                kind: None,
                knowledge: None,
                titles: Vec::new(),
            });
            continue;
        };
        let knowledge = knowledge::open(kind, None, Precision::F32)?;
        let titles = questions
            .iter()
            .map(|q| top_titles(&knowledge, &q.text))
            .collect::<Result<Vec<_>>>()?;
        retrievers.push(Source {
            kind: Some(kind),
            knowledge: Some(knowledge),
            titles,
        });
    }

    let config = RalmConfig::default();
    let mut rows = Vec::new();
    let mut answers = Vec::new();
    for name in &args.models {
        let lm = model::load(name, args.device)?;
        for Source {
            kind,
            knowledge,
            titles,
        } in &retrievers
        {
            let bar = progress(
                questions.len(),
                &format!("{name} {}", retriever_name(*kind)),
            );
            // One engine for all questions: documents' KV is kept across them (same tokens).
            let ralm = knowledge.as_ref().map(|k| Ralm::new(&lm, k, config));
            let start = Instant::now();
            let mut scored = Vec::with_capacity(questions.len());
            for q in &questions {
                let t = Instant::now();
                let text = match &ralm {
                    Some(ralm) => {
                        ralm.generate(&Ask::question(&q.text, args.max_tokens), Engine::Baseline)?
                            .text
                    }
                    None => answer_alone(&lm, &q.text, args.max_tokens)?,
                };
                scored.push(Answer {
                    exact_match: metrics::exact_match(&text, &q.answer),
                    f1: metrics::f1(&text, &q.answer),
                    contains: metrics::contains(&text, &q.answer),
                    seconds: t.elapsed().as_secs_f64(),
                    text,
                });
                bar.inc(1);
            }
            bar.finish_and_clear();
            let seconds = start.elapsed().as_secs_f64();
            let scores = |keep: &dyn Fn(usize) -> bool| {
                let picked: Vec<usize> = (0..questions.len()).filter(|&i| keep(i)).collect();
                let recall =
                    |k: usize| {
                        (!titles.is_empty()).then(|| {
                            mean(picked.iter().map(|&i| {
                                metrics::recall_at(&titles[i], &questions[i].evidence, k)
                            }))
                        })
                    };
                Scores {
                    questions: picked.len(),
                    exact_match: mean(picked.iter().map(|&i| scored[i].exact_match)),
                    f1: mean(picked.iter().map(|&i| scored[i].f1)),
                    contains: mean(picked.iter().map(|&i| scored[i].contains)),
                    recall_at_1: recall(1),
                    recall_at_10: recall(DEPTH),
                }
            };
            rows.push(Row {
                model: name.clone(),
                retriever: retriever_name(*kind).into(),
                all: scores(&|_| true),
                evidence_in_kb: scores(&|i| in_kb[i]),
                seconds,
            });
            eprintln!(
                "{name} {}: F1 {:.3} in {seconds:.0}s",
                retriever_name(*kind),
                rows.last().map_or(0.0, |r| r.all.f1)
            );
            answers.push(json!({
                "model": name,
                "retriever": retriever_name(*kind),
                "answers": scored,
            }));
        }
    }

    let question_list: Vec<_> = questions
        .iter()
        .zip(&in_kb)
        .map(|(q, &kb)| {
            json!({
                "id": q.id, "text": q.text, "answer": q.answer, "evidence": q.evidence,
                "evidence_in_kb": kb,
            })
        })
        .collect();
    let retrieved_titles: Vec<_> = retrievers
        .iter()
        .filter(|r| r.kind.is_some())
        .map(|r| json!({"retriever": retriever_name(r.kind), "titles": r.titles}))
        .collect();
    let without_answer = all.iter().filter(|q| q.answer.trim().is_empty()).count();
    let report = json!({
        "machine": crate::bench::machine::describe(),
        "device": format!("{:?}", args.device).to_lowercase(),
        "config": crate::bench::report::ralm_config(config, args.max_tokens),
        "questions": questions.len(),
        "dev_questions_without_answer": without_answer,
        "evidence_in_kb": in_kb.iter().filter(|&&b| b).count(),
        "method": "FanOutQA dev single-hop questions with a gold answer (lists joined with \", \"), \
                   in file order; no retrieval = the LM alone on the question in its chat \
                   template; a retriever = the baseline RaLM engine; EM and F1 use SQuAD \
                   normalisation on the whole generated text; contains = the normalised gold \
                   answer is a run of words of the normalised answer; recall@k = the gold \
                   evidence title equals (exactly) one of the top-k passage titles retrieved \
                   for the question text",
        "rows": rows,
        "question_list": question_list,
        "retrieved_titles": retrieved_titles,
        "answers": answers,
    });
    let markdown = markdown(&report, &rows);
    print!("{markdown}");
    args.report.write(&report, &markdown, || svg(&rows))
}

/// The titles of the best [`DEPTH`] passages for `question`.
fn top_titles(knowledge: &Knowledge, question: &str) -> Result<Vec<String>> {
    let query = knowledge.query(question.to_string())?;
    let hits = knowledge.search(&[query], DEPTH)?;
    hits.into_iter()
        .flatten()
        .map(|hit| Ok(knowledge.passage(hit.doc)?.title))
        .collect()
}

/// The LM alone, greedy, on `question` in its chat template (what `ralmspec generate` does).
fn answer_alone(lm: &Lm, question: &str, max_tokens: usize) -> Result<String> {
    let prompt = lm.chat_tokens(question)?;
    let context = lm.model.config().context;
    if prompt.len() >= context {
        bail!(
            "the question is {} tokens long; the context holds {context}",
            prompt.len()
        );
    }
    let max_tokens = max_tokens.min(context - prompt.len());
    let mut cache = lm.model.new_cache(prompt.len() + max_tokens);
    let (tokens, _) = lm.generate(&prompt, max_tokens, &mut cache, |_| {})?;
    Ok(lm.tokenizer.decode(&tokens))
}

fn progress(len: usize, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len as u64).with_style(
        ProgressStyle::with_template(
            "{msg:>24} {bar:40} {pos}/{len} questions {elapsed} ETA {eta}",
        )
        .expect("a valid template"),
    );
    bar.set_message(what.to_string());
    if bar.is_hidden() {
        eprintln!("{what}: {len} questions…");
    }
    bar
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 { f64::NAN } else { sum / n as f64 }
}

fn percent(v: f64) -> String {
    if v.is_nan() {
        "–".into()
    } else {
        format!("{:.1}", 100.0 * v)
    }
}

fn markdown(report: &serde_json::Value, rows: &[Row]) -> String {
    let in_kb = rows.first().map_or(0, |r| r.evidence_in_kb.questions);
    let mut out = format!(
        "\nAnswer quality on {} FanOutQA dev single-hop questions, {} new tokens; {}. \
         Scores in %; EM, F1 (SQuAD normalisation) and contains are of the whole generated \
         answer; recall is of the question text's top passages, whatever the model.\n\n",
        report["questions"],
        report["config"]["max_new_tokens"],
        report["machine"].as_str().unwrap_or("")
    );
    out.push_str(&table(rows, |r| &r.all, true));
    out.push_str(&format!(
        "\nOn the {in_kb} of them whose gold article is a passage of the knowledge base:\n\n"
    ));
    out.push_str(&table(rows, |r| &r.evidence_in_kb, false));
    out
}

fn table(rows: &[Row], scores: impl Fn(&Row) -> &Scores, seconds: bool) -> String {
    let mut out = String::from("| model | retriever | EM | F1 | contains | recall@1 | recall@10 |");
    out.push_str(match seconds {
        true => " seconds |\n|---|---|---:|---:|---:|---:|---:|---:|\n",
        false => "\n|---|---|---:|---:|---:|---:|---:|\n",
    });
    let opt = |v: Option<f64>| v.map_or("–".into(), percent);
    for r in rows {
        let s = scores(r);
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.model,
            r.retriever,
            percent(s.exact_match),
            percent(s.f1),
            percent(s.contains),
            opt(s.recall_at_1),
            opt(s.recall_at_10),
        ));
        if seconds {
            out.push_str(&format!(" {:.0} |", r.seconds));
        }
        out.push('\n');
    }
    out
}

/// F1, contains and recall@10 per model and retriever, as bars.
fn svg(rows: &[Row]) -> String {
    let mut groups: Vec<(String, Vec<(String, f64)>)> = Vec::new();
    for r in rows {
        if groups.last().is_none_or(|g| g.0 != r.model) {
            groups.push((r.model.clone(), Vec::new()));
        }
        let bars = &mut groups.last_mut().expect("just pushed").1;
        bars.push((format!("{} F1", r.retriever), 100.0 * r.all.f1));
        bars.push((format!("{} contains", r.retriever), 100.0 * r.all.contains));
        if let Some(recall) = r.all.recall_at_10 {
            bars.push((format!("{} recall@10", r.retriever), 100.0 * recall));
        }
    }
    crate::bench::plot::scaled_bars_svg(
        "Answer quality and evidence recall on FanOutQA single-hop questions (%)",
        &groups,
        &crate::bench::plot::BarScale::PERCENT,
    )
}

/// Writes the Markdown and SVG of a saved report (`--from-json`) again.
fn rewrite(path: &std::path::Path, report: &ReportArgs) -> Result<()> {
    use anyhow::Context;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let saved: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let rows: Vec<Row> = serde_json::from_value(saved["rows"].clone())
        .with_context(|| format!("{} is not a `bench quality` report", path.display()))?;
    let markdown = markdown(&saved, &rows);
    print!("{markdown}");
    let report = ReportArgs {
        json: None,
        markdown: report.markdown.clone(),
        svg: report.svg.clone(),
    };
    report.write(&saved, &markdown, || svg(&rows))
}
