//! ImageUpdateAutomation: when a selected policy's latest ref changes, the
//! interval passes or a reconcile is requested, run the pipeline's
//! rewrite → commit → push → pull request for it, with the latest refs the
//! policies' statuses hold.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, DynamicObject};
use kube::runtime::controller::Action;

use super::conditions::{self, Outcome};
use super::{
    Context, Flavor, Kind, ReconcileError, document, errors_for, key_of, labelled_object, load,
    now, refuse_unreadable, requested, typed, write_status,
};
use crate::api::{ImagePolicy, ImageRef, ImageUpdateAutomation, ImageUpdateAutomationStatus};
use crate::model::Tag;
use crate::pipeline::{self, PolicyRef, RunOptions, ScanReport};

/// Every line logged while reconciling carries the object's key.
#[tracing::instrument(skip_all, fields(object = %super::key_of(&*object)))]
pub async fn reconcile(
    object: Arc<DynamicObject>,
    context: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let key = labelled_object(&object);
    let started = std::time::Instant::now();
    let result = match context.options.flavor {
        Flavor::Hoist => match typed::<ImageUpdateAutomation>(&object) {
            Ok(automation) => {
                let sources = vec![document(&automation)];
                update(&object, Arc::new(automation), sources, &key, &context).await
            }
            Err(e) => refuse_unreadable(&context, Kind::ImageUpdateAutomation, &object, e).await,
        },
        Flavor::Flux => match joined(&object, &context).await {
            Ok(Joined::Automation(automation, sources)) => {
                update(&object, Arc::new(*automation), sources, &key, &context).await
            }
            Ok(Joined::Refused(outcome)) => refuse(&object, outcome, &context).await,
            Err(e) => Err(e),
        },
    };
    // Only a run that succeeded ends the backoff (in `update`): a
    // reconcile that found nothing due is no success.
    context.metrics.reconciled(
        "ImageUpdateAutomation",
        result.is_ok(),
        started.elapsed().as_secs_f64(),
    );
    if let Err(e) = &result {
        context
            .metrics
            .reconcile_error("ImageUpdateAutomation", e.metric_label());
    }
    result
}

fn interval(automation: &ImageUpdateAutomation) -> Duration {
    automation
        .spec
        .interval
        .parse()
        .unwrap_or(Duration::from_secs(300))
        .max(Duration::from_secs(1))
}

/// Seconds since an RFC 3339 time, if it parses.
fn age(time: Option<&String>) -> Option<Duration> {
    let then: jiff::Timestamp = time?.parse().ok()?;
    let seconds = jiff::Timestamp::now().as_second() - then.as_second();
    Some(Duration::from_secs(u64::try_from(seconds).unwrap_or(0)))
}

/// A Flux automation joined with its GitRepository, as the loader joins
/// them in files: hoist's automation, and the documents it came from.
enum Joined {
    Automation(Box<ImageUpdateAutomation>, Vec<serde_json::Value>),
    /// Not joined (no GitRepository, or a spec hoist cannot honour): the
    /// condition that says why.
    Refused(Outcome),
}

