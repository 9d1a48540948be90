//! The pure half of the sync stage: the objects of a source and the
//! previous inventory in, an [`ApplyPlan`] out. No cluster, no files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

pub use crate::model::{InventoryEntry, ObjectId};

/// An object of the source, as read from a file.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    pub id: ObjectId,
    pub api_version: String,
    /// The document, with its namespace filled in.
    pub object: serde_json::Value,
    /// Where it came from, for errors.
    pub file: PathBuf,
}

/// How discovery (or a CRD in the source) says a kind is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Namespaced,
    Cluster,
}

/// What to do, in order: Namespaces and CRDs first (a CRD must be
/// Established before its objects can be applied), then the rest; and
/// which objects of the previous inventory are gone from the source.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ApplyPlan {
    /// Namespaces and CustomResourceDefinitions.
    pub first: Vec<Desired>,
    pub then: Vec<Desired>,
    /// In the previous inventory, not in the source: candidates for
    /// pruning (the apply stage checks each one's labels and annotations).
    pub prune: Vec<InventoryEntry>,
    /// Kinds no API serves yet but a CRD in the source defines.
    pub defined_here: BTreeSet<(String, String)>,
}

/// A document that cannot be planned.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", file.display())]
pub struct PlanError {
    pub file: PathBuf,
    pub message: String,
}

/// `group` of an apiVersion (`apps/v1` → `apps`, `v1` → "").
pub fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(g, _)| g)
}

/// Reads one parsed document: apiVersion, kind and metadata.name are
/// required; the namespace is taken as written (filled in by [`plan`]).
pub fn desired(file: PathBuf, object: serde_json::Value) -> Result<Desired, PlanError> {
    let text = |v: &serde_json::Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_string);
    let missing = |field: &str| PlanError {
        file: file.clone(),
        message: format!(
            "a document without {field}: every object needs apiVersion, kind and metadata.name"
        ),
    };
    let api_version = text(&object["apiVersion"]).ok_or_else(|| missing("apiVersion"))?;
    let kind = text(&object["kind"]).ok_or_else(|| missing("kind"))?;
    let name = text(&object["metadata"]["name"]).ok_or_else(|| missing("metadata.name"))?;
    Ok(Desired {
        id: ObjectId {
            group: group_of(&api_version).to_string(),
            kind,
            namespace: text(&object["metadata"]["namespace"]),
            name,
        },
        api_version,
        object,
        file,
    })
}

/// The (group, kind) → scope a CRD document defines.
fn crd_kind(object: &serde_json::Value) -> Option<((String, String), Scope)> {
    let spec = &object["spec"];
    let group = spec["group"].as_str()?.to_string();
    let kind = spec["names"]["kind"].as_str()?.to_string();
    let scope = if spec["scope"] == "Cluster" {
        Scope::Cluster
    } else {
        Scope::Namespaced
    };
    Some(((group, kind), scope))
}

fn is_crd(d: &Desired) -> bool {
    d.id.group == "apiextensions.k8s.io" && d.id.kind == "CustomResourceDefinition"
}

