use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Conditions, GoDuration, LocalObjectReference, NamespacedObjectReference};

/// How to pick the latest tag of an image repository.
// clippy reads kube's repeated `printcolumn(type_ = ...)` as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "hoist.dev",
    version = "v1alpha1",
    kind = "ImagePolicy",
    namespaced,
    status = "ImagePolicyStatus",
    shortname = "imgpol",
    category = "hoist",
    doc = "Which tag of an image repository is the latest, by semver range, alphabetical or numerical order, or build time.",
    printcolumn(name = "Image", type_ = "string", json_path = ".status.latestRef.name"),
    printcolumn(name = "Tag", type_ = "string", json_path = ".status.latestRef.tag"),
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
pub struct ImagePolicySpec {
    /// The ImageRepository whose tags this policy chooses from.
    pub image_repository_ref: NamespacedObjectReference,
    /// Exactly one of `semver`, `alphabetical`, `numerical` or `buildTime`.
    pub policy: PolicyChoice,
    /// Select and transform tags before the policy orders them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter_tags: Option<TagFilter>,
    /// Whether the latest ref carries the tag's digest. Defaults to Never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest_reflection_policy: Option<ReflectionPolicy>,
    /// How often to refresh the digest when `digestReflectionPolicy` is Always.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<GoDuration>,
    /// Stop updating the latest ref.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
    /// A tag becomes eligible only after hoist has seen it in the registry
    /// this long (tags there at the first scan count as old).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_age: Option<GoDuration>,
    /// Platforms (`os/arch` or `os/arch/variant`) a tag's image must carry,
    /// every one, to qualify: an image index lists them, a single image is
    /// its config's platform.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<String>,
    /// Verify each candidate's signature (and attestations) before it may
    /// be selected: the newest tag that does not verify is passed over.
    /// Shaped like Flux's OCIRepository `spec.verify`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifySpec>,
    /// Adopt only what an upstream environment ran healthy: candidates are
    /// the tags whose digest the upstream ImageUpdateAutomation's evidence
    /// file records as healthy for at least `soak`, still filtered by
    /// this policy's own range, `minimumAge` and `verify`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion: Option<PromotionSpec>,
}

/// Where a downstream policy's candidates come from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PromotionSpec {
    /// `namespace/name` of the upstream ImageUpdateAutomation, as its
    /// evidence file names it.
    pub from: String,
    /// How long an image must have run healthy upstream, unbroken (Go
    /// duration; default 0: one healthy rollout is enough).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soak: Option<GoDuration>,
    /// The repository holding the upstream's evidence (its
    /// `spec.sync.evidence`).
    pub evidence: EvidenceSource,
}

/// An evidence file in a Git repository.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EvidenceSource {
    /// The repository, as the upstream automation's `spec.git.url` names it.
    pub url: String,
    /// The branch the upstream syncs (its checkout branch).
    pub branch: String,
    /// Default `.hoist/evidence/NAMESPACE/NAME.yaml` of `from`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// A Secret of this namespace with git credentials (`username` and
    /// `password`, `bearerToken`, or `identity` and `known_hosts`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectReference>,
}

impl PromotionSpec {
    /// The evidence file's path in its repository.
    pub fn evidence_path(&self) -> String {
        match &self.evidence.path {
            Some(path) => path.clone(),
            None => {
                let (namespace, name) =
                    self.from.split_once('/').unwrap_or(("default", &self.from));
                crate::promotion::default_path(namespace, name)
            }
        }
    }
}

/// How candidates are verified. With public keys in `secretRef` a
/// signature must verify with one of them; without, the signing
/// certificate must chain to `trustRootRef` and match `matchOIDCIdentity`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerifySpec {
    /// The signature format: `cosign` (Flux also knows `notation`, which
    /// hoist refuses rather than skip).
    pub provider: String,
    /// A Secret whose `*.pub` keys hold cosign public keys (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectReference>,
    /// For keyless signatures: the signing certificate's OIDC issuer and
    /// subject (regular expressions, as Flux and cosign match them: anchor
    /// them with `^…$`). One matching entry suffices.
    #[serde(
        default,
        rename = "matchOIDCIdentity",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub match_oidc_identity: Vec<OidcIdentityMatch>,
    /// hoist: for keyless signatures, a Secret whose `ca.crt` holds the
    /// root certificates of the Fulcio CA that issues signing certificates
    /// (a private Sigstore; hoist does not fetch the public instance's TUF
    /// root), and optionally `rekor.pub`, Rekor's public key: then each
    /// signature must carry a Rekor bundle signed by it, and the
    /// certificate is judged at the time Rekor logged the signature
    /// (without it, now).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_root_ref: Option<LocalObjectReference>,
    /// hoist: in-toto attestations (`cosign attest`) each candidate must
    /// also carry, signed by the same key or identity.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attestations: Vec<AttestationRequirement>,
}

/// An OIDC identity a keyless signing certificate must carry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OidcIdentityMatch {
    /// Matches the certificate's OIDC issuer extension.
    pub issuer: String,
    /// Matches a subject alternative name (email or URI).
    pub subject: String,
}

/// An attestation a candidate must carry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttestationRequirement {
    /// The in-toto predicate type, such as `https://slsa.dev/provenance/v1`
    /// or `https://slsa.dev/provenance/v0.2`.
    pub predicate_type: String,
}

