//! The web page in a real browser: Debian's Chromium, headless, driven by Playwright
//! (`playwright-core` from npm, the system Chromium as its executable) through
//! `tests/browser/page.mjs`, against the real server on a loopback socket. The script checks
//! that the page loads without a console error, that a question gets its answer with sources,
//! that the timeline draws rounds and a forced rollback (fixed stride 8, no prefetch) as one,
//! that the race ends with identical answers and that the server panels fill; it writes
//! screenshots at 1280 and 390 pixels wide to `target/artifacts/page/` (or
//! `$RALMSPEC_ARTIFACTS/page/`).
//!
//! `scripts/test.sh` installs Chromium (apt) and the script's npm package, and sets
//! `RALMSPEC_REQUIRE_BROWSER=1`, so CI fails rather than skips; elsewhere, without them, the
//! test is skipped with a message.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

#[test]
fn the_page_in_chromium() {
    let script_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let ready = chromium().exists() && script_dir.join("node_modules/playwright-core").exists();
    if !ready {
        let why = format!(
            "needs {} and `npm ci` in {} (scripts/test.sh does both)",
            chromium().display(),
            script_dir.display()
        );
        if std::env::var_os("RALMSPEC_REQUIRE_BROWSER").is_some_and(|v| v == "1") {
            panic!("the browser test {why}");
        }
        eprintln!("skipped: the browser test {why}");
        return;
    }
    let artifacts = std::env::var_os("RALMSPEC_ARTIFACTS")
        .map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/artifacts"),
            PathBuf::from,
        )
        .join("page");

    let server = common::live(common::config());
    let base = format!("http://{}", server.addr);

    let out = Command::new("node")
        .arg(script_dir.join("page.mjs"))
        .arg(&base)
        .arg(&artifacts)
        .env("CHROMIUM", chromium())
        .output()
        .expect("node runs");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{log}");
    server.shut_down();
    assert!(out.status.success(), "the page test failed:\n{log}");
    for shot in ["page-1280.png", "page-390.png"] {
        let path = artifacts.join(shot);
        let size = std::fs::metadata(&path).map_or(0, |m| m.len());
        assert!(size > 10_000, "{}: {size} bytes", path.display());
    }
}
