//! An in-process fake of the Kubernetes API server, for the calls a
//! controller and a sync loop make: discovery, GET / LIST / WATCH with
//! resourceVersions and label selectors, create / replace / patch / delete,
//! the status subresource, server-side apply with field managers and
//! conflicts, JSON merge and strategic merge patches (as merge patches),
//! server-side dry runs, Leases, Events, and CRDs that add their kinds to
//! discovery. It records every request.
//!
//! Field ownership is tracked per leaf (objects are walked, lists and
//! scalars are leaves): an apply without `force` that changes a leaf
//! another manager owns is a 409 Conflict, and a leaf a manager applied
//! before and leaves out now is removed — what SSA promises for the shapes
//! hoist writes. Lists are atomic (no merge keys).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value, json};

use super::http::{FakeServer, Reply, Request};

/// A kind the fake serves.
#[derive(Clone, Debug)]
pub struct Kind {
    /// "" for the core group.
    pub group: String,
    pub version: String,
    pub plural: String,
    pub kind: String,
    pub namespaced: bool,
    /// Whether `.status` is a subresource (writes to the object ignore it).
    pub status: bool,
    /// Defined by a CRD. Lists of built-in kinds, as the real server sends
    /// them, carry no apiVersion and kind on their items.
    pub custom: bool,
}

impl Kind {
    fn new(
        group: &str,
        version: &str,
        plural: &str,
        kind: &str,
        namespaced: bool,
        status: bool,
    ) -> Kind {
        Kind {
            group: group.into(),
            version: version.into(),
            plural: plural.into(),
            kind: kind.into(),
            namespaced,
            status,
            custom: false,
        }
    }

    fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `group/version/plural`: the key objects are stored under.
    fn resource(&self) -> String {
        format!("{}/{}/{}", self.group, self.version, self.plural)
    }
}

fn builtin_kinds() -> Vec<Kind> {
    vec![
        Kind::new("", "v1", "namespaces", "Namespace", false, true),
        Kind::new("", "v1", "secrets", "Secret", true, false),
        Kind::new("", "v1", "configmaps", "ConfigMap", true, false),
        Kind::new("", "v1", "services", "Service", true, true),
        Kind::new("", "v1", "serviceaccounts", "ServiceAccount", true, false),
        Kind::new("", "v1", "events", "Event", true, false),
        Kind::new("", "v1", "pods", "Pod", true, true),
        Kind::new("apps", "v1", "deployments", "Deployment", true, true),
        Kind::new("apps", "v1", "statefulsets", "StatefulSet", true, true),
        Kind::new("apps", "v1", "daemonsets", "DaemonSet", true, true),
        Kind::new("batch", "v1", "jobs", "Job", true, true),
        Kind::new("coordination.k8s.io", "v1", "leases", "Lease", true, false),
        Kind::new("events.k8s.io", "v1", "events", "Event", true, false),
        Kind::new(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterroles",
            "ClusterRole",
            false,
            false,
        ),
        Kind::new(
            "rbac.authorization.k8s.io",
            "v1",
            "roles",
            "Role",
            true,
            false,
        ),
        Kind::new(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            false,
            true,
        ),
    ]
}

/// One stored object and who owns which of its leaves.
#[derive(Clone, Debug)]
struct Stored {
    object: Value,
    /// Leaf path (`spec.replicas`) → field manager.
    owners: BTreeMap<String, Owner>,
}

#[derive(Clone, Debug, PartialEq)]
struct Owner {
    manager: String,
    applied: bool,
}

/// An open watch.
struct Watcher {
    resource: String,
    namespace: Option<String>,
    selector: Option<String>,
    sender: Sender<Vec<u8>>,
}

