//! `hoist controller --flux` on the real control plane, with Flux's own
//! CRDs and no Flux controller running: Flux's objects from Flux's guide
//! are scanned, selected and pushed with Flux's status fields, and Flux's
//! own CLI gets, reconciles, suspends and resumes them. The controller
//! runs as a ServiceAccount holding deploy/flux's ClusterRole and nothing
//! else; the audit log shows it was refused nothing.

use std::time::Duration;

use serde_json::Value;

use crate::support::cluster::{self, Cluster};
use crate::support::controller::Running;
use crate::support::flux::FluxTools;
use crate::support::git::BareRepo;
use crate::support::registry::{Auth, DockerRegistry};

const FLUX_REQUESTED_AT: &str = "reconcile.fluxcd.io/requestedAt";

fn wait_for<T>(what: &str, check: impl FnMut() -> Option<T>) -> T {
    crate::support::wait_for(
        what,
        Duration::from_secs(60),
        Duration::from_millis(200),
        check,
    )
}

fn get(cluster: &Cluster, resource: &str, ns: &str, name: &str) -> Option<Value> {
    cluster.get(&format!("{resource}.image.toolkit.fluxcd.io"), ns, name)
}

fn status(cluster: &Cluster, resource: &str, ns: &str, name: &str) -> Value {
    get(cluster, resource, ns, name)
        .map(|o| o["status"].clone())
        .unwrap_or(Value::Null)
}

fn ready(status: &Value) -> Option<&Value> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")
}

fn deployment(addr: &str, ns: &str, tag: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: app}}\nspec:\n  template:\n    spec:\n      containers:\n        - name: app\n          image: {addr}/team/app:{tag} # {{\"$imagepolicy\": \"{ns}:app\"}}\n"
    )
}

/// Flux's guide's objects, unchanged but for names and addresses.
fn flux_objects(ns: &str, addr: &str, url: &str) -> String {
    format!(
        "apiVersion: image.toolkit.fluxcd.io/v1
kind: ImageRepository
metadata: {{name: app, namespace: {ns}}}
spec: {{image: {addr}/team/app, interval: 1m0s}}
---
apiVersion: image.toolkit.fluxcd.io/v1
kind: ImagePolicy
metadata: {{name: app, namespace: {ns}}}
spec:
  imageRepositoryRef: {{name: app}}
  policy: {{semver: {{range: 1.x}}}}
---
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {{name: fleet, namespace: {ns}}}
spec:
  interval: 1m0s
  ref: {{branch: main}}
  url: {url}
---
apiVersion: image.toolkit.fluxcd.io/v1
kind: ImageUpdateAutomation
metadata: {{name: fleet, namespace: {ns}}}
spec:
  interval: 30m
  sourceRef: {{kind: GitRepository, name: fleet}}
  git:
    checkout: {{ref: {{branch: main}}}}
    commit:
      author: {{email: fluxcdbot@users.noreply.github.com, name: fluxcdbot}}
    push: {{branch: main}}
  update: {{path: ./clusters, strategy: Setters}}
"
    )
}

/// A ServiceAccount of `ns` bound to deploy/flux's ClusterRole (under a
/// name of this test's), and a kubeconfig in `dir` that is that account.
fn flux_controller_account(
    cluster: &Cluster,
    ns: &str,
    dir: &std::path::Path,
) -> (String, std::path::PathBuf) {
    let rbac = std::fs::read_to_string(crate::support::repo_root().join("deploy/flux/rbac.yaml"))
        .unwrap_or_else(|e| panic!("deploy/flux/rbac.yaml: {e}"));
    let subject = "  - kind: ServiceAccount\n    name: hoist\n    namespace: hoist-system\n";
    assert!(rbac.contains(subject), "{rbac}");
    let rbac = rbac
        .replace("name: hoist-flux\n", &format!("name: hoist-flux-{ns}\n"))
        .replace(
            subject,
            &format!("  - kind: ServiceAccount\n    name: hoist-flux\n    namespace: {ns}\n"),
        );
    cluster.kubectl(&["create", "serviceaccount", "hoist-flux", "-n", ns]);
    cluster.apply(&rbac);
    let user = format!("system:serviceaccount:{ns}:hoist-flux");
    (
        user,
        cluster.service_account_kubeconfig(dir, ns, "hoist-flux"),
    )
}

