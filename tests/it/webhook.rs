//! Webhook receivers: each sender type through the real server with a
//! payload in its sender's shape, and `hoist run --webhook-addr` end to end
//! with a real registry and git daemon.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use hoist::api::{ImageRepository, ImageUpdateAutomation, Receiver};
use hoist::metrics::Metrics;
use hoist::webhook::server::{self, Coalescing, Delivery, Endpoint, Endpoints};
use hoist::webhook::targets::targets;
use serde_json::json;

use crate::support::git::{BareRepo, GitDaemon};
use crate::support::registry::{Auth, DockerRegistry};

const TOKEN: &str = "s3cret-t0ken-for-hoist-tests";

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

/// POSTs `body` with `headers` to `url`; the status. Every answer has an
/// empty body: a refusal tells a caller nothing beyond its status.
fn post(url: &str, headers: &[(&str, String)], body: &[u8]) -> u16 {
    let mut request = ureq::http::Request::builder().method("POST").uri(url);
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let request = request
        .body(body.to_vec())
        .unwrap_or_else(|e| panic!("{e}"));
    match agent().run(request) {
        Ok(mut response) => {
            let text = response.body_mut().read_to_string().unwrap_or_default();
            assert_eq!(text, "", "POST {url}");
            response.status().as_u16()
        }
        Err(e) => panic!("POST {url}: {e}"),
    }
}

fn hmac_hex(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `/hook/` and the sha256 of `ns/name` and the token, as documented.
fn hook_path(namespace: &str, name: &str, token: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{namespace}/{name}{token}").as_bytes());
    format!("/hook/{digest:x}")
}

fn object<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).unwrap_or_else(|e| panic!("{e}"))
}

fn repository(name: &str, image: &str) -> ImageRepository {
    object(json!({"metadata": {"name": name, "namespace": "apps"}, "spec": {"image": image}}))
}

fn automation(name: &str, url: &str) -> ImageUpdateAutomation {
    object(
        json!({"metadata": {"name": name, "namespace": "apps"}, "spec": {
        "interval": "1h", "git": {"url": url, "checkout": {"ref": {"branch": "main"}},
        "commit": {"author": {"name": "hoist", "email": "hoist@example.com"}}}}}),
    )
}

/// One request of a sender: what it sends, and what it should trigger.
struct Case {
    receiver: &'static str,
    type_: &'static str,
    body: String,
    /// The good headers; a bad and a missing signature are derived.
    headers: Vec<(&'static str, String)>,
    /// The header carrying the signature or token, if the sender signs.
    signed_by: Option<&'static str>,
    repositories: &'static [&'static str],
    automations: &'static [&'static str],
}

fn cases() -> Vec<Case> {
    let github_push = json!({"ref": "refs/heads/main", "before": "0000", "after": "1111",
        "repository": {"full_name": "acme/fleet", "clone_url": "https://github.com/acme/fleet.git",
            "ssh_url": "git@github.com:acme/fleet.git", "html_url": "https://github.com/acme/fleet"},
        "pusher": {"name": "octocat"}})
    .to_string();
    let github_package = json!({"action": "published", "package": {"id": 1, "name": "app",
        "namespace": "acme", "ecosystem": "CONTAINER", "package_type": "CONTAINER",
        "owner": {"login": "acme"}, "package_version": {"container_metadata": {"tag": {"name": "1.2.0",
        "digest": "sha256:aa"}}}}, "repository": {"full_name": "acme/app"}})
    .to_string();
    let gitlab = json!({"object_kind": "push", "ref": "refs/heads/main", "project": {
        "path_with_namespace": "platform/apps/fleet",
        "git_http_url": "https://gitlab.example.com/platform/apps/fleet.git",
        "git_ssh_url": "git@gitlab.example.com:platform/apps/fleet.git",
        "web_url": "https://gitlab.example.com/platform/apps/fleet"}})
    .to_string();
    let gitea = json!({"ref": "refs/heads/main", "repository": {"full_name": "ops/infra",
        "clone_url": "https://gitea.example.com/ops/infra.git",
        "ssh_url": "git@gitea.example.com:ops/infra.git", "html_url": "https://gitea.example.com/ops/infra"}})
    .to_string();
    let dockerhub = json!({"callback_url": "https://registry.hub.docker.com/u/acme/web/hook/x/",
        "push_data": {"pushed_at": 1_700_000_000, "pusher": "acme", "tag": "1.2.0"},
        "repository": {"repo_name": "acme/web", "name": "web", "namespace": "acme", "is_private": false,
            "repo_url": "https://hub.docker.com/r/acme/web"}})
    .to_string();
    let harbor = json!({"type": "PUSH_ARTIFACT", "occur_at": 1_700_000_000, "operator": "admin",
        "event_data": {"resources": [{"digest": "sha256:bb", "tag": "1.2.0",
            "resource_url": "harbor.example.com/library/api:1.2.0"}],
        "repository": {"name": "api", "namespace": "library", "repo_full_name": "library/api", "repo_type": "private"}}})
    .to_string();
    let quay = json!({"name": "worker", "repository": "acme/worker", "namespace": "acme",
        "docker_url": "quay.io/acme/worker", "homepage": "https://quay.io/repository/acme/worker",
        "updated_tags": ["1.2.0"]})
    .to_string();
    let distribution = json!({"events": [{"id": "e1", "timestamp": "2026-11-26T10:00:00Z", "action": "push",
        "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:cc",
            "repository": "team/cache", "url": "http://registry.internal:5000/v2/team/cache/manifests/sha256:cc",
            "tag": "1.2.0"},
        "request": {"id": "r1", "addr": "10.0.0.9:4711", "host": "registry.internal:5000", "method": "PUT",
            "useragent": "containerd/2.0"}, "actor": {}, "source": {"addr": "registry:5000"}}]})
    .to_string();
    let generic = json!({"anything": "at all"}).to_string();
    vec![
        Case {
            receiver: "github-push",
            type_: "github",
            headers: vec![
                ("X-GitHub-Event", "push".into()),
                (
                    "X-Hub-Signature-256",
                    format!("sha256={}", hmac_hex(TOKEN, github_push.as_bytes())),
                ),
            ],
            body: github_push,
            signed_by: Some("X-Hub-Signature-256"),
            repositories: &[],
            automations: &["apps/fleet"],
        },
        Case {
            receiver: "github-package",
            type_: "github",
            headers: vec![
                ("X-GitHub-Event", "package".into()),
                (
                    "X-Hub-Signature-256",
                    format!("sha256={}", hmac_hex(TOKEN, github_package.as_bytes())),
                ),
            ],
            body: github_package,
            signed_by: Some("X-Hub-Signature-256"),
            repositories: &["apps/app"],
            automations: &[],
        },
        Case {
            receiver: "gitlab",
            type_: "gitlab",
            body: gitlab,
            headers: vec![
                ("X-Gitlab-Event", "Push Hook".into()),
                ("X-Gitlab-Token", TOKEN.into()),
            ],
            signed_by: Some("X-Gitlab-Token"),
            repositories: &[],
            automations: &["apps/platform"],
        },
        Case {
            receiver: "gitea",
            type_: "gitea",
            headers: vec![
                ("X-Gitea-Event", "push".into()),
                ("X-Gitea-Signature", hmac_hex(TOKEN, gitea.as_bytes())),
            ],
            body: gitea,
            signed_by: Some("X-Gitea-Signature"),
            repositories: &[],
            automations: &["apps/infra"],
        },
        Case {
            receiver: "dockerhub",
            type_: "dockerhub",
            body: dockerhub,
            headers: vec![],
            signed_by: None,
            repositories: &["apps/web"],
            automations: &[],
        },
        Case {
            receiver: "harbor",
            type_: "harbor",
            body: harbor,
            headers: vec![("Authorization", TOKEN.into())],
            signed_by: Some("Authorization"),
            repositories: &["apps/api"],
            automations: &[],
        },
        Case {
            receiver: "quay",
            type_: "quay",
            body: quay,
            headers: vec![],
            signed_by: None,
            repositories: &["apps/worker"],
            automations: &[],
        },
        Case {
            receiver: "distribution",
            type_: "distribution",
            body: distribution,
            headers: vec![
                (
                    "Content-Type",
                    "application/vnd.docker.distribution.events.v1+json".into(),
                ),
                ("Authorization", format!("Bearer {TOKEN}")),
            ],
            signed_by: Some("Authorization"),
            repositories: &["apps/cache"],
            automations: &[],
        },
        Case {
            receiver: "generic",
            type_: "generic-hmac",
            headers: vec![(
                "X-Signature",
                format!("sha256={}", hmac_hex(TOKEN, generic.as_bytes())),
            )],
            body: generic,
            signed_by: Some("X-Signature"),
            repositories: &["apps/web"],
            automations: &["apps/infra"],
        },
    ]
}

