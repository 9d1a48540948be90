//! `hoist sync` against the fake API server: first apply, nothing written
//! when nothing changed, drift reverted, pruning only what hoist applied,
//! CRDs before their objects, unknown kinds before anything, a failure that
//! prunes nothing, and waiting for health.

use serde_json::{Value, json};

use crate::support::kube::FakeKube;
use crate::support::{files, hoist};

/// `hoist sync --path DIR ...` against `fake`, keeping state in `state`.
fn sync(
    fake: &FakeKube,
    dir: &std::path::Path,
    state: &std::path::Path,
    extra: &[&str],
) -> (i32, Value, String) {
    let kubeconfig = fake.kubeconfig.to_string_lossy().into_owned();
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

/// Requests that change something: everything but reads, watches and
/// server-side dry runs.
fn writes(fake: &FakeKube) -> Vec<String> {
    fake.calls()
        .into_iter()
        .filter(|c| !c.starts_with("GET ") && !c.contains("dryRun=All"))
        .collect()
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

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: app, namespace: prod}
spec:
  replicas: 2
  selector: {matchLabels: {app: app}}
  template:
    metadata: {labels: {app: app}}
    spec:
      containers: [{name: app, image: 'ghcr.io/acme/app:1.2.0'}]
---
apiVersion: v1
kind: Service
metadata: {name: app, namespace: prod}
spec:
  selector: {app: app}
  ports: [{port: 80}]
";

fn config_map(name: &str, annotations: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}{annotations}}}\ndata: {{level: info}}\n"
    )
}

