//! `hoist controller`: a second thin driver over the pipeline `hoist run`
//! uses, driven by ImageRepository, ImagePolicy and ImageUpdateAutomation
//! objects in a cluster. Each kind has a reconciler; results go to the
//! objects' `.status` (server-side apply, field manager `hoist`), tags to the
//! store on the pod's volume.
//!
//! Objects read from the cluster go through the same loader and checks as
//! files (`load::load_text`), so an invalid spec gets the same message in
//! both modes — here as a `Stalled` condition.

mod automation;
pub mod conditions;
mod policy;
mod receiver;
mod repository;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::{ImagePolicy, ImageRepository, ImageUpdateAutomation};
use crate::git::Git;
use crate::load::{LoadError, ObjectSet};
use crate::metrics;
use crate::registry::{DockerConfig, Registry, RegistrySettings};
use crate::store::Store;

/// The field manager of every write hoist makes.
pub const MANAGER: &str = "hoist";
/// The annotation that asks for a reconcile now (its value is any new
/// string, usually the time), as Flux's `reconcile.fluxcd.io/requestedAt`.
pub const REQUESTED_AT: &str = "reconcile.hoist.dev/requestedAt";

/// How the controller runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// Watch only this namespace (default: all).
    pub namespace: Option<String>,
    /// Reconcile only objects with these labels, to shard objects across
    /// hoist instances.
    pub label_selector: Option<String>,
    /// The store and repository cache (an emptyDir in the Deployment).
    pub state_dir: PathBuf,
    /// This instance's name: events and the lease name it.
    pub identity: String,
    /// Leader election on a Lease, or none (one replica, or tests).
    pub leader_election: Option<LeaderElection>,
    /// Where `/metrics`, `/healthz` and `/readyz` are served, if anywhere.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Where Receivers are served, if anywhere.
    pub webhook_addr: Option<std::net::SocketAddr>,
    /// How `spec.sync` reaches the cluster, and as whom.
    pub sync: crate::sync::ClusterAccess,
    /// Refuse every reference to another namespace's ImageRepository
    /// (`--no-cross-namespace-refs`).
    pub no_cross_namespace_refs: bool,
}

/// Where the Lease lives.
#[derive(Clone, Debug)]
pub struct LeaderElection {
    pub namespace: String,
    pub name: String,
    /// Seconds a leader's lock lasts without renewal.
    pub duration: u64,
}

/// Why the controller stopped.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("{0}")]
    Setup(String),
    #[error("leader election: {0}")]
    Lease(String),
    #[error("lost the leader lease; stopping so that a standby takes over")]
    LostLease,
}

/// Why one reconcile failed; retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// A stage of the pipeline failed, with its kind.
    #[error("{0}")]
    Failed(crate::pipeline::ErrorReport),
    #[error("{0}")]
    Transient(String),
}

impl ReconcileError {
    /// The `reason` label of `hoist_reconcile_errors_total`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            ReconcileError::Kube(_) => "kube_api",
            ReconcileError::Failed(report) => report.kind,
            ReconcileError::Transient(_) => "transient",
        }
    }
}

/// What every reconciler shares.
pub struct Context {
    client: Client,
    options: Options,
    store: Store,
    registry: Registry,
    credentials: Arc<DockerConfig>,
    git: Git,
    recorder: Recorder,
    repositories: kube::runtime::reflector::Store<ImageRepository>,
    policies: kube::runtime::reflector::Store<ImagePolicy>,
    /// Whether the ImagePolicy cache is filled: set by the first policy
    /// reconcile (the controller reconciles only once its cache is), or
    /// after a while when there are none. Not `Store::wait_until_ready`:
    /// kube-runtime 5 wakes only the last of several waiters, and the
    /// policy controller itself waits on that store, so a second waiter
    /// could stall it or the automations.
    policies_listed: std::sync::atomic::AtomicBool,
    started: std::time::Instant,
    /// Failures in a row per object (`kind ns/name`), for backoff.
    failures: Mutex<HashMap<String, u32>>,
    metrics: Arc<metrics::Metrics>,
    runtime: tokio::runtime::Handle,
}

