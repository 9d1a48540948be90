//! ImagePolicy: select the latest tag from what the repository reconciler
//! stored; `.status.latestRef`, and an Event when it changes.

use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, DynamicObject};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;

use super::conditions::{self, Outcome};
use super::{
    Context, Kind, ReconcileError, document, errors_for, key_of, labelled, labelled_object, load,
    refuse_unreadable, requested, typed, write_status,
};
use crate::api::{ImagePolicy, ImagePolicyStatus, ImageRef, ImageRepository};
use crate::pipeline::{self, ScanOptions, TagFreshness};

/// Every line logged while reconciling carries the object's key.
#[tracing::instrument(skip_all, fields(object = %super::key_of(&*object)))]
pub async fn reconcile(
    object: Arc<DynamicObject>,
    context: Arc<Context>,
) -> Result<Action, ReconcileError> {
    context
        .policies_listed
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let key = labelled_object(&object);
    let started = std::time::Instant::now();
    let result = match typed::<ImagePolicy>(&object) {
        Ok(policy) => select(&object, &policy, &context).await,
        Err(e) => refuse_unreadable(&context, Kind::ImagePolicy, &object, e).await,
    };
    context.finished("ImagePolicy", &key, started, result.as_ref().err());
    result
}

/// The policy's ImageRepository: from the watch cache, else from the API
/// (the cache may not have caught up with a repository just created).
async fn repository_of(
    policy: &ImagePolicy,
    context: &Context,
) -> Result<Option<DynamicObject>, ReconcileError> {
    let reference = &policy.spec.image_repository_ref;
    let namespace = reference
        .namespace
        .as_deref()
        .unwrap_or(crate::model::namespace_of(&policy.metadata));
    let resource = context.resource(Kind::ImageRepository);
    let object = ObjectRef::new_with(&reference.name, resource.clone()).within(namespace);
    if let Some(found) = context.repositories.get(&object) {
        return Ok(Some((*found).clone()));
    }
    let api: Api<DynamicObject> =
        Api::namespaced_with(context.client.clone(), namespace, &resource);
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
    let from = crate::model::namespace_of(&policy.metadata).to_string();
    let target = crate::model::namespace_of(&repository.metadata).to_string();
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

/// What the reconciler found out about a policy, before it decides
/// anything: the I/O half of a reconcile. [`policy_status`] turns it into
/// the status to write.
#[derive(Debug)]
pub enum Observed<'a> {
    /// Its ImageRepository (`ns/name`) does not exist.
    RepositoryMissing(String),
    /// Its ImageRepository is in another namespace that does not let it in.
    AccessDenied(crate::api::AccessRefused),
    /// The policy itself does not load: why, field by field.
    InvalidSpec(String),
    /// Its ImageRepository (`ns/name`) does not load.
    RepositoryInvalid(String),
    /// The repository has no usable scan in the store (yet), and why.
    NotScanned(String),
    /// The selected tag's digest could not be read.
    DigestFailed(crate::pipeline::ErrorReport),
    /// What selecting from the stored tags came to.
    Selected(&'a pipeline::PolicyRef),
}

/// When to look at the policy again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requeue {
    /// When it, or what it reads, changes (the watches say).
    AwaitChange,
    After(Duration),
    /// A failure, retried with the reconcilers' backoff.
    Backoff(crate::pipeline::ErrorReport),
}

/// A reconcile's decision, as data: the status to write, the Event to
/// send, the error metric to count, and when to come back.
#[derive(Clone, Debug, PartialEq)]
pub struct PolicyDecision {
    pub status: ImagePolicyStatus,
    /// A `NewLatestTag` Event's note, when the latest ref moved.
    pub new_latest: Option<String>,
    /// `hoist_reconcile_errors_total`'s reason for a refusal that is not
    /// retried (retried failures are counted by the backoff).
    pub error_reason: Option<&'static str>,
    pub requeue: Requeue,
}