impl ImagePolicySpec {
    /// A policy over the named ImageRepository (in the policy's namespace)
    /// with every optional field unset.
    pub fn new(repository: impl Into<String>, policy: PolicyChoice) -> Self {
        ImagePolicySpec {
            image_repository_ref: NamespacedObjectReference {
                name: repository.into(),
                namespace: None,
            },
            policy,
            filter_tags: None,
            digest_reflection_policy: None,
            interval: None,
            suspend: false,
            minimum_age: None,
            platforms: Vec::new(),
            verify: None,
            promotion: None,
        }
    }

    /// The same policy with `filterTags`.
    pub fn with_filter(mut self, pattern: impl Into<String>, extract: Option<&str>) -> Self {
        self.filter_tags = Some(TagFilter {
            pattern: pattern.into(),
            extract: extract.map(str::to_string),
        });
        self
    }
}

impl PolicyChoice {
    pub fn semver(range: impl Into<String>) -> Self {
        PolicyChoice::Semver(SemVerPolicy {
            range: range.into(),
        })
    }

    pub fn alphabetical(order: SortOrder) -> Self {
        PolicyChoice::Alphabetical(AlphabeticalPolicy { order })
    }

    pub fn numerical(order: SortOrder) -> Self {
        PolicyChoice::Numerical(NumericalPolicy { order })
    }
}

/// The ordering that decides which tag is the latest. Externally tagged, so
/// it reads exactly like Flux's `policy: {semver: {range: ...}}`, but one
/// kind is a type-level fact rather than three optional fields.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum PolicyChoice {
    /// The highest version within a semver range (Masterminds syntax).
    Semver(SemVerPolicy),
    /// The last (asc) or first (desc) tag in byte order.
    Alphabetical(AlphabeticalPolicy),
    /// The highest (asc) or lowest (desc) tag read as a number.
    Numerical(NumericalPolicy),
    /// hoist: the newest (asc) or oldest (desc) image by build time (the
    /// config's `created`, else the `org.opencontainers.image.created`
    /// annotation), for tags that do not sort, such as git SHAs. Each
    /// tag's manifest and config are read once and kept by digest.
    BuildTime(BuildTimePolicy),
}

impl PolicyChoice {
    /// The field names of the three kinds, as they appear under `policy`.
    pub const KINDS: [&'static str; 4] = ["semver", "alphabetical", "numerical", "buildTime"];
    /// The kinds, for messages.
    pub const KINDS_TEXT: &'static str = "semver, alphabetical, numerical or buildTime";

    /// Whether ordering needs each tag's image, not just its name.
    pub fn orders_by_build_time(&self) -> bool {
        matches!(self, PolicyChoice::BuildTime(_))
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SemVerPolicy {
    /// A range such as `>=1.0.0 <2.0.0`, `^1.2`, `~1.2` or `1.x`.
    pub range: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AlphabeticalPolicy {
    #[serde(default)]
    pub order: SortOrder,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NumericalPolicy {
    #[serde(default)]
    pub order: SortOrder,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BuildTimePolicy {
    #[serde(default)]
    pub order: SortOrder,
}

/// `asc` picks the last value in ascending order (the highest), `desc` the
/// first (the lowest).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SortOrder {
    #[default]
    Asc,
    Desc,
}

/// Keep tags matching `pattern`; with `extract`, order them by the expanded
/// value (`$1`, `$name`, `${name}`) and still return the original tag.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TagFilter {
    #[serde(default)]
    pub pattern: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extract: Option<String>,
}

/// Whether the policy's latest ref carries a digest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ReflectionPolicy {
    /// Never look up the digest.
    #[default]
    Never,
    /// Look it up once for each newly selected tag.
    IfNotPresent,
    /// Look it up on every `interval`, so a moved tag is noticed.
    Always,
}

/// What hoist last selected for a policy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImagePolicyStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Conditions,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_ref: Option<ImageRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_previous_ref: Option<ImageRef>,
    /// A newer tag held back by `minimumAge`, and when it becomes eligible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<WaitingTag>,
    /// Newer tags the gate (`verify`, `platforms`) passed over, newest
    /// first, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub passed_over: Vec<PassedOverTag>,
    /// Tags rolled back after their rollout failed, never selected again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<RejectedTag>,
    /// With `spec.promotion`: the upstream evidence the latest tag was
    /// promoted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted: Option<Promoted>,
    /// The `reconcile.hoist.dev/requestedAt` annotation value last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,
}

/// Where a promoted tag's evidence is: the upstream, its repository, and
/// the healthy rollout that let the tag through.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Promoted {
    /// `namespace/name` of the upstream ImageUpdateAutomation.
    pub from: String,
    pub url: String,
    pub branch: String,
    pub path: String,
    /// When it became healthy upstream (RFC 3339).
    pub since: String,
    /// The upstream commit whose sync ran it healthy.
    pub revision: String,
}

/// A tag an automation rolled back (`spec.sync.rollback`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RejectedTag {
    pub tag: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// `namespace/name` of the ImageUpdateAutomation that rolled it back.
    pub automation: String,
    /// RFC 3339.
    pub at: String,
    /// What the sync said of the rollout.
    pub reason: String,
}

/// A tag waiting for `minimumAge`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WaitingTag {
    pub tag: String,
    /// RFC 3339.
    pub eligible_at: String,
}

/// A tag the gate would not let through.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PassedOverTag {
    pub tag: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// `unsigned`, `identity mismatch`, `bad signature`, `untrusted
    /// certificate`, `no provenance`, `missing platform`, ...
    pub reason: String,
    /// What exactly failed.
    pub message: String,
}

/// An image by name, tag and optionally digest, as Flux's status writes it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ImageRef {
    pub name: String,
    pub tag: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}
