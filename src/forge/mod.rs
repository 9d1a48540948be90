//! The forge stage: one pull request per automation, from the branch hoist
//! owns to the checkout branch, on GitHub (and GitHub Enterprise), GitLab
//! and Gitea / Forgejo behind one trait.

mod gitea;
mod github;
mod gitlab;

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use gitea::Gitea;
pub use github::GitHub;
pub use gitlab::GitLab;

/// A repository on a forge, derived from a git URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForgeRepo {
    /// The host (with port) the URL names: `github.com`, `git.example.com:8443`.
    pub host: String,
    /// `owner/name`, or `group/subgroup/project` on GitLab.
    pub path: String,
}

impl ForgeRepo {
    /// Reads `https://host[:port]/owner/name(.git)`, `ssh://git@host[:port]/owner/name.git`
    /// and `git@host:owner/name.git`.
    pub fn from_git_url(url: &str) -> Result<ForgeRepo, ForgeError> {
        let invalid = || {
            ForgeError::Config(format!(
                "{} does not name a repository on a forge",
                crate::redact::strip_userinfo(url)
            ))
        };
        let parsed = crate::model::GitUrl::parse(url).ok_or_else(invalid)?;
        let host = match parsed.scheme.as_deref() {
            // An ssh port is not the forge's web port; keep the host only.
            Some("ssh") | None => parsed.host,
            Some("https" | "http" | "git") => parsed.authority,
            Some(_) => return Err(invalid()),
        };
        let path = parsed.path;
        if host.is_empty()
            || path.split('/').filter(|p| !p.is_empty()).count() < 2
            || path.split('/').any(|p| p.is_empty() || p == "..")
        {
            return Err(invalid());
        }
        Ok(ForgeRepo { host, path })
    }
}

impl ForgeRepo {
    /// `owner` and `name` of a GitHub or Gitea repository.
    pub fn owner_name(&self) -> Result<(String, String), ForgeError> {
        self.path
            .split_once('/')
            .filter(|(_, n)| !n.contains('/'))
            .map(|(o, n)| (o.to_string(), n.to_string()))
            .ok_or_else(|| ForgeError::Config(format!("{} is not owner/name", self.path)))
    }
}

/// A forge API root, the token for it, and the HTTP client and runtime its
/// calls use: what every provider shares.
struct Connection {
    api: String,
    token: String,
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
    /// Time spent waiting out rate limits so far.
    waited: std::sync::Mutex<Duration>,
    /// The token, to be scrubbed from whatever the forge answers.
    secrets: crate::redact::Secrets,
}