fn flux_ok(tools: &FluxTools, cluster: &Cluster, args: &[&str]) -> String {
    let run = tools.run(&cluster.kubeconfig, args);
    assert!(run.success, "flux {}:\n{}", args.join(" "), run.output);
    eprintln!("$ flux {}\n{}", args.join(" "), run.output);
    run.output
}

#[test]
fn flux_s_objects_are_reconciled_with_flux_s_status_and_driven_by_flux_s_cli() {
    let Some(cluster) = cluster::cluster() else {
        return;
    };
    let Some(tools) = crate::support::flux::tools() else {
        return;
    };
    let Some(registry) = DockerRegistry::start(Auth::None) else {
        return;
    };
    cluster.install_flux_crds(&tools.crds);
    let ns = cluster.namespace("flux");
    let ns = ns.as_str();
    let addr = registry.addr.clone();
    registry.push_image("team/app", &["1.0.0", "1.1.0"]);
    let remote = BareRepo::new(&[("clusters/app.yaml", &deployment(&addr, ns, "1.0.0"))]);
    let (_git, url) = remote.serve_http();
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (user, kubeconfig) = flux_controller_account(cluster, ns, work.path());
    let mark = cluster.audit_mark();
    cluster.apply(&flux_objects(ns, &addr, &url));
    // Flux's Receivers: one that triggers only the ImageRepository (hoist's
    // to serve), one that also triggers a GitRepository (Flux's
    // notification-controller's).
    let token = "webhook-token-of-the-test";
    cluster.apply(&format!(
        "apiVersion: v1
kind: Secret
metadata: {{name: hook, namespace: {ns}}}
stringData: {{token: {token}}}
---
apiVersion: notification.toolkit.fluxcd.io/v1
kind: Receiver
metadata: {{name: registry, namespace: {ns}}}
spec:
  type: generic
  secretRef: {{name: hook}}
  resources: [{{apiVersion: image.toolkit.fluxcd.io/v1, kind: ImageRepository, name: app}}]
---
apiVersion: notification.toolkit.fluxcd.io/v1
kind: Receiver
metadata: {{name: mixed, namespace: {ns}}}
spec:
  type: github
  secretRef: {{name: hook}}
  resources:
    - {{kind: GitRepository, name: fleet}}
    - {{apiVersion: image.toolkit.fluxcd.io/v1, kind: ImageUpdateAutomation, name: fleet}}
"
    ));
    let mut controller = Running::start(&kubeconfig, &["--flux", "--webhook-addr", "127.0.0.1:0"]);
    let webhook = controller.wait_listening("webhook");

    // Scanned, selected and pushed, as Flux's controllers would.
    wait_for("the push of 1.1.0", || {
        remote
            .show("main", "clusters/app.yaml")
            .contains(":1.1.0")
            .then_some(())
    });
    assert_eq!(
        remote.show("main", "clusters/app.yaml"),
        deployment(&addr, ns, "1.1.0")
    );
    let raw = crate::support::git::git(&remote.path, &["cat-file", "commit", "main"]);
    let message = raw.split_once("\n\n").map(|(_, m)| m).unwrap_or_default();
    assert_eq!(message, "Update from image update automation", "{raw}");
    assert!(
        raw.contains("\nauthor fluxcdbot <fluxcdbot@users.noreply.github.com> "),
        "{raw}"
    );

    // Flux's status fields, in Flux's shape.
    let head = remote.head("main");
    let automation = wait_for("the automation's lastPushCommit", || {
        let s = status(cluster, "imageupdateautomations", ns, "fleet");
        (s["lastPushCommit"] == head.as_str()).then_some(s)
    });
    assert!(automation["lastPushTime"].is_string(), "{automation}");
    assert!(
        automation["lastAutomationRunTime"].is_string(),
        "{automation}"
    );
    assert_eq!(
        automation["observedPolicies"],
        serde_json::json!({"app": {"name": format!("{addr}/team/app"), "tag": "1.1.0"}}),
        "{automation}"
    );
    assert_eq!(
        ready(&automation).map(|c| &c["status"]),
        Some(&Value::from("True"))
    );
    for hoist_only in ["pullRequestUrl", "syncRevision", "inventory", "nextWindow"] {
        assert!(automation.get(hoist_only).is_none(), "{automation}");
    }
    let repository = status(cluster, "imagerepositories", ns, "app");
    assert_eq!(repository["canonicalImageName"], format!("{addr}/team/app"));
    assert_eq!(repository["lastScanResult"]["tagCount"], 2, "{repository}");
    assert_eq!(
        repository["lastScanResult"]["latestTags"],
        serde_json::json!(["1.1.0", "1.0.0"])
    );
    assert!(
        repository["lastScanResult"]["revision"].is_string(),
        "{repository}"
    );
    assert_eq!(
        repository["observedExclusionList"],
        serde_json::json!(["^.*\\.sig$"])
    );
    let condition = ready(&repository).cloned().unwrap_or_default();
    let checksum = repository["lastScanResult"]["revision"]
        .as_str()
        .unwrap_or_default();
    assert_eq!(
        (&condition["status"], &condition["reason"]),
        (&"True".into(), &"Succeeded".into()),
        "{repository}"
    );
    assert_eq!(
        condition["message"],
        format!("successful scan: found 2 tags with checksum {checksum}")
    );
    assert_eq!(
        ready(&automation).map(|c| &c["message"]),
        Some(&Value::from("repository up-to-date"))
    );
    let policy = status(cluster, "imagepolicies", ns, "app");
    assert_eq!(
        policy["latestRef"],
        serde_json::json!({"name": format!("{addr}/team/app"), "tag": "1.1.0"})
    );
    assert!(policy.get("waiting").is_none(), "{policy}");
    assert_eq!(
        ready(&policy).map(|c| &c["message"]),
        Some(&Value::from(format!(
            "Latest image tag for {addr}/team/app resolved to 1.1.0"
        )))
    );
    // The push's Event, as Flux words it.
    let events = cluster.kubectl(&["get", "events.events.k8s.io", "-n", ns, "-o", "json"]);
    let short = &head[..7];
    assert!(
        events.contains(&format!("pushed commit '{short}' to branch 'main'")),
        "{events}"
    );

    // Flux's CLI reads them.
    let all = flux_ok(&tools, cluster, &["get", "images", "all", "-n", ns]);
    for row in [
        "imagerepository/app",
        "imagepolicy/app",
        "imageupdateautomation/fleet",
    ] {
        let line = all.lines().find(|l| l.starts_with(row)).unwrap_or_default();
        assert!(line.contains("True"), "{row}:\n{all}");
    }
    let policies = flux_ok(
        &tools,
        cluster,
        &["get", "image", "policy", "app", "-n", ns],
    );
    let row = policies
        .lines()
        .find(|l| l.starts_with("app "))
        .unwrap_or_default();
    assert!(
        row.contains(&format!("{addr}/team/app")) && row.contains("1.1.0"),
        "{policies}"
    );

    // `flux reconcile image repository` scans at once: a new tag is seen
    // long before the 1m interval.
    registry.push_image("team/app", &["1.2.0"]);
    let reconciled = flux_ok(
        &tools,
        cluster,
        &[
            "reconcile",
            "image",
            "repository",
            "app",
            "-n",
            ns,
            "--timeout=60s",
        ],
    );
    assert!(reconciled.contains("3 tags"), "{reconciled}");
    wait_for("latestRef 1.2.0", || {
        (status(cluster, "imagepolicies", ns, "app")["latestRef"]["tag"] == "1.2.0").then_some(())
    });
    flux_ok(
        &tools,
        cluster,
        &[
            "reconcile",
            "image",
            "update",
            "fleet",
            "-n",
            ns,
            "--timeout=60s",
        ],
    );
    assert!(remote.show("main", "clusters/app.yaml").contains(":1.2.0"));

    // Suspended, nothing is pushed though the policy moves on; resumed,
    // the update lands.
    flux_ok(
        &tools,
        cluster,
        &["suspend", "image", "update", "fleet", "-n", ns],
    );
    let main = remote.head("main");
    registry.push_image("team/app", &["1.3.0"]);
    flux_ok(
        &tools,
        cluster,
        &[
            "reconcile",
            "image",
            "repository",
            "app",
            "-n",
            ns,
            "--timeout=60s",
        ],
    );
    wait_for("latestRef 1.3.0", || {
        (status(cluster, "imagepolicies", ns, "app")["latestRef"]["tag"] == "1.3.0").then_some(())
    });
    wait_for("the suspended automation to see 1.3.0", || {
        controller
            .log()
            .lines()
            .any(|l| l.contains("suspended; nothing is pushed") && l.contains("=1.3.0"))
            .then_some(())
    });
    assert_eq!(remote.head("main"), main, "a suspended automation pushed");
    flux_ok(
        &tools,
        cluster,
        &[
            "resume",
            "image",
            "update",
            "fleet",
            "-n",
            ns,
            "--timeout=60s",
        ],
    );
    wait_for("the push of 1.3.0", || {
        remote
            .show("main", "clusters/app.yaml")
            .contains(":1.3.0")
            .then_some(())
    });

    // The Receiver is served at the path Flux computes, with Flux's status.
    let path = {
        use sha2::Digest;
        let name = "registry";
        format!(
            "/hook/{:x}",
            sha2::Sha256::digest(format!("{token}{name}{ns}").as_bytes())
        )
    };
    let receiver = wait_for("the Receiver served", || {
        let r = cluster.get("receivers.notification.toolkit.fluxcd.io", ns, "registry")?;
        (ready(&r["status"])?["status"] == "True").then_some(r)
    });
    assert_eq!(
        receiver["status"]["webhookPath"],
        path.as_str(),
        "{receiver}"
    );
    assert_eq!(
        ready(&receiver["status"]).map(|c| &c["message"]),
        Some(&Value::from(format!(
            "Receiver initialized for path: {path}"
        )))
    );
    let mixed = cluster
        .get("receivers.notification.toolkit.fluxcd.io", ns, "mixed")
        .unwrap_or_default();
    // (Flux's CRD defaults status.observedGeneration to -1.)
    assert!(
        mixed["status"].get("conditions").is_none() && mixed["status"].get("webhookPath").is_none(),
        "hoist wrote Flux's Receiver: {mixed}"
    );
    // A POST to it asks for a scan at once (the annotation is hoist's
    // write this time), and the new tag is pushed.
    let asked_before = get(cluster, "imagerepositories", ns, "app")
        .map(|r| r["metadata"]["annotations"][FLUX_REQUESTED_AT].clone())
        .unwrap_or_default();
    registry.push_image("team/app", &["1.4.0"]);
    let status = ureq::post(format!("http://{webhook}{path}"))
        .send("")
        .map(|r| r.status().as_u16())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, 202);
    wait_for("hoist's reconcile request", || {
        let now = get(cluster, "imagerepositories", ns, "app")?["metadata"]["annotations"]
            [FLUX_REQUESTED_AT]
            .clone();
        (now != asked_before).then_some(())
    });
    wait_for("the push of 1.4.0", || {
        remote
            .show("main", "clusters/app.yaml")
            .contains(":1.4.0")
            .then_some(())
    });

    // deploy/flux's ClusterRole was enough for all of it.
    let refused: Vec<String> = cluster
        .audit_since(mark)
        .iter()
        .filter(|e| e["user"]["username"] == user.as_str())
        .filter(|e| e["responseStatus"]["code"] == 403)
        .map(cluster::describe)
        .collect();
    assert!(refused.is_empty(), "refused: {refused:#?}");
    assert_eq!(controller.stop(), Some(0), "{}", controller.log());
}