/// Flux's automation read with the GitRepository its `sourceRef` names.
/// The GitRepository's Secret is read later, with the others.
async fn joined(object: &DynamicObject, context: &Context) -> Result<Joined, ReconcileError> {
    let namespace = crate::model::namespace_of(&object.metadata).to_string();
    let source = object.data.pointer("/spec/sourceRef");
    let name = source
        .and_then(|s| s.get("name"))
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default();
    let source_namespace = source
        .and_then(|s| s.get("namespace"))
        .and_then(serde_json::Value::as_str)
        .filter(|n| !n.is_empty())
        .unwrap_or(&namespace)
        .to_string();
    let mut sources = vec![document(object)];
    if !name.is_empty() {
        if source_namespace != namespace && context.options.no_cross_namespace_refs {
            return Ok(Joined::Refused(Outcome::stalled(
                "AccessDenied",
                format!(
                    "spec.sourceRef: GitRepository {source_namespace}/{name} is in another namespace, \
                     and --no-cross-namespace-refs refuses every reference across namespaces"
                ),
            )));
        }
        let api: Api<DynamicObject> = Api::namespaced_with(
            context.client.clone(),
            &source_namespace,
            &super::kinds::git_repository(),
        );
        match api.get_opt(name).await? {
            Some(repository) => sources.push(document(&repository)),
            None => {
                return Ok(Joined::Refused(Outcome::retrying(
                    "DependencyNotReady",
                    format!("GitRepository {source_namespace}/{name} not found"),
                )));
            }
        }
    }
    let (objects, errors) = load(&sources);
    let label = labelled_object(object);
    if let Some(message) = errors_for(&errors, &label) {
        return Ok(Joined::Refused(Outcome::stalled("InvalidSpec", message)));
    }
    let Some(loaded) = objects.automations.into_iter().next() else {
        return Ok(Joined::Refused(Outcome::stalled(
            "InvalidSpec",
            format!("{label} did not load"),
        )));
    };
    let mut automation = loaded.object;
    automation.status = status_of(Flavor::Flux, object);
    // The loader's copy has no server bookkeeping: the generation decides
    // whether the spec changed.
    automation.metadata = object.metadata.clone();
    Ok(Joined::Automation(Box::new(automation), sources))
}

/// The status a watched automation holds, in hoist's keys.
fn status_of(flavor: Flavor, object: &DynamicObject) -> Option<ImageUpdateAutomationStatus> {
    let status = serde_json::from_value(object.data.get("status")?.clone()).ok()?;
    Some(flavor.read_automation_status(status, crate::model::namespace_of(&object.metadata)))
}

/// Writes the condition of an automation that cannot run, keeping the
/// rest of its status.
async fn refuse(
    object: &DynamicObject,
    outcome: Outcome,
    context: &Context,
) -> Result<Action, ReconcileError> {
    let namespace = crate::model::namespace_of(&object.metadata);
    let mut status = status_of(context.options.flavor, object).unwrap_or_default();
    conditions::apply(
        &mut status.conditions,
        &outcome,
        object.metadata.generation,
        &now(),
    );
    status.observed_generation = object.metadata.generation;
    let value = context.options.flavor.automation_status(&status, namespace);
    write_status(context, Kind::ImageUpdateAutomation, object, value).await?;
    // A retried failure is counted once, as the reconcile's error.
    if outcome.retried() {
        return Err(ReconcileError::Transient(outcome.message().to_string()));
    }
    context
        .metrics
        .reconcile_error("ImageUpdateAutomation", "spec");
    Ok(Action::await_change())
}

