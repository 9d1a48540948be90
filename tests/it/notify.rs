//! Notifications from `hoist run`, end to end: a real registry and git
//! remote, and in-process fakes of Slack, Teams, Discord, Google Chat, a
//! generic HMAC webhook and GitHub's commit status API that record each
//! payload; and from `hoist controller`, on the real control plane,
//! through Alerts and Providers in the cluster.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::git::{BareRepo, git};
use crate::support::http::{FakeServer, Reply};
use crate::support::registry::{Auth, DockerRegistry};
use crate::support::{files, hoist_env};

fn objects(registry: &str, remote: &str, hooks: &str, window: &str) -> String {
    let mut text = format!(
        "apiVersion: hoist.dev/v1alpha1
kind: ImageRepository
metadata: {{name: app}}
spec: {{image: {registry}/team/app, insecure: true, interval: 1s}}
---
apiVersion: hoist.dev/v1alpha1
kind: ImagePolicy
metadata: {{name: app}}
spec:
  imageRepositoryRef: {{name: app}}
  policy: {{semver: {{range: '^1'}}}}
---
apiVersion: hoist.dev/v1alpha1
kind: ImageUpdateAutomation
metadata: {{name: fleet}}
spec:
  interval: 1s
  git:
    url: {remote}
    checkout: {{ref: {{branch: main}}}}
    commit:
      author: {{name: hoist-bot, email: bot@example.com}}
  update: {{path: ./clusters}}
---
apiVersion: v1
kind: Secret
metadata: {{name: hooks}}
stringData: {{address: 'http://{hooks}/services/T000/B000/secret'}}
---
apiVersion: v1
kind: Secret
metadata: {{name: hmac}}
stringData: {{token: hmac-key}}
---
apiVersion: v1
kind: Secret
metadata: {{name: github}}
stringData: {{token: ghp_test}}
"
    );
    for (name, type_, address, secret) in [
        ("slack", "slack", "", "hooks"),
        ("teams", "msteams", "/teams", ""),
        ("discord", "discord", "/discord", ""),
        ("chat", "googlechat", "/chat?key=k", ""),
        ("generic", "generic-hmac", "/generic", "hmac"),
        ("github", "github", "/acme/fleet", "github"),
    ] {
        let mut spec = format!("type: {type_}, window: {window}");
        if !address.is_empty() {
            spec.push_str(&format!(", address: 'http://{hooks}{address}'"));
        }
        if !secret.is_empty() {
            spec.push_str(&format!(", secretRef: {{name: {secret}}}"));
        }
        text.push_str(&format!(
            "---\napiVersion: hoist.dev/v1alpha1\nkind: Provider\nmetadata: {{name: {name}}}\nspec: {{{spec}}}\n---\napiVersion: hoist.dev/v1alpha1\nkind: Alert\nmetadata: {{name: {name}}}\nspec:\n  providerRef: {{name: {name}}}\n  summary: cluster prod\n  eventSources:\n    - {{kind: ImagePolicy, name: '*'}}\n    - {{kind: ImageUpdateAutomation, name: fleet}}\n"
        ));
    }
    text
}

fn manifest(registry: &str, tag: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: app}}\nspec:\n  template:\n    spec:\n      containers:\n        - name: app\n          image: {registry}/team/app:{tag} # {{\"$imagepolicy\": \"default:app\"}}\n"
    )
}

fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body).unwrap_or_default()
}