/// The in-process server with a Receiver per case; verified deliveries
/// come out of the returned channel, merged with `timing`.
struct Served {
    runtime: tokio::runtime::Runtime,
    addr: std::net::SocketAddr,
    merged: tokio::sync::mpsc::UnboundedReceiver<Delivery>,
    metrics: Arc<Metrics>,
}

fn serve(cases: &[Case], timing: Coalescing) -> Served {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let endpoints = Endpoints::default();
    for case in cases {
        let mut spec = json!({"type": case.type_, "secretRef": {"name": "token"}});
        if case.type_ == "generic-hmac" {
            spec["resources"] = json!([{"kind": "ImageRepository", "name": "web"},
                {"kind": "ImageUpdateAutomation", "name": "infra"}]);
        }
        let receiver: Receiver =
            object(json!({"metadata": {"name": case.receiver, "namespace": "apps"}, "spec": spec}));
        // A Secret written with a trailing newline still serves.
        endpoints.insert(Endpoint::new(receiver, format!("{TOKEN}\n").into_bytes()));
    }
    let metrics = Arc::new(Metrics::default());
    let (sender, received) = tokio::sync::mpsc::channel(1024);
    let (merged_tx, merged) = tokio::sync::mpsc::unbounded_channel();
    runtime.spawn(server::serve(
        listener,
        endpoints,
        Arc::clone(&metrics),
        sender,
        std::future::pending(),
    ));
    runtime.spawn(server::coalesce(
        received,
        merged_tx,
        timing,
        Arc::clone(&metrics),
        std::future::pending(),
    ));
    Served {
        runtime,
        addr,
        merged,
        metrics,
    }
}

impl Served {
    fn url(&self, receiver: &str) -> String {
        format!("http://{}{}", self.addr, hook_path("apps", receiver, TOKEN))
    }

    /// The next merged delivery, if one comes within `wait`.
    fn next(&mut self, wait: Duration) -> Option<Delivery> {
        let merged = &mut self.merged;
        self.runtime.block_on(async {
            tokio::time::timeout(wait, merged.recv())
                .await
                .ok()
                .flatten()
        })
    }

    /// `hoist_webhook_requests_total{result=...}` as served.
    fn count(&self, result: &str) -> u64 {
        counter(
            &self.metrics.encode(),
            &format!("hoist_webhook_requests_total{{result=\"{result}\"}}"),
        )
    }
}

