//! `spec.sync`: applying the checkout branch to the cluster after a push,
//! then acting on the rollout's verdict (`rollout`).

use super::rollout::{self, RolledBack};
use super::{AutomationReport, Context, SyncOutcome, off_the_runtime, repository_path};
use crate::api::SyncSpec;
use crate::git::Checkout;
use crate::pipeline::error::AutomationError;
use crate::pipeline::ports::{Cluster, Repository};
use crate::promotion::PolicyImage;

/// What one apply of the checkout branch came to.
pub(super) struct Applied {
    /// The checkout applied (its base is the revision).
    pub checkout: Checkout,
    /// Every container image of the objects applied.
    pub images: Vec<String>,
    /// The container images of the objects that were not healthy.
    pub failing: Vec<String>,
    /// What the objects that were not healthy say of themselves.
    pub verdict: String,
    /// Why the sync failed, if it did, naming whom it applied as.
    pub error: Option<String>,
    /// Objects not healthy when the wait ended: the rollout failed.
    pub unhealthy: bool,
}

impl Applied {
    fn result(&self) -> Result<(), AutomationError> {
        match &self.error {
            Some(e) => Err(AutomationError::Sync(e.clone())),
            None => Ok(()),
        }
    }
}

/// `spec.sync`: apply the checkout branch as it is now on the remote —
/// hoist's own commit right after it pushed one, the base branch when
/// hoist proposes changes by pull request, anyone's commit otherwise —
/// then record a healthy rollout, or roll a failed one back.
/// `refs` are the latest refs of the automation's policies.
pub(super) async fn sync_branch(
    context: &Context<'_>,
    git: &dyn Repository,
    refs: &[PolicyImage],
    report: &mut AutomationReport,
) -> Result<(), AutomationError> {
    let (Some(spec), Some(cluster)) = (&context.automation.spec.sync, context.ports.cluster) else {
        return Ok(());
    };
    let applied = apply(context, git, cluster, spec, report).await?;
    let name = context
        .automation
        .metadata
        .name
        .as_deref()
        .unwrap_or_default();
    let Some(path) = spec.evidence_path(context.namespace(), name) else {
        return applied.result();
    };
    // Only a sync that waited for the rollout has a verdict on it.
    if !spec.wait {
        return applied.result();
    }
    if applied.error.is_none() {
        return rollout::record_healthy(context, git, &applied, &path, refs, report).await;
    }
    if !applied.unhealthy {
        return applied.result();
    }
    if spec.rollback.is_none() {
        rollout::record_failed(context, git, &applied, &path, refs, report).await?;
        return applied.result();
    }
    match rollout::roll_back(context, git, &applied, &path, refs, report).await? {
        RolledBack::Pushed(what) => {
            // Put the cluster back at once, not at the next interval.
            let again = apply(context, git, cluster, spec, report).await?;
            let after = match &again.error {
                Some(e) => format!("; the rolled-back revision is not healthy either: {e}"),
                None => "; the rolled-back revision is healthy".to_string(),
            };
            Err(AutomationError::RolledBack(format!("{what}{after}")))
        }
        RolledBack::Proposed(what) => Err(AutomationError::RolledBack(what)),
        // Nothing of hoist's changed since the last healthy rollout: the
        // failure is not hoist's to undo, but what fails no longer soaks.
        RolledBack::NotOurs => {
            rollout::record_failed(context, git, &applied, &path, refs, report).await?;
            applied.result()
        }
    }
}

