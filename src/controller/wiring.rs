//! Starting the controllers: their watches, the API server's health, the
//! webhook receivers, and a prompt stop.

use super::*;

pub(super) fn watcher_config(options: &Options) -> watcher::Config {
    let config = watcher::Config::default();
    match &options.label_selector {
        Some(selector) => config.labels(selector),
        None => config,
    }
}

/// The list parameters matching what `watcher_config` watches.
pub(super) fn watcher_list_params(options: &Options) -> kube::api::ListParams {
    let params = kube::api::ListParams::default();
    match &options.label_selector {
        Some(selector) => params.labels(selector),
        None => params,
    }
}

/// The watched objects of `resource`: in the one namespace, or all.
pub(super) fn dynamic_api(
    client: &Client,
    options: &Options,
    resource: &ApiResource,
) -> Api<DynamicObject> {
    match &options.namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, resource),
        None => Api::all_with(client.clone(), resource),
    }
}

/// A controller of `resource`'s objects whose watch cache holds them
/// without `managedFields`: nothing hoist does reads them, and with
/// every writer's entry they are much of an object's size.
pub(super) fn watched_controller(
    api: Api<DynamicObject>,
    config: watcher::Config,
    resource: ApiResource,
) -> Controller<DynamicObject> {
    use kube::runtime::WatchStreamExt;
    let writer = kube::runtime::reflector::store::Writer::new(resource.clone());
    let reader = writer.as_reader();
    let stream = watcher(api, config)
        .modify(|object: &mut DynamicObject| object.metadata.managed_fields = None)
        .reflect(writer)
        .applied_objects();
    Controller::for_stream_with(stream, reader, resource)
}

