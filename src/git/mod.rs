//! The git stage: a cached checkout per repository URL and branch, commits
//! of what the rewrite stage changed, and pushes that never overwrite
//! commits hoist did not make.
//!
//! Every operation runs the `git` command rather than a library. DESIGN.md
//! planned gix for clone, fetch and commit; the `git` command is used
//! instead because push needs it anyway, and with one program every
//! transport (https, ssh, git://, file://), credential helper, ssh config,
//! known_hosts file and proxy setting a user has works exactly as it does
//! for them, with no second TLS or ssh stack inside hoist.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A branch of a remote repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Branch {
    pub url: String,
    pub name: String,
}

/// A working tree of `branch`, in hoist's cache, reset to the remote tip.
#[derive(Clone, Debug)]
pub struct Checkout {
    pub dir: PathBuf,
    pub branch: Branch,
    /// The commit the remote branch pointed at when fetched.
    pub base: String,
}

/// Author and committer of hoist's commits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    pub name: String,
    pub email: String,
}

/// The parts of a commit hoist decides on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Commit {
    pub id: String,
    pub parent: Option<String>,
    pub tree: String,
    pub author: String,
    /// `Name <email>`
    pub committer: String,
    pub message: String,
}

/// What a push did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Push {
    /// The branch now points at this commit.
    Pushed(String),
    /// The branch moved since it was fetched; nothing was overwritten.
    Rejected(String),
}

/// Why a git operation failed. Messages never carry the credentials a URL
/// may hold.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("git {command}: {message}")]
    Command { command: String, message: String },
    #[error("{url}: branch {branch:?} does not exist")]
    MissingBranch { url: String, branch: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Runs `git` with a fixed, non-interactive environment.
#[derive(Clone, Debug, Default)]
pub struct Git {
    /// Extra environment, e.g. `GIT_ASKPASS` or `GIT_SSH_COMMAND` for a
    /// Secret's credentials. Never argv: other users can read argv.
    pub env: Vec<(OsString, OsString)>,
    /// Extra `-c key=value` settings.
    pub config: Vec<String>,
}

/// Credentials from a Secret, under Flux's keys.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct GitCredentials {
    /// `username` / `password`: HTTPS Basic auth (or a token as password).
    pub username: Option<String>,
    pub password: Option<String>,
    /// `identity`: an SSH private key; `known_hosts`: the host keys to trust.
    pub identity: Option<Vec<u8>>,
    pub known_hosts: Option<Vec<u8>>,
}

impl std::fmt::Debug for GitCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitCredentials")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("identity", &self.identity.as_ref().map(|_| "<redacted>"))
            .field("known_hosts", &self.known_hosts.is_some())
            .finish()
    }
}

/// `GIT_*` variables of the parent environment that may reach hoist's git:
/// ones that configure transports and identity, never ones that choose a
/// repository, index, object store or configuration.
const ALLOWED_GIT_ENV: &[&str] = &[
    "GIT_SSH",
    "GIT_SSH_COMMAND",
    "GIT_SSH_VARIANT",
    "GIT_ASKPASS",
    "GIT_SSL_CAINFO",
    "GIT_SSL_CAPATH",
    "GIT_PROXY_COMMAND",
    "GIT_TRACE",
    "GIT_CURL_VERBOSE",
];

/// Answers git's username and password prompts from the environment, so
/// the secret never appears in argv or a file.
const ASKPASS: &str = "#!/bin/sh\ncase \"$1\" in\n  Username*) printf '%s\\n' \"$HOIST_GIT_USERNAME\" ;;\n  *) printf '%s\\n' \"$HOIST_GIT_PASSWORD\" ;;\nesac\n";

/// `https://user:secret@host/x` → `https://host/x`, for messages.
pub fn redact(text: &str) -> String {
    crate::redact::strip_userinfo(text)
}