/// Writes `request` on a new connection and reads the answer's head.
fn raw(addr: &std::net::SocketAddr, request: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("{e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap_or_else(|e| panic!("{e}"));
    stream
        .write_all(request.as_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    let mut answer = vec![0u8; 1024];
    let n = stream.read(&mut answer).unwrap_or_else(|e| panic!("{e}"));
    String::from_utf8_lossy(&answer[..n]).into_owned()
}

/// A counter's value in Prometheus text, 0 when absent.
fn counter(text: &str, series: &str) -> u64 {
    text.lines()
        .filter_map(|line| line.strip_prefix(series))
        .filter_map(|rest| rest.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

#[test]
fn each_sender_type_triggers_exactly_its_object_and_bad_requests_are_refused() {
    let cases = cases();
    let mut served = serve(
        &cases,
        Coalescing {
            quiet: Duration::from_millis(50),
            longest: Duration::from_secs(1),
            spacing: Duration::ZERO,
        },
    );
    let repositories = [
        repository("app", "ghcr.io/acme/app"),
        repository("web", "acme/web"),
        repository("api", "harbor.example.com/library/api"),
        repository("worker", "quay.io/acme/worker"),
        repository("cache", "localhost:5000/team/cache"),
        repository("nginx", "nginx"),
    ];
    let automations = [
        automation("fleet", "ssh://git@github.com/acme/fleet.git"),
        automation("platform", "https://gitlab.example.com/platform/apps/fleet"),
        automation("infra", "git@gitea.example.com:ops/infra.git"),
    ];
    let mut rejected = 0;
    for case in &cases {
        let url = served.url(case.receiver);
        // A bad signature and a missing one are refused and trigger nothing.
        if let Some(header) = case.signed_by {
            for tamper in [true, false] {
                let headers: Vec<(&str, String)> = case
                    .headers
                    .iter()
                    .filter(|(name, _)| tamper || *name != header)
                    .map(|(name, value)| {
                        if *name == header {
                            (*name, value.replace('a', "b").replace('s', "t") + "0")
                        } else {
                            (*name, value.clone())
                        }
                    })
                    .collect();
                assert_eq!(
                    post(&url, &headers, case.body.as_bytes()),
                    401,
                    "{}",
                    case.receiver
                );
                rejected += 1;
            }
            // A signature over another body.
            let mut other = case.body.clone().into_bytes();
            other.push(b' ');
            if header != "Authorization" && header != "X-Gitlab-Token" {
                assert_eq!(post(&url, &case.headers, &other), 401, "{}", case.receiver);
                rejected += 1;
            }
        }
        assert_eq!(
            post(&url, &case.headers, case.body.as_bytes()),
            202,
            "{}",
            case.receiver
        );
        let delivery = served
            .next(Duration::from_secs(5))
            .unwrap_or_else(|| panic!("{}: nothing delivered", case.receiver));
        assert_eq!(delivery.endpoint.key(), format!("apps/{}", case.receiver));
        let triggered = targets(
            &delivery.endpoint.receiver,
            &delivery.event,
            &repositories,
            &automations,
        );
        let names =
            |set: &std::collections::BTreeSet<String>| set.iter().cloned().collect::<Vec<_>>();
        assert_eq!(
            names(&triggered.repositories),
            case.repositories,
            "{}",
            case.receiver
        );
        assert_eq!(
            names(&triggered.automations),
            case.automations,
            "{}",
            case.receiver
        );
    }
    // Nothing was delivered for the refused requests.
    assert!(served.next(Duration::from_millis(300)).is_none());
    assert_eq!(
        served.count("unsigned") + served.count("bad_signature"),
        rejected
    );
    assert_eq!(served.count("accepted"), cases.len() as u64);

    // An unknown path, another receiver's path with this one's signature, an
    // event the receiver does not act on, a GET, and a body over 1 MiB.
    let github = &cases[0];
    let unknown = format!(
        "http://{}{}",
        served.addr,
        hook_path("apps", "github-push", "guess")
    );
    assert_eq!(post(&unknown, &github.headers, github.body.as_bytes()), 404);
    assert_eq!(
        post(
            &served.url("gitea"),
            &github.headers,
            github.body.as_bytes()
        ),
        401
    );
    let issue = json!({"action": "opened", "issue": {"number": 1}}).to_string();
    let issue_headers = vec![
        ("X-GitHub-Event", "issues".to_string()),
        (
            "X-Hub-Signature-256",
            format!("sha256={}", hmac_hex(TOKEN, issue.as_bytes())),
        ),
    ];
    assert_eq!(
        post(&served.url("github-push"), &issue_headers, issue.as_bytes()),
        400
    );
    let status = agent()
        .get(served.url("dockerhub"))
        .call()
        .map(|r| r.status().as_u16())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, 405);
    // A body of 1 MiB is read (and is no Docker Hub payload); one byte more
    // is refused from its Content-Length, before any of it is read.
    let full = vec![b' '; server::MAX_BODY];
    assert_eq!(post(&served.url("dockerhub"), &[], &full), 400);
    let path = hook_path("apps", "dockerhub", TOKEN);
    let answer = raw(
        &served.addr,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: hoist\r\nContent-Length: {}\r\n\r\n",
            server::MAX_BODY + 1
        ),
    );
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    // Each refusal is counted by why.
    for result in ["unknown_path", "ignored_event", "method", "too_large"] {
        assert_eq!(served.count(result), 1, "{result}");
    }
    assert_eq!(served.count("bad_payload"), 1);
    assert!(served.next(Duration::from_millis(300)).is_none());
}

#[test]
fn a_burst_of_fifty_events_is_one_delivery() {
    let cases = cases();
    let mut served = serve(&cases, Coalescing::default());
    let dockerhub = cases
        .iter()
        .find(|c| c.type_ == "dockerhub")
        .unwrap_or_else(|| panic!());
    let url = served.url("dockerhub");
    // Fifty pushes of one image, from ten senders at once.
    std::thread::scope(|scope| {
        for _ in 0..10 {
            scope.spawn(|| {
                for _ in 0..5 {
                    assert_eq!(post(&url, &[], dockerhub.body.as_bytes()), 202);
                }
            });
        }
    });
    let delivery = served
        .next(Duration::from_secs(5))
        .unwrap_or_else(|| panic!("nothing delivered"));
    assert_eq!(delivery.event.images, ["docker.io/acme/web"]);
    assert!(
        served.next(Duration::from_secs(2)).is_none(),
        "a second delivery"
    );
    assert_eq!(served.count("accepted"), 50);
}

/// A free loopback `127.0.0.1:PORT`.
/// The binary `Serving` starts: this build's, or `HOIST_BIN` (a baseline
/// for the flood bench to compare with).
fn hoist_binary() -> std::ffi::OsString {
    std::env::var_os("HOIST_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_hoist").into())
}

/// A long-running `hoist run` with its webhook and metrics servers; stopped
/// with SIGTERM when dropped.
pub struct Serving {
    child: std::process::Child,
    pub webhook: String,
    metrics: String,
    stdout: std::path::PathBuf,
    /// What hoist logged; printed when it stops if `HOIST_TEST_LOGS` is set.
    stderr: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Serving {
    pub fn start(objects: &str) -> Serving {
        Serving::start_with_limit(objects, ":")
    }

    /// Started by `sh` after `ulimit`, a shell command that sets the
    /// open-file limit.
    pub fn start_with_limit(objects: &str, ulimit: &str) -> Serving {
        let dir = crate::support::files(&[("objects.yaml", objects)]);
        let stdout = dir.path().join("stdout");
        let file = std::fs::File::create(&stdout).unwrap_or_else(|e| panic!("{e}"));
        let stderr = dir.path().join("stderr");
        let log = std::fs::File::create(&stderr).unwrap_or_else(|e| panic!("{e}"));
        let child = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{ulimit} && exec \"$0\" \"$@\""))
            .arg(hoist_binary())
            .args(["run", "-f", "objects.yaml", "--state-dir", "state"])
            // Port 0: hoist binds free ports and logs which.
            .args(["--webhook-addr", "127.0.0.1:0"])
            .args(["--metrics-addr", "127.0.0.1:0"])
            .current_dir(dir.path())
            .env("DOCKER_CONFIG", dir.path())
            .env("HOIST_LOG", "hoist=info")
            .stdout(file)
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting hoist run: {e}"));
        let listening = |listener: &str| {
            wait_for(
                &format!("the {listener} listener"),
                Duration::from_secs(20),
                || {
                    let log = std::fs::read_to_string(&stderr).unwrap_or_default();
                    crate::support::listening_on(&log, listener)
                },
            )
        };
        let serving = Serving {
            webhook: listening("webhook"),
            metrics: listening("metrics"),
            child,
            stdout,
            stderr,
            _dir: dir,
        };
        wait_for("the metrics endpoint", Duration::from_secs(20), || {
            agent()
                .get(format!("http://{}/metrics", serving.metrics))
                .call()
                .ok()
                .filter(|r| r.status() == 200)
        });
        serving
    }

    /// The lines hoist printed: one per automation per pass.
    pub fn passes(&self) -> Vec<String> {
        std::fs::read_to_string(&self.stdout)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Registry requests so far, as `/metrics` counts them.
    pub fn registry_requests(&self) -> u64 {
        self.counter("hoist_registry_requests_total")
    }

    /// The counter `name` in `/metrics`, summed over its labels.
    pub fn counter(&self, name: &str) -> u64 {
        let text = agent()
            .get(format!("http://{}/metrics", self.metrics))
            .call()
            .ok()
            .and_then(|mut r| r.body_mut().read_to_string().ok())
            .unwrap_or_else(|| panic!("hoist's /metrics did not answer"));
        text.lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with(['{', ' ']))
            })
            .map(|l| {
                l.rsplit(' ')
                    .next()
                    .and_then(|v| v.parse::<f64>().ok())
                    .unwrap_or_else(|| panic!("a metric line that does not parse: {l}"))
            })
            .map(|v| v as u64)
            .sum()
    }
}

