//! How many speculation steps run before one batched verification: the one setting both
//! speculative engines (RaLMSpec and speculative kNN-LM) share, spelled one way everywhere
//! (`Stride: FromStr`, used by the CLI's flags and the server's JSON).

use serde::Serialize;

/// How many speculation steps run before one batched verification.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Stride {
    /// Always this many (the paper's default without OS³ is 3).
    Fixed(usize),
    /// Chosen before every round by the OS³ scheduler (the paper's §4), starting at 1.
    Os3,
}

impl std::str::FromStr for Stride {
    type Err = String;

    /// `os3`, or a fixed number of steps ≥ 1 (the one spelling the CLI and the server take).
    fn from_str(s: &str) -> Result<Stride, String> {
        match s {
            "os3" => Ok(Stride::Os3),
            _ => match s.parse::<usize>() {
                Ok(n) if n >= 1 => Ok(Stride::Fixed(n)),
                _ => Err(format!("`{s}`: expected `os3` or a number ≥ 1")),
            },
        }
    }
}