/// Applies the checkout branch as the remote has it now, and records the
/// inventory.
async fn apply(
    context: &Context<'_>,
    git: &dyn Repository,
    cluster: &dyn Cluster,
    spec: &SyncSpec,
    report: &mut AutomationReport,
) -> Result<Applied, AutomationError> {
    let relative = repository_path("spec.sync.path", &spec.path)?;
    // The loader allows sync on a checkout branch only.
    let source =
        crate::git::Source::branch(&context.automation.spec.git.url, context.checkout_branch());
    let checkout = git.checkout(&context.options.cache, &source).await?;
    let root = checkout.dir.join(&relative);
    // A symbolic link must not lead the sync out of the repository.
    let inside = std::fs::canonicalize(&root)
        .ok()
        .zip(std::fs::canonicalize(&checkout.dir).ok())
        .is_some_and(|(r, c)| r.starts_with(&c) && !r.starts_with(c.join(".git")));
    if !inside {
        return Err(AutomationError::Repository {
            field: "spec.sync.path".into(),
            message: format!("{:?} is not a directory inside the repository", spec.path),
        });
    }
    let read = {
        let root = root.clone();
        off_the_runtime("reading the manifests", move || {
            crate::sync::source::read(&root)
        })
        .await?
    };
    let source = read.map_err(|errors| AutomationError::Repository {
        field: "spec.sync.path".into(),
        message: errors
            .iter()
            .map(|e| format!("{}: {}", relative.join(&e.file).display(), e.message))
            .collect::<Vec<_>>()
            .join("; "),
    })?;
    let images = crate::promotion::images_of(&source);
    let object_images: Vec<(crate::sync::plan::ObjectId, Vec<String>)> = source
        .iter()
        .map(|d| {
            (
                d.id.clone(),
                crate::promotion::images_of(std::slice::from_ref(d)),
            )
        })
        .collect();
    let owner = crate::sync::Owner {
        namespace: context.namespace().to_string(),
        name: context.automation.metadata.name.clone().unwrap_or_default(),
    };
    // Without the inventory hoist could not prune what it applied: stop
    // rather than start a new, empty one.
    let previous = context
        .ports
        .records
        .sync_record(context.key)?
        .unwrap_or_default();
    let options = crate::sync::SyncOptions {
        prune: spec.prune,
        dry_run: false,
        wait: spec.wait.then(|| {
            spec.timeout
                .as_ref()
                .and_then(|t| t.parse().ok())
                .unwrap_or(std::time::Duration::from_secs(300))
        }),
        default_namespace: context.namespace().to_string(),
    };
    let (synced, impersonated) = cluster
        .sync(
            context.namespace(),
            context.automation.spec.service_account_name.as_deref(),
            source,
            &previous.inventory,
            &owner,
            &options,
        )
        .await
        .map_err(|e| AutomationError::Sync(e.to_string()))?;
    let record = crate::store::SyncRecord {
        revision: Some(checkout.base.clone()),
        inventory: synced.inventory.clone(),
    };
    if let Err(e) = context.ports.records.put_sync_record(context.key, &record) {
        report
            .warnings
            .push(format!("recording the sync inventory: {e}"));
    }
    let unhealthy = !synced.unhealthy.is_empty();
    // The planner fills in the namespace an object of the source leaves out.
    let namespace = context.namespace();
    let same = |a: &crate::sync::plan::ObjectId, b: &crate::sync::plan::ObjectId| {
        a.group == b.group
            && a.kind == b.kind
            && a.name == b.name
            && a.namespace.as_deref().unwrap_or(namespace)
                == b.namespace.as_deref().unwrap_or(namespace)
    };
    let failing: Vec<String> = synced
        .unhealthy_objects
        .iter()
        .flat_map(|(id, _)| {
            object_images
                .iter()
                .filter(|(o, _)| same(o, id))
                .flat_map(|(_, images)| images.iter().cloned())
        })
        .collect();
    let verdict = synced
        .unhealthy_objects
        .iter()
        .map(|(_, why)| why.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    let error = synced.error.clone().map(|e| match impersonated {
        Some(user) => format!("sync of {} as {user}: {e}", relative.display()),
        None => format!("sync of {}: {e}", relative.display()),
    });
    report.sync = Some(SyncOutcome {
        revision: checkout.base.clone(),
        report: synced,
    });
    Ok(Applied {
        checkout,
        images,
        failing,
        verdict,
        error,
        unhealthy,
    })
}
