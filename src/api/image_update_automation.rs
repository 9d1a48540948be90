use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Conditions, GoDuration, LabelSelector, LocalObjectReference};

/// Rewrite the marked image fields of a Git repository with the latest refs
/// of the selected policies, commit, push or open a pull request, and
/// optionally apply the result to the cluster.
// clippy reads kube's repeated `printcolumn(type_ = ...)` as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "hoist.dev",
    version = "v1alpha1",
    kind = "ImageUpdateAutomation",
    namespaced,
    status = "ImageUpdateAutomationStatus",
    shortname = "imgupd",
    category = "hoist",
    doc = "Keeps the marked image fields of a Git repository at the latest refs of the selected ImagePolicies.",
    printcolumn(name = "Last push", type_ = "date", json_path = ".status.lastPushTime"),
    printcolumn(
        name = "Commit",
        type_ = "string",
        json_path = ".status.lastPushCommit",
        priority = "1"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].message",
        priority = "1"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ImageUpdateAutomationSpec {
    /// How often to run.
    pub interval: GoDuration,
    /// Windows in which hoist may push; outside all of them it only scans.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedule: Vec<UpdateWindow>,
    pub git: GitSpec,
    /// Where and how to rewrite. Defaults to the whole repository, Setters.
    #[serde(default)]
    pub update: UpdateSpec,
    /// Which ImagePolicies of the namespace take part; all of them if empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_selector: Option<LabelSelector>,
    /// Apply the repository to the cluster after each push.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncSpec>,
    /// The ServiceAccount of this namespace that `sync` applies, prunes
    /// and waits as (impersonated), so that it can do no more than that
    /// account may. Unset: the controller's `--default-service-account`,
    /// else the controller's own identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
}

/// The repository, named inline (Flux points at a GitRepository instead).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitSpec {
    /// https, http, ssh://, user@host:path, git:// or file:// URL.
    pub url: String,
    /// Flux's git Secret keys: `username`/`password` or `bearerToken`, `identity`/`known_hosts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectReference>,
    /// Where `secret_ref` lives when not in the automation's namespace: a
    /// Flux GitRepository of another namespace keeps its Secret there. Set
    /// by the loader, never read from a document or the CRD.
    #[serde(skip)]
    #[schemars(skip)]
    pub secret_namespace: Option<String>,
    pub checkout: GitCheckout,
    #[serde(default)]
    pub commit: CommitSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push: Option<PushSpec>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitCheckout {
    #[serde(rename = "ref")]
    pub reference: GitCheckoutRef,
}

/// Where the checkout starts, in Flux's terms: a branch's tip, or a tag,
/// the highest tag in a semver range, a full ref name or a commit. Anything
/// but a branch needs `push.branch`: hoist's commit has to go somewhere.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GitCheckoutRef {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub branch: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semver: Option<String>,
    /// A full ref name, e.g. `refs/pull/7/head`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A commit id; with `branch`, a commit of that branch (as in Flux).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

impl GitCheckoutRef {
    /// A checkout of `branch`'s tip.
    pub fn branch(branch: &str) -> Self {
        GitCheckoutRef {
            branch: branch.to_string(),
            ..GitCheckoutRef::default()
        }
    }

