//! What a request asks of the engines: the iterative-RaLM rules every engine shares
//! ([`RalmConfig`]), and which RaLMSpec components are switched on ([`SpecConfig`]).

use serde::Serialize;

pub use crate::stride::Stride;

/// The rules of iterative retrieval-augmented generation (the paper's §1). Baseline and
/// speculative engines share them: they define the output. A request's new-token budget is
/// its own ([`crate::Ask::max_new_tokens`]), not the engine's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct RalmConfig {
    /// Retrieve every this many generated tokens.
    pub stride: usize,
    /// The query is the text of the last this many tokens of question + answer so far.
    pub query_tokens: usize,
    /// The retrieved document is cut to this many tokens.
    pub doc_tokens: usize,
}

impl Default for RalmConfig {
    fn default() -> Self {
        RalmConfig {
            stride: 4,
            query_tokens: 32,
            doc_tokens: 256,
        }
    }
}

/// Which RaLMSpec components are on. Every combination yields the baseline's tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct SpecConfig {
    /// The speculation stride policy.
    pub stride: Stride,
    /// Insert the top-`prefetch` documents of every real retrieval into the request's cache
    /// (0: only the top-1).
    pub prefetch: usize,
    /// Verify on another thread while the LM speculates the next step.
    pub async_verify: bool,
}

impl SpecConfig {
    /// Cache-only speculation with the paper's fixed stride of 3.
    pub const CACHE_ONLY: SpecConfig = SpecConfig {
        stride: Stride::Fixed(3),
        prefetch: 0,
        async_verify: false,
    };

    /// Every component: prefetching 20, OS³, asynchronous verification.
    pub const FULL: SpecConfig = SpecConfig {
        stride: Stride::Os3,
        prefetch: 20,
        async_verify: true,
    };

    /// A short name such as `s=3`, `+P+S+A`, for tables.
    pub fn label(&self) -> String {
        let mut label = match self.stride {
            Stride::Fixed(n) => format!("s={n}"),
            Stride::Os3 => String::new(),
        };
        if self.prefetch > 0 {
            label.push_str(&format!("+P{}", self.prefetch));
        }
        if self.stride == Stride::Os3 {
            label.push_str("+S");
        }
        if self.async_verify {
            label.push_str("+A");
        }
        label
    }
}

/// Which engine serves a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Engine {
    /// Retrieve, then generate, every stride (the reference behaviour).
    Baseline,
    /// Speculative retrieval with batched verification.
    Spec(SpecConfig),
}

impl Engine {
    /// `baseline`, or the speculation label.
    pub fn label(&self) -> String {
        match self {
            Engine::Baseline => "baseline".to_string(),
            Engine::Spec(spec) => spec.label(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert_eq!(SpecConfig::CACHE_ONLY.label(), "s=3");
        assert_eq!(SpecConfig::FULL.label(), "+P20+S+A");
        assert_eq!(Engine::Baseline.label(), "baseline");
    }

    #[test]
    fn strides_parse_as_the_cli_and_the_server_spell_them() {
        assert_eq!("os3".parse::<Stride>(), Ok(Stride::Os3));
        assert_eq!("4".parse::<Stride>(), Ok(Stride::Fixed(4)));
        for bad in ["0", "-1", "OS3", "", "3.5"] {
            assert!(bad.parse::<Stride>().is_err(), "{bad}");
        }
    }
}
