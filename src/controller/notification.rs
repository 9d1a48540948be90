//! Providers and Alerts in the cluster: the notifier's routes, kept to
//! what the watches see, and each object's `Ready` condition. The routes
//! are built again every minute as well, so that a rotated Secret (a new
//! webhook URL or token) takes effect without touching its Provider.
//!
//! Under `--flux` Flux's notification-controller owns Flux's Providers
//! and Alerts; hoist's notifier then stays off.

use std::collections::{BTreeMap, HashMap, HashSet};

use kube::core::GroupVersionKind;
use kube::runtime::WatchStreamExt;
use tokio::sync::mpsc;

use super::conditions::{self, Outcome};
use super::*;
use crate::notify::{self, Notifier};

/// How often the routes are built again without a watch event.
const RESYNC: Duration = Duration::from_secs(60);
/// Changes closer together than this are one rebuild: a watch's first
/// list is one event per object.
const SETTLE: Duration = Duration::from_millis(300);
/// Delivery outcomes waiting for the status writer; more are dropped,
/// since the next one says the same.
const OUTCOMES: usize = 1024;
/// The longest the reconcilers wait for the first routes.
const FIRST_ROUTES: Duration = Duration::from_secs(30);

pub(super) fn provider_resource() -> ApiResource {
    let gvk = GroupVersionKind::gvk(crate::api::GROUP, "v1alpha1", "Provider");
    ApiResource::from_gvk_with_plural(&gvk, "providers")
}

pub(super) fn alert_resource() -> ApiResource {
    let gvk = GroupVersionKind::gvk(crate::api::GROUP, "v1alpha1", "Alert");
    ApiResource::from_gvk_with_plural(&gvk, "alerts")
}

/// Hands each delivery's outcome to the status writer, without waiting:
/// the notifier's workers call it.
struct ClusterReporter {
    outcomes: mpsc::Sender<(String, Result<(), String>)>,
}

impl notify::Reporter for ClusterReporter {
    fn report(&self, provider: &str, outcome: Result<(), String>) {
        notify::LogReporter.report(provider, outcome.clone());
        let _ = self.outcomes.try_send((provider.to_string(), outcome));
    }
}

/// The notifier of the cluster's Alerts and Providers, kept current
/// until `stopped`; one that sends nothing when the cluster serves no
/// Provider (CRDs from before notifications) or hoist may not read them.
pub(super) async fn start(
    client: &Client,
    options: &Options,
    metrics: &Arc<metrics::Metrics>,
    stopped: tokio::sync::watch::Receiver<bool>,
) -> Notifier {
    if options.flavor == Flavor::Flux {
        tracing::info!(
            "--flux: Flux's notification-controller delivers Flux's Alerts; hoist's notifier is off"
        );
        return Notifier::default();
    }
    let resource = provider_resource();
    let api = dynamic_api(client, options, &resource);
    if let Err(kube::Error::Api(e)) = api.list(&kube::api::ListParams::default().limit(1)).await
        && matches!(e.code, 403 | 404)
    {
        tracing::warn!(
            "notifications are off: {} {} cannot be listed ({}); apply deploy/crds/hoist.dev.yaml and deploy/rbac.yaml",
            resource.api_version,
            resource.kind,
            e.message
        );
        return Notifier::default();
    }
    let (outcomes, received) = mpsc::channel(OUTCOMES);
    let notifier = Notifier::start(
        notify::Routes::default(),
        Arc::new(ClusterReporter { outcomes }),
        Some(Arc::clone(metrics)),
    );
    let (built, first) = tokio::sync::oneshot::channel();
    tokio::spawn(keep_routes(
        client.clone(),
        options.clone(),
        notifier.clone(),
        received,
        built,
        stopped,
    ));
    // The reconcilers start once every Alert is in force: an event of
    // their first reconciles would go nowhere before.
    if tokio::time::timeout(FIRST_ROUTES, first).await.is_err() {
        tracing::warn!(
            "Providers and Alerts not listed within {}s; notifying as they come",
            FIRST_ROUTES.as_secs()
        );
    }
    notifier
}

