//! Promotion and rollback decisions, pure: what an automation's evidence
//! file says ran healthy (and what was rolled back), what a sync deployed,
//! which images to blame for a failed rollout, and whether a downstream
//! candidate has soaked long enough upstream.
//!
//! The evidence is a small YAML file an automation owns in its own
//! repository (`spec.sync.evidence.path`). It travels with the repository,
//! not with a cluster: staging and production rarely see each other's API
//! servers, but both read the fleet repository. The pipeline reads and
//! commits it; everything here works on its text and on values.

use serde::{Deserialize, Serialize};

use crate::sync::plan::Desired;

/// Longer evidence files are refused: a repository decides what this file
/// holds, and memory stays bounded whatever it says.
pub const MAX_EVIDENCE_BYTES: usize = 1 << 20;
/// Closed rollouts and rejections kept, oldest dropped first.
pub const KEPT: usize = 100;

/// Where an automation records its evidence unless `spec.sync.evidence.path`
/// says: hidden, so that neither the rewrite nor the sync ever reads it.
pub fn default_path(namespace: &str, name: &str) -> String {
    format!(".hoist/evidence/{namespace}/{name}.yaml")
}

/// What is wrong with an evidence path (already known to stay inside the
/// repository), if anything: it must lie below a hidden directory other
/// than `.git`, which neither the rewrite nor the sync reads.
pub fn evidence_path_problem(path: &str) -> Option<String> {
    let relative = std::path::Path::new(path);
    let mut dirs = relative
        .parent()
        .into_iter()
        .flat_map(std::path::Path::components)
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .filter(|c| c != ".");
    let hidden = dirs.any(|c| c.starts_with('.') && c != ".git");
    let in_git = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .any(|c| c == ".git");
    (!hidden || in_git).then(|| {
        format!(
            "{path:?} must be below a hidden directory other than .git (such as .hoist/), where neither the rewrite nor the sync reads"
        )
    })
}

/// An automation's record of its rollouts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Evidence {
    /// `namespace/name` of the ImageUpdateAutomation that writes it.
    pub automation: String,
    /// Images its sync saw healthy, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub healthy: Vec<Rollout>,
    /// Images it rolled back, oldest first: never adopted again by the
    /// policy named.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<Rejected>,
}

/// An image that ran healthy: from `since` (the first healthy verdict)
/// until another image of the same policy became healthy (`until`), or
/// still (`until` unset).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rollout {
    /// `namespace/name` of the upstream ImagePolicy.
    pub policy: String,
    pub image: String,
    pub tag: String,
    pub digest: String,
    /// The commit whose sync was healthy.
    pub revision: String,
    /// RFC 3339.
    pub since: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
}

/// An image whose rollout failed and that hoist rolled back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rejected {
    pub policy: String,
    pub image: String,
    pub tag: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The commit whose sync failed.
    pub revision: String,
    /// RFC 3339.
    pub at: String,
    /// What the sync said.
    pub reason: String,
}

/// An evidence file that cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {message}")]
pub struct EvidenceError {
    pub file: String,
    pub message: String,
}

const HEADER: &str = "# Written by hoist: the images this automation's sync ran healthy, and those it\n\
# rolled back. Downstream ImagePolicies (spec.promotion) read it; edit it only\n\
# to withdraw evidence.\n";

impl Evidence {
    pub fn new(automation: &str) -> Evidence {
        Evidence {
            automation: automation.to_string(),
            ..Evidence::default()
        }
    }

    /// Reads an evidence file (`file` names it in errors).
    pub fn parse(file: &str, text: &str) -> Result<Evidence, EvidenceError> {
        let error = |message: String| EvidenceError {
            file: file.to_string(),
            message,
        };
        if text.len() > MAX_EVIDENCE_BYTES {
            return Err(error(format!(
                "is {} bytes; an evidence file holds at most {MAX_EVIDENCE_BYTES}",
                text.len()
            )));
        }
        let evidence: Evidence = serde_saphyr::from_str(text).map_err(|e| error(e.to_string()))?;
        // A rollback writes a tag and digest from here into manifests: only
        // what a registry could have named.
        let tags = evidence
            .healthy
            .iter()
            .map(|r| (&r.tag, Some(&r.digest)))
            .chain(
                evidence
                    .rejected
                    .iter()
                    .map(|r| (&r.tag, r.digest.as_ref())),
            );
        for (tag, digest) in tags {
            if !crate::model::is_tag(tag) {
                return Err(error(format!("{tag:?} is not an image tag")));
            }
            if let Some(digest) = digest.filter(|d| !crate::model::is_digest(d)) {
                return Err(error(format!("{digest:?} is not an image digest")));
            }
        }
        for (at, time) in evidence
            .healthy
            .iter()
            .flat_map(|r| std::iter::once(&r.since).chain(&r.until))
            .chain(evidence.rejected.iter().map(|r| &r.at))
            .enumerate()
        {
            if time.parse::<jiff::Timestamp>().is_err() {
                return Err(error(format!(
                    "time {time:?} (entry {}) is not RFC 3339",
                    at + 1
                )));
            }
        }
        Ok(evidence)
    }

