//! Whose objects the controller reconciles: hoist's own (`hoist.dev`), or
//! with `--flux` Flux's (`image.toolkit.fluxcd.io/v1`) in place of Flux's
//! image controllers. The reconcilers work on hoist's types either way:
//! the objects are watched untyped under the flavour's group, read into
//! hoist's types (whose specs accept Flux's fields), and their status is
//! written back in the flavour's shape.

use kube::api::{ApiResource, DynamicObject};
use kube::core::GroupVersionKind;
use serde::de::DeserializeOwned;

use crate::api::{
    FLUX_IMAGE_GROUP, FLUX_SOURCE_GROUP, ImagePolicyStatus, ImageRef, ImageRepositoryStatus,
    ImageUpdateAutomationStatus,
};

/// The annotation Flux's CLI sets for `flux reconcile`.
pub const FLUX_REQUESTED_AT: &str = "reconcile.fluxcd.io/requestedAt";
/// How many tags Flux samples in `status.lastScanResult.latestTags`.
const LATEST_TAGS: usize = 10;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Flavor {
    #[default]
    Hoist,
    Flux,
}

/// A kind the controller reconciles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    ImageRepository,
    ImagePolicy,
    ImageUpdateAutomation,
}

impl Kind {
    /// The kind's name, in both flavours' groups (and metrics' labels).
    pub fn name(self) -> &'static str {
        match self {
            Kind::ImageRepository => "ImageRepository",
            Kind::ImagePolicy => "ImagePolicy",
            Kind::ImageUpdateAutomation => "ImageUpdateAutomation",
        }
    }

    fn plural(self) -> &'static str {
        match self {
            Kind::ImageRepository => "imagerepositories",
            Kind::ImagePolicy => "imagepolicies",
            Kind::ImageUpdateAutomation => "imageupdateautomations",
        }
    }
}

impl Flavor {
    /// Where `kind` is served for this flavour.
    pub fn resource(self, kind: Kind) -> ApiResource {
        let (group, version) = match self {
            Flavor::Hoist => (crate::api::GROUP, "v1alpha1"),
            Flavor::Flux => (FLUX_IMAGE_GROUP, "v1"),
        };
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(group, version, kind.name()),
            kind.plural(),
        )
    }

    /// The annotation that asks for a reconcile now.
    pub fn requested_at(self) -> &'static str {
        match self {
            Flavor::Hoist => super::REQUESTED_AT,
            Flavor::Flux => FLUX_REQUESTED_AT,
        }
    }

    /// An ImageRepository's status as this flavour writes it. Flux's has
    /// two fields hoist's lacks: a sample of the tags (`latest_tags`, the
    /// tags of the scan after the exclusion list, `None` to keep the
    /// sample `current` holds) and the exclusion list the scan used.
    pub fn repository_status(
        self,
        status: &ImageRepositoryStatus,
        current: Option<&serde_json::Value>,
        latest_tags: Option<&[String]>,
        exclusions: &[&str],
    ) -> serde_json::Value {
        let mut value = serde_json::to_value(status).unwrap_or_default();
        if self == Flavor::Hoist {
            return value;
        }
        let sample = match latest_tags {
            Some(tags) => Some(latest_tags_of(tags)),
            None => current
                .and_then(|c| c.pointer("/lastScanResult/latestTags"))
                .and_then(|t| serde_json::from_value::<Vec<String>>(t.clone()).ok()),
        };
        if let Some(result) = value
            .get_mut("lastScanResult")
            .and_then(|r| r.as_object_mut())
            && let Some(sample) = sample.filter(|s| !s.is_empty())
        {
            result.insert("latestTags".into(), sample.into());
        }
        if status.last_scan_result.is_some()
            && let Some(map) = value.as_object_mut()
        {
            map.insert("observedExclusionList".into(), exclusions.to_vec().into());
        }
        flux_reasons(
            &mut value,
            &[
                ("ScanFailed", "ReadOperationFailed"),
                ("SecretNotFound", "AuthenticationFailed"),
            ],
        );
        value
    }

    /// An ImagePolicy's status as this flavour writes it: Flux's has no
    /// `waiting` (hoist's `minimumAge` extension; its condition says it).
    pub fn policy_status(self, status: &ImagePolicyStatus) -> serde_json::Value {
        let mut value = serde_json::to_value(status).unwrap_or_default();
        if self == Flavor::Flux
            && let Some(map) = value.as_object_mut()
        {
            map.remove("waiting");
            flux_reasons(
                &mut value,
                &[
                    ("InvalidSpec", "InvalidPolicy"),
                    ("NoMatchingTag", "Failure"),
                    ("DigestFailed", "Failure"),
                ],
            );
        }
        value
    }
}