/// Watches Providers and Alerts (in the watched namespace, with the
/// watched labels: each shard owns its Providers and Alerts as it owns
/// its image objects, so each object's status has one writer), and
/// builds the routes when a spec or labels change, when a delivery's
/// outcome changes a Provider's health, and every [`RESYNC`] (a rotated
/// Secret). hoist's own status writes change neither, and build nothing.
async fn keep_routes(
    client: Client,
    options: Options,
    notifier: Notifier,
    mut outcomes: mpsc::Receiver<(String, Result<(), String>)>,
    built: tokio::sync::oneshot::Sender<()>,
    stopped: tokio::sync::watch::Receiver<bool>,
) {
    use kube::runtime::reflector;
    let watch = |resource: ApiResource| {
        let writer = reflector::store::Writer::new(resource.clone());
        let reader = writer.as_reader();
        let api = dynamic_api(&client, &options, &resource);
        let events = watcher(api, watcher_config(&options))
            .default_backoff()
            .modify(|object: &mut DynamicObject| object.metadata.managed_fields = None)
            .reflect(writer)
            .boxed();
        (reader, events)
    };
    let (providers, mut provider_events) = watch(provider_resource());
    let (alerts, mut alert_events) = watch(alert_resource());
    let mut state = State {
        built: Some(built),
        ..State::default()
    };
    let (mut providers_listed, mut alerts_listed) = (false, false);
    let (mut providers_failing, mut alerts_failing) = (false, false);
    let seen: Changes<Identity> = Changes::default();
    // Whether a watch event changes what the routes are built from.
    let matters = |kind: &str, event: &watcher::Event<DynamicObject>| match event {
        watcher::Event::Apply(o) | watcher::Event::InitApply(o) => seen.changed(
            &format!("{kind} {}", key_of(o)),
            (o.metadata.generation, o.metadata.labels.clone()),
        ),
        watcher::Event::Delete(_) | watcher::Event::InitDone => true,
        watcher::Event::Init => false,
    };
    let mut due: Option<tokio::time::Instant> = None;
    let mut resync = tokio::time::interval(RESYNC);
    loop {
        let soon = tokio::time::Instant::now() + SETTLE;
        tokio::select! {
            Some(event) = provider_events.next() => match event {
                Ok(event) => {
                    providers_failing = false;
                    providers_listed |= matches!(event, watcher::Event::InitDone);
                    if matters("Provider", &event) {
                        due.get_or_insert(soon);
                    }
                }
                Err(e) => watch_failed("Providers", &mut providers_failing, &e),
            },
            Some(event) = alert_events.next() => match event {
                Ok(event) => {
                    alerts_failing = false;
                    alerts_listed |= matches!(event, watcher::Event::InitDone);
                    if matters("Alert", &event) {
                        due.get_or_insert(soon);
                    }
                }
                Err(e) => watch_failed("Alerts", &mut alerts_failing, &e),
            },
            Some((provider, outcome)) = outcomes.recv() => {
                if state.record(provider, outcome) {
                    due.get_or_insert(soon);
                }
            }
            _ = resync.tick() => { due.get_or_insert(soon); }
            () = async {
                match due {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {
                due = None;
                let listed = providers_listed && alerts_listed;
                rebuild(&client, &providers.state(), &alerts.state(), &mut state, listed, &notifier).await;
            }
            () = until_stopped(stopped.clone()) => return,
        }
    }
}

/// What of a Provider or Alert the routes are built from, besides its
/// spec: its generation (the spec's version) and its labels.
type Identity = (Option<i64>, Option<BTreeMap<String, String>>);

/// A failing watch is said once per streak; the watch retries itself.
fn watch_failed(what: &str, failing: &mut bool, error: &watcher::Error) {
    if !*failing {
        tracing::warn!("watching {what} for notifications: {error}; retrying");
    }
    *failing = true;
}

/// What the route building keeps between builds.
#[derive(Default)]
struct State {
    /// Why each Provider's (`ns/name`) last message failed for good,
    /// until one is delivered, with the generation it failed at (a new
    /// spec starts afresh).
    failing: HashMap<String, (Option<i64>, String)>,
    /// The last Secret data read, by namespace and name: a read that
    /// fails (a timeout, a 5xx) keeps what worked rather than dropping
    /// the Provider's messages as if its Secret were gone.
    secrets: HashMap<(String, String), SecretData>,
    /// Told once both watches have listed and their routes are in force.
    built: Option<tokio::sync::oneshot::Sender<()>>,
}

impl State {
    /// Records an outcome; whether the Provider's health changed.
    fn record(&mut self, provider: String, outcome: Result<(), String>) -> bool {
        match outcome {
            Ok(()) => self.failing.remove(&provider).is_some(),
            Err(why) => {
                self.failing.get(&provider).map(|(_, w)| w) != Some(&why) && {
                    self.failing.insert(provider, (None, why));
                    true
                }
            }
        }
    }

    /// Why `provider`, at `generation`, is failing, if it is: a failure
    /// of an earlier spec is forgotten.
    fn failing(&mut self, provider: &str, generation: Option<i64>) -> Option<String> {
        let (at, why) = self.failing.get_mut(provider)?;
        if at.is_none() {
            *at = generation;
        }
        if *at != generation {
            self.failing.remove(provider);
            return None;
        }
        Some(why.clone())
    }
}

/// A watched object as the file loader reads it: its kind, identity,
/// labels and spec.
fn document_of(object: &DynamicObject, resource: &ApiResource) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": resource.api_version,
        "kind": resource.kind,
        "metadata": {
            "name": object.metadata.name,
            "namespace": object.metadata.namespace,
            "labels": object.metadata.labels,
            "annotations": object.metadata.annotations,
        },
        "spec": object.data.get("spec").cloned().unwrap_or_default(),
    })
}

