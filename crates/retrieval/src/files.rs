//! Reading the files of this crate's folders (indexes, passage stores, index sets): a file
//! that is not there is [`RetrievalError::BadIndex`] "missing", naming it, and a manifest is
//! JSON with a format version this build must read. The folders are written by
//! [`crate::atomic`].

use std::fs;
use std::path::Path;

use crate::error::{Result, RetrievalError};

/// `e`, met reading `path`, as [`RetrievalError::BadIndex`] ("missing" when not found).
pub(crate) fn missing_or(path: &Path, e: std::io::Error) -> RetrievalError {
    RetrievalError::bad_index(
        path,
        if e.kind() == std::io::ErrorKind::NotFound {
            "missing".to_owned()
        } else {
            e.to_string()
        },
    )
}

/// The bytes of `path`.
pub(crate) fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|e| missing_or(path, e))
}

/// The JSON manifest at `path` (missing or unreadable: [`RetrievalError::BadIndex`] naming it),
/// whose format version (`version` reads it) must be one of `readable`. Every folder the
/// project writes (dense and BM25 indexes, passage stores, index sets, kNN-LM datastores) is
/// read through this.
pub fn read_json<T: serde::de::DeserializeOwned>(
    path: &Path,
    readable: &[u32],
    version: impl Fn(&T) -> u32,
) -> Result<T> {
    let text = read(path)?;
    let value: T = serde_json::from_slice(&text)
        .map_err(|e| RetrievalError::bad_index(path, format!("unreadable: {e}")))?;
    let found = version(&value);
    if !readable.contains(&found) {
        let want = readable.iter().max().copied().unwrap_or_default();
        return Err(RetrievalError::bad_index(
            path,
            format!("format_version is {found}, expected {want} (rebuild it)"),
        ));
    }
    Ok(value)
}