/// Completes once the stop signal came.
pub(super) async fn until_stopped(mut stopped: tokio::sync::watch::Receiver<bool>) {
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
        // The bound address: with port 0 the kernel picked it.
        let bound = listener.local_addr().unwrap_or(addr);
        tracing::info!("metrics: listening on {bound}");
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
pub(super) async fn watch_api_server(
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

/// Serves Receivers on `addr`: their reconciler, the webhook server, and
/// the dispatcher that turns verified events into reconcile requests.
/// Returns once every Receiver is served (at most 30 s), with the
/// dispatcher's task: after `stopped`, the server stops accepting, what
/// was gathered is flushed, and the task ends when all of it is handed on.
pub(super) async fn serve_receivers(
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
    let bound = listener.local_addr().unwrap_or(addr);
    tracing::info!("webhook: listening on {bound}");
    let endpoints = server::Endpoints::default();
    let resource = receiver::receiver_resource(options.flavor);
    let controller = watched_controller(
        dynamic_api(client, options, &resource),
        watcher_config(options),
        resource.clone(),
    );
    let context = Arc::new(receiver::ReceiverContext::new(
        client.clone(),
        options.flavor,
        endpoints.clone(),
        controller.store(),
    ));
    let (sender, received) = tokio::sync::mpsc::channel(1024);
    let (merged, out) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(server::serve(
        listener,
        endpoints,
        Arc::clone(&metrics),
        sender,
        until_stopped(stopped.clone()),
    ));
    tokio::spawn(server::coalesce(
        received,
        merged,
        server::Coalescing::default(),
        metrics,
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
    match dynamic_api(client, options, &resource)
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
pub(super) async fn log_result<T, E: std::fmt::Display>(result: Result<T, E>) {
    if let Err(e) = result {
        tracing::debug!("controller: {e}");
    }
}

pub(super) async fn reconcile_all(
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
    let flavor = options.flavor;
    served(&client, &options).await?;
    let repository_kind = flavor.resource(Kind::ImageRepository);
    let policy_kind = flavor.resource(Kind::ImagePolicy);
    let automation_kind = flavor.resource(Kind::ImageUpdateAutomation);
    let repositories = dynamic_api(&client, &options, &repository_kind);
    let policies = dynamic_api(&client, &options, &policy_kind);
    let automations = dynamic_api(&client, &options, &automation_kind);

    // Bounded concurrency: scans share the registry's per-host limit, and
    // a thousand policies reconciled at once would hold a thousand loaded
    // object sets in memory for no gain.
    let limit = |n: u16| kube::runtime::controller::Config::default().concurrency(n);
    let repository_controller = watched_controller(
        repositories.clone(),
        config.clone(),
        repository_kind.clone(),
    )
    .with_config(limit(8));
    let policy_controller =
        watched_controller(policies.clone(), config.clone(), policy_kind.clone())
            .with_config(limit(16));
    // One automation at a time: automations on the same repository and
    // branch share its checkout cache.
    let automation_controller =
        watched_controller(automations, config.clone(), automation_kind.clone())
            .with_config(limit(1));

    // A new scan result re-queues the policies that read that repository;
    // a new latest ref the automations in its namespace that select it.
    // Only a change that matters maps: a rescan that found the same tags
    // (a new scanTime, the same revision) re-queues no policy.
    let policy_store = policy_controller.store();
    let seen_scans = Changes::default();
    let queued_kind = policy_kind.clone();
    let policy_controller = policy_controller.watches_with(
        repositories,
        repository_kind,
        config.clone(),
        move |repository| {
            let key = key_of(&repository);
            let revision = repository
                .data
                .pointer("/status/lastScanResult/revision")
                .and_then(serde_json::Value::as_str)
                .map(str::to_string);
            if !seen_scans.changed(&key, (revision, repository.metadata.generation)) {
                return Vec::new();
            }
            policy_store
                .state()
                .into_iter()
                .filter(|p| watched_repository_of(p) == key)
                .map(|p| ObjectRef::from_obj_with(&*p, queued_kind.clone()))
                .collect::<Vec<_>>()
        },
    );
    // A Namespace's new labels re-queue the policies in it that read another
    // namespace's repository: accessFrom may now admit them, or no longer.
    // Needless when no reference across namespaces can be admitted: a
    // namespaced install sees only its own, and the flag refuses them all.
    let policy_controller = if options.namespace.is_none() && !options.no_cross_namespace_refs {
        let policy_store = policy_controller.store();
        let seen_labels = Changes::default();
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let queued_kind = policy_kind.clone();
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
                .filter(|p| {
                    p.namespace().as_deref() == Some(name.as_str())
                        && watched_repository_of(p).split_once('/').map(|(ns, _)| ns)
                            != Some(name.as_str())
                })
                .map(|p| ObjectRef::from_obj_with(&*p, queued_kind.clone()))
                .collect::<Vec<_>>()
        })
    } else {
        policy_controller
    };
    let automation_store = automation_controller.store();
    let seen_refs = Changes::default();
    let automation_controller =
        automation_controller.watches_with(policies, policy_kind, config, move |object| {
            let Ok(policy) = typed::<ImagePolicy>(&object) else {
                return Vec::new();
            };
            let latest = policy.status.as_ref().and_then(|s| s.latest_ref.clone());
            let labels = policy.metadata.labels.clone();
            if !seen_refs.changed(&key_of(&policy), (latest, labels)) {
                return Vec::new();
            }
            automation_store
                .state()
                .into_iter()
                .filter(|a| selects(a, &policy))
                .map(|a| ObjectRef::from_obj_with(&*a, automation_kind.clone()))
                .collect::<Vec<_>>()
        });

    let identities = Arc::new(identities(&client, &options));
    let notifier = super::notification::start(&client, &options, &metrics, stopped.clone()).await;
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
        identities,
        git: Git::default(),
        failures: Mutex::default(),
        policies_listed: std::sync::atomic::AtomicBool::new(false),
        suspended: Changes::default(),
        started: std::time::Instant::now(),
        metrics: Arc::clone(&metrics),
        notifier: notifier.clone(),
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
    let result = tokio::select! {
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
    };
    // What the windows hold goes before the exit.
    notifier.flush(EXIT_STEP_GRACE).await;
    result
}

/// How long in-flight reconciles may finish after SIGTERM; with the lease
/// release and the webhook hand-over after it, the exit comes within 10 s
/// (a pod's default grace period is 30 s).
pub(super) const RECONCILE_GRACE: Duration = Duration::from_secs(5);
/// How long releasing the lease, and handing on gathered webhooks, may
/// take at the exit.
pub(super) const EXIT_STEP_GRACE: Duration = Duration::from_secs(2);

/// Whether the watched automation `object` selects `policy`: both
/// flavours keep the selector at `spec.policySelector`.
fn selects(object: &DynamicObject, policy: &ImagePolicy) -> bool {
    let selector = object
        .data
        .pointer("/spec/policySelector")
        .and_then(|s| serde_json::from_value::<crate::api::LabelSelector>(s.clone()).ok());
    crate::pipeline::selects_in(
        crate::model::namespace_of(&object.metadata),
        selector.as_ref(),
        policy,
    )
}

/// Fails when a kind the controller watches is not served (its CRD is not
/// installed): the watches would retry it forever and say so only at
/// debug level. Any other failure is left to the watches to retry.
async fn served(client: &Client, options: &Options) -> Result<(), ControllerError> {
    let flavor = options.flavor;
    let mut resources = vec![
        flavor.resource(Kind::ImageRepository),
        flavor.resource(Kind::ImagePolicy),
        flavor.resource(Kind::ImageUpdateAutomation),
    ];
    let install = match flavor {
        Flavor::Hoist => "kubectl apply -f deploy/crds/hoist.dev.yaml",
        Flavor::Flux => {
            resources.push(super::kinds::git_repository());
            // deploy/flux installs hoist's RBAC for --flux, not Flux's
            // CRDs: those come with Flux.
            "install Flux's image CRDs with Flux (`flux install --components-extra=image-reflector-controller,image-automation-controller`; the README's \"Migrating from Flux\" says which controllers to stop)"
        }
    };
    for resource in resources {
        let api = dynamic_api(client, options, &resource);
        match api.list(&kube::api::ListParams::default().limit(1)).await {
            Err(kube::Error::Api(e)) if e.code == 404 => {
                return Err(ControllerError::Setup(format!(
                    "the cluster serves no {} {}; {install}",
                    resource.api_version, resource.kind
                )));
            }
            _ => {}
        }
    }
    Ok(())
}

/// `ns/name` of the ImageRepository a watched ImagePolicy reads, from its
/// spec as it stands: the watch mappings run over every policy on each
/// repository event, and reading the two fields is far cheaper than the
/// whole object into hoist's type.
fn watched_repository_of(policy: &DynamicObject) -> String {
    let reference = policy.data.pointer("/spec/imageRepositoryRef");
    let field = |name: &str| {
        reference
            .and_then(|r| r.get(name))
            .and_then(serde_json::Value::as_str)
            .filter(|v| !v.is_empty())
    };
    crate::model::ObjectKey::referred(
        field("namespace"),
        field("name").unwrap_or_default(),
        crate::model::namespace_of(&policy.metadata),
    )
    .to_string()
}

/// hoist's own cloud identity, and with `--object-level-identity` the
/// ServiceAccounts' (locked down to `--default-service-account` when set).
fn identities(client: &Client, options: &Options) -> crate::registry::identity::Identities {
    let own = crate::registry::identity::Identities::new(
        crate::registry::identity::IdentityConfig::from_environment(),
    );
    if !options.object_level_identity {
        return own;
    }
    own.with_service_accounts(
        Arc::new(super::service_accounts::ClusterServiceAccounts {
            client: client.clone(),
        }),
        options.sync.default_service_account().map(str::to_string),
    )
}
