//! Running the `hoist` binary as a user would.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What one run of the binary printed and how it exited.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// The repository root, where `policies/` and `deploy/` live.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `hoist ARGS` in `dir` with `stdin` as standard input.
pub fn hoist(dir: &Path, args: &[&str], stdin: &str) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hoist"))
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .env_remove("HOIST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting hoist: {e}"));
    if let Some(mut input) = child.stdin.take() {
        // hoist may exit (bad flags, invalid file) before reading stdin.
        if let Err(e) = input.write_all(stdin.as_bytes()) {
            assert_eq!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe,
                "writing stdin: {e}"
            );
        }
    }
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("waiting for hoist: {e}"));
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A temporary directory holding the given files.
pub fn files(entries: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    for (name, text) in entries {
        let path = dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("mkdir: {e}"));
        }
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {name}: {e}"));
    }
    dir
}

pub mod cluster;
pub mod controller;
pub mod flux;
pub mod forge;
pub mod git;
pub mod http;
pub mod registry;
pub mod token;

/// Runs `hoist ARGS` in `dir` with extra environment variables.
pub fn hoist_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_hoist"))
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .env_remove("HOIST_LOG")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running hoist: {e}"));
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Whether tests must find their servers instead of skipping without them.
pub fn required() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}
pub mod kube;

/// Polls `check` every `every` until it gives a value, or panics naming
/// `what` after `timeout`.
pub fn wait_for<T>(
    what: &str,
    timeout: std::time::Duration,
    every: std::time::Duration,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let started = std::time::Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(every);
    }
}

/// The address hoist logged for `listener` (`metrics` or `webhook`) in
/// `log`: "LISTENER: listening on ADDR", in text or JSON lines. Tests give
/// hoist port 0 and read the port back, so no other process can take a
/// port between a test picking it and hoist binding it.
pub fn listening_on(log: &str, listener: &str) -> Option<String> {
    let marker = format!("{listener}: listening on ");
    log.lines().find_map(|line| {
        let rest = &line[line.find(&marker)? + marker.len()..];
        let addr: String = rest
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != '"')
            .collect();
        (!addr.is_empty()).then_some(addr)
    })
}

/// A kstatus condition of an object: status, reason and message.
pub fn condition(object: &serde_json::Value, type_: &str) -> Option<(String, String, String)> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| {
            (
                c["status"].as_str().unwrap_or("").to_string(),
                c["reason"].as_str().unwrap_or("").to_string(),
                c["message"].as_str().unwrap_or("").to_string(),
            )
        })
}
