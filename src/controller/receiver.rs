//! Receiver: serve each one at its secret path on `--webhook-addr`, and turn
//! the events it verifies into the flavour's `requestedAt` annotation on
//! the objects they name. Under `--flux` the Receivers are Flux's
//! (`notification.toolkit.fluxcd.io/v1`), served at Flux's path; only those
//! that trigger nothing but image objects are hoist's, the rest Flux's
//! notification-controller's.
//!
//! Every replica runs this, leader or standby: the Service sends webhooks to
//! any ready pod. The annotation is how a standby hands an event to the
//! leader, and it is the same request a person makes by hand.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Client, ResourceExt};

use super::conditions::{self, Outcome};
use super::{
    Flavor, Kind, MANAGER, ReconcileError, document, errors_for, key_of, labelled_object, load,
    now, write_status_to,
};
use crate::api::{Receiver, ReceiverStatus};
use crate::webhook::server::{Delivery, Endpoint, Endpoints};
use crate::webhook::targets::targets;

/// How often a Receiver's Secret is read again, so that a rotated token
/// takes effect without touching the Receiver.
const RESYNC: Duration = Duration::from_secs(60);

/// Where the flavour's Receivers are served.
pub fn receiver_resource(flavor: Flavor) -> ApiResource {
    let gvk = match flavor {
        Flavor::Hoist => GroupVersionKind::gvk(crate::api::GROUP, "v1alpha1", "Receiver"),
        Flavor::Flux => GroupVersionKind::gvk("notification.toolkit.fluxcd.io", "v1", "Receiver"),
    };
    ApiResource::from_gvk_with_plural(&gvk, "receivers")
}

/// What the Receiver reconciler and the event dispatcher share.
pub struct ReceiverContext {
    client: Client,
    flavor: Flavor,
    endpoints: Endpoints,
    /// The Receivers the reconciler's watch has seen: one deleted stops
    /// being served.
    receivers: kube::runtime::reflector::Store<DynamicObject>,
    /// Receivers (`ns/name`) reconciled at least once, served or not:
    /// readiness waits for all of them.
    reconciled: Mutex<HashSet<String>>,
    /// Whether the watch has listed every Receiver: until then the store
    /// is empty, and an absent Receiver proves nothing. Set by the first
    /// reconcile, since the controller reconciles only once its store is
    /// filled. (Not `Store::wait_until_ready`: kube-runtime 5 wakes only
    /// the last of several waiters, and the controller itself is one.)
    listed: std::sync::atomic::AtomicBool,
}