/// Each object read through the file loader: those that read, and the
/// loader's words for those that do not, by `ns/name`.
fn read_all<K>(
    objects: &[Arc<DynamicObject>],
    resource: &ApiResource,
    pick: impl Fn(ObjectSet) -> Option<K>,
) -> (Vec<K>, HashMap<String, String>) {
    let mut read = Vec::new();
    let mut refused = HashMap::new();
    for object in objects {
        let (set, errors) = load(&[document_of(object, resource)]);
        let name = format!("{} {}", resource.kind, key_of(&**object));
        match errors_for(&errors, &name) {
            Some(message) => {
                refused.insert(key_of(&**object), message);
            }
            None => match pick(set) {
                Some(k) => read.push(k),
                None => {
                    refused.insert(key_of(&**object), "not read".to_string());
                }
            },
        }
    }
    (read, refused)
}

/// A Secret's keys and values.
type SecretData = BTreeMap<String, Vec<u8>>;

/// Builds the routes from the watched objects and the Secrets they name,
/// hands them to the notifier, and writes each object's `Ready`.
async fn rebuild(
    client: &Client,
    provider_objects: &[Arc<DynamicObject>],
    alert_objects: &[Arc<DynamicObject>],
    state: &mut State,
    listed: bool,
    notifier: &Notifier,
) {
    let (providers, invalid_providers) = read_all(provider_objects, &provider_resource(), |set| {
        set.providers.into_iter().next().map(|l| l.object)
    });
    let (alerts, invalid_alerts) = read_all(alert_objects, &alert_resource(), |set| {
        set.alerts.into_iter().next().map(|l| l.object)
    });
    // Each Secret a Provider names, read once.
    let mut secrets: HashMap<(String, String), Option<SecretData>> = HashMap::new();
    for provider in &providers {
        let Some(reference) = &provider.spec.secret_ref else {
            continue;
        };
        let namespace = crate::model::namespace_of(&provider.metadata).to_string();
        let key = (namespace.clone(), reference.name.clone());
        if secrets.contains_key(&key) {
            continue;
        }
        let api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
        let data = match api.get_opt(&reference.name).await {
            Ok(secret) => secret.map(|s| {
                s.data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0))
                    .collect()
            }),
            Err(e) => {
                tracing::warn!(
                    secret = %format!("{namespace}/{}", reference.name),
                    "reading a Provider's Secret: {e}; using what was read before"
                );
                state.secrets.get(&key).cloned()
            }
        };
        match &data {
            Some(data) => state.secrets.insert(key.clone(), data.clone()),
            None => state.secrets.remove(&key),
        };
        secrets.insert(key, data);
    }
    let lookup = |namespace: &str, name: &str| {
        secrets
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
            .flatten()
    };
    let alert_refs: Vec<&crate::api::Alert> = alerts.iter().collect();
    let provider_refs: Vec<&crate::api::Provider> = providers.iter().collect();
    let (routes, refused) = notify::routes(&alert_refs, &provider_refs, &lookup);
    let refused: HashMap<String, String> = refused
        .into_iter()
        .map(|(alert, why)| (alert.trim_start_matches("Alert ").to_string(), why))
        .collect();

    let mut outcomes: HashMap<String, Outcome> = HashMap::new();
    for (key, why) in &invalid_providers {
        outcomes.insert(key.clone(), Outcome::stalled("InvalidSpec", why.clone()));
    }
    for provider in &providers {
        let key = crate::model::ObjectKey::of(&provider.metadata).to_string();
        let Some(channel) = routes.providers.get(&key) else {
            continue;
        };
        let secret_missing = provider.spec.secret_ref.as_ref().is_some_and(|r| {
            lookup(crate::model::namespace_of(&provider.metadata), &r.name).is_none()
        });
        // A Provider that cannot be delivered to says why in its own
        // words; a delivery failure from before is not its news.
        let failing = match channel.target {
            Ok(_) => state.failing(&key, provider.metadata.generation),
            Err(_) => {
                state.failing.remove(&key);
                None
            }
        };
        outcomes.insert(
            key.clone(),
            provider_outcome(provider, channel, secret_missing, failing.as_ref()),
        );
    }
    state
        .failing
        .retain(|key, _| routes.providers.contains_key(key));
    state.secrets.retain(|key, _| secrets.contains_key(key));
    let known: HashSet<&String> = routes.providers.keys().collect();
    for (key, why) in &invalid_alerts {
        outcomes.insert(
            format!("Alert {key}"),
            Outcome::stalled("InvalidSpec", why.clone()),
        );
    }
    for alert in &alerts {
        let key = crate::model::ObjectKey::of(&alert.metadata).to_string();
        let namespace = crate::model::namespace_of(&alert.metadata);
        let provider = format!("{namespace}/{}", alert.spec.provider_ref.name);
        let outcome = if let Some(why) = refused.get(&key) {
            Outcome::stalled("InvalidSpec", why.clone())
        } else if invalid_providers.contains_key(&provider) || !known.contains(&provider) {
            Outcome::waiting(
                "ProviderNotFound",
                format!(
                    "spec.providerRef: Provider {provider} {}",
                    if invalid_providers.contains_key(&provider) {
                        "is invalid"
                    } else {
                        "not found"
                    }
                ),
            )
        } else {
            Outcome::ready("Succeeded", format!("events go to Provider {provider}"))
        };
        outcomes.insert(format!("Alert {key}"), outcome);
    }
    notifier.set_routes(routes).await;
    if listed && let Some(built) = state.built.take() {
        let _ = built.send(());
    }

    let time = now();
    for (objects, resource, prefix) in [
        (provider_objects, provider_resource(), ""),
        (alert_objects, alert_resource(), "Alert "),
    ] {
        for object in objects {
            let Some(outcome) = outcomes.get(&format!("{prefix}{}", key_of(&**object))) else {
                continue;
            };
            let status = ready_status(object, outcome, &time);
            if let Err(e) = write_status_to(client, &resource, object, status).await {
                tracing::warn!(object = %labelled_object(object), "writing the status: {e}");
            }
        }
    }
}

