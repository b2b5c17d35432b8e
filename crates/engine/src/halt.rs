//! How a generation ends, for both engines (RaLM and kNN-LM): why it stopped ([`Stop`], the LM
//! crate's one stop enum) and what a caller's commit callback may ask for instead of more
//! tokens ([`Halt`]).

/// Why generation stopped (the LM crate's one stop enum).
pub use ralmspec_lm::Stop;

/// What a commit callback may ask for instead of more tokens (`ControlFlow::Break`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Halt {
    /// The caller went away: generation stops with [`crate::EngineError::Cancelled`].
    Cancel,
    /// The answer is complete (a stop sequence appeared): generation stops after this commit
    /// and returns with [`Stop::Halted`]. It depends only on committed tokens, so every engine
    /// halts after the same commit.
    Finish,
}
