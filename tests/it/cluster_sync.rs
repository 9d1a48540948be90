//! `hoist sync` against the real control plane (`scripts/test-cluster`):
//! first apply, a second sync that writes nothing by the audit log's count
//! (the defaults a real server adds are no drift), drift reverted, pruning
//! only what hoist applied, a CRD before its objects, and waiting until
//! kube-controller-manager and kwok roll Deployments out, or do not.

use serde_json::{Value, json};

use crate::support::cluster::{self, Cluster, HOIST, describe, writes_by};
use crate::support::{files, hoist_env};

/// `hoist sync --path DIR ...` as the user `hoist`, keeping state in `state`.
fn sync(
    cluster: &Cluster,
    dir: &std::path::Path,
    state: &std::path::Path,
    extra: &[&str],
) -> (i32, Value, String) {
    sync_with(cluster, dir, state, extra, &[])
}

/// [`sync`] with extra environment variables.
fn sync_with(
    cluster: &Cluster,
    dir: &std::path::Path,
    state: &std::path::Path,
    extra: &[&str],
    env: &[(&str, &str)],
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
    let run = hoist_env(dir, &args, env);
    // A run that fails before reporting prints nothing on stdout; what it
    // does print must be JSON.
    let report = if run.stdout.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout))
    };
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
    // The Deployment, the controller's verdict, and the kubelet's reason.
    assert!(
        unhealthy.contains(&format!("Deployment.apps {ns}/broken: failed:"))
            && unhealthy.contains("progressing")
            && unhealthy.contains("pod broken-")
            && unhealthy
                .contains("container app CrashLoopBackOff (back-off restarting failed container)"),
        "{out}"
    );
}

#[test]
fn a_kind_nobody_serves_or_a_document_without_a_name_applies_nothing() {
    let Some(cluster) = cluster::cluster() else {
        return;
    };
    let ns = cluster.namespace("sync-unserved");
    let state = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir = files(&[
        ("config.yaml", &config_map(&ns, "settings", "")),
        (
            "gadget.yaml",
            &format!(
                "apiVersion: {ns}.hoist.test/v1\nkind: Gadget\nmetadata: {{name: g, namespace: {ns}}}\n"
            ),
        ),
        (
            "broken.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n",
        ),
    ]);
    let (code, _, out) = sync(cluster, dir.path(), state.path(), &[]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("broken.yaml: a document without metadata.name"),
        "{out}"
    );
    std::fs::remove_file(dir.path().join("broken.yaml")).unwrap_or_else(|e| panic!("{e}"));
    let mark = cluster.audit_mark();
    let (code, _, out) = sync(cluster, dir.path(), state.path(), &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "gadget.yaml: Gadget g: the cluster serves no {ns}.hoist.test/v1 Gadget"
        )),
        "{out}"
    );
    assert!(cluster.get("configmap", &ns, "settings").is_none());
    let written: Vec<String> = writes_by(&cluster.audit_since(mark), HOIST, &ns)
        .into_iter()
        .map(describe)
        .collect();
    assert_eq!(written, Vec::<String>::new());
}

#[test]
fn an_apply_the_server_denies_prunes_nothing() {
    let Some(cluster) = cluster::cluster() else {
        return;
    };
    let ns = cluster.namespace("sync-denied");
    let state = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // The server's own admission: a ValidatingAdmissionPolicy denies
    // ConfigMaps of this namespace that carry the annotation.
    cluster.apply(&format!(
        "apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {{name: {ns}}}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - {{apiGroups: [''], apiVersions: [v1], operations: [CREATE, UPDATE], resources: [configmaps]}}
  validations:
  - expression: \"!has(object.metadata.annotations) || !('test.hoist.dev/reject' in object.metadata.annotations)\"
    messageExpression: \"string(object.metadata.annotations['test.hoist.dev/reject'])\"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {{name: {ns}}}
spec:
  policyName: {ns}
  validationActions: [Deny]
  matchResources:
    namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: {ns}}}}}
