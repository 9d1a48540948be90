//! `hoist controller` on the real control plane, installed as a user would
//! (`kubectl apply --server-side -k deploy/`) and running as deploy/'s
//! ServiceAccount with a token the API server issued: statuses, pushes,
//! Events, printer columns, `kubectl wait`, Stalled specs — and not one
//! request the shipped RBAC forbids, by the audit log.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::cluster::{self, CONTROLLER, Cluster};
use crate::support::condition;
use crate::support::controller::Running;
use crate::support::git::BareRepo;
use crate::support::registry::{Auth, DockerRegistry};

const GROUP: &str = "hoist.dev/v1alpha1";

fn wait_for<T>(what: &str, check: impl FnMut() -> Option<T>) -> T {
    crate::support::wait_for(
        what,
        Duration::from_secs(60),
        Duration::from_millis(200),
        check,
    )
}

fn manifest(registry: &str, ns: &str, tag: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: app}}\nspec:\n  selector: {{matchLabels: {{app: app}}}}\n  template:\n    metadata: {{labels: {{app: app}}}}\n    spec:\n      containers:\n        - name: app\n          image: {registry}/team/app:{tag} # {{\"$imagepolicy\": \"{ns}:app\"}}\n"
    )
}

fn repository(ns: &str, registry: &str, interval: &str) -> String {
    json!({"apiVersion": GROUP, "kind": "ImageRepository",
        "metadata": {"name": "app", "namespace": ns},
        "spec": {"image": format!("{registry}/team/app"), "interval": interval, "insecure": true}})
    .to_string()
}

fn policy(ns: &str, range: &str) -> String {
    json!({"apiVersion": GROUP, "kind": "ImagePolicy",
        "metadata": {"name": "app", "namespace": ns, "labels": {"team": "a"}},
        "spec": {"imageRepositoryRef": {"name": "app"}, "policy": {"semver": {"range": range}}}})
    .to_string()
}

fn automation(ns: &str, url: &str, suspend: bool) -> Value {
    json!({"apiVersion": GROUP, "kind": "ImageUpdateAutomation",
        "metadata": {"name": "fleet", "namespace": ns},
        "spec": {"interval": "10m", "suspend": suspend,
            "git": {"url": url, "checkout": {"ref": {"branch": "main"}},
                "commit": {"author": {"name": "hoist-bot", "email": "bot@example.com"}}},
            "update": {"path": "./clusters"},
            "policySelector": {"matchLabels": {"team": "a"}}}})
}

fn get(cluster: &Cluster, resource: &str, ns: &str, name: &str) -> Option<Value> {
    cluster.get(&format!("{resource}.hoist.dev"), ns, name)
}

fn tag_of(cluster: &Cluster, ns: &str) -> Option<String> {
    get(cluster, "imagepolicies", ns, "app")?["status"]["latestRef"]["tag"]
        .as_str()
        .map(str::to_string)
}

fn wait_for_push(remote: &BareRepo, tag: &str) {
    wait_for(&format!("the push of {tag}"), || {
        remote
            .show("main", "clusters/app.yaml")
            .contains(&format!(":{tag}"))
            .then_some(())
    });
}

/// The requests of deploy/'s ServiceAccount, as itself, that the API
/// server refused for want of permission, after `mark`. (What it does as a
/// ServiceAccount it impersonates is bounded by that account's RBAC, not by
/// deploy/'s.)
pub(crate) fn forbidden(cluster: &Cluster, mark: u64) -> Vec<String> {
    // What the shipped RBAC is for: hoist's objects and its own needs. A
    // workload `spec.sync` applies as the controller itself is refused by
    // design (`spec_sync_as_the_controller_itself_may_change_nothing`).
    let its_own = |e: &Value| {
        e["objectRef"]["apiGroup"] == "hoist.dev"
            || matches!(
                e["objectRef"]["resource"].as_str(),
                Some("secrets" | "events" | "leases" | "namespaces" | "serviceaccounts")
            )
    };
    cluster
        .audit_since(mark)
        .iter()
        .filter(|e| e["user"]["username"] == CONTROLLER && e["impersonatedUser"].is_null())
        .filter(|e| e["responseStatus"]["code"] == 403 && its_own(e))
        .map(cluster::describe)
        .collect()
}

/// A registry with `team/app` 1.0.0 and 1.1.0, a remote whose
/// `clusters/app.yaml` runs 1.0.0, over smart HTTP, and in a new namespace
/// an ImageRepository scanned every second, an ImagePolicy `^1` and an
/// ImageUpdateAutomation of that remote; a kubeconfig as deploy/'s
/// ServiceAccount.
struct Fleet {
    registry: DockerRegistry,
    remote: BareRepo,
    _git: crate::support::git::GitHttp,
    url: String,
    ns: String,
    kubeconfig: std::path::PathBuf,
    _work: tempfile::TempDir,
}

impl Fleet {
    fn start(cluster: &Cluster, name: &str) -> Option<Fleet> {
        let registry = DockerRegistry::start(Auth::None)?;
        let ns = cluster.namespace(name);
        let work = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let kubeconfig = cluster.controller_kubeconfig(work.path());
        registry.push_image("team/app", &["1.0.0", "1.1.0"]);
        let addr = registry.addr.clone();
        let remote = BareRepo::new(&[("clusters/app.yaml", &manifest(&addr, &ns, "1.0.0"))]);
        let (git, url) = remote.serve_http();
        cluster.apply(&repository(&ns, &addr, "1s"));
        cluster.apply(&policy(&ns, "^1"));
        cluster.apply(&automation(&ns, &url, false).to_string());
        Some(Fleet {
            registry,
            remote,
            _git: git,
            url,
            ns,
            kubeconfig,
            _work: work,
        })
    }
}

