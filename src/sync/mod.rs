//! The sync stage: apply a directory of the repository to the cluster.
//!
//! Data flows one way: [`source::read`] (files, or `kustomize build`) →
//! [`plan::plan`] (pure: order, namespaces, duplicates, unknown kinds,
//! what to prune) → [`apply`] (server-side apply with field manager
//! `hoist`, only for objects whose live state differs, so a second sync
//! with nothing changed writes nothing and a manual edit is reverted) →
//! prune (only objects of hoist's previous inventory that still carry its
//! labels) → wait ([`health`]).

mod access;
pub mod health;
pub mod plan;
pub mod source;

pub use access::{ClusterAccess, ImpersonationError, service_account_user};

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiCapabilities, ApiResource, Discovery, Scope as ApiScope};
use serde::Serialize;

use health::Health;
use plan::{ApplyPlan, Desired, InventoryEntry, ObjectId, Scope};

/// Labels that tie an object to the automation (or `hoist sync --name`)
/// that applied it: only such objects are ever pruned.
pub const OWNER_NAME: &str = "sync.hoist.dev/name";
pub const OWNER_NAMESPACE: &str = "sync.hoist.dev/namespace";
/// `hoist.dev/prune: disabled` keeps an object when it leaves the source.
pub const PRUNE: &str = "hoist.dev/prune";
/// The field manager of everything hoist applies.
pub const MANAGER: &str = "hoist";

/// Who applies: an ImageUpdateAutomation, or `hoist sync --name`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub namespace: String,
    pub name: String,
}

/// How a sync behaves.
#[derive(Clone, Debug)]
pub struct SyncOptions {
    pub prune: bool,
    /// Server-side dry run: report what would change, change nothing.
    pub dry_run: bool,
    /// Wait this long for the applied workloads to become healthy.
    pub wait: Option<Duration>,
    /// For namespaced objects that name none.
    pub default_namespace: String,
}

/// What happened to one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Created,
    Configured,
    Unchanged,
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Action::Created => "created",
            Action::Configured => "configured",
            Action::Unchanged => "unchanged",
        })
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Applied {
    pub object: String,
    pub action: Action,
}

/// What a sync did. `-o json` prints it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SyncReport {
    pub applied: Vec<Applied>,
    pub pruned: Vec<String>,
    /// Gone from the source but kept: not hoist's, or `hoist.dev/prune: disabled`.
    pub kept: Vec<String>,
    /// Objects not healthy when the wait ended.
    pub unhealthy: Vec<String>,
    /// The same objects, each with the verdict on its own status alone
    /// (not what its Pods say, which may quote an application's output):
    /// what a rollback records.
    #[serde(skip)]
    pub unhealthy_objects: Vec<(ObjectId, String)>,
    /// What hoist has applied, for the next sync's pruning.
    pub inventory: Vec<InventoryEntry>,
    /// Writes sent to the API server (applies and deletes).
    pub writes: usize,
    pub error: Option<String>,
}

/// How the cluster serves each kind, from discovery.
struct Served {
    discovery: Discovery,
}

impl Served {
    fn resolve(&self, api_version: &str, kind: &str) -> Option<(ApiResource, ApiCapabilities)> {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        self.discovery
            .resolve_gvk(&GroupVersionKind::gvk(group, version, kind))
    }

    fn scope(&self, api_version: &str, kind: &str) -> Option<Scope> {
        self.resolve(api_version, kind)
            .map(|(_, caps)| match caps.scope {
                ApiScope::Namespaced => Scope::Namespaced,
                ApiScope::Cluster => Scope::Cluster,
            })
    }
}

/// The API to reach `object` by; for kinds a CRD in the source defines,
/// built from that CRD (discovery ran before it existed).
fn api_for(
    client: &Client,
    served: &Served,
    plan: &ApplyPlan,
    api_version: &str,
    id: &ObjectId,
) -> Option<Api<DynamicObject>> {
    let resource = served
        .resolve(api_version, &id.kind)
        .map(|(r, _)| r)
        .or_else(|| {
            let crd = plan.first.iter().find(|d| {
                d.id.kind == "CustomResourceDefinition"
                    && d.object["spec"]["group"] == id.group.as_str()
                    && d.object["spec"]["names"]["kind"] == id.kind.as_str()
            })?;
            let plural = crd.object["spec"]["names"]["plural"].as_str()?;
            let gvk = GroupVersionKind::gvk(
                &id.group,
                api_version.rsplit_once('/').map_or(api_version, |(_, v)| v),
                &id.kind,
            );
            Some(ApiResource::from_gvk_with_plural(&gvk, plural))
        })?;
    Some(match &id.namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    })
}

