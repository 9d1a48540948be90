//! Flux's own ImageUpdateAutomation (`image.toolkit.fluxcd.io/v1`,
//! `v1beta2`) and the GitRepository it names (`source.toolkit.fluxcd.io/v1`,
//! `v1beta2`), as Flux defines them: what standalone mode reads from files
//! and turns into hoist's ImageUpdateAutomation (see `load::flux`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{GoDuration, LabelSelector, LocalObjectReference, UpdateStrategy};

/// Flux's source group, whose GitRepository an automation's `sourceRef` names.
pub const FLUX_SOURCE_GROUP: &str = "source.toolkit.fluxcd.io";

/// `spec` of Flux's ImageUpdateAutomation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FluxAutomationSpec {
    pub source_ref: SourceReference,
    #[serde(default)]
    pub git: Option<FluxGitSpec>,
    pub interval: GoDuration,
    #[serde(default)]
    pub policy_selector: Option<LabelSelector>,
    #[serde(default)]
    pub update: Option<FluxUpdateSpec>,
    #[serde(default)]
    pub suspend: bool,
}

/// The object that holds the repository: a GitRepository.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceReference {
    #[serde(default)]
    pub api_version: Option<String>,
    pub kind: String,
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FluxGitSpec {
    /// Overrides the GitRepository's `ref`.
    #[serde(default)]
    pub checkout: Option<FluxCheckout>,
    pub commit: FluxCommit,
    #[serde(default)]
    pub push: Option<FluxPush>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FluxCheckout {
    #[serde(rename = "ref")]
    pub reference: GitRepositoryRef,
}

/// A Git reference as Flux spells it; Flux gives `commit` precedence over
/// `name`, `name` over `semver`, `semver` over `tag`, `tag` over `branch`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GitRepositoryRef {
    #[serde(default)]
    pub branch: Option<String>,
    #[serde(default)]
    pub tag: Option<String>,
    #[serde(default)]
    pub semver: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub commit: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FluxCommit {
    pub author: FluxAuthor,
    #[serde(default)]
    pub signing_key: Option<SigningKey>,
    #[serde(default)]
    pub message_template: Option<String>,
    #[serde(default)]
    pub message_template_values: Option<BTreeMap<String, String>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FluxAuthor {
    #[serde(default)]
    pub name: Option<String>,
    pub email: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SigningKey {
    pub secret_ref: LocalObjectReference,
    /// `gpg` (the default) or `ssh`.
    #[serde(default, rename = "type")]
    pub key_type: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FluxPush {
    #[serde(default)]
    pub branch: Option<String>,
    #[serde(default)]
    pub refspec: Option<String>,
    #[serde(default)]
    pub options: Option<BTreeMap<String, String>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FluxUpdateSpec {
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub strategy: UpdateStrategy,
}

/// `spec` of Flux's GitRepository: the fields an image automation uses,
/// and the rest of Flux's fields read so that they are not taken for
/// misspellings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GitRepositorySpec {
    pub url: String,
    /// Flux's keys: `username`/`password`, `bearerToken`,
    /// `identity`/`known_hosts`.
    #[serde(default)]
    pub secret_ref: Option<LocalObjectReference>,
    #[serde(default)]
    pub interval: Option<GoDuration>,
    #[serde(default, rename = "ref")]
    pub reference: Option<GitRepositoryRef>,
    /// `generic` (the Secret's credentials), `azure` or `github` (an app).
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    pub proxy_secret_ref: Option<LocalObjectReference>,
    // What the source-controller does with the checkout it serves; an
    // image automation pushes to the repository and uses none of these.
    #[serde(default)]
    pub timeout: Option<GoDuration>,
    #[serde(default)]
    pub suspend: Option<bool>,
    #[serde(default)]
    pub verify: Option<serde_json::Value>,
    #[serde(default)]
    pub ignore: Option<String>,
    #[serde(default)]
    pub recurse_submodules: Option<bool>,
    #[serde(default)]
    pub include: Option<serde_json::Value>,
    #[serde(default)]
    pub sparse_checkout: Option<serde_json::Value>,
    #[serde(default)]
    pub service_account_name: Option<String>,
}

/// `spec` of Flux's Receiver (`notification.toolkit.fluxcd.io/v1`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FluxReceiverSpec {
    #[serde(rename = "type")]
    pub type_: String,
    #[serde(default)]
    pub interval: Option<GoDuration>,
    /// The sender's events that trigger; hoist acts on each sender's push
    /// events whatever this lists.
    #[serde(default)]
    pub events: Vec<String>,
    #[serde(default)]
    pub resources: Vec<FluxReceiverResource>,
    #[serde(default)]
    pub resource_filter: Option<String>,
    #[serde(default)]
    pub secret_ref: Option<LocalObjectReference>,
    #[serde(default)]
    pub oidc_providers: Option<serde_json::Value>,
    #[serde(default)]
    pub suspend: bool,
}

/// An object a Flux Receiver triggers (Flux's CrossNamespaceObjectReference).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FluxReceiverResource {
    #[serde(default)]
    pub api_version: Option<String>,
    pub kind: String,
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub match_labels: Option<BTreeMap<String, String>>,
}
