//! Why a scan or an automation failed, by kind, so that every driver can
//! tell "fix your spec" from "try again": the controller stalls on the
//! first and backs off on the second, `hoist run` exits 2 or 1, `-o json`
//! prints the kind, and /metrics counts each `reason` apart.

use serde::Serialize;

use crate::forge::ForgeError;
use crate::git::GitError;
use crate::message::TemplateError;
use crate::registry::{FailureKind, RegistryError};
use crate::rewrite::RewriteError;
use crate::store::StoreError;

/// What to do about a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorClass {
    /// The spec cannot work until someone changes it: `Stalled`, exit 2,
    /// not retried.
    Stalled,
    /// It may pass by itself (a server, the network, a branch that moved):
    /// retried with backoff, exit 1.
    Retry,
}

/// A failure as `-o json` and the status print it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ErrorReport {
    /// What failed, as /metrics labels it: `spec`, `git`, `registry_timeout`, …
    pub kind: &'static str,
    pub class: ErrorClass,
    pub message: String,
}

impl std::fmt::Display for ErrorReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Why one repository could not be scanned, or one policy could not
/// select.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ScanError {
    /// A field of the object is wrong: `object` is `ImageRepository ns/name`
    /// or `ImagePolicy ns/name`.
    #[error("{object}: {field}: {message}")]
    Spec {
        object: String,
        field: String,
        message: String,
    },
    /// The registry refused or did not answer; the message carries the hint.
    #[error("{object}: {message}")]
    Registry {
        object: String,
        kind: FailureKind,
        message: String,
    },
    /// config.json or a credential helper failed.
    #[error("ImageRepository {repository}: {message}")]
    Credentials { repository: String, message: String },
    /// `spec.provider` gave no credential: the cloud's identity endpoint
    /// refused or did not answer.
    #[error("ImageRepository {repository}: {error}")]
    Identity {
        repository: String,
        error: crate::registry::identity::IdentityError,
    },
    /// There are no tags yet to select from: the repository is suspended
    /// and was never scanned, or (in the controller) its reconciler has
    /// not scanned it yet.
    #[error("ImageRepository {repository} {why}")]
    NotScanned {
        repository: String,
        why: &'static str,
    },
    /// A downstream policy's upstream evidence could not be read.
    #[error("ImagePolicy {policy}: spec.promotion.evidence: {message}")]
    Evidence { policy: String, message: String },
    #[error("{0}")]
    Store(String),
}

impl ScanError {
    pub(crate) fn registry(object: String, e: &RegistryError) -> ScanError {
        let message = match e.hint() {
            Some(hint) => format!("{e}; {hint}"),
            None => e.to_string(),
        };
        ScanError::Registry {
            object,
            kind: e.kind,
            message,
        }
    }

    pub fn class(&self) -> ErrorClass {
        match self {
            ScanError::Spec { .. } => ErrorClass::Stalled,
            ScanError::Registry { .. }
            | ScanError::Credentials { .. }
            | ScanError::Identity { .. }
            | ScanError::NotScanned { .. }
            | ScanError::Evidence { .. }
            | ScanError::Store(_) => ErrorClass::Retry,
        }
    }

    pub fn metric_label(&self) -> &'static str {
        match self {
            ScanError::Spec { .. } => "spec",
            ScanError::Registry { kind, .. } => match kind {
                FailureKind::Unauthorized => "registry_unauthorized",
                FailureKind::Denied => "registry_denied",
                FailureKind::NotFound => "registry_not_found",
                FailureKind::RateLimited => "registry_rate_limited",
                FailureKind::Timeout => "registry_timeout",
                FailureKind::Transport => "registry_transport",
                FailureKind::Server => "registry_server",
                FailureKind::Protocol => "registry_protocol",
                FailureKind::Credentials => "registry_credentials",
                FailureKind::TooLarge => "registry_too_large",
            },
            ScanError::Credentials { .. } => "registry_credentials",
            ScanError::Identity { .. } => "registry_identity",
            ScanError::NotScanned { .. } => "not_scanned",
            ScanError::Evidence { .. } => "evidence",
            ScanError::Store(_) => "store",
        }
    }

    pub fn report(&self) -> ErrorReport {
        ErrorReport {
            kind: self.metric_label(),
            class: self.class(),
            message: self.to_string(),
        }
    }
}