/// Plans a sync. `served` says how the cluster serves an apiVersion and
/// kind (None: no such API); kinds defined by a CRD in the source count
/// as served. Namespaced objects without a namespace get `default_ns`; a
/// cluster-scoped object with one loses it. Every problem is reported, and
/// none is applied when there is one.
pub fn plan(
    source: Vec<Desired>,
    served: impl Fn(&str, &str) -> Option<Scope>,
    default_ns: &str,
    previous: &[InventoryEntry],
) -> Result<ApplyPlan, Vec<PlanError>> {
    let defined: BTreeMap<(String, String), Scope> = source
        .iter()
        .filter(|d| is_crd(d))
        .filter_map(|d| crd_kind(&d.object))
        .collect();
    let mut errors = Vec::new();
    let mut seen: BTreeMap<ObjectId, PathBuf> = BTreeMap::new();
    let mut result = ApplyPlan::default();
    for mut d in source {
        let scope = match served(&d.api_version, &d.id.kind) {
            Some(scope) => scope,
            None => match defined.get(&(d.id.group.clone(), d.id.kind.clone())) {
                Some(scope) => {
                    result
                        .defined_here
                        .insert((d.id.group.clone(), d.id.kind.clone()));
                    *scope
                }
                None => {
                    errors.push(PlanError {
                        file: d.file.clone(),
                        message: format!(
                            "{} {}: the cluster serves no {} {} and no CRD here defines it",
                            d.id.kind, d.id.name, d.api_version, d.id.kind
                        ),
                    });
                    continue;
                }
            },
        };
        match scope {
            Scope::Namespaced => {
                let ns =
                    d.id.namespace
                        .clone()
                        .unwrap_or_else(|| default_ns.to_string());
                d.object["metadata"]["namespace"] = serde_json::json!(ns);
                d.id.namespace = Some(ns);
            }
            Scope::Cluster => {
                if let Some(meta) = d.object["metadata"].as_object_mut() {
                    meta.remove("namespace");
                }
                d.id.namespace = None;
            }
        }
        if let Some(first) = seen.get(&d.id) {
            errors.push(PlanError {
                file: d.file.clone(),
                message: format!(
                    "{} is defined twice; the other is in {}",
                    d.id,
                    first.display()
                ),
            });
            continue;
        }
        seen.insert(d.id.clone(), d.file.clone());
        if is_crd(&d) || (d.id.group.is_empty() && d.id.kind == "Namespace") {
            result.first.push(d);
        } else {
            result.then.push(d);
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    // Namespaces before CRDs; then sources in a stable order.
    result
        .first
        .sort_by(|a, b| (is_crd(a), &a.id).cmp(&(is_crd(b), &b.id)));
    result.then.sort_by(|a, b| a.id.cmp(&b.id));
    result.prune = previous
        .iter()
        .filter(|e| !seen.contains_key(&e.id))
        .cloned()
        .collect();
    // Delete dependents before what they live in: namespaced objects, then
    // cluster-scoped ones, CRDs and Namespaces last.
    result.prune.sort_by_key(|e| {
        let last = e.id.kind == "Namespace" || e.id.kind == "CustomResourceDefinition";
        (last, e.id.namespace.is_none(), e.id.clone())
    });
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(file: &str, value: serde_json::Value) -> Desired {
        desired(PathBuf::from(file), value).unwrap_or_else(|e| panic!("{e}"))
    }

    fn served(api_version: &str, kind: &str) -> Option<Scope> {
        match (api_version, kind) {
            ("v1", "Namespace") | ("apiextensions.k8s.io/v1", "CustomResourceDefinition") => {
                Some(Scope::Cluster)
            }
            ("rbac.authorization.k8s.io/v1", "ClusterRole") => Some(Scope::Cluster),
            ("v1", "ConfigMap") | ("apps/v1", "Deployment") | ("v1", "Service") => {
                Some(Scope::Namespaced)
            }
            _ => None,
        }
    }

    fn entry(api_version: &str, kind: &str, ns: Option<&str>, name: &str) -> InventoryEntry {
        InventoryEntry {
            id: ObjectId {
                group: group_of(api_version).into(),
                kind: kind.into(),
                namespace: ns.map(str::to_string),
                name: name.into(),
            },
            api_version: api_version.into(),
            created: false,
        }
    }

    fn names(list: &[Desired]) -> Vec<String> {
        list.iter().map(|d| d.id.to_string()).collect()
    }

    #[test]
    fn namespaces_and_crds_first_defaults_filled_and_gone_objects_pruned() {
        let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.acme.dev"},
            "spec": {"group": "acme.dev", "scope": "Namespaced", "names": {"kind": "Widget", "plural": "widgets"}}});
        let source = vec![
            doc(
                "app.yaml",
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "app"}}),
            ),
            doc(
                "widget.yaml",
                json!({"apiVersion": "acme.dev/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": "prod"}}),
            ),
            doc("crd.yaml", crd),
            doc(
                "ns.yaml",
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "prod", "namespace": "ignored"}}),
            ),
            doc(
                "role.yaml",
                json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "r"}}),
            ),
        ];
        let previous = [
            entry("apps/v1", "Deployment", Some("default"), "app"),
            entry("v1", "Namespace", None, "old"),
            entry("v1", "ConfigMap", Some("prod"), "gone"),
            entry("rbac.authorization.k8s.io/v1", "ClusterRole", None, "gone"),
        ];
        let plan = plan(source, served, "default", &previous).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            names(&plan.first),
            [
                "Namespace prod",
                "CustomResourceDefinition.apiextensions.k8s.io widgets.acme.dev"
            ]
        );
        assert_eq!(
            names(&plan.then),
            [
                "Widget.acme.dev prod/w",
                "Deployment.apps default/app",
                "ClusterRole.rbac.authorization.k8s.io r"
            ]
        );
        assert_eq!(plan.first[0].object["metadata"].get("namespace"), None);
        assert_eq!(
            plan.then
                .iter()
                .find(|d| d.id.kind == "Deployment")
                .map(|d| d.object["metadata"]["namespace"].clone()),
            Some(json!("default"))
        );
        assert!(
            plan.defined_here
                .contains(&("acme.dev".to_string(), "Widget".to_string()))
        );
        let pruned: Vec<String> = plan.prune.iter().map(|e| e.id.to_string()).collect();
        assert_eq!(
            pruned,
            [
                "ConfigMap prod/gone",
                "ClusterRole.rbac.authorization.k8s.io gone",
                "Namespace old"
            ]
        );
        assert_eq!(plan.first.len() + plan.then.len(), 5);
    }

    #[test]
    fn unknown_kinds_duplicates_and_incomplete_documents_are_errors_naming_the_file() {
        assert_eq!(
            desired(PathBuf::from("a.yaml"), json!({"kind": "ConfigMap", "metadata": {"name": "x"}}))
                .err()
                .map(|e| e.to_string()),
            Some("a.yaml: a document without apiVersion: every object needs apiVersion, kind and metadata.name".into())
        );
        assert!(
            desired(
                PathBuf::from("b.yaml"),
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}})
            )
            .is_err()
        );
        let source = vec![
            doc(
                "a.yaml",
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}),
            ),
            doc(
                "b.yaml",
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "default"}}),
            ),
            doc(
                "c.yaml",
                json!({"apiVersion": "acme.dev/v1", "kind": "Gadget", "metadata": {"name": "g"}}),
            ),
        ];
        let errors: Vec<String> = plan(source, served, "default", &[])
            .err()
            .unwrap_or_default()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            errors,
            [
                "b.yaml: ConfigMap default/x is defined twice; the other is in a.yaml",
                "c.yaml: Gadget g: the cluster serves no acme.dev/v1 Gadget and no CRD here defines it"
            ]
        );
    }
}
