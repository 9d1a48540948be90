//! ImageRepository: scan on `interval` (or when asked), tags to the store,
//! a summary of the scan to `.status`.

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::controller::Action;

use super::conditions::{self, Outcome};
use super::{
    Context, ReconcileError, document, errors_for, labelled, load, now, patch_status, requested,
};
use crate::api::{ImageRepository, ImageRepositoryStatus, ScanResult};
use crate::pipeline::{self, ScanOptions, TagFreshness};

/// Every line logged while reconciling carries the object's key.
#[tracing::instrument(skip_all, fields(object = %super::key_of(&*repository)))]
pub async fn reconcile(
    repository: Arc<ImageRepository>,
    context: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let key = labelled(&*repository);
    let started = std::time::Instant::now();
    let result = scan(&repository, &context).await;
    context.finished("ImageRepository", &key, started, result.as_ref().err());
    result
}

async fn scan(repository: &ImageRepository, context: &Context) -> Result<Action, ReconcileError> {
    if repository.spec.suspend {
        return Ok(Action::await_change());
    }
    let namespace = crate::model::namespace_of(&repository.metadata).to_string();
    let current = repository.status.clone();
    let mut status = current.clone().unwrap_or_default();
    let generation = repository.metadata.generation;
    let object = labelled(repository);
    let finish = |status: &mut ImageRepositoryStatus, outcome: &Outcome| {
        conditions::apply(&mut status.conditions, outcome, generation, &now());
        status.observed_generation = generation;
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
            patch_status(&context.client, repository, current.as_ref(), &status).await?;
            return Err(e);
        }
    };
    let mut documents = vec![document(repository)];
    documents.extend(secrets);
    let (objects, errors) = load(&documents);
    if let Some(message) = errors_for(&errors, &object) {
        context.metrics.reconcile_error("ImageRepository", "spec");
        finish(&mut status, &Outcome::stalled("InvalidSpec", message));
        patch_status(&context.client, repository, current.as_ref(), &status).await?;
        return Ok(Action::await_change());
    }
    let asked = requested(repository, status.last_handled_reconcile_at.as_ref());
    let options = ScanOptions {
        tags: if asked.is_some() {
            TagFreshness::Refresh
        } else {
            TagFreshness::WithinInterval
        },
        concurrency: 1,
        credentials: Arc::clone(&context.credentials),
        now: None,
        scanned_before: repository
            .status
            .as_ref()
            .is_some_and(|s| s.last_scan_result.is_some()),
        rescan: Default::default(),
    };
    let report = pipeline::scan(&objects, &context.registry, &context.store, &options)
        .await
        .map_err(|e| ReconcileError::Transient(e.to_string()))?;
    let Some(scanned) = report.repositories.first() else {
        return Err(ReconcileError::Transient(format!(
            "{object} was not scanned"
        )));
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
    match &scanned.outcome {
        Ok(record) => {
            if !scanned.cached {
                context
                    .metrics
                    .tags_scanned
                    .inc_by(u64::try_from(record.tags).unwrap_or(u64::MAX));
            }
            let scan_time =
                jiff::Timestamp::from_second(i64::try_from(record.scanned_at).unwrap_or(0))
                    .map(|t| t.to_string())
                    .ok();
            status.last_scan_result = Some(ScanResult {
                tag_count: i64::try_from(record.tags).unwrap_or(i64::MAX),
                scan_time,
                revision: Some(record.revision.clone()),
            });
            finish(
                &mut status,
                &Outcome::ready(
                    "Succeeded",
                    format!("successful scan: found {} tags", record.tags),
                ),
            );
            patch_status(&context.client, repository, current.as_ref(), &status).await?;
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
            patch_status(&context.client, repository, current.as_ref(), &status).await?;
            Ok(Action::await_change())
        }
        Err(e) => {
            finish(&mut status, &Outcome::retrying("ScanFailed", e.to_string()));
            patch_status(&context.client, repository, current.as_ref(), &status).await?;
            Err(ReconcileError::Failed(e.report()))
        }
    }
}
