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
//!
//! Nothing a repository holds runs: every git hoist starts, and the git on
//! the far side of a local transport, runs with hooks and fsmonitor off and
//! never updates a remote's work tree (see [`SAFE_CONFIG`] and
//! [`REMOTE_SIDE`]).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use crate::redact::Secrets;

mod credentials;
mod url;

#[cfg(test)]
use credentials::percent_decode;
pub use credentials::{GitCredentials, SSH_KEY_DECRYPT, SigningKey};
use credentials::{KeyFiles, Remote, private_dir};
#[cfg(test)]
use url::is_local;
use url::remote_side;
pub use url::{local_paths, network_url};

/// What a checkout starts from: a branch's tip, or a fixed point of the
/// history as Flux's GitRepository `ref` can name one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reference {
    Branch(String),
    Tag(String),
    /// The highest tag within a semver range (Masterminds' syntax, as Flux
    /// reads it).
    Semver(String),
    /// A full ref name, e.g. `refs/pull/7/head`.
    Name(String),
    /// One commit, by its id.
    Commit(String),
}

impl Reference {
    /// The branch, when the checkout follows one.
    pub fn branch(&self) -> Option<&str> {
        match self {
            Reference::Branch(name) => Some(name),
            _ => None,
        }
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reference::Branch(name) => write!(f, "branch {name:?}"),
            Reference::Tag(tag) => write!(f, "tag {tag:?}"),
            Reference::Semver(range) => write!(f, "the highest tag in semver range {range:?}"),
            Reference::Name(name) => write!(f, "ref {name:?}"),
            Reference::Commit(id) => write!(f, "commit {id}"),
        }
    }
}

/// A point of a remote repository to check out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub url: String,
    pub reference: Reference,
}

impl Source {
    /// The tip of `branch` at `url`.
    pub fn branch(url: &str, branch: &str) -> Self {
        Source {
            url: url.to_string(),
            reference: Reference::Branch(branch.to_string()),
        }
    }
}

/// A working tree of `source`, in hoist's cache, reset to what the remote
/// has now.
#[derive(Clone, Debug)]
pub struct Checkout {
    pub dir: PathBuf,
    pub source: Source,
    /// The commit checked out (the branch's tip when fetched).
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
    #[error("{url}: {reference} does not exist")]
    MissingRef { url: String, reference: String },
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
    /// What the credentials hold, masked in whatever git or a remote says.
    secrets: Secrets,
    /// The key files these credentials wrote: removed once the last copy
    /// of this `Git` is dropped.
    files: Vec<Arc<KeyFiles>>,
}

/// Settings every git hoist starts runs with. `-c` outranks repository
/// configuration and reaches the git commands git starts for it (through
/// `GIT_CONFIG_PARAMETERS`), except across a local transport, which drops
/// it, as it drops `GIT_CONFIG_COUNT`; [`REMOTE_SIDE`] covers that side.
///
/// `/dev/null` as the hooks directory: no file can ever be created under
/// it, so no hook can be found there, whoever writes where.
const SAFE_CONFIG: &[&str] = &[
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    // `ext::` URLs run a command; git refuses them by default, and so
    // does hoist whatever a user's configuration says.
    "protocol.ext.allow=never",
    "commit.gpgsign=false",
    "advice.detachedHead=false",
];

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

/// `https://user:secret@host/x` → `https://host/x`, for messages.
pub fn redact(text: &str) -> String {
    crate::redact::strip_userinfo(text)
}

impl Git {
    /// `text` from git or a remote, fit for an error: the credentials of
    /// this git masked, userinfo stripped, control characters escaped.
    fn server_text(&self, text: &str) -> String {
        crate::redact::server_text(text, &self.secrets)
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
            // Hooks, fsmonitor and signing belong to the user's own
            // checkouts, not to hoist's cache; prompts would hang an
            // unattended run.
            .args(SAFE_CONFIG.iter().flat_map(|c| ["-c", c]))
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
        self.run_with_input(dir, args, env, None)
    }