impl Git {
    /// A git that authenticates with `credentials` instead of the user's
    /// helpers. Key files and the askpass script go under `dir` (mode 0700).
    /// SSH host keys are always verified: with `known_hosts` against it,
    /// otherwise against the user's.
    pub fn with_credentials(
        &self,
        credentials: &GitCredentials,
        dir: &Path,
    ) -> Result<Git, GitError> {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| GitError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        // git runs in other directories; the paths it is given must be absolute.
        let dir = &std::fs::canonicalize(dir).map_err(io(dir))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
        let write = |name: &str, contents: &[u8], mode: u32| -> Result<PathBuf, GitError> {
            use std::io::Write;
            let path = dir.join(name);
            let _ = std::fs::remove_file(&path);
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&path)
                .map_err(io(&path))?;
            file.write_all(contents).map_err(io(&path))?;
            Ok(path)
        };
        let mut git = self.clone();
        if credentials.username.is_some() || credentials.password.is_some() {
            let askpass = write("askpass", ASKPASS.as_bytes(), 0o700)?;
            git.env
                .push(("GIT_ASKPASS".into(), askpass.into_os_string()));
            git.env.push((
                "HOIST_GIT_USERNAME".into(),
                credentials.username.clone().unwrap_or_default().into(),
            ));
            git.env.push((
                "HOIST_GIT_PASSWORD".into(),
                credentials.password.clone().unwrap_or_default().into(),
            ));
            // The Secret decides, not whatever helper the user configured.
            git.config.push("credential.helper=".into());
        }
        if credentials.identity.is_some() || credentials.known_hosts.is_some() {
            // Paths reach ssh through the environment, so no path can
            // inject shell syntax into GIT_SSH_COMMAND.
            let mut ssh = String::from("ssh -o BatchMode=yes -o StrictHostKeyChecking=yes");
            if let Some(identity) = &credentials.identity {
                let key = write("identity", identity, 0o600)?;
                git.env
                    .push(("HOIST_GIT_IDENTITY".into(), key.into_os_string()));
                ssh.push_str(" -o IdentitiesOnly=yes -i \"$HOIST_GIT_IDENTITY\"");
            }
            if let Some(known) = &credentials.known_hosts {
                let known = write("known_hosts", known, 0o600)?;
                git.env
                    .push(("HOIST_GIT_KNOWN_HOSTS".into(), known.into_os_string()));
                ssh.push_str(" -o UserKnownHostsFile=\"$HOIST_GIT_KNOWN_HOSTS\"");
            }
            git.env.push(("GIT_SSH_COMMAND".into(), ssh.into()));
        }
        Ok(git)
    }

    fn command(&self, dir: Option<&Path>) -> Command {
        let mut command = Command::new("git");
        // Variables a git hook or `rebase -x` exports would point git at the
        // user's own repository; none of them may reach hoist's git.
        for (key, _) in std::env::vars_os() {
            let name = key.to_string_lossy();
            if name.starts_with("GIT_") && !ALLOWED_GIT_ENV.contains(&name.as_ref()) {
                command.env_remove(&key);
            }
        }
        if let Some(dir) = dir {
            // Explicit, and absolute since git runs inside `dir`: never
            // discover a repository above the cache.
            let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
            command
                .current_dir(&dir)
                .arg(format!("--git-dir={}", dir.join(".git").display()))
                .arg(format!("--work-tree={}", dir.display()));
        }
        command
            // Hooks and signing belong to the user's own checkouts, not to
            // hoist's cache; prompts would hang an unattended run.
            .args([
                "-c",
                "core.hooksPath=/dev/null",
                "-c",
                "commit.gpgsign=false",
                "-c",
                "advice.detachedHead=false",
            ])
            .args(self.config.iter().flat_map(|c| ["-c", c.as_str()]))
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("LC_ALL", "C")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        command
    }

    /// Runs git and returns its stdout; a failure carries its stderr.
    fn run(
        &self,
        dir: Option<&Path>,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<String, GitError> {
        let out = self
            .command(dir)
            .args(args)
            .envs(env.iter().copied())
            .output()
            .map_err(|e| GitError::Command {
                command: args.first().copied().unwrap_or("").to_string(),
                message: format!("cannot run git: {e}"),
            })?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let message = stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                l.trim_start_matches("fatal: ")
                    .trim_start_matches("error: ")
            })
            .collect::<Vec<_>>()
            .join("; ");
        Err(GitError::Command {
            command: args.first().copied().unwrap_or("").to_string(),
            message: redact(if message.is_empty() {
                "failed"
            } else {
                &message
            }),
        })
    }

    /// A checkout of `branch` under `cache`, one directory per URL and
    /// branch: cloned shallow the first time, fetched and reset later.
    /// Whatever an earlier run left in the tree is discarded.
    pub fn checkout(&self, cache: &Path, branch: &Branch) -> Result<Checkout, GitError> {
        use sha2::Digest;
        let key = format!(
            "{:x}",
            sha2::Sha256::digest(format!("{}\n{}", branch.url, branch.name))
        );
        let dir = cache.join(&key[..16]);
        let remove = |dir: &Path| {
            std::fs::remove_dir_all(dir).map_err(|source| GitError::Io {
                path: dir.to_path_buf(),
                source,
            })
        };
        if dir.join(".git").is_dir() {
            match self.refresh(&dir, branch) {
                Ok(()) => {}
                Err(e @ GitError::MissingBranch { .. }) => return Err(e),
                Err(e) => {
                    // A killed run can leave lock files or a half-made
                    // clone; the cache is hoist's, so start it afresh.
                    tracing::warn!(dir = %dir.display(), "the cached checkout cannot be reused ({e}); cloning again");
                    remove(&dir)?;
                    self.clone_into(cache, &dir, branch)?;
                }
            }
        } else {
            if dir.exists() {
                remove(&dir)?;
            }
            self.clone_into(cache, &dir, branch)?;
        }
        let base = self
            .run(Some(&dir), &["rev-parse", "HEAD"], &[])?
            .trim()
            .to_string();
        Ok(Checkout {
            dir,
            branch: branch.clone(),
            base,
        })
    }

    fn missing_branch(branch: &Branch, e: GitError) -> GitError {
        match e {
            GitError::Command { ref message, .. }
                if message.contains("Remote branch") && message.contains("not found")
                    || message.contains("couldn't find remote ref") =>
            {
                GitError::MissingBranch {
                    url: redact(&branch.url),
                    branch: branch.name.clone(),
                }
            }
            other => other,
        }
    }

    /// Brings an existing cached checkout to the remote tip.
    fn refresh(&self, dir: &Path, branch: &Branch) -> Result<(), GitError> {
        let own = self.run(Some(dir), &["rev-parse", "--absolute-git-dir"], &[])?;
        let expected = std::fs::canonicalize(dir.join(".git")).unwrap_or_else(|_| dir.join(".git"));
        if Path::new(own.trim()) != expected {
            return Err(GitError::Command {
                command: "rev-parse".into(),
                message: "the cache directory is not a repository of its own".into(),
            });
        }
        self.run(
            Some(dir),
            &["remote", "set-url", "origin", &branch.url],
            &[],
        )?;
        let refspec = format!("+refs/heads/{0}:refs/remotes/origin/{0}", branch.name);
        self.run(
            Some(dir),
            &["fetch", "--depth", "1", "--no-tags", "origin", &refspec],
            &[],
        )
        .map_err(|e| Self::missing_branch(branch, e))?;
        let remote = format!("refs/remotes/origin/{}", branch.name);
        self.run(
            Some(dir),
            &["checkout", "--force", "-B", &branch.name, &remote],
            &[],
        )?;
        self.run(Some(dir), &["clean", "-fdx"], &[])?;
        Ok(())
    }

    fn clone_into(&self, cache: &Path, dir: &Path, branch: &Branch) -> Result<(), GitError> {
        std::fs::create_dir_all(cache).map_err(|source| GitError::Io {
            path: cache.to_path_buf(),
            source,
        })?;
        let target = dir.to_string_lossy().into_owned();
        self.run(
            None,
            &[
                "clone",
                "--depth",
                "1",
                "--no-tags",
                "--single-branch",
                "--branch",
                &branch.name,
                "--",
                &branch.url,
                &target,
            ],
            &[],
        )
        .map_err(|e| Self::missing_branch(branch, e))?;
        Ok(())
    }

    /// Commits everything changed in the checkout, or returns None when
    /// nothing changed.
    pub fn commit(
        &self,
        checkout: &Checkout,
        author: &Signature,
        message: &str,
    ) -> Result<Option<String>, GitError> {
        self.run(Some(&checkout.dir), &["add", "--all"], &[])?;
        if self
            .run(Some(&checkout.dir), &["diff", "--cached", "--quiet"], &[])
            .is_ok()
        {
            return Ok(None);
        }
        let env = [
            ("GIT_AUTHOR_NAME", author.name.as_str()),
            ("GIT_AUTHOR_EMAIL", author.email.as_str()),
            ("GIT_COMMITTER_NAME", author.name.as_str()),
            ("GIT_COMMITTER_EMAIL", author.email.as_str()),
        ];
        self.run(
            Some(&checkout.dir),
            &["commit", "--quiet", "--no-verify", "--message", message],
            &env,
        )?;
        Ok(Some(
            self.run(Some(&checkout.dir), &["rev-parse", "HEAD"], &[])?
                .trim()
                .to_string(),
        ))
    }

    /// The commit a remote branch points at, or None when it does not exist.
    pub fn remote_head(
        &self,
        checkout: &Checkout,
        branch: &str,
    ) -> Result<Option<String>, GitError> {
        let out = self.run(
            Some(&checkout.dir),
            &["ls-remote", "origin", &format!("refs/heads/{branch}")],
            &[],
        )?;
        Ok(out.split_whitespace().next().map(str::to_string))
    }

    /// Fetches one commit of `branch` (its tip) into the checkout and
    /// returns its message, first parent and tree.
    pub fn tip(&self, checkout: &Checkout, branch: &str) -> Result<Commit, GitError> {
        let refspec = format!("+refs/heads/{branch}:refs/remotes/origin/{branch}");
        // Depth 2: the tip and its parent, whose id is all hoist needs.
        self.run(
            Some(&checkout.dir),
            &["fetch", "--depth", "2", "--no-tags", "origin", &refspec],
            &[],
        )?;
        self.commit_info(checkout, &format!("refs/remotes/origin/{branch}"))
    }

    /// Message, first parent and tree of a commit in the checkout.
    pub fn commit_info(&self, checkout: &Checkout, rev: &str) -> Result<Commit, GitError> {
        let out = self.run(
            Some(&checkout.dir),
            &["log", "-1", "--format=%H%n%P%n%T%n%an%n%cn <%ce>%n%B", rev],
            &[],
        )?;
        let mut lines = out.lines();
        let mut next = || lines.next().unwrap_or("").to_string();
        let (id, parents, tree, author, committer) = (next(), next(), next(), next(), next());
        let message = out.splitn(6, '\n').nth(5).unwrap_or("").to_string();
        Ok(Commit {
            id,
            parent: parents.split_whitespace().next().map(str::to_string),
            tree,
            author,
            committer,
            message,
        })
    }

    /// Pushes HEAD to `branch` only if the remote still points at
    /// `expected` (the commit hoist built on; empty for a new branch).
    pub fn push(
        &self,
        checkout: &Checkout,
        branch: &str,
        expected: &str,
    ) -> Result<Push, GitError> {
        self.push_ref(checkout, branch, expected, "HEAD")
    }

    /// Deletes `branch` on the remote, only while its tip is `expected`.
    pub fn delete_branch(
        &self,
        checkout: &Checkout,
        branch: &str,
        expected: &str,
    ) -> Result<Push, GitError> {
        self.push_ref(checkout, branch, expected, "")
    }

    /// Pushes `source` ("" deletes) to `branch` with a lease on `expected`.
    fn push_ref(
        &self,
        checkout: &Checkout,
        branch: &str,
        expected: &str,
        source: &str,
    ) -> Result<Push, GitError> {
        let lease = format!("--force-with-lease=refs/heads/{branch}:{expected}");
        let refspec = format!("{source}:refs/heads/{branch}");
        let out = self
            .command(Some(&checkout.dir))
            .args(["push", "--porcelain", &lease, "origin", &refspec])
            .output()
            .map_err(|e| GitError::Command {
                command: "push".into(),
                message: format!("cannot run git: {e}"),
            })?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        // Porcelain: `<flag>\t<from>:<to>\t<summary>`; `!` is a rejection.
        let line = stdout
            .lines()
            .find(|l| l.contains(&format!("refs/heads/{branch}")));
        match line.and_then(|l| l.chars().next()) {
            // Only a moved branch is worth fetching and trying again; a
            // hook or a protection rule that refuses the push is an error.
            Some('!')
                if line.is_some_and(|l| {
                    ["stale info", "fetch first", "non-fast-forward"]
                        .iter()
                        .any(|r| l.contains(r))
                }) =>
            {
                Ok(Push::Rejected(redact(line.unwrap_or("").trim())))
            }
            Some('!') => {
                let stderr = String::from_utf8_lossy(&out.stderr);
                Err(GitError::Command {
                    command: "push".into(),
                    message: redact(&format!("{} {}", line.unwrap_or("").trim(), stderr.trim())),
                })
            }
            Some(_) if out.status.success() && source.is_empty() => Ok(Push::Pushed(String::new())),
            Some(_) if out.status.success() => Ok(Push::Pushed(
                self.run(Some(&checkout.dir), &["rev-parse", source], &[])?
                    .trim()
                    .to_string(),
            )),
            _ => {
                let stderr = String::from_utf8_lossy(&out.stderr);
                Err(GitError::Command {
                    command: "push".into(),
                    message: redact(stderr.trim().trim_start_matches("fatal: ")),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(
            redact("fatal: unable to access 'https://bot:s3cret@git.example.com/a.git/': 403"),
            "fatal: unable to access 'https://git.example.com/a.git/': 403"
        );
        assert_eq!(redact("ssh://git@host:22/x"), "ssh://host:22/x");
        assert_eq!(redact("no url here"), "no url here");
    }
}
