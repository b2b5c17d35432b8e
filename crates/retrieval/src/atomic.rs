//! Folders replaced whole: every index, passage store and index set is written into a hidden
//! sibling (`.<name>.tmp-<pid>-<n>`) and swapped into place only when complete, so a reader
//! sees the old folder or the new one, never a mix, and a failed or killed build leaves the
//! old one working.
//!
//! The swap is one `renameat2(RENAME_EXCHANGE)` (Linux): the complete new folder and the old
//! one trade places atomically, then the old one is removed. Where the file system cannot
//! exchange, the old folder is renamed aside first and the new one renamed into place (a
//! window of a few microseconds with no folder). Temporary folders left by a killed process
//! are removed by the next build of the same folder ([`clean_stale`]).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{IoContext, Result, RetrievalError};

static NEXT: AtomicU64 = AtomicU64::new(0);

/// The parent folder and file name of `dir`.
fn split(dir: &Path) -> Result<(PathBuf, String)> {
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = dir
        .file_name()
        .ok_or_else(|| RetrievalError::bad_index(dir, "not a folder name"))?
        .to_string_lossy()
        .into_owned();
    Ok((parent, name))
}

/// A fresh temporary path beside `dir` (not created), after removing the temporary folders
/// of `dir` that dead processes left behind.
pub(crate) fn temp_sibling(dir: &Path) -> Result<PathBuf> {
    let (parent, name) = split(dir)?;
    fs::create_dir_all(&parent).at(&parent)?;
    clean_stale(dir)?;
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    Ok(parent.join(format!(".{name}.tmp-{}-{n}", std::process::id())))
}

/// Removes `.<name>.tmp-<pid>…` and `.<name>.old-<pid>…` folders beside `dir` whose process
/// is no longer running.
pub fn clean_stale(dir: &Path) -> Result<()> {
    let (parent, name) = split(dir)?;
    let Ok(entries) = fs::read_dir(&parent) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let file = entry.file_name();
        let file = file.to_string_lossy();
        let Some(rest) = [".tmp-", ".old-"]
            .iter()
            .find_map(|tag| file.strip_prefix(&format!(".{name}{tag}")))
        else {
            continue;
        };
        let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
        let alive = pid.is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        if !alive {
            let path = entry.path();
            fs::remove_dir_all(&path).at(&path)?;
        }
    }
    Ok(())
}

/// Puts the complete folder `tmp` at `dir`, replacing whatever is there in one step.
pub(crate) fn replace_dir(tmp: &Path, dir: &Path) -> Result<()> {
    sync_tree(tmp)?;
    if !dir.exists() {
        return fs::rename(tmp, dir).at(dir);
    }
    let exchanged = rustix::fs::renameat_with(
        rustix::fs::CWD,
        tmp,
        rustix::fs::CWD,
        dir,
        rustix::fs::RenameFlags::EXCHANGE,
    );
    if exchanged.is_ok() {
        // `tmp` now holds the old folder.
        return fs::remove_dir_all(tmp).at(tmp);
    }
    let (parent, name) = split(dir)?;
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let old = parent.join(format!(".{name}.old-{}-{n}", std::process::id()));
    fs::rename(dir, &old).at(dir)?;
    fs::rename(tmp, dir).at(dir)?;
    fs::remove_dir_all(&old).at(&old)
}

/// Lets `fill` write a fresh temporary sibling of `dir`, then puts it at `dir`
/// ([`replace_dir`]). When `fill` fails the temporary folder is removed and `dir` is left as
/// it was.
pub fn build_dir(dir: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = temp_sibling(dir)?;
    fs::create_dir(&tmp).at(&tmp)?;
    let done = fill(&tmp).and_then(|()| replace_dir(&tmp, dir));
    if done.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    done
}

/// A temporary sibling folder of `dir` being filled: [`Staging::commit`] puts it at `dir`
/// ([`replace_dir`]); dropped before that, it is removed and `dir` is left as it was.
#[derive(Debug)]
pub(crate) struct Staging {
    dir: PathBuf,
    tmp: PathBuf,
    committed: bool,
}

impl Staging {
    /// Creates the fresh temporary folder.
    pub(crate) fn new(dir: &Path) -> Result<Staging> {
        let tmp = temp_sibling(dir)?;
        fs::create_dir(&tmp).at(&tmp)?;
        Ok(Staging {
            dir: dir.to_owned(),
            tmp,
            committed: false,
        })
    }

    /// The temporary folder to write into.
    pub(crate) fn path(&self) -> &Path {
        &self.tmp
    }

    /// Puts the folder at its final path, replacing what is there in one step.
    pub(crate) fn commit(mut self) -> Result<()> {
        replace_dir(&self.tmp, &self.dir)?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.tmp);
        }
    }
}

/// Writes `bytes` to `path` through a temporary file renamed over it.
pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let (parent, name) = split(path)?;
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    fs::write(&tmp, bytes).at(&tmp)?;
    fs::File::open(&tmp).and_then(|f| f.sync_all()).at(&tmp)?;
    fs::rename(&tmp, path).at(path)
}

/// fsync of every file under `dir` and of the folders themselves, so that a crash after the
/// swap cannot leave a renamed folder with unwritten contents.
fn sync_tree(dir: &Path) -> Result<()> {
    for entry in fs::read_dir(dir).at(dir)? {
        let path = entry.at(dir)?.path();
        if path.is_dir() {
            sync_tree(&path)?;
        } else {
            fs::File::open(&path).and_then(|f| f.sync_all()).at(&path)?;
        }
    }
    fs::File::open(dir).and_then(|f| f.sync_all()).at(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_and_keeps_old_on_failure() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("set");
        build_dir(&dir, |tmp| fs::write(tmp.join("a"), "1").at(tmp)).unwrap();
        assert_eq!(fs::read_to_string(dir.join("a")).unwrap(), "1");
        // A failed build leaves the old folder and no temporary one.
        let err = build_dir(&dir, |tmp| {
            fs::write(tmp.join("b"), "2").at(tmp)?;
            Err(RetrievalError::BadIndexData {
                reason: "no".into(),
            })
        });
        assert!(err.is_err());
        assert_eq!(fs::read_to_string(dir.join("a")).unwrap(), "1");
        assert_eq!(fs::read_dir(root.path()).unwrap().count(), 1);
        // A finished one replaces it whole: `a` is gone.
        build_dir(&dir, |tmp| fs::write(tmp.join("b"), "2").at(tmp)).unwrap();
        assert!(!dir.join("a").exists());
        assert_eq!(fs::read_to_string(dir.join("b")).unwrap(), "2");
        assert_eq!(fs::read_dir(root.path()).unwrap().count(), 1);
    }

    #[test]
    fn stale_temporaries_of_dead_processes_are_cleaned() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("set");
        // pid 4194304 is above Linux's largest pid; our own pid is alive.
        let dead = root.path().join(".set.tmp-4194304-0");
        let live = root
            .path()
            .join(format!(".set.tmp-{}-99", std::process::id()));
        let other = root.path().join(".other.tmp-4194304-0");
        for d in [&dead, &live, &other] {
            fs::create_dir(d).unwrap();
        }
        clean_stale(&dir).unwrap();
        assert!(!dead.exists());
        assert!(live.exists() && other.exists());
    }
}