/// Whether every field of `desired` has the same value in `live`: then
/// applying it again would change nothing. Lists compare item by item, so
/// fields the server defaults inside list items do not count as drift.
pub fn contains(live: &serde_json::Value, desired: &serde_json::Value) -> bool {
    use serde_json::Value;
    // The server drops empty maps and lists and nulls: absent is the same.
    let empty = |v: &Value| {
        v.is_null()
            || v.as_object().is_some_and(serde_json::Map::is_empty)
            || v.as_array().is_some_and(Vec::is_empty)
    };
    match (live, desired) {
        (Value::Object(l), Value::Object(d)) => d.iter().all(|(k, v)| match l.get(k) {
            Some(lv) => contains(lv, v) || (empty(v) && empty(lv)),
            None => empty(v),
        }),
        (Value::Array(l), Value::Array(d)) => {
            l.len() == d.len() && l.iter().zip(d).all(|(lv, dv)| contains(lv, dv))
        }
        (l, d) => l == d,
    }
}

/// Whether two versions of an object are the same but for the server's
/// bookkeeping.
fn same_object(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    let strip = |v: &serde_json::Value| {
        let mut v = v.clone();
        if let Some(meta) = v["metadata"].as_object_mut() {
            for field in ["resourceVersion", "managedFields", "generation"] {
                meta.remove(field);
            }
        }
        if let Some(map) = v.as_object_mut() {
            map.remove("apiVersion");
            map.remove("kind");
        }
        v
    };
    strip(a) == strip(b)
}

/// Adds the owner labels to an object's metadata.
fn label(object: &mut serde_json::Value, owner: &Owner) {
    let labels = &mut object["metadata"]["labels"];
    if !labels.is_object() {
        *labels = serde_json::json!({});
    }
    labels[OWNER_NAME] = serde_json::json!(owner.name);
    labels[OWNER_NAMESPACE] = serde_json::json!(owner.namespace);
}