impl From<StoreError> for ScanError {
    fn from(e: StoreError) -> Self {
        ScanError::Store(e.to_string())
    }
}

/// Why an ImageUpdateAutomation failed.
#[derive(Debug, thiserror::Error)]
pub enum AutomationError {
    /// A field of the spec cannot work: a path spelled to lead out of the
    /// repository, an update window that does not parse.
    #[error("{field}: {message}")]
    Spec { field: String, message: String },
    /// A Secret the spec names lacks what it needs (a forge token): fixed
    /// in the Secret, which the automation is not told about, so retried.
    #[error("{field}: {message}")]
    Secret { field: String, message: String },
    /// The repository does not have what the spec expects at a path (no
    /// such directory, a symbolic link out, files that do not parse): a
    /// commit may fix it, so retried.
    #[error("{field}: {message}")]
    Repository { field: String, message: String },
    /// A template failed on the real changes.
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error(transparent)]
    Git(#[from] GitError),
    #[error(transparent)]
    Forge(#[from] ForgeError),
    #[error(transparent)]
    Rewrite(#[from] RewriteError),
    /// The branch moved under hoist (every push attempt, or while it
    /// deleted it): nothing was overwritten.
    #[error("{0}")]
    BranchMoved(String),
    /// hoist's own branch carries someone else's commit; hoist leaves it
    /// until it is merged or deleted.
    #[error("{0}")]
    ForeignCommit(String),
    /// `spec.sync` failed to apply, prune or wait.
    #[error("{0}")]
    Sync(String),
    /// The rollout of hoist's commit failed and `spec.sync.rollback` put
    /// back what ran healthy (or proposed it): the pass failed, and says
    /// what was rejected.
    #[error("{0}")]
    RolledBack(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Selected policies have no latest ref because their repository could
    /// not be scanned: what could be updated was, but the automation is
    /// not up to date.
    #[error("{}", .0.iter().map(|e| e.message.as_str()).collect::<Vec<_>>().join("; "))]
    Scan(Vec<ErrorReport>),
    /// `--strict`: the run warned (a marker that does nothing, a Secret
    /// that is not in the files) before it committed, and warnings are
    /// errors. Fixed in the input, so Stalled.
    #[error("--strict makes these warnings errors: {}", .0.join("; "))]
    Strict(Vec<String>),
    /// A driver did not provide what the pipeline needs (a runtime).
    #[error("{0}")]
    Internal(String),
}

impl AutomationError {
    pub fn spec(field: impl Into<String>, message: impl Into<String>) -> AutomationError {
        AutomationError::Spec {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn class(&self) -> ErrorClass {
        match self {
            AutomationError::Spec { .. }
            | AutomationError::Template(_)
            | AutomationError::Strict(_)
            | AutomationError::Forge(ForgeError::Config(_)) => ErrorClass::Stalled,
            AutomationError::Scan(errors)
                if errors.iter().all(|e| e.class == ErrorClass::Stalled) =>
            {
                ErrorClass::Stalled
            }
            AutomationError::Secret { .. }
            | AutomationError::Repository { .. }
            | AutomationError::Git(_)
            | AutomationError::Forge(_)
            | AutomationError::Rewrite(_)
            | AutomationError::BranchMoved(_)
            | AutomationError::ForeignCommit(_)
            | AutomationError::Sync(_)
            | AutomationError::RolledBack(_)
            | AutomationError::Store(_)
            | AutomationError::Scan(_)
            | AutomationError::Internal(_) => ErrorClass::Retry,
        }
    }

    pub fn metric_label(&self) -> &'static str {
        match self {
            AutomationError::Spec { .. } | AutomationError::Forge(ForgeError::Config(_)) => "spec",
            AutomationError::Secret { .. } => "secret",
            AutomationError::Repository { .. } => "repository",
            AutomationError::Template(_) => "template",
            AutomationError::Git(_) => "git",
            AutomationError::Forge(ForgeError::RateLimited { .. }) => "forge_rate_limited",
            AutomationError::Forge(_) => "forge",
            AutomationError::Rewrite(_) => "rewrite",
            AutomationError::BranchMoved(_) => "branch_moved",
            AutomationError::ForeignCommit(_) => "foreign_commit",
            AutomationError::Sync(_) => "sync",
            AutomationError::RolledBack(_) => "rolled_back",
            AutomationError::Store(_) => "store",
            AutomationError::Scan(_) => "scan",
            AutomationError::Strict(_) => "strict",
            AutomationError::Internal(_) => "internal",
        }
    }

    pub fn report(&self) -> ErrorReport {
        ErrorReport {
            kind: self.metric_label(),
            class: self.class(),
            message: self.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_problems_stall_and_server_problems_retry() {
        let cases: Vec<(AutomationError, ErrorClass, &str)> = vec![
            (
                AutomationError::spec("spec.update.path", "leads out of the repository"),
                ErrorClass::Stalled,
                "spec",
            ),
            (
                AutomationError::Template(TemplateError {
                    field: "spec.git.push.pullRequest.body".into(),
                    message: "too long".into(),
                }),
                ErrorClass::Stalled,
                "template",
            ),
            (
                AutomationError::Forge(ForgeError::Config("not a forge URL".into())),
                ErrorClass::Stalled,
                "spec",
            ),
            (
                AutomationError::Forge(ForgeError::RateLimited {
                    method: "POST".into(),
                    path: "/pulls".into(),
                    seconds: 60,
                }),
                ErrorClass::Retry,
                "forge_rate_limited",
            ),
            (
                AutomationError::BranchMoved("main kept moving".into()),
                ErrorClass::Retry,
                "branch_moved",
            ),
            (
                AutomationError::Secret {
                    field: "spec.git.push.pullRequest.secretRef".into(),
                    message: "no token".into(),
                },
                ErrorClass::Retry,
                "secret",
            ),
            (
                AutomationError::Repository {
                    field: "spec.update.path".into(),
                    message: "not a directory".into(),
                },
                ErrorClass::Retry,
                "repository",
            ),
            (
                AutomationError::Scan(vec![
                    ScanError::Registry {
                        object: "ImageRepository apps/app".into(),
                        kind: FailureKind::Transport,
                        message: "connection refused".into(),
                    }
                    .report(),
                ]),
                ErrorClass::Retry,
                "scan",
            ),
            (
                AutomationError::Scan(vec![
                    ScanError::Spec {
                        object: "ImageRepository apps/app".into(),
                        field: "spec.maxTags".into(),
                        message: "must be at least 1".into(),
                    }
                    .report(),
                ]),
                ErrorClass::Stalled,
                "scan",
            ),
        ];
        for (error, class, label) in cases {
            assert_eq!(error.class(), class, "{error}");
            assert_eq!(error.metric_label(), label, "{error}");
            let report = error.report();
            assert_eq!(report.message, error.to_string());
            assert_eq!(report.kind, label);
        }
    }

    #[test]
    fn each_registry_failure_has_its_own_label() {
        let kinds = [
            FailureKind::Unauthorized,
            FailureKind::Denied,
            FailureKind::NotFound,
            FailureKind::RateLimited,
            FailureKind::Timeout,
            FailureKind::Transport,
            FailureKind::Server,
            FailureKind::Protocol,
            FailureKind::Credentials,
            FailureKind::TooLarge,
        ];
        let labels: std::collections::BTreeSet<&str> = kinds
            .iter()
            .map(|&kind| {
                let e = ScanError::Registry {
                    object: "ImageRepository a/b".into(),
                    kind,
                    message: String::new(),
                };
                assert_eq!(e.class(), ErrorClass::Retry);
                e.metric_label()
            })
            .collect();
        assert_eq!(labels.len(), kinds.len(), "{labels:?}");
    }
}