impl Connection {
    fn new(
        api: &str,
        token: String,
        runtime: tokio::runtime::Handle,
    ) -> Result<Connection, ForgeError> {
        crate::install_crypto_provider();
        let client = reqwest::Client::builder()
            .user_agent(concat!("hoist/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| ForgeError::Config(format!("setting up HTTP: {e}")))?;
        let mut secrets = crate::redact::Secrets::new();
        secrets.add(&token);
        Ok(Connection {
            api: api.trim_end_matches('/').to_string(),
            secrets,
            token,
            client,
            runtime,
            waited: std::sync::Mutex::default(),
        })
    }

    /// Text the forge sent, fit to print: the token masked, control
    /// characters escaped, bounded.
    fn shown(&self, text: &str) -> String {
        crate::redact::server_text(text, &self.secrets)
    }

    /// A pull request as the forge described it, its web address (which
    /// hoist prints) made fit to print like any other text it sent.
    fn clean(&self, mut pull: PullState) -> PullState {
        pull.url = self.shown(&pull.url);
        pull
    }

    /// One JSON call to `path` under the API root, blocking on the runtime
    /// from outside it; `authorize` adds the provider's auth headers. Rate
    /// limits are waited out (see [`rate_limit_wait`]). Errors carry the
    /// path without its query and the forge's own message, never the token.
    fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
        authorize: impl Fn(reqwest::RequestBuilder, &str) -> reqwest::RequestBuilder,
    ) -> Result<T, ForgeError> {
        let method_name = method.to_string();
        let shown = path.split('?').next().unwrap_or(path).to_string();
        let url = format!("{}{path}", self.api);
        self.runtime.block_on(async {
            let mut waits = 0;
            loop {
                let mut request = authorize(self.client.request(method.clone(), &url), &self.token);
                if let Some(body) = &body {
                    request = request.json(body);
                }
                let response = request.send().await.map_err(|e| ForgeError::Transport {
                    method: method_name.clone(),
                    path: shown.clone(),
                    message: if e.is_connect() {
                        "cannot connect".into()
                    } else if e.is_timeout() {
                        "timed out".into()
                    } else {
                        "request failed".into()
                    },
                })?;
                let status = response.status().as_u16();
                let header = |name: &str| {
                    response
                        .headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string)
                };
                let limit = RateLimitHeaders {
                    retry_after: header("retry-after"),
                    remaining: header("x-ratelimit-remaining")
                        .or_else(|| header("ratelimit-remaining")),
                    reset: header("x-ratelimit-reset").or_else(|| header("ratelimit-reset")),
                };
                let text = response.text().await.unwrap_or_default();
                let wait = rate_limit_wait(status, &limit, &text, SystemTime::now());
                if let Some(wait) = wait {
                    // One budget for all calls of this connection (one
                    // automation in one run), so a forge that keeps saying
                    // "later" cannot hold a run for long.
                    let spent = self.waited.lock().map_or(RATE_LIMIT_BUDGET, |w| *w);
                    if spent + wait > RATE_LIMIT_BUDGET || waits == RATE_LIMIT_MAX_WAITS {
                        return Err(ForgeError::RateLimited {
                            method: method_name,
                            path: shown,
                            seconds: wait.as_secs(),
                        });
                    }
                    if let Ok(mut waited) = self.waited.lock() {
                        *waited += wait;
                    }
                    waits += 1;
                    tracing::info!(path = %shown, seconds = wait.as_secs_f64(), "forge rate limit; waiting");
                    tokio::time::sleep(wait).await;
                    continue;
                }
                if !(200..300).contains(&status) {
                    // GitHub and Gitea say `message`; GitLab `message` (a
                    // string, a list or an object of field errors) or `error`.
                    let parsed: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                    let mut message = match (parsed.get("message"), parsed.get("error")) {
                        (Some(serde_json::Value::String(m)), _) => m.clone(),
                        (Some(other), _) => other.to_string(),
                        (None, Some(serde_json::Value::String(e))) => e.clone(),
                        _ => "no details".to_string(),
                    };
                    // GitHub's 422 says what failed only in `errors`.
                    if let Some(errors) = parsed.get("errors").and_then(|e| e.as_array()) {
                        let details: Vec<&str> = errors
                            .iter()
                            .filter_map(|e| e.get("message").and_then(|m| m.as_str()))
                            .collect();
                        if !details.is_empty() {
                            message = format!("{message}: {}", details.join("; "));
                        }
                    }
                    return Err(ForgeError::Http {
                        method: method_name,
                        path: shown,
                        status,
                        // The forge's words: it may echo the token, or send
                        // escapes that forge lines on a terminal.
                        message: self.shown(&message),
                    });
                }
                let text = if text.trim().is_empty() { "null" } else { &text };
                return serde_json::from_str(text).map_err(|e| ForgeError::Transport {
                    method: method_name,
                    path: shown,
                    message: format!("unexpected answer: {e}"),
                });
            }
        })
    }
}

/// The longest hoist waits out rate limits for one automation in one run;
/// a longer limit fails the automation, and the next run tries again.
const RATE_LIMIT_BUDGET: Duration = Duration::from_secs(300);
/// Rate-limited answers one call waits out before it gives up.
const RATE_LIMIT_MAX_WAITS: u32 = 3;

/// The headers forges announce their rate limits with.
#[derive(Debug, Default)]
struct RateLimitHeaders {
    retry_after: Option<String>,
    /// GitHub and Gitea `X-RateLimit-Remaining`, GitLab `RateLimit-Remaining`.
    remaining: Option<String>,
    /// Unix seconds: GitHub `X-RateLimit-Reset`, GitLab `RateLimit-Reset`.
    reset: Option<String>,
}

