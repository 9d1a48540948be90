//! What one automation run did, as `-o json` prints it and the
//! controller turns into status.

use serde::Serialize;

use crate::forge::Outcome;
use crate::model::Change;
use crate::pipeline::error::ErrorReport;

/// What one automation did. `-o json` prints these.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AutomationReport {
    /// `ns/name` of the ImageUpdateAutomation.
    pub automation: String,
    /// The branch pushed to (or that would be).
    pub branch: String,
    /// The commit pushed, if any.
    pub commit: Option<String>,
    /// Paths relative to the repository root.
    pub changes: Vec<Change>,
    /// Problems with single files or markers that did not stop the run.
    pub warnings: Vec<String>,
    /// Why the automation failed, and whether retrying can help. Nothing
    /// was pushed then, unless the failure came after the push (the forge
    /// refused the pull request, a selected policy's repository could not
    /// be scanned, the sync failed): `commit` says.
    pub error: Option<ErrorReport>,
    /// The pull request hoist keeps for this automation, if it uses one,
    /// and what this run did to it.
    pub pull_request: Option<Outcome>,
    /// Milliseconds spent in each stage, over all push attempts.
    pub timings: Timings,
    /// Set when the automation has update windows and none is open: the
    /// run only worked out what it would change (`changes`, `diff`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<WindowReport>,
    /// What `spec.sync` applied, and from which commit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncOutcome>,
    /// The healthy rollout this run recorded in `spec.sync.evidence`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence: Option<EvidenceReport>,
    /// The failed rollout this run rolled back (`spec.sync.rollback`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackReport>,
    /// With `--dry-run`: the unified diff that would be committed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
}

/// Outside every update window.
#[derive(Clone, Debug, Serialize)]
pub struct WindowReport {
    pub open: bool,
    /// RFC 3339, when the next window opens (within a year).
    pub next_open: Option<String>,
}

/// A sync of the checkout branch: its commit and what was applied.
#[derive(Clone, Debug, Serialize)]
pub struct SyncOutcome {
    pub revision: String,
    #[serde(flatten)]
    pub report: crate::sync::SyncReport,
}

/// A healthy rollout recorded in the evidence file.
#[derive(Clone, Debug, Serialize)]
pub struct EvidenceReport {
    /// The evidence file, relative to the repository.
    pub path: String,
    /// The commit that recorded it.
    pub commit: String,
}

/// A failed rollout and what hoist did about it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RollbackReport {
    /// What the sync said.
    pub reason: String,
    /// The tags rejected for their policies.
    pub rejected: Vec<RejectedReport>,
    /// The rollback commit, once pushed to `branch`.
    pub commit: Option<String>,
    /// The checkout branch, or hoist's `hoist/rollback/NAMESPACE/NAME` when someone
    /// committed on top of hoist's commit.
    pub branch: String,
    /// The pull request that proposes the rollback then.
    pub pull_request: Option<Outcome>,
}

/// One tag a rollback rejected.
#[derive(Clone, Debug, Serialize)]
pub struct RejectedReport {
    pub policy: String,
    pub tag: String,
    pub digest: Option<String>,
    /// The tag put back: what last ran healthy (none when nothing had).
    pub restored: Option<String>,
}

/// Where an automation's time went.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Timings {
    /// The scan of every repository of the run (shared by all automations).
    pub scan_ms: u64,
    pub checkout_ms: u64,
    pub rewrite_ms: u64,
    pub commit_ms: u64,
    pub push_ms: u64,
}
