//! What the user sees while assets are fetched: one-line messages and a byte progress bar on
//! stderr. The bar is hidden when stderr is not a terminal (CI logs get the lines only).

use std::fmt::Display;
use std::io::IsTerminal;

use indicatif::{HumanBytes, ProgressBar, ProgressStyle};

/// Prints one status line to stderr.
pub(crate) fn say(msg: impl Display) {
    eprintln!("[ralmspec-assets] {msg}");
}

/// `1.23 MiB`-style size.
pub(crate) fn human(bytes: u64) -> String {
    HumanBytes(bytes).to_string()
}

/// A byte-counting bar of `len` bytes labelled `msg`, or a hidden one off a terminal.
pub(crate) fn bar(len: u64, msg: impl Into<String>) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len).with_message(msg.into());
    let style = ProgressStyle::with_template(
        "  {msg:24!} [{bar:30}] {bytes:>10}/{total_bytes:10} {bytes_per_sec:>12} eta {eta}",
    )
    .map(|s| s.progress_chars("=> "))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}