/// A Provider's `Ready`: whether events can reach it, and whether the
/// last message did. Pure.
fn provider_outcome(
    provider: &crate::api::Provider,
    channel: &notify::Channel,
    secret_missing: bool,
    failing: Option<&String>,
) -> Outcome {
    match (&channel.target, failing) {
        // A Secret still to come needs no new spec: it waits.
        (Err(why), _) if secret_missing => Outcome::waiting("SecretNotFound", why.clone()),
        (Err(why), _) => Outcome::stalled("InvalidSpec", why.clone()),
        _ if provider.spec.suspend => Outcome::ready(
            "Suspended",
            "suspended: nothing is delivered until spec.suspend is false",
        ),
        (Ok(_), Some(why)) => Outcome::waiting(
            "DeliveryFailed",
            format!("the last message was not delivered: {why}"),
        ),
        (Ok(target), None) => Outcome::ready(
            "Succeeded",
            format!("delivering to this {} Provider", target.type_.name()),
        ),
    }
}

/// `object`'s status with `outcome` as its conditions.
fn ready_status(object: &DynamicObject, outcome: &Outcome, time: &Time) -> serde_json::Value {
    let mut conditions: crate::api::Conditions = object
        .data
        .pointer("/status/conditions")
        .and_then(|c| serde_json::from_value(c.clone()).ok())
        .unwrap_or_default();
    let generation = object.metadata.generation;
    conditions::apply(&mut conditions, outcome, generation, time);
    let mut status = serde_json::json!({
        "conditions": serde_json::to_value(&conditions).unwrap_or_default(),
    });
    if let Some(generation) = generation {
        status["observedGeneration"] = generation.into();
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(suspend: bool) -> crate::api::Provider {
        crate::api::Provider::new(
            "slack",
            crate::api::ProviderSpec {
                type_: crate::api::ProviderType::Slack,
                address: Some("https://hooks.example/T0".to_string()),
                channel: None,
                username: None,
                secret_ref: None,
                timeout: None,
                window: None,
                suspend,
            },
        )
    }

    #[test]
    fn a_provider_is_ready_until_a_message_fails_and_again_after_one_is_delivered() {
        let p = provider(false);
        let channel = notify::channel(&p, &|_, _| None);
        let mut health = State::default();
        let ready = provider_outcome(&p, &channel, false, None);
        assert!(matches!(&ready, Outcome::Ready { reason, .. } if reason == "Succeeded"));
        assert!(health.record("default/slack".into(), Err("HTTP 404".into())));
        // The same failure again changes nothing to write.
        assert!(!health.record("default/slack".into(), Err("HTTP 404".into())));
        let why = health.failing("default/slack", Some(1));
        let failing = provider_outcome(&p, &channel, false, why.as_ref());
        assert_eq!(
            failing,
            Outcome::waiting(
                "DeliveryFailed",
                "the last message was not delivered: HTTP 404"
            )
        );
        // A new spec starts afresh.
        assert_eq!(health.failing("default/slack", Some(2)), None);
        assert!(health.record("default/slack".into(), Err("HTTP 404".into())));
        assert!(health.record("default/slack".into(), Ok(())));
        assert!(!health.record("default/slack".into(), Ok(())));
    }

    #[test]
    fn a_missing_secret_waits_and_a_bad_address_is_stalled() {
        let mut p = provider(false);
        p.spec.address = None;
        p.spec.secret_ref = Some(crate::api::LocalObjectReference {
            name: "webhook".into(),
        });
        let channel = notify::channel(&p, &|_, _| None);
        let outcome = provider_outcome(&p, &channel, true, None);
        assert!(
            matches!(&outcome, Outcome::Waiting { reason, message } if reason == "SecretNotFound" && message.contains("default/webhook")),
            "{outcome:?}"
        );
        let mut p = provider(true);
        p.spec.address = Some("ftp://files.example".into());
        let channel = notify::channel(&p, &|_, _| None);
        let outcome = provider_outcome(&p, &channel, false, None);
        assert!(
            matches!(&outcome, Outcome::Stalled { reason, message } if reason == "InvalidSpec" && !message.contains("files.example")),
            "{outcome:?}"
        );
        // Suspended, and otherwise fine.
        let p = provider(true);
        let channel = notify::channel(&p, &|_, _| None);
        assert!(matches!(
            provider_outcome(&p, &channel, false, None),
            Outcome::Ready { reason, .. } if reason == "Suspended"
        ));
    }
}