/// Syncs `source` to the cluster. `previous` is what this owner applied
/// last time. Nothing is applied when planning fails; nothing is pruned
/// when an apply fails.
pub async fn sync(
    client: &Client,
    source: Vec<Desired>,
    previous: &[InventoryEntry],
    owner: &Owner,
    options: &SyncOptions,
) -> SyncReport {
    let mut report = SyncReport {
        inventory: previous.to_vec(),
        ..SyncReport::default()
    };
    let served = match Discovery::new(client.clone()).run().await {
        Ok(discovery) => Served { discovery },
        Err(e) => {
            report.error = Some(format!("discovery: {}", api_error(&e)));
            return report;
        }
    };
    let plan = match plan::plan(
        source,
        |v, k| served.scope(v, k),
        &options.default_namespace,
        previous,
    ) {
        Ok(plan) => plan,
        Err(errors) => {
            report.error = Some(
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n"),
            );
            return report;
        }
    };
    // By object, whatever its API version: the newest entry wins, and
    // whether hoist created it carries over.
    let mut applied: BTreeMap<ObjectId, InventoryEntry> =
        previous.iter().map(|e| (e.id.clone(), e.clone())).collect();
    let mut crds_changed = Vec::new();
    for (phase, objects) in [("first", &plan.first), ("then", &plan.then)] {
        if phase == "then"
            && !crds_changed.is_empty()
            && !options.dry_run
            && let Err(e) = established(client, &crds_changed).await
        {
            report.error = Some(e.to_string());
            report.inventory = applied.into_values().collect();
            return report;
        }
        // What this owner applied before, one labelled LIST per kind and
        // namespace instead of a GET per object.
        let live = match live_objects(client, &served, &plan, objects, owner).await {
            Ok(live) => live,
            Err(e) => {
                report.error = Some(e.to_string());
                report.inventory = applied.into_values().collect();
                return report;
            }
        };
        for d in objects {
            let known = previous.iter().any(|e| e.id == d.id);
            match apply_one(
                client,
                &served,
                &plan,
                d,
                live.get(&d.id),
                known,
                owner,
                options,
            )
            .await
            {
                Ok(action) => {
                    if action != Action::Unchanged {
                        report.writes += 1;
                        if d.id.kind == "CustomResourceDefinition" {
                            crds_changed.push(d.id.name.clone());
                        }
                    }
                    report.applied.push(Applied {
                        object: d.id.to_string(),
                        action,
                    });
                    let created =
                        action == Action::Created || applied.get(&d.id).is_some_and(|e| e.created);
                    applied.insert(
                        d.id.clone(),
                        InventoryEntry {
                            id: d.id.clone(),
                            api_version: d.api_version.clone(),
                            created,
                        },
                    );
                }
                Err(e) => {
                    // Keep what was applied in the inventory, so a later
                    // sync can prune it; prune nothing now.
                    report.error = Some(format!("{}: {}: {e}", d.file.display(), d.id));
                    report.inventory = applied.into_values().collect();
                    return report;
                }
            }
        }
    }
    // What the source holds now, then what is still ours to prune.
    let mut inventory: Vec<InventoryEntry> = plan
        .first
        .iter()
        .chain(&plan.then)
        .filter_map(|d| applied.get(&d.id).cloned())
        .collect();
    if options.prune {
        for entry in &plan.prune {
            match prune_one(client, &served, &plan, entry, owner, options.dry_run).await {
                Ok(Pruned::Deleted) => {
                    report.writes += 1;
                    report.pruned.push(entry.id.to_string());
                }
                Ok(Pruned::Kept) => report.kept.push(entry.id.to_string()),
                Ok(Pruned::Gone) => {}
                Err(e) => {
                    // Still ours and still there: keep it in the inventory.
                    report.error = Some(format!("pruning {}: {e}", entry.id));
                    inventory.push(entry.clone());
                }
            }
        }
    } else {
        // Not pruned now; still ours to prune later.
        inventory.extend(plan.prune.iter().cloned());
    }
    inventory.sort();
    inventory.dedup_by(|a, b| a.id == b.id);
    report.inventory = inventory;
    if let (Some(timeout), None, false) = (options.wait, &report.error, options.dry_run) {
        (report.unhealthy, report.unhealthy_objects) = wait(client, &served, &plan, timeout).await;
        if !report.unhealthy.is_empty() {
            report.error = Some(format!(
                "not healthy after {}s: {}",
                timeout.as_secs(),
                report.unhealthy.join("; ")
            ));
        }
    }
    report
}

/// The live objects carrying `owner`'s labels among the kinds and
/// namespaces of `objects`.
async fn live_objects(
    client: &Client,
    served: &Served,
    plan: &ApplyPlan,
    objects: &[Desired],
    owner: &Owner,
) -> Result<HashMap<ObjectId, serde_json::Value>, ClusterError> {
    let selector = format!(
        "{OWNER_NAME}={},{OWNER_NAMESPACE}={}",
        owner.name, owner.namespace
    );
    let mut listed: BTreeSet<(String, String, Option<String>)> = BTreeSet::new();
    let mut live = HashMap::new();
    for d in objects {
        let scope = (
            d.api_version.clone(),
            d.id.kind.clone(),
            d.id.namespace.clone(),
        );
        if !listed.insert(scope) {
            continue;
        }
        // A kind whose CRD this sync has not applied yet has no objects.
        let Some(api) = api_for(client, served, plan, &d.api_version, &d.id) else {
            continue;
        };
        let list = match api.list(&ListParams::default().labels(&selector)).await {
            Ok(list) => list,
            Err(kube::Error::Api(e)) if e.code == 404 => continue,
            Err(source) => {
                return Err(ClusterError::List {
                    api_version: d.api_version.clone(),
                    kind: d.id.kind.clone(),
                    source,
                });
            }
        };
        for object in list.items {
            let mut value = serde_json::to_value(&object)?;
            // Items of built-in kinds come without apiVersion and kind.
            value["apiVersion"] = serde_json::json!(d.api_version);
            value["kind"] = serde_json::json!(d.id.kind);
            let id = ObjectId {
                group: d.id.group.clone(),
                kind: d.id.kind.clone(),
                namespace: object.metadata.namespace.clone(),
                name: object.metadata.name.clone().unwrap_or_default(),
            };
            live.insert(id, value);
        }
    }
    Ok(live)
}