async fn update(
    watched: &DynamicObject,
    automation: Arc<ImageUpdateAutomation>,
    sources: Vec<serde_json::Value>,
    key: &str,
    context: &Arc<Context>,
) -> Result<Action, ReconcileError> {
    let namespace = crate::model::namespace_of(&automation.metadata).to_string();
    let mut status = automation.status.clone().unwrap_or_default();
    let generation = automation.metadata.generation;
    let object = labelled_object(watched);
    let interval = interval(&automation);
    let flavor = context.options.flavor;
    let write_to = |status: &ImageUpdateAutomationStatus| {
        let value = flavor.automation_status(status, &namespace);
        write_status(context, Kind::ImageUpdateAutomation, watched, value)
    };
    let reference = context.reference(Kind::ImageUpdateAutomation, watched);
    let write = |mut status: ImageUpdateAutomationStatus, outcome: Outcome| {
        conditions::apply(&mut status.conditions, &outcome, generation, &now());
        status.observed_generation = generation;
        status
    };

    // The selected policies and the latest refs their statuses hold, once
    // the policy cache is filled.
    if !context.policies_listed() {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    // Read into hoist's type only the policies of the automation's own
    // namespace, the only ones it may select.
    let in_namespace = context
        .policies
        .state()
        .into_iter()
        .filter(|p| crate::model::namespace_of(&p.metadata) == namespace);
    let selected: Vec<ImagePolicy> = super::kinds::typed_all(in_namespace)
        .into_iter()
        .filter(|p| pipeline::selects(&automation, p))
        .collect();
    let observed: BTreeMap<String, ImageRef> = selected
        .iter()
        .filter_map(|p| Some((key_of(p), p.status.as_ref()?.latest_ref.clone()?)))
        .collect();
    if automation.spec.suspend {
        // Said with the refs it would have set, so that whoever watches
        // (a test, a person reading the log) knows this decision saw them.
        let latest: Vec<String> = observed
            .iter()
            .map(|(policy, r)| format!("{policy}={}", r.tag))
            .collect();
        if context.suspended.changed(key, latest.clone()) {
            tracing::info!(?latest, "suspended; nothing is pushed");
        }
        // The policy cache is another watch than the one that woke this
        // reconcile and may not have the new latest ref yet: look again
        // soon, so that what is logged catches up with it.
        return Ok(Action::requeue(interval.min(Duration::from_secs(10))));
    }
    let asked = requested(
        &*automation,
        context.requested_at(),
        status.last_handled_reconcile_at.as_ref(),
    );
    let since_run = age(status.last_automation_run_time.as_ref());
    let spec_changed = generation != status.observed_generation;
    // After a failed run, retry on the backoff (or at once for a new spec),
    // not on every status write the failure itself caused.
    let wait = match context.backoff(key) {
        Some(backoff) if !spec_changed => since_run
            .map(|a| backoff.saturating_sub(a))
            .unwrap_or_default(),
        Some(_) => Duration::ZERO,
        None if observed != status.observed_policies || spec_changed => Duration::ZERO,
        // An update window has opened since the run that found all closed.
        None if status
            .next_window
            .as_ref()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .is_some_and(|t| t <= jiff::Timestamp::now()) =>
        {
            Duration::ZERO
        }
        // The policy cache may lag behind the watch that woke this
        // reconcile: look again soon rather than after a whole interval.
        None => since_run
            .map(|a| interval.saturating_sub(a))
            .unwrap_or_default()
            .min(Duration::from_secs(10)),
    };
    if asked.is_none() && !wait.is_zero() {
        if context.backoff(key).is_some() && !spec_changed {
            // Woken early (by the failure's own status write, say): the
            // backoff holds.
            tracing::info!(
                wait_s = wait.as_secs(),
                "backing off after a failed run; not run again yet"
            );
        }
        return Ok(Action::requeue(wait));
    }

    // The git Secret lives beside a Flux GitRepository, which may be in
    // another namespace; the rest beside the automation.
    let mut git_secrets = Vec::new();
    if let Some(reference) = &automation.spec.git.secret_ref {
        git_secrets.push(reference.name.as_str());
    }
    let git_namespace = automation
        .spec
        .git
        .secret_namespace
        .clone()
        .unwrap_or_else(|| namespace.clone());
    let mut secrets = Vec::new();
    if let Some(signing) = &automation.spec.git.commit.signing {
        secrets.push(signing.secret.as_str());
    }
    if let Some(reference) = automation
        .spec
        .git
        .push
        .as_ref()
        .and_then(|p| p.pull_request.as_ref())
        .and_then(|p| p.secret_ref.as_ref())
    {
        secrets.push(reference.name.as_str());
    }
    let read = match context.secrets(&git_namespace, &git_secrets).await {
        Ok(mut found) => match context.secrets(&namespace, &secrets).await {
            Ok(more) => {
                found.extend(more);
                Ok(found)
            }
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    let secrets = match read {
        Ok(s) => s,
        Err(e) => {
            let status = write(status, Outcome::retrying("SecretNotFound", e.to_string()));
            write_to(&status).await?;
            return Err(e);
        }
    };
    let mut documents = sources;
    documents.extend(selected.iter().map(document));
    documents.extend(secrets);
    let (objects, errors) = load(&documents);
    let transport = (!crate::git::network_url(&automation.spec.git.url)).then(|| {
        "spec.git.url: hoist controller reaches git only over https://, http:// and ssh:// \
         (or scp-style user@host:path); local paths, file:// and git:// are for hoist run \
         on your own machine"
            .to_string()
    });
    if let Some(message) = errors_for(&errors, &object).or(transport) {
        context
            .metrics
            .reconcile_error("ImageUpdateAutomation", "spec");
        let status = write(status, Outcome::stalled("InvalidSpec", message));
        write_to(&status).await?;
        return Ok(Action::await_change());
    }
    // The scan report the pipeline takes: one row per latest ref.
    let rows: Vec<PolicyRef> = selected
        .iter()
        .filter_map(|p| {
            let latest = p.status.as_ref()?.latest_ref.as_ref()?;
            Some(PolicyRef {
                policy: key_of(p),
                repository: pipeline::repository_of(p),
                image: latest.name.clone(),
                name: latest.name.clone(),
                tag: Some(Tag::from(latest.tag.as_str())),
                digest: latest.digest.clone(),
                tags: 0,
                waiting: None,
                verified: None,
                passed_over: Vec::new(),
                promoted: p.status.as_ref()?.promoted.clone(),
                error: None,
            })
        })
        .collect();
    let report = ScanReport {
        policies: rows,
        ..ScanReport::default()
    };
    let options = RunOptions {
        dry_run: false,
        cache: context.options.state_dir.join("git"),
        push_attempts: 3,
        now: None,
        strict: false,
    };
    // The sync's inventory lives in the status (the store is an emptyDir
    // that a restart empties): the pipeline reads it from the store.
    if automation.spec.sync.is_some() {
        // The union of both: a status read from a lagging cache (or a
        // status write that failed) must not drop what the store knows.
        // Pruning checks labels, so an extra entry is harmless.
        let stored = context
            .store
            .sync_record(key_of(&*automation).as_str())
            .ok()
            .flatten()
            .unwrap_or_default();
        let mut inventory = status.inventory.clone();
        for entry in stored.inventory {
            if !inventory.iter().any(|e| e.id == entry.id) {
                inventory.push(entry);
            }
        }
        inventory.sort();
        let record = crate::store::SyncRecord {
            revision: status.sync_revision.clone(),
            inventory,
        };
        context
            .store
            .put_sync_record(key_of(&*automation).as_str(), &record)
            .map_err(|e| ReconcileError::Transient(e.to_string()))?;
    }
    use crate::pipeline::ports::{ClusterSync, ForgeClients, Ports};
    let cluster = ClusterSync {
        access: context.options.sync.clone(),
    };
    let ports = Ports {
        git: &context.git,
        forges: &ForgeClients,
        cluster: Some(&cluster),
        records: &context.store,
    };
    let ran = pipeline::run_automations(&objects, &report, ports, &options).await;
    let Some(ran) = ran.into_iter().next() else {
        return Err(ReconcileError::Transient(format!("{object} did not run")));
    };
    let labels = automation.metadata.labels.clone().unwrap_or_default();
    for event in crate::notify::events::of_automation(&ran, &labels, jiff::Timestamp::now()) {
        context.notify(event);
    }
    if let Some(asked) = asked {
        status.last_handled_reconcile_at = Some(asked);
    }
    status.last_automation_run_time = Some(now().0.to_string());
    if let Some(pull) = &ran.pull_request {
        status.pull_request_url = Some(pull.pull_request.url.clone());
        if pull.action == crate::forge::Action::Opened {
            context.metrics.pull_requests_opened.inc();
        }
    }
    if let Some(commit) = &ran.commit {
        context.metrics.commits_pushed.inc();
        status.last_push_commit = Some(commit.clone());
        status.last_push_time = status.last_automation_run_time.clone();
    }
    if let Some(synced) = &ran.sync {
        status.sync_revision = Some(synced.revision.clone());
        status.inventory = synced.report.inventory.clone();
        if !synced.report.pruned.is_empty() {
            let note = format!("pruned {}", synced.report.pruned.join(", "));
            context.event(&reference, "Pruned", note).await;
        }
        if let Some(error) = &synced.report.error {
            context
                .warning(&reference, "SyncFailed", error.clone())
                .await;
        }
    }
    rolled_back(&automation, &ran, &mut status, context, &reference).await;
    if let Some(error) = &ran.error {
        // A spec that cannot work waits for a new one (or a policy's new
        // latest ref, which re-queues it) rather than backing off forever.
        if error.class == pipeline::ErrorClass::Stalled {
            context
                .metrics
                .reconcile_error("ImageUpdateAutomation", error.kind);
            status.observed_policies = observed;
            let status = write(
                status,
                Outcome::stalled("InvalidSpec", error.message.clone()),
            );
            write_to(&status).await?;
            context.forgive(key);
            return Ok(Action::await_change());
        }
        let status = write(
            status,
            Outcome::retrying(flavor.run_failure_reason(error.kind), error.message.clone()),
        );
        write_to(&status).await?;
        return Err(ReconcileError::Failed(error.clone()));
    }
    status.observed_policies = observed;
    status.next_window = ran.window.as_ref().and_then(|w| w.next_open.clone());
    if let Some(window) = &ran.window {
        let message = format!(
            "outside every update window; {} change{} waiting; the next window opens {}",
            ran.changes.len(),
            if ran.changes.len() == 1 { "" } else { "s" },
            window.next_open.as_deref().unwrap_or("not within a year")
        );
        let status = write(status, Outcome::ready("OutsideUpdateWindow", message));
        write_to(&status).await?;
        context.forgive(key);
        let until = window
            .next_open
            .as_ref()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .and_then(|t| u64::try_from(t.as_second() - jiff::Timestamp::now().as_second()).ok())
            .map_or(interval, Duration::from_secs);
        return Ok(Action::requeue(
            until.min(interval).max(Duration::from_secs(1)),
        ));
    }
    let (message, pushed) =
        flavor.automation_messages(ran.commit.as_deref(), &ran.branch, ran.changes.len());
    if let Some(note) = pushed {
        let reason = match flavor {
            Flavor::Hoist => "Pushed",
            Flavor::Flux => "Succeeded",
        };
        context.event(&reference, reason, note).await;
    }
    let status = write(status, Outcome::ready("Succeeded", message));
    write_to(&status).await?;
    context.forgive(key);
    Ok(Action::requeue(interval))
}

/// `spec.sync.rollback`: a run that rolled back says so — the
/// `RolledBack` condition and a warning Event — and writes the rejected
/// tags into their policies' statuses, where they outlast the store (and
/// wake the policies to select again); a healthy rollout since turns the
/// condition False.
async fn rolled_back(
    automation: &ImageUpdateAutomation,
    ran: &pipeline::AutomationReport,
    status: &mut ImageUpdateAutomationStatus,
    context: &Context,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
) {
    let time = now();
    let generation = automation.metadata.generation;
    let Some(rollback) = &ran.rollback else {
        let healthy = ran
            .sync
            .as_ref()
            .is_some_and(|s| s.report.error.is_none() && s.report.unhealthy.is_empty());
        if healthy
            && status
                .conditions
                .iter()
                .any(|c| c.type_ == conditions::ROLLED_BACK && c.status == "True")
        {
            conditions::set(
                &mut status.conditions,
                conditions::ROLLED_BACK,
                "False",
                "Healthy",
                "the last rollout ran healthy",
                generation,
                &time,
            );
        }
        return;
    };
    let message = ran
        .error
        .as_ref()
        .map_or_else(|| rollback.reason.clone(), |e| e.message.clone());
    conditions::set(
        &mut status.conditions,
        conditions::ROLLED_BACK,
        "True",
        "RolledBack",
        &message,
        generation,
        &time,
    );
    context
        .warning(reference, "RolledBack", message.clone())
        .await;
    let namespace = crate::model::namespace_of(&automation.metadata);
    let api: Api<ImagePolicy> = Api::namespaced(context.client.clone(), namespace);
    for rejected in &rollback.rejected {
        let Some(name) = rejected
            .policy
            .strip_prefix(&format!("{namespace}/"))
            .filter(|n| !n.contains('/'))
        else {
            continue;
        };
        let known = match context.store.rejections(&rejected.policy) {
            Ok(known) => known,
            Err(e) => {
                tracing::warn!(policy = rejected.policy, "{e}");
                continue;
            }
        };
        let patch = serde_json::json!({"status": {"rejected": known}});
        if let Err(e) = api
            .patch_status(
                name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&patch),
            )
            .await
        {
            tracing::warn!(
                policy = rejected.policy,
                "recording the rejected tag in its status: {e}"
            );
        }
    }
}