impl Flavor {
    /// An ImageUpdateAutomation's status as this flavour writes it. Flux's
    /// names observed policies by name (they are in the automation's
    /// namespace) and has none of hoist's extensions: pull requests,
    /// sync, update windows.
    pub fn automation_status(
        self,
        status: &ImageUpdateAutomationStatus,
        namespace: &str,
    ) -> serde_json::Value {
        if self == Flavor::Hoist {
            return serde_json::to_value(status).unwrap_or_default();
        }
        let mut flux = status.clone();
        flux.pull_request_url = None;
        flux.sync_revision = None;
        flux.inventory.clear();
        flux.next_window = None;
        let prefix = format!("{namespace}/");
        flux.observed_policies = status
            .observed_policies
            .iter()
            .map(|(key, r)| {
                (
                    key.strip_prefix(&prefix).unwrap_or(key).to_string(),
                    r.clone(),
                )
            })
            .collect();
        serde_json::to_value(&flux).unwrap_or_default()
    }

    /// The status an object holds, read back into hoist's keys: the
    /// inverse of [`Flavor::automation_status`] for what both have.
    pub fn read_automation_status(
        self,
        mut status: ImageUpdateAutomationStatus,
        namespace: &str,
    ) -> ImageUpdateAutomationStatus {
        if self == Flavor::Flux {
            status.observed_policies = std::mem::take(&mut status.observed_policies)
                .into_iter()
                .map(|(name, r)| (format!("{namespace}/{name}"), r))
                .collect();
        }
        status
    }
}

impl Flavor {
    /// The Ready message of a successful scan. Flux's names the checksum
    /// of the tags (hoist's revision, its own digest of them).
    pub fn scan_message(self, tags: usize, revision: &str) -> String {
        match self {
            Flavor::Hoist => format!("successful scan: found {tags} tags"),
            Flavor::Flux => format!("successful scan: found {tags} tags with checksum {revision}"),
        }
    }

    /// The Ready message of a policy whose latest ref is `latest`, having
    /// been `previous`.
    pub fn policy_message(self, latest: &ImageRef, previous: Option<&ImageRef>) -> String {
        match self {
            Flavor::Hoist => format!(
                "latest image tag for {} resolved to {}",
                latest.name, latest.tag
            ),
            Flavor::Flux => {
                let mut message = format!(
                    "Latest image tag for {} resolved to {}",
                    latest.name, latest.tag
                );
                if let Some(digest) = &latest.digest {
                    message.push_str(&format!(" with digest {digest}"));
                }
                if let Some(previous) = previous.filter(|p| *p != latest) {
                    message.push_str(&format!(" (previously {}:{}", previous.name, previous.tag));
                    if let Some(digest) = &previous.digest {
                        message.push_str(&format!("@{digest}"));
                    }
                    message.push(')');
                }
                message
            }
        }
    }

