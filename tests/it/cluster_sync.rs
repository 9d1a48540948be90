//! `hoist sync` against the real control plane (`scripts/test-cluster`):
//! first apply, a second sync that writes nothing by the audit log's count
//! (the defaults a real server adds are no drift), drift reverted, pruning
//! only what hoist applied, a CRD before its objects, and waiting until
//! kube-controller-manager and kwok roll Deployments out, or do not.

use serde_json::{Value, json};

use crate::support::cluster::{self, Cluster, HOIST, describe, writes_by};
use crate::support::{files, hoist};

/// `hoist sync --path DIR ...` as the user `hoist`, keeping state in `state`.
fn sync(
    cluster: &Cluster,
    dir: &std::path::Path,
    state: &std::path::Path,
    extra: &[&str],
) -> (i32, Value, String) {
    let kubeconfig = cluster.hoist_kubeconfig().to_string_lossy().into_owned();
    let path = dir.to_string_lossy().into_owned();
    let state = state.to_string_lossy().into_owned();
    let mut args = vec![
        "sync",
        "--path",
        &path,
        "--kubeconfig",
        &kubeconfig,
        "--state-dir",
        &state,
        "-o",
        "json",
    ];
    args.extend_from_slice(extra);
    let run = hoist(dir, &args, "");
    let report = serde_json::from_str(&run.stdout).unwrap_or(Value::Null);
    (run.code, report, format!("{}{}", run.stdout, run.stderr))
}

fn actions(report: &Value) -> Vec<(String, String)> {
    report["applied"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            (
                a["object"].as_str().unwrap_or("").to_string(),
                a["action"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn deployment(ns: &str, name: &str, image: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: {ns}}}
spec:
  replicas: 2
  progressDeadlineSeconds: 10
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers: [{{name: app, image: '{image}'}}]
"
    )
}

fn config_map(ns: &str, name: &str, annotations: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, namespace: {ns}{annotations}}}\ndata: {{level: info}}\n"
    )
}

