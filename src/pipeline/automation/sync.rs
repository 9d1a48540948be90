//! `spec.sync`: applying the checkout branch to the cluster after a push.

use super::{AutomationReport, Context, SyncOutcome, off_the_runtime, repository_path};
use crate::pipeline::error::AutomationError;
use crate::pipeline::ports::Repository;

/// `spec.sync`: apply the checkout branch as it is now on the remote —
/// hoist's own commit right after it pushed one, the base branch when
/// hoist proposes changes by pull request, anyone's commit otherwise.
pub(super) async fn sync_branch(
    context: &Context<'_>,
    git: &dyn Repository,
    report: &mut AutomationReport,
) -> Result<(), AutomationError> {
    let (Some(spec), Some(cluster)) = (&context.automation.spec.sync, context.ports.cluster) else {
        return Ok(());
    };
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
    let error = synced.error.clone();
    report.sync = Some(SyncOutcome {
        revision: checkout.base,
        report: synced,
    });
    match (error, impersonated) {
        (Some(e), Some(user)) => Err(AutomationError::Sync(format!(
            "sync of {} as {user}: {e}",
            relative.display()
        ))),
        (Some(e), None) => Err(AutomationError::Sync(format!(
            "sync of {}: {e}",
            relative.display()
        ))),
        (None, _) => Ok(()),
    }
}