impl Serving {
    /// SIGTERM, then the exit code once it has exited (None if it had to
    /// be killed after 30 s).
    pub fn stop(&mut self) -> Option<i32> {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.stop();
        }
        if std::env::var_os("HOIST_TEST_LOGS").is_some() {
            let log = std::fs::read_to_string(&self.stderr).unwrap_or_default();
            eprintln!("--- hoist run log ---\n{log}");
        }
    }
}

/// Polls `check` every 20 ms until it gives a value, or panics naming
/// `what`.
fn wait_for<T>(what: &str, timeout: Duration, check: impl FnMut() -> Option<T>) -> T {
    crate::support::wait_for(what, timeout, Duration::from_millis(20), check)
}

/// A deployment manifest with a setter marker for `default:app`.
pub fn manifest(registry: &str, tag: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: app}}\nspec:\n  template:\n    spec:\n      containers:\n        - name: app\n          image: {registry}/team/app:{tag} # {{\"$imagepolicy\": \"default:app\"}}\n"
    )
}

/// An ImageRepository, ImagePolicy and ImageUpdateAutomation that poll
/// once an hour, and `distribution` and `gitea` Receivers.
pub fn webhook_objects(registry: &str, remote: &str) -> String {
    format!(
        "apiVersion: hoist.dev/v1alpha1
kind: ImageRepository
metadata: {{name: app}}
spec: {{image: {registry}/team/app, insecure: true, interval: 1h}}
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
  interval: 1h
  git:
    url: {remote}
    checkout: {{ref: {{branch: main}}}}
    commit:
      author: {{name: hoist-bot, email: bot@example.com}}
---
apiVersion: hoist.dev/v1alpha1
kind: Receiver
metadata: {{name: registry}}
spec:
  type: distribution
  secretRef: {{name: webhook-token}}
---
apiVersion: hoist.dev/v1alpha1
kind: Receiver
metadata: {{name: git}}
spec:
  type: gitea
  secretRef: {{name: webhook-token}}
---
apiVersion: v1
kind: Secret
metadata: {{name: webhook-token}}
stringData: {{token: {TOKEN}}}
"
    )
}

/// A registry with `team/app:1.0.0`, and a fleet repository whose
/// `app.yaml` runs it, served by a git daemon at the returned URL; None
/// when docker-registry is not installed (outside CI).
fn fleet() -> Option<(DockerRegistry, BareRepo, GitDaemon, String)> {
    let registry = DockerRegistry::start(Auth::None)?;
    registry.push_image("team/app", &["1.0.0"]);
    let remote = BareRepo::new(&[("app.yaml", &manifest(&registry.addr, "1.0.0"))]);
    let (daemon, url) = remote.serve();
    Some((registry, remote, daemon, url))
}

/// A distribution notification of a push of `tag` to `registry`.
pub fn pushed(registry: &str, tag: &str) -> String {
    json!({"events": [{"id": tag, "action": "push",
        "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "repository": "team/app", "tag": tag},
        "request": {"host": registry, "method": "PUT"}}]})
    .to_string()
}

pub fn distribution_headers() -> Vec<(&'static str, String)> {
    vec![
        (
            "Content-Type",
            "application/vnd.docker.distribution.events.v1+json".to_string(),
        ),
        ("Authorization", format!("Bearer {TOKEN}")),
    ]
}

#[test]
fn run_commits_a_pushed_tag_when_the_webhook_comes_not_at_the_interval() {
    let Some((registry, remote, _daemon, url)) = fleet() else {
        return;
    };
    let addr = registry.addr.clone();
    let hoist = Serving::start(&webhook_objects(&addr, &url));
    wait_for("the first pass", Duration::from_secs(30), || {
        (hoist.passes().len() == 1).then_some(())
    });
    assert_eq!(hoist.passes(), ["default/fleet: up to date"]);
    let registry_hook = format!(
        "http://{}{}",
        hoist.webhook,
        hook_path("default", "registry", TOKEN)
    );

    // A tag pushed, then the registry's webhook: a commit without waiting
    // for the hour.
    let before = hoist.registry_requests();
    registry.push_image("team/app", &["1.1.0"]);
    assert_eq!(
        post(
            &registry_hook,
            &distribution_headers(),
            pushed(&addr, "1.1.0").as_bytes()
        ),
        202
    );
    wait_for("the 1.1.0 commit", Duration::from_secs(30), || {
        remote
            .show("main", "app.yaml")
            .contains(":1.1.0")
            .then_some(())
    });
    let one_scan = hoist.registry_requests() - before;
    assert!(one_scan >= 1);

    // Fifty notifications of one push: one scan, one pass.
    let before = hoist.registry_requests();
    let (deliveries, gathered) = (
        hoist.counter("hoist_webhook_deliveries_total"),
        hoist.counter("hoist_webhook_gathered_requests_total"),
    );
    registry.push_image("team/app", &["1.2.0"]);
    std::thread::scope(|scope| {
        for _ in 0..10 {
            scope.spawn(|| {
                for _ in 0..5 {
                    assert_eq!(
                        post(
                            &registry_hook,
                            &distribution_headers(),
                            pushed(&addr, "1.2.0").as_bytes()
                        ),
                        202
                    );
                }
            });
        }
    });
    wait_for("the 1.2.0 commit", Duration::from_secs(30), || {
        remote
            .show("main", "app.yaml")
            .contains(":1.2.0")
            .then_some(())
    });
    wait_for("the third pass's report", Duration::from_secs(30), || {
        (hoist.passes().len() >= 3).then_some(())
    });
    // All fifty were gathered, into one delivery: no second pass is coming.
    wait_for(
        "the fifty requests gathered",
        Duration::from_secs(30),
        || (hoist.counter("hoist_webhook_gathered_requests_total") - gathered == 50).then_some(()),
    );
    assert_eq!(
        hoist.counter("hoist_webhook_deliveries_total") - deliveries,
        1
    );
    assert_eq!(hoist.registry_requests() - before, one_scan);
    assert_eq!(hoist.passes().len(), 3, "{:?}", hoist.passes());

    // An image hoist does not scan: accepted, nothing run.
    let other = json!({"events": [{"action": "push", "target": {"repository": "team/other", "tag": "9.9.9"},
        "request": {"host": addr}}]}).to_string();
    assert_eq!(
        post(&registry_hook, &distribution_headers(), other.as_bytes()),
        202
    );

    // Someone sets the tag back by hand; the forge's push webhook runs the
    // automation, which puts the policy's tag back.
    remote.commit_elsewhere("main", "app.yaml", &manifest(&addr, "1.0.0"));
    let push = json!({"ref": "refs/heads/main", "repository": {"clone_url": url}}).to_string();
    let git_hook = format!(
        "http://{}{}",
        hoist.webhook,
        hook_path("default", "git", TOKEN)
    );
    let headers = vec![
        ("X-Gitea-Event", "push".to_string()),
        ("X-Gitea-Signature", hmac_hex(TOKEN, push.as_bytes())),
    ];
    let requests = hoist.registry_requests();
    assert_eq!(post(&git_hook, &headers, push.as_bytes()), 202);
    wait_for("the automation run", Duration::from_secs(30), || {
        remote
            .show("main", "app.yaml")
            .contains(":1.2.0")
            .then_some(())
    });
    // The pass prints its report after the push.
    wait_for("the fourth pass's report", Duration::from_secs(30), || {
        (hoist.passes().len() >= 4).then_some(())
    });
    // A git push scans nothing.
    assert_eq!(hoist.registry_requests(), requests);
    assert_eq!(hoist.passes().len(), 4, "{:?}", hoist.passes());
    assert_eq!(
        remote.log("main")[..4]
            .iter()
            .map(|l| l.split('|').next().unwrap_or(""))
            .collect::<Vec<_>>(),
        ["hoist-bot", "Someone Else", "hoist-bot", "hoist-bot"]
    );

    // A webhook answered just before SIGTERM still gets its pass.
    registry.push_image("team/app", &["1.3.0"]);
    assert_eq!(
        post(
            &registry_hook,
            &distribution_headers(),
            pushed(&addr, "1.3.0").as_bytes()
        ),
        202
    );
    let mut hoist = hoist;
    assert_eq!(hoist.stop(), Some(0));
    assert!(remote.show("main", "app.yaml").contains(":1.3.0"));
}