    /// The file's text.
    pub fn render(&self) -> Result<String, EvidenceError> {
        let body = serde_saphyr::to_string(self).map_err(|e| EvidenceError {
            file: self.automation.clone(),
            message: format!("cannot be written: {e}"),
        })?;
        Ok(format!("{HEADER}{body}"))
    }

    /// The image of `policy` running healthy now, if any.
    pub fn current(&self, policy: &str) -> Option<&Rollout> {
        self.healthy
            .iter()
            .rev()
            .find(|r| r.policy == policy && r.until.is_none())
    }

    /// Records that a sync of `revision` saw `deployed` healthy at `now`:
    /// a new rollout for each policy whose image changed, closing the one
    /// it replaces. Returns whether anything changed.
    pub fn record_healthy(
        &mut self,
        deployed: &[Deployed],
        revision: &str,
        now: jiff::Timestamp,
    ) -> bool {
        let now = now.to_string();
        let mut changed = false;
        for d in deployed {
            if let Some(open) = self.current(&d.policy)
                && open.tag == d.tag
                && open.digest == d.digest
            {
                continue;
            }
            for open in self
                .healthy
                .iter_mut()
                .filter(|r| r.policy == d.policy && r.until.is_none())
            {
                open.until = Some(now.clone());
            }
            self.healthy.push(Rollout {
                policy: d.policy.clone(),
                image: d.image.clone(),
                tag: d.tag.clone(),
                digest: d.digest.clone(),
                revision: revision.to_string(),
                since: now.clone(),
                until: None,
            });
            changed = true;
        }
        self.trim();
        changed
    }

    /// Records that a sync saw `deployed` fail at `now`: a rollout of one
    /// of them that was open ends (it no longer runs healthy, so its soak
    /// stops). Returns whether anything changed.
    pub fn record_failed(&mut self, deployed: &[Deployed], now: jiff::Timestamp) -> bool {
        let now = now.to_string();
        let mut changed = false;
        for d in deployed {
            for open in self.healthy.iter_mut().filter(|r| {
                r.policy == d.policy && r.until.is_none() && r.tag == d.tag && r.digest == d.digest
            }) {
                open.until = Some(now.clone());
                changed = true;
            }
        }
        changed
    }

    /// Records a rollback. Returns whether it was new.
    pub fn record_rejected(&mut self, rejected: Rejected) -> bool {
        if self
            .rejected
            .iter()
            .any(|r| r.policy == rejected.policy && r.tag == rejected.tag)
        {
            return false;
        }
        self.rejected.push(rejected);
        self.trim();
        true
    }

    /// Keeps every open rollout and the newest closed ones and rejections.
    fn trim(&mut self) {
        let closed = self.healthy.iter().filter(|r| r.until.is_some()).count();
        let mut drop = closed.saturating_sub(KEPT);
        self.healthy.retain(|r| {
            if drop > 0 && r.until.is_some() {
                drop -= 1;
                return false;
            }
            true
        });
        let extra = self.rejected.len().saturating_sub(KEPT);
        self.rejected.drain(..extra);
    }

    /// Whether `tag` at `digest` ran healthy under this automation for at
    /// least `soak` by `now` (one rollout of it, not a sum of several).
    pub fn soaked(&self, tag: &str, digest: &str, soak: u64, now: jiff::Timestamp) -> Soak {
        let mut best: Option<i64> = None;
        let mut seen = false;
        for r in self.healthy.iter().filter(|r| r.tag == tag) {
            seen = true;
            if r.digest != digest {
                continue;
            }
            let (Ok(since), until) = (
                r.since.parse::<jiff::Timestamp>(),
                r.until.as_ref().map(|u| u.parse::<jiff::Timestamp>()),
            ) else {
                continue;
            };
            let end = match until {
                Some(Ok(until)) => until,
                Some(Err(_)) => continue,
                None => now,
            };
            let ran = end.as_second().saturating_sub(since.as_second());
            if ran >= i64::try_from(soak).unwrap_or(i64::MAX) {
                return Soak::Soaked;
            }
            if until.is_none() {
                best = Some(since.as_second().saturating_add_unsigned(soak));
            }
        }
        match (best, seen) {
            (Some(at), _) => Soak::Until(at),
            (None, true) => Soak::OtherDigest,
            (None, false) => Soak::Never,
        }
    }
}

/// What the evidence says of one downstream candidate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Soak {
    /// It ran healthy upstream for the whole soak time.
    Soaked,
    /// It is running healthy upstream; the soak ends at this Unix time.
    Until(i64),
    /// The tag ran upstream, but as another image (the tag was moved), or
    /// not for long enough before it was replaced.
    OtherDigest,
    /// Upstream never ran it healthy.
    Never,
}

pub use crate::api::Promoted;

