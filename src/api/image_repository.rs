use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Conditions, GoDuration, LocalObjectReference};

/// Tags that are dropped before any policy sees them when a repository does
/// not say otherwise: cosign signatures.
pub const DEFAULT_EXCLUSION_LIST: &[&str] = &[r"^.*\.sig$"];

/// An image repository to scan for tags.
// clippy reads kube's repeated `printcolumn(type_ = ...)` as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "hoist.dev",
    version = "v1alpha1",
    kind = "ImageRepository",
    namespaced,
    status = "ImageRepositoryStatus",
    shortname = "imgrepo",
    category = "hoist",
    doc = "An image repository that hoist scans for tags.",
    printcolumn(name = "Image", type_ = "string", json_path = ".spec.image"),
    printcolumn(
        name = "Tags",
        type_ = "integer",
        json_path = ".status.lastScanResult.tagCount"
    ),
    printcolumn(
        name = "Last scan",
        type_ = "date",
        json_path = ".status.lastScanResult.scanTime"
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
pub struct ImageRepositorySpec {
    /// The image name without tag or digest, e.g. `ghcr.io/acme/app` or
    /// `nginx`; an OCI chart as `oci://ghcr.io/acme/charts/app`. With
    /// `chart`, the chart repository's URL.
    pub image: String,
    /// hoist: the chart whose versions are the tags, in the Helm chart
    /// repository at `image`: a classic one (`https://…`, read from its
    /// `index.yaml`) or an OCI one (`oci://…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chart: Option<String>,
    /// How often to scan. Defaults to 5m when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<GoDuration>,
    /// How long one scan may take. Defaults to the interval, at most 60s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<GoDuration>,
    /// A `kubernetes.io/dockerconfigjson` Secret with registry credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectReference>,
    /// A Secret with `ca.crt`, and optionally `tls.crt` and `tls.key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_secret_ref: Option<LocalObjectReference>,
    /// Talk plain HTTP to the registry.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
    /// Regular expressions; tags matching any of them are dropped. Defaults
    /// to `["^.*\\.sig$"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclusion_list: Option<Vec<String>>,
    /// Stop scanning.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
    /// hoist extension: most tags a scan keeps; a repository listing more
    /// fails rather than exhausting memory. Defaults to 50000. The bytes
    /// read per listing are 64 MiB or 1 KiB per tag, whichever is more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_tags: Option<u32>,
    /// Where the registry credential comes from: `generic` (the default:
    /// `secretRef`, else config.json), or the workload's cloud identity,
    /// `aws` (ECR), `gcp` (gcr.io, Artifact Registry) or `azure` (ACR),
    /// which then replaces `secretRef`, as in Flux.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["generic", "aws", "gcp", "azure"]))]
    pub provider: Option<String>,
    /// Flux field accepted so Flux documents load; not acted on yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// Flux field accepted so Flux documents load; not acted on yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_secret_ref: Option<LocalObjectReference>,
    /// Which other namespaces' ImagePolicies may read this repository
    /// (Flux's ACL); without it, only this namespace's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_from: Option<super::AccessFrom>,
}

impl ImageRepositorySpec {
    /// The repository as markers write it: `image`, or for an OCI chart
    /// repository with `chart`, the chart's own OCI repository.
    pub fn marker_image(&self) -> String {
        match &self.chart {
            Some(chart) if self.image.starts_with("oci://") => {
                format!("{}/{chart}", self.image.trim_end_matches('/'))
            }
            _ => self.image.clone(),
        }
    }

    /// The exclusion list in force: the spec's, or the default.
    pub fn exclusions(&self) -> Vec<&str> {
        match &self.exclusion_list {
            Some(list) => list.iter().map(String::as_str).collect(),
            None => DEFAULT_EXCLUSION_LIST.to_vec(),
        }
    }

    /// Flux fields present in this spec that hoist accepts but does not act
    /// on, by field name.
    pub fn unsupported_flux_fields(&self) -> Vec<&'static str> {
        let mut fields = Vec::new();
        // With a cloud provider it names the identity to log in as; with
        // none, Flux reads the ServiceAccount's imagePullSecrets, which
        // hoist does not.
        let cloud = matches!(self.provider.as_deref(), Some("aws" | "gcp" | "azure"));
        if self.service_account_name.is_some() && !cloud {
            fields.push("serviceAccountName");
        }
        if self.proxy_secret_ref.is_some() {
            fields.push("proxySecretRef");
        }
        fields
    }
}

/// What hoist last observed of a repository.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageRepositoryStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Conditions,
    /// The image name with registry and path made explicit, e.g.
    /// `docker.io/library/nginx`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canonical_image_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scan_result: Option<ScanResult>,
    /// The `reconcile.hoist.dev/requestedAt` annotation value last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,
}

/// The outcome of the last successful scan. The tags themselves live in the
/// store, not in the status.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScanResult {
    pub tag_count: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan_time: Option<String>,
    /// A digest of the tag list, so a change is seen without comparing lists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
}