#[test]
fn receivers_are_checked_when_loaded() {
    let run = |objects: &str, extra: &[&str]| {
        let dir = crate::support::files(&[("objects.yaml", objects)]);
        let mut args = vec!["run", "-f", "objects.yaml", "--state-dir", "state"];
        args.extend_from_slice(extra);
        crate::support::hoist_env(dir.path(), &args, &[("DOCKER_CONFIG", "/nonexistent")])
    };
    let good = webhook_objects("127.0.0.1:1", "git://127.0.0.1:1/fleet.git");
    // Refused at load: nothing is bound.
    let addr = "127.0.0.1:0";
    // --once serves nothing.
    let out = run(&good, &["--once", "--webhook-addr", addr]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("drop --once"), "{}", out.stderr);
    // A Docker Hub token too short to be the only credential.
    let short = good
        .replacen("type: distribution", "type: dockerhub", 1)
        .replace(&format!("token: {TOKEN}"), "token: hunter2");
    let out = run(&short, &["--webhook-addr", addr]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("Receiver default/registry: spec.secretRef: Secret default/webhook-token: key `token` has 7 characters"),
        "{}",
        out.stderr
    );
    // A Secret that is not in the files.
    let missing = good.replace("metadata: {name: webhook-token}", "metadata: {name: other}");
    let out = run(&missing, &["--webhook-addr", addr]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("objects.yaml:24: Receiver default/registry: spec.secretRef: Secret default/webhook-token"),
        "{}",
        out.stderr
    );
    // A resource that is not there, a kind a Receiver cannot trigger, an
    // unknown type, generic-hmac without resources.
    for (spec, message) in [
        (
            "type: github\n  resources: [{kind: ImageRepository, name: nope}]",
            "Receiver default/registry: spec.resources[0]: ImageRepository default/nope is not in the files",
        ),
        (
            "type: github\n  resources: [{kind: ImagePolicy, name: app}]",
            "spec.resources[0].kind",
        ),
        ("type: bitbucket", "spec.type"),
        ("type: generic-hmac", "spec.resources"),
        (
            "type: github\n  resources: [{kind: ImageRepository, name: app, namespace: other}]",
            "spec.resources[0].namespace: \"other\": a Receiver triggers objects in its own namespace (default) only",
        ),
    ] {
        let objects = good.replacen("type: distribution", spec, 1);
        let out = run(&objects, &["--webhook-addr", addr]);
        assert_eq!(out.code, 2, "{spec}: {}", out.stderr);
        assert!(out.stderr.contains(message), "{spec}: {}", out.stderr);
    }
}

/// Flux's webhook path: `/hook/` and the sha256 of token, name and
/// namespace, as Flux's notification-controller computes it.
fn flux_hook_path(namespace: &str, name: &str, token: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{token}{name}{namespace}").as_bytes());
    format!("/hook/{digest:x}")
}