#[test]
fn apply_then_nothing_then_drift_reverted_and_only_hoists_objects_pruned() {
    let fake = FakeKube::start();
    let state = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir = files(&[
        (
            "namespace.yaml",
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: prod}\n",
        ),
        ("apps/app.yaml", DEPLOYMENT),
        ("config/old.yaml", &config_map("old", "")),
        ("config/settings.yaml", &config_map("settings", "")),
        (
            "config/keep.yaml",
            &config_map("keep", ", annotations: {hoist.dev/prune: disabled}"),
        ),
        // The server drops `annotations: {}`: that is no drift.
        (
            "config/empty.yaml",
            &config_map("empty", ", annotations: {}"),
        ),
        ("README.md", "not yaml, not read\n"),
    ]);
    // A dry run asks the server and writes nothing.
    let (code, report, out) = sync(&fake, dir.path(), state.path(), &["--dry-run"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(actions(&report).len(), 7, "{report}");
    assert!(
        fake.list("v1", "ConfigMap").is_empty(),
        "a dry run created objects"
    );

    let (code, report, out) = sync(&fake, dir.path(), state.path(), &[]);
    assert_eq!(code, 0, "{out}");
    let applied = actions(&report);
    assert_eq!(applied.len(), 7, "{report}");
    assert!(applied.iter().all(|(_, a)| a == "created"), "{applied:?}");
    // The Namespace came first; namespaced objects without one got default.
    assert_eq!(applied[0].0, "Namespace prod");
    let settings = fake
        .get("v1", "ConfigMap", "default", "settings")
        .unwrap_or_default();
    assert_eq!(
        settings["metadata"]["labels"]["sync.hoist.dev/name"],
        "hoist-sync"
    );
    let deployment = fake
        .get("apps/v1", "Deployment", "prod", "app")
        .unwrap_or_default();
    assert_eq!(deployment["spec"]["replicas"], 2);

    // Nothing changed: nothing written.
    let before = writes(&fake).len();
    let (code, report, out) = sync(&fake, dir.path(), state.path(), &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        actions(&report).iter().all(|(_, a)| a == "unchanged"),
        "{report}"
    );
    assert_eq!(writes(&fake).split_off(before), Vec::<String>::new());
    assert_eq!(report["writes"], 0);

    // Someone scales by hand: the next sync puts it back, and only that.
    fake.apply(json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "app", "namespace": "prod"}, "spec": {"replicas": 5}}));
    let (code, report, out) = sync(&fake, dir.path(), state.path(), &[]);
    assert_eq!(code, 0, "{out}");
    let changed: Vec<_> = actions(&report)
        .into_iter()
        .filter(|(_, a)| a != "unchanged")
        .collect();
    assert_eq!(
        changed,
        [(
            "Deployment.apps prod/app".to_string(),
            "configured".to_string()
        )]
    );
    let deployment = fake
        .get("apps/v1", "Deployment", "prod", "app")
        .unwrap_or_default();
    assert_eq!(deployment["spec"]["replicas"], 2);

    // `settings` is recreated by someone else (without hoist's labels);
    // then three ConfigMaps leave the source.
    fake.delete("v1", "ConfigMap", "default", "settings");
    fake.apply(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": "default"}, "data": {"theirs": "yes"}}));
    for gone in ["old", "settings", "keep"] {
        std::fs::remove_file(dir.path().join(format!("config/{gone}.yaml")))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    // Without --prune nothing is deleted, and the inventory still holds them.
    let (code, _, out) = sync(&fake, dir.path(), state.path(), &[]);
    assert_eq!(code, 0, "{out}");
    assert!(fake.get("v1", "ConfigMap", "default", "old").is_some());
    let (code, report, out) = sync(&fake, dir.path(), state.path(), &["--prune"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(report["pruned"], json!(["ConfigMap default/old"]));
    assert_eq!(
        report["kept"],
        json!(["ConfigMap default/keep", "ConfigMap default/settings"])
    );
    assert!(fake.get("v1", "ConfigMap", "default", "old").is_none());
    assert_eq!(
        fake.get("v1", "ConfigMap", "default", "settings")
            .map(|s| s["data"]["theirs"].clone()),
        Some(json!("yes"))
    );
    assert!(fake.get("v1", "ConfigMap", "default", "keep").is_some());
    // A sync under another name never prunes this one's objects.
    let (code, report, out) = sync(
        &fake,
        dir.path(),
        state.path(),
        &["--prune", "--name", "other"],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(report["pruned"], json!([]));
}

#[test]
fn crds_before_their_objects_and_unknown_kinds_before_anything() {
    let fake = FakeKube::start();
    let state = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let crd = "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.acme.dev}
spec:
  group: acme.dev
  scope: Namespaced
  names: {kind: Widget, plural: widgets, singular: widget, listKind: WidgetList}
  versions:
    - name: v1
      served: true
      storage: true
      schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
";
    // The Widget sorts before its CRD by file name; it is applied after.
    let dir = files(&[
        (
            "a-widget.yaml",
            "apiVersion: acme.dev/v1\nkind: Widget\nmetadata: {name: w, namespace: prod}\nspec: {size: 3}\n",
        ),
        ("b-crd.yaml", crd),
    ]);
    let (code, report, out) = sync(&fake, dir.path(), state.path(), &[]);
    assert_eq!(code, 0, "{out}");
    let order: Vec<String> = actions(&report).into_iter().map(|(o, _)| o).collect();
    assert_eq!(
        order,
        [
            "CustomResourceDefinition.apiextensions.k8s.io widgets.acme.dev",
            "Widget.acme.dev prod/w"
        ]
    );
    assert_eq!(
        fake.get("acme.dev/v1", "Widget", "prod", "w")
            .map(|w| w["spec"]["size"].clone()),
        Some(json!(3))
    );

    // A kind nobody serves: an error naming the file, and nothing applied.
    let bad = files(&[
        ("config.yaml", &config_map("settings", "")),
        (
            "gadget.yaml",
            "apiVersion: acme.dev/v1\nkind: Gadget\nmetadata: {name: g}\n",
        ),
        (
            "broken.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n",
        ),
    ]);
    let (code, _, out) = sync(&fake, bad.path(), state.path(), &["--name", "bad"]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("broken.yaml: a document without metadata.name"),
        "{out}"
    );
    std::fs::remove_file(bad.path().join("broken.yaml")).unwrap_or_else(|e| panic!("{e}"));
    let (code, _, out) = sync(&fake, bad.path(), state.path(), &["--name", "bad"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("gadget.yaml: Gadget g: the cluster serves no acme.dev/v1 Gadget"),
        "{out}"
    );
    assert!(fake.get("v1", "ConfigMap", "default", "settings").is_none());
}

#[test]
fn a_failed_apply_prunes_nothing_and_wait_names_the_unhealthy() {
    let fake = FakeKube::start();
    let state = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir = files(&[
        ("a.yaml", &config_map("a", "")),
        ("b.yaml", &config_map("b", "")),
    ]);
    let (code, _, out) = sync(&fake, dir.path(), state.path(), &[]);
    assert_eq!(code, 0, "{out}");
    // b leaves the source, and a new object is refused by the server.
    std::fs::remove_file(dir.path().join("b.yaml")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        dir.path().join("c.yaml"),
        config_map("c", ", annotations: {fake.hoist.dev/reject: 'too big'}"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let (code, report, out) = sync(&fake, dir.path(), state.path(), &["--prune"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        report["error"]
            .as_str()
            .unwrap_or("")
            .contains("c.yaml: ConfigMap default/c")
            && out.contains("denied the request: too big"),
        "{out}"
    );
    assert!(
        fake.get("v1", "ConfigMap", "default", "b").is_some(),
        "pruned after a failure"
    );

    // Waiting: a Deployment nothing rolls out times out, named with why;
    // once its status says it is available, the same sync succeeds.
    let workload = files(&[("app.yaml", DEPLOYMENT)]);
    let (code, report, out) = sync(
        &fake,
        workload.path(),
        state.path(),
        &["--name", "app", "--wait", "--timeout", "2s"],
    );
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        report["unhealthy"],
        json!(["Deployment.apps prod/app: the new spec is not observed yet"]),
        "{out}"
    );
    fake.apply(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "app", "namespace": "prod"},
        "status": {"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}}));
    let (code, report, out) = sync(
        &fake,
        workload.path(),
        state.path(),
        &["--name", "app", "--wait", "--timeout", "10s"],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(report["unhealthy"], json!([]));
}

/// `benches/sync/run.sh`: 500 objects synced to the fake API server: time
/// and requests for the first sync and for a second with nothing changed,
/// next to `kubectl apply --server-side` of the same directory against the
/// same kind of fake in the same run when kubectl is installed.
#[test]
#[ignore = "a benchmark: benches/sync/run.sh"]
fn sync_500_objects() {
    use std::time::Instant;
    let mut entries: Vec<(String, String)> = Vec::new();
    for ns in 0..5 {
        entries.push((
            format!("ns-{ns}/namespace.yaml"),
            format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: team-{ns}}}\n"),
        ));
        for i in 0..33 {
            let name = format!("app-{i}");
            entries.push((
                format!("ns-{ns}/{name}.yaml"),
                DEPLOYMENT
                    .replace("name: app,", &format!("name: {name},"))
                    .replace("namespace: prod", &format!("namespace: team-{ns}"))
                    + &format!(
                        "---\n{}",
                        config_map(&name, &format!(", namespace: team-{ns}"))
                    ),
            ));
        }
    }
    let refs: Vec<(&str, &str)> = entries
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let dir = files(&refs);
    let objects = 5 + 5 * 33 * 3;
    let state = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let fake = FakeKube::start();
    let timed = |run: &dyn Fn() -> (i32, String)| {
        let before = fake.calls().len();
        let started = Instant::now();
        let (code, out) = run();
        let elapsed = started.elapsed();
        assert_eq!(code, 0, "{out}");
        let calls = fake.calls().split_off(before);
        let writes = calls.iter().filter(|c| !c.starts_with("GET ")).count();
        (elapsed, calls.len(), writes)
    };
    let hoist_sync = || {
        let (code, _, out) = sync(&fake, dir.path(), state.path(), &[]);
        (code, out)
    };
    let first = timed(&hoist_sync);
    let second = timed(&hoist_sync);
    println!("sync of {objects} objects to the fake API server");
    println!(
        "  hoist sync, first:   {:>8.2?}, {:>5} requests, {:>4} writes",
        first.0, first.1, first.2
    );
    println!(
        "  hoist sync, again:   {:>8.2?}, {:>5} requests, {:>4} writes",
        second.0, second.1, second.2
    );
    let kubectl_present = std::process::Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !kubectl_present {
        println!("  kubectl: not installed, no baseline");
        return;
    }
    let other = FakeKube::start();
    let kubeconfig = other.kubeconfig.to_string_lossy().into_owned();
    let kubectl = || {
        let out = std::process::Command::new("kubectl")
            .args([
                "--kubeconfig",
                &kubeconfig,
                "apply",
                "--server-side",
                "--validate=false",
                "--recursive",
                "-f",
            ])
            .arg(dir.path())
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let count = |f: &FakeKube, run: &dyn Fn() -> (i32, String)| {
        let before = f.calls().len();
        let started = Instant::now();
        let (code, out) = run();
        let elapsed = started.elapsed();
        let calls = f.calls().split_off(before);
        let writes = calls.iter().filter(|c| !c.starts_with("GET ")).count();
        (code, out, elapsed, calls.len(), writes)
    };
    let k1 = count(&other, &kubectl);
    let k2 = count(&other, &kubectl);
    if k1.0 != 0 {
        println!(
            "  kubectl apply --server-side failed against the fake: {}",
            k1.1.lines().next().unwrap_or("")
        );
        return;
    }
    println!(
        "  kubectl apply --server-side, first: {:>8.2?}, {:>5} requests, {:>4} writes",
        k1.2, k1.3, k1.4
    );
    println!(
        "  kubectl apply --server-side, again: {:>8.2?}, {:>5} requests, {:>4} writes",
        k2.2, k2.3, k2.4
    );
    println!(
        "  time ratio hoist/kubectl: first {:.2}, again {:.2}",
        first.0.as_secs_f64() / k1.2.as_secs_f64(),
        second.0.as_secs_f64() / k2.2.as_secs_f64()
    );
}

#[test]
fn a_kustomization_is_built_and_without_a_builder_the_error_says_so() {
    let fake = FakeKube::start();
    let state = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir = files(&[
        (
            "base/kustomization.yaml",
            "resources: [config.yaml]\nnamespace: prod\ncommonLabels: {team: a}\n",
        ),
        ("base/config.yaml", &config_map("settings", "")),
        ("base/ignored.yaml", &config_map("not-listed", "")),
    ]);
    // Without kustomize and kubectl on PATH: a clear error, nothing applied.
    let kubeconfig = fake.kubeconfig.to_string_lossy().into_owned();
    let path = dir.path().to_string_lossy().into_owned();
    let state_dir = state.path().to_string_lossy().into_owned();
    let empty = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let bare = crate::support::hoist_env(
        dir.path(),
        &[
            "sync",
            "--path",
            &path,
            "--kubeconfig",
            &kubeconfig,
            "--state-dir",
            &state_dir,
        ],
        &[("PATH", &empty.path().to_string_lossy())],
    );
    assert_eq!(bare.code, 2, "{}{}", bare.stdout, bare.stderr);
    assert!(
        bare.stderr.contains(
            "base: has a kustomization.yaml, but neither kustomize nor kubectl is installed"
        ),
        "{}",
        bare.stderr
    );
    assert!(fake.list("v1", "ConfigMap").is_empty());
    let builder = ["kustomize", "kubectl"].iter().any(|b| {
        std::process::Command::new(b)
            .arg("version")
            .output()
            .is_ok()
    });
    if !builder {
        eprintln!("skipped the build: neither kustomize nor kubectl is installed");
        return;
    }
    let (code, report, out) = sync(&fake, dir.path(), state.path(), &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        actions(&report),
        [("ConfigMap prod/settings".to_string(), "created".to_string())]
    );
    let settings = fake
        .get("v1", "ConfigMap", "prod", "settings")
        .unwrap_or_default();
    assert_eq!(settings["metadata"]["labels"]["team"], "a");
}