    /// The reason of an automation run that failed with an error of
    /// `kind` (the pipeline's error kinds): Flux's tells a git operation
    /// that failed from a rewrite that did.
    pub fn run_failure_reason(self, kind: &str) -> &'static str {
        match (self, kind) {
            (Flavor::Flux, "git" | "branch_moved" | "foreign_commit") => "GitOperationFailed",
            (_, "rolled_back") => "RolledBack",
            _ => "UpdateFailed",
        }
    }

    /// The Ready message of an automation run, and the note of the Event a
    /// push sends. Flux's Ready says the same whether it pushed or not.
    pub fn automation_messages(
        self,
        commit: Option<&str>,
        branch: &str,
        changes: usize,
    ) -> (String, Option<String>) {
        let short = |c: &str, n: usize| c[..c.len().min(n)].to_string();
        match (self, commit) {
            (Flavor::Hoist, Some(commit)) => {
                let message = format!(
                    "pushed commit {} to {branch} ({changes} change{})",
                    short(commit, 12),
                    if changes == 1 { "" } else { "s" }
                );
                (message.clone(), Some(message))
            }
            (Flavor::Hoist, None) => ("no updates made".to_string(), None),
            (Flavor::Flux, commit) => (
                "repository up-to-date".to_string(),
                commit.map(|c| format!("pushed commit '{}' to branch '{branch}'", short(c, 7))),
            ),
        }
    }
}

/// Where Flux's GitRepository is served: an automation's `sourceRef`.
pub fn git_repository() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(FLUX_SOURCE_GROUP, "v1", "GitRepository"),
        "gitrepositories",
    )
}

/// Condition reasons of hoist's that Flux's controllers name otherwise,
/// renamed (`(hoist's, Flux's)`); those both use (`Succeeded`,
/// `DependencyNotReady`, `AccessDenied`) and hoist's own stay.
fn flux_reasons(status: &mut serde_json::Value, renames: &[(&str, &str)]) {
    let Some(conditions) = status
        .get_mut("conditions")
        .and_then(serde_json::Value::as_array_mut)
    else {
        return;
    };
    for condition in conditions {
        let renamed = condition["reason"]
            .as_str()
            .and_then(|r| renames.iter().find(|(ours, _)| *ours == r))
            .map(|(_, theirs)| *theirs);
        if let Some(theirs) = renamed {
            condition["reason"] = theirs.into();
        }
    }
}

/// Flux's sample of a scan: the first ten tags in descending
/// alphabetical order.
pub fn latest_tags_of(tags: &[String]) -> Vec<String> {
    let mut sorted: Vec<&String> = tags.iter().collect();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    sorted.into_iter().take(LATEST_TAGS).cloned().collect()
}

/// An object of either flavour read into hoist's type `K`: apiVersion and
/// kind aside, Flux's image objects have the shape of hoist's.
pub fn typed<K: DeserializeOwned>(object: &DynamicObject) -> Result<K, String> {
    let value = serde_json::to_value(object).map_err(|e| e.to_string())?;
    serde_json::from_value(value).map_err(|e| e.to_string())
}

