//! Where a benchmark writes its report: `--json`, `--markdown` and `--svg`, each optional.

use std::path::PathBuf;

use anyhow::{Context, Result};

/// The report files a benchmark writes besides printing its Markdown.
#[derive(clap::Args)]
pub struct ReportArgs {
    /// Write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the Markdown tables here.
    #[arg(long)]
    pub markdown: Option<PathBuf>,
    /// Write an SVG plot of the speed-ups here.
    #[arg(long)]
    pub svg: Option<PathBuf>,
}

impl ReportArgs {
    /// Writes each requested file; `svg` is only drawn when asked for.
    pub fn write(
        &self,
        json: &serde_json::Value,
        markdown: &str,
        svg: impl FnOnce() -> String,
    ) -> Result<()> {
        if let Some(path) = &self.json {
            write(path, &serde_json::to_string_pretty(json)?)?;
        }
        if let Some(path) = &self.markdown {
            write(path, markdown)?;
        }
        if let Some(path) = &self.svg {
            write(path, &svg())?;
        }
        Ok(())
    }
}

fn write(path: &PathBuf, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// A report's `config`: the engine's rules and the requests' new-token budget, side by side
/// (the budget is each request's, not the engine's, but a reader wants both in one place).
pub fn ralm_config(
    config: ralmspec_engine::RalmConfig,
    max_new_tokens: usize,
) -> serde_json::Value {
    let mut value = serde_json::to_value(config).expect("RalmConfig serialises");
    value["max_new_tokens"] = max_new_tokens.into();
    value
}