/// The status of `policy` after a reconcile that observed `observed` at
/// `now`. Pure: the time comes in, nothing goes out but the value.
pub fn policy_status(
    policy: &ImagePolicy,
    flavor: super::Flavor,
    observed: Observed<'_>,
    now: jiff::Timestamp,
) -> PolicyDecision {
    let mut status = policy.status.clone().unwrap_or_default();
    // Worked out afresh by each reconcile.
    status.waiting = None;
    status.passed_over = Vec::new();
    if let Some(asked) = requested(
        policy,
        flavor.requested_at(),
        status.last_handled_reconcile_at.as_ref(),
    ) {
        status.last_handled_reconcile_at = Some(asked);
    }
    let generation = policy.metadata.generation;
    let time = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        jiff::Timestamp::from_second(now.as_second()).unwrap_or(jiff::Timestamp::UNIX_EPOCH),
    );
    let seconds = u64::try_from(now.as_second()).unwrap_or(0);
    let decide = |mut status: ImagePolicyStatus, outcome: Outcome, requeue: Requeue| {
        conditions::apply(&mut status.conditions, &outcome, generation, &time);
        status.observed_generation = generation;
        PolicyDecision {
            status,
            new_latest: None,
            error_reason: None,
            requeue,
        }
    };
    let waiting_tag = |w: &crate::policy::Waiting| crate::api::WaitingTag {
        tag: w.tag.clone(),
        eligible_at: jiff::Timestamp::from_second(i64::try_from(w.eligible_at).unwrap_or(0))
            .map(|t| t.to_string())
            .unwrap_or_default(),
    };
    // No scan revision re-queues the policy when a waiting tag matures:
    // come back then.
    let matures = |w: &crate::policy::Waiting| {
        Duration::from_secs(w.eligible_at.saturating_sub(seconds).max(1))
    };
    // A reconcile that does not get to verification says so, rather than
    // leave an earlier Verified=True standing.
    if !matches!(observed, Observed::Selected(_)) {
        not_verified(policy, &mut status, generation, &time);
    }
    let row = match observed {
        Observed::RepositoryMissing(repository) => {
            // Its creation re-queues this policy through the watch mapping.
            return decide(
                status,
                Outcome::waiting(
                    "DependencyNotReady",
                    format!("ImageRepository {repository} not found"),
                ),
                Requeue::AwaitChange,
            );
        }
        Observed::AccessDenied(refused) => {
            // A change to the repository's accessFrom re-queues this
            // policy through the watch mapping.
            return PolicyDecision {
                error_reason: Some("access_denied"),
                ..decide(
                    status,
                    Outcome::stalled(
                        "AccessDenied",
                        format!("spec.imageRepositoryRef: {refused}"),
                    ),
                    Requeue::AwaitChange,
                )
            };
        }
        Observed::InvalidSpec(message) => {
            return PolicyDecision {
                error_reason: Some("spec"),
                ..decide(
                    status,
                    Outcome::stalled("InvalidSpec", message),
                    Requeue::AwaitChange,
                )
            };
        }
        Observed::RepositoryInvalid(repository) => {
            return decide(
                status,
                Outcome::waiting(
                    "DependencyNotReady",
                    format!("ImageRepository {repository} is invalid"),
                ),
                Requeue::AwaitChange,
            );
        }
        Observed::NotScanned(message) => {
            // After a restart the store is empty, and the repository's
            // rescan may find the same revision (which re-queues no
            // policy): look again.
            return decide(
                status,
                Outcome::waiting("DependencyNotReady", message),
                Requeue::After(Duration::from_secs(5)),
            );
        }
        Observed::DigestFailed(failure) => {
            let message = failure.to_string();
            return decide(
                status,
                Outcome::retrying("DigestFailed", message),
                Requeue::Backoff(failure),
            );
        }
        Observed::Selected(row) => row,
    };
    status.waiting = row.waiting.as_ref().map(waiting_tag);
    status.passed_over = row
        .passed_over
        .iter()
        .map(|p| crate::api::PassedOverTag {
            tag: p.tag.clone(),
            digest: p.digest.clone(),
            reason: p.reason.to_string(),
            message: p.message.clone(),
        })
        .collect();
    // `Verified` beside `Ready`: what verification made of the newest
    // candidates, whatever else the reconcile came to.
    if policy.spec.verify.is_none() {
        status
            .conditions
            .retain(|c| c.type_ != conditions::VERIFIED);
    } else if let (Some(tag), Some(signer)) = (&row.tag, &row.verified) {
        let message = format!(
            "{tag} ({}) is signed by {signer}",
            row.digest.as_deref().unwrap_or("no digest")
        );
        conditions::set(
            &mut status.conditions,
            conditions::VERIFIED,
            "True",
            "Succeeded",
            &message,
            generation,
            &time,
        );
    } else if let Some(first) = row.passed_over.first() {
        let message = format!(
            "{} newer tag(s) passed over; {}: {}: {}",
            row.passed_over.len(),
            first.tag,
            first.reason,
            first.message
        );
        conditions::set(
            &mut status.conditions,
            conditions::VERIFIED,
            "False",
            "VerificationFailed",
            &message,
            generation,
            &time,
        );
    } else {
        not_verified(policy, &mut status, generation, &time);
    }
    let Some(tag) = &row.tag else {
        if let Some(w) = &row.waiting {
            // Every fitting tag is still too new for minimumAge, or still
            // soaking upstream.
            let (reason, why) = match (&policy.spec.promotion, &policy.spec.minimum_age) {
                (Some(p), None) => (
                    "Soaking",
                    format!("its soak under ImageUpdateAutomation {}", p.from),
                ),
                (Some(_), Some(_)) => {
                    ("Soaking", "minimumAge and the promotion's soak".to_string())
                }
                (None, _) => ("MinimumAge", "minimumAge".to_string()),
            };
            let message = format!(
                "{} waits for {why} until {}",
                w.tag,
                waiting_tag(w).eligible_at
            );
            return decide(
                status,
                Outcome::waiting(reason, message),
                Requeue::After(matures(w)),
            );
        }
        if let Some(first) = row.passed_over.first() {
            // Every candidate failed the gate; a signature pushed later
            // comes with no new tag, so look again on the interval.
            return decide(
                status,
                Outcome::waiting(
                    "NoVerifiedTag",
                    format!(
                        "no tag passes verify and platforms ({} passed over, the newest {}: {}: {})",
                        row.passed_over.len(),
                        first.tag,
                        first.reason,
                        first.message
                    ),
                ),
                Requeue::After(gate_interval(policy)),
            );
        }
        if let Some(promotion) = &policy.spec.promotion {
            // The upstream's evidence changes with no event here: read it
            // again on the interval.
            return decide(
                status,
                Outcome::waiting(
                    "NotPromoted",
                    format!(
                        "no tag of {} that fits the policy ran healthy under ImageUpdateAutomation {} yet",
                        row.tags, promotion.from
                    ),
                ),
                Requeue::After(gate_interval(policy)),
            );
        }
        return decide(
            status,
            Outcome::waiting(
                "NoMatchingTag",
                format!("no tag of {} fits the policy", row.tags),
            ),
            Requeue::AwaitChange,
        );
    };
    let latest = ImageRef {
        name: row.name.clone(),
        tag: tag.to_string(),
        digest: row.digest.clone(),
    };
    status.promoted = row.promoted.clone();
    let changed = status.latest_ref.as_ref() != Some(&latest);
    if changed {
        status.observed_previous_ref = status.latest_ref.take();
        status.latest_ref = Some(latest.clone());
    }
    let message = flavor.policy_message(&latest, status.observed_previous_ref.as_ref());
    let new_latest = changed.then(|| match &status.observed_previous_ref {
        Some(previous) => format!("{message} (was {})", previous.tag),
        None => message.clone(),
    });
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
    // A newer tag passed over may be signed later, with no new tag to
    // re-queue the policy: look again on the interval.
    let interval = if row.passed_over.is_empty() && policy.spec.promotion.is_none() {
        interval
    } else {
        Some(interval.map_or_else(|| gate_interval(policy), |i| i.min(gate_interval(policy))))
    };
    let requeue = match (interval, row.waiting.as_ref().map(matures)) {
        (Some(a), Some(b)) => Requeue::After(a.min(b)),
        (Some(a), None) | (None, Some(a)) => Requeue::After(a),
        (None, None) => Requeue::AwaitChange,
    };
    PolicyDecision {
        new_latest,
        ..decide(status, Outcome::ready("Succeeded", message), requeue)
    }
}