/// Flux's Receivers from files, unchanged: served at the path Flux
/// computes (so the URLs senders call keep working), triggering the image
/// objects they list; what they list for Flux's other controllers is
/// skipped with a warning.
#[test]
fn flux_receivers_are_served_at_flux_s_path() {
    let Some((registry, remote, _daemon, url)) = fleet() else {
        return;
    };
    let addr = registry.addr.clone();
    let objects = format!(
        "apiVersion: image.toolkit.fluxcd.io/v1
kind: ImageRepository
metadata: {{name: app, namespace: default}}
spec: {{image: {addr}/team/app, interval: 1h}}
---
apiVersion: image.toolkit.fluxcd.io/v1
kind: ImagePolicy
metadata: {{name: app, namespace: default}}
spec:
  imageRepositoryRef: {{name: app}}
  policy: {{semver: {{range: 1.x}}}}
---
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {{name: fleet, namespace: default}}
spec: {{interval: 1h, ref: {{branch: main}}, url: {url}}}
---
apiVersion: image.toolkit.fluxcd.io/v1
kind: ImageUpdateAutomation
metadata: {{name: fleet, namespace: default}}
spec:
  interval: 1h
  sourceRef: {{kind: GitRepository, name: fleet}}
  git:
    checkout: {{ref: {{branch: main}}}}
    commit:
      author: {{email: fluxcdbot@users.noreply.github.com, name: fluxcdbot}}
    push: {{branch: main}}
  update: {{path: ./, strategy: Setters}}
---
apiVersion: notification.toolkit.fluxcd.io/v1
kind: Receiver
metadata: {{name: registry, namespace: default}}
spec:
  type: generic
  secretRef: {{name: webhook-token}}
  resources:
    - {{apiVersion: image.toolkit.fluxcd.io/v1, kind: ImageRepository, name: app}}
---
apiVersion: notification.toolkit.fluxcd.io/v1
kind: Receiver
metadata: {{name: github, namespace: default}}
spec:
  type: github
  events: [ping, push]
  secretRef: {{name: webhook-token}}
  resources:
    - {{kind: GitRepository, name: fleet}}
    - {{apiVersion: image.toolkit.fluxcd.io/v1, kind: ImageUpdateAutomation, name: fleet}}
---
apiVersion: v1
kind: Secret
metadata: {{name: webhook-token, namespace: default}}
stringData: {{token: {TOKEN}}}
"
    );
    // The GitRepository a Receiver lists is Flux's source-controller's.
    let dir = crate::support::files(&[("objects.yaml", &objects)]);
    let check = crate::support::hoist_env(
        dir.path(),
        &["scan", "-f", "objects.yaml", "--state-dir", "state"],
        &[("DOCKER_CONFIG", "/nonexistent")],
    );
    assert!(
        check
            .stderr
            .contains("spec.resources[0].kind: skipped: hoist triggers ImageRepositories and ImageUpdateAutomations; GitRepository fleet"),
        "{}",
        check.stderr
    );
    let hoist = Serving::start(&objects);
    wait_for("the first pass", Duration::from_secs(30), || {
        (hoist.passes().len() == 1).then_some(())
    });
    let registry_hook = format!(
        "http://{}{}",
        hoist.webhook,
        flux_hook_path("default", "registry", TOKEN)
    );
    // hoist's own path for a Receiver of that name is not Flux's.
    let hoist_path = format!(
        "http://{}{}",
        hoist.webhook,
        hook_path("default", "registry", TOKEN)
    );
    assert_eq!(post(&hoist_path, &[], b"{}"), 404);

    // Flux's generic type: any POST to the secret path scans the listed
    // repository, and the new tag is committed.
    registry.push_image("team/app", &["1.1.0"]);
    assert_eq!(post(&registry_hook, &[], b""), 202);
    wait_for("the 1.1.0 commit", Duration::from_secs(30), || {
        remote
            .show("main", "app.yaml")
            .contains(":1.1.0")
            .then_some(())
    });
    let raw = crate::support::git::git(&remote.path, &["cat-file", "commit", "main"]);
    assert!(
        raw.ends_with("\n\nUpdate from image update automation"),
        "{raw}"
    );

    // A GitHub push, signed with the token, runs the listed automation,
    // which puts back a tag someone changed by hand.
    remote.commit_elsewhere("main", "app.yaml", &manifest(&addr, "1.0.0"));
    let push = json!({"ref": "refs/heads/main", "repository": {"clone_url": url}}).to_string();
    let github_hook = format!(
        "http://{}{}",
        hoist.webhook,
        flux_hook_path("default", "github", TOKEN)
    );
    let unsigned = vec![("X-GitHub-Event", "push".to_string())];
    assert_eq!(post(&github_hook, &unsigned, push.as_bytes()), 401);
    let signed = vec![
        ("X-GitHub-Event", "push".to_string()),
        (
            "X-Hub-Signature-256",
            format!("sha256={}", hmac_hex(TOKEN, push.as_bytes())),
        ),
    ];
    assert_eq!(post(&github_hook, &signed, push.as_bytes()), 202);
    wait_for("the automation run", Duration::from_secs(30), || {
        remote
            .show("main", "app.yaml")
            .contains(":1.1.0")
            .then_some(())
    });
}

/// The tip of `branch` in a bare repository, read from its ref file (a
/// loose ref, as receive-pack writes it) or by git when packed.
fn tip(remote: &BareRepo, branch: &str) -> String {
    std::fs::read_to_string(remote.path.join("refs/heads").join(branch))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| remote.head(branch))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// benches/webhook/run.sh: webhook request → pushed commit, median of 20,