#[test]
fn reconciles_scan_select_and_push_with_the_shipped_rbac() {
    let Some(cluster) = cluster::cluster() else {
        return;
    };
    let mark = cluster.audit_mark();
    let Some(fleet) = Fleet::start(cluster, "controller") else {
        return;
    };
    let (registry, remote, ns, kubeconfig) = (
        &fleet.registry,
        &fleet.remote,
        fleet.ns.as_str(),
        fleet.kubeconfig.as_path(),
    );
    let url = fleet.url.as_str();
    let addr = registry.addr.clone();
    let mut controller = Running::start(kubeconfig, &["--namespace", ns]);

    // Statuses become Ready with the right latest ref; main gets the commit.
    let scanned = wait_for("the repository's scan", || {
        let r = get(cluster, "imagerepositories", ns, "app")?;
        (condition(&r, "Ready")?.0 == "True").then_some(r)
    });
    assert_eq!(scanned["status"]["lastScanResult"]["tagCount"], 2);
    assert_eq!(
        scanned["status"]["canonicalImageName"],
        format!("{addr}/team/app")
    );
    wait_for("latestRef 1.1.0", || {
        (tag_of(cluster, ns)? == "1.1.0").then_some(())
    });
    wait_for_push(remote, "1.1.0");
    let updated = wait_for("the automation's status", || {
        let a = get(cluster, "imageupdateautomations", ns, "fleet")?;
        a["status"]["lastPushCommit"]
            .as_str()
            .is_some()
            .then_some(a)
    });
    assert_eq!(updated["status"]["lastPushCommit"], remote.head("main"));
    assert_eq!(
        updated["status"]["observedPolicies"][format!("{ns}/app")]["tag"],
        "1.1.0"
    );

    // What a user sees: `kubectl wait` and the printer columns, filled in.
    cluster.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "--timeout=30s",
        "-n",
        ns,
        "imagerepository/app",
        "imagepolicy/app",
    ]);
    let table = cluster.kubectl(&[
        "get",
        "imagerepositories,imagepolicies,imageupdateautomations,receivers",
        "-A",
    ]);
    let row = |kind: &str| {
        table
            .lines()
            .find(|l| l.starts_with(ns) && l.contains(kind))
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        row("imagepolicy.hoist.dev/app").contains(&format!("{addr}/team/app"))
            && row("imagepolicy.hoist.dev/app").contains("1.1.0"),
        "{table}"
    );
    assert!(
        row("imagerepository.hoist.dev/app").contains("True"),
        "{table}"
    );
    assert!(
        !row("imageupdateautomation.hoist.dev/fleet").is_empty(),
        "{table}"
    );
    let events = cluster.kubectl(&["get", "events.events.k8s.io", "-n", ns, "-o", "json"]);
    assert!(events.contains("NewLatestTag"), "{events}");

    // A new tag in the registry: scanned on the interval, selected, pushed.
    registry.push_image("team/app", &["1.2.0"]);
    wait_for_push(remote, "1.2.0");
    let moved = get(cluster, "imagepolicies", ns, "app")
        .unwrap_or_else(|| panic!("no imagepolicies {}/{}", ns, "app"));
    assert_eq!(moved["status"]["observedPreviousRef"]["tag"], "1.1.0");

    // Suspended, the automation pushes nothing, though the policy moves on.
    cluster.apply(&automation(ns, url, true).to_string());
    let main = remote.head("main");
    registry.push_image("team/app", &["1.3.0"]);
    wait_for("latestRef 1.3.0", || {
        (tag_of(cluster, ns)? == "1.3.0").then_some(())
    });
    // The decision made with 1.3.0 in view, then its outcome: no push.
    wait_for("the suspended automation to see 1.3.0", || {
        controller
            .log()
            .lines()
            .any(|l| l.contains("suspended; nothing is pushed") && l.contains("=1.3.0"))
            .then_some(())
    });
    assert_eq!(remote.head("main"), main, "a suspended automation pushed");

    assert_eq!(controller.get("/healthz").0, 200);
    assert_eq!(controller.get("/readyz").0, 200);
    let (_, metrics) = controller.get("/metrics");
    for expected in [
        "hoist_reconciles_total{kind=\"ImageRepository\",result=\"success\"}",
        "hoist_reconcile_duration_seconds_bucket{le=",
        &format!("hoist_registry_requests_total{{host=\"{addr}\",status=\"200\"}}"),
        "hoist_commits_pushed_total 2",
        "hoist_tags_scanned_total",
    ] {
        assert!(
            metrics.contains(expected),
            "{expected} missing from\n{metrics}"
        );
    }

    // An invalid policy is Stalled with a message naming the field.
    cluster.apply(&policy(ns, "not a range"));
    let stalled = wait_for("Stalled", || {
        condition(&get(cluster, "imagepolicies", ns, "app")?, "Stalled")
    });
    assert_eq!(stalled.0, "True");
    assert!(
        stalled.2.contains("spec.policy.semver.range"),
        "{stalled:?}"
    );

    // A local path would reach the pod's own files, the state directory
    // with every team's clones among them: Stalled, and nothing pushed.
    cluster.apply(&policy(ns, "^1"));
    let main = remote.head("main");
    let mut local = automation(ns, &remote.url(), false);
    local["spec"]["update"]["path"] = json!("./clusters/other");
    cluster.apply(&local.to_string());
    let refused = wait_for("the local automation Stalled", || {
        let stalled = condition(
            &get(cluster, "imageupdateautomations", ns, "fleet")?,
            "Stalled",
        )?;
        (stalled.0 == "True").then_some(stalled)
    });
    assert!(
        refused.1 == "InvalidSpec"
            && refused.2.contains("spec.git.url")
            && refused.2.contains("https://"),
        "{refused:?}"
    );
    assert_eq!(remote.head("main"), main, "a local remote was pushed to");

    // Nothing it did needed more than deploy/rbac.yaml gives.
    assert_eq!(controller.stop(), Some(0));
    let requests = cluster
        .audit_since(mark)
        .iter()
        .filter(|e| e["user"]["username"] == CONTROLLER)
        .count();
    assert!(requests > 10, "{requests} requests as {CONTROLLER}");
    assert_eq!(forbidden(cluster, mark), Vec::<String>::new());
    let log = controller.log();
    assert!(!log.to_lowercase().contains("forbidden"), "{log}");
}