/// Applies one object unless `live` (its labelled live state) already
/// holds every field of it. `known`: in the previous inventory, so an
/// object that is applied without a labelled live copy was changed or
/// recreated by someone, not created.
#[allow(clippy::too_many_arguments)]
async fn apply_one(
    client: &Client,
    served: &Served,
    plan: &ApplyPlan,
    d: &Desired,
    live: Option<&serde_json::Value>,
    known: bool,
    owner: &Owner,
    options: &SyncOptions,
) -> Result<Action, ClusterError> {
    let api = api_for(client, served, plan, &d.api_version, &d.id).ok_or_else(|| {
        ClusterError::NotServed {
            api_version: d.api_version.clone(),
            kind: d.id.kind.clone(),
        }
    })?;
    let mut object = d.object.clone();
    label(&mut object, owner);
    if live.is_some_and(|live| contains(live, &object)) {
        return Ok(Action::Unchanged);
    }
    let rehearse = PatchParams::apply(MANAGER).force().dry_run();
    // The server may write a field differently than the source does
    // (`cpu: 0.5` as `500m`, `{}` dropped): ask it what applying would
    // give, and write only if that differs from what is live.
    if let Some(live) = live {
        let after = api
            .patch(&d.id.name, &rehearse, &Patch::Apply(&object))
            .await?;
        let after = serde_json::to_value(&after)?;
        if same_object(live, &after) {
            return Ok(Action::Unchanged);
        }
        if options.dry_run {
            return Ok(Action::Configured);
        }
    }
    let params = if options.dry_run {
        rehearse
    } else {
        PatchParams::apply(MANAGER).force()
    };
    if let Err(e) = api.patch(&d.id.name, &params, &Patch::Apply(&object)).await {
        // A dry run cannot create an object in a Namespace or of a CRD
        // that this same sync would create first.
        if options.dry_run && matches!(&e, kube::Error::Api(r) if r.code == 404) {
            return Ok(Action::Created);
        }
        return Err(e.into());
    }
    Ok(if live.is_some() || known {
        Action::Configured
    } else {
        Action::Created
    })
}

/// What pruning did to one inventory entry.
enum Pruned {
    Deleted,
    /// Not hoist's to delete: another owner's labels, `hoist.dev/prune:
    /// disabled`, or a Namespace or CRD hoist did not create.
    Kept,
    /// No longer there.
    Gone,
}

/// Deletes `entry` if it still exists, carries this owner's labels and is
/// not marked `hoist.dev/prune: disabled`.
async fn prune_one(
    client: &Client,
    served: &Served,
    plan: &ApplyPlan,
    entry: &InventoryEntry,
    owner: &Owner,
    dry_run: bool,
) -> Result<Pruned, ClusterError> {
    let Some(api) = api_for(client, served, plan, &entry.api_version, &entry.id) else {
        // Not served under this version (any more): keep the entry rather
        // than lose track of the object.
        return Err(ClusterError::NotServed {
            api_version: entry.api_version.clone(),
            kind: entry.id.kind.clone(),
        });
    };
    let Some(live) = api.get_opt(&entry.id.name).await? else {
        return Ok(Pruned::Gone);
    };
    // A Namespace or CRD takes everything in it or of its kind along:
    // hoist deletes only those it created itself.
    if matches!(
        entry.id.kind.as_str(),
        "Namespace" | "CustomResourceDefinition"
    ) && !entry.created
    {
        return Ok(Pruned::Kept);
    }
    let labels = live.metadata.labels.clone().unwrap_or_default();
    let ours = labels.get(OWNER_NAME) == Some(&owner.name)
        && labels.get(OWNER_NAMESPACE) == Some(&owner.namespace);
    let disabled = live
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(PRUNE))
        .is_some_and(|v| v == "disabled");
    if !ours || disabled {
        return Ok(Pruned::Kept);
    }
    // Delete exactly the object whose labels were just read.
    let mut params = if dry_run {
        DeleteParams::default().dry_run()
    } else {
        DeleteParams::background()
    };
    params.preconditions = Some(kube::api::Preconditions {
        uid: live.metadata.uid.clone(),
        resource_version: live.metadata.resource_version.clone(),
    });
    api.delete(&entry.id.name, &params).await?;
    Ok(Pruned::Deleted)
}