/// Everything the fake holds.
#[derive(Default)]
struct World {
    kinds: Vec<Kind>,
    /// (resource, namespace, name) → object.
    objects: BTreeMap<(String, String, String), Stored>,
    revision: u64,
    /// Every change, for watches that start at an older resourceVersion.
    log: Vec<(u64, String, String, &'static str, Value)>,
    watchers: Vec<Watcher>,
}

/// What went wrong, as a `Status` answer.
struct Failure {
    code: u16,
    reason: &'static str,
    message: String,
}

fn failure(code: u16, reason: &'static str, message: impl Into<String>) -> Failure {
    Failure {
        code,
        reason,
        message: message.into(),
    }
}

impl Failure {
    fn reply(&self) -> Reply {
        Reply::json(
            self.code,
            &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": self.message, "reason": self.reason, "code": self.code})
            .to_string(),
        )
    }
}

/// How a write changes an object.
enum Write {
    Create(Value),
    Replace(Value),
    Merge(Value),
    Apply { config: Value, force: bool },
}

/// A running fake API server and a kubeconfig that points at it.
pub struct FakeKube {
    pub server: FakeServer,
    world: Arc<Mutex<World>>,
    pub kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

fn leaves(value: &Value, prefix: &str, out: &mut BTreeMap<String, Value>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaves(v, &path, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}

/// Leaves hoist-written objects carry that no manager owns.
fn unowned(path: &str) -> bool {
    matches!(path, "apiVersion" | "kind")
        || path.starts_with("metadata.")
            && !path.starts_with("metadata.labels.")
            && !path.starts_with("metadata.annotations.")
}

fn get_path<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(value, |v, k| v.get(k))
}

fn remove_path(value: &mut Value, path: &str) {
    let parts: Vec<&str> = path.split('.').collect();
    fn go(value: &mut Value, parts: &[&str]) {
        let Some(map) = value.as_object_mut() else {
            return;
        };
        match parts {
            [last] => {
                map.remove(*last);
            }
            [first, rest @ ..] => {
                if let Some(child) = map.get_mut(*first) {
                    go(child, rest);
                    if child.as_object().is_some_and(Map::is_empty) {
                        map.remove(*first);
                    }
                }
            }
            [] => {}
        }
    }
    go(value, &parts);
}

/// RFC 7386: objects merge, `null` deletes, everything else replaces.
fn merge(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (_, Some(p)) => {
            *target = Value::Object(Map::new());
            merge(target, &Value::Object(p.clone()));
        }
        _ => *target = patch.clone(),
    }
}

/// `k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)`, `k notin (a,b)`.
pub fn selector_matches(selector: &str, labels: &Map<String, Value>) -> bool {
    let mut terms = Vec::new();
    let mut depth = 0;
    let mut current = String::new();
    for c in selector.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    terms.push(current);
    let label = |k: &str| labels.get(k.trim()).and_then(Value::as_str);
    terms
        .iter()
        .map(|t| t.trim())
        .filter(|t| !t.is_empty())
        .all(|term| {
            let set = |rest: &str| -> Vec<String> {
                rest.trim()
                    .trim_start_matches('(')
                    .trim_end_matches(')')
                    .split(',')
                    .map(|v| v.trim().to_string())
                    .collect()
            };
            if let Some((k, v)) = term.split_once("!=") {
                label(k) != Some(v.trim())
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                label(k) == Some(v.trim())
            } else if let Some((k, rest)) = term.split_once(" notin ") {
                label(k).is_none_or(|l| !set(rest).iter().any(|v| v == l))
            } else if let Some((k, rest)) = term.split_once(" in ") {
                label(k).is_some_and(|l| set(rest).iter().any(|v| v == l))
            } else if let Some(k) = term.strip_prefix('!') {
                label(k).is_none()
            } else {
                label(term).is_some()
            }
        })
}

fn now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    jiff::Timestamp::from_second(secs as i64)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

impl World {
    fn kind(&self, group: &str, version: &str, plural: &str) -> Option<Kind> {
        self.kinds
            .iter()
            .find(|k| k.group == group && k.version == version && k.plural == plural)
            .cloned()
    }

    fn matches(&self, watcher_ns: Option<&str>, selector: Option<&str>, object: &Value) -> bool {
        let ns = object["metadata"]["namespace"].as_str().unwrap_or("");
        let empty = Map::new();
        let labels = object["metadata"]["labels"].as_object().unwrap_or(&empty);
        watcher_ns.is_none_or(|w| w == ns) && selector.is_none_or(|s| selector_matches(s, labels))
    }

