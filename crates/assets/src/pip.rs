//! Downloading wheels from PyPI with the user's own pip (`pip download --no-deps`), so the
//! index, proxy and certificate settings pip already has (pip.conf, PIP_* variables) apply.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{IsTerminal, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;

use crate::error::{AssetError, Result};

/// Lines of pip's stderr kept for the error message.
const TAIL_LINES: usize = 15;

/// A working pip invocation: `program args...`.
#[derive(Debug, Clone)]
pub(crate) struct Pip {
    program: OsString,
    args: Vec<OsString>,
}

impl Pip {
    /// The first pip that answers `--version`: `$RALMSPEC_PYTHON -m pip`, `python3 -m pip`,
    /// `pip3`, `pip`.
    pub(crate) fn find() -> Result<Pip> {
        let mut candidates = Vec::new();
        if let Some(py) = std::env::var_os("RALMSPEC_PYTHON").filter(|p| !p.is_empty()) {
            candidates.push(Pip::python(py));
        }
        candidates.push(Pip::python("python3".into()));
        candidates.push(Pip::plain("pip3"));
        candidates.push(Pip::plain("pip"));
        let mut tried = Vec::new();
        for pip in candidates {
            let ok = pip
                .command()
                .arg("--version")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return Ok(pip);
            }
            tried.push(pip.display());
        }
        Err(AssetError::PipMissing {
            tried: tried.join(", "),
        })
    }

    fn python(python: OsString) -> Pip {
        Pip {
            program: python,
            args: vec!["-m".into(), "pip".into()],
        }
    }

    fn plain(name: &str) -> Pip {
        Pip {
            program: name.into(),
            args: Vec::new(),
        }
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args);
        cmd
    }

    fn display(&self) -> String {
        std::iter::once(&self.program)
            .chain(&self.args)
            .map(|s| s.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Downloads the wheel of `package==version` (no dependencies, binary only) into `dir`.
    /// pip's output is passed through to stderr; on failure its stderr tail is in the error.
    pub(crate) fn download(&self, package: &str, version: &str, dir: &Path) -> Result<()> {
        let spec = format!("{package}=={version}");
        let mut cmd = self.command();
        cmd.args(["download", "--no-deps", "--only-binary=:all:"])
            .args(["--disable-pip-version-check", "--no-input"])
            .arg("--dest")
            .arg(dir)
            .arg(&spec);
        if !std::io::stderr().is_terminal() {
            cmd.args(["--progress-bar", "off"]);
        }
        let shown = format!(
            "{} download --no-deps -d {} {spec}",
            self.display(),
            dir.display()
        );
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| AssetError::io(&self.program, e))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        // Both streams go to our stderr (stdout stays free for a caller's output);
        // stderr is also kept for the error message.
        let out_thread = thread::spawn(move || forward(stdout, false));
        let err_thread = thread::spawn(move || forward(stderr, true));
        let status = child.wait().map_err(|e| AssetError::io(&self.program, e))?;
        let _ = out_thread.join();
        let err_text = err_thread.join().unwrap_or_default();
        if status.success() {
            return Ok(());
        }
        let stderr_tail = tail(&err_text, TAIL_LINES);
        Err(AssetError::PipFailed {
            package: spec,
            command: shown,
            code: status.code(),
            hint: hint(&err_text),
            stderr_tail,
        })
    }
}

/// Copies `from` to our stderr as it comes; returns what was read when `keep`.
fn forward(mut from: impl Read, keep: bool) -> String {
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let mut err = std::io::stderr().lock();
                let _ = err.write_all(&buf[..n]);
                let _ = err.flush();
                if keep {
                    kept.extend_from_slice(&buf[..n]);
                }
            }
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}

/// The last `n` non-empty lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let mut lines: VecDeque<&str> = VecDeque::with_capacity(n + 1);
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if lines.len() == n {
            lines.pop_front();
        }
        lines.push_back(line.trim_end());
    }
    Vec::from(lines).join("\n")
}

/// A guess at why pip failed, from its stderr.
pub(crate) fn hint(stderr: &str) -> Option<String> {
    const NETWORK: &[&str] = &[
        "NewConnectionError",
        "Temporary failure in name resolution",
        "Name or service not known",
        "Network is unreachable",
        "Connection refused",
        "ConnectTimeoutError",
        "ReadTimeoutError",
        "Max retries exceeded",
        "ProxyError",
        "SSLError",
        "(from versions: none)",
    ];
    if NETWORK.iter().any(|p| stderr.contains(p)) {
        return Some(
            "this looks like no network access to the package index (PyPI): check the \
             connection, proxy, PIP_INDEX_URL / pip.conf, then rerun; wheels already \
             downloaded are kept under <store>/.wheels"
                .to_owned(),
        );
    }
    if stderr.contains("No space left on device") {
        return Some("disk full: free some space or point RALMSPEC_HOME at a larger disk".into());
    }
    if stderr.contains("No matching distribution") {
        return Some("the index has no wheel of this exact version".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_recognise_no_network() {
        let offline = "ERROR: Could not find a version that satisfies the requirement \
                       fanoutqa==1.1.1 (from versions: none)\nERROR: No matching distribution \
                       found for fanoutqa==1.1.1";
        assert!(hint(offline).unwrap().contains("no network"));
        let dns = "WARNING: Retrying ... NewConnectionError('<...>: Failed to establish a new \
                   connection: [Errno -3] Temporary failure in name resolution')";
        assert!(hint(dns).unwrap().contains("no network"));
        let wrong_version = "ERROR: Could not find a version that satisfies the requirement \
                             fanoutqa==99 (from versions: 1.0.0, 1.1.1)\nERROR: No matching \
                             distribution found for fanoutqa==99";
        assert!(hint(wrong_version).unwrap().contains("no wheel"));
        assert_eq!(hint("ERROR: something else"), None);
    }

    #[test]
    fn tail_keeps_last_lines() {
        let text = (1..=20).map(|i| format!("l{i}\n\n")).collect::<String>();
        assert_eq!(tail(&text, 3), "l18\nl19\nl20");
        assert_eq!(tail("a\n", 3), "a");
    }
}
