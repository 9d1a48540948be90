//! Evidence files in checkouts: the upstream automation writes its own
//! (`automation::rollout`); a downstream policy's `spec.promotion` reads
//! the upstream's from the repository it names, before the scan selects.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::automation::credentials::transport_of;
use super::ports::Repository;
use crate::git::Source;
use crate::load::ObjectSet;
use crate::model::ObjectKey;
use crate::promotion::{self, Evidence};

/// The upstream evidence each policy with `spec.promotion` promotes
/// from, by `namespace/name` of the policy; why, where it could not be
/// read.
pub type UpstreamEvidence = Arc<BTreeMap<String, Result<Evidence, String>>>;

/// The evidence file `path` in the checkout at `dir`: inside the
/// repository, below a hidden directory (which neither the rewrite nor the
/// sync reads), and not reached through a symbolic link.
pub(crate) fn evidence_file(dir: &Path, path: &str) -> Result<PathBuf, String> {
    use std::path::Component;
    let relative = Path::new(path);
    if relative
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(format!("{path:?} must stay inside the repository"));
    }
    if let Some(problem) = promotion::evidence_path_problem(path) {
        return Err(problem);
    }
    let mut at = dir.to_path_buf();
    for component in relative.components() {
        at.push(component);
        if at.is_symlink() {
            return Err(format!("{path}: {} is a symbolic link", at.display()));
        }
    }
    Ok(at)
}

/// The evidence in `file` (`path` in its repository); `None` when there
/// is no such file yet. Bounded: a repository decides what it holds.
pub(crate) fn read_file(file: &Path, path: &str) -> Result<Option<Evidence>, String> {
    let metadata = match std::fs::metadata(file) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{path}: {e}")),
    };
    let limit = u64::try_from(promotion::MAX_EVIDENCE_BYTES).unwrap_or(u64::MAX);
    if !metadata.is_file() {
        return Err(format!("{path} is not a file"));
    }
    if metadata.len() > limit {
        return Err(format!(
            "{path} is {} bytes; an evidence file holds at most {limit}",
            metadata.len()
        ));
    }
    let text = std::fs::read_to_string(file).map_err(|e| format!("{path}: {e}"))?;
    Evidence::parse(path, &text)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// Reads the upstream evidence of every policy in `objects` with
/// `spec.promotion`, one after another, each from a checkout of its
/// repository and branch under `cache` (apart from the automations' own
/// checkouts, which another task may be using meanwhile; policies that
/// name the same repository and branch share one).
pub async fn read_upstream(
    objects: &ObjectSet,
    git: &dyn Repository,
    cache: &Path,
) -> UpstreamEvidence {
    let mut read: BTreeMap<String, Result<Evidence, String>> = BTreeMap::new();
    for loaded in &objects.policies {
        let policy = &loaded.object;
        let Some(promotion) = &policy.spec.promotion else {
            continue;
        };
        let key = ObjectKey::of(&policy.metadata).to_string();
        let namespace = crate::model::namespace_of(&policy.metadata);
        let evidence = upstream(objects, git, cache, namespace, &key, promotion).await;
        read.insert(key, evidence);
    }
    Arc::new(read)
}

async fn upstream(
    objects: &ObjectSet,
    git: &dyn Repository,
    cache: &Path,
    namespace: &str,
    key: &str,
    promotion: &crate::api::PromotionSpec,
) -> Result<Evidence, String> {
    let source = &promotion.evidence;
    let credentialed;
    let git = match &source.secret_ref {
        None => git,
        Some(reference) => {
            let secret = objects.secret(namespace, &reference.name).ok_or_else(|| {
                format!(
                    "spec.promotion.evidence.secretRef: Secret {namespace}/{} is not there",
                    reference.name
                )
            })?;
            use sha2::Digest;
            let dir = cache.join("credentials").join(
                format!("{:x}", sha2::Sha256::digest(key.as_bytes()))
                    .get(..16)
                    .unwrap_or("policy"),
            );
            credentialed = git
                .with_credentials(&transport_of(secret), &dir)
                .map_err(|e| e.to_string())?;
            credentialed.as_ref()
        }
    };
    let checkout = git
        .checkout(
            &cache.join("evidence"),
            &Source::branch(&source.url, &source.branch),
        )
        .await
        .map_err(|e| e.to_string())?;
    let path = promotion.evidence_path();
    let file = evidence_file(&checkout.dir, &path)?;
    let Some(evidence) = read_file(&file, &path)? else {
        // Nothing ran healthy upstream yet: nothing to promote.
        return Ok(Evidence::new(&promotion.from));
    };
    if evidence.automation != promotion.from {
        return Err(format!(
            "{path} in {} is the evidence of ImageUpdateAutomation {}, not of {}",
            crate::git::redact(&source.url),
            evidence.automation,
            promotion.from
        ));
    }
    Ok(evidence)
}
