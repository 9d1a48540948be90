//! Real git remotes for tests: bare repositories on disk (file://) and
//! `git daemon` serving them (git://) on a loopback port the test picks.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Runs git in `dir`, panicking with its stderr on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Someone Else")
        .env("GIT_AUTHOR_EMAIL", "else@example.com")
        .env("GIT_COMMITTER_NAME", "Someone Else")
        .env("GIT_COMMITTER_EMAIL", "else@example.com")
        .output()
        .unwrap_or_else(|e| panic!("git {args:?}: {e}"));
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A bare repository with branch `main` holding `files`.
pub struct BareRepo {
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

impl BareRepo {
    pub fn new(files: &[(&str, &str)]) -> BareRepo {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("fleet.git");
        git(
            dir.path(),
            &[
                "init",
                "--quiet",
                "--bare",
                "--initial-branch=main",
                "fleet.git",
            ],
        );
        let work = dir.path().join("seed");
        git(
            dir.path(),
            &["init", "--quiet", "--initial-branch=main", "seed"],
        );
        for (name, text) in files {
            let file = work.join(name);
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{e}"));
            }
            std::fs::write(file, text).unwrap_or_else(|e| panic!("{e}"));
        }
        git(&work, &["add", "--all"]);
        git(&work, &["commit", "--quiet", "-m", "seed"]);
        git(
            &work,
            &["push", "--quiet", path.to_str().unwrap_or(""), "main"],
        );
        BareRepo { path, _dir: dir }
    }

    pub fn url(&self) -> String {
        format!("file://{}", self.path.display())
    }

    /// The commit a branch points at.
    pub fn head(&self, branch: &str) -> String {
        git(&self.path, &["rev-parse", &format!("refs/heads/{branch}")])
            .trim()
            .to_string()
    }

    /// Another person's commit on `branch`, changing `file`.
    pub fn commit_elsewhere(&self, branch: &str, file: &str, text: &str) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let url = self.url();
        git(
            dir.path(),
            &["clone", "--quiet", "--branch", branch, &url, "w"],
        );
        let work = dir.path().join("w");
        std::fs::write(work.join(file), text).unwrap_or_else(|e| panic!("{e}"));
        git(
            &work,
            &["commit", "--quiet", "-am", "someone else's change"],
        );
        git(&work, &["push", "--quiet", "origin", branch]);
    }

    /// `git log --format=%an|%s` of a branch, newest first.
    pub fn log(&self, branch: &str) -> Vec<String> {
        git(&self.path, &["log", "--format=%an|%s", branch])
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// A file's content at a branch's tip.
    pub fn show(&self, branch: &str, file: &str) -> String {
        git(&self.path, &["show", &format!("{branch}:{file}")])
    }
}

/// `git daemon` exporting one directory's repositories, pushes enabled.
pub struct GitDaemon {
    pub port: u16,
    child: Child,
}

impl GitDaemon {
    pub fn start(base: &Path) -> GitDaemon {
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .unwrap_or_else(|e| panic!("{e}"));
            let mut child = Command::new("git")
                .args([
                    "daemon",
                    "--export-all",
                    "--enable=receive-pack",
                    "--reuseaddr",
                    "--listen=127.0.0.1",
                ])
                .arg(format!("--port={port}"))
                .arg(format!("--base-path={}", base.display()))
                .arg(base)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("git daemon: {e}"));
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(5) {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return GitDaemon { port, child };
                }
                std::thread::sleep(Duration::from_millis(30));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("git daemon did not start");
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
