//! What hoist tells people about: one event of one object, as the
//! pipeline's reports say it happened.

use std::collections::BTreeMap;
use std::fmt;

/// Why an event happened, as Flux users know the reasons.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    NewLatestTag,
    Pushed,
    PullRequestOpened,
    PullRequestUpdated,
    PullRequestClosed,
    SyncFailed,
    RolledBack,
    ScanFailed,
}

impl Reason {
    pub const ALL: [Reason; 8] = [
        Reason::NewLatestTag,
        Reason::Pushed,
        Reason::PullRequestOpened,
        Reason::PullRequestUpdated,
        Reason::PullRequestClosed,
        Reason::SyncFailed,
        Reason::RolledBack,
        Reason::ScanFailed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Reason::NewLatestTag => "NewLatestTag",
            Reason::Pushed => "Pushed",
            Reason::PullRequestOpened => "PullRequestOpened",
            Reason::PullRequestUpdated => "PullRequestUpdated",
            Reason::PullRequestClosed => "PullRequestClosed",
            Reason::SyncFailed => "SyncFailed",
            Reason::RolledBack => "RolledBack",
            Reason::ScanFailed => "ScanFailed",
        }
    }

    pub fn parse(name: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.name() == name)
    }

    /// Failures are errors; the rest is news.
    pub fn severity(self) -> Severity {
        match self {
            Reason::SyncFailed | Reason::RolledBack | Reason::ScanFailed => Severity::Error,
            _ => Severity::Info,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Info,
    Error,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Error => "error",
        }
    }
}

/// One event of one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub reason: Reason,
    /// `ImageRepository`, `ImagePolicy` or `ImageUpdateAutomation`.
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    /// The object's labels, for an Alert's `matchLabels`.
    pub labels: BTreeMap<String, String>,
    pub message: String,
    /// What else is known: `revision` (a commit), `tag`, `image`,
    /// `branch`, `pullRequest`.
    pub metadata: BTreeMap<String, String>,
    pub at: jiff::Timestamp,
}

impl Event {
    /// The commit the event is about, if any: what a commit status
    /// provider posts on.
    pub fn revision(&self) -> Option<&str> {
        self.metadata.get("revision").map(String::as_str)
    }

    /// `Kind namespace/name`.
    pub fn object(&self) -> String {
        format!("{} {}/{}", self.kind, self.namespace, self.name)
    }
}
