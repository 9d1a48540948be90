//! Receiver: serve each one at its secret path on `--webhook-addr`, and turn
//! the events it verifies into `reconcile.hoist.dev/requestedAt` on the
//! objects they name.
//!
//! Every replica runs this, leader or standby: the Service sends webhooks to
//! any ready pod. The annotation is how a standby hands an event to the
//! leader, and it is the same request a person makes by hand.

use std::sync::Arc;
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
    pub client: Client,
    pub endpoints: Endpoints,
    /// The Receivers the reconciler's watch has seen: one deleted stops
    /// being served.
    pub receivers: kube::runtime::reflector::Store<Receiver>,
}

pub async fn reconcile(
    receiver: Arc<Receiver>,
    context: Arc<ReceiverContext>,
) -> Result<Action, ReconcileError> {
    forget_deleted(&context);
    let key = key_of(&*receiver);
    let namespace = receiver.namespace().unwrap_or_else(|| "default".into());
    let current = receiver.status.clone();
    let mut status = current.clone().unwrap_or_default();
    let generation = receiver.metadata.generation;
    let finish = |status: &mut ReceiverStatus, outcome: &Outcome| {
        conditions::apply(&mut status.conditions, outcome, generation, &now());
        status.observed_generation = generation;
    };

    let (_, errors) = load(&[document(&*receiver)]);
    if let Some(message) = errors_for(&errors, &labelled(&*receiver)) {
        context.endpoints.remove(&key);
        status.webhook_path = None;
        finish(&mut status, &Outcome::stalled("InvalidSpec", message));
        patch_status(&context.client, &*receiver, current.as_ref(), &status).await?;
        return Ok(Action::await_change());
    }
    let secret = &receiver.spec.secret_ref.name;
    let secrets: Api<Secret> = Api::namespaced(context.client.clone(), &namespace);
    let token = secrets
        .get_opt(secret)
        .await?
        .and_then(|s| s.data?.remove("token"))
        .map(|t| t.0)
        .filter(|t| !t.trim_ascii().is_empty());
    let Some(token) = token else {
        // Without its token a Receiver verifies nothing: stop serving it.
        context.endpoints.remove(&key);
        status.webhook_path = None;
        let message = format!(
            "spec.secretRef: Secret {namespace}/{secret} with a non-empty key `token` not found"
        );
        finish(&mut status, &Outcome::retrying("SecretNotFound", &message));
        patch_status(&context.client, &*receiver, current.as_ref(), &status).await?;
        return Ok(Action::requeue(Duration::from_secs(10)));
    };
    let path = context
        .endpoints
        .insert(Endpoint::new((*receiver).clone(), token));
    let message = if receiver.spec.suspend {
        format!("suspended: {path} answers and triggers nothing")
    } else {
        format!("serving at {path}")
    };
    status.webhook_path = Some(path);
    finish(&mut status, &Outcome::ready("Serving", message));
    patch_status(&context.client, &*receiver, current.as_ref(), &status).await?;
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

/// Stops serving Receivers that are gone from the watch.
fn forget_deleted(context: &ReceiverContext) {
    let live: std::collections::HashSet<String> = context
        .receivers
        .state()
        .iter()
        .map(|r| key_of(&**r))
        .collect();
    context.endpoints.retain(|key| live.contains(key));
}

/// Acts on merged deliveries until the channel closes: each one's targets
/// get a new `requestedAt`.
pub async fn dispatch(
    mut merged: tokio::sync::mpsc::UnboundedReceiver<Delivery>,
    context: Arc<ReceiverContext>,
) {
    while let Some(delivery) = merged.recv().await {
        let receiver = &delivery.endpoint.receiver;
        if context
            .receivers
            .get(&ObjectRef::from_obj(receiver))
            .is_none()
        {
            forget_deleted(&context);
            continue;
        }
        if let Err(e) = request(&context.client, &delivery).await {
            tracing::warn!(receiver = %delivery.endpoint.key(), "webhook: {e}");
        }
    }
}

/// Finds what `delivery` names and asks for a reconcile of each.
async fn request(client: &Client, delivery: &Delivery) -> Result<(), kube::Error> {
    let receiver = &delivery.endpoint.receiver;
    let namespace = receiver.namespace().unwrap_or_else(|| "default".into());
    // The objects a Receiver may trigger: those it lists, else its
    // namespace's.
    let mut repositories = Vec::new();
    let mut automations = Vec::new();
    if receiver.spec.resources.is_empty() {
        let params = ListParams::default();
        repositories = Api::<ImageRepository>::namespaced(client.clone(), &namespace)
            .list(&params)
            .await?
            .items;
        automations = Api::<ImageUpdateAutomation>::namespaced(client.clone(), &namespace)
            .list(&params)
            .await?
            .items;
    } else {
        for resource in &receiver.spec.resources {
            let ns = resource.namespace.as_deref().unwrap_or(&namespace);
            match resource.kind.as_str() {
                "ImageRepository" => repositories.extend(
                    Api::<ImageRepository>::namespaced(client.clone(), ns)
                        .get_opt(&resource.name)
                        .await?,
                ),
                _ => automations.extend(
                    Api::<ImageUpdateAutomation>::namespaced(client.clone(), ns)
                        .get_opt(&resource.name)
                        .await?,
                ),
            }
        }
    }
    let wanted = targets(receiver, &delivery.event, &repositories, &automations);
    if wanted.is_empty() {
        tracing::info!(
            receiver = %delivery.endpoint.key(),
            images = ?delivery.event.images,
            repositories = ?delivery.event.repositories,
            "webhook: names nothing this Receiver may trigger"
        );
    }
    // Nanoseconds: two events in one second still differ.
    let at = jiff::Timestamp::now().to_string();
    let patch = serde_json::json!({"metadata": {"annotations": {REQUESTED_AT: at}}});
    let params = PatchParams {
        field_manager: Some(MANAGER.to_string()),
        ..PatchParams::default()
    };
    for key in &wanted.repositories {
        let (ns, name) = key.split_once('/').unwrap_or(("default", key));
        Api::<ImageRepository>::namespaced(client.clone(), ns)
            .patch(name, &params, &Patch::Merge(&patch))
            .await?;
        tracing::info!(receiver = %delivery.endpoint.key(), repository = %key, "webhook: scan requested");
    }
    for key in &wanted.automations {
        let (ns, name) = key.split_once('/').unwrap_or(("default", key));
        Api::<ImageUpdateAutomation>::namespaced(client.clone(), ns)
            .patch(name, &params, &Patch::Merge(&patch))
            .await?;
        tracing::info!(receiver = %delivery.endpoint.key(), automation = %key, "webhook: run requested");
    }
    Ok(())
}
