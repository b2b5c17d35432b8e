//! Evaluation questions over the knowledge base: FanOutQA's dev set, decomposed into its
//! single-hop Wikipedia questions (the factoid kind the paper's QA sets hold).

use std::path::Path;

use serde::Deserialize;

use crate::error::{IoContext, Result, RetrievalError};

/// One single-hop question.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Question {
    /// FanOutQA's id of the question.
    pub id: String,
    /// The question text.
    pub text: String,
    /// The reference answer, as text (lists joined with ", ").
    pub answer: String,
    /// Title of the Wikipedia article holding the evidence.
    pub evidence: String,
}

#[derive(Deserialize)]
struct Node {
    id: String,
    question: String,
    #[serde(default)]
    decomposition: Vec<Node>,
    #[serde(default)]
    answer: serde_json::Value,
    #[serde(default)]
    evidence: Option<Evidence>,
}

#[derive(Deserialize)]
struct Evidence {
    title: String,
}

/// The single-hop questions of the FanOutQA asset, fetched into the store given by the
/// environment if needed, in file order without repeats.
pub fn fanoutqa_dev() -> Result<Vec<Question>> {
    let store = ralmspec_assets::Store::from_env()?;
    fanoutqa(&store.fetch(ralmspec_assets::Asset::FanOutQa)?)
}

/// The single-hop questions (leaves of each decomposition with evidence) of a FanOutQA file.
pub fn fanoutqa(path: &Path) -> Result<Vec<Question>> {
    let text = std::fs::read_to_string(path).at(path)?;
    let roots: Vec<Node> = serde_json::from_str(&text).map_err(|e| RetrievalError::BadCorpus {
        path: path.to_path_buf(),
        reason: format!("not a FanOutQA question file: {e}"),
    })?;
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut stack: Vec<&Node> = roots.iter().rev().collect();
    while let Some(node) = stack.pop() {
        if node.decomposition.is_empty() {
            if let Some(evidence) = &node.evidence
                && seen.insert(node.question.clone())
            {
                out.push(Question {
                    id: node.id.clone(),
                    text: node.question.clone(),
                    answer: answer_text(&node.answer),
                    evidence: evidence.title.clone(),
                });
            }
        } else {
            stack.extend(node.decomposition.iter().rev());
        }
    }
    Ok(out)
}

fn answer_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(items) => {
            items.iter().map(answer_text).collect::<Vec<_>>().join(", ")
        }
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}
