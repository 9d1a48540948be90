//! ImagePolicy: select the latest tag from what the repository reconciler
//! stored; `.status.latestRef`, and an Event when it changes.

use std::sync::Arc;
use std::time::Duration;

use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};

use super::conditions::{self, Outcome};
use super::{
    Context, ReconcileError, document, errors_for, key_of, labelled, load, now, patch_status,
    requested,
};
use crate::api::{ImagePolicy, ImagePolicyStatus, ImageRef, ImageRepository};
use crate::pipeline::{self, ScanOptions, TagFreshness};

pub async fn reconcile(
    policy: Arc<ImagePolicy>,
    context: Arc<Context>,
) -> Result<Action, ReconcileError> {
    context
        .policies_listed
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let key = labelled(&*policy);
    let started = std::time::Instant::now();
    let result = select(&policy, &context).await;
    context.finished("ImagePolicy", &key, started, result.as_ref().err());
    result
}

/// The policy's ImageRepository: from the watch cache, else from the API
/// (the cache may not have caught up with a repository just created).
async fn repository_of(
    policy: &ImagePolicy,
    context: &Context,
) -> Result<Option<ImageRepository>, ReconcileError> {
    let reference = &policy.spec.image_repository_ref;
    let namespace = reference
        .namespace
        .clone()
        .or_else(|| policy.namespace())
        .unwrap_or_else(|| "default".into());
    let object = ObjectRef::new(&reference.name).within(&namespace);
    if let Some(found) = context.repositories.get(&object) {
        return Ok(Some((*found).clone()));
    }
    let api: Api<ImageRepository> = Api::namespaced(context.client.clone(), &namespace);
    Ok(api.get_opt(&reference.name).await?)
}

/// Whether the policy may read `repository`: always in its own namespace;
/// from another only when the repository's accessFrom admits the labels
/// of the policy's Namespace, read from the API, and never with
/// `--no-cross-namespace-refs`. The inner error says why.
async fn cross_namespace_access(
    policy: &ImagePolicy,
    repository: &ImageRepository,
    context: &Context,
) -> Result<Result<(), crate::api::AccessRefused>, ReconcileError> {
    use k8s_openapi::api::core::v1::Namespace;
    let from = policy.namespace().unwrap_or_else(|| "default".into());
    let target = repository.namespace().unwrap_or_else(|| "default".into());
    let labels = if from == target || context.options.no_cross_namespace_refs {
        None
    } else {
        let api: Api<Namespace> = Api::all(context.client.clone());
        api.get_opt(&from)
            .await?
            .map(|n| n.metadata.labels.unwrap_or_default())
    };
    Ok(crate::api::check_reference_access(
        &from,
        labels.as_ref(),
        &format!("ImageRepository {}", key_of(repository)),
        &target,
        repository.spec.access_from.as_ref(),
        context.options.no_cross_namespace_refs,
    ))
}

