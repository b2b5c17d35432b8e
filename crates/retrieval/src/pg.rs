//! PostgreSQL + pgvector as a retrieval backend: the knowledge base lives in a database (and
//! its streaming replicas), not in the serving process.
//!
//! What one logical index `NAME` (`--table`, default [`DEFAULT_TABLE`]) is in the database:
//!
//! ```text
//! ralmspec_indexes   one row per NAME: its current version and table, dimension, passages,
//!                    encoder, corpus hash, padding and kinds (the manifest row, table.rs)
//! ralmspec_retired   replaced versions still kept, and since when
//! NAME_v<n>          doc int4 primary key, id text, title text, text text,
//!                    embedding vector(dim); an HNSW index (vector_ip_ops) when built for
//!                    pgvector-hnsw. Never written after it is swapped in.
//! NAME               a view of the current version, for people reading the database
//! ```
//!
//! - [`load`] (build.rs) fills `NAME_build` by binary COPY, adds its keys and HNSW index, then
//!   in one transaction renames it `NAME_v<n+1>`, points the manifest row and the view at it,
//!   records `NAME_v<n>` as retired (`ralmspec_retired`) and drops the versions retired more
//!   than `keep_old_for` ago (default ten minutes): a failed or killed load leaves the old
//!   version serving, and a request pinned to a replaced version finishes on it.
//! - [`PgRetriever`] (retriever.rs) searches one version: `pgvector` exactly (a batch in one
//!   pass over the table, each query bounded by an HNSW probe; or one `ORDER BY embedding <#>
//!   q` per query, written so that the index cannot serve it), `pgvector-hnsw` through the HNSW index
//!   (`hnsw.ef_search` candidates, re-ranked by the ranking rule). Scores are the database's
//!   `<#>` in both `search` and `score`, so they agree bit for bit. Its
//!   [`crate::Retriever::snapshot`] pins the version current when a request starts, so a load
//!   running beside requests never mixes two versions into one answer.
//! - [`Database`] (database.rs) is the connection side: a pool per URL (a primary and its
//!   replicas), a batch's queries sent at once over several connections so the database runs
//!   them in parallel, reads spread round-robin, a failed or slow database skipped and tried
//!   again later, a timeout on every call.

mod build;
mod database;
mod retriever;
mod table;

pub use build::{DEFAULT_KEEP_OLD_FOR, Load, load};
pub use database::{Database, DatabaseOptions};
pub use retriever::PgRetriever;
pub use table::{DEFAULT_TABLE, TableInfo, check_name};
