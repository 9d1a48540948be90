//! Receiver: serve each one at its secret path on `--webhook-addr`, and turn
//! the events it verifies into `reconcile.hoist.dev/requestedAt` on the
//! objects they name.
//!
//! Every replica runs this, leader or standby: the Service sends webhooks to
//! any ready pod. The annotation is how a standby hands an event to the
//! leader, and it is the same request a person makes by hand.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Client, ResourceExt};

use super::conditions::{self, Outcome};
use super::{
    MANAGER, REQUESTED_AT, ReconcileError, document, errors_for, key_of, labelled, load, now,
    patch_status,
};
use crate::api::{ImageRepository, ImageUpdateAutomation, Receiver, ReceiverStatus};
use crate::webhook::server::{Delivery, Endpoint, Endpoints};
use crate::webhook::targets::targets;

/// How often a Receiver's Secret is read again, so that a rotated token
/// takes effect without touching the Receiver.
const RESYNC: Duration = Duration::from_secs(60);

/// What the Receiver reconciler and the event dispatcher share.
pub struct ReceiverContext {
    client: Client,
    endpoints: Endpoints,
    /// The Receivers the reconciler's watch has seen: one deleted stops
    /// being served.
    receivers: kube::runtime::reflector::Store<Receiver>,
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
        endpoints: Endpoints,
        receivers: kube::runtime::reflector::Store<Receiver>,
    ) -> ReceiverContext {
        ReceiverContext {
            client,
            endpoints,
            receivers,
            reconciled: Mutex::default(),
            listed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Whether `receiver` is gone from a watch that has listed everything.
    fn gone(&self, receiver: &Receiver) -> bool {
        self.listed.load(std::sync::atomic::Ordering::Relaxed)
            && self.receivers.get(&ObjectRef::from_obj(receiver)).is_none()
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
#[tracing::instrument(skip_all, fields(object = %super::key_of(&*receiver)))]
pub async fn reconcile(
    receiver: Arc<Receiver>,
    context: Arc<ReceiverContext>,
) -> Result<Action, ReconcileError> {
    context
        .listed
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let key = key_of(&*receiver);
    let result = serve(&receiver, &key, &context).await;
    if let Ok(mut seen) = context.reconciled.lock() {
        seen.insert(key);
    }
    result
}

async fn serve(
    receiver: &Receiver,
    key: &str,
    context: &ReceiverContext,
) -> Result<Action, ReconcileError> {
    context.forget_deleted();
    let namespace = crate::model::namespace_of(&receiver.metadata).to_string();
    let current = receiver.status.clone();
    let mut status = current.clone().unwrap_or_default();
    let generation = receiver.metadata.generation;
    let finish = |status: &mut ReceiverStatus, outcome: &Outcome| {
        conditions::apply(&mut status.conditions, outcome, generation, &now());
        status.observed_generation = generation;
    };

    let (_, errors) = load(&[document(receiver)]);
    if let Some(message) = errors_for(&errors, &labelled(receiver)) {
        context.endpoints.remove(key);
        status.webhook_path = None;
        finish(&mut status, &Outcome::stalled("InvalidSpec", message));
        patch_status(&context.client, receiver, current.as_ref(), &status).await?;
        return Ok(Action::await_change());
    }
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
    let token = match crate::webhook::receiver_token(receiver, token.as_deref()) {
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
            patch_status(&context.client, receiver, current.as_ref(), &status).await?;
            return Ok(Action::requeue(Duration::from_secs(10)));
        }
    };
    let path = context
        .endpoints
        .insert(Endpoint::new(receiver.clone(), token));
    // The path is a credential for senders that sign nothing: it is in
    // status.webhookPath for whoever may read the Receiver, and not
    // repeated in messages that travel further.
    let message = if receiver.spec.suspend {
        "suspended: requests are answered and trigger nothing"
    } else {
        "serving at status.webhookPath"
    };
    status.webhook_path = Some(path);
    finish(&mut status, &Outcome::ready("Serving", message));
    patch_status(&context.client, receiver, current.as_ref(), &status).await?;
    Ok(Action::requeue(RESYNC))
}

pub fn error_policy(
    receiver: Arc<Receiver>,
    error: &ReconcileError,
    _: Arc<ReceiverContext>,
) -> Action {
    tracing::warn!(object = %labelled(&*receiver), "{error}");
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
        .receivers
        .get(&ObjectRef::from_obj(&delivery.endpoint.receiver))
        .unwrap_or_else(|| Arc::new(delivery.endpoint.receiver.clone()));
    if receiver.spec.suspend {
        return;
    }
    request(&context.client, &receiver, &key, &delivery.event).await;
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
async fn request(client: &Client, receiver: &Receiver, key: &str, event: &crate::webhook::Event) {
    let namespace = crate::model::namespace_of(&receiver.metadata).to_string();
    let repositories_api = Api::<ImageRepository>::namespaced(client.clone(), &namespace);
    let automations_api = Api::<ImageUpdateAutomation>::namespaced(client.clone(), &namespace);
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
    ask(&repositories_api, &repositories, &wanted.repositories, key).await;
    ask(&automations_api, &automations, &wanted.automations, key).await;
}

/// Sets `requestedAt` on each of `objects` that `wanted` holds.
async fn ask<K>(
    api: &Api<K>,
    objects: &[K],
    wanted: &std::collections::BTreeSet<String>,
    receiver: &str,
) where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    // Nanoseconds: two events in one second still differ.
    let at = jiff::Timestamp::now().to_string();
    let patch = Patch::Merge(serde_json::json!({"metadata": {"annotations": {REQUESTED_AT: at}}}));
    let params = PatchParams {
        field_manager: Some(MANAGER.to_string()),
        ..PatchParams::default()
    };
    for object in objects {
        let target = labelled(object);
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
