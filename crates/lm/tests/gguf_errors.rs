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

/// The real model's bytes with `patch` applied, written to a file of its own.
fn patched(name: &str, patch: impl FnOnce(&mut Vec<u8>)) -> std::path::PathBuf {
    let dir =
        std::env::temp_dir().join(format!("ralmspec-gguf-patch-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut bytes = std::fs::read(common::model_path(Asset::SmolLm2)).unwrap();
    patch(&mut bytes);
    let path = dir.join(name);
    std::fs::write(&path, &bytes).unwrap();
    path
}

/// Where `needle`, a length-prefixed GGUF string (a metadata key or a tensor name), ends.
fn after_string(bytes: &[u8], needle: &str) -> usize {
    let mut prefixed = (needle.len() as u64).to_le_bytes().to_vec();
    prefixed.extend_from_slice(needle.as_bytes());
    let at = bytes
        .windows(prefixed.len())
        .position(|w| w == prefixed)
        .unwrap_or_else(|| panic!("`{needle}` is not in the file"));
    at + prefixed.len()
}

/// Sets the u32 metadata value of `key`.
fn set_u32(bytes: &mut [u8], key: &str, value: u32) {
    let at = after_string(bytes, key);
    assert_eq!(
        bytes[at..at + 4],
        4u32.to_le_bytes(),
        "`{key}` is not a u32"
    );
    bytes[at + 4..at + 8].copy_from_slice(&value.to_le_bytes());
}

/// Regression (issue 15): 0x7fffffff blocks or positions aborted the process on an allocation
/// of hundreds of gigabytes; both are now a clear error naming the key.
#[test]
fn huge_block_count_or_context_is_a_clear_error() {
    for key in ["llama.block_count", "llama.context_length"] {
        let path = patched("huge.gguf", |b| set_u32(b, key, 0x7fff_ffff));
        let err = open_err(&path);
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
        assert!(matches!(err, LmError::Unsupported(_)), "{key}: {err}");
        let short = key.trim_start_matches("llama.");
        assert!(
            err.to_string().contains(short) && err.to_string().contains("2147483647"),
            "{key}: {err}"
        );
    }
    // A block count that is within bounds but disagrees with the tensors.
    let path = patched("blocks.gguf", |b| set_u32(b, "llama.block_count", 31));
    let err = open_err(&path);
    assert!(err.to_string().contains("block_count"), "{err}");
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}

/// Regression (issue 15): a tensor offset 3 bytes off the file's alignment loaded silently and
/// generated garbage; it is now refused, naming the tensor.
#[test]
fn misaligned_tensor_offset_is_refused() {
    let tensor = "blk.0.attn_q.weight";
    let path = patched("misaligned.gguf", |b| {
        let at = after_string(b, tensor);
        let dims = u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize;
        let offset_at = at + 4 + 8 * dims + 4;
        let offset = u64::from_le_bytes(b[offset_at..offset_at + 8].try_into().unwrap());
        b[offset_at..offset_at + 8].copy_from_slice(&(offset + 3).to_le_bytes());
    });
    let err = open_err(&path);
    assert!(matches!(err, LmError::InvalidGguf { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains(tensor) && message.contains("alignment"),
        "{message}"
    );
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}