#[test]
fn spec_sync_runs_as_the_named_service_account_and_cannot_reach_another_team() {
    let Some(cluster) = cluster::cluster() else {
        return;
    };
    let Some(registry) = DockerRegistry::start(Auth::None) else {
        return;
    };
    let team_a = cluster.namespace("tenant-a");
    let team_b = cluster.namespace("tenant-b");
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let kubeconfig = cluster.controller_kubeconfig(work.path());
    // team-a's deployer may edit team-a, and nothing else.
    cluster.apply(&format!(
        "apiVersion: v1
kind: ServiceAccount
metadata: {{name: deployer, namespace: {team_a}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: deployer-edit, namespace: {team_a}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: edit}}
subjects: [{{kind: ServiceAccount, name: deployer, namespace: {team_a}}}]
"
    ));
    registry.push_image("team/app", &["1.0.0", "1.1.0"]);
    let addr = registry.addr.clone();
    let remote = BareRepo::new(&[
        ("clusters/app.yaml", &manifest(&addr, &team_a, "1.0.0")),
        (
            "elsewhere/settings.yaml",
            &format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: settings, namespace: {team_b}}}\ndata: {{owner: team-a}}\n"
            ),
        ),
    ]);
    let (_git, url) = remote.serve_http();
    cluster.apply(&repository(&team_a, &addr, "1h"));
    cluster.apply(&policy(&team_a, "^1"));
    let synced = |name: &str, path: &str| {
        let mut a = automation(&team_a, &url, false);
        a["metadata"]["name"] = json!(name);
        a["spec"]["serviceAccountName"] = json!("deployer");
        a["spec"]["sync"] = json!({"path": path, "prune": true});
        a.to_string()
    };
    cluster.apply(&synced("fleet", "./clusters"));
    cluster.apply(&synced("reach", "./elsewhere"));
    let mark = cluster.audit_mark();
    let mut controller = Running::start(&kubeconfig, &["--namespace", &team_a]);

    // Its own namespace: pushed, then applied as the deployer.
    wait_for_push(&remote, "1.1.0");
    let fleet = wait_for("the sync of fleet", || {
        let a = get(cluster, "imageupdateautomations", &team_a, "fleet")?;
        (a["status"]["syncRevision"] == remote.head("main")).then_some(a)
    });
    assert_eq!(fleet["status"]["inventory"][0]["name"], "app", "{fleet}");
    let app = cluster
        .get("deployment", &team_a, "app")
        .unwrap_or_else(|| panic!("no deployment {team_a}/app"));
    assert_eq!(
        app["spec"]["template"]["spec"]["containers"][0]["image"],
        format!("{addr}/team/app:1.1.0")
    );
    let deployer = hoist::sync::service_account_user(&team_a, "deployer");
    let applied_as: Vec<String> = cluster
        .audit_since(mark)
        .iter()
        .filter(|e| e["objectRef"]["resource"] == "deployments" && e["verb"] == "patch")
        .map(|e| {
            format!(
                "{} as {}",
                e["user"]["username"].as_str().unwrap_or(""),
                e["impersonatedUser"]["username"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert!(
        !applied_as.is_empty()
            && applied_as
                .iter()
                .all(|a| a == &format!("{CONTROLLER} as {deployer}")),
        "{applied_as:?}"
    );

    // Another team's namespace: refused by the API server, said in the
    // status, and nothing written there.
    let refused = wait_for("the refusal in reach's status", || {
        let a = get(cluster, "imageupdateautomations", &team_a, "reach")?;
        let ready = condition(&a, "Ready")?;
        (ready.0 == "False" && ready.2.contains("forbidden")).then_some(ready)
    });
    assert!(
        refused.2.contains(&deployer) && refused.2.contains(&team_b),
        "{refused:?}"
    );
    assert!(cluster.get("configmap", &team_b, "settings").is_none());
    let written_in_b: Vec<String> = cluster
        .audit_since(mark)
        .iter()
        .filter(|e| e["objectRef"]["namespace"] == team_b.as_str())
        .filter(|e| {
            e["responseStatus"]["code"]
                .as_u64()
                .is_some_and(|c| c < 300)
        })
        .filter(|e| !matches!(e["verb"].as_str(), Some("get" | "list" | "watch")))
        .map(cluster::describe)
        .collect();
    assert_eq!(written_in_b, Vec::<String>::new());
    assert_eq!(controller.stop(), Some(0));
}

#[test]
fn the_controller_rides_out_an_api_server_restart_and_stops_promptly_without_one() {
    // Its own control plane: stopping the API server would disturb every
    // other test on the shared one.
    let Some(cluster) = cluster::private() else {
        return;
    };
    let Some(fleet) = Fleet::start(&cluster, "restart") else {
        return;
    };
    let (registry, remote, ns, kubeconfig) = (
        &fleet.registry,
        &fleet.remote,
        fleet.ns.as_str(),
        fleet.kubeconfig.as_path(),
    );
    let mut controller = Running::start(kubeconfig, &["--namespace", ns]);
    wait_for_push(remote, "1.1.0");

    // The API server restarts: watches resume, and neither a new tag nor a
    // new object is missed.
    cluster.component("restart", "kube-apiserver");
    registry.push_image("team/app", &["1.2.0"]);
    wait_for_push(remote, "1.2.0");
    let mut other =
        serde_json::from_str::<Value>(&policy(ns, "~1.1")).unwrap_or_else(|e| panic!("{e}"));
    other["metadata"]["name"] = json!("pinned");
    cluster.apply(&other.to_string());
    wait_for("the new policy's latest ref", || {
        let p = get(&cluster, "imagepolicies", ns, "pinned")?;
        (p["status"]["latestRef"]["tag"] == "1.1.0").then_some(())
    });
    assert_eq!(controller.get("/readyz").0, 200);

    // No API server: not ready, errors that name the server, and SIGTERM
    // still ends it at once.
    cluster.component("stop", "kube-apiserver");
    let server = std::fs::read_to_string(kubeconfig)
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("server: https://")
                .map(str::to_string)
        })
        .unwrap_or_default();
    wait_for("/readyz to say not ready", || {
        (controller.get("/readyz").0 == 503).then_some(())
    });
    // The probe says so once; each object's failed reconcile names the
    // server and the object.
    wait_for("an error naming the API server", || {
        controller.log().contains(&server).then_some(())
    });
    wait_for("a reconcile error naming the server and the object", || {
        controller
            .log()
            .lines()
            .any(|l| {
                l.contains(&format!("object=ImageRepository {ns}/app"))
                    && l.contains(&format!("server=https://{server}/"))
            })
            .then_some(())
    });
    assert_eq!(
        controller.stop_within(Duration::from_secs(10)),
        Some(0),
        "SIGTERM without an API server: {}",
        controller.log()
    );

    // As deployed, leading on the Lease in hoist-system: SIGTERM while the
    // API server is gone ends it at once too, though it cannot release
    // the lease.
    cluster.component("start", "kube-apiserver");
    // A lease long enough that the leader is still leading, renewals
    // stuck on the silent port, when SIGTERM comes.
    let mut leader = Running::start(
        kubeconfig,
        &[
            "--namespace",
            ns,
            "--leader-elect",
            "--lease-duration",
            "120",
        ],
    );
    wait_for("the lease", || {
        leader.log().contains("leading").then_some(())
    });
    cluster.component("stop", "kube-apiserver");
    // Worse than refusing: its port accepts and never answers, as a
    // server behind a dead network path does (no real API server does this
    // on demand, so a listener of the test's own stands in for it).
    let silent = std::net::TcpListener::bind(&server).unwrap_or_else(|e| panic!("{server}: {e}"));
    let held = std::thread::spawn(move || silent.incoming().take(64).flatten().collect::<Vec<_>>());
    wait_for("the leader to notice the silent port", || {
        (leader.get("/readyz").0 == 503).then_some(())
    });
    assert_eq!(
        leader.stop_within(Duration::from_secs(10)),
        Some(0),
        "SIGTERM to a leader without an API server: {}",
        leader.log()
    );
    drop(held);
}

#[test]
fn one_leader_the_standby_takes_over_from_a_killed_one_and_no_change_is_pushed_twice() {
    let Some(cluster) = cluster::cluster() else {
        return;
    };
    let Some(fleet) = Fleet::start(cluster, "leader") else {
        return;
    };
    let (registry, remote, ns, kubeconfig) = (
        &fleet.registry,
        &fleet.remote,
        fleet.ns.as_str(),
        fleet.kubeconfig.as_path(),
    );
    // A Lease of this test's own, in hoist-system as deploy/ has it.
    let lease = format!("hoist-{ns}");
    const DURATION: u64 = 6;
    let duration = DURATION.to_string();
    let elect = |identity: &str| {
        Running::start(
            kubeconfig,
            &[
                "--namespace",
                ns,
                "--leader-elect",
                "--lease-name",
                &lease,
                "--lease-duration",
                &duration,
                "--identity",
                identity,
            ],
        )
    };
    let holder = || {
        cluster
            .get("lease.coordination.k8s.io", "hoist-system", &lease)
            .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
    };
    // A time the Lease records (`renewTime`, `acquireTime`), as the API
    // server stores it.
    let lease_time = |field: &str| {
        cluster
            .get("lease.coordination.k8s.io", "hoist-system", &lease)
            .and_then(|l| l["spec"][field].as_str()?.parse::<jiff::Timestamp>().ok())
    };
    let mark = cluster.audit_mark();
    let mut a = elect("pod-a");
    wait_for("pod-a to lead", || (holder()? == "pod-a").then_some(()));
    let mut b = elect("pod-b");
    wait_for_push(remote, "1.1.0");
    // The standby waits while the leader renews: watch the leader renew
    // past the point where an unrenewed lease would have expired, holding
    // it all along.
    let first = wait_for("a renewal", || lease_time("renewTime"));
    let expired = first + jiff::SignedDuration::from_secs(DURATION as i64 + 1);
    wait_for("pod-a to renew past a lease duration", || {
        assert_eq!(holder().as_deref(), Some("pod-a"), "the standby took over");
        lease_time("renewTime").filter(|t| *t > expired)
    });

    // SIGKILL: no release; pod-b takes the lease once it has expired, and
    // not before (the times are the Lease's own).
    a.kill();
    let killed = std::time::Instant::now();
    let last_renew = wait_for("the last renewal", || lease_time("renewTime"));
    wait_for("pod-b to lead", || (holder()? == "pod-b").then_some(()));
    eprintln!(
        "takeover {:.1}s after SIGKILL (lease {DURATION}s)",
        killed.elapsed().as_secs_f64()
    );
    let acquired = wait_for("pod-b's acquireTime", || lease_time("acquireTime"));
    assert!(
        acquired >= last_renew + jiff::SignedDuration::from_secs(DURATION as i64),
        "pod-b acquired at {acquired}, before pod-a's lease from {last_renew} expired"
    );
    registry.push_image("team/app", &["1.2.0"]);
    wait_for_push(remote, "1.2.0");
    // The run that pushed has recorded its push: whatever runs next sees
    // the branch as it is.
    let head = remote.head("main");
    wait_for("pod-b to record its push", || {
        let automation = get(cluster, "imageupdateautomations", ns, "fleet")?;
        (automation["status"]["lastPushCommit"].as_str()? == head).then_some(())
    });
    let pushes: Vec<String> = remote
        .log("main")
        .into_iter()
        .filter(|l| l.starts_with("hoist-bot|"))
        .collect();
    assert_eq!(pushes.len(), 2, "one commit per change: {pushes:?}");
    // SIGTERM: pod-b releases the lease as it goes, so a new standby need
    // not wait for it to expire.
    let mut c = elect("pod-c");
    assert_eq!(b.stop(), Some(0));
    assert_ne!(
        holder().as_deref(),
        Some("pod-b"),
        "the lease was not released"
    );
    wait_for("pod-c to lead", || (holder()? == "pod-c").then_some(()));
    assert_eq!(c.stop(), Some(0));
    assert_eq!(forbidden(cluster, mark), Vec::<String>::new());
}

#[test]
fn a_policy_reads_another_namespaces_repository_only_when_its_access_from_admits_it() {
    let Some(cluster) = cluster::cluster() else {
        return;
    };
    let Some(registry) = DockerRegistry::start(Auth::None) else {
        return;
    };
    let owner = cluster.namespace("acl-owner");
    let admitted = cluster.namespace("acl-admitted");
    let other = cluster.namespace("acl-other");
    cluster.kubectl(&["label", "namespace", &admitted, "hoist.test/reads=app"]);
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let kubeconfig = cluster.controller_kubeconfig(work.path());
    registry.push_image("team/app", &["1.0.0", "1.1.0"]);
    let addr = registry.addr.clone();
    // This test's objects only: the controller watches every namespace.
    let shard = json!({"hoist.test/shard": owner});
    cluster.apply(
        &json!({"apiVersion": GROUP, "kind": "ImageRepository",
            "metadata": {"name": "app", "namespace": owner, "labels": shard},
            "spec": {"image": format!("{addr}/team/app"), "interval": "1h", "insecure": true,
                "accessFrom": {"namespaceSelectors": [{"matchLabels": {"hoist.test/reads": "app"}}]}}})
        .to_string(),
    );
    for ns in [&admitted, &other] {
        cluster.apply(
            &json!({"apiVersion": GROUP, "kind": "ImagePolicy",
                "metadata": {"name": "app", "namespace": ns, "labels": shard},
                "spec": {"imageRepositoryRef": {"name": "app", "namespace": owner},
                    "policy": {"semver": {"range": "^1"}}}})
            .to_string(),
        );
    }
    let selector = format!("hoist.test/shard={owner}");
    let mark = cluster.audit_mark();
    let mut controller = Running::start(&kubeconfig, &["--watch-label-selector", &selector]);
    wait_for("the admitted policy's latest ref", || {
        (tag_of(cluster, &admitted)? == "1.1.0").then_some(())
    });
    let refused = wait_for("the other policy Stalled", || {
        let stalled = condition(&get(cluster, "imagepolicies", &other, "app")?, "Stalled")?;
        (stalled.0 == "True").then_some(stalled)
    });
    assert_eq!(refused.1, "AccessDenied", "{refused:?}");
    assert!(
        refused.2.starts_with("spec.imageRepositoryRef: ")
            && refused.2.contains(&format!("ImageRepository {owner}/app"))
            && refused.2.contains(&other),
        "{refused:?}"
    );
    assert!(tag_of(cluster, &other).is_none());

    // A Namespace's labels are watched: labelling the other namespace
    // admits its policy, unlabelling the admitted one refuses its policy,
    // with no change to either policy.
    cluster.kubectl(&["label", "namespace", &other, "hoist.test/reads=app"]);
    wait_for("the other policy admitted once labelled", || {
        (tag_of(cluster, &other)? == "1.1.0").then_some(())
    });
    let ready = get(cluster, "imagepolicies", &other, "app").and_then(|p| condition(&p, "Ready"));
    assert_eq!(ready.map(|r| r.0), Some("True".to_string()));
    cluster.kubectl(&["label", "namespace", &admitted, "hoist.test/reads-"]);
    let refused = wait_for("the admitted policy Stalled once unlabelled", || {
        let stalled = condition(&get(cluster, "imagepolicies", &admitted, "app")?, "Stalled")?;
        (stalled.0 == "True").then_some(stalled)
    });
    assert_eq!(refused.1, "AccessDenied", "{refused:?}");
    cluster.kubectl(&["label", "namespace", &admitted, "hoist.test/reads=app"]);
    wait_for("the admitted policy Ready once labelled again", || {
        let ready = condition(&get(cluster, "imagepolicies", &admitted, "app")?, "Ready")?;
        (ready.0 == "True").then_some(())
    });
    assert_eq!(controller.stop(), Some(0));
    // Reading and watching Namespaces is within the shipped RBAC.
    assert_eq!(forbidden(cluster, mark), Vec::<String>::new());

    // --no-cross-namespace-refs refuses even what accessFrom admits.
    let mut strict = Running::start(
        &kubeconfig,
        &[
            "--watch-label-selector",
            &selector,
            "--no-cross-namespace-refs",
        ],
    );
    cluster.kubectl(&[
        "annotate",
        "imagepolicy.hoist.dev/app",
        "-n",
        &admitted,
        "reconcile.hoist.dev/requestedAt=now",
    ]);
    let refused = wait_for("the admitted policy Stalled under the flag", || {
        let stalled = condition(&get(cluster, "imagepolicies", &admitted, "app")?, "Stalled")?;
        (stalled.0 == "True").then_some(stalled)
    });
    assert!(
        refused.2.contains("--no-cross-namespace-refs"),
        "{refused:?}"
    );
    assert_eq!(strict.stop(), Some(0));
}

/// `benches/controller/run.sh`: 1,000 ImagePolicies over 200
/// ImageRepositories (interval 5 s) on the real control plane, the
/// controller running as deploy/'s ServiceAccount. Prints the time until
/// every policy is Ready, peak RSS, and API requests and writes per
/// reconcile in the steady state by the audit log, next to an idle
/// controller's (watching an empty namespace) in the same run. Figures,
/// not assertions: run it with `--ignored --nocapture`, best from a
/// release build.
#[test]
#[ignore = "a benchmark: benches/controller/run.sh"]
fn scale_1000_policies_over_200_repositories() {
    use crate::support::controller::{metric_sum, peak_rss_kib};
    use std::time::Instant;
    const REPOSITORIES: usize = 200;
    const RANGES: [&str; 5] = ["^1", "~1.0", ">=1.0.0 <2.0.0", "^2", ">=2.0.0-0"];
    let Some(cluster) = cluster::cluster() else {
        return;
    };
    let Some(registry) = DockerRegistry::start(Auth::None) else {
        return;
    };
    let addr = registry.addr.clone();
    for r in 0..REPOSITORIES {
        registry.push_image(
            &format!("team/app-{r}"),
            &["1.0.0", "1.1.0", "2.0.0", "2.1.0-rc.1"],
        );
    }
    let ns = cluster.namespace("scale");
    let empty = cluster.namespace("scale-idle");
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let kubeconfig = cluster.controller_kubeconfig(work.path());
    let mut objects = String::new();
    for r in 0..REPOSITORIES {
        let mut repository: Value =
            serde_json::from_str(&repository(&ns, &addr, "5s")).unwrap_or_else(|e| panic!("{e}"));
        repository["metadata"]["name"] = json!(format!("app-{r}"));
        repository["spec"]["image"] = json!(format!("{addr}/team/app-{r}"));
        objects.push_str(&format!("---\n{repository}\n"));
        for (p, range) in RANGES.iter().enumerate() {
            let mut policy: Value =
                serde_json::from_str(&policy(&ns, range)).unwrap_or_else(|e| panic!("{e}"));
            policy["metadata"]["name"] = json!(format!("app-{r}-{p}"));
            policy["spec"]["imageRepositoryRef"]["name"] = json!(format!("app-{r}"));
            objects.push_str(&format!("---\n{policy}\n"));
        }
    }
    cluster.apply(&objects);
    let total = REPOSITORIES * RANGES.len();

    let mut idle = Running::start(&kubeconfig, &["--namespace", &empty]);
    let controller = Running::start(&kubeconfig, &["--namespace", &ns]);
    let started = Instant::now();
    let ready_policies = || {
        let list: Value = serde_json::from_str(&cluster.kubectl(&[
            "get",
            "imagepolicies.hoist.dev",
            "-n",
            &ns,
            "-o",
            "json",
        ]))
        .unwrap_or_else(|e| panic!("{e}"));
        list["items"].as_array().map_or(0, |items| {
            items
                .iter()
                .filter(|p| condition(p, "Ready").is_some_and(|c| c.0 == "True"))
                .count()
        })
    };
    crate::support::wait_for(
        "every policy Ready",
        Duration::from_secs(600),
        Duration::from_secs(1),
        || (ready_policies() == total).then_some(()),
    );
    let converged = started.elapsed();

    // Steady state: repositories rescan every 5 s; nothing changes.
    std::thread::sleep(Duration::from_secs(6));
    let reconciles_before = metric_sum(&controller.get("/metrics").1, "hoist_reconciles_total");
    let mark = cluster.audit_mark();
    let window = Duration::from_secs(20);
    std::thread::sleep(window);
    let events = cluster.audit_since(mark);
    let reconciles =
        metric_sum(&controller.get("/metrics").1, "hoist_reconciles_total") - reconciles_before;
    let counts = |namespace: &str| {
        let mine: Vec<&Value> = events
            .iter()
            .filter(|e| e["user"]["username"] == CONTROLLER)
            .filter(|e| e["objectRef"]["namespace"] == namespace)
            .filter(|e| e["verb"] != "watch")
            .collect();
        let writes = mine
            .iter()
            .filter(|e| !matches!(e["verb"].as_str(), Some("get" | "list")))
            .count();
        (mine.len(), writes)
    };
    let (requests, writes) = counts(&ns);
    let (idle_requests, idle_writes) = counts(&empty);
    let peak = peak_rss_kib(controller.id());
    let idle_peak = peak_rss_kib(idle.id());
    idle.stop();
    println!(
        "controller on the test control plane: {REPOSITORIES} ImageRepositories, {total} ImagePolicies, interval 5s"
    );
    println!("  every policy Ready after start: {converged:.2?}");
    println!(
        "  peak RSS: {:.1} MiB; idle controller in the same run {:.1} MiB (ratio {:.2})",
        peak as f64 / 1024.0,
        idle_peak as f64 / 1024.0,
        peak as f64 / idle_peak.max(1) as f64
    );
    println!(
        "  steady state over {window:?}: {reconciles} reconciles, {requests} API requests and {writes} writes ({:.3} and {:.3} per reconcile); idle: {idle_requests} requests, {idle_writes} writes",
        requests as f64 / reconciles.max(1.0),
        writes as f64 / reconciles.max(1.0)
    );
}

#[test]
fn requested_reconciles_scan_at_once_within_the_namespace_and_shard() {
    let Some(cluster) = cluster::cluster() else {
        return;
    };
    let Some(registry) = DockerRegistry::start(Auth::None) else {
        return;
    };
    registry.push_image("team/app", &["1.0.0"]);
    let addr = registry.addr.clone();
    let ns = cluster.namespace("requested");
    let elsewhere = cluster.namespace("requested-elsewhere");
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let kubeconfig = cluster.controller_kubeconfig(work.path());
    let object = |namespace: &str, name: &str, shard: &str, annotations: Value| {
        let mut r: Value = serde_json::from_str(&repository(namespace, &addr, "1h"))
            .unwrap_or_else(|e| panic!("{e}"));
        r["metadata"]["name"] = json!(name);
        r["metadata"]["labels"] = json!({"shard": shard});
        r["metadata"]["annotations"] = annotations;
        r.to_string()
    };
    cluster.apply(&object(&ns, "app", "a", json!({})));
    // Another shard's object, and one in another namespace: not ours.
    cluster.apply(&object(&ns, "other-shard", "b", json!({})));
    cluster.apply(&object(&elsewhere, "app", "a", json!({})));
    let _controller = Running::start(
        &kubeconfig,
        &["--namespace", &ns, "--watch-label-selector", "shard=a"],
    );
    wait_for("the first scan", || {
        let r = get(cluster, "imagerepositories", &ns, "app")?;
        (r["status"]["lastScanResult"]["tagCount"] == 1).then_some(())
    });
    registry.push_image("team/app", &["1.1.0"]);
    cluster.apply(&object(
        &ns,
        "app",
        "a",
        json!({"reconcile.hoist.dev/requestedAt": "2026-11-26T10:00:00Z"}),
    ));
    let rescanned = wait_for("a scan on request, not after the hour", || {
        let r = get(cluster, "imagerepositories", &ns, "app")?;
        (r["status"]["lastScanResult"]["tagCount"] == 2).then_some(r)
    });
    assert_eq!(
        rescanned["status"]["lastHandledReconcileAt"],
        "2026-11-26T10:00:00Z"
    );
    for (namespace, name) in [(ns.as_str(), "other-shard"), (elsewhere.as_str(), "app")] {
        let untouched = get(cluster, "imagerepositories", namespace, name)
            .unwrap_or_else(|| panic!("no imagerepositories {}/{}", namespace, name));
        assert!(
            untouched["status"].is_null(),
            "{namespace}/{name}: {untouched}"
        );
    }
}

#[test]
fn a_webhook_asks_for_a_scan_and_the_tag_is_pushed_under_the_shipped_rbac() {
    use base64::Engine;
    let Some(cluster) = cluster::cluster() else {
        return;
    };
    let Some(registry) = DockerRegistry::start(Auth::None) else {
        return;
    };
    registry.push_image("team/app", &["1.0.0"]);
    let addr = registry.addr.clone();
    let ns = cluster.namespace("receiver");
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let kubeconfig = cluster.controller_kubeconfig(work.path());
    let remote = BareRepo::new(&[("clusters/app.yaml", &manifest(&addr, &ns, "1.0.0"))]);
    let (_git, url) = remote.serve_http();
    cluster.apply(&repository(&ns, &addr, "1h"));
    cluster.apply(&policy(&ns, "^1"));
    let mut fleet = automation(&ns, &url, false);
    fleet["spec"]["interval"] = json!("1h");
    cluster.apply(&fleet.to_string());
    let token = "webhook-token-of-the-test";
    cluster.apply(
        &json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "hook", "namespace": ns},
            "data": {"token": base64::engine::general_purpose::STANDARD.encode(format!("{token}\n"))}})
        .to_string(),
    );
    for (name, kind, secret) in [
        ("registry", "distribution", "hook"),
        ("no-secret", "harbor", "missing"),
    ] {
        cluster.apply(
            &json!({"apiVersion": GROUP, "kind": "Receiver",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"type": kind, "secretRef": {"name": secret}}})
            .to_string(),
        );
    }
    let mark = cluster.audit_mark();
    let mut controller = Running::start(
        &kubeconfig,
        &["--namespace", &ns, "--webhook-addr", "127.0.0.1:0"],
    );
    let webhook = controller.wait_listening("webhook");
    let path = {
        use sha2::Digest;
        format!(
            "/hook/{:x}",
            sha2::Sha256::digest(format!("{ns}/registry{token}").as_bytes())
        )
    };
    let served = wait_for("the Receiver's path", || {
        let r = get(cluster, "receivers", &ns, "registry")?;
        (condition(&r, "Ready")?.0 == "True").then_some(r)
    });
    assert_eq!(served["status"]["webhookPath"], path);
    let missing = wait_for("the Receiver without a Secret", || {
        condition(&get(cluster, "receivers", &ns, "no-secret")?, "Ready")
    });
    assert_eq!(missing.0, "False");
    assert!(
        missing.2.contains(&format!("Secret {ns}/missing")),
        "{missing:?}"
    );
    wait_for("the first automation run", || {
        let a = get(cluster, "imageupdateautomations", &ns, "fleet")?;
        (condition(&a, "Ready")?.0 == "True").then_some(())
    });

    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let post = |authorization: &str, body: &str| {
        agent
            .post(format!("http://{webhook}{path}"))
            .header("Authorization", authorization)
            .send(body)
            .map(|r| r.status().as_u16())
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let event =
        json!({"events": [{"action": "push", "target": {"repository": "team/app", "tag": "1.1.0"},
        "request": {"host": addr}}]})
        .to_string();
    assert_eq!(post("Bearer wrong", &event), 401);
    registry.push_image("team/app", &["1.1.0"]);
    assert_eq!(post(&format!("Bearer {token}"), &event), 202);
    // Scanned and pushed at once, though the interval is an hour.
    wait_for_push(&remote, "1.1.0");
    let requested = get(cluster, "imagerepositories", &ns, "app")
        .unwrap_or_else(|| panic!("no imagerepositories {}/{}", &ns, "app"));
    assert!(
        requested["metadata"]["annotations"]["reconcile.hoist.dev/requestedAt"].is_string(),
        "{requested}"
    );

    // A deleted Receiver is no longer served.
    cluster.kubectl(&["delete", "receiver.hoist.dev", "registry", "-n", &ns]);
    wait_for("the path to go", || {
        (post(&format!("Bearer {token}"), &event) == 404).then_some(())
    });
    assert_eq!(controller.stop(), Some(0));
    assert_eq!(forbidden(cluster, mark), Vec::<String>::new());
}