/// What went wrong talking to the cluster while syncing one object.
#[derive(Debug, thiserror::Error)]
enum ClusterError {
    #[error("{}", api_error(.0))]
    Api(#[from] kube::Error),
    #[error("listing {api_version} {kind}: {}", api_error(.source))]
    List {
        api_version: String,
        kind: String,
        source: kube::Error,
    },
    #[error("the cluster serves no {api_version} {kind}")]
    NotServed { api_version: String, kind: String },
    #[error("CustomResourceDefinition {0} was not Established within 60s")]
    NotEstablished(String),
    #[error("{0}")]
    Json(#[from] serde_json::Error),
}

/// What the API server said, in its own words: for a refusal, the
/// message of its Status (which names the object, the user and what was
/// refused) and its reason, not the whole Status structure.
fn api_error(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) if !status.message.is_empty() => {
            if status.reason.is_empty() {
                status.message.clone()
            } else {
                format!("{} ({}, {})", status.message, status.reason, status.code)
            }
        }
        other => other.to_string(),
    }
}

/// Waits until the CRDs named are Established, so their kinds can be applied.
async fn established(client: &Client, names: &[String]) -> Result<(), ClusterError> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    for name in names {
        loop {
            let crd = api.get_opt(name).await?;
            let ready = crd
                .and_then(|c| c.status)
                .and_then(|s| s.conditions)
                .is_some_and(|c| {
                    c.iter()
                        .any(|c| c.type_ == "Established" && c.status == "True")
                });
            if ready {
                break;
            }
            if Instant::now() > deadline {
                return Err(ClusterError::NotEstablished(name.clone()));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    Ok(())
}

/// Polls the applied objects until all are healthy or `timeout` passes;
/// returns the unhealthy ones with why (and, apart, each one's id and the
/// verdict on its own status).
async fn wait(
    client: &Client,
    served: &Served,
    plan: &ApplyPlan,
    timeout: Duration,
) -> (Vec<String>, Vec<(ObjectId, String)>) {
    let deadline = Instant::now() + timeout;
    loop {
        let mut unhealthy = Vec::new();
        let mut objects = Vec::new();
        // The workloads among them, with their namespace and Pod selector.
        let mut workloads = Vec::new();
        let mut failed = false;
        for d in plan.first.iter().chain(&plan.then) {
            let Some(api) = api_for(client, served, plan, &d.api_version, &d.id) else {
                continue;
            };
            let (state, selector) = match api.get_opt(&d.id.name).await {
                Ok(Some(live)) => match serde_json::to_value(&live) {
                    Ok(live) => (
                        health::health(&d.id.group, &d.id.kind, &live),
                        health::pod_selector(&d.id.group, &d.id.kind, &live),
                    ),
                    Err(e) => (Health::Progressing(e.to_string()), None),
                },
                Ok(None) => (Health::Progressing("not found".into()), None),
                Err(e) => (Health::Progressing(api_error(&e)), None),
            };
            let why = match state {
                Health::Healthy => continue,
                Health::Progressing(why) => format!("{}: {why}", d.id),
                Health::Failed(why) => {
                    failed = true;
                    format!("{}: failed: {why}", d.id)
                }
            };
            if let (Some(selector), Some(namespace)) = (selector, d.id.namespace.clone()) {
                workloads.push((unhealthy.len(), namespace, selector));
            }
            objects.push((d.id.clone(), why.clone()));
            unhealthy.push(why);
        }
        // A failure will not heal by waiting.
        if unhealthy.is_empty() || failed || Instant::now() >= deadline {
            // Why, in the kubelet's words: one labelled list per stuck
            // workload, at the end only. Best effort: an identity that may
            // not list Pods gets the rollout counters alone.
            for (at, namespace, selector) in workloads {
                let pods: Api<k8s_openapi::api::core::v1::Pod> =
                    Api::namespaced(client.clone(), &namespace);
                // A page is enough to say why; a workload of thousands of
                // Pods is not read whole.
                let page = ListParams::default().labels(&selector).limit(50);
                let Ok(list) = pods.list(&page).await else {
                    continue;
                };
                let values: Vec<serde_json::Value> = list
                    .items
                    .iter()
                    .filter_map(|p| serde_json::to_value(p).ok())
                    .collect();
                let problems = health::pod_problems(&values, 3);
                if !problems.is_empty() {
                    unhealthy[at] = format!("{}; {}", unhealthy[at], problems.join("; "));
                }
            }
            return (unhealthy, objects);
        }
        tokio::time::sleep(
            Duration::from_secs(1).min(deadline.saturating_duration_since(Instant::now())),
        )
        .await;
    }
}