impl Promoted {
    /// The evidence file as a link a forge renders (its web page for an
    /// http(s) repository of GitHub, Gitea or GitLab), else as text.
    pub fn link(&self, provider: Option<crate::api::ForgeProvider>) -> String {
        let url = crate::redact::strip_userinfo(&self.url);
        let web = url.trim_end_matches('/').trim_end_matches(".git");
        let blob = match provider {
            Some(crate::api::ForgeProvider::Gitlab) => "-/blob",
            Some(_) => "blob",
            None => "",
        };
        if blob.is_empty() || !(web.starts_with("https://") || web.starts_with("http://")) {
            return format!("{} on branch {} of {url}", self.path, self.branch);
        }
        format!(
            "[{}]({web}/{blob}/{}/{})",
            self.path, self.branch, self.path
        )
    }
}

/// An image of one of the automation's policies that its sync applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deployed {
    pub policy: String,
    pub image: String,
    pub tag: String,
    pub digest: String,
}

impl std::fmt::Display for Deployed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ImagePolicy {}: {}:{}@{}",
            self.policy, self.image, self.tag, self.digest
        )
    }
}

/// A policy's latest ref, as the automation wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyImage {
    pub policy: String,
    /// The image name as markers write it.
    pub image: String,
    pub tag: String,
    pub digest: Option<String>,
}

/// Every container image the objects' Pod templates name (Pods,
/// workloads, Jobs, CronJobs), init containers included.
pub fn images_of(objects: &[Desired]) -> Vec<String> {
    let mut images = Vec::new();
    for d in objects {
        let o = &d.object;
        let pod_specs = [
            &o["spec"],
            &o["spec"]["template"]["spec"],
            &o["spec"]["jobTemplate"]["spec"]["template"]["spec"],
        ];
        for spec in pod_specs {
            for list in ["containers", "initContainers", "ephemeralContainers"] {
                for c in spec[list].as_array().into_iter().flatten() {
                    if let Some(image) = c["image"].as_str() {
                        images.push(image.to_string());
                    }
                }
            }
        }
    }
    images.sort();
    images.dedup();
    images
}

/// `name`, `tag` and `digest` of an image reference as a manifest writes
/// it (`host:port/path:tag@sha256:…`).
pub fn split_image(image: &str) -> (&str, Option<&str>, Option<&str>) {
    let (rest, digest) = match image.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (image, None),
    };
    let slash = rest.rfind('/').map_or(0, |i| i + 1);
    match rest[slash..].rfind(':') {
        Some(colon) => (
            &rest[..slash + colon],
            Some(&rest[slash + colon + 1..]),
            digest,
        ),
        None => (rest, None, digest),
    }
}

/// Which of `refs` the sync applied: a container image of that name and
/// tag. The digest is the one written beside the tag, else the policy's.
/// Refs deployed without a known digest are returned apart: evidence
/// names digests, so those cannot be recorded.
pub fn deployed(refs: &[PolicyImage], images: &[String]) -> (Vec<Deployed>, Vec<String>) {
    let mut found = Vec::new();
    let mut undigested = Vec::new();
    for r in refs {
        let written = images
            .iter()
            .map(|i| split_image(i))
            .find(|(name, tag, _)| *name == r.image && *tag == Some(r.tag.as_str()));
        let Some((_, _, digest)) = written else {
            continue;
        };
        match digest.or(r.digest.as_deref()) {
            Some(digest) => found.push(Deployed {
                policy: r.policy.clone(),
                image: r.image.clone(),
                tag: r.tag.clone(),
                digest: digest.to_string(),
            }),
            None => undigested.push(r.policy.clone()),
        }
    }
    (found, undigested)
}

/// What a failed rollout blames: each ref that one of the failing objects
/// runs (`failing`: their images) and that is not the image its policy
/// last ran healthy, with that healthy one to go back to. A policy that
/// never ran healthy here is not blamed — there is nothing known-good to
/// return to, and rejecting its tags one by one would walk back through
/// history — nor is a failure in which every image ran healthy before: it
/// is not hoist's to undo.
pub fn suspects<'a>(
    evidence: &'a Evidence,
    refs: &[PolicyImage],
    failing: &[String],
) -> Vec<(PolicyImage, &'a Rollout)> {
    refs.iter()
        .filter(|r| {
            failing
                .iter()
                .map(|i| split_image(i))
                .any(|(name, tag, _)| name == r.image && tag == Some(r.tag.as_str()))
        })
        .filter_map(|r| {
            let healthy = evidence.current(&r.policy)?;
            let same =
                healthy.tag == r.tag && r.digest.as_ref().is_none_or(|d| *d == healthy.digest);
            (!same).then(|| (r.clone(), healthy))
        })
        .collect()
}

/// What a sync said of an object, fit to keep in a commit, a pull request
/// and a status: one line, no backticks (a pull request fences it), no
/// control characters, at most `limit` characters.
pub fn plain(text: &str, limit: usize) -> String {
    text.chars()
        .map(|c| match c {
            '`' => '\'',
            c if c.is_control() => ' ',
            c => c,
        })
        .take(limit)
        .collect()
}

#[cfg(test)]
mod tests;
