//! Objects as the loader reads them, and their status as hoist writes
//! it: a status patch only when it changed.

use super::*;

/// A Secret as the loader reads it from files.
pub(super) fn secret_document(secret: &Secret) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": secret.name_any(), "namespace": secret.namespace()},
        "type": secret.type_,
        "data": secret.data,
    })
}

/// An object as the loader reads it: identity, labels, annotations and
/// spec; no status, no server bookkeeping.
pub(super) fn document<K: Resource + Serialize>(object: &K) -> serde_json::Value {
    let mut value = serde_json::to_value(object).unwrap_or_default();
    let meta = object.meta();
    value["metadata"] = serde_json::json!({
        "name": meta.name,
        "namespace": meta.namespace,
        "labels": meta.labels,
        "annotations": meta.annotations,
    });
    if let Some(map) = value.as_object_mut() {
        map.remove("status");
    }
    value
}

/// Loads cluster objects through the file loader: the same types and
/// checks, the same messages.
pub(super) fn load(documents: &[serde_json::Value]) -> (ObjectSet, Vec<LoadError>) {
    let text: String = documents.iter().map(|d| format!("---\n{d}\n")).collect();
    let mut set = ObjectSet::default();
    let mut errors = Vec::new();
    crate::load::load_text(Path::new("cluster"), &text, true, &mut set, &mut errors);
    crate::load::finish(&mut set, &mut errors);
    (set, errors)
}

/// The loader's errors about one object, as `field: message` lines.
pub(super) fn errors_for(errors: &[LoadError], object: &str) -> Option<String> {
    let lines: Vec<String> = errors
        .iter()
        .filter_map(|e| match e {
            LoadError::Invalid {
                object: o,
                field,
                message,
                ..
            } if o == object => Some(format!("{field}: {message}")),
            LoadError::Invalid { .. } => None,
            other => Some(other.to_string()),
        })
        .collect();
    (!lines.is_empty()).then(|| lines.join("; "))
}

/// `Kind ns/name`: how logs, metrics and backoff name an object.
pub(super) fn labelled<K: Resource<DynamicType = ()>>(object: &K) -> String {
    format!("{} {}", K::kind(&()), key_of(object))
}

/// `Kind ns/name` of a watched object, whichever its flavour.
pub(super) fn labelled_object(object: &DynamicObject) -> String {
    let kind = object.types.as_ref().map_or("", |t| t.kind.as_str());
    format!("{kind} {}", key_of(object))
}

/// What every reconciler does on a failure: back off, 5 s doubling to
/// 5 min per object, and log why.
pub(super) fn error_policy(
    object: Arc<DynamicObject>,
    error: &ReconcileError,
    context: Arc<Context>,
) -> Action {
    let key = labelled_object(&object);
    let wait = context.failed(&key);
    match error {
        // No answer at all: say which server, since kube's error does not.
        ReconcileError::Kube(e) if !matches!(e, kube::Error::Api(_)) => tracing::warn!(
            object = %key,
            server = %context.options.sync.server(),
            retry_in = wait.as_secs(),
            "{error}"
        ),
        _ => tracing::warn!(object = %key, retry_in = wait.as_secs(), "{error}"),
    }
    Action::requeue(wait)
}

/// `ns/name`
pub(super) fn key_of<K: Resource>(object: &K) -> String {
    crate::model::ObjectKey::of(object.meta()).to_string()
}

/// Now, to the second: what conditions and status times carry.
pub(super) fn now() -> Time {
    Time(
        jiff::Timestamp::from_second(jiff::Timestamp::now().as_second())
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH),
    )
}

/// Writes `status` (of `kind`, in the flavour's shape) when it differs
/// from what the object has.
pub(super) async fn write_status(
    context: &Context,
    kind: Kind,
    object: &DynamicObject,
    status: serde_json::Value,
) -> Result<(), ReconcileError> {
    let resource = context.options.flavor.resource(kind);
    write_status_to(&context.client, &resource, object, status).await
}

/// Writes `status` to `object`, served as `resource`, when it differs
/// from what the object has.
pub(super) async fn write_status_to(
    client: &Client,
    resource: &ApiResource,
    object: &DynamicObject,
    status: serde_json::Value,
) -> Result<(), ReconcileError> {
    if object.data.get("status") == Some(&status) {
        return Ok(());
    }
    let api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        crate::model::namespace_of(&object.metadata),
        resource,
    );
    let patch = serde_json::json!({
        "apiVersion": resource.api_version,
        "kind": resource.kind,
        "status": status,
    });
    api.patch_status(
        &object.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

/// An object that does not read into hoist's type (a Flux field holding
/// a value hoist does not know): Stalled, with the loader's words for it,
/// and the rest of its status as it was.
pub(super) async fn refuse_unreadable(
    context: &Context,
    kind: Kind,
    object: &DynamicObject,
    error: String,
) -> Result<Action, ReconcileError> {
    let object_name = labelled_object(object);
    let (_, errors) = load(&[document(object)]);
    let message = errors_for(&errors, &object_name).unwrap_or(error);
    context.metrics.reconcile_error(kind.name(), "spec");
    let mut status = object
        .data
        .get("status")
        .cloned()
        .filter(serde_json::Value::is_object)
        .unwrap_or_else(|| serde_json::json!({}));
    let mut conditions: crate::api::Conditions = status
        .get("conditions")
        .and_then(|c| serde_json::from_value(c.clone()).ok())
        .unwrap_or_default();
    let generation = object.metadata.generation;
    conditions::apply(
        &mut conditions,
        &conditions::Outcome::stalled("InvalidSpec", message),
        generation,
        &now(),
    );
    status["conditions"] = serde_json::to_value(&conditions).unwrap_or_default();
    if let Some(generation) = generation {
        status["observedGeneration"] = generation.into();
    }
    write_status(context, kind, object, status).await?;
    Ok(Action::await_change())
}

/// The flavour's requestedAt annotation (`annotation`), if it asks for
/// something not yet handled.
pub(super) fn requested<K: Resource>(
    object: &K,
    annotation: &str,
    handled: Option<&String>,
) -> Option<String> {
    let value = object.annotations().get(annotation)?;
    (Some(value) != handled).then(|| value.clone())
}
