//! Headless Chromium for the page tests (tests/dashboard.rs, tests/history.rs), and running a
//! command with a deadline.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs `command` to completion, killing it (and failing the test) after `deadline`.
pub fn run_bounded(command: &mut Command, deadline: Duration) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {command:?}: {e}"));
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{command:?} still running after {deadline:?}; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.is_file())
}

/// Headless Chromium, isolated (fresh profile, no background traffic, no proxy), loading only
/// `url` on loopback, with a window of `size` (`W,H`).
pub fn chromium(url: &str, size: &str, mode: &str) -> Output {
    let chromium = which("chromium").expect(
        "chromium is not installed: run scripts/test.sh, which installs it (Debian package `chromium`)",
    );
    let profile = tempfile::tempdir().unwrap();
    let out = run_bounded(
        Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-default-apps",
                "--disable-extensions",
                "--disable-breakpad",
                "--no-proxy-server",
                "--dns-prefetch-disable",
                "--hide-scrollbars",
            ])
            .arg(format!("--window-size={size}"))
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(mode)
            .arg(url),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "chromium {mode} {url} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Saves a screenshot of `url` at `path` and checks it is a real PNG of at least `min_bytes`
/// (a blank page compresses to a few hundred bytes; text and tables take far more).
pub fn screenshot(url: &str, size: &str, path: &Path, min_bytes: usize) {
    let _ = std::fs::remove_file(path);
    chromium(url, size, &format!("--screenshot={}", path.display()));
    let png = std::fs::read(path).unwrap_or_else(|e| panic!("no screenshot at {path:?}: {e}"));
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{path:?} is not a PNG"
    );
    assert!(
        png.len() > min_bytes,
        "{path:?} is only {} bytes",
        png.len()
    );
    eprintln!("screenshot: {}", path.display());
}
