//! A pull request's life: opened once, kept current, closed when the base
//! branch has every change — asking the forge as little as it can.

use std::fmt;

use serde::Serialize;

#[cfg(test)]
use super::GITHUB_BODY_LIMIT;
use super::{Forge, ForgeError, PullRequest, PullRequestRecord, PullRequestSpec, PullState};

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
async fn open_pull(
    forge: &dyn Forge,
    head: &str,
    base: &str,
    recorded: Option<&PullRequestRecord>,
) -> Result<Option<PullState>, ForgeError> {
    if let Some(r) = relevant(forge, head, base, recorded) {
        let pull = forge.get(r.number).await?;
        if pull.is_open_from(head, base) {
            return Ok(Some(pull));
        }
    }
    Ok(forge
        .find_open(head, base)
        .await?
        .filter(|p| p.is_open_from(head, base)))
}

/// Makes sure exactly one pull request from `spec.head` to `spec.base` is
/// open and says what `spec` says. With a record of it and nothing pushed
/// or changed since, that takes no call at all.
pub async fn ensure(
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
    let (pull, mut action) = match open_pull(forge, &spec.head, &spec.base, recorded).await? {
        Some(open) if same_text(&open.title, &spec.title) && same_text(&open.body, &spec.body) => {
            (open, Action::Unchanged)
        }
        Some(open) => (
            forge.edit(open.number, &spec.title, &spec.body).await?,
            Action::Updated,
        ),
        None => (forge.create(spec).await?, Action::Opened),
    };
    let missing: Vec<String> = spec
        .labels
        .iter()
        .filter(|l| !pull.labels.contains(l))
        .cloned()
        .collect();
    if !missing.is_empty() {
        forge.add_labels(pull.number, &missing).await?;
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
pub async fn retire(
    forge: &dyn Forge,
    head: &str,
    base: &str,
    recorded: Option<&PullRequestRecord>,
    comment: &str,
) -> Result<Option<Outcome>, ForgeError> {
    let Some(open) = open_pull(forge, head, base, recorded).await? else {
        return Ok(None);
    };
    forge.close(open.number, comment).await?;
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
    use std::sync::{Mutex, PoisonError};

    /// A forge in memory that records which calls were made.
    #[derive(Default)]
    struct Memory {
        pulls: Mutex<Vec<PullState>>,
        calls: Mutex<Vec<&'static str>>,
        /// Whether `create` sets labels at once (GitLab, Gitea) or not (GitHub).
        labels_on_create: bool,
    }

    impl Memory {
        fn with(pull: PullState) -> Memory {
            Memory {
                pulls: Mutex::new(vec![pull]),
                ..Memory::default()
            }
        }
        fn calls(&self) -> Vec<&'static str> {
            self.calls
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        }
        fn find(&self, number: u64) -> Result<PullState, ForgeError> {
            self.pulls
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .find(|p| p.number == number)
                .cloned()
                .ok_or_else(|| ForgeError::Config("no such pull request".into()))
        }
        fn change(&self, number: u64, f: impl FnOnce(&mut PullState)) {
            if let Some(p) = self
                .pulls
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter_mut()
                .find(|p| p.number == number)
            {
                f(p);
            }
        }
    }

    #[async_trait::async_trait]
    impl Forge for Memory {
        fn identity(&self) -> String {
            "memory acme/fleet".into()
        }
        async fn find_open(&self, head: &str, base: &str) -> Result<Option<PullState>, ForgeError> {
            self.calls
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push("find_open");
            Ok(self
                .pulls
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .find(|p| p.open && p.head == head && p.base == base)
                .cloned())
        }
        async fn get(&self, number: u64) -> Result<PullState, ForgeError> {
            self.calls
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push("get");
            self.find(number)
        }
        async fn create(&self, spec: &PullRequestSpec) -> Result<PullState, ForgeError> {
            self.calls
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push("create");
            let number = self
                .pulls
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .len() as u64
                + 1;
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
            self.pulls
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(pull.clone());
            Ok(pull)
        }
        async fn edit(
            &self,
            number: u64,
            title: &str,
            body: &str,
        ) -> Result<PullState, ForgeError> {
            self.calls
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push("edit");
            self.change(number, |p| {
                p.title = title.into();
                p.body = body.into();
            });
            self.find(number)
        }
        async fn add_labels(&self, number: u64, labels: &[String]) -> Result<(), ForgeError> {
            self.calls
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push("add_labels");
            self.change(number, |p| p.labels.extend(labels.iter().cloned()));
            Ok(())
        }
        async fn close(&self, number: u64, _: &str) -> Result<(), ForgeError> {
            self.calls
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push("close");
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

    async fn run(
        forge: &Memory,
        spec: &PullRequestSpec,
        recorded: Option<&PullRequestRecord>,
        pushed: bool,
    ) -> (Action, PullRequestRecord) {
        let (outcome, record) = ensure(forge, spec, recorded, pushed)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        (outcome.action, record)
    }

    #[tokio::test]
    async fn opens_one_pull_request_and_then_asks_nothing_while_nothing_changes() {
        let forge = Memory::default();
        let (action, record) = run(&forge, &spec("a → b"), None, true).await;
        assert_eq!(action, Action::Opened);
        assert_eq!(forge.calls(), ["find_open", "create", "add_labels"]);
        assert_eq!(
            forge.pulls.lock().unwrap_or_else(PoisonError::into_inner)[0].labels,
            ["dependencies"]
        );
        // The branch did not move and the text is the same: no call at all.
        forge
            .calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        let (action, again) = run(&forge, &spec("a → b"), Some(&record), false).await;
        assert_eq!((action, forge.calls().len()), (Action::Unchanged, 0));
        assert_eq!(again, record);
        // A forge that takes labels with the pull request needs no label call.
        let gitlab = Memory {
            labels_on_create: true,
            ..Memory::default()
        };
        run(&gitlab, &spec("a → b"), None, true).await;
        assert_eq!(gitlab.calls(), ["find_open", "create"]);
    }

    #[tokio::test]
    async fn a_recorded_pull_request_is_read_by_number_and_edited_only_when_its_text_changes() {
        let forge = Memory::with(open_pull("a → b", &["dependencies"]));
        let (_, record) = run(&forge, &spec("a → b"), None, false).await;
        assert_eq!(forge.calls(), ["find_open"], "found with the same text");
        // The base moved: the branch was pushed, the text is the same.
        forge
            .calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        let (action, _) = run(&forge, &spec("a → b"), Some(&record), true).await;
        assert_eq!((action, forge.calls()), (Action::Unchanged, vec!["get"]));
        // A newer tag: one read, one edit.
        forge
            .calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        let (action, record) = run(&forge, &spec("a → c"), Some(&record), true).await;
        assert_eq!(
            (action, forge.calls()),
            (Action::Updated, vec!["get", "edit"])
        );
        assert_eq!(
            forge.pulls.lock().unwrap_or_else(PoisonError::into_inner)[0].title,
            "a → c"
        );
        // Someone closed it: a new one is opened, never an edit of the closed one.
        forge.change(1, |p| p.open = false);
        forge
            .calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        let (action, record) = run(&forge, &spec("a → d"), Some(&record), true).await;
        assert_eq!(action, Action::Opened);
        assert_eq!(forge.calls(), ["get", "find_open", "create", "add_labels"]);
        assert_eq!(record.number, 2);
        assert_eq!(
            forge.pulls.lock().unwrap_or_else(PoisonError::into_inner)[0].title,
            "a → c"
        );
        // Text that differs only in line endings is no reason to edit.
        forge.change(2, |p| p.body = "| Image | Old | New |\r\n".into());
        forge
            .calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        run(&forge, &spec("a → d"), Some(&record), true).await;
        assert_eq!(forge.calls(), ["get"]);
    }

    #[tokio::test]
    async fn labels_people_removed_are_put_back_only_when_missing() {
        let forge = Memory::with(open_pull("a → b", &["bug"]));
        run(&forge, &spec("a → b"), None, false).await;
        assert_eq!(forge.calls(), ["find_open", "add_labels"]);
        assert_eq!(
            forge.pulls.lock().unwrap_or_else(PoisonError::into_inner)[0].labels,
            ["bug", "dependencies"]
        );
    }

    #[tokio::test]
    async fn retiring_closes_the_open_pull_request_with_a_comment() {
        let forge = Memory::with(open_pull("a → b", &[]));
        let record = run(&forge, &spec("a → b"), None, false).await.1;
        forge
            .calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        let closed = retire(&forge, "hoist/fleet", "main", Some(&record), "why")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(closed.map(|o| o.action), Some(Action::Closed));
        assert_eq!(forge.calls(), ["get", "close"]);
        assert!(!forge.pulls.lock().unwrap_or_else(PoisonError::into_inner)[0].open);
        // Nothing open any more: nothing to close.
        forge
            .calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        let none = retire(&forge, "hoist/fleet", "main", Some(&record), "why")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(none.is_none());
        assert_eq!(forge.calls(), ["get", "find_open"]);
    }
}