/// How long to wait before asking again, when the answer is a rate limit:
/// a 429, or GitHub's 403 with no requests remaining, a `Retry-After`, or
/// a message about its secondary rate limit. `Retry-After` wins; else the
/// reset time (Unix seconds, or seconds from now in the IETF draft's form);
/// else a minute, as GitHub advises for secondary limits without headers.
fn rate_limit_wait(
    status: u16,
    headers: &RateLimitHeaders,
    body: &str,
    now: SystemTime,
) -> Option<Duration> {
    let exhausted = headers.remaining.as_deref().map(str::trim) == Some("0");
    let secondary = body.contains("secondary rate limit");
    let limited = status == 429
        || (status == 403 && (exhausted || secondary || headers.retry_after.is_some()));
    if !limited {
        return None;
    }
    if let Some(wait) = headers
        .retry_after
        .as_deref()
        .and_then(|h| crate::net::retry_after(h, now))
    {
        return Some(wait.max(Duration::from_secs(1)));
    }
    /// Smaller values are a number of seconds, not a point in time.
    const EPOCH_FLOOR: u64 = 1_000_000_000;
    let reset = headers
        .reset
        .as_deref()
        .and_then(|r| r.trim().parse::<u64>().ok())
        .map(|secs| {
            if secs < EPOCH_FLOOR {
                Duration::from_secs(secs)
            } else {
                (UNIX_EPOCH + Duration::from_secs(secs))
                    .duration_since(now)
                    .unwrap_or(Duration::ZERO)
            }
        });
    Some(reset.map_or(Duration::from_secs(60), |d| d.max(Duration::from_secs(1))))
}

/// A pull (or merge) request: its number and web page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PullRequest {
    pub number: u64,
    pub url: String,
}

/// A pull request as the forge shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullState {
    pub number: u64,
    pub url: String,
    pub open: bool,
    pub title: String,
    pub body: String,
    pub labels: Vec<String>,
    pub head: String,
    pub base: String,
    /// From another repository (a fork) whose branch has the same name:
    /// never hoist's.
    pub fork: bool,
}

impl PullState {
    fn pull_request(&self) -> PullRequest {
        PullRequest {
            number: self.number,
            url: self.url.clone(),
        }
    }

    /// Whether this is the open pull request from hoist's `head` to `base`.
    fn is_open_from(&self, head: &str, base: &str) -> bool {
        self.open && !self.fork && self.head == head && self.base == base
    }
}

/// What hoist asks of a forge for one automation.
#[derive(Clone, Debug)]
pub struct PullRequestSpec {
    /// hoist's branch.
    pub head: String,
    /// The checkout branch.
    pub base: String,
    pub title: String,
    pub body: String,
    pub labels: Vec<String>,
}

/// Why a forge call failed. Never carries the token.
#[derive(Debug, thiserror::Error)]
pub enum ForgeError {
    #[error("{0}")]
    Config(String),
    #[error("{method} {path}: HTTP {status}: {message}{}", hint(*status))]
    Http {
        method: String,
        path: String,
        status: u16,
        message: String,
    },
    #[error("{method} {path}: {message}")]
    Transport {
        method: String,
        path: String,
        message: String,
    },
    #[error("{method} {path}: rate limited for another {seconds}s; the next run tries again")]
    RateLimited {
        method: String,
        path: String,
        seconds: u64,
    },
}

fn hint(status: u16) -> &'static str {
    match status {
        401 => "; the token is missing or invalid",
        403 => {
            "; the token lacks a scope (pull requests: write, contents: write) or the rate limit is spent"
        }
        404 => "; no such repository, or the token cannot see it",
        409 | 422 => "; the forge refused the request as invalid",
        _ => "",
    }
}

/// The calls hoist makes on a forge, one request each where the API
/// allows; [`ensure`] and [`retire`] decide which to make.
pub trait Forge {
    /// The API root and repository, so that a record from another forge or
    /// repository is never taken for this one's.
    fn identity(&self) -> String;
    /// The open pull request from `head` (in the repository itself, not a
    /// fork) to `base`, if there is one.
    fn find_open(&self, head: &str, base: &str) -> Result<Option<PullState>, ForgeError>;
    /// Pull request `number`, open or not.
    fn get(&self, number: u64) -> Result<PullState, ForgeError>;
    /// Opens a pull request, with labels where the API takes them at once.
    fn create(&self, spec: &PullRequestSpec) -> Result<PullState, ForgeError>;
    /// Sets the title and body of pull request `number`.
    fn edit(&self, number: u64, title: &str, body: &str) -> Result<PullState, ForgeError>;
    /// Adds labels, keeping those people put on.
    fn add_labels(&self, number: u64, labels: &[String]) -> Result<(), ForgeError>;
    /// Closes pull request `number`, then comments why: a comment never
    /// claims a close that failed.
    fn close(&self, number: u64, comment: &str) -> Result<(), ForgeError>;
    /// The longest pull request body the forge takes, in characters; hoist
    /// counts bytes, which are never fewer.
    fn body_limit(&self) -> usize;
}

