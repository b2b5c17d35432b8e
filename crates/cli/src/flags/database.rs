//! The `--database` flags: a knowledge base in PostgreSQL with pgvector (`--retriever
//! pgvector|pgvector-hnsw`), read from a primary and its replicas.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ralmspec_engine::Knowledge;
use ralmspec_retrieval::pg::{self, DEFAULT_TABLE, DatabaseOptions, Load};
use ralmspec_retrieval::{Corpus, IndexSet, Kind, PgRetriever, Precision, RetrievalError};

use crate::flags::knowledge::{self, Bars};

/// Where a database knowledge base lives and how it is read.
#[derive(clap::Args, Clone, Debug)]
pub struct DatabaseFlags {
    /// PostgreSQL with pgvector, for the pgvector retrievers: postgres://user@host:port/db.
    /// Several, comma-separated: a primary, then its streaming replicas; reads are spread over
    /// them, and one that fails is skipped and tried again later.
    #[arg(long, value_delimiter = ',')]
    pub database: Vec<String>,
    /// The index's name in the database (`ralmspec index build --table`).
    #[arg(long, default_value = DEFAULT_TABLE)]
    pub table: String,
    /// pgvector-hnsw: candidates per search (hnsw.ef_search; default 40). More is slower and
    /// closer to exact.
    #[arg(long)]
    pub ef_search: Option<usize>,
    /// Seconds one database call may take (connecting, waiting, running) before that
    /// database is skipped for this call.
    #[arg(long, default_value_t = 10.0)]
    pub database_timeout: f64,
    /// Connections per database: how many searches of a batch it runs at once.
    #[arg(long, default_value_t = 16)]
    pub database_connections: usize,
}

impl DatabaseFlags {
    /// The URLs, which `kind` needs.
    pub fn urls(&self, kind: Kind) -> Result<&[String]> {
        if self.database.is_empty() {
            bail!(
                "--retriever {kind} reads PostgreSQL: pass --database postgres://user@host:port/db \
                 (scripts/postgres.sh start runs one locally)"
            );
        }
        Ok(&self.database)
    }

    fn options(&self) -> Result<DatabaseOptions> {
        if !(self.database_timeout.is_finite() && self.database_timeout > 0.0) {
            bail!("--database-timeout must be a number of seconds > 0");
        }
        Ok(DatabaseOptions {
            pool_size: self.database_connections.max(1),
            timeout: Duration::from_secs_f64(self.database_timeout),
            ..DatabaseOptions::default()
        })
    }

    /// The `kind` retriever over index `table` (`--table` when `None`).
    pub fn retriever(&self, kind: Kind, table: Option<&str>) -> Result<PgRetriever> {
        let table = table.unwrap_or(&self.table);
        let retriever = PgRetriever::connect(
            self.urls(kind)?,
            table,
            kind,
            self.ef_search,
            self.options()?,
        )?;
        Ok(retriever)
    }

    /// The `kind` knowledge base in index `table` (`--table` when `None`), its queries
    /// encoded by the encoder it records (or `encoder`, which must be the same).
    pub fn knowledge(
        &self,
        kind: Kind,
        table: Option<&str>,
        encoder: Option<&Path>,
    ) -> Result<Knowledge> {
        let retriever = self.retriever(kind, table)?;
        knowledge(kind, retriever, encoder)
    }

    /// The built-in knowledge base padded to `pad_to` (0: unpadded) in the database as
    /// `--table` (with `_pad<N>` appended when padded), loaded from its local index set first
    /// when the database does not hold it yet.
    pub fn kb_knowledge(
        &self,
        kind: Kind,
        pad_to: usize,
        precision: Precision,
    ) -> Result<Knowledge> {
        let table = match pad_to {
            0 => self.table.clone(),
            n => format!("{}_pad{n}", self.table),
        };
        let retriever = match self.retriever(kind, Some(&table)) {
            Err(e) if matches!(e.downcast_ref(), Some(RetrievalError::NotLoaded { .. })) => {
                let set = knowledge::lazy_set(
                    &knowledge::indexes_root(None)?,
                    "wiki-kb",
                    &|| Ok(Corpus::wiki_kb()?),
                    Kind::Flat,
                    (pad_to > 0).then_some(pad_to),
                    precision,
                )?;
                load(
                    self.urls(kind)?,
                    &table,
                    &set,
                    true,
                    pg::DEFAULT_KEEP_OLD_FOR,
                )?;
                self.retriever(kind, Some(&table))?
            }
            other => other?,
        };
        knowledge(kind, retriever, None)
    }
}

fn knowledge(kind: Kind, retriever: PgRetriever, encoder: Option<&Path>) -> Result<Knowledge> {
    let encoder = retriever
        .encoder_record()
        .open(encoder)
        .context("loading the encoder the database index was built with")?;
    let retriever = Arc::new(retriever);
    Ok(Knowledge::from_source(
        kind.name(),
        retriever.clone(),
        Some(Arc::new(encoder)),
        retriever,
    ))
}

/// Loads `set` (which must hold a flat index) into the primary of `urls` as index `table`,
/// with its HNSW index when `hnsw`, keeping the version it replaces readable for
/// `keep_old_for`; draws progress bars.
pub fn load(
    urls: &[String],
    table: &str,
    set: &IndexSet,
    hnsw: bool,
    keep_old_for: Duration,
) -> Result<()> {
    let flat = set
        .flat(ralmspec_retrieval::index::Verify::Sizes)
        .with_context(|| format!("reading the vectors of {}", set.dir().display()))?
        .to_precision(Precision::F32);
    let mut bars = Bars::default();
    let info = pg::load(
        &urls[0],
        &Load {
            name: table,
            set,
            flat: &flat,
            hnsw,
            keep_old_for,
        },
        &mut bars,
    )
    .with_context(|| format!("loading {} into {table}", set.dir().display()))?;
    bars.finish();
    eprintln!(
        "{table} version {} in the database: {} passages{}, {}",
        info.version,
        info.passages,
        info.padding.map_or(String::new(), |p| format!(
            " (padded from {})",
            info.real_passages.min(p.total)
        )),
        info.kinds
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}