    /// Records a change and tells the watches that want it.
    fn notify(&mut self, resource: &str, kind: &'static str, object: &Value) {
        let ns = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string();
        self.log.push((
            self.revision,
            resource.to_string(),
            ns,
            kind,
            object.clone(),
        ));
        let line = format!("{}\n", json!({"type": kind, "object": object}));
        let mut open = Vec::new();
        for w in std::mem::take(&mut self.watchers) {
            let wanted = w.resource == resource
                && self.matches(w.namespace.as_deref(), w.selector.as_deref(), object);
            if wanted && w.sender.send(line.clone().into_bytes()).is_err() {
                continue;
            }
            open.push(w);
        }
        self.watchers = open;
    }

    /// A CRD adds its kinds; the fake establishes it at once.
    fn register_crd(&mut self, crd: &mut Value) {
        let spec = &crd["spec"];
        let group = spec["group"].as_str().unwrap_or("").to_string();
        let plural = spec["names"]["plural"].as_str().unwrap_or("").to_string();
        let kind = spec["names"]["kind"].as_str().unwrap_or("").to_string();
        let namespaced = spec["scope"] == "Namespaced";
        for version in spec["versions"].as_array().into_iter().flatten() {
            let name = version["name"].as_str().unwrap_or("").to_string();
            if self.kind(&group, &name, &plural).is_none() {
                self.kinds.push(Kind {
                    group: group.clone(),
                    version: name,
                    plural: plural.clone(),
                    kind: kind.clone(),
                    namespaced,
                    status: version["subresources"]["status"].is_object(),
                    custom: true,
                });
            }
        }
        crd["status"] = json!({"conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "lastTransitionTime": now()},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "lastTransitionTime": now()}],
            "acceptedNames": spec["names"].clone()});
    }