/// GitHub's limit on a pull request body: 65,536 characters. Gitea
/// documents none; hoist keeps to GitHub's there too.
pub const GITHUB_BODY_LIMIT: usize = 65_536;
/// GitLab's limit on a merge request description: 1,048,576 characters.
pub const GITLAB_BODY_LIMIT: usize = 1_048_576;

pub use crate::model::PullRequestRecord;

/// What a run did to the pull request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Opened,
    Updated,
    /// Open, and already saying what it should.
    Unchanged,
    /// Closed because the base branch holds every change.
    Closed,
}

/// A pull request and what this run did to it, for the run report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Outcome {
    #[serde(flatten)]
    pub pull_request: PullRequest,
    pub action: Action,
}

fn content_hash(title: &str, body: &str) -> String {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    hasher.update(title.as_bytes());
    hasher.update([0]);
    hasher.update(body.as_bytes());
    format!("{:x}", hasher.finalize())
}

/// Forges keep text as given, but browsers and APIs may turn `\n` into
/// `\r\n` or drop trailing blanks; such a difference is no reason to edit.
fn same_text(a: &str, b: &str) -> bool {
    let normal = |s: &str| s.replace("\r\n", "\n").trim_end().to_string();
    normal(a) == normal(b)
}

/// The record, if it is about this forge's repository and these branches.
fn relevant<'r>(
    forge: &dyn Forge,
    head: &str,
    base: &str,
    recorded: Option<&'r PullRequestRecord>,
) -> Option<&'r PullRequestRecord> {
    recorded.filter(|r| r.forge == forge.identity() && r.head == head && r.base == base)
}

/// The open pull request `recorded` names, else any open one from head to
/// base: one call either way, two when the recorded one was closed (or no
/// longer goes from head to base).
fn open_pull(
    forge: &dyn Forge,
    head: &str,
    base: &str,
    recorded: Option<&PullRequestRecord>,
) -> Result<Option<PullState>, ForgeError> {
    if let Some(r) = relevant(forge, head, base, recorded) {
        let pull = forge.get(r.number)?;
        if pull.is_open_from(head, base) {
            return Ok(Some(pull));
        }
    }
    Ok(forge
        .find_open(head, base)?
        .filter(|p| p.is_open_from(head, base)))
}

/// Makes sure exactly one pull request from `spec.head` to `spec.base` is
/// open and says what `spec` says. With a record of it and nothing pushed
/// or changed since, that takes no call at all.
pub fn ensure(
    forge: &dyn Forge,
    spec: &PullRequestSpec,
    recorded: Option<&PullRequestRecord>,
    pushed: bool,
) -> Result<(Outcome, PullRequestRecord), ForgeError> {
    let content = content_hash(&spec.title, &spec.body);
    let record = |pull: &PullState| PullRequestRecord {
        forge: forge.identity(),
        number: pull.number,
        url: pull.url.clone(),
        head: spec.head.clone(),
        base: spec.base.clone(),
        content: content.clone(),
        labels: spec.labels.clone(),
    };
    if let Some(r) = relevant(forge, &spec.head, &spec.base, recorded)
        && !pushed
        && r.content == content
        && r.labels == spec.labels
    {
        let outcome = Outcome {
            pull_request: PullRequest {
                number: r.number,
                url: r.url.clone(),
            },
            action: Action::Unchanged,
        };
        return Ok((outcome, r.clone()));
    }
    let (pull, mut action) = match open_pull(forge, &spec.head, &spec.base, recorded)? {
        Some(open) if same_text(&open.title, &spec.title) && same_text(&open.body, &spec.body) => {
            (open, Action::Unchanged)
        }
        Some(open) => (
            forge.edit(open.number, &spec.title, &spec.body)?,
            Action::Updated,
        ),
        None => (forge.create(spec)?, Action::Opened),
    };
    let missing: Vec<String> = spec
        .labels
        .iter()
        .filter(|l| !pull.labels.contains(l))
        .cloned()
        .collect();
    if !missing.is_empty() {
        forge.add_labels(pull.number, &missing)?;
        if action == Action::Unchanged {
            action = Action::Updated;
        }
    }
    let outcome = Outcome {
        pull_request: pull.pull_request(),
        action,
    };
    Ok((outcome, record(&pull)))
}