/// against a local docker-registry and git daemon, next to a `hoist run
/// --once` for a new tag on the same setup (the cost of one pass without a
/// server); and registry requests per hour for 100 repositories, polled
/// each minute or woken by webhooks.
#[test]
#[ignore = "a benchmark: benches/webhook/run.sh"]
fn webhook_to_commit_latency() {
    let Some((registry, remote, _daemon, url)) = fleet() else {
        return;
    };
    let addr = registry.addr.clone();
    let objects = webhook_objects(&addr, &url);
    let hoist = Serving::start(&objects);
    wait_for("the first pass", Duration::from_secs(30), || {
        (hoist.passes().len() == 1).then_some(())
    });
    let hook = format!(
        "http://{}{}",
        hoist.webhook,
        hook_path("default", "registry", TOKEN)
    );
    let headers = distribution_headers();
    let requests_before = hoist.registry_requests();
    let mut latencies = Vec::new();
    for minor in 1..=20 {
        let tag = format!("1.{minor}.0");
        registry.push_image("team/app", &[&tag]);
        // Pushes a second apart: a Receiver's deliveries are spaced by 1 s.
        std::thread::sleep(Duration::from_secs(1));
        let before = tip(&remote, "main");
        let started = Instant::now();
        assert_eq!(post(&hook, &headers, pushed(&addr, &tag).as_bytes()), 202);
        loop {
            if tip(&remote, "main") != before {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no commit for {tag}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
        assert!(remote.show("main", "app.yaml").contains(&format!(":{tag}")));
    }
    let per_scan = (hoist.registry_requests() - requests_before) as f64 / 20.0;
    drop(hoist);

    // The same change by a one-shot run (process start to exit), 5 times,
    // its repository due for a scan each time (interval 1s).
    let due = objects.replacen("interval: 1h}", "interval: 1s}", 1);
    assert_ne!(due, objects);
    let dir = crate::support::files(&[("objects.yaml", &due)]);
    let mut once = Vec::new();
    for minor in 21..=25 {
        let tag = format!("1.{minor}.0");
        registry.push_image("team/app", &[&tag]);
        std::thread::sleep(Duration::from_millis(1100));
        let started = Instant::now();
        let run = crate::support::hoist_env(
            dir.path(),
            &[
                "run",
                "-f",
                "objects.yaml",
                "--once",
                "--state-dir",
                "state",
            ],
            &[("DOCKER_CONFIG", "/nonexistent")],
        );
        once.push(started.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert!(
            remote.show("main", "app.yaml").contains(&format!(":{tag}")),
            "{}",
            run.stdout
        );
    }

    let webhook_ms = median(latencies.clone());
    let once_ms = median(once);
    let min = latencies.iter().copied().fold(f64::MAX, f64::min);
    let max = latencies.iter().copied().fold(0.0, f64::max);
    println!(
        "webhook request -> pushed commit, 20 runs: median {webhook_ms:.0} ms (min {min:.0}, max {max:.0})"
    );
    println!("  of which gathering a burst (quiet window): 250 ms; pushes were 1 s apart");
    println!("hoist run --once for the same change, 5 runs: median {once_ms:.0} ms");
    println!("ratio webhook / one-shot run: {:.2}", webhook_ms / once_ms);
    println!(
        "with a 1-minute poll instead, a tag waits 30 s on average before the pass starts: {:.0}x the webhook's median",
        (30_000.0 + once_ms) / webhook_ms
    );
    // 100 repositories: polled every minute, against webhooks with a
    // 1-hour safety poll and, say, one push per repository per day.
    let poll = 100.0 * 60.0 * per_scan;
    let webhooks = (100.0 + 100.0 / 24.0) * per_scan;
    println!("registry requests per scan (measured): {per_scan:.1}");
    println!(
        "registry requests per hour, 100 repositories: 1-minute poll {poll:.0}; webhooks (+1 h safety poll, 1 push/repo/day) {webhooks:.0}; saved {:.0} ({:.1}%)",
        poll - webhooks,
        100.0 * (poll - webhooks) / poll
    );
}

/// What a real docker-registry sends its notification endpoint, read the
/// way a `distribution` Receiver reads it: the push of a tag names the
/// image, signed with the header the endpoint configures.
#[test]
fn a_real_registry_notification_names_the_pushed_image() {
    let sink = crate::support::http::FakeServer::start(|_, _| {
        crate::support::http::Reply::json(200, "{}")
    });
    let notifications = format!(
        "notifications:\n  endpoints:\n    - name: hoist\n      url: http://{}/hook/registry\n      headers:\n        Authorization: [Bearer {TOKEN}]\n      timeout: 2s\n      threshold: 3\n      backoff: 1s\n",
        sink.addr
    );
    let Some(registry) = DockerRegistry::start_with(Auth::None, &notifications) else {
        return;
    };
    registry.push_image("team/app", &["1.2.0"]);
    let addr = registry.addr.clone();
    let receiver: Receiver = object(
        json!({"metadata": {"name": "registry", "namespace": "apps"},
        "spec": {"type": "distribution", "secretRef": {"name": "token"}}}),
    );
    let repositories = [
        repository("app", &format!("{addr}/team/app")),
        repository("other", &format!("{addr}/team/other")),
    ];
    let event = wait_for(
        "the registry's notification of the tag",
        Duration::from_secs(30),
        || {
            sink.requests().into_iter().find_map(|request| {
                let tagged =
                    serde_json::from_slice::<serde_json::Value>(&request.body).ok()?["events"]
                        .as_array()?
                        .iter()
                        .any(|e| e["action"] == "push" && e["target"]["tag"] == "1.2.0");
                tagged.then_some(request)
            })
        },
    );
    assert_eq!(
        event.header("Content-Type"),
        Some("application/vnd.docker.distribution.events.v1+json")
    );
    let read = hoist::webhook::verify(
        hoist::api::ReceiverType::Distribution,
        TOKEN.as_bytes(),
        &event.headers,
        &event.body,
    )
    .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&event.body)));
    assert!(
        read.images.contains(&format!("{addr}/team/app")),
        "{read:?}"
    );
    let triggered = targets(
        &receiver,
        &read,
        &repositories,
        &[] as &[ImageUpdateAutomation],
    );
    assert_eq!(
        triggered.repositories.iter().collect::<Vec<_>>(),
        ["apps/app"]
    );
    // The same notification with another token is refused.
    let forged: Vec<(String, String)> = event
        .headers
        .iter()
        .map(|(k, v)| {
            if k.eq_ignore_ascii_case("Authorization") {
                (k.clone(), "Bearer guessed".to_string())
            } else {
                (k.clone(), v.clone())
            }
        })
        .collect();
    assert!(
        hoist::webhook::verify(
            hoist::api::ReceiverType::Distribution,
            TOKEN.as_bytes(),
            &forged,
            &event.body
        )
        .is_err()
    );
}