#[test]
fn a_failing_automation_retries_on_a_backoff_not_on_its_own_status_writes() {
    use crate::support::controller::metric_sum;
    let Some(cluster) = cluster::cluster() else {
        return;
    };
    let ns = cluster.namespace("backoff");
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let kubeconfig = cluster.controller_kubeconfig(work.path());
    // Nothing listens on port 1: every run fails.
    cluster.apply(&automation(&ns, "http://127.0.0.1:1/fleet.git", false).to_string());
    // A selected policy with a latest ref, written through the status
    // subresource as a controller would: the failed run never records it
    // as observed, so "a policy changed" stays true after the failure.
    cluster.apply(&policy(&ns, "^1"));
    cluster.kubectl(&[
        "patch",
        "imagepolicy.hoist.dev",
        "app",
        "-n",
        &ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status": {"latestRef": {"name": "registry.example/team/app", "tag": "1.0.0"}}}"#,
    ]);
    let controller = Running::start(&kubeconfig, &["--namespace", &ns]);
    let failed = wait_for("the failure in the status", || {
        condition(
            &get(cluster, "imageupdateautomations", &ns, "fleet")?,
            "Reconciling",
        )
    });
    assert_eq!(
        (failed.0.as_str(), failed.1.as_str()),
        ("True", "UpdateFailed"),
        "{failed:?}"
    );
    // The failure's own status write wakes the automation; it must decide
    // to hold the backoff (the first retry is 5 s away), not run again.
    wait_for(
        "the wake-up by its own status write to hold the backoff",
        || {
            controller
                .log()
                .contains("backing off after a failed run; not run again yet")
                .then_some(())
        },
    );
    // Judged from the log's order, not from a later read of the metrics:
    // on a loaded machine the metrics may be read after the 5 s retry has
    // rightly run. Before the hold, one failed run and no other.
    let log = controller.log();
    let held = log
        .find("backing off after a failed run; not run again yet")
        .unwrap_or(log.len());
    let failures = log[..held]
        .lines()
        .filter(|l| l.contains("retry_in") && l.contains("fleet"))
        .count();
    assert_eq!(failures, 1, "{log}");
    let (_, metrics) = controller.get("/metrics");
    let runs = metric_sum(
        &metrics,
        "hoist_reconciles_total{kind=\"ImageUpdateAutomation\",result=\"error\"}",
    );
    assert!(runs >= 1.0, "{metrics}");
}

