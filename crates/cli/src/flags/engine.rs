//! The engine flags `ask` and `serve` share: `--engine`, `--prefetch`, `--stride`, `--async`.

use ralmspec_engine::{Engine, SpecConfig, Stride};

/// Which engine answers, and RaLMSpec's components.
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct EngineFlags {
    /// baseline (retrieve every stride) or spec (RaLMSpec).
    #[arg(long, value_enum, default_value_t = EngineArg::Spec)]
    engine: EngineArg,
    /// RaLMSpec: prefetch the top-K documents of every real retrieval into the cache (0: off).
    #[arg(long, default_value_t = 20)]
    prefetch: usize,
    /// RaLMSpec: speculation steps per verification, `os3` (scheduled) or a number.
    #[arg(long, default_value = "os3")]
    stride: Stride,
    /// RaLMSpec: verify on another thread while the LM keeps speculating.
    #[arg(long = "async")]
    async_verify: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum EngineArg {
    Baseline,
    Spec,
}

impl EngineFlags {
    /// The engine these flags describe.
    pub fn engine(&self) -> Engine {
        match self.engine {
            EngineArg::Baseline => Engine::Baseline,
            EngineArg::Spec => Engine::Spec(SpecConfig {
                stride: self.stride,
                prefetch: self.prefetch,
                async_verify: self.async_verify,
            }),
        }
    }
}