/// Typed views of the objects a watch cache holds, those that read.
pub fn typed_all<K: DeserializeOwned>(
    objects: impl IntoIterator<Item = std::sync::Arc<DynamicObject>>,
) -> Vec<K> {
    objects.into_iter().filter_map(|o| typed(&o).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ImageRepository;

    #[test]
    fn a_flux_object_reads_into_hoist_s_type_and_its_status_gets_flux_s_fields() {
        let object: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "image.toolkit.fluxcd.io/v1",
            "kind": "ImageRepository",
            "metadata": {"name": "app", "namespace": "flux-system",
                         "annotations": {FLUX_REQUESTED_AT: "now"}},
            "spec": {"image": "ghcr.io/acme/app", "interval": "5m", "provider": "generic",
                     "exclusionList": ["^.*\\.sig$"]},
            "status": {"lastScanResult": {"tagCount": 3, "revision": "r", "scanTime": "2026-01-01T00:00:00Z",
                                          "latestTags": ["b", "a"]},
                       "observedExclusionList": ["^.*\\.sig$"]}
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let repository: ImageRepository = typed(&object).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(repository.spec.image, "ghcr.io/acme/app");
        let status = repository.status.clone().unwrap_or_default();
        assert_eq!(
            status.last_scan_result.as_ref().map(|r| r.tag_count),
            Some(3)
        );

        let current = object.data.get("status");
        // No new scan: the sample the object holds is kept, and the whole
        // value equals what the server has, so nothing is written.
        let kept = Flavor::Flux.repository_status(&status, current, None, &["^.*\\.sig$"]);
        assert_eq!(Some(&kept), current);
        // Hoist's own objects get hoist's shape.
        let hoist = Flavor::Hoist.repository_status(&status, current, None, &["^.*\\.sig$"]);
        assert!(hoist.get("observedExclusionList").is_none());

        let tags: Vec<String> = (0..12).map(|i| format!("1.{i:02}")).collect();
        let fresh = Flavor::Flux.repository_status(&status, current, Some(&tags), &[]);
        assert_eq!(
            fresh["lastScanResult"]["latestTags"],
            serde_json::json!([
                "1.11", "1.10", "1.09", "1.08", "1.07", "1.06", "1.05", "1.04", "1.03", "1.02"
            ])
        );
        assert_eq!(fresh["observedExclusionList"], serde_json::json!([]));
    }

    #[test]
    fn each_flavour_words_its_ready_messages_as_its_controllers_do() {
        let at = |tag: &str, digest: Option<&str>| ImageRef {
            name: "ghcr.io/acme/app".into(),
            tag: tag.into(),
            digest: digest.map(str::to_string),
        };
        let latest = at("1.2.0", Some("sha256:bb"));
        assert_eq!(
            Flavor::Flux.policy_message(&latest, Some(&at("1.1.0", Some("sha256:aa")))),
            "Latest image tag for ghcr.io/acme/app resolved to 1.2.0 with digest sha256:bb \
             (previously ghcr.io/acme/app:1.1.0@sha256:aa)"
        );
        assert_eq!(
            Flavor::Flux.policy_message(&at("1.2.0", None), Some(&at("1.2.0", None))),
            "Latest image tag for ghcr.io/acme/app resolved to 1.2.0"
        );
        assert_eq!(
            Flavor::Hoist.policy_message(&latest, None),
            "latest image tag for ghcr.io/acme/app resolved to 1.2.0"
        );
        assert_eq!(
            Flavor::Flux.scan_message(3, "abc"),
            "successful scan: found 3 tags with checksum abc"
        );
        let commit = "0123456789abcdef0123";
        assert_eq!(
            Flavor::Flux.automation_messages(Some(commit), "main", 1),
            (
                "repository up-to-date".to_string(),
                Some("pushed commit '0123456' to branch 'main'".to_string())
            )
        );
        assert_eq!(
            Flavor::Hoist.automation_messages(Some(commit), "main", 2).0,
            "pushed commit 0123456789ab to main (2 changes)"
        );
        assert_eq!(Flavor::Flux.run_failure_reason("git"), "GitOperationFailed");
        assert_eq!(Flavor::Flux.run_failure_reason("rewrite"), "UpdateFailed");
        assert_eq!(Flavor::Hoist.run_failure_reason("git"), "UpdateFailed");
        assert_eq!(
            Flavor::Flux.automation_messages(None, "main", 0),
            ("repository up-to-date".to_string(), None)
        );
    }

    #[test]
    fn flux_s_policy_status_has_no_waiting_tag() {
        let status: ImagePolicyStatus = serde_json::from_value(serde_json::json!({
            "latestRef": {"name": "ghcr.io/acme/app", "tag": "1.0.0"},
            "waiting": {"tag": "1.1.0", "eligibleAt": "2026-01-01T00:00:00Z"}
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(Flavor::Flux.policy_status(&status).get("waiting").is_none());
        let failed: ImagePolicyStatus = serde_json::from_value(serde_json::json!({
            "conditions": [{"type": "Ready", "status": "False", "reason": "NoMatchingTag",
                            "message": "m", "lastTransitionTime": "2026-01-01T00:00:00Z"}]
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            Flavor::Flux.policy_status(&failed)["conditions"][0]["reason"],
            "Failure"
        );
        assert_eq!(
            Flavor::Hoist.policy_status(&failed)["conditions"][0]["reason"],
            "NoMatchingTag"
        );
        assert!(
            Flavor::Hoist
                .policy_status(&status)
                .get("waiting")
                .is_some()
        );
        assert_eq!(
            Flavor::Flux.resource(Kind::ImagePolicy).api_version,
            "image.toolkit.fluxcd.io/v1"
        );
        assert_eq!(
            Flavor::Hoist.resource(Kind::ImageRepository).plural,
            "imagerepositories"
        );
    }
}