#[test]
fn a_run_tells_each_service_in_its_own_shape_and_posts_a_commit_status() {
    let Some(registry) = DockerRegistry::start(Auth::None) else {
        return;
    };
    registry.push_image("team/app", &["1.0.0", "1.2.0"]);
    let hooks = FakeServer::start(|request, _| match request.path() {
        p if p.starts_with("/api/v3/repos/acme/fleet/statuses/") => Reply::json(201, "{}"),
        _ => Reply::json(200, "{}"),
    });
    let addr = registry.addr.clone();
    let remote = BareRepo::new(&[("clusters/app.yaml", &manifest(&addr, "1.0.0"))]);
    let hooks_addr = hooks.addr.to_string();
    let dir = files(&[(
        "objects.yaml",
        &objects(&addr, &remote.url(), &hooks_addr, "5s"),
    )]);
    std::fs::create_dir_all(dir.path().join("docker")).unwrap_or_else(|e| panic!("{e}"));
    let run = hoist_env(
        dir.path(),
        &[
            "run",
            "-f",
            "objects.yaml",
            "--once",
            "--state-dir",
            "state",
        ],
        &[("DOCKER_CONFIG", "docker")],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let commit = remote.head("main");
    let seen = hooks.requests();
    let by_path = |prefix: &str| -> Vec<serde_json::Value> {
        seen.iter()
            .filter(|r| r.path().starts_with(prefix))
            .map(|r| json(&r.body))
            .collect()
    };
    // Each chat service: one message per object (the policy's new tag,
    // the automation's push), sent at exit though the window was open.
    let slack = by_path("/services/T000/B000/secret");
    assert_eq!(slack.len(), 2, "{seen:#?}");
    let titles: Vec<&str> = slack
        .iter()
        .filter_map(|m| m["blocks"][0]["text"]["text"].as_str())
        .collect();
    assert!(
        titles.contains(&"ImagePolicy default/app: NewLatestTag"),
        "{titles:?}"
    );
    assert!(
        titles.contains(&"ImageUpdateAutomation default/fleet: Pushed"),
        "{titles:?}"
    );
    assert!(
        slack
            .iter()
            .all(|m| m["blocks"][1]["elements"][0]["text"] == "cluster prod")
    );
    let pushed = slack
        .iter()
        .find(|m| m["blocks"][0]["text"]["text"] == "ImageUpdateAutomation default/fleet: Pushed")
        .map(|m| m["blocks"][2]["text"]["text"].to_string())
        .unwrap_or_default();
    assert!(
        pushed.contains(&format!("pushed commit {} to branch main", &commit[..12])),
        "{pushed}"
    );
    assert!(
        pushed.contains(&format!("{addr}/team/app:1.0.0 → {addr}/team/app:1.2.0")),
        "{pushed}"
    );
    let teams = by_path("/teams");
    assert_eq!(teams.len(), 2);
    assert!(
        teams.iter().all(
            |m| m["attachments"][0]["contentType"] == "application/vnd.microsoft.card.adaptive"
        )
    );
    let discord = by_path("/discord");
    assert_eq!(discord.len(), 2);
    assert!(
        discord
            .iter()
            .any(|m| m["embeds"][0]["fields"].to_string().contains("1.2.0"))
    );
    let chat = by_path("/chat");
    assert_eq!(chat.len(), 2);
    assert!(
        chat.iter()
            .all(|m| m["cardsV2"][0]["card"]["header"]["title"].is_string())
    );
    // The generic webhook is signed with the Secret's token.
    let generic: Vec<_> = seen.iter().filter(|r| r.path() == "/generic").collect();
    assert_eq!(generic.len(), 2);
    for request in &generic {
        assert_eq!(
            request.header("x-signature").map(str::to_string),
            Some(format!(
                "sha256={}",
                hoist::notify::hmac_sha256(b"hmac-key", &request.body)
            ))
        );
    }
    let tag = generic
        .iter()
        .map(|r| json(&r.body))
        .find(|m| m["reason"] == "NewLatestTag")
        .unwrap_or_default();
    assert_eq!(tag["involvedObject"]["kind"], "ImagePolicy");
    assert_eq!(tag["metadata"]["tag"], "1.2.0");
    assert_eq!(
        tag["message"],
        format!("Latest image tag for {addr}/team/app resolved to 1.2.0")
    );
    // The commit status goes on hoist's own commit; the new tag, which has
    // no commit, gets none.
    let statuses: Vec<_> = seen
        .iter()
        .filter(|r| r.path().starts_with("/api/v3/repos/acme/fleet/statuses/"))
        .collect();
    assert_eq!(statuses.len(), 1, "{seen:#?}");
    assert_eq!(
        statuses[0].path(),
        format!("/api/v3/repos/acme/fleet/statuses/{commit}")
    );
    assert_eq!(statuses[0].header("authorization"), Some("Bearer ghp_test"));
    let status = json(&statuses[0].body);
    assert_eq!(status["state"], "success");
    assert_eq!(status["context"], "hoist/imageupdateautomation/fleet");
    // Nothing of the Secrets reached the output or the commit.
    assert!(
        !run.stderr.contains("hmac-key") && !run.stderr.contains("secret"),
        "{}",
        run.stderr
    );
    let log = git(&remote.path, &["log", "-p", "main"]);
    assert!(!log.contains("ghp_test") && !log.contains("hmac-key"));

    // A second run finds nothing new: the tag was told of, nothing pushed.
    let before = hooks.requests().len();
    let again = hoist_env(
        dir.path(),
        &[
            "run",
            "-f",
            "objects.yaml",
            "--once",
            "--state-dir",
            "state",
        ],
        &[("DOCKER_CONFIG", "docker")],
    );
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(hooks.requests().len(), before);
}

#[test]
fn an_alert_of_a_provider_not_in_the_files_is_an_error() {
    let dir = files(&[(
        "objects.yaml",
        "apiVersion: hoist.dev/v1alpha1\nkind: ImageRepository\nmetadata: {name: app}\nspec: {image: 127.0.0.1:1/team/app, insecure: true}\n---\napiVersion: hoist.dev/v1alpha1\nkind: Alert\nmetadata: {name: on-call, namespace: default}\nspec:\n  providerRef: {name: slack}\n  eventSources: [{kind: ImageRepository, name: '*'}]\n---\napiVersion: hoist.dev/v1alpha1\nkind: Provider\nmetadata: {name: teams}\nspec: {type: msteams, address: 'ftp://example.com/x'}\n",
    )]);
    let run = hoist_env(
        dir.path(),
        &[
            "run",
            "-f",
            "objects.yaml",
            "--once",
            "--state-dir",
            "state",
        ],
        &[],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("Provider default/teams: spec.address: must be an http or https URL"),
        "{}",
        run.stderr
    );
    let fixed = std::fs::read_to_string(dir.path().join("objects.yaml"))
        .unwrap_or_default()
        .replace("ftp://example.com/x", "https://example.com/x");
    std::fs::write(dir.path().join("objects.yaml"), fixed).unwrap_or_else(|e| panic!("{e}"));
    let run = hoist_env(
        dir.path(),
        &[
            "run",
            "-f",
            "objects.yaml",
            "--once",
            "--state-dir",
            "state",
        ],
        &[],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "Alert default/on-call: spec.providerRef: Provider default/slack is not in the files"
        ),
        "{}",
        run.stderr
    );
}