async fn select(policy: &ImagePolicy, context: &Context) -> Result<Action, ReconcileError> {
    if policy.spec.suspend {
        return Ok(Action::await_change());
    }
    let current = policy.status.clone();
    let mut status = current.clone().unwrap_or_default();
    // Worked out afresh by each reconcile that gets as far as selecting.
    status.waiting = None;
    let generation = policy.metadata.generation;
    let object = labelled(policy);
    let write = |mut status: ImagePolicyStatus, outcome: Outcome| {
        conditions::apply(&mut status.conditions, &outcome, generation, &now());
        status.observed_generation = generation;
        status
    };
    if let Some(asked) = requested(policy, status.last_handled_reconcile_at.as_ref()) {
        status.last_handled_reconcile_at = Some(asked);
    }
    let Some(repository) = repository_of(policy, context).await? else {
        let message = format!(
            "ImageRepository {} not found",
            pipeline::repository_of(policy)
        );
        let status = write(status, Outcome::waiting("DependencyNotReady", message));
        patch_status(&context.client, policy, current.as_ref(), &status).await?;
        // Its creation re-queues this policy through the watch mapping.
        return Ok(Action::await_change());
    };
    if let Err(refused) = cross_namespace_access(policy, &repository, context).await? {
        context
            .metrics
            .reconcile_error("ImagePolicy", "access_denied");
        let status = write(
            status,
            Outcome::stalled(
                "AccessDenied",
                format!("spec.imageRepositoryRef: {refused}"),
            ),
        );
        patch_status(&context.client, policy, current.as_ref(), &status).await?;
        // A change to the repository's accessFrom re-queues this policy
        // through the watch mapping.
        return Ok(Action::await_change());
    }
    let (objects, errors) = load(&[document(&repository), document(policy)]);
    if let Some(message) = errors_for(&errors, &object) {
        context.metrics.reconcile_error("ImagePolicy", "spec");
        let status = write(status, Outcome::stalled("InvalidSpec", message));
        patch_status(&context.client, policy, current.as_ref(), &status).await?;
        return Ok(Action::await_change());
    }
    if objects.repositories.is_empty() {
        let message = format!("ImageRepository {} is invalid", key_of(&repository));
        let status = write(status, Outcome::waiting("DependencyNotReady", message));
        patch_status(&context.client, policy, current.as_ref(), &status).await?;
        return Ok(Action::await_change());
    }
    // Tags from the store only: scanning is the repository reconciler's.
    let options = ScanOptions {
        tags: TagFreshness::Stored,
        concurrency: 1,
        credentials: Arc::clone(&context.credentials),
        now: None,
        scanned_before: false,
        rescan: Default::default(),
    };
    let report = pipeline::scan(&objects, &context.registry, &context.store, &options)
        .await
        .map_err(|e| ReconcileError::Transient(e.to_string()))?;
    if let Some(Err(e)) = report.repositories.first().map(|r| &r.outcome) {
        let status = write(
            status,
            Outcome::waiting("DependencyNotReady", e.to_string()),
        );
        patch_status(&context.client, policy, current.as_ref(), &status).await?;
        // After a restart the store is empty, and the repository's rescan
        // may find the same revision (which re-queues no policy): look again.
        return Ok(Action::requeue(Duration::from_secs(5)));
    }
    if let Some(failure) = report.failures.first() {
        let status = write(
            status,
            Outcome::retrying("DigestFailed", failure.to_string()),
        );
        patch_status(&context.client, policy, current.as_ref(), &status).await?;
        return Err(ReconcileError::Failed(failure.report()));
    }
    let latest = report.policies.first().and_then(|row| {
        Some(ImageRef {
            name: row.name.clone(),
            tag: row.tag.as_ref()?.to_string(),
            digest: row.digest.clone(),
        })
    });
    let Some(latest) = latest else {
        // Every fitting tag is still too new for minimumAge.
        if let Some(w) = report.policies.first().and_then(|r| r.waiting.clone()) {
            let at = jiff::Timestamp::from_second(i64::try_from(w.eligible_at).unwrap_or(0))
                .map(|t| t.to_string())
                .unwrap_or_default();
            status.waiting = Some(crate::api::WaitingTag {
                tag: w.tag.clone(),
                eligible_at: at.clone(),
            });
            let status = write(
                status,
                Outcome::waiting(
                    "MinimumAge",
                    format!("{} waits for minimumAge until {at}", w.tag),
                ),
            );
            patch_status(&context.client, policy, current.as_ref(), &status).await?;
            let wait = w.eligible_at.saturating_sub(crate::store::now()).max(1);
            return Ok(Action::requeue(Duration::from_secs(wait)));
        }
        let tags = report.policies.first().map_or(0, |r| r.tags);
        let status = write(
            status,
            Outcome::waiting("NoMatchingTag", format!("no tag of {tags} fits the policy")),
        );
        patch_status(&context.client, policy, current.as_ref(), &status).await?;
        return Ok(Action::await_change());
    };
    // A tag held back by minimumAge: say so, and look again when it is old
    // enough (no new scan revision would re-queue this policy then).
    let waiting = report.policies.first().and_then(|r| r.waiting.clone());
    status.waiting = waiting.as_ref().map(|w| crate::api::WaitingTag {
        tag: w.tag.clone(),
        eligible_at: jiff::Timestamp::from_second(i64::try_from(w.eligible_at).unwrap_or(0))
            .map(|t| t.to_string())
            .unwrap_or_default(),
    });
    let mature_in = waiting
        .map(|w| Duration::from_secs(w.eligible_at.saturating_sub(crate::store::now()).max(1)));
    let changed = status.latest_ref.as_ref() != Some(&latest);
    if changed {
        status.observed_previous_ref = status.latest_ref.take();
        status.latest_ref = Some(latest.clone());
    }
    let message = format!(
        "latest image tag for {} resolved to {}",
        latest.name, latest.tag
    );
    let status = write(status, Outcome::ready("Succeeded", message.clone()));
    patch_status(&context.client, policy, current.as_ref(), &status).await?;
    if changed {
        let note = match &status.observed_previous_ref {
            Some(previous) => format!("{message} (was {})", previous.tag),
            None => message,
        };
        context
            .event(&policy.object_ref(&()), "NewLatestTag", note)
            .await;
    }
    // Digests reflected `Always` are refreshed on the policy's interval.
    let refresh = matches!(
        policy.spec.digest_reflection_policy,
        Some(crate::api::ReflectionPolicy::Always)
    );
    let interval = policy
        .spec
        .interval
        .as_ref()
        .and_then(|i| i.parse().ok())
        .filter(|_| refresh)
        .map(|i: Duration| i.max(Duration::from_secs(1)));
    Ok(match (interval, mature_in) {
        (Some(a), Some(b)) => Action::requeue(a.min(b)),
        (Some(a), None) | (None, Some(a)) => Action::requeue(a),
        (None, None) => Action::await_change(),
    })
}