impl ReceiverContext {
    pub fn new(
        client: Client,
        flavor: Flavor,
        endpoints: Endpoints,
        receivers: kube::runtime::reflector::Store<DynamicObject>,
    ) -> ReceiverContext {
        ReceiverContext {
            client,
            flavor,
            endpoints,
            receivers,
            reconciled: Mutex::default(),
            listed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The watched Receiver `receiver` came from, as it is now.
    fn current(&self, receiver: &Receiver) -> Option<Arc<DynamicObject>> {
        let name = receiver.metadata.name.as_deref().unwrap_or_default();
        let namespace = crate::model::namespace_of(&receiver.metadata);
        self.receivers
            .get(&ObjectRef::new_with(name, receiver_resource(self.flavor)).within(namespace))
    }

    /// Whether `receiver` is gone from a watch that has listed everything.
    fn gone(&self, receiver: &Receiver) -> bool {
        self.listed.load(std::sync::atomic::Ordering::Relaxed) && self.current(receiver).is_none()
    }

    /// Waits, at most `limit`, until each of `receivers` (`ns/name`, listed
    /// by the caller) has been reconciled once, so that a new replica
    /// answers for every Receiver before it reports ready.
    pub async fn wait_served(&self, receivers: &[String], limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            let done = self
                .reconciled
                .lock()
                .map_or(true, |seen| receivers.iter().all(|r| seen.contains(r)));
            if done {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tracing::warn!("not every Receiver was served within {limit:?}; ready anyway");
    }

    /// Stops serving Receivers that are gone from the watch (deleted, or
    /// out of its namespace or labels).
    pub fn forget_deleted(&self) {
        if !self.listed.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let live: HashSet<String> = self
            .receivers
            .state()
            .iter()
            .map(|r| key_of(&**r))
            .collect();
        self.endpoints.retain(|key| live.contains(key));
    }
}

/// Every line logged while reconciling carries the object's key.
#[tracing::instrument(skip_all, fields(object = %super::key_of(&*object)))]
pub async fn reconcile(
    object: Arc<DynamicObject>,
    context: Arc<ReceiverContext>,
) -> Result<Action, ReconcileError> {
    context
        .listed
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let key = key_of(&*object);
    let result = serve(&object, &key, &context).await;
    if let Ok(mut seen) = context.reconciled.lock() {
        seen.insert(key);
    }
    result
}

/// Whether a Flux Receiver triggers nothing but image objects, and so is
/// hoist's to serve: one that also triggers a GitRepository or a
/// Kustomization is Flux's notification-controller's.
fn only_image_objects(object: &DynamicObject) -> bool {
    let resources = object
        .data
        .pointer("/spec/resources")
        .and_then(serde_json::Value::as_array);
    resources.is_some_and(|list| {
        !list.is_empty()
            && list.iter().all(|r| {
                let group = r["apiVersion"]
                    .as_str()
                    .map(|v| v.split_once('/').map_or(v, |(g, _)| g));
                matches!(
                    r["kind"].as_str(),
                    Some("ImageRepository" | "ImageUpdateAutomation")
                ) && group.is_none_or(|g| g == crate::api::FLUX_IMAGE_GROUP)
            })
    })
}

/// The watched object as hoist's Receiver, read by the loader as files
/// are, or the loader's words for why it is not one.
fn read(object: &DynamicObject) -> Result<Receiver, String> {
    let label = labelled_object(object);
    let (objects, errors) = load(&[document(object)]);
    if let Some(message) = errors_for(&errors, &label) {
        return Err(message);
    }
    let mut receiver = objects
        .receivers
        .into_iter()
        .next()
        .map(|loaded| loaded.object)
        .ok_or_else(|| format!("{label} names nothing hoist triggers"))?;
    receiver.metadata = object.metadata.clone();
    Ok(receiver)
}

/// The status in the flavour's shape: Flux's carries the request handled.
fn status_value(
    flavor: Flavor,
    object: &DynamicObject,
    status: &ReceiverStatus,
) -> serde_json::Value {
    let mut value = serde_json::to_value(status).unwrap_or_default();
    if flavor == Flavor::Flux
        && let Some(asked) = object.annotations().get(super::kinds::FLUX_REQUESTED_AT)
        && let Some(map) = value.as_object_mut()
    {
        map.insert("lastHandledReconcileAt".into(), asked.clone().into());
    }
    value
}

async fn serve(
    object: &DynamicObject,
    key: &str,
    context: &ReceiverContext,
) -> Result<Action, ReconcileError> {
    context.forget_deleted();
    if context.flavor == Flavor::Flux && !only_image_objects(object) {
        // Not hoist's: no status of ours either, so the two never contend.
        context.endpoints.remove(key);
        tracing::debug!("triggers more than image objects: left to Flux's notification-controller");
        return Ok(Action::await_change());
    }
    let resource = receiver_resource(context.flavor);
    let namespace = crate::model::namespace_of(&object.metadata).to_string();
    let mut status: ReceiverStatus = object
        .data
        .get("status")
        .and_then(|s| serde_json::from_value(s.clone()).ok())
        .unwrap_or_default();
    let generation = object.metadata.generation;
    let finish = |status: &mut ReceiverStatus, outcome: &Outcome| {
        conditions::apply(&mut status.conditions, outcome, generation, &now());
        status.observed_generation = generation;
    };
    let write = |status: &ReceiverStatus| {
        let value = status_value(context.flavor, object, status);
        write_status_to(&context.client, &resource, object, value)
    };

    let receiver = match read(object) {
        Ok(receiver) => receiver,
        Err(message) => {
            context.endpoints.remove(key);
            status.webhook_path = None;
            finish(&mut status, &Outcome::stalled("InvalidSpec", message));
            write(&status).await?;
            return Ok(Action::await_change());
        }
    };
    let secret = &receiver.spec.secret_ref.name;
    let secrets: Api<Secret> = Api::namespaced(context.client.clone(), &namespace);
    let token = match secrets.get_opt(secret).await {
        Ok(found) => found.and_then(|s| s.data?.remove("token")).map(|t| t.0),
        Err(e) => {
            // Serve nothing rather than an old spec with an old token.
            context.endpoints.remove(key);
            return Err(e.into());
        }
    };
    let token = match crate::webhook::receiver_token(&receiver, token.as_deref()) {
        Ok(token) => token.to_vec(),
        Err(refused) => {
            // Without a usable token a Receiver verifies nothing: stop
            // serving it.
            context.endpoints.remove(key);
            status.webhook_path = None;
            finish(
                &mut status,
                &Outcome::retrying("SecretNotFound", refused.to_string()),
            );
            write(&status).await?;
            return Ok(Action::requeue(Duration::from_secs(10)));
        }
    };
    let suspended = receiver.spec.suspend;
    let path = context.endpoints.insert(Endpoint::new(receiver, token));
    // The path is a credential for senders that sign nothing: it is in
    // status.webhookPath for whoever may read the Receiver, and not
    // repeated in Events, which travel further. Flux's own message names
    // it, and a Receiver Flux's notification-controller also reconciles
    // gets the same words from both.
    let (reason, message) = match (context.flavor, suspended) {
        (_, true) => (
            "Serving",
            "suspended: requests are answered and trigger nothing".to_string(),
        ),
        (Flavor::Hoist, false) => ("Serving", "serving at status.webhookPath".to_string()),
        (Flavor::Flux, false) => (
            "Succeeded",
            format!("Receiver initialized for path: {path}"),
        ),
    };
    status.webhook_path = Some(path);
    finish(&mut status, &Outcome::ready(reason, message));
    write(&status).await?;
    Ok(Action::requeue(RESYNC))
}

pub fn error_policy(
    object: Arc<DynamicObject>,
    error: &ReconcileError,
    _: Arc<ReceiverContext>,
) -> Action {
    tracing::warn!(object = %labelled_object(&object), "{error}");
    Action::requeue(Duration::from_secs(10))
}

/// Acts on merged deliveries until the channel closes: each one's targets
/// get a new `requestedAt`.
pub async fn dispatch(
    mut merged: tokio::sync::mpsc::UnboundedReceiver<Delivery>,
    context: Arc<ReceiverContext>,
) {
    while let Some(first) = merged.recv().await {
        // What piled up while the last deliveries were handled (a slow API
        // server) is handled once per Receiver.
        let batch = crate::webhook::batch(first, &mut merged);
        for delivery in batch {
            handle(&context, delivery).await;
        }
    }
}

/// Hands one merged delivery on to the objects it names.
async fn handle(context: &ReceiverContext, delivery: Delivery) {
    let key = delivery.endpoint.key();
    // The Receiver as it is now: deleted, suspended or re-scoped since the
    // request was verified.
    if context.gone(&delivery.endpoint.receiver) {
        context.forget_deleted();
        return;
    }
    let receiver = context
        .current(&delivery.endpoint.receiver)
        .and_then(|object| read(&object).ok())
        .unwrap_or_else(|| delivery.endpoint.receiver.clone());
    if receiver.spec.suspend {
        return;
    }
    request(context, &receiver, &key, &delivery.event).await;
}

/// Retries `call` on failures other than 404: 3 tries, 1 s and 2 s apart.
/// None when the object is not there or every try failed (logged).
async fn retried<T, F, Fut>(what: &str, mut call: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    for attempt in 1..=3u32 {
        match call().await {
            Ok(value) => return Some(value),
            Err(kube::Error::Api(e)) if e.code == 404 => return None,
            Err(e) => {
                tracing::warn!(attempt, "webhook: {what}: {e}");
                if attempt < 3 {
                    tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
                }
            }
        }
    }
    None
}

/// Finds what `event` names and asks for a reconcile of each: always anew,
/// since a reconcile already running may have listed the registry before
/// this push (a Receiver's deliveries are a second apart, so this is at
/// most one write per object per second). A failure on one object does not
/// keep the others from their turn.
async fn request(
    context: &ReceiverContext,
    receiver: &Receiver,
    key: &str,
    event: &crate::webhook::Event,
) {
    let client = &context.client;
    let namespace = crate::model::namespace_of(&receiver.metadata).to_string();
    let flavor = context.flavor;
    let repositories_api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &namespace,
        &flavor.resource(Kind::ImageRepository),
    );
    let automations_api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &namespace,
        &flavor.resource(Kind::ImageUpdateAutomation),
    );
    // The objects a Receiver may trigger: those it lists, else those in its
    // namespace (listed only when the event names something of that kind).
    let mut repositories = Vec::new();
    let mut automations = Vec::new();
    if receiver.spec.resources.is_empty() {
        let params = ListParams::default();
        if !event.images.is_empty() {
            repositories = retried("listing ImageRepositories", || {
                repositories_api.list(&params)
            })
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        }
        if !event.repositories.is_empty() {
            automations = retried("listing ImageUpdateAutomations", || {
                automations_api.list(&params)
            })
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        }
    } else {
        for resource in &receiver.spec.resources {
            let name = resource.name.as_str();
            match resource.kind.as_str() {
                "ImageRepository" => repositories.extend(
                    retried("reading an ImageRepository", || {
                        repositories_api.get_opt(name)
                    })
                    .await
                    .flatten(),
                ),
                _ => automations.extend(
                    retried("reading an ImageUpdateAutomation", || {
                        automations_api.get_opt(name)
                    })
                    .await
                    .flatten(),
                ),
            }
        }
    }
    let wanted = targets(receiver, event, &repositories, &automations);
    if wanted.is_empty() {
        tracing::info!(
            receiver = key,
            images = ?event.images,
            repositories = ?event.repositories,
            "webhook: names nothing this Receiver may trigger"
        );
    }
    let annotation = flavor.requested_at();
    ask(
        &repositories_api,
        &repositories,
        &wanted.repositories,
        annotation,
        key,
    )
    .await;
    ask(
        &automations_api,
        &automations,
        &wanted.automations,
        annotation,
        key,
    )
    .await;
}

/// Sets the `requestedAt` `annotation` on each of `objects` that `wanted`
/// holds.
async fn ask(
    api: &Api<DynamicObject>,
    objects: &[DynamicObject],
    wanted: &std::collections::BTreeSet<String>,
    annotation: &str,
    receiver: &str,
) {
    // Nanoseconds: two events in one second still differ.
    let at = jiff::Timestamp::now().to_string();
    let patch = Patch::Merge(serde_json::json!({"metadata": {"annotations": {annotation: at}}}));
    let params = PatchParams {
        field_manager: Some(MANAGER.to_string()),
        ..PatchParams::default()
    };
    for object in objects {
        let target = labelled_object(object);
        if !wanted.contains(&key_of(object)) {
            continue;
        }
        let name = object.name_any();
        if retried(&format!("requesting a reconcile of {target}"), || {
            api.patch(&name, &params, &patch)
        })
        .await
        .is_some()
        {
            tracing::info!(receiver, object = %target, "webhook: reconcile requested");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flux_receiver(resources: serde_json::Value) -> DynamicObject {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "notification.toolkit.fluxcd.io/v1",
            "kind": "Receiver",
            "metadata": {"name": "hook", "namespace": "flux-system",
                         "annotations": {super::super::kinds::FLUX_REQUESTED_AT: "now"}},
            "spec": {"type": "generic", "secretRef": {"name": "token"}, "resources": resources}
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn only_receivers_of_image_objects_are_hoist_s_and_flux_s_status_records_the_request() {
        let image = serde_json::json!({"apiVersion": "image.toolkit.fluxcd.io/v1",
            "kind": "ImageRepository", "name": "app"});
        let bare = serde_json::json!({"kind": "ImageUpdateAutomation", "name": "fleet"});
        let source = serde_json::json!({"kind": "GitRepository", "name": "fleet"});
        let other_group = serde_json::json!({"apiVersion": "example.com/v1", "kind": "ImageRepository", "name": "x"});
        assert!(only_image_objects(&flux_receiver(serde_json::json!([
            image, bare
        ]))));
        assert!(!only_image_objects(&flux_receiver(serde_json::json!([
            image, source
        ]))));
        assert!(!only_image_objects(&flux_receiver(serde_json::json!([
            other_group
        ]))));
        assert!(!only_image_objects(&flux_receiver(serde_json::json!([]))));

        let object = flux_receiver(serde_json::json!([image]));
        let status = ReceiverStatus {
            webhook_path: Some("/hook/abc".into()),
            ..ReceiverStatus::default()
        };
        let flux = status_value(Flavor::Flux, &object, &status);
        assert_eq!(flux["lastHandledReconcileAt"], "now");
        assert_eq!(flux["webhookPath"], "/hook/abc");
        assert!(
            status_value(Flavor::Hoist, &object, &status)
                .get("lastHandledReconcileAt")
                .is_none()
        );
        // The loader reads it as hoist's Receiver, served at Flux's path.
        let receiver = read(&object).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(receiver.spec.origin, crate::api::ReceiverOrigin::Flux);
    }
}
