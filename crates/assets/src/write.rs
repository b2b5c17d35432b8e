//! Atomic, verified writes: a file is written under a hidden temporary name in its final
//! folder, hashed while it is written, and renamed into place only once its sha256 matches.
//! A failure or a kill never leaves a partial or wrong file at the final path.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use indicatif::ProgressBar;
use sha2::{Digest, Sha256};

use crate::error::{AssetError, IoContext, Result};

const CHUNK: usize = 1 << 20;

/// A file being written at a temporary path next to `dest`; removed on drop unless
/// [`commit`](Partial::commit)ted.
pub(crate) struct Partial {
    tmp: PathBuf,
    dest: PathBuf,
    out: Option<BufWriter<File>>,
}

/// The prefix of temporary names for `dest`: `.NAME.partial-`.
pub(crate) fn partial_prefix(dest: &Path) -> String {
    let name = dest.file_name().unwrap_or_default().to_string_lossy();
    format!(".{name}.partial-")
}

/// Removes temporary files left in `dest`'s folder by killed writers of `dest`.
/// Only call while holding the asset's lock.
pub(crate) fn remove_stale_partials(dest: &Path) {
    let (Some(dir), prefix) = (dest.parent(), partial_prefix(dest)) else {
        return;
    };
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

impl Partial {
    /// Creates the folder of `dest` if needed and opens a fresh temporary file in it.
    pub(crate) fn create(dest: &Path) -> Result<Partial> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let dir = dest.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).at(dir)?;
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(
            "{}{}-{n}",
            partial_prefix(dest),
            std::process::id()
        ));
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&tmp)
            .at(&tmp)?;
        Ok(Partial {
            tmp,
            dest: dest.to_owned(),
            out: Some(BufWriter::with_capacity(CHUNK, file)),
        })
    }

    /// The temporary path.
    #[cfg(test)]
    pub(crate) fn tmp_path(&self) -> &Path {
        &self.tmp
    }

    fn out(&mut self) -> &mut BufWriter<File> {
        self.out.as_mut().expect("Partial used after commit")
    }

    /// Copies all of `reader` (described as `src` in errors) into the file, feeding `hasher`
    /// and `bar`. Returns the bytes copied.
    pub(crate) fn copy_from(
        &mut self,
        reader: &mut dyn Read,
        src: &Path,
        hasher: &mut Sha256,
        bar: &ProgressBar,
    ) -> Result<u64> {
        let mut buf = vec![0u8; CHUNK];
        let mut total = 0u64;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => return Ok(total),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(read_error(src, e)),
            };
            hasher.update(&buf[..n]);
            let tmp = self.tmp.clone();
            self.out().write_all(&buf[..n]).at(&tmp)?;
            total += n as u64;
            bar.inc(n as u64);
        }
    }

    /// Flushes and reopens the written bytes for reading from the start (the file stays
    /// temporary).
    pub(crate) fn reread(&mut self) -> Result<File> {
        let tmp = self.tmp.clone();
        let out = self.out();
        out.flush().at(&tmp)?;
        let mut file = out.get_ref().try_clone().at(&tmp)?;
        file.seek(SeekFrom::Start(0)).at(&tmp)?;
        Ok(file)
    }

    /// Checks `hasher` against `expected`, then syncs and renames the file to its final path.
    /// On a mismatch the temporary file is removed and `ChecksumMismatch` names `dest`.
    pub(crate) fn commit(mut self, hasher: Sha256, expected: &str) -> Result<PathBuf> {
        let actual = hex(&hasher.finalize());
        if !actual.eq_ignore_ascii_case(expected) {
            return Err(AssetError::ChecksumMismatch {
                path: self.dest.clone(),
                expected: expected.to_owned(),
                actual,
            });
        }
        let out = self.out.take().expect("Partial committed twice");
        let file = out
            .into_inner()
            .map_err(|e| AssetError::io(&self.tmp, e.into_error()))?;
        file.sync_all().at(&self.tmp)?;
        drop(file);
        fs::rename(&self.tmp, &self.dest).at(&self.dest)?;
        if let Some(dir) = self.dest.parent() {
            // Makes the rename itself durable; harmless where directories cannot be synced.
            let _ = File::open(dir).and_then(|d| d.sync_all());
        }
        Ok(self.dest.clone())
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if self.out.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// A read failure while unpacking: a zip-level problem (bad data, CRC) is the archive's fault.
fn read_error(src: &Path, e: io::Error) -> AssetError {
    match e.kind() {
        io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof => AssetError::BadArchive {
            path: src.to_owned(),
            message: e.to_string(),
        },
        _ => AssetError::io(src, e),
    }
}

/// Lower-case hex of `bytes` (a digest, say): the one hex helper of the workspace.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// sha256 of a whole file, lower-case hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).at(path)?;
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher).at(path)?;
    Ok(hex(&hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

    fn sha(data: &[u8]) -> String {
        hex(&Sha256::digest(data))
    }

    fn write(dest: &Path, data: &[u8], expected: &str) -> Result<PathBuf> {
        let mut p = Partial::create(dest)?;
        let mut h = Sha256::new();
        p.copy_from(
            &mut &data[..],
            Path::new("mem"),
            &mut h,
            &ProgressBar::hidden(),
        )?;
        p.commit(h, expected)
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn good_checksum_lands_at_dest_only() {
        let t = TempDir::new();
        let dest = t.path().join("sub/out.bin");
        let data = vec![7u8; 3 * CHUNK + 5];
        assert_eq!(write(&dest, &data, &sha(&data)).unwrap(), dest);
        assert_eq!(fs::read(&dest).unwrap(), data);
        assert_eq!(names(&t.path().join("sub")), ["out.bin"]);
        assert_eq!(sha256_file(&dest).unwrap(), sha(&data));
    }

    #[test]
    fn checksum_mismatch_names_file_and_leaves_nothing() {
        let t = TempDir::new();
        let dest = t.path().join("out.bin");
        let expected = sha(b"what we wanted");
        let err = write(&dest, b"what we got", &expected).unwrap_err();
        match &err {
            AssetError::ChecksumMismatch {
                path,
                expected: e,
                actual,
            } => {
                assert_eq!(path, &dest);
                assert_eq!(e, &expected);
                assert_eq!(actual, &sha(b"what we got"));
            }
            other => panic!("wrong error: {other:?}"),
        }
        let text = err.to_string();
        assert!(
            text.contains("out.bin") && text.contains(&expected),
            "{text}"
        );
        assert!(names(t.path()).is_empty(), "{:?}", names(t.path()));
    }

    #[test]
    fn failed_read_or_drop_leaves_nothing() {
        struct Failing(usize);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "corrupt deflate",
                    ));
                }
                self.0 -= 1;
                buf.fill(1);
                Ok(buf.len())
            }
        }
        let t = TempDir::new();
        let dest = t.path().join("out.bin");
        let mut p = Partial::create(&dest).unwrap();
        assert!(p.tmp_path().exists());
        let err = p
            .copy_from(
                &mut Failing(3),
                Path::new("w.whl"),
                &mut Sha256::new(),
                &ProgressBar::hidden(),
            )
            .unwrap_err();
        assert!(matches!(err, AssetError::BadArchive { .. }), "{err:?}");
        drop(p);
        assert!(names(t.path()).is_empty());

        // A dropped, never-committed file (a panic, an early return) is removed too.
        let p = Partial::create(&dest).unwrap();
        drop(p);
        assert!(names(t.path()).is_empty());
    }

    #[test]
    fn stale_partials_are_swept() {
        let t = TempDir::new();
        let dest = t.path().join("m.gguf");
        fs::write(t.path().join(".m.gguf.partial-1-0"), b"x").unwrap();
        fs::write(t.path().join("keep.txt"), b"x").unwrap();
        remove_stale_partials(&dest);
        assert_eq!(names(t.path()), ["keep.txt"]);
    }
}