/// The time from hoist's push to each message, with the Providers'
/// windows 0s and 1s, in a `hoist run` that keeps running: printed for
/// benches/notify.
#[test]
fn the_latency_from_a_push_to_its_message() {
    let Some(registry) = DockerRegistry::start(Auth::None) else {
        return;
    };
    registry.push_image("team/app", &["1.0.0"]);
    let hooks = FakeServer::start(|request, _| match request.path() {
        p if p.starts_with("/api/v3/") => Reply::json(201, "{}"),
        _ => Reply::json(200, "{}"),
    });
    let addr = registry.addr.clone();
    let remote = BareRepo::new(&[("clusters/app.yaml", &manifest(&addr, "1.0.0"))]);
    let hooks_addr = hooks.addr.to_string();
    let text = objects(&addr, &remote.url(), &hooks_addr, "0s").replace(
        "kind: Provider\nmetadata: {name: slack}\nspec: {type: slack, window: 0s",
        "kind: Provider\nmetadata: {name: slack}\nspec: {type: slack, window: 1s",
    );
    // The generic webhook hears the automation only: its message is not
    // paced behind the policy's.
    let text = text.replace(
        "  providerRef: {name: generic}\n  summary: cluster prod\n  eventSources:\n    - {kind: ImagePolicy, name: '*'}\n",
        "  providerRef: {name: generic}\n  summary: cluster prod\n  eventSources:\n",
    );
    let dir = files(&[("objects.yaml", &text)]);
    std::fs::create_dir_all(dir.path().join("docker")).unwrap_or_else(|e| panic!("{e}"));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hoist"))
        .args(["run", "-f", "objects.yaml", "--state-dir", "state"])
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .env_remove("HOIST_LOG")
        .env("DOCKER_CONFIG", dir.path().join("docker"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    // The first pass tells of 1.0.0; then a new tag is pushed and hoist's
    // commit of it is timed.
    crate::support::wait_for(
        "the first message",
        Duration::from_secs(30),
        Duration::from_millis(20),
        || (!hooks.requests().is_empty()).then_some(()),
    );
    let before = remote.head("main");
    registry.push_image("team/app", &["1.3.0"]);
    let pushed = crate::support::wait_for(
        "hoist's push",
        Duration::from_secs(30),
        Duration::from_millis(5),
        || (remote.head("main") != before).then(Instant::now),
    );
    let received = |path: &str| {
        crate::support::wait_for(
            path,
            Duration::from_secs(30),
            Duration::from_millis(5),
            || {
                hooks
                    .requests()
                    .iter()
                    .find(|r| {
                        r.path().starts_with(path)
                            && r.at > pushed - Duration::from_secs(1)
                            && String::from_utf8_lossy(&r.body).contains("Pushed")
                    })
                    .map(|r| r.at)
            },
        )
    };
    let generic = received("/generic");
    let slack = received("/services/");
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let ms = |at: Instant| at.saturating_duration_since(pushed).as_millis();
    println!(
        "notification latency: {} ms from the push to the generic webhook (window 0s), {} ms to Slack (window 1s, after the policy's message and the 1 s pace)",
        ms(generic),
        ms(slack)
    );
}

/// The controller routes its reconcilers' events through the cluster's
/// Alerts: a new latest tag reaches Slack through the URL in a Secret,
/// once per tag; each Provider's and Alert's `Ready` says whether it can
/// deliver (a 404 from the service, a Secret still to come, a Provider
/// that does not exist, a pattern that does not compile); the URL is in
/// no status and no log line.
#[test]
fn the_controller_tells_the_cluster_s_alerts_and_shows_each_provider_s_health() {
    let Some(cluster) = crate::support::cluster::cluster() else {
        return;
    };
    let Some(registry) = DockerRegistry::start(Auth::None) else {
        return;
    };
    registry.push_image("team/app", &["1.0.0", "1.2.0"]);
    // The latency of each message to /latency: from the event's own
    // timestamp (taken when the reconciler emitted it) to its arrival.
    let latencies: Arc<Mutex<Vec<(String, i64)>>> = Arc::default();
    let seen = Arc::clone(&latencies);
    let hooks = FakeServer::start(move |request, _| match request.path() {
        "/services/T000/B000/secret" => Reply::json(200, "ok"),
        "/latency" => {
            let event = json(&request.body);
            let sent = event["timestamp"]
                .as_str()
                .and_then(|t| t.parse::<jiff::Timestamp>().ok());
            if let (Some(sent), Ok(mut seen)) = (sent, seen.lock()) {
                let ms = (jiff::Timestamp::now() - sent).get_milliseconds();
                seen.push((event["message"].to_string(), ms));
            }
            Reply::json(200, "ok")
        }
        // As some servers do: the path echoed, which must not leak.
        path => Reply::json(404, &format!("Cannot POST {path}")),
    });
    cluster.install_hoist();
    let ns = cluster.namespace("controller-notify");
    let addr = &registry.addr;
    let hooks_addr = hooks.addr.to_string();
    cluster.apply(&format!(
        "apiVersion: v1
kind: Secret
metadata: {{name: slack-url, namespace: {ns}}}
stringData: {{address: 'http://{hooks_addr}/services/T000/B000/secret'}}
---
apiVersion: hoist.dev/v1alpha1
kind: ImageRepository
metadata: {{name: app, namespace: {ns}}}
spec: {{image: {addr}/team/app, insecure: true, interval: 1h}}
---
apiVersion: hoist.dev/v1alpha1
kind: ImagePolicy
metadata: {{name: app, namespace: {ns}}}
spec:
  imageRepositoryRef: {{name: app}}
  policy: {{semver: {{range: '^1'}}}}
---
apiVersion: hoist.dev/v1alpha1
kind: Provider
metadata: {{name: slack, namespace: {ns}}}
spec: {{type: slack, window: 0s, secretRef: {{name: slack-url}}}}
---
apiVersion: hoist.dev/v1alpha1
kind: Provider
metadata: {{name: gone, namespace: {ns}}}
spec: {{type: generic, window: 0s, address: 'http://{hooks_addr}/gone'}}
---
apiVersion: hoist.dev/v1alpha1
kind: Provider
metadata: {{name: later, namespace: {ns}}}
spec: {{type: slack, secretRef: {{name: not-yet}}}}
---
apiVersion: hoist.dev/v1alpha1
kind: Provider
metadata: {{name: latency, namespace: {ns}}}
spec: {{type: generic, window: 0s, address: 'http://{hooks_addr}/latency'}}
"
    ));
    for (name, provider, extra) in [
        ("tags", "slack", ""),
        ("to-gone", "gone", ""),
        ("latency", "latency", ""),
        ("orphan", "nobody", ""),
        ("bad", "slack", "\n  exclusionList: ['(']"),
    ] {
        cluster.apply(&format!(
            "apiVersion: hoist.dev/v1alpha1\nkind: Alert\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  providerRef: {{name: {provider}}}\n  eventSources:\n    - {{kind: ImagePolicy, name: '*'}}{extra}\n"
        ));
    }
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let kubeconfig = cluster.controller_kubeconfig(dir.path());
    let controller = crate::support::controller::Running::start(&kubeconfig, &["--namespace", &ns]);
    let slack = || -> Vec<serde_json::Value> {
        hooks
            .requests()
            .iter()
            .filter(|r| r.path() == "/services/T000/B000/secret")
            .map(|r| json(&r.body))
            .collect()
    };
    let first = (0..600)
        .find_map(|_| {
            let seen = slack().into_iter().next();
            if seen.is_none() {
                std::thread::sleep(Duration::from_millis(100));
            }
            seen
        })
        .unwrap_or_else(|| panic!("Slack was not told of 1.2.0:\n{}", controller.log()));
    let text = first.to_string();
    assert_eq!(
        first["blocks"][0]["text"]["text"],
        format!("ImagePolicy {ns}/app: NewLatestTag"),
        "{text}"
    );
    assert!(
        text.contains(&format!("{addr}/team/app resolved to 1.2.0")),
        "{text}"
    );

    let ready = |resource: &str, name: &str, status: &str, reason: &str| {
        crate::support::wait_for(
            &format!("{resource} {name} Ready={status} {reason}"),
            Duration::from_secs(60),
            Duration::from_millis(100),
            || {
                let object = cluster.get(resource, &ns, name)?;
                let (s, r, message) = crate::support::condition(&object, "Ready")?;
                (s == status && r == reason).then_some(message)
            },
        )
    };
    ready("providers.hoist.dev", "slack", "True", "Succeeded");
    let failing = ready("providers.hoist.dev", "gone", "False", "DeliveryFailed");
    assert!(failing.contains("404"), "{failing}");
    let waiting = ready("providers.hoist.dev", "later", "False", "SecretNotFound");
    assert!(
        waiting.contains(&format!("Secret {ns}/not-yet")),
        "{waiting}"
    );
    ready("alerts.hoist.dev", "tags", "True", "Succeeded");
    let orphan = ready("alerts.hoist.dev", "orphan", "False", "ProviderNotFound");
    assert!(orphan.contains("spec.providerRef"), "{orphan}");
    let bad = ready("alerts.hoist.dev", "bad", "False", "InvalidSpec");
    assert!(bad.contains("spec.exclusionList"), "{bad}");
    let stalled = cluster
        .get("alerts.hoist.dev", &ns, "bad")
        .and_then(|a| crate::support::condition(&a, "Stalled"));
    assert_eq!(stalled.map(|s| s.0), Some("True".to_string()));

    // A newer tag, found by a rescan asked for: one more message, which
    // names the tag before it. Asked for once the 1 s pace behind the
    // first message is over, so that the latency measured is delivery's.
    crate::support::wait_for(
        "the generic webhook told of 1.2.0",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || (!latencies.lock().ok()?.is_empty()).then_some(()),
    );
    std::thread::sleep(Duration::from_millis(1100));
    registry.push_image("team/app", &["1.3.0"]);
    cluster.kubectl(&[
        "annotate",
        "--overwrite",
        "imagerepository.hoist.dev/app",
        "-n",
        &ns,
        "reconcile.hoist.dev/requestedAt=rescan",
    ]);
    let second = crate::support::wait_for(
        "Slack told of 1.3.0",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || slack().into_iter().nth(1),
    );
    let text = second.to_string();
    assert!(text.contains("resolved to 1.3.0"), "{text}");
    assert!(text.contains("1.2.0"), "{text}");
    let latency = crate::support::wait_for(
        "the generic webhook told of 1.3.0",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let seen = latencies.lock().ok()?;
            seen.iter()
                .find(|(message, _)| message.contains("1.3.0"))
                .map(|(_, ms)| *ms)
        },
    );
    println!(
        "controller notification latency: {latency} ms from the event to the generic webhook (window 0s)"
    );
    // Nothing twice: a reconcile of the same latest tag tells no one.
    cluster.kubectl(&[
        "annotate",
        "--overwrite",
        "imagepolicy.hoist.dev/app",
        "-n",
        &ns,
        "reconcile.hoist.dev/requestedAt=again",
    ]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(slack().len(), 2, "{:#?}", hooks.requests());
    // A webhook URL's path is its secret: in no status and no log line
    // (the host is named, to say where delivery failed).
    let log = controller.log();
    assert!(!log.contains("B000/secret"), "{log}");
    for name in ["slack", "gone", "later"] {
        let status = cluster
            .get("providers.hoist.dev", &ns, name)
            .map(|p| p["status"].to_string())
            .unwrap_or_default();
        assert!(
            !status.contains("B000") && !status.contains("/gone"),
            "{name}: {status}"
        );
    }
}
