//! Reading wheels (and zips inside them): wheels are zip archives, read with the `zip` crate
//! so no Python is needed to unpack them.

use std::fs::File;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};

use indicatif::ProgressBar;
use sha2::Sha256;
use zip::ZipArchive;
use zip::result::ZipError;

use crate::error::{AssetError, IoContext, Result};
use crate::write::Partial;

/// An open zip archive that remembers its path for error messages.
pub(crate) struct Archive<R> {
    path: PathBuf,
    zip: ZipArchive<R>,
}

impl Archive<File> {
    /// Opens the wheel or zip at `path`.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).at(path)?;
        Archive::from_reader(path, file)
    }
}

impl<R: Read + Seek> Archive<R> {
    /// Reads the archive from `reader`; `path` names it in errors.
    pub(crate) fn from_reader(path: &Path, reader: R) -> Result<Self> {
        let zip = ZipArchive::new(reader).map_err(|e| zip_error(path, None, e))?;
        Ok(Archive {
            path: path.to_owned(),
            zip,
        })
    }

    /// Uncompressed size of `entry`.
    pub(crate) fn size(&mut self, entry: &str) -> Result<u64> {
        let path = self.path.clone();
        let file = self
            .zip
            .by_name(entry)
            .map_err(|e| zip_error(&path, Some(entry), e))?;
        Ok(file.size())
    }

    /// Streams `entry` into `out`, feeding `hasher` and `bar`. The zip reader checks the
    /// entry's CRC at its end; a bad one is reported as `BadArchive`.
    pub(crate) fn extract(
        &mut self,
        entry: &str,
        out: &mut Partial,
        hasher: &mut Sha256,
        bar: &ProgressBar,
    ) -> Result<u64> {
        let path = self.path.clone();
        let mut file = self
            .zip
            .by_name(entry)
            .map_err(|e| zip_error(&path, Some(entry), e))?;
        out.copy_from(&mut file, &path, hasher, bar)
    }
}

fn zip_error(path: &Path, entry: Option<&str>, e: ZipError) -> AssetError {
    match (e, entry) {
        (ZipError::FileNotFound, Some(entry)) => AssetError::NotInWheel {
            archive: path.to_owned(),
            entry: entry.to_owned(),
        },
        (ZipError::Io(e), _) => AssetError::io(path, e),
        (e, _) => AssetError::BadArchive {
            path: path.to_owned(),
            message: e.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{TempDir, make_zip};
    use crate::write::hex;
    use sha2::Digest;

    #[test]
    fn extracts_entry_and_reports_missing_ones() {
        let t = TempDir::new();
        let whl = t.path().join("a-1.0-py3-none-any.whl");
        make_zip(&whl, &[("a/data/x.bin", b"hello wheel")]);
        let mut a = Archive::open(&whl).unwrap();
        assert_eq!(a.size("a/data/x.bin").unwrap(), 11);

        let dest = t.path().join("x.bin");
        let mut p = Partial::create(&dest).unwrap();
        let mut h = Sha256::new();
        a.extract("a/data/x.bin", &mut p, &mut h, &ProgressBar::hidden())
            .unwrap();
        p.commit(h, &hex(&Sha256::digest(b"hello wheel"))).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"hello wheel");

        match a.size("a/data/missing.bin").unwrap_err() {
            AssetError::NotInWheel { archive, entry } => {
                assert_eq!(archive, whl);
                assert_eq!(entry, "a/data/missing.bin");
            }
            other => panic!("wrong error: {other:?}"),
        }
    }

    #[test]
    fn garbage_is_a_bad_archive() {
        let t = TempDir::new();
        let whl = t.path().join("bad.whl");
        std::fs::write(&whl, b"this is not a zip file at all").unwrap();
        let err = Archive::open(&whl).err().expect("garbage opened as a zip");
        assert!(matches!(err, AssetError::BadArchive { .. }), "{err:?}");
        assert!(err.to_string().contains("bad.whl"));
    }
}