/// `Verified=Unknown` for a policy with `verify` whose reconcile verified
/// nothing (no tag, or it failed before); no condition without `verify`.
fn not_verified(
    policy: &ImagePolicy,
    status: &mut ImagePolicyStatus,
    generation: Option<i64>,
    time: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
) {
    if policy.spec.verify.is_none() {
        status
            .conditions
            .retain(|c| c.type_ != conditions::VERIFIED);
        return;
    }
    conditions::set(
        &mut status.conditions,
        conditions::VERIFIED,
        "Unknown",
        "NotVerified",
        "the last reconcile verified no tag",
        generation,
        time,
    );
}

/// How often a policy whose gate passed tags over looks at them again:
/// its `interval`, else the scan default.
fn gate_interval(policy: &ImagePolicy) -> Duration {
    policy
        .spec
        .interval
        .as_ref()
        .and_then(|i| i.parse().ok())
        .unwrap_or(crate::pipeline::DEFAULT_INTERVAL)
        .max(Duration::from_secs(1))
}

async fn select(
    object: &DynamicObject,
    policy: &ImagePolicy,
    context: &Context,
) -> Result<Action, ReconcileError> {
    if policy.spec.suspend {
        return Ok(Action::await_change());
    }
    let selection;
    let observed = match observe(policy, context).await? {
        Found::Early(observed) => observed,
        Found::Selected(selected) => {
            selection = selected;
            match (&selection.repository_failure, &selection.failure) {
                (Some(e), _) => Observed::NotScanned(e.to_string()),
                (None, Some(failure)) => Observed::DigestFailed(failure.report()),
                (None, None) => Observed::Selected(&selection.row),
            }
        }
    };
    let mut decision = policy_status(
        policy,
        context.options.flavor,
        observed,
        jiff::Timestamp::now(),
    );
    // What the store knows of rollbacks (an automation of this controller
    // may have added one), kept in the status for after a restart.
    if let Ok(rejected) = context.store.rejections(&key_of(policy))
        && !rejected.is_empty()
    {
        decision.status.rejected = rejected;
    }
    let value = context.options.flavor.policy_status(&decision.status);
    write_status(context, Kind::ImagePolicy, object, value).await?;
    if let Some(reason) = decision.error_reason {
        context.metrics.reconcile_error("ImagePolicy", reason);
    }
    // A new tag is news; a new digest under the same tag (a rebuilt
    // image reflected) is not, as in `hoist run`.
    if decision.new_latest.is_some()
        && let Some(latest) = &decision.status.latest_ref
        && decision
            .status
            .observed_previous_ref
            .as_ref()
            .is_none_or(|previous| previous.tag != latest.tag)
    {
        context.notify(crate::notify::events::new_latest_tag(
            &key_of(policy),
            &latest.name,
            &latest.tag,
            latest.digest.as_deref(),
            decision
                .status
                .observed_previous_ref
                .as_ref()
                .map(|r| r.tag.as_str()),
            &policy.metadata.labels.clone().unwrap_or_default(),
            jiff::Timestamp::now(),
        ));
    }
    if let Some(note) = decision.new_latest {
        context
            .event(
                &context.reference(Kind::ImagePolicy, object),
                "NewLatestTag",
                note,
            )
            .await;
    }
    match decision.requeue {
        Requeue::AwaitChange => Ok(Action::await_change()),
        Requeue::After(wait) => Ok(Action::requeue(wait)),
        Requeue::Backoff(failure) => Err(ReconcileError::Failed(failure)),
    }
}

