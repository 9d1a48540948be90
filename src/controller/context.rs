//! What every reconciler shares: the client, the caches, the store and
//! registry, metrics, Events, and the per-object backoff.

use super::*;

/// What every reconciler shares.
pub struct Context {
    pub(super) client: Client,
    pub(super) options: Options,
    pub(super) store: Store,
    pub(super) registry: Registry,
    pub(super) credentials: Arc<DockerConfig>,
    /// Cloud identities for `spec.provider`: hoist's own (the pod's
    /// workload identity), their tokens cached for the process.
    pub(super) identities: Arc<crate::registry::identity::Identities>,
    pub(super) git: Git,
    pub(super) recorder: Recorder,
    /// The watched ImageRepositories and ImagePolicies, of the flavour's
    /// group (read them with `kinds::typed`).
    pub(super) repositories: kube::runtime::reflector::Store<DynamicObject>,
    pub(super) policies: kube::runtime::reflector::Store<DynamicObject>,
    /// Whether the ImagePolicy cache is filled: set by the first policy
    /// reconcile (the controller reconciles only once its cache is), or
    /// after a while when there are none. Not `Store::wait_until_ready`:
    /// kube-runtime 5 wakes only the last of several waiters, and the
    /// policy controller itself waits on that store, so a second waiter
    /// could stall it or the automations.
    pub(super) policies_listed: std::sync::atomic::AtomicBool,
    /// The latest refs each suspended automation last said it saw.
    pub(super) suspended: Changes<Vec<String>>,
    pub(super) started: std::time::Instant,
    /// Failures in a row per object (`kind ns/name`), for backoff.
    pub(super) failures: Mutex<HashMap<String, u32>>,
    pub(super) metrics: Arc<metrics::Metrics>,
    /// Where the reconcilers' events go to the cluster's Alerts.
    pub(super) notifier: crate::notify::Notifier,
}

impl Context {
    /// Where `kind` is served, for this controller's flavour.
    pub(super) fn resource(&self, kind: Kind) -> ApiResource {
        self.options.flavor.resource(kind)
    }

    /// The annotation that asks this controller for a reconcile.
    pub(super) fn requested_at(&self) -> &'static str {
        self.options.flavor.requested_at()
    }

    /// The Event reference of a watched object.
    pub(super) fn reference(
        &self,
        kind: Kind,
        object: &DynamicObject,
    ) -> k8s_openapi::api::core::v1::ObjectReference {
        object.object_ref(&self.resource(kind))
    }

    /// Reads the Secrets `names` in `namespace`: Secrets that do not exist
    /// are listed in the error.
    pub(super) async fn secrets(
        &self,
        namespace: &str,
        names: &[&str],
    ) -> Result<Vec<serde_json::Value>, ReconcileError> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let mut docs = Vec::new();
        for name in names {
            match api.get_opt(name).await? {
                Some(secret) => docs.push(secret_document(&secret)),
                None => {
                    return Err(ReconcileError::Transient(format!(
                        "Secret {namespace}/{name} not found"
                    )));
                }
            }
        }
        Ok(docs)
    }

    pub(super) async fn event(
        &self,
        reference: &k8s_openapi::api::core::v1::ObjectReference,
        reason: &str,
        note: String,
    ) {
        self.publish(EventType::Normal, reference, reason, note)
            .await;
    }

    pub(super) async fn warning(
        &self,
        reference: &k8s_openapi::api::core::v1::ObjectReference,
        reason: &str,
        note: String,
    ) {
        self.publish(EventType::Warning, reference, reason, note)
            .await;
    }

    pub(super) async fn publish(
        &self,
        type_: EventType,
        reference: &k8s_openapi::api::core::v1::ObjectReference,
        reason: &str,
        note: String,
    ) {
        let event = Event {
            type_,
            reason: reason.to_string(),
            note: Some(note),
            action: reason.to_string(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, reference).await {
            tracing::warn!("publishing an event: {e}");
        }
    }

    /// Hands an event to the Alerts; never waits.
    pub(super) fn notify(&self, event: crate::notify::Event) {
        self.notifier.emit(event);
    }

    /// Whether the ImagePolicy cache can be trusted to hold every policy.
    pub(super) fn policies_listed(&self) -> bool {
        self.policies_listed
            .load(std::sync::atomic::Ordering::Relaxed)
            || self.started.elapsed() > Duration::from_secs(30)
    }

    /// Counts a failure of `key` and returns the wait before retrying.
    pub(super) fn failed(&self, key: &str) -> Duration {
        let n = self.failures.lock().map_or(1, |mut f| {
            let n = f.entry(key.to_string()).or_insert(0);
            *n = n.saturating_add(1);
            *n
        });
        backoff_after(n)
    }

    /// Records a reconcile of `kind` for metrics; a success ends the
    /// object's backoff.
    pub(super) fn finished(
        &self,
        kind: &str,
        key: &str,
        started: std::time::Instant,
        error: Option<&ReconcileError>,
    ) {
        self.metrics
            .reconciled(kind, error.is_none(), started.elapsed().as_secs_f64());
        match error {
            None => self.forgive(key),
            Some(e) => self.metrics.reconcile_error(kind, e.metric_label()),
        }
    }

    /// Ends an object's backoff.
    pub(super) fn forgive(&self, key: &str) {
        if let Ok(mut f) = self.failures.lock() {
            f.remove(key);
        }
    }

    /// The backoff an object is in, if it failed last: without counting a
    /// new failure.
    pub(super) fn backoff(&self, key: &str) -> Option<Duration> {
        let n = *self.failures.lock().ok()?.get(key)?;
        Some(backoff_after(n))
    }
}

/// The wait after the `n`th failure in a row: 5 s doubling to 5 min.
pub(super) fn backoff_after(n: u32) -> Duration {
    Duration::from_secs(
        5u64.saturating_mul(1 << n.min(7).saturating_sub(1))
            .min(300),
    )
}

/// What a watch mapping last saw of each object, so that it maps only
/// changes that matter to the objects it re-queues.
pub(super) struct Changes<T> {
    pub(super) seen: Mutex<HashMap<String, T>>,
}

impl<T> Default for Changes<T> {
    fn default() -> Self {
        Changes {
            seen: Mutex::default(),
        }
    }
}

impl<T: PartialEq> Changes<T> {
    /// Whether `value` differs from what was seen for `key` (true the
    /// first time), remembering it.
    pub(super) fn changed(&self, key: &str, value: T) -> bool {
        let Ok(mut seen) = self.seen.lock() else {
            return true;
        };
        if seen.get(key) == Some(&value) {
            return false;
        }
        seen.insert(key.to_string(), value);
        true
    }
}
