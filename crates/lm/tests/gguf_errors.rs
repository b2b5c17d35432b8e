//! Bad model files give clear errors, never a panic.

mod common;

use ralmspec_assets::Asset;
use ralmspec_lm::{Lm, LmError};

fn open_err(path: &std::path::Path) -> LmError {
    match Lm::open(path) {
        Ok(_) => panic!("{} loaded", path.display()),
        Err(e) => e,
    }
}

#[test]
fn missing_file_is_an_io_error_naming_it() {
    let err = open_err(std::path::Path::new("/nonexistent/model.gguf"));
    assert!(matches!(err, LmError::Io { .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/model.gguf"));
}

#[test]
fn garbage_and_truncated_files_are_invalid_gguf() {
    let dir = std::env::temp_dir().join(format!("ralmspec-gguf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let garbage = dir.join("garbage.gguf");
    std::fs::write(&garbage, b"this is not a model at all").unwrap();
    let err = open_err(&garbage);
    assert!(matches!(err, LmError::InvalidGguf { .. }), "{err}");

    let real = std::fs::read(common::model_path(Asset::SmolLm2)).unwrap();
    for keep in [real.len() / 2, 2_000_000, 100] {
        let cut = dir.join(format!("cut{keep}.gguf"));
        std::fs::write(&cut, &real[..keep]).unwrap();
        let err = open_err(&cut);
        assert!(matches!(err, LmError::InvalidGguf { .. }), "{keep}: {err}");
        assert!(err.to_string().contains("cut"), "{err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
