use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Conditions, LocalObjectReference};

/// A webhook endpoint: a registry or forge calls it when something is
/// pushed, and hoist re-scans or refreshes at once instead of at the next
/// interval.
// clippy reads kube's repeated `printcolumn(type_ = ...)` as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "hoist.dev",
    version = "v1alpha1",
    kind = "Receiver",
    namespaced,
    status = "ReceiverStatus",
    category = "hoist",
    doc = "A webhook endpoint that triggers scans and automation runs at once.",
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type"),
    printcolumn(name = "Path", type_ = "string", json_path = ".status.webhookPath"),
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
pub struct ReceiverSpec {
    /// Who sends the webhook, which decides how it is verified and read.
    #[serde(rename = "type")]
    pub type_: ReceiverType,
    /// A Secret in the Receiver's namespace with key `token`: the HMAC
    /// secret, token or password the sender is configured with (for
    /// `dockerhub` and `quay`, at least 16 characters).
    pub secret_ref: LocalObjectReference,
    /// The ImageRepositories and ImageUpdateAutomations this receiver may
    /// trigger. Empty: those in its namespace whose image or git URL the
    /// payload names. `generic-hmac` payloads name nothing, so that type
    /// triggers every listed object and needs a list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<ReceiverResource>,
    /// Answer requests but trigger nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
    /// Whose Receiver this is, which decides its URL path. Set by the
    /// loader, never read from a document or the CRD.
    #[serde(skip)]
    #[schemars(skip)]
    pub origin: ReceiverOrigin,
}

/// Whose Receiver a Receiver is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReceiverOrigin {
    /// hoist's own: `/hook/` and sha256 of `namespace/name` and the token.
    #[default]
    Hoist,
    /// Flux's (`notification.toolkit.fluxcd.io/v1`): served at the path
    /// Flux computes, `/hook/` and sha256 of token, name and namespace, so
    /// that the URLs senders already call keep working.
    Flux,
}

/// The sender of a Receiver's webhooks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ReceiverType {
    /// Docker Hub repository webhooks (verified by the secret path only).
    #[serde(rename = "dockerhub")]
    DockerHub,
    /// GitHub `push` and `package` events (`X-Hub-Signature-256`).
    #[serde(rename = "github")]
    GitHub,
    /// GitLab push and tag push events (`X-Gitlab-Token`).
    #[serde(rename = "gitlab")]
    GitLab,
    /// Gitea and Forgejo push events (`X-Gitea-Signature`).
    #[serde(rename = "gitea")]
    Gitea,
    /// Harbor `PUSH_ARTIFACT` events (`Authorization` header).
    #[serde(rename = "harbor")]
    Harbor,
    /// Quay repository push notifications (verified by the secret path only).
    #[serde(rename = "quay")]
    Quay,
    /// CNCF distribution (`registry:2`) notifications (`Authorization`
    /// header from the endpoint's `headers`).
    #[serde(rename = "distribution")]
    Distribution,
    /// Any sender that signs the body with HMAC-SHA256 or -SHA512 in
    /// `X-Signature: sha256=HEX`.
    #[serde(rename = "generic-hmac")]
    GenericHmac,
    /// Any sender at all, verified by the secret path only (Flux's
    /// `generic`): any POST triggers every listed object.
    #[serde(rename = "generic")]
    Generic,
}

/// An object a Receiver may trigger.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReceiverResource {
    /// `ImageRepository` or `ImageUpdateAutomation`.
    pub kind: String,
    pub name: String,
    /// The Receiver's own namespace, the only one allowed (a Receiver must
    /// not set other teams' objects running).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Optional; `hoist.dev/v1alpha1` when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReceiverStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Conditions,
    /// The URL path to give the sender: `/hook/` and a digest of the
    /// Receiver's namespace, name and token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_path: Option<String>,
}
