//! ImageRepository: scan on `interval` (or when asked), tags to the store,
//! a summary of the scan to `.status`.

use std::sync::Arc;
use std::time::Duration;

use kube::api::DynamicObject;
use kube::runtime::controller::Action;

use super::conditions::{self, Outcome};
use super::{
    Context, Kind, ReconcileError, document, errors_for, labelled, labelled_object, load, now,
    refuse_unreadable, requested, typed, write_status,
};
use crate::api::{ImageRepository, ImageRepositoryStatus, ScanResult};
use crate::pipeline::{self, ScanOptions, TagFreshness};

/// Every line logged while reconciling carries the object's key.
#[tracing::instrument(skip_all, fields(object = %super::key_of(&*object)))]
pub async fn reconcile(
    object: Arc<DynamicObject>,
    context: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let key = labelled_object(&object);
    let started = std::time::Instant::now();
    let result = match typed::<ImageRepository>(&object) {
        Ok(repository) => scan(&object, &repository, &context).await,
        Err(e) => refuse_unreadable(&context, Kind::ImageRepository, &object, e).await,
    };
    context.finished("ImageRepository", &key, started, result.as_ref().err());
    result
}

async fn scan(
    object: &DynamicObject,
    repository: &ImageRepository,
    context: &Context,
) -> Result<Action, ReconcileError> {
    if repository.spec.suspend {
        return Ok(Action::await_change());
    }
    let namespace = crate::model::namespace_of(&repository.metadata).to_string();
    let mut status = repository.status.clone().unwrap_or_default();
    let generation = repository.metadata.generation;
    let name = labelled(repository);
    let finish = |status: &mut ImageRepositoryStatus, outcome: &Outcome| {
        conditions::apply(&mut status.conditions, outcome, generation, &now());
        status.observed_generation = generation;
    };
    let exclusions = repository.spec.exclusions();
    // The status in the flavour's shape; `tags`, the scan's tags after
    // the exclusion list, when this reconcile scanned.
    let write = |status: &ImageRepositoryStatus, tags: Option<&[String]>| {
        let value = context.options.flavor.repository_status(
            status,
            object.data.get("status"),
            tags,
            &exclusions,
        );
        write_status(context, Kind::ImageRepository, object, value)
    };

    let mut secrets = Vec::new();
    for reference in [
        &repository.spec.secret_ref,
        &repository.spec.cert_secret_ref,
    ]
    .into_iter()
    .flatten()
    {
        secrets.push(reference.name.as_str());
    }
    let secrets = match context.secrets(&namespace, &secrets).await {
        Ok(s) => s,
        Err(e) => {
            finish(
                &mut status,
                &Outcome::retrying("SecretNotFound", e.to_string()),
            );
            write(&status, None).await?;
            return Err(e);
        }
    };
    let mut documents = vec![document(repository)];
    documents.extend(secrets);
    let (objects, errors) = load(&documents);
    if let Some(message) = errors_for(&errors, &name) {
        context.metrics.reconcile_error("ImageRepository", "spec");
        finish(&mut status, &Outcome::stalled("InvalidSpec", message));
        write(&status, None).await?;
        return Ok(Action::await_change());
    }
    let asked = requested(
        repository,
        context.requested_at(),
        status.last_handled_reconcile_at.as_ref(),
    );
    let options = ScanOptions {
        tags: if asked.is_some() {
            TagFreshness::Refresh
        } else {
            TagFreshness::WithinInterval
        },
        concurrency: 1,
        credentials: Arc::clone(&context.credentials),
        identities: Arc::clone(&context.identities),
        now: None,
        scanned_before: repository
            .status
            .as_ref()
            .is_some_and(|s| s.last_scan_result.is_some()),
        rescan: Default::default(),
        evidence: Default::default(),
    };
    let report = pipeline::scan(&objects, &context.registry, &context.store, &options)
        .await
        .map_err(|e| ReconcileError::Transient(e.to_string()))?;
    let Some(scanned) = report.repositories.first() else {
        return Err(ReconcileError::Transient(format!("{name} was not scanned")));
    };
    if asked.is_some() {
        status.last_handled_reconcile_at = asked;
    }
    status.canonical_image_name = Some(scanned.image.clone());
    let interval = repository
        .spec
        .interval
        .as_ref()
        .and_then(|i| i.parse().ok())
        .unwrap_or(Duration::from_secs(300));
    if let Err(e) = &scanned.outcome {
        context.notify(crate::notify::events::scan_failed(
            &super::key_of(repository),
            &scanned.image,
            e.to_string(),
            &repository.metadata.labels.clone().unwrap_or_default(),
            jiff::Timestamp::now(),
        ));
    }
    match &scanned.outcome {
        Ok(record) => {
            if !scanned.cached {
                context
                    .metrics
                    .tags_scanned
                    .inc_by(u64::try_from(record.tags).unwrap_or(u64::MAX));
            }
            // Flux counts, and samples, the tags its exclusion list keeps:
            // read back from the store only when the tags or the list
            // changed since the status was written, not on every rescan.
            let current = object.data.get("status");
            let unchanged = current.is_some_and(|c| {
                c.pointer("/lastScanResult/revision")
                    .and_then(|r| r.as_str())
                    == Some(record.revision.as_str())
                    && c.get("observedExclusionList") == Some(&exclusions.clone().into())
            });
            let known_count = status.last_scan_result.as_ref().map(|r| r.tag_count);
            let (kept, count) = match (context.options.flavor, unchanged, known_count) {
                (super::Flavor::Hoist, _, _) => (None, record.tags),
                (super::Flavor::Flux, true, Some(count)) => {
                    (None, usize::try_from(count).unwrap_or(0))
                }
                (super::Flavor::Flux, _, _) => {
                    let kept = kept_tags(context, repository, &scanned.image)?;
                    let count = kept.len();
                    (Some(kept), count)
                }
            };
            let scan_time =
                jiff::Timestamp::from_second(i64::try_from(record.scanned_at).unwrap_or(0))
                    .map(|t| t.to_string())
                    .ok();
            status.last_scan_result = Some(ScanResult {
                tag_count: i64::try_from(count).unwrap_or(i64::MAX),
                scan_time,
                revision: Some(record.revision.clone()),
            });
            finish(
                &mut status,
                &Outcome::ready(
                    "Succeeded",
                    context.options.flavor.scan_message(count, &record.revision),
                ),
            );
            write(&status, kept.as_deref()).await?;
            // Wake when the interval has passed since the scan itself.
            let age = crate::store::now().saturating_sub(record.scanned_at);
            let next = interval
                .saturating_sub(Duration::from_secs(age))
                .max(Duration::from_secs(1));
            Ok(Action::requeue(next))
        }
        Err(e) if e.class() == pipeline::ErrorClass::Stalled => {
            context
                .metrics
                .reconcile_error("ImageRepository", e.metric_label());
            finish(&mut status, &Outcome::stalled("InvalidSpec", e.to_string()));
            write(&status, None).await?;
            Ok(Action::await_change())
        }
        Err(e) => {
            finish(&mut status, &Outcome::retrying("ScanFailed", e.to_string()));
            write(&status, None).await?;
            Err(ReconcileError::Failed(e.report()))
        }
    }
}

/// The stored tags of `image` that `repository`'s exclusion list keeps:
/// what Flux samples its `latestTags` from.
fn kept_tags(
    context: &Context,
    repository: &ImageRepository,
    image: &str,
) -> Result<Vec<String>, ReconcileError> {
    let record = context
        .store
        .scan(image)
        .map_err(|e| ReconcileError::Transient(e.to_string()))?;
    let exclusions = crate::registry::Exclusions::of(&repository.spec)
        .map_err(|e| ReconcileError::Transient(e.to_string()))?;
    Ok(record
        .map(|r| r.tags)
        .unwrap_or_default()
        .iter()
        .filter(|t| !exclusions.excludes(t.as_str()))
        .map(|t| t.as_str().to_string())
        .collect())
}
