//! The manifest row of a database index and the names of its tables.

use serde::{Deserialize, Serialize};

use crate::error::{Result, RetrievalError};
use crate::pg::database::Database;
use crate::set::{EncoderRecord, Kind, PadTo};

/// `--table` when none is given.
pub const DEFAULT_TABLE: &str = "passages";

/// The table of manifest rows.
pub(crate) const MANIFEST: &str = "ralmspec_indexes";

/// Longest index name: `NAME_v<n>` and `NAME_build` must fit PostgreSQL's 63 bytes.
const MAX_NAME: usize = 40;

/// One version of a database index, as its manifest row describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableInfo {
    /// The index's name (`--table`).
    pub name: String,
    /// Its version: 1 for the first load, one more for each load after.
    pub version: u64,
    /// Dimension of the vectors.
    pub dim: usize,
    /// Rows, padding included.
    pub passages: usize,
    /// Real passages (the rest is padding).
    pub real_passages: usize,
    /// [`crate::Corpus::hash`] of the real passages.
    pub corpus_hash: String,
    /// The corpus's source, as the index set recorded it.
    pub source: String,
    /// How the corpus was padded, when it was.
    pub padding: Option<PadTo>,
    /// The encoder of the vectors: queries must use the same one.
    pub encoder: EncoderRecord,
    /// The kinds this version serves (`pgvector`, and `pgvector-hnsw` when its HNSW index
    /// was built).
    pub kinds: Vec<Kind>,
}

impl TableInfo {
    /// The table holding this version's rows.
    pub fn table(&self) -> String {
        version_table(&self.name, self.version)
    }
}

/// The table of version `version` of index `name`.
pub(crate) fn version_table(name: &str, version: u64) -> String {
    format!("{name}_v{version}")
}

/// Checks that `name` can name an index: lower-case letters, digits and `_`, starting with
/// a letter or `_`, at most 40 bytes (it becomes part of table names, never quoted).
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    match ok {
        true => Ok(()),
        false => Err(RetrievalError::Database {
            reason: format!(
                "--table {name:?}: use lower-case letters, digits and _ (starting with a letter \
                 or _), at most {MAX_NAME} characters"
            ),
        }),
    }
}

/// The SQL creating the manifest table (idempotent).
pub(crate) const CREATE_MANIFEST: &str = "CREATE TABLE IF NOT EXISTS ralmspec_indexes (
    name text PRIMARY KEY,
    version bigint NOT NULL,
    info text NOT NULL,
    loaded_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS ralmspec_retired (
    name text NOT NULL,
    version bigint NOT NULL,
    retired_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, version)
)";

/// The table of replaced versions still kept for the requests pinned to them.
pub(crate) const RETIRED: &str = "ralmspec_retired";

/// The current version of index `name`, read from whichever database answers.
pub(crate) async fn current(db: &Database, name: &str) -> Result<TableInfo> {
    check_name(name)?;
    let sql = format!("SELECT info FROM {MANIFEST} WHERE name = $1");
    let rows = match db.query(&sql, &[&name]).await {
        Err(RetrievalError::Database { reason }) if reason.contains(MANIFEST) => vec![],
        other => other?,
    };
    let Some(row) = rows.first() else {
        return Err(RetrievalError::NotLoaded {
            name: name.to_string(),
            database: db.urls().join(","),
        });
    };
    let info: String = row.get(0);
    serde_json::from_str(&info).map_err(|e| RetrievalError::Database {
        reason: format!("the manifest row of {name:?} is not readable: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_plain_identifiers() {
        for good in ["passages", "_x", "wiki_kb_2"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Passages",
            "2x",
            "a-b",
            "a;drop table x",
            &"a".repeat(41),
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