    /// Applies one write to the object at (`kind`, `ns`, `name`), on the
    /// object itself or on its status subresource.
    #[allow(clippy::too_many_arguments)]
    fn write(
        &mut self,
        kind: &Kind,
        ns: &str,
        name: &str,
        status: bool,
        write: Write,
        manager: &str,
        dry_run: bool,
    ) -> Result<(Value, bool), Failure> {
        let key = (kind.resource(), ns.to_string(), name.to_string());
        // A stand-in for an admission webhook that denies a write: objects
        // annotated `fake.hoist.dev/reject: REASON` are refused.
        let body = match &write {
            Write::Create(b) | Write::Replace(b) | Write::Merge(b) => b,
            Write::Apply { config, .. } => config,
        };
        if let Some(reason) = body["metadata"]["annotations"]["fake.hoist.dev/reject"].as_str() {
            return Err(failure(
                422,
                "Invalid",
                format!("admission webhook \"deny.fake\" denied the request: {reason}"),
            ));
        }
        let existing = self.objects.get(&key).cloned();
        // Which part of the object this write may touch.
        let in_scope = |path: &str| {
            if !kind.status {
                true
            } else if status {
                path == "status" || path.starts_with("status.")
            } else {
                path != "status" && !path.starts_with("status.")
            }
        };
        let scoped = |value: &Value| -> Value {
            let mut value = value.clone();
            if kind.status
                && let Some(map) = value.as_object_mut()
            {
                if status {
                    let kept = map.remove("status");
                    map.retain(|k, _| k == "metadata" || k == "apiVersion" || k == "kind");
                    if let Some(kept) = kept {
                        map.insert("status".into(), kept);
                    }
                } else {
                    map.remove("status");
                }
            }
            value
        };
        let created = existing.is_none();
        let mut stored = match (&write, existing) {
            (Write::Create(_), Some(_)) => {
                return Err(failure(
                    409,
                    "AlreadyExists",
                    format!("{} \"{name}\" already exists", kind.plural),
                ));
            }
            (Write::Replace(_) | Write::Merge(_), None) => {
                return Err(failure(
                    404,
                    "NotFound",
                    format!("{} \"{name}\" not found", kind.plural),
                ));
            }
            (_, Some(stored)) => stored,
            (_, None) if status => {
                return Err(failure(
                    404,
                    "NotFound",
                    format!("{} \"{name}\" not found", kind.plural),
                ));
            }
            (_, None) => Stored {
                object: json!({"apiVersion": kind.api_version(), "kind": kind.kind, "metadata": {"name": name}}),
                owners: BTreeMap::new(),
            },
        };
        let before = stored.object.clone();
        let mut before_leaves = BTreeMap::new();
        leaves(&before, "", &mut before_leaves);
        match write {
            Write::Create(body) | Write::Replace(body) => {
                let expected = body["metadata"]["resourceVersion"]
                    .as_str()
                    .map(str::to_string);
                if let (Some(expected), false) = (&expected, created)
                    && before["metadata"]["resourceVersion"].as_str() != Some(expected)
                {
                    return Err(failure(
                        409,
                        "Conflict",
                        format!(
                            "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                            kind.plural
                        ),
                    ));
                }
                let body = scoped(&body);
                let mut next = before.clone();
                // Replace the part in scope; keep the rest.
                if let Some(map) = next.as_object_mut() {
                    let keep: Vec<String> = map
                        .keys()
                        .filter(|k| !in_scope(k) || k.as_str() == "metadata")
                        .cloned()
                        .collect();
                    map.retain(|k, _| keep.contains(k));
                }
                for (k, v) in body.as_object().into_iter().flatten() {
                    if k == "metadata" {
                        for field in ["labels", "annotations", "finalizers", "ownerReferences"] {
                            match v.get(field) {
                                Some(value) if !status => next["metadata"][field] = value.clone(),
                                None if !status => {
                                    if let Some(m) = next["metadata"].as_object_mut() {
                                        m.remove(field);
                                    }
                                }
                                _ => {}
                            }
                        }
                    } else if in_scope(k) {
                        next[k.as_str()] = v.clone();
                    }
                }
                stored.object = next;
            }
            Write::Merge(patch) => {
                let patch = scoped(&patch);
                let mut next = before.clone();
                merge(&mut next, &patch);
                stored.object = next;
            }
            Write::Apply { config, force } => {
                let config = scoped(&config);
                let mut applied = BTreeMap::new();
                leaves(&config, "", &mut applied);
                applied.retain(|p, _| !unowned(p) && in_scope(p));
                let conflicts: Vec<String> = applied
                    .iter()
                    .filter(|(path, value)| {
                        stored
                            .owners
                            .get(*path)
                            .is_some_and(|o| o.manager != manager)
                            && get_path(&before, path).is_some_and(|v| v != *value)
                    })
                    .map(|(path, _)| {
                        format!(
                            "conflict with \"{}\": .{path}",
                            stored
                                .owners
                                .get(path)
                                .map(|o| o.manager.as_str())
                                .unwrap_or("")
                        )
                    })
                    .collect();
                if !conflicts.is_empty() && !force {
                    return Err(failure(
                        409,
                        "Conflict",
                        format!(
                            "Apply failed with {} conflict(s): {}",
                            conflicts.len(),
                            conflicts.join("; ")
                        ),
                    ));
                }
                let mut next = before.clone();
                // What this manager applied before and leaves out now goes.
                let dropped: Vec<String> = stored
                    .owners
                    .iter()
                    .filter(|(p, o)| o.manager == manager && o.applied && in_scope(p))
                    .filter(|(p, _)| !applied.contains_key(*p))
                    .map(|(p, _)| p.clone())
                    .collect();
                for path in &dropped {
                    remove_path(&mut next, path);
                    stored.owners.remove(path);
                }
                merge(&mut next, &config);
                for path in applied.keys() {
                    stored.owners.insert(
                        path.clone(),
                        Owner {
                            manager: manager.to_string(),
                            applied: true,
                        },
                    );
                }
                stored.object = next;
            }
        }
        // Like the real server, no empty labels or annotations are kept.
        if let Some(meta) = stored.object["metadata"].as_object_mut() {
            meta.retain(|k, v| {
                !(matches!(k.as_str(), "labels" | "annotations")
                    && v.as_object().is_some_and(Map::is_empty))
            });
        }
        // Identity and bookkeeping are the server's.
        let metadata = &mut stored.object["metadata"];
        metadata["name"] = json!(name);
        if kind.namespaced {
            metadata["namespace"] = json!(ns);
        } else if let Some(m) = metadata.as_object_mut() {
            m.remove("namespace");
        }
        for field in ["uid", "creationTimestamp", "generation"] {
            match before["metadata"].get(field) {
                Some(value) => metadata[field] = value.clone(),
                None => {
                    if let Some(m) = metadata.as_object_mut() {
                        m.remove(field);
                    }
                }
            }
        }
        stored.object["apiVersion"] = json!(kind.api_version());
        stored.object["kind"] = json!(kind.kind);
        let outside = |v: &Value| {
            let mut v = v.clone();
            if let Some(m) = v.as_object_mut() {
                m.remove("metadata");
                m.remove("status");
            }
            v
        };
        if created {
            stored.object["metadata"]["uid"] = json!(format!("uid-{}-{name}", self.revision + 1));
            stored.object["metadata"]["creationTimestamp"] = json!(now());
            stored.object["metadata"]["generation"] = json!(1);
        } else if outside(&before) != outside(&stored.object) {
            let generation = before["metadata"]["generation"].as_i64().unwrap_or(1);
            stored.object["metadata"]["generation"] = json!(generation + 1);
        }
        if kind.resource() == "apiextensions.k8s.io/v1/customresourcedefinitions" && !dry_run {
            self.register_crd(&mut stored.object);
        }
        // Update operations own what they changed.
        let mut after_leaves = BTreeMap::new();
        leaves(&stored.object, "", &mut after_leaves);
        for (path, value) in &after_leaves {
            if !unowned(path)
                && before_leaves.get(path) != Some(value)
                && stored.owners.get(path).is_none_or(|o| o.manager != manager)
            {
                stored.owners.insert(
                    path.clone(),
                    Owner {
                        manager: manager.to_string(),
                        applied: false,
                    },
                );
            }
        }
        stored.owners.retain(|p, _| after_leaves.contains_key(p));
        let changed = created || stored.object != before;
        if !changed {
            return Ok((stored.object, false));
        }
        if dry_run {
            return Ok((stored.object, true));
        }
        self.revision += 1;
        stored.object["metadata"]["resourceVersion"] = json!(self.revision.to_string());
        let object = stored.object.clone();
        self.objects.insert(key, stored);
        self.notify(
            &kind.resource(),
            if created { "ADDED" } else { "MODIFIED" },
            &object,
        );
        Ok((object, true))
    }

