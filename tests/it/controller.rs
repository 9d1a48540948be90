//! The controller's webhook-to-commit latency benchmark, against the fake
//! API server (the one benchmark not yet moved to the real control plane
//! of `cluster_controller.rs`), a real registry and a real git remote.

use std::time::{Duration, Instant};

use kube::CustomResourceExt;
use serde_json::{Value, json};

use crate::support::condition;
use crate::support::controller::Running;
use crate::support::git::BareRepo;
use crate::support::kube::FakeKube;
use crate::support::registry::{Auth, DockerRegistry};

const GROUP: &str = "hoist.dev/v1alpha1";

/// Polls `check` every 100 ms until it gives a value, or panics naming
/// `what`.
fn wait_for<T>(what: &str, timeout: Duration, check: impl FnMut() -> Option<T>) -> T {
    crate::support::wait_for(what, timeout, Duration::from_millis(100), check)
}

fn install_crds(fake: &FakeKube) {
    for crd in [
        hoist::api::ImageRepository::crd(),
        hoist::api::ImagePolicy::crd(),
        hoist::api::ImageUpdateAutomation::crd(),
        hoist::api::Receiver::crd(),
    ] {
        fake.apply(serde_json::to_value(crd).unwrap_or_default());
    }
}

fn manifest(registry: &str, tag: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: app}}\nspec:\n  template:\n    spec:\n      containers:\n        - name: app\n          image: {registry}/team/app:{tag} # {{\"$imagepolicy\": \"apps:app\"}}\n"
    )
}

fn repository(registry: &str, interval: &str) -> Value {
    json!({"apiVersion": GROUP, "kind": "ImageRepository",
        "metadata": {"name": "app", "namespace": "apps"},
        "spec": {"image": format!("{registry}/team/app"), "interval": interval, "insecure": true}})
}

fn policy(range: &str) -> Value {
    json!({"apiVersion": GROUP, "kind": "ImagePolicy",
        "metadata": {"name": "app", "namespace": "apps", "labels": {"team": "a"}},
        "spec": {"imageRepositoryRef": {"name": "app"}, "policy": {"semver": {"range": range}}}})
}

fn automation(url: &str, suspend: bool) -> Value {
    json!({"apiVersion": GROUP, "kind": "ImageUpdateAutomation",
        "metadata": {"name": "fleet", "namespace": "apps"},
        "spec": {"interval": "10m", "suspend": suspend,
            "git": {"url": url, "checkout": {"ref": {"branch": "main"}},
                "commit": {"author": {"name": "hoist-bot", "email": "bot@example.com"}}},
            "update": {"path": "./clusters"},
            "sync": {"path": "./clusters", "prune": true},
            "policySelector": {"matchLabels": {"team": "a"}}}})
}

/// A Receiver `registry` (distribution) with its Secret, a Receiver whose
/// Secret is missing, the objects of one image and one automation (hourly),
/// and a controller serving webhooks.
struct WebhookSetup {
    controller: Running,
    /// `127.0.0.1:PORT` of the webhook server.
    webhook: String,
    token: &'static str,
    /// The path the Receiver `registry` should be served at.
    path: String,
}

fn webhook_setup(fake: &FakeKube, registry: &str, url: &str) -> WebhookSetup {
    use base64::Engine;
    install_crds(fake);
    fake.apply(repository(registry, "1h"));
    fake.apply(policy("^1"));
    let mut fleet = automation(url, false);
    fleet["spec"]["interval"] = json!("1h");
    fleet["spec"].as_object_mut().map(|s| s.remove("sync"));
    fake.apply(fleet);
    let token = "webhook-token";
    fake.apply(json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "hook", "namespace": "apps"},
        "data": {"token": base64::engine::general_purpose::STANDARD.encode(format!("{token}\n"))}}));
    fake.apply(json!({"apiVersion": GROUP, "kind": "Receiver",
        "metadata": {"name": "registry", "namespace": "apps"},
        "spec": {"type": "distribution", "secretRef": {"name": "hook"}}}));
    fake.apply(json!({"apiVersion": GROUP, "kind": "Receiver",
        "metadata": {"name": "no-secret", "namespace": "apps"},
        "spec": {"type": "harbor", "secretRef": {"name": "missing"}}}));
    let controller = Running::start(&fake.kubeconfig, &["--webhook-addr", "127.0.0.1:0"]);
    let webhook = controller.wait_listening("webhook");
    let path = {
        use sha2::Digest;
        format!(
            "/hook/{:x}",
            sha2::Sha256::digest(format!("apps/registry{token}").as_bytes())
        )
    };
    WebhookSetup {
        controller,
        webhook,
        token,
        path,
    }
}

/// benches/webhook/run.sh, the controller's path: webhook request →
/// requestedAt → scan → policy → automation → pushed commit, median of 20,
/// against the fake API server, a local docker-registry and git daemon.
#[test]
#[ignore = "a benchmark: benches/webhook/run.sh"]
fn controller_webhook_to_commit_latency() {
    let Some(registry) = DockerRegistry::start(Auth::None) else {
        return;
    };
    registry.push_image("team/app", &["1.0.0"]);
    let addr = registry.addr.clone();
    let remote = BareRepo::new(&[("clusters/app.yaml", &manifest(&addr, "1.0.0"))]);
    let (_git, url) = remote.serve_http();
    let fake = FakeKube::start();
    let setup = webhook_setup(&fake, &addr, &url);
    let long = Duration::from_secs(60);
    wait_for("the first automation run", long, || {
        let a = fake.get(GROUP, "ImageUpdateAutomation", "apps", "fleet")?;
        (condition(&a, "Ready")?.0 == "True").then_some(())
    });
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let tip = || {
        std::fs::read_to_string(remote.path.join("refs/heads/main"))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| remote.head("main"))
    };
    let mut latencies = Vec::new();
    for minor in 1..=20 {
        let tag = format!("1.{minor}.0");
        registry.push_image("team/app", &[&tag]);
        // Pushes a second apart: a Receiver's deliveries are spaced by 1 s.
        std::thread::sleep(Duration::from_secs(1));
        let event = json!({"events": [{"action": "push",
            "target": {"repository": "team/app", "tag": tag}, "request": {"host": addr}}]})
        .to_string();
        let before = tip();
        let started = Instant::now();
        let status = agent
            .post(format!("http://{}{}", setup.webhook, setup.path))
            .header("Authorization", format!("Bearer {}", setup.token))
            .send(&event)
            .map(|r| r.status().as_u16())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(status, 202);
        while tip() == before {
            assert!(started.elapsed() < long, "no commit for {tag}");
            std::thread::sleep(Duration::from_millis(1));
        }
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
        assert!(
            remote
                .show("main", "clusters/app.yaml")
                .contains(&format!(":{tag}"))
        );
    }
    latencies.sort_by(f64::total_cmp);
    let median = (latencies[9] + latencies[10]) / 2.0;
    println!(
        "controller: webhook request -> pushed commit, 20 runs: median {median:.0} ms (min {:.0}, max {:.0})",
        latencies[0], latencies[19]
    );
    drop(setup.controller);
}