#[test]
fn apply_then_nothing_written_then_drift_reverted_and_only_hoists_objects_pruned() {
    let Some(cluster) = cluster::cluster() else {
        return;
    };
    // The sync creates its own namespace; a second one holds the rest.
    let ns = cluster.namespace("sync-apply");
    let app_ns = format!("{ns}-app");
    let group = format!("{ns}.hoist.test");
    let state = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let crd = format!(
        "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {{name: widgets.{group}}}
spec:
  group: {group}
  scope: Namespaced
  names: {{kind: Widget, plural: widgets, singular: widget, listKind: WidgetList}}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties:
                size: {{type: integer, default: 1}}
                color: {{type: string, default: blue}}
"
    );
    let service = format!(
        "apiVersion: v1
kind: Service
metadata: {{name: app, namespace: {app_ns}}}
spec:
  selector: {{app: app}}
  ports: [{{port: 80}}]
"
    );
    let dir = files(&[
        (
            "namespace.yaml",
            &format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {app_ns}}}\n"),
        ),
        (
            "apps/app.yaml",
            &format!(
                "{}---\n{service}",
                deployment(&app_ns, "app", "ghcr.io/acme/app:1.2.0")
            ),
        ),
        // The Widget sorts before its CRD; it is applied after it.
        (
            "a-widget.yaml",
            &format!(
                "apiVersion: {group}/v1\nkind: Widget\nmetadata: {{name: w, namespace: {ns}}}\nspec: {{size: 3}}\n"
            ),
        ),
        ("b-crd.yaml", &crd),
        ("config/old.yaml", &config_map(&ns, "old", "")),
        ("config/settings.yaml", &config_map(&ns, "settings", "")),
        (
            "config/keep.yaml",
            &config_map(&ns, "keep", ", annotations: {hoist.dev/prune: disabled}"),
        ),
        // The server drops `annotations: {}`: that is no drift.
        (
            "config/empty.yaml",
            &config_map(&ns, "empty", ", annotations: {}"),
        ),
        ("README.md", "not yaml, not read\n"),
    ]);

    // A dry run asks the server and writes nothing.
    let mark = cluster.audit_mark();
    let (code, report, out) = sync(cluster, dir.path(), state.path(), &["--dry-run"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(actions(&report).len(), 9, "{report}");
    let written: Vec<String> = writes_by(&cluster.audit_since(mark), HOIST, &ns)
        .into_iter()
        .map(describe)
        .collect();
    assert_eq!(written, Vec::<String>::new(), "a dry run wrote");

    let mark = cluster.audit_mark();
    let (code, report, out) = sync(cluster, dir.path(), state.path(), &["--wait"]);
    assert_eq!(code, 0, "{out}");
    let applied = actions(&report);
    assert_eq!(applied.len(), 9, "{report}");
    // The audit log sees each of them written: the count below is no
    // zero for want of looking.
    let written = writes_by(&cluster.audit_since(mark), HOIST, &ns).len();
    assert!(written >= 9, "{written} writes by the audit log");
    assert!(applied.iter().all(|(_, a)| a == "created"), "{applied:?}");
    assert_eq!(applied[0].0, format!("Namespace {app_ns}"));
    let order: Vec<&str> = applied.iter().map(|(o, _)| o.as_str()).collect();
    let position = |name: &str| order.iter().position(|o| *o == name);
    assert!(
        position(&format!(
            "CustomResourceDefinition.apiextensions.k8s.io widgets.{group}"
        )) < position(&format!("Widget.{group} {ns}/w")),
        "{order:?}"
    );
    // --wait returned once kube-controller-manager and kwok rolled it out.
    let app = cluster
        .get("deployment", &app_ns, "app")
        .unwrap_or_default();
    assert_eq!(app["status"]["availableReplicas"], 2, "{app}");
    let widget = cluster
        .get(&format!("widgets.{group}"), &ns, "w")
        .unwrap_or_default();
    assert_eq!(widget["spec"], json!({"size": 3, "color": "blue"}));
    let settings = cluster
        .get("configmap", &ns, "settings")
        .unwrap_or_default();
    assert_eq!(
        settings["metadata"]["labels"]["sync.hoist.dev/name"],
        "hoist-sync"
    );

    // Nothing changed: nothing written, though the server defaulted dozens
    // of fields (the Deployment's strategy, the Service's clusterIP, the
    // Widget's color) and kube-controller-manager wrote status.
    let mark = cluster.audit_mark();
    let (code, report, out) = sync(cluster, dir.path(), state.path(), &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        actions(&report).iter().all(|(_, a)| a == "unchanged"),
        "{report}"
    );
    assert_eq!(report["writes"], 0);
    let written: Vec<String> = writes_by(&cluster.audit_since(mark), HOIST, &ns)
        .into_iter()
        .map(describe)
        .collect();
    assert_eq!(written, Vec::<String>::new(), "an unchanged sync wrote");

    // Someone scales by hand: the next sync puts it back, and only that.
    cluster.kubectl(&["scale", "deployment/app", "-n", &app_ns, "--replicas=5"]);
    let (code, report, out) = sync(cluster, dir.path(), state.path(), &[]);
    assert_eq!(code, 0, "{out}");
    let changed: Vec<_> = actions(&report)
        .into_iter()
        .filter(|(_, a)| a != "unchanged")
        .collect();
    assert_eq!(
        changed,
        [(
            format!("Deployment.apps {app_ns}/app"),
            "configured".to_string()
        )]
    );
    let app = cluster
        .get("deployment", &app_ns, "app")
        .unwrap_or_default();
    assert_eq!(app["spec"]["replicas"], 2);

    // `settings` is recreated by someone else (without hoist's labels);
    // then three ConfigMaps leave the source.
    cluster.kubectl(&["delete", "configmap", "settings", "-n", &ns]);
    cluster.apply(&format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: settings, namespace: {ns}}}\ndata: {{theirs: 'yes'}}\n"
    ));
    for gone in ["old", "settings", "keep"] {
        std::fs::remove_file(dir.path().join(format!("config/{gone}.yaml")))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    // Without --prune nothing is deleted.
    let (code, _, out) = sync(cluster, dir.path(), state.path(), &[]);
    assert_eq!(code, 0, "{out}");
    assert!(cluster.get("configmap", &ns, "old").is_some());
    let (code, report, out) = sync(cluster, dir.path(), state.path(), &["--prune"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(report["pruned"], json!([format!("ConfigMap {ns}/old")]));
    assert_eq!(
        report["kept"],
        json!([
            format!("ConfigMap {ns}/keep"),
            format!("ConfigMap {ns}/settings")
        ])
    );
    assert!(cluster.get("configmap", &ns, "old").is_none());
    assert_eq!(
        cluster
            .get("configmap", &ns, "settings")
            .map(|s| s["data"]["theirs"].clone()),
        Some(json!("yes"))
    );
    assert!(cluster.get("configmap", &ns, "keep").is_some());
    // A sync under another name never prunes this one's objects.
    let (code, report, out) = sync(
        cluster,
        dir.path(),
        state.path(),
        &["--prune", "--name", "other"],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(report["pruned"], json!([]));
}

#[test]
fn a_rollout_whose_pods_never_become_ready_is_reported_naming_the_deployment() {
    let Some(cluster) = cluster::cluster() else {
        return;
    };
    let ns = cluster.namespace("sync-rollout");
    let state = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // kwok keeps Pods of an image tagged "-fails" in CrashLoopBackOff; the
    // Deployment's 10 s progress deadline passes and kube-controller-manager
    // says so.
    let dir = files(&[(
        "app.yaml",
        &deployment(&ns, "broken", "ghcr.io/acme/app:1.3.0-fails"),
    )]);
    let (code, report, out) = sync(
        cluster,
        dir.path(),
        state.path(),
        &["--wait", "--timeout", "90s"],
    );
    assert_eq!(code, 1, "{out}");
    let unhealthy = report["unhealthy"].to_string();
    assert!(
        unhealthy.contains(&format!("Deployment.apps {ns}/broken: failed:"))
            && unhealthy.contains("progressing"),
        "{out}"
    );
}