    fn delete(
        &mut self,
        kind: &Kind,
        ns: &str,
        name: &str,
        dry_run: bool,
    ) -> Result<Value, Failure> {
        let key = (kind.resource(), ns.to_string(), name.to_string());
        let Some(stored) = self.objects.get(&key).cloned() else {
            return Err(failure(
                404,
                "NotFound",
                format!("{} \"{name}\" not found", kind.plural),
            ));
        };
        if dry_run {
            return Ok(stored.object);
        }
        self.objects.remove(&key);
        self.revision += 1;
        let mut object = stored.object;
        object["metadata"]["resourceVersion"] = json!(self.revision.to_string());
        self.notify(&kind.resource(), "DELETED", &object);
        Ok(object)
    }

    fn list(&self, kind: &Kind, ns: Option<&str>, selector: Option<&str>) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|((r, _, _), _)| *r == kind.resource())
            .map(|(_, s)| &s.object)
            .filter(|o| self.matches(ns, selector, o))
            .cloned()
            .collect()
    }
}

/// A request's path, taken apart.
struct Target {
    kind: Kind,
    namespace: Option<String>,
    name: Option<String>,
    status: bool,
}

fn param(request: &Request, name: &str) -> Option<String> {
    let query = request.target.split_once('?').map_or("", |(_, q)| q);
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

impl FakeKube {
    pub fn start() -> FakeKube {
        let world = Arc::new(Mutex::new(World {
            kinds: builtin_kinds(),
            ..World::default()
        }));
        let shared = Arc::clone(&world);
        let server = FakeServer::start(move |request: &Request, _| {
            let Ok(mut world) = shared.lock() else {
                return failure(500, "InternalError", "poisoned").reply();
            };
            handle(&mut world, request)
        });
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster: {{server: 'http://{}'}}\ncontexts:\n- name: fake\n  context: {{cluster: fake, user: fake, namespace: default}}\ncurrent-context: fake\nusers:\n- name: fake\n  user: {{token: fake-token}}\n",
                server.addr
            ),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        FakeKube {
            server,
            world,
            kubeconfig,
            _dir: dir,
        }
    }

    fn locate(&self, api_version: &str, kind: &str) -> Kind {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let world = self.world.lock().unwrap_or_else(|e| e.into_inner());
        world
            .kinds
            .iter()
            .find(|k| k.group == group && k.version == version && k.kind == kind)
            .cloned()
            .unwrap_or_else(|| panic!("the fake serves no {api_version} {kind}"))
    }

    /// Creates or updates an object as `kubectl apply --server-side` would
    /// (manager `kubectl`), status included when `status` is set.
    pub fn apply(&self, object: Value) -> Value {
        let kind = self.locate(
            object["apiVersion"].as_str().unwrap_or(""),
            object["kind"].as_str().unwrap_or(""),
        );
        let ns = if kind.namespaced {
            object["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_string()
        } else {
            String::new()
        };
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let mut world = self.world.lock().unwrap_or_else(|e| e.into_inner());
        let write = |world: &mut World, status: bool| {
            world.write(
                &kind,
                &ns,
                &name,
                status,
                Write::Apply {
                    config: object.clone(),
                    force: true,
                },
                "kubectl",
                false,
            )
        };
        let (mut stored, _) = write(&mut world, false).unwrap_or_else(|f| panic!("{}", f.message));
        if kind.status && object.get("status").is_some() {
            stored = write(&mut world, true)
                .unwrap_or_else(|f| panic!("{}", f.message))
                .0;
        }
        stored
    }

    /// The object, if it exists.
    pub fn get(&self, api_version: &str, kind: &str, ns: &str, name: &str) -> Option<Value> {
        let kind = self.locate(api_version, kind);
        let world = self.world.lock().unwrap_or_else(|e| e.into_inner());
        let ns = if kind.namespaced { ns } else { "" };
        world
            .objects
            .get(&(kind.resource(), ns.to_string(), name.to_string()))
            .map(|s| s.object.clone())
    }

    /// Every object of a kind.
    pub fn list(&self, api_version: &str, kind: &str) -> Vec<Value> {
        let kind = self.locate(api_version, kind);
        let world = self.world.lock().unwrap_or_else(|e| e.into_inner());
        world.list(&kind, None, None)
    }

    /// Deletes an object, as `kubectl delete` would.
    pub fn delete(&self, api_version: &str, kind: &str, ns: &str, name: &str) {
        let kind = self.locate(api_version, kind);
        let mut world = self.world.lock().unwrap_or_else(|e| e.into_inner());
        let ns = if kind.namespaced { ns } else { "" };
        let _ = world.delete(&kind, ns, name, false);
    }

    /// `METHOD target` of every request so far.
    pub fn calls(&self) -> Vec<String> {
        self.server
            .requests()
            .iter()
            .map(|r| format!("{} {}", r.method, r.target))
            .collect()
    }
}

fn discovery(world: &World, path: &str) -> Option<Reply> {
    let resources = |group: &str, version: &str| -> Value {
        let mut list = Vec::new();
        for k in world
            .kinds
            .iter()
            .filter(|k| k.group == group && k.version == version)
        {
            list.push(json!({"name": k.plural, "singularName": k.kind.to_lowercase(), "namespaced": k.namespaced,
                "kind": k.kind, "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]}));
            if k.status {
                list.push(json!({"name": format!("{}/status", k.plural), "singularName": "", "namespaced": k.namespaced,
                    "kind": k.kind, "verbs": ["get", "patch", "update"]}));
            }
        }
        json!({"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": if group.is_empty() { version.to_string() } else { format!("{group}/{version}") },
            "resources": list})
    };
    let body = match path.trim_end_matches('/') {
        // The server's version, as kube-apiserver answers GET /version.
        "/version" => json!({"major": "1", "minor": "36", "gitVersion": "v1.36.0-fake",
            "platform": "linux/amd64"}),
        "/api" => {
            json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})
        }
        "/api/v1" => resources("", "v1"),
        "/apis" => {
            let mut groups: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
            for k in world.kinds.iter().filter(|k| !k.group.is_empty()) {
                let versions = groups.entry(&k.group).or_default();
                if !versions.contains(&k.version.as_str()) {
                    versions.push(&k.version);
                }
            }
            let groups: Vec<Value> = groups
                .into_iter()
                .map(|(g, vs)| {
                    let versions: Vec<Value> = vs
                        .iter()
                        .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
                        .collect();
                    json!({"name": g, "versions": versions, "preferredVersion": versions[0]})
                })
                .collect();
            json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        }
        other => {
            let rest = other.strip_prefix("/apis/")?;
            let (group, version) = rest.split_once('/')?;
            if version.contains('/')
                || !world
                    .kinds
                    .iter()
                    .any(|k| k.group == group && k.version == version)
            {
                return None;
            }
            resources(group, version)
        }
    };
    Some(Reply::json(200, &body.to_string()))
}

fn parse_target(world: &World, path: &str) -> Result<Target, Failure> {
    let not_found = || {
        failure(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        )
    };
    let (group, version, rest) = if let Some(rest) = path.strip_prefix("/api/") {
        let (version, rest) = rest.split_once('/').ok_or_else(not_found)?;
        ("", version, rest)
    } else if let Some(rest) = path.strip_prefix("/apis/") {
        let mut parts = rest.splitn(3, '/');
        let (Some(g), Some(v), Some(rest)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(not_found());
        };
        (g, v, rest)
    } else {
        return Err(not_found());
    };
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let (namespace, segments) = match segments.as_slice() {
        ["namespaces", ns, plural, rest @ ..]
            if world
                .kind(group, version, plural)
                .is_some_and(|k| k.namespaced) =>
        {
            (Some(ns.to_string()), [&[*plural][..], rest].concat())
        }
        _ => (None, segments),
    };
    let (plural, name, sub) = match segments.as_slice() {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(name.to_string()), None),
        [plural, name, sub] => (*plural, Some(name.to_string()), Some(*sub)),
        _ => return Err(not_found()),
    };
    let kind = world.kind(group, version, plural).ok_or_else(not_found)?;
    if sub.is_some_and(|s| s != "status" || !kind.status) {
        return Err(not_found());
    }
    Ok(Target {
        kind,
        namespace,
        name,
        status: sub.is_some(),
    })
}

fn handle(world: &mut World, request: &Request) -> Reply {
    if request.method == "GET"
        && let Some(reply) = discovery(world, request.path())
    {
        return reply;
    }
    let target = match parse_target(world, request.path()) {
        Ok(t) => t,
        Err(f) => return f.reply(),
    };
    let kind = target.kind.clone();
    let ns = target.namespace.clone().unwrap_or_default();
    let dry_run = param(request, "dryRun").is_some_and(|d| d == "All");
    let manager = param(request, "fieldManager").unwrap_or_else(|| "unknown".into());
    let body: Value = if request.body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&request.body) {
            Ok(v) => v,
            Err(e) => {
                return failure(400, "BadRequest", format!("the body is not JSON: {e}")).reply();
            }
        }
    };
    let respond = |result: Result<(Value, bool), Failure>, created: u16| match result {
        Ok((object, _)) => Reply::json(created, &object.to_string()),
        Err(f) => f.reply(),
    };
    match (request.method.as_str(), &target.name) {
        ("GET", None) => {
            let selector = param(request, "labelSelector").filter(|s| !s.is_empty());
            if param(request, "watch").is_some_and(|w| w == "true" || w == "1") {
                let since: u64 = param(request, "resourceVersion")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let (sender, receiver) = std::sync::mpsc::channel();
                for (rv, resource, object_ns, event, object) in &world.log {
                    if *rv > since
                        && *resource == kind.resource()
                        && target.namespace.as_ref().is_none_or(|n| n == object_ns)
                        && world.matches(None, selector.as_deref(), object)
                    {
                        let line = format!("{}\n", json!({"type": event, "object": object}));
                        let _ = sender.send(line.into_bytes());
                    }
                }
                let timeout = param(request, "timeoutSeconds")
                    .and_then(|t| t.parse::<u64>().ok())
                    .unwrap_or(300);
                // The watch ends after its timeout, as the real server's do:
                // a clone of the sender keeps it open until then.
                let keeper = sender.clone();
                std::thread::spawn(move || {
                    std::thread::sleep(std::time::Duration::from_secs(timeout));
                    drop(keeper);
                });
                world.watchers.push(Watcher {
                    resource: kind.resource(),
                    namespace: target.namespace.clone(),
                    selector,
                    sender,
                });
                return Reply::Stream {
                    status: 200,
                    headers: vec![("Content-Type".into(), "application/json".into())],
                    chunks: receiver,
                };
            }
            let mut items = world.list(&kind, target.namespace.as_deref(), selector.as_deref());
            if !kind.custom {
                for item in &mut items {
                    if let Some(map) = item.as_object_mut() {
                        map.remove("apiVersion");
                        map.remove("kind");
                    }
                }
            }
            Reply::json(
                200,
                &json!({"kind": format!("{}List", kind.kind), "apiVersion": kind.api_version(),
                    "metadata": {"resourceVersion": world.revision.to_string()}, "items": items})
                .to_string(),
            )
        }
        ("GET", Some(name)) => {
            match world
                .objects
                .get(&(kind.resource(), ns.clone(), name.clone()))
            {
                Some(s) => Reply::json(200, &s.object.to_string()),
                None => failure(
                    404,
                    "NotFound",
                    format!("{}.{} \"{name}\" not found", kind.plural, kind.group),
                )
                .reply(),
            }
        }
        ("POST", None) => {
            let Some(name) = body["metadata"]["name"].as_str().map(str::to_string) else {
                return failure(422, "Invalid", "metadata.name: Required value").reply();
            };
            respond(
                world.write(
                    &kind,
                    &ns,
                    &name,
                    false,
                    Write::Create(body),
                    &manager,
                    dry_run,
                ),
                201,
            )
        }
        ("PUT", Some(name)) => respond(
            world.write(
                &kind,
                &ns,
                name,
                target.status,
                Write::Replace(body),
                &manager,
                dry_run,
            ),
            200,
        ),
        ("PATCH", Some(name)) => {
            let content_type = request.header("content-type").unwrap_or("");
            let write = match content_type.split(';').next().unwrap_or("").trim() {
                "application/apply-patch+yaml" => {
                    if manager == "unknown" {
                        return failure(
                            400,
                            "BadRequest",
                            "PATCH with apply requires fieldManager",
                        )
                        .reply();
                    }
                    Write::Apply {
                        config: body,
                        force: param(request, "force").is_some_and(|f| f == "true"),
                    }
                }
                "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
                    Write::Merge(body)
                }
                other => {
                    return failure(
                        415,
                        "UnsupportedMediaType",
                        format!("the fake does not take {other}"),
                    )
                    .reply();
                }
            };
            let created = !world
                .objects
                .contains_key(&(kind.resource(), ns.clone(), name.clone()));
            respond(
                world.write(&kind, &ns, name, target.status, write, &manager, dry_run),
                if created { 201 } else { 200 },
            )
        }
        ("DELETE", Some(name)) => match world.delete(&kind, &ns, name, dry_run) {
            Ok(object) => Reply::json(200, &object.to_string()),
            Err(f) => f.reply(),
        },
        _ => failure(405, "MethodNotAllowed", "the fake does not serve this").reply(),
    }
}