"
    ));
    // The policy takes effect once the server has loaded it: a probe
    // (a server-side dry run) says when.
    let probe = config_map(
        &ns,
        "probe",
        ", annotations: {test.hoist.dev/reject: 'too big'}",
    );
    crate::support::wait_for(
        "the admission policy to deny",
        std::time::Duration::from_secs(30),
        std::time::Duration::from_millis(200),
        || {
            let run = cluster.kubectl_in(
                &crate::support::repo_root(),
                &["apply", "--dry-run=server", "-f", "-"],
                &probe,
            );
            (!run.ok && run.stderr.contains("too big")).then_some(())
        },
    );
    let dir = files(&[
        ("a.yaml", &config_map(&ns, "a", "")),
        ("b.yaml", &config_map(&ns, "b", "")),
    ]);
    let (code, _, out) = sync(cluster, dir.path(), state.path(), &[]);
    assert_eq!(code, 0, "{out}");
    // b leaves the source, and a new object is denied.
    std::fs::remove_file(dir.path().join("b.yaml")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        dir.path().join("c.yaml"),
        config_map(
            &ns,
            "c",
            ", annotations: {test.hoist.dev/reject: 'too big'}",
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let (code, report, out) = sync(cluster, dir.path(), state.path(), &["--prune"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        report["error"]
            .as_str()
            .unwrap_or("")
            .contains(&format!("c.yaml: ConfigMap {ns}/c"))
            && out.contains("too big"),
        "{out}"
    );
    assert!(
        cluster.get("configmap", &ns, "b").is_some(),
        "pruned after a failure"
    );
    assert!(cluster.get("configmap", &ns, "c").is_none());
}

#[test]
fn a_kustomization_is_built_and_without_a_builder_the_error_says_so() {
    let Some(cluster) = cluster::cluster() else {
        return;
    };
    let ns = cluster.namespace("sync-kustomize");
    let state = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir = files(&[
        (
            "base/kustomization.yaml",
            &format!(
                "resources: [config.yaml]\nnamespace: {ns}\nlabels: [{{pairs: {{team: a}}}}]\n"
            ),
        ),
        ("base/config.yaml", &config_map("elsewhere", "settings", "")),
        ("base/ignored.yaml", &config_map(&ns, "not-listed", "")),
    ]);
    // Without kustomize and kubectl on PATH: a clear error, nothing applied.
    let empty = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let empty = empty.path().to_string_lossy().into_owned();
    let (code, _, out) = sync_with(cluster, dir.path(), state.path(), &[], &[("PATH", &empty)]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(
            "base: has a kustomization.yaml, but neither kustomize nor kubectl is installed"
        ),
        "{out}"
    );
    assert!(cluster.get("configmap", &ns, "settings").is_none());
    // With the pinned kustomize alone on PATH.
    let bin = cluster.bin.to_string_lossy().into_owned();
    let (code, report, out) = sync_with(cluster, dir.path(), state.path(), &[], &[("PATH", &bin)]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        actions(&report),
        [(format!("ConfigMap {ns}/settings"), "created".to_string())]
    );
    let settings = cluster
        .get("configmap", &ns, "settings")
        .unwrap_or_default();
    assert_eq!(settings["metadata"]["labels"]["team"], "a");
}

/// `benches/sync/run.sh`: 500 objects (5 Namespaces, 165 Deployments,
/// Services and ConfigMaps each) synced to the real control plane: time,
/// requests and writes (from the audit log) of a first sync and of a second
/// with nothing changed, next to `kubectl apply --server-side` of the same
/// objects in other namespaces, in the same run.
#[test]
#[ignore = "a benchmark: benches/sync/run.sh"]
fn sync_500_objects() {
    use std::time::Instant;
    let Some(cluster) = cluster::cluster() else {
        return;
    };
    let prefix = format!("bench-{}", std::process::id());
    let tree = |who: &str| {
        let mut entries: Vec<(String, String)> = Vec::new();
        for n in 0..5 {
            let ns = format!("{prefix}-{who}-{n}");
            entries.push((
                // First in its directory, for kubectl, which applies in file order.
                format!("ns-{n}/00-namespace.yaml"),
                format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n"),
            ));
            for i in 0..33 {
                let name = format!("app-{i}");
                entries.push((
                    format!("ns-{n}/{name}.yaml"),
                    format!(
                        "{}---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {{selector: {{app: {name}}}, ports: [{{port: 80}}]}}\n---\n{}",
                        deployment(&ns, &name, "ghcr.io/acme/app:1.2.0"),
                        config_map(&ns, &name, "")
                    ),
                ));
            }
        }
        let refs: Vec<(&str, &str)> = entries
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        files(&refs)
    };
    let (ours, theirs) = (tree("h"), tree("k"));
    let objects = 5 + 5 * 33 * 3;
    let state = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // (elapsed, requests, writes) of one run, by the audit log.
    let timed = |user: &str, scope: &str, run: &dyn Fn() -> (bool, String)| {
        let mark = cluster.audit_mark();
        let started = Instant::now();
        let (ok, out) = run();
        let elapsed = started.elapsed();
        assert!(ok, "{out}");
        let events = cluster.audit_since(mark);
        let requests = events
            .iter()
            .filter(|e| e["user"]["username"] == user)
            .count();
        (elapsed, requests, writes_by(&events, user, scope).len())
    };
    let hoist_sync = || {
        let (code, _, out) = sync(cluster, ours.path(), state.path(), &[]);
        (code == 0, out)
    };
    let kubectl = || {
        let path = theirs.path().to_string_lossy().into_owned();
        let run = cluster.kubectl_in(
            theirs.path(),
            &["apply", "--server-side", "--recursive", "-f", &path],
            "",
        );
        (run.ok, run.stderr)
    };
    let scope_ours = format!("{prefix}-h-");
    let scope_theirs = format!("{prefix}-k-");
    let h1 = timed(HOIST, &scope_ours, &hoist_sync);
    let h2 = timed(HOIST, &scope_ours, &hoist_sync);
    let k1 = timed(cluster::ADMIN, &scope_theirs, &kubectl);
    let k2 = timed(cluster::ADMIN, &scope_theirs, &kubectl);
    println!("sync of {objects} objects to the test control plane (kube-apiserver v1.36)");
    for (what, (elapsed, requests, writes)) in [
        ("hoist sync, first", h1),
        ("hoist sync, again", h2),
        ("kubectl apply --server-side, first", k1),
        ("kubectl apply --server-side, again", k2),
    ] {
        println!("  {what:<36} {elapsed:>8.2?}, {requests:>5} requests, {writes:>4} writes");
    }
    println!(
        "  time ratio hoist/kubectl: first {:.2}, again {:.2}",
        h1.0.as_secs_f64() / k1.0.as_secs_f64(),
        h2.0.as_secs_f64() / k2.0.as_secs_f64()
    );
}