/// The base branch already holds every change: closes the open pull
/// request from `head` to `base`, if there is one, with `comment`.
pub fn retire(
    forge: &dyn Forge,
    head: &str,
    base: &str,
    recorded: Option<&PullRequestRecord>,
    comment: &str,
) -> Result<Option<Outcome>, ForgeError> {
    let Some(open) = open_pull(forge, head, base, recorded)? else {
        return Ok(None);
    };
    forge.close(open.number, comment)?;
    Ok(Some(Outcome {
        pull_request: open.pull_request(),
        action: Action::Closed,
    }))
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Opened => "opened",
            Action::Updated => "updated",
            Action::Unchanged => "unchanged",
            Action::Closed => "closed",
        })
    }
}

impl fmt::Display for PullRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{} {}", self.number, self.url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// A forge in memory that records which calls were made.
    #[derive(Default)]
    struct Memory {
        pulls: RefCell<Vec<PullState>>,
        calls: RefCell<Vec<&'static str>>,
        /// Whether `create` sets labels at once (GitLab, Gitea) or not (GitHub).
        labels_on_create: bool,
    }

    impl Memory {
        fn with(pull: PullState) -> Memory {
            Memory {
                pulls: RefCell::new(vec![pull]),
                ..Memory::default()
            }
        }
        fn calls(&self) -> Vec<&'static str> {
            self.calls.borrow().clone()
        }
        fn find(&self, number: u64) -> Result<PullState, ForgeError> {
            self.pulls
                .borrow()
                .iter()
                .find(|p| p.number == number)
                .cloned()
                .ok_or_else(|| ForgeError::Config("no such pull request".into()))
        }
        fn change(&self, number: u64, f: impl FnOnce(&mut PullState)) {
            if let Some(p) = self
                .pulls
                .borrow_mut()
                .iter_mut()
                .find(|p| p.number == number)
            {
                f(p);
            }
        }
    }

    impl Forge for Memory {
        fn identity(&self) -> String {
            "memory acme/fleet".into()
        }
        fn find_open(&self, head: &str, base: &str) -> Result<Option<PullState>, ForgeError> {
            self.calls.borrow_mut().push("find_open");
            Ok(self
                .pulls
                .borrow()
                .iter()
                .find(|p| p.open && p.head == head && p.base == base)
                .cloned())
        }
        fn get(&self, number: u64) -> Result<PullState, ForgeError> {
            self.calls.borrow_mut().push("get");
            self.find(number)
        }
        fn create(&self, spec: &PullRequestSpec) -> Result<PullState, ForgeError> {
            self.calls.borrow_mut().push("create");
            let number = self.pulls.borrow().len() as u64 + 1;
            let pull = PullState {
                number,
                url: format!("https://forge/pull/{number}"),
                open: true,
                title: spec.title.clone(),
                body: spec.body.clone(),
                labels: if self.labels_on_create {
                    spec.labels.clone()
                } else {
                    Vec::new()
                },
                head: spec.head.clone(),
                base: spec.base.clone(),
                fork: false,
            };
            self.pulls.borrow_mut().push(pull.clone());
            Ok(pull)
        }
        fn edit(&self, number: u64, title: &str, body: &str) -> Result<PullState, ForgeError> {
            self.calls.borrow_mut().push("edit");
            self.change(number, |p| {
                p.title = title.into();
                p.body = body.into();
            });
            self.find(number)
        }
        fn add_labels(&self, number: u64, labels: &[String]) -> Result<(), ForgeError> {
            self.calls.borrow_mut().push("add_labels");
            self.change(number, |p| p.labels.extend(labels.iter().cloned()));
            Ok(())
        }
        fn close(&self, number: u64, _: &str) -> Result<(), ForgeError> {
            self.calls.borrow_mut().push("close");
            self.change(number, |p| p.open = false);
            Ok(())
        }
        fn body_limit(&self) -> usize {
            GITHUB_BODY_LIMIT
        }
    }

    fn spec(title: &str) -> PullRequestSpec {
        PullRequestSpec {
            head: "hoist/fleet".into(),
            base: "main".into(),
            title: title.into(),
            body: "| Image | Old | New |".into(),
            labels: vec!["dependencies".into()],
        }
    }

    fn open_pull(title: &str, labels: &[&str]) -> PullState {
        PullState {
            number: 1,
            url: "https://forge/pull/1".into(),
            open: true,
            title: title.into(),
            body: "| Image | Old | New |".into(),
            labels: labels.iter().map(|l| l.to_string()).collect(),
            head: "hoist/fleet".into(),
            base: "main".into(),
            fork: false,
        }
    }

    fn run(
        forge: &Memory,
        spec: &PullRequestSpec,
        recorded: Option<&PullRequestRecord>,
        pushed: bool,
    ) -> (Action, PullRequestRecord) {
        let (outcome, record) =
            ensure(forge, spec, recorded, pushed).unwrap_or_else(|e| panic!("{e}"));
        (outcome.action, record)
    }

    #[test]
    fn opens_one_pull_request_and_then_asks_nothing_while_nothing_changes() {
        let forge = Memory::default();
        let (action, record) = run(&forge, &spec("a → b"), None, true);
        assert_eq!(action, Action::Opened);
        assert_eq!(forge.calls(), ["find_open", "create", "add_labels"]);
        assert_eq!(forge.pulls.borrow()[0].labels, ["dependencies"]);
        // The branch did not move and the text is the same: no call at all.
        forge.calls.borrow_mut().clear();
        let (action, again) = run(&forge, &spec("a → b"), Some(&record), false);
        assert_eq!((action, forge.calls().len()), (Action::Unchanged, 0));
        assert_eq!(again, record);
        // A forge that takes labels with the pull request needs no label call.
        let gitlab = Memory {
            labels_on_create: true,
            ..Memory::default()
        };
        run(&gitlab, &spec("a → b"), None, true);
        assert_eq!(gitlab.calls(), ["find_open", "create"]);
    }

    #[test]
    fn a_recorded_pull_request_is_read_by_number_and_edited_only_when_its_text_changes() {
        let forge = Memory::with(open_pull("a → b", &["dependencies"]));
        let (_, record) = run(&forge, &spec("a → b"), None, false);
        assert_eq!(forge.calls(), ["find_open"], "found with the same text");
        // The base moved: the branch was pushed, the text is the same.
        forge.calls.borrow_mut().clear();
        let (action, _) = run(&forge, &spec("a → b"), Some(&record), true);
        assert_eq!((action, forge.calls()), (Action::Unchanged, vec!["get"]));
        // A newer tag: one read, one edit.
        forge.calls.borrow_mut().clear();
        let (action, record) = run(&forge, &spec("a → c"), Some(&record), true);
        assert_eq!(
            (action, forge.calls()),
            (Action::Updated, vec!["get", "edit"])
        );
        assert_eq!(forge.pulls.borrow()[0].title, "a → c");
        // Someone closed it: a new one is opened, never an edit of the closed one.
        forge.change(1, |p| p.open = false);
        forge.calls.borrow_mut().clear();
        let (action, record) = run(&forge, &spec("a → d"), Some(&record), true);
        assert_eq!(action, Action::Opened);
        assert_eq!(forge.calls(), ["get", "find_open", "create", "add_labels"]);
        assert_eq!(record.number, 2);
        assert_eq!(forge.pulls.borrow()[0].title, "a → c");
        // Text that differs only in line endings is no reason to edit.
        forge.change(2, |p| p.body = "| Image | Old | New |\r\n".into());
        forge.calls.borrow_mut().clear();
        run(&forge, &spec("a → d"), Some(&record), true);
        assert_eq!(forge.calls(), ["get"]);
    }

    #[test]
    fn labels_people_removed_are_put_back_only_when_missing() {
        let forge = Memory::with(open_pull("a → b", &["bug"]));
        run(&forge, &spec("a → b"), None, false);
        assert_eq!(forge.calls(), ["find_open", "add_labels"]);
        assert_eq!(forge.pulls.borrow()[0].labels, ["bug", "dependencies"]);
    }

    #[test]
    fn retiring_closes_the_open_pull_request_with_a_comment() {
        let forge = Memory::with(open_pull("a → b", &[]));
        let record = run(&forge, &spec("a → b"), None, false).1;
        forge.calls.borrow_mut().clear();
        let closed = retire(&forge, "hoist/fleet", "main", Some(&record), "why")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(closed.map(|o| o.action), Some(Action::Closed));
        assert_eq!(forge.calls(), ["get", "close"]);
        assert!(!forge.pulls.borrow()[0].open);
        // Nothing open any more: nothing to close.
        forge.calls.borrow_mut().clear();
        let none = retire(&forge, "hoist/fleet", "main", Some(&record), "why")
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(none.is_none());
        assert_eq!(forge.calls(), ["get", "find_open"]);
    }

    #[test]
    fn rate_limits_are_waited_out_for_as_long_as_the_forge_says() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let headers =
            |retry: Option<&str>, remaining: Option<&str>, reset: Option<&str>| RateLimitHeaders {
                retry_after: retry.map(str::to_string),
                remaining: remaining.map(str::to_string),
                reset: reset.map(str::to_string),
            };
        let secs = Duration::from_secs;
        let cases = [
            // GitHub's secondary limit: 403 or 429 with Retry-After.
            (403, headers(Some("30"), None, None), Some(secs(30))),
            (429, headers(Some("0"), None, None), Some(secs(1))),
            // GitHub's primary limit: 403, none remaining, reset in Unix seconds.
            (
                403,
                headers(None, Some("0"), Some("1800000090")),
                Some(secs(90)),
            ),
            // GitLab: 429 with RateLimit-Reset.
            (
                429,
                headers(None, Some("0"), Some("1800000005")),
                Some(secs(5)),
            ),
            // A reset in the past still waits a moment.
            (429, headers(None, None, Some("1700000000")), Some(secs(1))),
            // No header at all: a minute.
            (429, headers(None, None, None), Some(secs(60))),
            // A 403 with requests left is a permission problem, not a limit.
            (403, headers(None, Some("4999"), Some("1800000090")), None),
            (403, headers(None, None, None), None),
            // GitHub's secondary limit said only in the message: a minute.
            (429, headers(None, None, None), Some(secs(60))),
            // RateLimit-Reset as seconds from now (the IETF draft's form).
            (429, headers(None, Some("0"), Some("7")), Some(secs(7))),
            (200, headers(None, Some("0"), Some("1800000090")), None),
        ];
        let secondary = r#"{"message": "You have exceeded a secondary rate limit."}"#;
        assert_eq!(
            rate_limit_wait(403, &headers(None, Some("4000"), None), secondary, now),
            Some(secs(60))
        );
        for (status, headers, expected) in cases {
            assert_eq!(
                rate_limit_wait(status, &headers, "", now),
                expected,
                "{status} {headers:?}"
            );
        }
    }

    fn repo(url: &str) -> Option<(String, String)> {
        ForgeRepo::from_git_url(url).ok().map(|r| (r.host, r.path))
    }

    #[test]
    fn repositories_from_git_urls() {
        let ok = |h: &str, p: &str| Some((h.to_string(), p.to_string()));
        assert_eq!(
            repo("https://github.com/acme/fleet.git"),
            ok("github.com", "acme/fleet")
        );
        assert_eq!(
            repo("https://github.com/acme/fleet"),
            ok("github.com", "acme/fleet")
        );
        assert_eq!(
            repo("git@github.com:acme/fleet.git"),
            ok("github.com", "acme/fleet")
        );
        assert_eq!(
            repo("ssh://git@github.com/acme/fleet.git"),
            ok("github.com", "acme/fleet")
        );
        assert_eq!(
            repo("ssh://git@gitlab.example.com:2222/group/sub/project.git"),
            ok("gitlab.example.com", "group/sub/project")
        );
        assert_eq!(
            repo("https://bot:tok@git.example.com:8443/team/app.git/"),
            ok("git.example.com:8443", "team/app")
        );
        for bad in [
            "file:///srv/fleet.git",
            "https://github.com/acme",
            "fleet",
            "https://github.com//x",
        ] {
            assert!(repo(bad).is_none(), "{bad}");
        }
        let error = match ForgeRepo::from_git_url("https://bot:tok@github.com/x") {
            Ok(r) => panic!("read {r:?} from a URL with no repository"),
            Err(e) => e.to_string(),
        };
        assert!(!error.is_empty() && !error.contains("tok"), "{error}");
    }
}
