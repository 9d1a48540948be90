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

    /// Serves this repository over smart HTTP, to anyone; its `http://` URL.
    pub fn serve_http(&self) -> (GitHttp, String) {
        let base = self.path.parent().unwrap_or(&self.path);
        let http = GitHttp::anonymous(base);
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let url = format!("http://{}/{name}", http.server.addr);
        (http, url)
    }

    /// Serves this repository with `git daemon`; its `git://` URL.
    pub fn serve(&self) -> (GitDaemon, String) {
        let base = self.path.parent().unwrap_or(&self.path);
        let daemon = GitDaemon::start(base);
        let url = format!("git://127.0.0.1:{}/fleet.git", daemon.port);
        (daemon, url)
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

    /// The branches, sorted.
    pub fn branches(&self) -> Vec<String> {
        git(
            &self.path,
            &["for-each-ref", "--format=%(refname:short)", "refs/heads"],
        )
        .lines()
        .map(str::to_string)
        .collect()
    }

    /// Points `branch` at `source`'s tip, as a fast-forward merge does.
    pub fn fast_forward(&self, branch: &str, source: &str) {
        let tip = self.head(source);
        git(
            &self.path,
            &["update-ref", &format!("refs/heads/{branch}"), &tip],
        );
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
            // git-daemon itself, not `git daemon`: the `git` wrapper runs it
            // as a child, and killing the wrapper would leave it serving.
            let mut child = Command::new(daemon_program())
                .args([
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

/// The `git-daemon` program in git's exec path.
fn daemon_program() -> PathBuf {
    let out = Command::new("git")
        .arg("--exec-path")
        .output()
        .unwrap_or_else(|e| panic!("git --exec-path: {e}"));
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("git-daemon")
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `git http-backend` behind Basic auth, served by the in-process HTTP
/// server: the smart HTTP protocol as a forge speaks it.
pub struct GitHttp {
    pub server: super::http::FakeServer,
}

impl GitHttp {
    pub fn start(base: &Path, username: &str, password: &str) -> GitHttp {
        use base64::Engine;
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
        );
        Self::serve(base, Some(expected))
    }

    /// Serves the repositories under `base` to requests that carry
    /// `Authorization: Bearer TOKEN`, as Flux's `bearerToken` sends it.
    pub fn bearer(base: &Path, token: &str) -> GitHttp {
        Self::serve(base, Some(format!("Bearer {token}")))
    }

    /// Serves the repositories under `base` to anyone, as a public forge
    /// repository is.
    pub fn anonymous(base: &Path) -> GitHttp {
        Self::serve(base, None)
    }

    /// Basic auth, over HTTPS with the server certificate of `tls` (for
    /// 127.0.0.1, signed by its test CA).
    pub fn start_tls(
        base: &Path,
        username: &str,
        password: &str,
        tls: &super::registry::TlsFiles,
    ) -> GitHttp {
        use base64::Engine;
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
        );
        Self::serve_over(base, Some(expected), Some(tls))
    }

    fn serve(base: &Path, expected: Option<String>) -> GitHttp {
        Self::serve_over(base, expected, None)
    }

    fn serve_over(
        base: &Path,
        expected: Option<String>,
        tls: Option<&super::registry::TlsFiles>,
    ) -> GitHttp {
        let base = base.to_path_buf();
        let handler = move |request: &super::http::Request, _| {
            use super::http::Reply;
            if expected
                .as_deref()
                .is_some_and(|expected| request.header("authorization") != Some(expected))
            {
                return Reply::Respond {
                    status: 401,
                    headers: vec![("WWW-Authenticate".into(), "Basic realm=\"git\"".into())],
                    body: b"authentication required\n".to_vec(),
                };
            }
            let (path, query) = request
                .target
                .split_once('?')
                .unwrap_or((&request.target, ""));
            let mut child = Command::new("git")
                .arg("http-backend")
                .env("GIT_PROJECT_ROOT", &base)
                .env("GIT_HTTP_EXPORT_ALL", "1")
                .env("PATH_INFO", path)
                .env("QUERY_STRING", query)
                .env("REQUEST_METHOD", &request.method)
                .env("CONTENT_TYPE", request.header("content-type").unwrap_or(""))
                .env("CONTENT_LENGTH", request.body.len().to_string())
                .env("REMOTE_USER", "tester")
                .env("REMOTE_ADDR", "127.0.0.1")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("git http-backend: {e}"));
            if let Some(mut stdin) = child.stdin.take() {
                use std::io::Write;
                let _ = stdin.write_all(&request.body);
            }
            let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
            // CGI: headers, a blank line, the body.
            let split = out
                .stdout
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map(|i| (i, 4))
                .or_else(|| {
                    out.stdout
                        .windows(2)
                        .position(|w| w == b"\n\n")
                        .map(|i| (i, 2))
                });
            let Some((at, gap)) = split else {
                return Reply::json(500, "bad CGI output");
            };
            let head = String::from_utf8_lossy(&out.stdout[..at]).into_owned();
            let mut status = 200;
            let mut headers = Vec::new();
            for line in head.lines() {
                if let Some((k, v)) = line.split_once(':') {
                    if k.eq_ignore_ascii_case("status") {
                        status = v
                            .trim()
                            .split(' ')
                            .next()
                            .and_then(|s| s.parse().ok())
                            .unwrap_or(200);
                    } else {
                        headers.push((k.trim().to_string(), v.trim().to_string()));
                    }
                }
            }
            Reply::Respond {
                status,
                headers,
                body: out.stdout[at + gap..].to_vec(),
            }
        };
        let server = match tls {
            None => super::http::FakeServer::start(handler),
            Some(tls) => {
                super::http::FakeServer::start_tls(&tls.server_cert, &tls.server_key, handler)
            }
        };
        GitHttp { server }
    }
}

/// sshd on a loopback port, for git over ssh: a fresh host key, one client
/// key authorised for the current user (root in CI).
pub struct Sshd {
    pub port: u16,
    /// The client's private key, as a Secret's `identity` holds it.
    pub identity: String,
    /// `[127.0.0.1]:PORT <host key>`, as a Secret's `known_hosts` holds it.
    pub known_hosts: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Sshd {
    /// Starts sshd, or None when this machine cannot (no sshd, not root)
    /// and the test may skip (outside CI).
    pub fn start() -> Option<Sshd> {
        let root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| o.stdout == b"0\n")
            .unwrap_or(false);
        if !Path::new("/usr/sbin/sshd").exists() || !root {
            assert!(
                !super::required(),
                "sshd tests need /usr/sbin/sshd (openssh-server) and root"
            );
            eprintln!("skipping: sshd tests need /usr/sbin/sshd and root");
            return None;
        }
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let p = |name: &str| dir.path().join(name);
        for key in ["host", "client"] {
            let status = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", key, "-f"])
                .arg(p(key))
                .status()
                .unwrap_or_else(|e| panic!("ssh-keygen: {e}"));
            assert!(status.success(), "ssh-keygen failed");
        }
        std::fs::copy(p("client.pub"), p("authorized_keys")).unwrap_or_else(|e| panic!("{e}"));
        // sshd insists on its privilege separation directory.
        std::fs::create_dir_all("/run/sshd").unwrap_or_else(|e| panic!("/run/sshd: {e}"));
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .unwrap_or_else(|e| panic!("{e}"));
            let config = format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\nPidFile {}\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nLogLevel ERROR\n",
                p("host").display(),
                p("authorized_keys").display(),
                p("sshd.pid").display()
            );
            std::fs::write(p("sshd_config"), config).unwrap_or_else(|e| panic!("{e}"));
            let mut child = Command::new("/usr/sbin/sshd")
                .args(["-D", "-e", "-f"])
                .arg(p("sshd_config"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("sshd: {e}"));
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(5) {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    let host = std::fs::read_to_string(p("host.pub")).unwrap_or_default();
                    let host_key = host
                        .split_whitespace()
                        .take(2)
                        .collect::<Vec<_>>()
                        .join(" ");
                    return Some(Sshd {
                        port,
                        identity: std::fs::read_to_string(p("client")).unwrap_or_default(),
                        known_hosts: format!("[127.0.0.1]:{port} {host_key}\n"),
                        child,
                        _dir: dir,
                    });
                }
                std::thread::sleep(Duration::from_millis(30));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("sshd did not start");
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every hook git knows, so that a test can see whether any of them ran.
pub const HOOKS: &[&str] = &[
    "applypatch-msg",
    "pre-applypatch",
    "post-applypatch",
    "pre-commit",
    "pre-merge-commit",
    "prepare-commit-msg",
    "commit-msg",
    "post-commit",
    "pre-rebase",
    "post-checkout",
    "post-merge",
    "pre-push",
    "pre-receive",
    "update",
    "proc-receive",
    "post-receive",
    "post-update",
    "reference-transaction",
    "push-to-checkout",
    "pre-auto-gc",
    "post-rewrite",
    "sendemail-validate",
    "fsmonitor-watchman",
    "post-index-change",
];

/// An executable script at `path` that appends `name` to `marker`.
pub fn marker_script(path: &Path, name: &str, marker: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let script = format!(
        "#!/bin/sh\ncat >/dev/null 2>&1\necho {name} >> '{}'\n",
        marker.display()
    );
    std::fs::write(path, script).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// Every hook in `hooks`, each appending its name to `marker` when run.
pub fn arm_hooks(hooks: &Path, marker: &Path) {
    std::fs::create_dir_all(hooks).unwrap_or_else(|e| panic!("{e}"));
    for name in HOOKS {
        marker_script(&hooks.join(name), name, marker);
    }
}
