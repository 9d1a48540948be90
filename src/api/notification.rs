use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Conditions, GoDuration, LocalObjectReference};

/// Where notifications go: a chat webhook, a generic webhook, or commit
/// statuses on hoist's own commits. Named and shaped as Flux's
/// notification-controller Provider (`notification.toolkit.fluxcd.io/v1beta3`).
// clippy reads kube's repeated `printcolumn(type_ = ...)` as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "hoist.dev",
    version = "v1alpha1",
    kind = "Provider",
    namespaced,
    status = "ProviderStatus",
    category = "hoist",
    doc = "Where notifications of hoist's events are delivered.",
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ProviderSpec {
    /// The service, which decides the payload's shape.
    #[serde(rename = "type")]
    pub type_: ProviderType,
    /// The webhook URL (chat, generic) or the repository URL (github,
    /// gitlab). A Secret's `address` key takes its place: webhook URLs
    /// are secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The channel to post in, where the service lets a webhook choose
    /// (Slack's legacy webhooks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// The name messages are posted under (Slack, Discord).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// A Secret in the Provider's namespace: `address` (the webhook URL),
    /// `token` (the API token of github/gitlab, the HMAC key of
    /// generic-hmac).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectReference>,
    /// How long one delivery may take (default 15s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<GoDuration>,
    /// hoist's own: events of one object that arrive within this long of
    /// the first become one message (default 5s; `0s`: each at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<GoDuration>,
    /// Deliver nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
}

/// The services a Provider delivers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProviderType {
    /// Slack incoming webhooks: Block Kit blocks with a text fallback.
    Slack,
    /// Microsoft Teams workflows webhooks: an Adaptive Card.
    #[serde(rename = "msteams")]
    MsTeams,
    /// Discord webhooks: an embed.
    Discord,
    /// Google Chat webhooks: a card (cardsV2) with a text fallback.
    #[serde(rename = "googlechat")]
    GoogleChat,
    /// Flux's event JSON, POSTed as is.
    Generic,
    /// The same, signed: `X-Signature: sha256=HEX` of HMAC-SHA256 over the
    /// body with the Secret's `token`.
    #[serde(rename = "generic-hmac")]
    GenericHmac,
    /// A commit status on hoist's commit in a GitHub repository.
    #[serde(rename = "github")]
    GitHub,
    /// A commit status on hoist's commit in a GitLab project.
    #[serde(rename = "gitlab")]
    GitLab,
}

impl ProviderType {
    pub fn name(self) -> &'static str {
        match self {
            ProviderType::Slack => "slack",
            ProviderType::MsTeams => "msteams",
            ProviderType::Discord => "discord",
            ProviderType::GoogleChat => "googlechat",
            ProviderType::Generic => "generic",
            ProviderType::GenericHmac => "generic-hmac",
            ProviderType::GitHub => "github",
            ProviderType::GitLab => "gitlab",
        }
    }

    /// Commit statuses go to a commit, not to people: one per commit.
    pub fn is_commit_status(self) -> bool {
        matches!(self, ProviderType::GitHub | ProviderType::GitLab)
    }
}

/// What hoist last observed of a Provider's deliveries.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Conditions,
}

/// Whether hoist can route an Alert: its patterns compile and its
/// Provider exists.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Conditions,
}

/// Which events go to a Provider: from which objects, how severe, which
/// reasons, and which messages. Shaped as Flux's Alert.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "hoist.dev",
    version = "v1alpha1",
    kind = "Alert",
    namespaced,
    status = "AlertStatus",
    category = "hoist",
    doc = "Which of hoist's events are sent to a Provider.",
    printcolumn(
        name = "Provider",
        type_ = "string",
        json_path = ".spec.providerRef.name"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct AlertSpec {
    /// The Provider, in the Alert's namespace.
    pub provider_ref: LocalObjectReference,
    /// `info` (every event) or `error` (failures only). Default info.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_severity: Option<String>,
    /// The objects whose events are sent, in the Alert's namespace.
    pub event_sources: Vec<EventSource>,
    /// hoist's own: only these reasons (NewLatestTag, Pushed,
    /// PullRequestOpened, PullRequestUpdated, PullRequestClosed,
    /// SyncFailed, RolledBack, ScanFailed). Empty: every reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub event_reasons: Vec<String>,
    /// Regular expressions: when given, a message must match one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inclusion_list: Vec<String>,
    /// Regular expressions: a message that matches one is not sent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclusion_list: Vec<String>,
    /// A line put before every message of this Alert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Metadata added to every event of this Alert.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub event_metadata: std::collections::BTreeMap<String, String>,
    /// Send nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
}

/// Objects an Alert listens to: by kind and name (`*`: all of the kind),
/// optionally narrowed by labels.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventSource {
    /// As Flux writes it; hoist matches by kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    pub kind: String,
    pub name: String,
    /// Must be the Alert's own namespace when given: one team's events
    /// never go to another team's Provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub match_labels: std::collections::BTreeMap<String, String>,
}