    /// Runs git with `input` as its standard input (none: /dev/null).
    fn run_with_input(
        &self,
        dir: Option<&Path>,
        args: &[&str],
        env: &[(&str, &str)],
        input: Option<&[u8]>,
    ) -> Result<String, GitError> {
        let cannot = |e: std::io::Error| GitError::Command {
            command: args.first().copied().unwrap_or("").to_string(),
            message: format!("cannot run git: {e}"),
        };
        let mut command = self.command(dir);
        command.args(args).envs(env.iter().copied());
        let out = match input {
            None => command.output().map_err(cannot)?,
            Some(input) => {
                let mut child = command
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .map_err(cannot)?;
                let stdin = child.stdin.take();
                // Written from a thread, so that git filling its stdout
                // pipe meanwhile cannot deadlock the two.
                std::thread::scope(|scope| {
                    scope.spawn(move || {
                        use std::io::Write;
                        if let Some(mut stdin) = stdin {
                            // A git that exits early reports why itself.
                            let _ = stdin.write_all(input);
                        }
                    });
                    child.wait_with_output()
                })
                .map_err(cannot)?
            }
        };
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines = stderr
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with("Cloning into "))
            .map(|l| {
                l.trim_start_matches("fatal: ")
                    .trim_start_matches("error: ")
            })
            .collect::<Vec<_>>();
        // The reason comes last (ssh's banner about a changed host key
        // alone fills the limit), so the last lines are the ones kept.
        let mut kept = 0;
        let mut size = 0;
        for line in lines.iter().rev() {
            size += line.len() + 2;
            if kept > 0 && size > crate::redact::SERVER_TEXT_LIMIT {
                break;
            }
            kept += 1;
        }
        let mut message = lines[lines.len() - kept..].join("; ");
        if kept < lines.len() {
            message = format!("…; {message}");
        }
        Err(GitError::Command {
            command: args.first().copied().unwrap_or("").to_string(),
            message: self.server_text(if message.is_empty() {
                "failed"
            } else {
                &message
            }),
        })
    }

    /// A checkout of `source` under `cache`, one directory per URL and
    /// reference: cloned shallow the first time, fetched and reset later.
    /// Whatever an earlier run left in the tree is discarded.
    pub fn checkout(&self, cache: &Path, source: &Source) -> Result<Checkout, GitError> {
        use sha2::Digest;
        // A branch keeps the key it always had, so existing caches stay.
        let named = match &source.reference {
            Reference::Branch(name) => name.clone(),
            other => other.to_string(),
        };
        let key = format!(
            "{:x}",
            sha2::Sha256::digest(format!("{}\n{named}", source.url))
        );
        let dir = cache.join(&key[..16]);
        // Caches hold what the repositories hold and their remotes' URLs.
        private_dir(cache)?;
        let remove = |dir: &Path| {
            std::fs::remove_dir_all(dir).map_err(|source| GitError::Io {
                path: dir.to_path_buf(),
                source,
            })
        };
        if dir.join(".git").is_dir() {
            match self.refresh(&dir, source) {
                Ok(()) => {}
                Err(e @ GitError::MissingRef { .. }) => return Err(e),
                Err(e) => {
                    // A killed run can leave lock files or a half-made
                    // clone; the cache is hoist's, so start it afresh.
                    tracing::warn!(dir = %dir.display(), "the cached checkout cannot be reused ({e}); cloning again");
                    remove(&dir)?;
                    self.clone_into(cache, &dir, source)?;
                }
            }
        } else {
            if dir.exists() {
                remove(&dir)?;
            }
            self.clone_into(cache, &dir, source)?;
        }
        private_dir(&dir)?;
        let base = self
            .run(Some(&dir), &["rev-parse", "HEAD"], &[])?
            .trim()
            .to_string();
        Ok(Checkout {
            dir,
            source: source.clone(),
            base,
        })
    }

    fn missing_ref(source: &Source, e: GitError) -> GitError {
        match e {
            GitError::Command { ref message, .. }
                if message.contains("Remote branch") && message.contains("not found")
                    || message.contains("couldn't find remote ref")
                    || message.contains("not our ref") =>
            {
                GitError::MissingRef {
                    url: redact(&source.url),
                    reference: source.reference.to_string(),
                }
            }
            other => other,
        }
    }

    /// Brings an existing cached checkout to what the remote has now.
    fn refresh(&self, dir: &Path, source: &Source) -> Result<(), GitError> {
        let own = self.run(Some(dir), &["rev-parse", "--absolute-git-dir"], &[])?;
        let expected = std::fs::canonicalize(dir.join(".git")).unwrap_or_else(|_| dir.join(".git"));
        if Path::new(own.trim()) != expected {
            return Err(GitError::Command {
                command: "rev-parse".into(),
                message: "the cache directory is not a repository of its own".into(),
            });
        }
        let remote = Remote::parse(&source.url);
        let git = self.for_remote(&remote, dir.parent().unwrap_or(dir))?;
        self.run(
            Some(dir),
            &["remote", "set-url", "origin", &remote.url],
            &[],
        )?;
        let upload_pack = remote_side(&remote.url, "upload-pack", "upload-pack");
        let reference = match &source.reference {
            Reference::Semver(range) => {
                let mut list = vec!["ls-remote", "--tags", "--refs"];
                list.extend(upload_pack.as_deref());
                list.push("origin");
                let listed = git.run(Some(dir), &list, &[])?;
                let tag = highest_tag(range, &listed).ok_or_else(|| GitError::MissingRef {
                    url: redact(&source.url),
                    reference: source.reference.to_string(),
                })?;
                Reference::Tag(tag)
            }
            other => other.clone(),
        };
        // What to fetch, and what to check out once it is fetched.
        let (refspec, target) = match &reference {
            Reference::Branch(name) => (
                format!("+refs/heads/{name}:refs/remotes/origin/{name}"),
                format!("refs/remotes/origin/{name}"),
            ),
            Reference::Tag(tag) => (
                format!("+refs/tags/{tag}:refs/tags/{tag}"),
                format!("refs/tags/{tag}^{{commit}}"),
            ),
            Reference::Name(name) => (
                format!("+{name}:refs/hoist/checkout"),
                "refs/hoist/checkout^{commit}".to_string(),
            ),
            Reference::Commit(id) => (id.clone(), id.clone()),
            Reference::Semver(range) => {
                return Err(GitError::Command {
                    command: "ls-remote".into(),
                    message: format!("semver range {range:?} was not resolved to a tag"),
                });
            }
        };
        let mut fetch = vec!["fetch", "--depth", "1", "--no-tags"];
        fetch.extend(upload_pack.as_deref());
        fetch.extend(["origin", &refspec]);
        git.run(Some(dir), &fetch, &[])
            .map_err(|e| Self::missing_ref(source, e))?;
        match &reference {
            Reference::Branch(name) => self.run(
                Some(dir),
                &["checkout", "--force", "-B", name, &target],
                &[],
            )?,
            // Not on a branch: hoist's commit goes to push.branch.
            _ => self.run(
                Some(dir),
                &["checkout", "--force", "--detach", &target],
                &[],
            )?,
        };
        self.run(Some(dir), &["clean", "-fdx"], &[])?;
        Ok(())
    }

    fn clone_into(&self, cache: &Path, dir: &Path, source: &Source) -> Result<(), GitError> {
        // Made private before git fills it; git clones into an empty one.
        private_dir(dir)?;
        let remote = Remote::parse(&source.url);
        let Reference::Branch(name) = &source.reference else {
            // A tag, ref or commit: an empty repository that fetches it.
            let target = dir.to_string_lossy().into_owned();
            self.run(None, &["init", "--quiet", "--", &target], &[])?;
            self.run(Some(dir), &["remote", "add", "origin", &remote.url], &[])?;
            return self.refresh(dir, source);
        };
        let git = self.for_remote(&remote, cache)?;
        let target = dir.to_string_lossy().into_owned();
        let mut clone = vec![
            "clone",
            "--depth",
            "1",
            "--no-tags",
            "--single-branch",
            "--branch",
            name,
        ];
        let upload_pack = remote_side(&remote.url, "upload-pack", "upload-pack");
        clone.extend(upload_pack.as_deref());
        clone.extend(["--", &remote.url, &target]);
        git.run(None, &clone, &[])
            .map_err(|e| Self::missing_ref(source, e))?;
        Ok(())
    }

    /// Whether `commit` is in the history of the checkout's base: hoist's
    /// commit on a branch of its own was made on a commit of the checkout
    /// ref. The checkout is shallow, so the history since `commit`'s own
    /// date (a day more, for clocks that disagree) is fetched first.
    pub fn contains(&self, checkout: &Checkout, commit: &str) -> Result<bool, GitError> {
        if commit == checkout.base {
            return Ok(true);
        }
        let dir = &checkout.dir;
        let Ok(date) = self.run(Some(dir), &["log", "-1", "--format=%ct", commit], &[]) else {
            // Not fetched: hoist has nothing to judge it by.
            return Ok(false);
        };
        let since = date
            .trim()
            .parse::<i64>()
            .unwrap_or(0)
            .saturating_sub(86_400);
        let (git, remote) = self.for_checkout(checkout)?;
        let upload_pack = remote_side(&remote.url, "upload-pack", "upload-pack");
        let shallow = format!("--shallow-since={since}");
        let mut fetch = vec!["fetch", "--no-tags", shallow.as_str()];
        fetch.extend(upload_pack.as_deref());
        fetch.extend(["origin", &checkout.base]);
        git.run(Some(dir), &fetch, &[])?;
        Ok(self
            .run(
                Some(dir),
                &["merge-base", "--is-ancestor", commit, &checkout.base],
                &[],
            )
            .is_ok())
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
        // Through stdin: an argument is limited to 128 KiB, and argv is
        // there for every user to read.
        self.run_with_input(
            Some(&checkout.dir),
            // Verbatim: the pipeline decided the message's bytes (hoist's
            // own are cleaned up in `message::cleanup`, a Flux one is kept
            // as its template rendered it).
            &[
                "commit",
                "--quiet",
                "--no-verify",
                "--cleanup=verbatim",
                "--file=-",
            ],
            &env,
            Some(message.as_bytes()),
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
        let (git, remote) = self.for_checkout(checkout)?;
        let upload_pack = remote_side(&remote.url, "upload-pack", "upload-pack");
        let pattern = format!("refs/heads/{branch}");
        let mut args = vec!["ls-remote"];
        args.extend(upload_pack.as_deref());
        args.extend(["origin", &pattern]);
        let out = git.run(Some(&checkout.dir), &args, &[])?;
        Ok(out.split_whitespace().next().map(str::to_string))
    }

    /// Fetches one commit of `branch` (its tip) into the checkout and
    /// returns its message, first parent and tree.
    pub fn tip(&self, checkout: &Checkout, branch: &str) -> Result<Commit, GitError> {
        let refspec = format!("+refs/heads/{branch}:refs/remotes/origin/{branch}");
        let (git, remote) = self.for_checkout(checkout)?;
        let upload_pack = remote_side(&remote.url, "upload-pack", "upload-pack");
        // Depth 2: the tip and its parent, whose id is all hoist needs.
        let mut args = vec!["fetch", "--depth", "2", "--no-tags"];
        args.extend(upload_pack.as_deref());
        args.extend(["origin", &refspec]);
        git.run(Some(&checkout.dir), &args, &[])?;
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
        self.push_with(checkout, branch, expected, &[])
    }

    /// [`Git::push`] with `git push --push-option` values.
    pub fn push_with(
        &self,
        checkout: &Checkout,
        branch: &str,
        expected: &str,
        options: &[String],
    ) -> Result<Push, GitError> {
        let lease = format!("--force-with-lease=refs/heads/{branch}:{expected}");
        self.push_ref(
            checkout,
            &format!("refs/heads/{branch}"),
            Some(&lease),
            "HEAD",
            options,
        )
    }

    /// Pushes HEAD to the full ref `destination` as well (Flux's
    /// `push.refspec`), without force: the remote takes it only as a fast
    /// forward or a new ref (Gerrit's `refs/for/…` is always new).
    pub fn push_also(
        &self,
        checkout: &Checkout,
        destination: &str,
        options: &[String],
    ) -> Result<Push, GitError> {
        self.push_ref(checkout, destination, None, "HEAD", options)
    }

    /// Deletes `branch` on the remote, only while its tip is `expected`.
    pub fn delete_branch(
        &self,
        checkout: &Checkout,
        branch: &str,
        expected: &str,
    ) -> Result<Push, GitError> {
        let lease = format!("--force-with-lease=refs/heads/{branch}:{expected}");
        self.push_ref(
            checkout,
            &format!("refs/heads/{branch}"),
            Some(&lease),
            "",
            &[],
        )
    }

    /// Pushes `source` ("" deletes) to the full ref `target`, with a lease
    /// when one is given.
    fn push_ref(
        &self,
        checkout: &Checkout,
        target: &str,
        lease: Option<&str>,
        source: &str,
        options: &[String],
    ) -> Result<Push, GitError> {
        let refspec = format!("{source}:{target}");
        let (git, remote) = self.for_checkout(checkout)?;
        let receive_pack = remote_side(&remote.url, "receive-pack", "receive-pack");
        let out = git
            .command(Some(&checkout.dir))
            .args(["push", "--porcelain"])
            .args(lease)
            .args(options.iter().map(|o| format!("--push-option={o}")))
            .args(receive_pack.as_deref())
            .args(["origin", &refspec])
            .output()
            .map_err(|e| GitError::Command {
                command: "push".into(),
                message: format!("cannot run git: {e}"),
            })?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let failure = |text: &str| GitError::Command {
            command: "push".into(),
            message: git.server_text(text),
        };
        match push_outcome(&stdout, &stderr, target) {
            PushOutcome::Moved(line) => Ok(Push::Rejected(git.server_text(line))),
            PushOutcome::Refused(line) => Err(failure(&format!("{line} {}", stderr.trim()))),
            PushOutcome::Done if out.status.success() && source.is_empty() => {
                Ok(Push::Pushed(String::new()))
            }
            PushOutcome::Done if out.status.success() => Ok(Push::Pushed(
                self.run(Some(&checkout.dir), &["rev-parse", source], &[])?
                    .trim()
                    .to_string(),
            )),
            PushOutcome::Done | PushOutcome::Unknown => {
                Err(failure(stderr.trim().trim_start_matches("fatal: ")))
            }
        }
    }
}