#[test]
fn spec_sync_as_the_controller_itself_may_change_nothing() {
    let Some(cluster) = cluster::cluster() else {
        return;
    };
    let Some(fleet) = Fleet::start(cluster, "sync-as-controller") else {
        return;
    };
    let (remote, ns) = (&fleet.remote, fleet.ns.as_str());
    // No serviceAccountName, no --default-service-account.
    let mut synced = automation(ns, &fleet.url, false);
    synced["spec"]["sync"] = json!({"path": "./clusters"});
    cluster.apply(&synced.to_string());
    let mut controller = Running::start(&fleet.kubeconfig, &["--namespace", ns]);
    wait_for_push(remote, "1.1.0");
    let refused = wait_for("the refused sync in the status", || {
        let ready = condition(
            &get(cluster, "imageupdateautomations", ns, "fleet")?,
            "Ready",
        )?;
        (ready.0 == "False" && ready.2.contains("forbidden")).then_some(ready)
    });
    assert!(
        refused.2.contains(&format!("User \"{CONTROLLER}\"")) && refused.2.contains("deployments"),
        "{refused:?}"
    );
    assert!(cluster.get("deployment", ns, "app").is_none());
    assert_eq!(controller.stop(), Some(0));
}

/// A spec that only fails on the real changes (a pull request title past
/// the forges' 255 bytes once the real namespace is in it; the sample a
/// load checks with is shorter) is Stalled, as a spec error found at load
/// time is: the reconcile returns no error, so nothing retries it with
/// backoff until the spec or a policy changes.
#[test]
fn a_spec_that_fails_only_on_the_real_changes_stalls_and_is_not_retried() {
    use crate::support::controller::metric_sum;
    let Some(cluster) = cluster::cluster() else {
        return;
    };
    let Some(fleet) = Fleet::start(cluster, "stalled") else {
        return;
    };
    let ns = fleet.ns.as_str();
    // Served as acme/fleet.git, so that the URL names a forge repository.
    let served = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir_all(served.path().join("acme")).unwrap_or_else(|e| panic!("{e}"));
    std::os::unix::fs::symlink(&fleet.remote.path, served.path().join("acme/fleet.git"))
        .unwrap_or_else(|e| panic!("{e}"));
    let http = crate::support::git::GitHttp::anonymous(served.path());
    let url = format!("http://{}/acme/fleet.git", http.server.addr);
    cluster.apply(
        &json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "forge", "namespace": ns},
            "stringData": {"token": "forge-token-of-the-test"}})
        .to_string(),
    );
    let mut automation = automation(ns, &url, false);
    automation["spec"]["git"]["push"] = json!({"branch": "hoist/fleet",
        "pullRequest": {"provider": "github", "apiURL": "http://127.0.0.1:1/api/v3",
            "secretRef": {"name": "forge"},
            "title": "{{ automation.namespace * 30 }}"}});
    cluster.apply(&automation.to_string());
    let controller = Running::start(&fleet.kubeconfig, &["--namespace", ns]);
    let stalled = wait_for("the Stalled condition", || {
        condition(
            &get(cluster, "imageupdateautomations", ns, "fleet")?,
            "Stalled",
        )
    });
    assert_eq!(
        (stalled.0.as_str(), stalled.1.as_str()),
        ("True", "InvalidSpec"),
        "{stalled:?}"
    );
    assert!(
        stalled
            .2
            .contains("spec.git.push.pullRequest.title: rendered text exceeds 255 bytes"),
        "{stalled:?}"
    );
    let object = get(cluster, "imageupdateautomations", ns, "fleet")
        .unwrap_or_else(|| panic!("no imageupdateautomations {}/{}", ns, "fleet"));
    assert!(condition(&object, "Reconciling").is_none(), "{object}");
    let (_, metrics) = controller.get("/metrics");
    assert_eq!(
        metric_sum(
            &metrics,
            "hoist_reconcile_errors_total{kind=\"ImageUpdateAutomation\",reason=\"template\"}"
        ),
        1.0,
        "{metrics}"
    );
    // No failed reconcile: nothing for kube-runtime to retry.
    assert_eq!(
        metric_sum(
            &metrics,
            "hoist_reconciles_total{kind=\"ImageUpdateAutomation\",result=\"error\"}"
        ),
        0.0,
        "{metrics}"
    );
}
