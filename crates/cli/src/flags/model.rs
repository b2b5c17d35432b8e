//! The `--model` and `--device` flags: a built-in model name or a path to a GGUF file.

use anyhow::{Context, Result, bail};
use ralmspec_assets::{Asset, Store};
use ralmspec_lm::{Lm, LmError};
use std::path::{Path, PathBuf};

/// Built-in language models, by the name the CLI accepts.
pub const MODELS: [(&str, Asset); 2] = [
    ("smollm2", Asset::SmolLm2),
    ("qwen2.5-0.5b", Asset::Qwen25Coder05B),
];

/// Where the model computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Device {
    Cpu,
    Cuda,
}

/// `--model` and `--device`, as every command that runs the LM takes them.
#[derive(clap::Args, Debug, Clone)]
pub struct ModelFlags {
    /// smollm2, qwen2.5-0.5b, or a path to a GGUF file.
    #[arg(long = "model", value_name = "MODEL", default_value = "smollm2")]
    pub name: String,
    /// Where the LM computes: cpu, or cuda (GPU 0; a build with `--features cuda`).
    #[arg(long, value_enum, default_value_t = Device::Cpu)]
    pub device: Device,
}

impl ModelFlags {
    /// Loads the model on its device.
    pub fn load(&self) -> Result<Lm> {
        load(&self.name, self.device)
    }

    /// The model's GGUF path (a built-in model is fetched on first use).
    pub fn path(&self) -> Result<PathBuf> {
        resolve(&self.name)
    }
}

/// Resolves `--model` to a GGUF path, fetching a built-in model on first use.
pub fn resolve(model: &str) -> Result<PathBuf> {
    if let Some((_, asset)) = MODELS.iter().find(|(name, _)| *name == model) {
        let store = Store::from_env()?;
        return store
            .fetch(*asset)
            .with_context(|| format!("fetching model `{model}`"));
    }
    let path = PathBuf::from(model);
    if path.is_dir() {
        bail!(
            "--model {} is a directory; pass a GGUF file (such as {}) or a built-in model name ({})",
            path.display(),
            path.join("model.gguf").display(),
            MODELS.map(|(name, _)| name).join(", ")
        );
    }
    if model.ends_with(".gguf") || path.components().count() > 1 {
        if !path.is_file() {
            bail!("model file {} does not exist", path.display());
        }
        return Ok(path);
    }
    let known: Vec<&str> = MODELS.iter().map(|(n, _)| *n).collect();
    bail!(
        "unknown model `{model}`: use one of {} or a path to a .gguf file",
        known.join(", ")
    )
}

impl Device {
    /// The library's device: CUDA means GPU 0, weights in the library's default format.
    pub fn to_lm(self) -> ralmspec_lm::Device {
        match self {
            Device::Cpu => ralmspec_lm::Device::Cpu,
            Device::Cuda => ralmspec_lm::Device::cuda(0),
        }
    }
}

/// Loads `--model` for `--device`. A build without the `cuda` feature refuses `--device cuda`
/// before fetching anything.
pub fn load(model: &str, device: Device) -> Result<Lm> {
    if device == Device::Cuda && !cfg!(feature = "cuda") {
        bail!("--device cuda: {}", LmError::CudaNotBuilt);
    }
    let path = resolve(model)?;
    open(&path, device)
}

/// Opens a GGUF file on `device`.
pub fn open(path: &Path, device: Device) -> Result<Lm> {
    Lm::open_on(path, device.to_lm())
        .with_context(|| format!("loading {} for --device {}", path.display(), device.name()))
}

impl Device {
    fn name(self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
            Device::Cuda => "cuda",
        }
    }
}
