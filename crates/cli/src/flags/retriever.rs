//! The `--retriever` / `--index` flags ([`RetrieverFlags`]): the knowledge base `ask` and
//! `serve` answer from, named the same way by both.

use std::path::PathBuf;

use anyhow::{Result, bail};
use ralmspec_engine::Knowledge;
use ralmspec_retrieval::{Corpus, Kind, Precision};

use crate::flags::database::DatabaseFlags;
use crate::flags::knowledge::{
    indexes_root, kind_parser, knowledge, lazy_set, lazy_set_at, open, open_set, precision_parser,
};

/// `--retriever`, `--index` and what else names the knowledge base a command answers from
/// (`ask`, `serve`): the built-in one, a slice or a padding of it, an index set, or a database.
#[derive(clap::Args)]
pub struct RetrieverFlags {
    /// The retriever over the knowledge base.
    #[arg(long, value_parser = kind_parser(), default_value = "bm25")]
    pub retriever: Kind,
    /// An index set made by `ralmspec index build`, or a new folder where the built-in
    /// knowledge base's index is built on first use; default: the asset store.
    #[arg(long)]
    pub index: Option<PathBuf>,
    /// The encoder folder of a dense index's queries (default: the one the index records).
    #[arg(long)]
    pub encoder: Option<PathBuf>,
    /// Only the first N passages of the built-in knowledge base (a quick start: the full flat
    /// index takes minutes to build once).
    #[arg(long)]
    pub passages: Option<usize>,
    /// Grow the built-in knowledge base to N passages with synthetic ones (a scale experiment,
    /// as `ralmspec index build --pad-to`; the padded index is built once in the asset store).
    #[arg(long, conflicts_with_all = ["index", "passages"])]
    pub pad_to: Option<usize>,
    /// How a padded knowledge base's flat vectors are stored (f16: half the memory).
    #[arg(long, value_parser = precision_parser(), default_value = "f32", requires = "pad_to")]
    pub precision: Precision,
    #[command(flatten)]
    pub db: DatabaseFlags,
}

impl RetrieverFlags {
    /// The knowledge base: a database table, an index set, the built-in default, or a slice
    /// of the built-in one built into a set on first use (in `--index DIR`, or the asset
    /// store).
    pub fn open(&self) -> Result<Knowledge> {
        let (kind, encoder) = (self.retriever, self.encoder.as_deref());
        if kind.is_database() {
            return self.db.knowledge(kind, None, encoder);
        }
        if let Some(dir) = &self.index
            && dir.join("set.json").exists()
        {
            let set = open_set(dir)?;
            // A set built here from the knowledge base gets a missing kind built into it; any
            // other set is served as it is.
            if set.has(kind) || !set.manifest().source.starts_with("wiki-kb") {
                return knowledge(&set, kind, encoder);
            }
        }
        if self.index.is_none() && self.passages.is_none() {
            return open(kind, self.pad_to, self.precision);
        }
        let name = match self.passages {
            Some(0) => bail!("--passages must be at least 1"),
            Some(n) => format!("wiki-kb-head-{n}"),
            None => "wiki-kb".to_string(),
        };
        let corpus = || {
            let kb = Corpus::wiki_kb()?;
            Ok(match self.passages {
                Some(n) => kb.head(n),
                None => kb,
            })
        };
        let set = match &self.index {
            // `--index DIR` names the set itself: a new (or empty) folder, never one holding
            // something else, which building the set would replace.
            Some(dir) => {
                let has_set = dir.join("set.json").exists();
                if !has_set && std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
                    bail!(
                        "{} holds no index set (no set.json) and is not empty; pass an index \
                         set made by `ralmspec index build`, or a new folder to build the \
                         knowledge base's set in",
                        dir.display()
                    );
                }
                lazy_set_at(dir, &name, &corpus, kind)?
            }
            None => lazy_set(
                &indexes_root(None)?,
                &name,
                &corpus,
                kind,
                None,
                self.precision,
            )?,
        };
        knowledge(&set, kind, encoder)
    }
}