/// `hoist controller --flux` at the scale of the controller benchmark
/// (benches/controller): 1,000 Flux ImagePolicies over 200 Flux
/// ImageRepositories, beside `hoist controller` over the same objects as
/// hoist.dev ones in the same run. Prints the time until every policy is
/// Ready and both peak RSS, with their ratio.
#[test]
#[ignore = "a benchmark: benches/controller/flux.sh"]
fn scale_1000_flux_policies_over_200_repositories() {
    use crate::support::controller::peak_rss_kib;
    use std::time::Instant;
    const REPOSITORIES: usize = 200;
    const RANGES: [&str; 5] = ["^1", "~1.0", ">=1.0.0 <2.0.0", "^2", ">=2.0.0-0"];
    let Some(cluster) = cluster::cluster() else {
        return;
    };
    let Some(tools) = crate::support::flux::tools() else {
        return;
    };
    let Some(registry) = DockerRegistry::start(Auth::None) else {
        return;
    };
    cluster.install_flux_crds(&tools.crds);
    cluster.install_hoist();
    let addr = registry.addr.clone();
    for r in 0..REPOSITORIES {
        registry.push_image(
            &format!("team/app-{r}"),
            &["1.0.0", "1.1.0", "2.0.0", "2.1.0-rc.1"],
        );
    }
    // The same objects in both groups, one namespace each.
    let objects = |group: &str, ns: &str| {
        let mut text = String::new();
        for r in 0..REPOSITORIES {
            text.push_str(&format!(
                "---\napiVersion: {group}\nkind: ImageRepository\nmetadata: {{name: app-{r}, namespace: {ns}}}\nspec: {{image: {addr}/team/app-{r}, interval: 5s}}\n"
            ));
            for (p, range) in RANGES.iter().enumerate() {
                text.push_str(&format!(
                    "---\napiVersion: {group}\nkind: ImagePolicy\nmetadata: {{name: app-{r}-{p}, namespace: {ns}}}\nspec:\n  imageRepositoryRef: {{name: app-{r}}}\n  policy: {{semver: {{range: '{range}'}}}}\n"
                ));
            }
        }
        text
    };
    let flux_ns = cluster.namespace("scale-flux");
    let hoist_ns = cluster.namespace("scale-hoist");
    cluster.apply(&objects("image.toolkit.fluxcd.io/v1", &flux_ns));
    cluster.apply(&objects("hoist.dev/v1alpha1", &hoist_ns));
    let total = REPOSITORIES * RANGES.len();
    let kubeconfig = cluster.hoist_kubeconfig();
    let ready = |resource: &str, ns: &str| {
        let list: Value =
            serde_json::from_str(&cluster.kubectl(&["get", resource, "-n", ns, "-o", "json"]))
                .unwrap_or_else(|e| panic!("{e}"));
        list["items"].as_array().map_or(0, |items| {
            items
                .iter()
                .filter(|p| ready(&p["status"]).is_some_and(|c| c["status"] == "True"))
                .count()
        })
    };
    let mut measured = Vec::new();
    for (label, args, resource, ns) in [
        (
            "hoist controller",
            vec![],
            "imagepolicies.hoist.dev",
            &hoist_ns,
        ),
        (
            "hoist controller --flux",
            vec!["--flux"],
            "imagepolicies.image.toolkit.fluxcd.io",
            &flux_ns,
        ),
    ] {
        let mut args: Vec<&str> = args;
        args.extend(["--namespace", ns.as_str()]);
        let mut controller = Running::start(&kubeconfig, &args);
        let started = Instant::now();
        crate::support::wait_for(
            "every policy Ready",
            Duration::from_secs(600),
            Duration::from_secs(1),
            || (ready(resource, ns) == total).then_some(()),
        );
        let converged = started.elapsed();
        // The steady state: repositories rescan every 5 s.
        std::thread::sleep(Duration::from_secs(20));
        let peak = peak_rss_kib(controller.id());
        controller.stop();
        measured.push((label, converged, peak));
    }
    println!(
        "{REPOSITORIES} ImageRepositories, {total} ImagePolicies, interval 5s, on the test control plane:"
    );
    for (label, converged, peak) in &measured {
        println!(
            "  {label}: every policy Ready after {converged:.2?}; peak RSS {:.1} MiB",
            *peak as f64 / 1024.0
        );
    }
    if let [(_, hoist_time, hoist_peak), (_, flux_time, flux_peak)] = measured.as_slice() {
        println!(
            "  --flux / hoist.dev: peak RSS ratio {:.2}, time to Ready ratio {:.2}",
            *flux_peak as f64 / (*hoist_peak).max(1) as f64,
            flux_time.as_secs_f64() / hoist_time.as_secs_f64().max(0.001)
        );
    }
}