    /// What to check out, by Flux's precedence: commit, name, semver, tag,
    /// branch.
    pub fn reference(&self) -> crate::git::Reference {
        use crate::git::Reference;
        let given = |v: &Option<String>| v.clone().filter(|v| !v.is_empty());
        if let Some(id) = given(&self.commit) {
            Reference::Commit(id)
        } else if let Some(name) = given(&self.name) {
            Reference::Name(name)
        } else if let Some(range) = given(&self.semver) {
            Reference::Semver(range)
        } else if let Some(tag) = given(&self.tag) {
            Reference::Tag(tag)
        } else {
            Reference::Branch(self.branch.clone())
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommitSpec {
    pub author: CommitAuthor,
    /// A template for the commit message; hoist's default when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_template: Option<String>,
    /// Whose commit message this is. Set by the loader, never read from a
    /// document or the CRD.
    #[serde(skip)]
    #[schemars(skip)]
    pub format: MessageFormat,
    /// A Flux template's `.Values` (`messageTemplateValues`). Set by the
    /// loader for Flux documents only.
    #[serde(skip)]
    #[schemars(skip)]
    pub template_values: std::collections::BTreeMap<String, String>,
    /// Flux's `signingKey`: the Secret (in the automation's namespace)
    /// whose key signs the commits. Set by the loader for Flux documents
    /// only.
    #[serde(skip)]
    #[schemars(skip)]
    pub signing: Option<CommitSigning>,
}

/// A signing key's Secret and its format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitSigning {
    pub secret: String,
    pub format: SigningFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SigningFormat {
    /// An ASCII-armored OpenPGP key in `git.asc`, its passphrase in
    /// `passphrase`.
    OpenPgp,
    /// An unencrypted OpenSSH private key in `identity`.
    Ssh,
}

/// Whose commit messages an automation writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MessageFormat {
    /// hoist's: a minijinja template (or hoist's default) and the
    /// `Hoist-Automation` trailer.
    #[default]
    Hoist,
    /// Flux's, for a Flux ImageUpdateAutomation: exactly what Flux writes
    /// (its Go template, or its default message), no trailer.
    Flux,
}

impl Default for CommitSpec {
    fn default() -> Self {
        CommitSpec {
            author: CommitAuthor {
                name: "hoist".to_string(),
                email: "hoist@localhost".to_string(),
            },
            message_template: None,
            format: MessageFormat::Hoist,
            template_values: Default::default(),
            signing: None,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CommitAuthor {
    pub name: String,
    pub email: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PushSpec {
    /// The branch to push to; the checkout branch when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_request: Option<PullRequestSpec>,
    /// Flux's `push.refspec`, as the ref hoist's commit is pushed to as
    /// well (`refs/heads/auto`, Gerrit's `refs/for/main`). Set by the
    /// loader for Flux documents only.
    #[serde(skip)]
    #[schemars(skip)]
    pub also_to: Option<String>,
    /// Flux's `push.options`, as `git push --push-option` values (`key`
    /// or `key=value`). Set by the loader for Flux documents only.
    #[serde(skip)]
    #[schemars(skip)]
    pub options: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PullRequestSpec {
    pub provider: ForgeProvider,
    /// The forge's API root; the provider's public default when omitted.
    #[serde(default, rename = "apiURL", skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
    /// A Secret with key `token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectReference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ForgeProvider {
    Github,
    Gitlab,
    Gitea,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct UpdateSpec {
    /// The directory of the repository to rewrite, read recursively.
    #[serde(default = "UpdateSpec::default_path")]
    pub path: String,
    #[serde(default)]
    pub strategy: UpdateStrategy,
}

impl UpdateSpec {
    fn default_path() -> String {
        "./".to_string()
    }
}

impl Default for UpdateSpec {
    fn default() -> Self {
        UpdateSpec {
            path: UpdateSpec::default_path(),
            strategy: UpdateStrategy::Setters,
        }
    }
}

/// How image fields are found: Flux's setter markers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum UpdateStrategy {
    #[default]
    Setters,
}

/// A window in which hoist may push: from each `cron` firing, for `duration`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateWindow {
    pub cron: String,
    pub duration: GoDuration,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SyncSpec {
    /// The directory of the repository to apply, read recursively.
    pub path: String,
    #[serde(default)]
    pub prune: bool,
    #[serde(default)]
    pub wait: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<GoDuration>,
    /// When the rollout of an image hoist committed fails (a Deployment
    /// not Available by its progress deadline or `timeout`, a Job that
    /// fails), commit the image that last ran healthy back — a new commit,
    /// pushed only when hoist's own commit is the branch's tip, else
    /// proposed as a pull request — and reject the failed tag for its
    /// policy. Needs `wait`; keeps its record in `evidence`. Set (even
    /// empty, `rollback: {}`) to turn it on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackSpec>,
    /// Record in the repository which images ran healthy, and when, for
    /// downstream ImagePolicies' `spec.promotion` (and for `rollback`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<EvidenceSpec>,
}

/// How a rollback is proposed when it cannot be pushed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RollbackSpec {
    /// The forge to open the rollback's pull request on when someone
    /// committed on top of hoist's commit. Default
    /// `spec.git.push.pullRequest`; with neither, hoist pushes the
    /// rollback to its branch `hoist/rollback/NAMESPACE/NAME` and says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_request: Option<PullRequestSpec>,
}

/// Where an automation keeps its evidence file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EvidenceSpec {
    /// A path in the repository below a hidden directory, so that neither
    /// the rewrite nor the sync reads it. Default
    /// `.hoist/evidence/NAMESPACE/NAME.yaml`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

impl SyncSpec {
    /// The evidence file's path, when the automation keeps one.
    pub fn evidence_path(&self, namespace: &str, name: &str) -> Option<String> {
        match (&self.evidence, &self.rollback) {
            (Some(EvidenceSpec { path: Some(path) }), _) => Some(path.clone()),
            (Some(_), _) | (None, Some(_)) => Some(crate::promotion::default_path(namespace, name)),
            (None, None) => None,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageUpdateAutomationStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Conditions,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_push_commit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_push_time: Option<String>,
    /// The latest refs of the policies the last run used, by `ns/name`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub observed_policies: BTreeMap<String, super::ImageRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_request_url: Option<String>,
    /// The commit `spec.sync` last applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_revision: Option<String>,
    /// What `spec.sync` has applied, for pruning: kept here so that it
    /// survives the pod and its store.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inventory: Vec<crate::model::InventoryEntry>,
    /// The `reconcile.hoist.dev/requestedAt` annotation value last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,
    /// Outside every update window: when the next opens (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_window: Option<String>,
    /// When the automation last ran (RFC 3339), pushed or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_automation_run_time: Option<String>,
}