/// Idle connections held against `target` from `sources` in turn, each
/// opened again soon after the server closes it, until dropped.
struct Flood {
    stop: Arc<std::sync::atomic::AtomicBool>,
    opened: Arc<std::sync::atomic::AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Flood {
    fn start(target: &str, sources: &[std::net::Ipv4Addr], count: usize) -> Flood {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let target: std::net::SocketAddr = target.parse().unwrap_or_else(|e| panic!("{e}"));
        let stop = Arc::new(AtomicBool::new(false));
        let opened = Arc::new(AtomicUsize::new(0));
        let sources = sources.to_vec();
        let thread = std::thread::spawn({
            let (stop, opened) = (Arc::clone(&stop), Arc::clone(&opened));
            move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap_or_else(|e| panic!("{e}"));
                runtime.block_on(async move {
                    let mut tasks = Vec::new();
                    for i in 0..count {
                        let source = sources[i % sources.len()];
                        let (stop, opened) = (Arc::clone(&stop), Arc::clone(&opened));
                        tasks.push(tokio::spawn(async move {
                            let mut first = true;
                            while !stop.load(Ordering::Relaxed) {
                                if let Ok(mut stream) = connect_from(source, target).await {
                                    if first {
                                        opened.fetch_add(1, Ordering::Relaxed);
                                        first = false;
                                    }
                                    // Held, sending nothing, until the server closes it.
                                    let mut byte = [0u8; 1];
                                    let _ = tokio::time::timeout(
                                        Duration::from_millis(500),
                                        tokio::io::AsyncReadExt::read(&mut stream, &mut byte),
                                    )
                                    .await;
                                    // Still open: keep holding it.
                                    while !stop.load(Ordering::Relaxed)
                                        && matches!(stream.try_read(&mut byte), Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock)
                                    {
                                        tokio::time::sleep(Duration::from_millis(100)).await;
                                    }
                                }
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                        }));
                    }
                    for task in tasks {
                        let _ = task.await;
                    }
                });
            }
        });
        let flood = Flood {
            stop,
            opened,
            thread: Some(thread),
        };
        wait_for("the flood's connections", Duration::from_secs(60), || {
            (flood.opened.load(std::sync::atomic::Ordering::Relaxed) >= count).then_some(())
        });
        // Long enough for the server to have read each and found nothing.
        std::thread::sleep(Duration::from_millis(300));
        flood
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A connection to `target` from the loopback address `source`.
async fn connect_from(
    source: std::net::Ipv4Addr,
    target: std::net::SocketAddr,
) -> std::io::Result<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(std::net::SocketAddr::from((source, 0)))?;
    socket.connect(target).await
}

/// `request` sent from `source` to `target`; the answer's status, or 0 when
/// none came (refused, reset, or nothing within 10 s).
fn status_from(source: std::net::Ipv4Addr, target: &str, request: &str) -> u16 {
    let target: std::net::SocketAddr = target.parse().unwrap_or_else(|e| panic!("{e}"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    runtime.block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let exchange = async {
            let mut stream = connect_from(source, target).await?;
            stream.write_all(request.as_bytes()).await?;
            let mut answer = Vec::new();
            stream.read_to_end(&mut answer).await?;
            Ok::<_, std::io::Error>(answer)
        };
        match tokio::time::timeout(Duration::from_secs(10), exchange).await {
            Ok(Ok(answer)) => String::from_utf8_lossy(&answer)
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
            _ => 0,
        }
    })
}

fn loopback(last: u8) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::new(127, 0, 0, last)
}

/// A signed distribution notification to `hoist`'s registry Receiver, as
/// raw HTTP.
fn signed_request(hoist: &Serving, registry: &str) -> String {
    let body = pushed(registry, "9.9.9");
    let mut request = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
        hook_path("default", "registry", TOKEN),
        hoist.webhook,
        body.len()
    );
    for (name, value) in distribution_headers() {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(&body);
    request
}

/// Sends 20 signed requests from each of `sources`; how many got 202.
fn accepted_of(hoist: &Serving, registry: &str, sources: &[std::net::Ipv4Addr]) -> (usize, usize) {
    let request = signed_request(hoist, registry);
    let mut accepted = 0;
    let mut sent = 0;
    for round in 0..20 {
        for source in sources {
            sent += 1;
            if status_from(*source, &hoist.webhook, &request) == 202 {
                accepted += 1;
            }
        }
        if round % 5 == 4 {
            // Spread over the flood's own churn.
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    (accepted, sent)
}

const HEALTHZ: &str = "GET /healthz HTTP/1.1\r\nHost: hoist\r\nConnection: close\r\n\r\n";

/// Raises this process's soft open-file limit to its hard one; panics
/// when even that leaves too few for `needed` connections, since a flood
/// test that silently shrank would prove nothing.
fn open_files_for(needed: u64) {
    let limit = hoist::serve::raise_open_files_limit().unwrap_or(u64::MAX);
    assert!(
        limit >= needed,
        "this test needs {needed} open files and the hard limit allows {limit}"
    );
}

#[test]
fn signed_webhooks_are_accepted_past_600_idle_connections_from_one_peer() {
    open_files_for(2_000);
    // No registry or git needed: the Receiver answers before any scan.
    let registry = "127.0.0.1:9";
    let hoist = Serving::start(&webhook_objects(registry, "http://127.0.0.1:9/fleet.git"));
    let _flood = Flood::start(&hoist.webhook, &[loopback(1)], 600);
    let (accepted, sent) = accepted_of(&hoist, registry, &[loopback(1), loopback(2)]);
    assert!(
        accepted * 100 >= sent * 95,
        "{accepted} of {sent} signed webhooks accepted"
    );
    assert_eq!(status_from(loopback(3), &hoist.metrics, HEALTHZ), 200);
}

#[test]
fn signed_webhooks_are_accepted_past_2000_idle_connections_from_many_peers() {
    open_files_for(5_000);
    let registry = "127.0.0.1:9";
    let hoist = Serving::start(&webhook_objects(registry, "http://127.0.0.1:9/fleet.git"));
    let sources: Vec<_> = (10..=209).map(loopback).collect();
    let _flood = Flood::start(&hoist.webhook, &sources, 2_000);
    let (accepted, sent) = accepted_of(&hoist, registry, &[loopback(1), loopback(250)]);
    assert!(
        accepted * 100 >= sent * 95,
        "{accepted} of {sent} signed webhooks accepted"
    );
    assert_eq!(status_from(loopback(3), &hoist.metrics, HEALTHZ), 200);
}

#[test]
fn hoist_raises_its_soft_open_file_limit_to_the_hard_one() {
    let registry = "127.0.0.1:9";
    let hoist = Serving::start_with_limit(
        &webhook_objects(registry, "http://127.0.0.1:9/fleet.git"),
        "ulimit -Sn 256",
    );
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", hoist.child.id()))
        .unwrap_or_else(|e| panic!("{e}"));
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap_or_else(|| panic!("{limits}"));
    let numbers: Vec<&str> = line.split_whitespace().skip(3).take(2).collect();
    assert_eq!(numbers[0], numbers[1], "{line}");
}

#[test]
fn scans_and_git_keep_working_past_a_metrics_flood_at_1024_open_files() {
    let Some((registry, remote, _daemon, url)) = fleet() else {
        return;
    };
    open_files_for(4_000);
    let addr = registry.addr.clone();
    // Soft and hard: hoist cannot raise its way out of this one.
    let hoist = Serving::start_with_limit(&webhook_objects(&addr, &url), "ulimit -n 1024");
    wait_for("the first pass", Duration::from_secs(30), || {
        (hoist.passes().len() == 1).then_some(())
    });
    let sources: Vec<_> = (10..=109).map(loopback).collect();
    let _flood = Flood::start(&hoist.metrics, &sources, 1_500);
    assert_eq!(status_from(loopback(3), &hoist.metrics, HEALTHZ), 200);
    registry.push_image("team/app", &["1.1.0"]);
    let hook = format!(
        "http://{}{}",
        hoist.webhook,
        hook_path("default", "registry", TOKEN)
    );
    assert_eq!(
        post(
            &hook,
            &distribution_headers(),
            pushed(&addr, "1.1.0").as_bytes()
        ),
        202
    );
    wait_for("the 1.1.0 commit", Duration::from_secs(60), || {
        remote
            .show("main", "app.yaml")
            .contains(":1.1.0")
            .then_some(())
    });
}

/// For benches/webhook/floods.sh: the share of signed webhooks accepted,
/// and their p50/p99 latency, with no flood, 600 idle connections from one
/// peer, and 2,000 from 200 peers; of the binary `HOIST_BIN` names, or this
/// build's. One `flood …` line per case.
#[test]
#[ignore = "a bench: benches/webhook/floods.sh"]
fn webhook_flood_bench() {
    open_files_for(5_000);
    let registry = "127.0.0.1:9";
    let many: Vec<_> = (10..=209).map(loopback).collect();
    let cases: [(&str, &[std::net::Ipv4Addr], usize); 3] = [
        ("none", &[], 0),
        ("600-one-peer", &[loopback(1)], 600),
        ("2000-many-peers", &many, 2_000),
    ];
    for (name, sources, count) in cases {
        let hoist = Serving::start(&webhook_objects(registry, "http://127.0.0.1:9/fleet.git"));
        let _flood = (count > 0).then(|| Flood::start(&hoist.webhook, sources, count));
        let request = signed_request(&hoist, registry);
        let (mut accepted, mut latencies) = (0usize, Vec::new());
        let sent = 100;
        for i in 0..sent {
            let source = if i % 2 == 0 {
                loopback(1)
            } else {
                loopback(250)
            };
            let started = Instant::now();
            if status_from(source, &hoist.webhook, &request) == 202 {
                accepted += 1;
            }
            latencies.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        latencies.sort_by(f64::total_cmp);
        let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
        println!(
            "flood {name} accepted {accepted}/{sent} p50_ms {:.2} p99_ms {:.2}",
            at(0.5),
            at(0.99)
        );
    }
}