/// The tag of `git ls-remote --tags --refs` output that is the highest
/// version within `range`, as Flux's GitRepository `ref.semver` picks it:
/// tags read as versions the way image tags are (a leading `v` allowed),
/// others ignored; equal versions go to the tag that sorts last.
fn highest_tag(range: &str, listed: &str) -> Option<String> {
    let range = crate::policy::Range::parse(range).ok()?;
    listed
        .lines()
        .filter_map(|line| line.split_once('\t')?.1.strip_prefix("refs/tags/"))
        .filter_map(|tag| Some((crate::policy::Version::parse_tag(tag)?, tag)))
        .filter(|(version, _)| range.matches(version))
        .max_by(|(a, at), (b, bt)| a.precedence(b).then_with(|| at.cmp(bt)))
        .map(|(_, tag)| tag.to_string())
}

/// What `git push --porcelain` said about one branch.
#[derive(Debug, PartialEq, Eq)]
enum PushOutcome<'a> {
    /// Updated (or already up to date).
    Done,
    /// Rejected because the branch moved: worth fetching and trying again.
    Moved(&'a str),
    /// Refused for another reason: a hook, a protection rule, a lost
    /// permission.
    Refused(&'a str),
    /// No line for the branch: git failed before it got that far.
    Unknown,
}

/// Classifies a push to the ref `target` from git's porcelain `stdout`
/// (`<flag>\t<from>:<to>\t<summary>`, `!` for a rejection) and `stderr`.
///
/// A moved branch shows as the lease's "stale info", as "fetch first" or
/// "non-fast-forward", or, when the branch moved after the server's
/// advertisement, as the server losing the race for its ref lock:
/// `[remote rejected] (cannot lock ref 'refs/heads/main': is at … but
/// expected …)` on GitHub, or git's own receive-pack saying "failed to
/// update ref" with the `cannot lock ref` on its stderr.
fn push_outcome<'a>(stdout: &'a str, stderr: &str, target: &str) -> PushOutcome<'a> {
    let Some(line) = stdout.lines().find(|l| l.contains(target)) else {
        return PushOutcome::Unknown;
    };
    let line = line.trim();
    if !line.starts_with('!') {
        return PushOutcome::Done;
    }
    let moved = [
        "stale info",
        "fetch first",
        "non-fast-forward",
        "cannot lock ref",
    ]
    .iter()
    .any(|r| line.contains(r));
    let lost_lock = line.contains("failed to update ref")
        && stderr.contains(&format!("cannot lock ref '{target}'"));
    if moved || lost_lock {
        PushOutcome::Moved(line)
    } else {
        PushOutcome::Refused(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_semver_ref_picks_the_highest_tag_in_its_range() {
        let listed = "a1\trefs/tags/v1.2.0\n\
                      a2\trefs/tags/v1.10.0\n\
                      a3\trefs/tags/v2.0.0-rc.1\n\
                      a4\trefs/tags/latest\n\
                      a5\trefs/heads/v9.9.9\n\
                      a6\trefs/tags/1.10.0\n";
        // 1.10.0 beats 1.2.0 by version, not by text; `1.10.0` and
        // `v1.10.0` are the same version, and the later name wins.
        assert_eq!(highest_tag(">=1.0.0", listed).as_deref(), Some("v1.10.0"));
        assert_eq!(highest_tag("~1.2", listed).as_deref(), Some("v1.2.0"));
        // A prerelease only when the range asks for one; branches never.
        assert_eq!(
            highest_tag(">=2.0.0-0", listed).as_deref(),
            Some("v2.0.0-rc.1")
        );
        assert_eq!(highest_tag(">=3.0.0", listed), None);
        assert_eq!(highest_tag("not a range", listed), None);
    }

    #[test]
    fn local_transports_by_gits_rules() {
        for url in [
            "file:///srv/fleet.git",
            "FILE:///srv/fleet.git",
            "/srv/fleet.git",
            "fleet.git",
            "./a:b/fleet.git",
            "/srv/a://b",
        ] {
            assert!(is_local(url), "{url}");
        }
        for url in [
            "https://host/fleet.git",
            "ssh://git@host/fleet.git",
            "git://host/fleet.git",
            "git@host:fleet.git",
            "host:/srv/fleet.git",
            "[::1]:fleet.git",
            "ext::sh -c touch% /tmp/x",
        ] {
            assert!(!is_local(url), "{url}");
        }
    }

    #[test]
    fn a_controller_reaches_only_network_urls() {
        for url in [
            "https://host/fleet.git",
            "HTTP://host:8080/fleet.git",
            "ssh://git@host:2222/fleet.git",
            "git@host:acme/fleet.git",
            "host:/srv/fleet.git",
            "[::1]:fleet.git",
        ] {
            assert!(network_url(url), "{url}");
        }
        for url in [
            "file:///srv/fleet.git",
            "/var/lib/hoist/git/0a1b/fleet",
            "fleet.git",
            "./state/git",
            "git://host/fleet.git",
            "ext::sh -c touch% /tmp/x",
            "fd::17",
            "https://",
            "ssh://-oProxyCommand=x/fleet.git",
            "-oProxyCommand=x:fleet.git",
        ] {
            assert!(!network_url(url), "{url}");
        }
    }

    #[test]
    fn local_paths_as_git_reads_them() {
        let paths = |url: &str| local_paths(url);
        assert_eq!(paths("/srv/a.git"), [PathBuf::from("/srv/a.git")]);
        assert_eq!(paths("a.git"), [PathBuf::from("a.git")]);
        assert_eq!(paths("file:///srv/a.git"), [PathBuf::from("/srv/a.git")]);
        assert_eq!(
            paths("file://localhost/srv/a.git"),
            [PathBuf::from("/srv/a.git")]
        );
        assert_eq!(
            paths("FILE:///srv/st%61te"),
            [PathBuf::from("/srv/st%61te"), PathBuf::from("/srv/state")]
        );
        assert!(paths("https://host/a.git").is_empty());
        assert!(paths("git@host:a.git").is_empty());
    }

    #[test]
    fn userinfo_leaves_the_url_percent_decoded() {
        let remote = Remote::parse("https://bot:p%40ss%3Aw%2Frd%25@git.example.com:8443/a.git");
        assert_eq!(remote.url, "https://git.example.com:8443/a.git");
        assert_eq!(remote.username.as_deref(), Some("bot"));
        assert_eq!(remote.password.as_deref(), Some("p@ss:w/rd%"));
        let token = Remote::parse("https://ghp_t0ken@github.com/acme/fleet");
        assert_eq!(token.url, "https://github.com/acme/fleet");
        assert_eq!(token.username.as_deref(), Some("ghp_t0ken"));
        assert_eq!(token.password, None);
        // An ssh user is an account, not a secret; paths have no userinfo.
        for url in ["ssh://git@host/x.git", "git@host:x.git", "/srv/a@b.git"] {
            assert_eq!(Remote::parse(url).url, url);
            assert_eq!(Remote::parse(url).username, None);
        }
        assert_eq!(percent_decode("100%zz%4"), "100%zz%4");
        assert!(!format!("{remote:?}").contains("p@ss"));
    }

    #[test]
    fn a_lost_ref_lock_is_a_moved_branch() {
        // In the form GitHub reports it, the reason inside the ref line.
        let github = "To github.com:acme/fleet.git\n!\tHEAD:refs/heads/main\t[remote rejected] (cannot lock ref 'refs/heads/main': is at 1f2e3d4c5b6a79881f2e3d4c5b6a79881f2e3d4c but expected 0a1b2c3d4e5f60718293a4b5c6d7e8f901234567)\nDone\n";
        assert!(matches!(
            push_outcome(github, "", "refs/heads/main"),
            PushOutcome::Moved(_)
        ));
        // As git's own receive-pack reports it (git 2.39 over git://,
        // captured from the integration test that loses this race).
        let git = "To git://127.0.0.1:45511/fleet.git\n!\tHEAD:refs/heads/main\t[remote rejected] (failed to update ref)\nDone\n";
        let stderr = "remote: error: cannot lock ref 'refs/heads/main': is at 13ab021aad885b55368def90078ed76a7377ce60 but expected 3d7a73515a26350a71cd16204939a5de35c08301        \nerror: failed to push some refs to 'git://127.0.0.1:45511/fleet.git'\n";
        assert!(matches!(
            push_outcome(git, stderr, "refs/heads/main"),
            PushOutcome::Moved(_)
        ));
        // Another branch's lock, or a failure that is not a lock, is not.
        assert!(matches!(
            push_outcome(
                git,
                &stderr.replace("heads/main'", "heads/other'"),
                "refs/heads/main"
            ),
            PushOutcome::Refused(_)
        ));
        assert!(matches!(
            push_outcome(git, "remote: error: disk full\n", "refs/heads/main"),
            PushOutcome::Refused(_)
        ));
        let hook = "!\tHEAD:refs/heads/main\t[remote rejected] (pre-receive hook declined)\n";
        assert!(matches!(
            push_outcome(hook, "", "refs/heads/main"),
            PushOutcome::Refused(_)
        ));
        let lease = "!\tHEAD:refs/heads/main\t[rejected] (stale info)\n";
        assert!(matches!(
            push_outcome(lease, "", "refs/heads/main"),
            PushOutcome::Moved(_)
        ));
        assert_eq!(
            push_outcome(
                "=\tHEAD:refs/heads/main\t[up to date]\n",
                "",
                "refs/heads/main"
            ),
            PushOutcome::Done
        );
        assert_eq!(
            push_outcome("", "fatal: no route", "refs/heads/main"),
            PushOutcome::Unknown
        );
    }

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