impl Context {
    /// Reads the Secrets `names` in `namespace`: Secrets that do not exist
    /// are listed in the error.
    async fn secrets(
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

    async fn event(
        &self,
        reference: &k8s_openapi::api::core::v1::ObjectReference,
        reason: &str,
        note: String,
    ) {
        self.publish(EventType::Normal, reference, reason, note)
            .await;
    }

    async fn warning(
        &self,
        reference: &k8s_openapi::api::core::v1::ObjectReference,
        reason: &str,
        note: String,
    ) {
        self.publish(EventType::Warning, reference, reason, note)
            .await;
    }

    async fn publish(
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

    /// Whether the ImagePolicy cache can be trusted to hold every policy.
    fn policies_listed(&self) -> bool {
        self.policies_listed
            .load(std::sync::atomic::Ordering::Relaxed)
            || self.started.elapsed() > Duration::from_secs(30)
    }

    /// Counts a failure of `key` and returns the wait before retrying.
    fn failed(&self, key: &str) -> Duration {
        let n = self.failures.lock().map_or(1, |mut f| {
            let n = f.entry(key.to_string()).or_insert(0);
            *n = n.saturating_add(1);
            *n
        });
        backoff_after(n)
    }

    /// Records a reconcile of `kind` for metrics; a success ends the
    /// object's backoff.
    fn finished(
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
    fn forgive(&self, key: &str) {
        if let Ok(mut f) = self.failures.lock() {
            f.remove(key);
        }
    }

    /// The backoff an object is in, if it failed last: without counting a
    /// new failure.
    fn backoff(&self, key: &str) -> Option<Duration> {
        let n = *self.failures.lock().ok()?.get(key)?;
        Some(backoff_after(n))
    }
}

/// The wait after the `n`th failure in a row: 5 s doubling to 5 min.
fn backoff_after(n: u32) -> Duration {
    Duration::from_secs(
        5u64.saturating_mul(1 << n.min(7).saturating_sub(1))
            .min(300),
    )
}

/// What a watch mapping last saw of each object, so that it maps only
/// changes that matter to the objects it re-queues.
struct Changes<T> {
    seen: Mutex<HashMap<String, T>>,
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
    fn changed(&self, key: &str, value: T) -> bool {
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

/// Whether `policy` reads an ImageRepository of another namespace.
fn reads_across(policy: &ImagePolicy) -> bool {
    policy
        .spec
        .image_repository_ref
        .namespace
        .as_deref()
        .is_some_and(|target| Some(target) != policy.namespace().as_deref())
}

/// A Secret as the loader reads it from files.
fn secret_document(secret: &Secret) -> serde_json::Value {
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
fn document<K: Resource<DynamicType = ()> + Serialize>(object: &K) -> serde_json::Value {
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
fn load(documents: &[serde_json::Value]) -> (ObjectSet, Vec<LoadError>) {
    let text: String = documents.iter().map(|d| format!("---\n{d}\n")).collect();
    let mut set = ObjectSet::default();
    let mut errors = Vec::new();
    crate::load::load_text(Path::new("cluster"), &text, true, &mut set, &mut errors);
    (set, errors)
}

/// The loader's errors about one object, as `field: message` lines.
fn errors_for(errors: &[LoadError], object: &str) -> Option<String> {
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
fn labelled<K: Resource<DynamicType = ()>>(object: &K) -> String {
    format!("{} {}", K::kind(&()), key_of(object))
}

/// What every reconciler does on a failure: back off, 5 s doubling to
/// 5 min per object, and log why.
fn error_policy<K: Resource<DynamicType = ()>>(
    object: Arc<K>,
    error: &ReconcileError,
    context: Arc<Context>,
) -> Action {
    let key = labelled(&*object);
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
fn key_of<K: Resource>(object: &K) -> String {
    crate::model::ObjectKey::of(object.meta()).to_string()
}

/// Now, to the second: what conditions and status times carry.
fn now() -> Time {
    Time(
        jiff::Timestamp::from_second(jiff::Timestamp::now().as_second())
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH),
    )
}

/// Writes `status` when it differs from what the object has.
async fn patch_status<K, S>(
    client: &Client,
    object: &K,
    current: Option<&S>,
    status: &S,
) -> Result<(), ReconcileError>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
    S: Serialize + PartialEq,
{
    if current == Some(status) {
        return Ok(());
    }
    let api: Api<K> = Api::namespaced(client.clone(), crate::model::namespace_of(object.meta()));
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
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

/// The requestedAt annotation, if it asks for something not yet handled.
fn requested<K: Resource>(object: &K, handled: Option<&String>) -> Option<String> {
    let value = object.annotations().get(REQUESTED_AT)?;
    (Some(value) != handled).then(|| value.clone())
}

fn watcher_config(options: &Options) -> watcher::Config {
    let config = watcher::Config::default();
    match &options.label_selector {
        Some(selector) => config.labels(selector),
        None => config,
    }
}

/// The list parameters matching what `watcher_config` watches.
fn watcher_list_params(options: &Options) -> kube::api::ListParams {
    let params = kube::api::ListParams::default();
    match &options.label_selector {
        Some(selector) => params.labels(selector),
        None => params,
    }
}

fn api<K>(client: &Client, options: &Options) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
{
    match &options.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Completes once the stop signal came.
async fn until_stopped(mut stopped: tokio::sync::watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}

/// Runs the three reconcilers until SIGTERM / SIGINT (or, with leader
/// election, until the lease is lost), then releases the lease.
pub async fn run(client: Client, options: Options) -> Result<(), ControllerError> {
    let metrics = Arc::new(metrics::Metrics::default());
    if let Some(addr) = options.metrics_addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| ControllerError::Setup(format!("--metrics-addr {addr}: {e}")))?;
        tokio::spawn(metrics::serve(listener, Arc::clone(&metrics)));
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot listen for signals");
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("stopping");
        let _ = stop.send(true);
    });
    // Receivers are served by every replica, leader or not.
    let dispatcher = match options.webhook_addr {
        Some(addr) => Some(
            serve_receivers(
                &client,
                &options,
                addr,
                Arc::clone(&metrics),
                stopped.clone(),
            )
            .await?,
        ),
        None => None,
    };
    tokio::spawn(watch_api_server(
        client.clone(),
        options.sync.server(),
        Arc::clone(&metrics),
        stopped.clone(),
    ));
    // Ready once serving: a standby waiting for the lease is ready too, or
    // a rolling update would wait forever for the new pod.
    metrics
        .ready
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let result = lead(client, options, metrics, stopped).await;
    // Webhooks accepted before the stop are handed on before the exit.
    if let Some(dispatcher) = dispatcher
        && tokio::time::timeout(EXIT_STEP_GRACE, dispatcher)
            .await
            .is_err()
    {
        tracing::warn!("webhook events still being handed on at exit");
    }
    result
}

/// Asks the API server for its version every 5 s: while two answers in a
/// row fail, /readyz says not ready, and the log says once, naming the
/// server, that it cannot be reached (the watches' own errors name
/// neither it nor what they watch).
async fn watch_api_server(
    client: Client,
    server: String,
    metrics: Arc<metrics::Metrics>,
    stopped: tokio::sync::watch::Receiver<bool>,
) {
    use std::sync::atomic::Ordering;
    let mut failures = 0u32;
    loop {
        let answer = tokio::time::timeout(Duration::from_secs(5), client.apiserver_version()).await;
        let error = match answer {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some("no answer within 5 s".to_string()),
        };
        match error {
            None => {
                if metrics.api_unreachable.swap(false, Ordering::Relaxed) {
                    tracing::info!("the API server at {server} answers again");
                }
                failures = 0;
            }
            Some(e) => {
                failures += 1;
                if failures == 2 {
                    metrics.api_unreachable.store(true, Ordering::Relaxed);
                    tracing::warn!("cannot reach the API server at {server} (GET /version): {e}");
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
            () = until_stopped(stopped.clone()) => return,
        }
    }
}

/// Waits for the lease if asked to, then reconciles until stopped or the
/// lease is lost, and releases it.
async fn lead(
    client: Client,
    options: Options,
    metrics: Arc<metrics::Metrics>,
    stopped: tokio::sync::watch::Receiver<bool>,
) -> Result<(), ControllerError> {
    let lease = match &options.leader_election {
        None => None,
        Some(election) => {
            let manager =
                kube_lease_manager::LeaseManagerBuilder::new(client.clone(), &election.name)
                    .with_namespace(&election.namespace)
                    .with_identity(&options.identity)
                    .with_duration(election.duration)
                    .with_grace(election.duration.div_ceil(3).max(1))
                    .build()
                    .await
                    .map_err(|e| ControllerError::Lease(e.to_string()))?;
            tracing::info!(lease = %election.name, identity = %options.identity, "waiting to become the leader");
            loop {
                tokio::select! {
                    changed = manager.changed() => match changed {
                        Ok(true) => break,
                        Ok(false) => {}
                        Err(e) => {
                            tracing::warn!("leader election: {e}");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    },
                    () = until_stopped(stopped.clone()) => return Ok(()),
                }
            }
            tracing::info!(identity = %options.identity, "leading");
            Some(Arc::new(manager))
        }
    };
    // The leader keeps renewing; losing the lease stops everything.
    let (lost_tx, mut lost) = tokio::sync::watch::channel(false);
    // Renewals that keep failing (the API server unreachable) lose the
    // lease as surely as a standby taking it: stop before it expires.
    let expiry = options.leader_election.as_ref().map_or(Duration::MAX, |e| {
        Duration::from_secs(
            e.duration
                .saturating_sub(e.duration.div_ceil(3).max(1))
                .max(1),
        )
    });
    let renew = lease.clone().map(|manager| {
        tokio::spawn(async move {
            let mut renewed = std::time::Instant::now();
            loop {
                match manager.changed().await {
                    Ok(true) => renewed = std::time::Instant::now(),
                    Ok(false) => {
                        let _ = lost_tx.send(true);
                        return;
                    }
                    Err(e) => {
                        tracing::warn!("renewing the lease: {e}");
                        if renewed.elapsed() >= expiry {
                            let _ = lost_tx.send(true);
                            return;
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        })
    });

    let result = reconcile_all(client, options, metrics, stopped.clone(), &mut lost).await;

    if let Some(renew) = renew {
        renew.abort();
    }
    if let Some(manager) = lease {
        // Hand over at once rather than after the lease expires.
        match tokio::time::timeout(EXIT_STEP_GRACE, manager.release()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("releasing the lease: {e}"),
            Err(_) => tracing::warn!(
                "releasing the lease: no answer within {}s; a standby takes over when it expires",
                EXIT_STEP_GRACE.as_secs()
            ),
        }
    }
    result
}

/// Serves Receivers on `addr`: their reconciler, the webhook server, and
/// the dispatcher that turns verified events into reconcile requests.
/// Returns once every Receiver is served (at most 30 s), with the
/// dispatcher's task: after `stopped`, the server stops accepting, what
/// was gathered is flushed, and the task ends when all of it is handed on.
async fn serve_receivers(
    client: &Client,
    options: &Options,
    addr: std::net::SocketAddr,
    metrics: Arc<metrics::Metrics>,
    stopped: tokio::sync::watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, ControllerError> {
    use crate::webhook::server;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| ControllerError::Setup(format!("--webhook-addr {addr}: {e}")))?;
    let endpoints = server::Endpoints::default();
    let controller = Controller::new(
        api::<crate::api::Receiver>(client, options),
        watcher_config(options),
    );
    let context = Arc::new(receiver::ReceiverContext::new(
        client.clone(),
        endpoints.clone(),
        controller.store(),
    ));
    let (sender, received) = tokio::sync::mpsc::channel(1024);
    let (merged, out) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(server::serve(
        listener,
        endpoints,
        metrics,
        sender,
        until_stopped(stopped.clone()),
    ));
    tokio::spawn(server::coalesce(
        received,
        merged,
        server::Coalescing::default(),
        until_stopped(stopped.clone()),
    ));
    let dispatcher = tokio::spawn(receiver::dispatch(out, Arc::clone(&context)));
    tokio::spawn(
        controller
            .graceful_shutdown_on(until_stopped(stopped.clone()))
            .run(
                receiver::reconcile,
                receiver::error_policy,
                Arc::clone(&context),
            )
            .for_each(log_result),
    );
    // A deleted Receiver stops being served within seconds, even when no
    // other Receiver is reconciled after it.
    let sweeper = Arc::clone(&context);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(2)) => sweeper.forget_deleted(),
                () = until_stopped(stopped.clone()) => return,
            }
        }
    });
    match api::<crate::api::Receiver>(client, options)
        .list(&watcher_list_params(options))
        .await
    {
        Ok(listed) => {
            let keys: Vec<String> = listed.items.iter().map(key_of).collect();
            context.wait_served(&keys, Duration::from_secs(30)).await;
        }
        Err(e) => tracing::warn!("listing Receivers: {e}; ready without waiting for them"),
    }
    Ok(dispatcher)
}

/// Reconcile failures are logged by the reconcilers; the controller's own
/// (a watch that failed, a queue error) here.
async fn log_result<T, E: std::fmt::Display>(result: Result<T, E>) {
    if let Err(e) = result {
        tracing::debug!("controller: {e}");
    }
}

async fn reconcile_all(
    client: Client,
    options: Options,
    metrics: Arc<metrics::Metrics>,
    stopped: tokio::sync::watch::Receiver<bool>,
    lost: &mut tokio::sync::watch::Receiver<bool>,
) -> Result<(), ControllerError> {
    let store =
        Store::open(&options.state_dir).map_err(|e| ControllerError::Setup(e.to_string()))?;
    let credentials =
        DockerConfig::from_environment().map_err(|e| ControllerError::Setup(e.to_string()))?;
    let config = watcher_config(&options);
    let repositories: Api<ImageRepository> = api(&client, &options);
    let policies: Api<ImagePolicy> = api(&client, &options);
    let automations: Api<ImageUpdateAutomation> = api(&client, &options);

    // Bounded concurrency: scans share the registry's per-host limit, and
    // a thousand policies reconciled at once would hold a thousand loaded
    // object sets in memory for no gain.
    let limit = |n: u16| kube::runtime::controller::Config::default().concurrency(n);
    let repository_controller =
        Controller::new(repositories.clone(), config.clone()).with_config(limit(8));
    let policy_controller =
        Controller::new(policies.clone(), config.clone()).with_config(limit(16));
    // One automation at a time: automations on the same repository and
    // branch share its checkout cache.
    let automation_controller = Controller::new(automations, config.clone()).with_config(limit(1));

    // A new scan result re-queues the policies that read that repository;
    // a new latest ref the automations in its namespace that select it.
    // Only a change that matters maps: a rescan that found the same tags
    // (a new scanTime, the same revision) re-queues no policy.
    let policy_store = policy_controller.store();
    let seen_scans = Changes::default();
    let policy_controller =
        policy_controller.watches(repositories, config.clone(), move |repository| {
            let key = key_of(&repository);
            let revision = repository
                .status
                .as_ref()
                .and_then(|s| s.last_scan_result.as_ref())
                .and_then(|r| r.revision.clone());
            if !seen_scans.changed(&key, (revision, repository.metadata.generation)) {
                return Vec::new();
            }
            policy_store
                .state()
                .into_iter()
                .filter(|p| crate::pipeline::repository_of(p) == key)
                .map(|p| ObjectRef::from_obj(&*p))
                .collect::<Vec<_>>()
        });
    // A Namespace's new labels re-queue the policies in it that read another
    // namespace's repository: accessFrom may now admit them, or no longer.
    // Needless when no reference across namespaces can be admitted: a
    // namespaced install sees only its own, and the flag refuses them all.
    let policy_controller = if options.namespace.is_none() && !options.no_cross_namespace_refs {
        let policy_store = policy_controller.store();
        let seen_labels = Changes::default();
        let namespaces: Api<Namespace> = Api::all(client.clone());
        // Every Namespace, whatever the label selector: it shards hoist's
        // objects, and Namespaces carry none of its labels.
        policy_controller.watches(namespaces, watcher::Config::default(), move |namespace| {
            let name = namespace.name_any();
            if !seen_labels.changed(&name, namespace.metadata.labels.clone()) {
                return Vec::new();
            }
            policy_store
                .state()
                .into_iter()
                .filter(|p| p.namespace().as_deref() == Some(name.as_str()) && reads_across(p))
                .map(|p| ObjectRef::from_obj(&*p))
                .collect::<Vec<_>>()
        })
    } else {
        policy_controller
    };
    let automation_store = automation_controller.store();
    let seen_refs = Changes::default();
    let automation_controller = automation_controller.watches(policies, config, move |policy| {
        let latest = policy.status.as_ref().and_then(|s| s.latest_ref.clone());
        let labels = policy.metadata.labels.clone();
        if !seen_refs.changed(&key_of(&policy), (latest, labels)) {
            return Vec::new();
        }
        automation_store
            .state()
            .into_iter()
            .filter(|a| crate::pipeline::selects(a, &policy))
            .map(|a| ObjectRef::from_obj(&*a))
            .collect::<Vec<_>>()
    });

    let context = Arc::new(Context {
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: MANAGER.to_string(),
                instance: Some(options.identity.clone()),
            },
        ),
        repositories: repository_controller.store(),
        policies: policy_controller.store(),
        client,
        options,
        store,
        registry: Registry::new(RegistrySettings::default()).with_observer({
            let metrics = Arc::clone(&metrics);
            Arc::new(move |host: &str, status: u16| metrics.registry_request(host, status))
        }),
        credentials: Arc::new(credentials),
        git: Git::default(),
        failures: Mutex::default(),
        policies_listed: std::sync::atomic::AtomicBool::new(false),
        started: std::time::Instant::now(),
        metrics: Arc::clone(&metrics),
        runtime: tokio::runtime::Handle::current(),
    });
    metrics
        .ready
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let repository_run = repository_controller
        .graceful_shutdown_on(until_stopped(stopped.clone()))
        .run(repository::reconcile, error_policy, Arc::clone(&context))
        .for_each(log_result);
    let policy_run = policy_controller
        .graceful_shutdown_on(until_stopped(stopped.clone()))
        .run(policy::reconcile, error_policy, Arc::clone(&context))
        .for_each(log_result);
    let deadline = stopped.clone();
    let automation_run = automation_controller
        .graceful_shutdown_on(until_stopped(stopped))
        .run(automation::reconcile, error_policy, context)
        .for_each(log_result);
    tokio::select! {
        _ = async { tokio::join!(repository_run, policy_run, automation_run) } => Ok(()),
        () = async {
            // Without leader election nothing sends: wait forever.
            if lost.wait_for(|l| *l).await.is_err() {
                std::future::pending::<()>().await;
            }
        } => Err(ControllerError::LostLease),
        // A reconcile waiting on an API server that accepts and never
        // answers would hold the exit for minutes: SIGTERM gets a bounded
        // answer.
        () = async {
            until_stopped(deadline).await;
            tokio::time::sleep(RECONCILE_GRACE).await;
        } => {
            tracing::warn!("reconciles still running {}s after the stop; exiting without them", RECONCILE_GRACE.as_secs());
            Ok(())
        }
    }
}

/// How long in-flight reconciles may finish after SIGTERM; with the lease
/// release and the webhook hand-over after it, the exit comes within 10 s
/// (a pod's default grace period is 30 s).
const RECONCILE_GRACE: Duration = Duration::from_secs(5);
/// How long releasing the lease, and handing on gathered webhooks, may
/// take at the exit.
const EXIT_STEP_GRACE: Duration = Duration::from_secs(2);