/// How far the I/O of a reconcile got: stopped early with an observation,
/// or as far as selecting from the stored tags.
enum Found {
    Early(Observed<'static>),
    Selected(Box<pipeline::StoredSelection>),
}

async fn observe(policy: &ImagePolicy, context: &Context) -> Result<Found, ReconcileError> {
    let Some(found) = repository_of(policy, context).await? else {
        return Ok(Found::Early(Observed::RepositoryMissing(
            pipeline::repository_of(policy),
        )));
    };
    let Ok(repository) = typed::<ImageRepository>(&found) else {
        return Ok(Found::Early(Observed::RepositoryInvalid(key_of(&found))));
    };
    if let Err(refused) = cross_namespace_access(policy, &repository, context).await? {
        return Ok(Found::Early(Observed::AccessDenied(refused)));
    }
    // The Secrets the selection reads: the repository's credentials, for
    // digests and the gate's manifests, in its namespace; `verify`'s keys
    // and trust root in the policy's own.
    let mut documents = vec![document(&repository), document(policy)];
    let repository_secrets: Vec<&str> = [
        &repository.spec.secret_ref,
        &repository.spec.cert_secret_ref,
    ]
    .into_iter()
    .flatten()
    .map(|r| r.name.as_str())
    .collect();
    let verify_secrets: Vec<&str> = policy
        .spec
        .verify
        .iter()
        .flat_map(|v| [&v.secret_ref, &v.trust_root_ref])
        .flatten()
        .chain(
            policy
                .spec
                .promotion
                .iter()
                .filter_map(|p| p.evidence.secret_ref.as_ref()),
        )
        .map(|r| r.name.as_str())
        .collect();
    documents.extend(
        context
            .secrets(
                crate::model::namespace_of(&repository.metadata),
                &repository_secrets,
            )
            .await?,
    );
    documents.extend(
        context
            .secrets(
                crate::model::namespace_of(&policy.metadata),
                &verify_secrets,
            )
            .await?,
    );
    let (objects, errors) = load(&documents);
    if let Some(message) = errors_for(&errors, &labelled(policy)) {
        return Ok(Found::Early(Observed::InvalidSpec(message)));
    }
    if objects.repositories.is_empty() {
        return Ok(Found::Early(Observed::RepositoryInvalid(key_of(
            &repository,
        ))));
    }
    let (Some(loaded_policy), Some(loaded_repository)) =
        (objects.policies.first(), objects.repositories.first())
    else {
        return Ok(Found::Early(Observed::InvalidSpec(format!(
            "{} did not load",
            labelled(policy)
        ))));
    };
    // Tags rolled back are in the status, which outlives the store (an
    // emptyDir): what the status holds is rejected here too.
    let key = key_of(policy);
    if let Some(rejected) = policy.status.as_ref().map(|s| &s.rejected)
        && !rejected.is_empty()
    {
        context
            .store
            .reject(&key, rejected)
            .map_err(|e| ReconcileError::Transient(e.to_string()))?;
    }
    // `spec.promotion`: the upstream's evidence, read now, over the
    // network only, into a cache of this policy's own.
    let evidence = match &loaded_policy.object.spec.promotion {
        None => Default::default(),
        Some(p) if !crate::git::network_url(&p.evidence.url) => {
            return Ok(Found::Early(Observed::InvalidSpec(format!(
                "{}: spec.promotion.evidence.url: hoist controller reaches git only over https://, http:// and ssh:// (or scp-style user@host:path)",
                labelled(policy)
            ))));
        }
        Some(_) => {
            use sha2::Digest;
            let hash = format!("{:x}", sha2::Sha256::digest(key.as_bytes()));
            let cache = context
                .options
                .state_dir
                .join("git")
                .join(format!("policy-{}", hash.get(..16).unwrap_or("policy")));
            pipeline::evidence::read_upstream(&objects, &context.git, &cache).await
        }
    };
    // Tags from the store only: scanning is the repository reconciler's.
    let options = ScanOptions {
        tags: TagFreshness::Stored,
        concurrency: 1,
        credentials: Arc::clone(&context.credentials),
        identities: Arc::clone(&context.identities),
        now: None,
        scanned_before: false,
        rescan: Default::default(),
        evidence,
    };
    let selection = pipeline::select_stored(
        &objects,
        &loaded_policy.object,
        &loaded_repository.object,
        &context.registry,
        &context.store,
        &options,
    )
    .await
    .map_err(|e| ReconcileError::Transient(e.to_string()))?;
    Ok(Found::Selected(Box::new(selection)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ReflectionPolicy, WaitingTag};
    use crate::pipeline::{ErrorClass, ErrorReport, PolicyRef};
    use crate::policy::Waiting;

    const NOW: i64 = 1_800_000_000;

    fn at(second: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(second).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
    }

    fn policy(latest: Option<&str>, reflect_always: bool) -> ImagePolicy {
        let mut policy: ImagePolicy = serde_json::from_value(serde_json::json!({
            "apiVersion": "hoist.dev/v1alpha1",
            "kind": "ImagePolicy",
            "metadata": {"name": "app", "namespace": "team", "generation": 3},
            "spec": {
                "imageRepositoryRef": {"name": "app"},
                "policy": {"semver": {"range": ">=1.0.0"}},
                "interval": "10m",
            }
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        if reflect_always {
            policy.spec.digest_reflection_policy = Some(ReflectionPolicy::Always);
        }
        policy.status = latest.map(|tag| ImagePolicyStatus {
            latest_ref: Some(image(tag)),
            ..ImagePolicyStatus::default()
        });
        policy
    }

    fn image(tag: &str) -> ImageRef {
        ImageRef {
            name: "localhost:5000/team/app".into(),
            tag: tag.into(),
            digest: None,
        }
    }

    fn row(tag: Option<&str>, waiting: Option<(&str, u64)>) -> PolicyRef {
        PolicyRef {
            policy: "team/app".into(),
            repository: "team/app".into(),
            image: "localhost:5000/team/app".into(),
            name: "localhost:5000/team/app".into(),
            tag: tag.map(Into::into),
            digest: None,
            tags: 4,
            waiting: waiting.map(|(tag, eligible_at)| Waiting {
                tag: tag.into(),
                eligible_at,
            }),
            verified: None,
            passed_over: Vec::new(),
            promoted: None,
            error: None,
        }
    }

    fn ready(decision: &PolicyDecision) -> (String, String) {
        decision
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == conditions::READY)
            .map(|c| (c.status.clone(), c.reason.clone()))
            .unwrap_or_default()
    }

    fn has(decision: &PolicyDecision, type_: &str) -> bool {
        decision
            .status
            .conditions
            .iter()
            .any(|c| c.type_ == type_ && c.status == "True")
    }

    #[test]
    fn each_observation_comes_to_its_status_event_and_requeue() {
        let eligible = u64::try_from(NOW).unwrap_or(0) + 90;
        let failure = ErrorReport {
            kind: "registry",
            class: ErrorClass::Retry,
            message: "digest of 1.2.0: connection refused".into(),
        };
        let new = row(Some("1.2.0"), None);
        let same = row(Some("1.1.0"), None);
        let held = row(Some("1.1.0"), Some(("1.3.0", eligible)));
        let young = row(None, Some(("1.3.0", eligible)));
        let none = row(None, None);
        let refused = crate::api::AccessRefused::NoAccessFrom {
            target: "ImageRepository other/app".into(),
        };
        // (what was observed, policy, Ready, reason, Stalled, latest tag,
        //  previous tag, NewLatestTag event, metric, requeue)
        type Row<'a> = (
            Observed<'a>,
            ImagePolicy,
            &'a str,
            &'a str,
            bool,
            Option<&'a str>,
            Option<&'a str>,
            bool,
            Option<&'a str>,
            Requeue,
        );
        let table: Vec<Row> = vec![
            (
                Observed::RepositoryMissing("team/app".into()),
                policy(Some("1.1.0"), false),
                "False",
                "DependencyNotReady",
                false,
                Some("1.1.0"),
                None,
                false,
                None,
                Requeue::AwaitChange,
            ),
            (
                Observed::AccessDenied(refused),
                policy(None, false),
                "False",
                "AccessDenied",
                true,
                None,
                None,
                false,
                Some("access_denied"),
                Requeue::AwaitChange,
            ),
            (
                Observed::InvalidSpec("spec.policy: no policy".into()),
                policy(None, false),
                "False",
                "InvalidSpec",
                true,
                None,
                None,
                false,
                Some("spec"),
                Requeue::AwaitChange,
            ),
            (
                Observed::RepositoryInvalid("team/app".into()),
                policy(None, false),
                "False",
                "DependencyNotReady",
                false,
                None,
                None,
                false,
                None,
                Requeue::AwaitChange,
            ),
            (
                Observed::NotScanned("not scanned yet".into()),
                policy(Some("1.1.0"), false),
                "False",
                "DependencyNotReady",
                false,
                Some("1.1.0"),
                None,
                false,
                None,
                Requeue::After(Duration::from_secs(5)),
            ),
            (
                Observed::DigestFailed(failure.clone()),
                policy(Some("1.1.0"), false),
                "False",
                "DigestFailed",
                false,
                Some("1.1.0"),
                None,
                false,
                None,
                Requeue::Backoff(failure),
            ),
            // A new tag: latest moves, the old one is kept, an Event.
            (
                Observed::Selected(&new),
                policy(Some("1.1.0"), false),
                "True",
                "Succeeded",
                false,
                Some("1.2.0"),
                Some("1.1.0"),
                true,
                None,
                Requeue::AwaitChange,
            ),
            // The same tag: no Event, nothing moves.
            (
                Observed::Selected(&same),
                policy(Some("1.1.0"), false),
                "True",
                "Succeeded",
                false,
                Some("1.1.0"),
                None,
                false,
                None,
                Requeue::AwaitChange,
            ),
            // Reflecting digests Always: back on the interval.
            (
                Observed::Selected(&same),
                policy(Some("1.1.0"), true),
                "True",
                "Succeeded",
                false,
                Some("1.1.0"),
                None,
                false,
                None,
                Requeue::After(Duration::from_secs(600)),
            ),
            // A newer tag held back by minimumAge: back when it matures,
            // sooner than the interval.
            (
                Observed::Selected(&held),
                policy(Some("1.1.0"), true),
                "True",
                "Succeeded",
                false,
                Some("1.1.0"),
                None,
                false,
                None,
                Requeue::After(Duration::from_secs(90)),
            ),
            // Every fitting tag too young: nothing is latest yet.
            (
                Observed::Selected(&young),
                policy(None, false),
                "False",
                "MinimumAge",
                false,
                None,
                None,
                false,
                None,
                Requeue::After(Duration::from_secs(90)),
            ),
            (
                Observed::Selected(&none),
                policy(Some("1.1.0"), false),
                "False",
                "NoMatchingTag",
                false,
                Some("1.1.0"),
                None,
                false,
                None,
                Requeue::AwaitChange,
            ),
        ];
        for (
            i,
            (observed, policy, ready_is, reason, stalled, latest, previous, event, metric, requeue),
        ) in table.into_iter().enumerate()
        {
            let decision = policy_status(&policy, super::super::Flavor::Hoist, observed, at(NOW));
            let case = format!("row {i}: {decision:?}");
            assert_eq!(ready(&decision), (ready_is.into(), reason.into()), "{case}");
            assert_eq!(has(&decision, conditions::STALLED), stalled, "{case}");
            assert_eq!(
                has(&decision, conditions::RECONCILING),
                reason == "DigestFailed",
                "{case}"
            );
            assert_eq!(
                decision.status.latest_ref.as_ref().map(|r| r.tag.as_str()),
                latest,
                "{case}"
            );
            assert_eq!(
                decision
                    .status
                    .observed_previous_ref
                    .as_ref()
                    .map(|r| r.tag.as_str()),
                previous,
                "{case}"
            );
            assert_eq!(decision.new_latest.is_some(), event, "{case}");
            assert_eq!(decision.error_reason, metric, "{case}");
            assert_eq!(decision.requeue, requeue, "{case}");
            assert_eq!(decision.status.observed_generation, Some(3), "{case}");
        }
    }

    #[test]
    fn a_waiting_tag_is_reported_and_cleared_once_adopted() {
        let eligible = u64::try_from(NOW).unwrap_or(0) + 90;
        let held = row(Some("1.1.0"), Some(("1.3.0", eligible)));
        let decision = policy_status(
            &policy(Some("1.1.0"), false),
            super::super::Flavor::Hoist,
            Observed::Selected(&held),
            at(NOW),
        );
        assert_eq!(
            decision.status.waiting,
            Some(WaitingTag {
                tag: "1.3.0".into(),
                eligible_at: at(NOW + 90).to_string(),
            })
        );
        let mut later = policy(Some("1.1.0"), false);
        later.status = Some(decision.status);
        let adopted = row(Some("1.3.0"), None);
        let decision = policy_status(
            &later,
            super::super::Flavor::Hoist,
            Observed::Selected(&adopted),
            at(NOW + 90),
        );
        assert_eq!(decision.status.waiting, None);
        assert_eq!(
            decision.new_latest.as_deref(),
            Some("latest image tag for localhost:5000/team/app resolved to 1.3.0 (was 1.1.0)")
        );
    }

    #[test]
    fn a_reconcile_request_is_handled_once_and_conditions_keep_their_transition_time() {
        let mut asked = policy(Some("1.1.0"), false);
        asked.metadata.annotations = Some(
            [(super::super::REQUESTED_AT.to_string(), "now-1".to_string())]
                .into_iter()
                .collect(),
        );
        let same = row(Some("1.1.0"), None);
        let first = policy_status(
            &asked,
            super::super::Flavor::Hoist,
            Observed::Selected(&same),
            at(NOW),
        );
        assert_eq!(
            first.status.last_handled_reconcile_at.as_deref(),
            Some("now-1")
        );
        asked.status = Some(first.status.clone());
        let second = policy_status(
            &asked,
            super::super::Flavor::Hoist,
            Observed::Selected(&same),
            at(NOW + 60),
        );
        // Nothing changed but time: the status is the same value, so the
        // reconciler's patch is skipped and no watch event follows.
        assert_eq!(second.status, first.status);
    }

    #[test]
    fn verification_comes_to_a_verified_condition_and_the_tags_passed_over() {
        let mut verifying = policy(Some("1.1.0"), false);
        verifying.spec.verify = Some(crate::api::VerifySpec {
            provider: "cosign".into(),
            secret_ref: Some(crate::api::LocalObjectReference {
                name: "keys".into(),
            }),
            match_oidc_identity: Vec::new(),
            trust_root_ref: None,
            attestations: Vec::new(),
        });
        let passed = crate::pipeline::PassedOver {
            tag: "1.3.0".into(),
            digest: Some("sha256:aa".into()),
            reason: crate::gate::Reason::Unsigned,
            message: "no cosign signature".into(),
        };
        let verified = |decision: &PolicyDecision| {
            decision
                .status
                .conditions
                .iter()
                .find(|c| c.type_ == conditions::VERIFIED)
                .map(|c| (c.status.clone(), c.message.clone()))
        };
        // 1.2.0 verified, 1.3.0 passed over: both said, and the policy
        // looks again on its interval for a signature pushed later.
        let mut selected = row(Some("1.2.0"), None);
        selected.verified = Some("key cosign.pub".into());
        selected.digest = Some("sha256:bb".into());
        selected.passed_over = vec![passed.clone()];
        let decision = policy_status(
            &verifying,
            super::super::Flavor::Hoist,
            Observed::Selected(&selected),
            at(NOW),
        );
        assert_eq!(ready(&decision), ("True".into(), "Succeeded".into()));
        assert_eq!(
            verified(&decision),
            Some((
                "True".into(),
                "1.2.0 (sha256:bb) is signed by key cosign.pub".into()
            ))
        );
        assert_eq!(decision.status.passed_over[0].reason, "unsigned");
        assert_eq!(decision.requeue, Requeue::After(Duration::from_secs(600)));
        // A later reconcile that fails before verifying leaves no
        // Verified=True standing.
        let mut again = verifying.clone();
        again.status = Some(decision.status.clone());
        let failed = policy_status(
            &again,
            super::super::Flavor::Hoist,
            Observed::NotScanned("not scanned yet".into()),
            at(NOW),
        );
        assert_eq!(
            verified(&failed).map(|(s, _)| s),
            Some("Unknown".to_string())
        );
        // Nothing passes: not ready, the latest ref kept, Verified False.
        let mut nothing = row(None, None);
        nothing.passed_over = vec![passed];
        let decision = policy_status(
            &verifying,
            super::super::Flavor::Hoist,
            Observed::Selected(&nothing),
            at(NOW),
        );
        assert_eq!(ready(&decision), ("False".into(), "NoVerifiedTag".into()));
        assert_eq!(decision.status.latest_ref, Some(image("1.1.0")));
        assert_eq!(
            verified(&decision).map(|(s, _)| s),
            Some("False".to_string())
        );
        assert_eq!(decision.requeue, Requeue::After(Duration::from_secs(600)));
        // Without verify, no Verified condition, even one left from before.
        let mut plain = policy(Some("1.1.0"), false);
        plain.status = Some(decision.status);
        let decision = policy_status(
            &plain,
            super::super::Flavor::Hoist,
            Observed::Selected(&row(Some("1.2.0"), None)),
            at(NOW),
        );
        assert_eq!(verified(&decision), None);
        assert!(decision.status.passed_over.is_empty());
    }
}
