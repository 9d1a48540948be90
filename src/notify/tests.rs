//! Alerts' matching, windows, each service's payload, and delivery
//! against an in-process server.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use super::*;
use crate::api::{Alert, AlertSpec, EventSource, LocalObjectReference, ProviderType};

fn event(reason: Reason, kind: &'static str, name: &str, message: &str) -> Event {
    Event {
        reason,
        kind,
        namespace: "team-a".into(),
        name: name.into(),
        labels: BTreeMap::from([("tier".to_string(), "web".to_string())]),
        message: message.into(),
        metadata: BTreeMap::from([("revision".to_string(), "0123456789abcdef".to_string())]),
        at: "2026-12-07T12:00:00Z"
            .parse()
            .unwrap_or_else(|e| panic!("{e}")),
    }
}

fn alert(edit: impl FnOnce(&mut AlertSpec)) -> Alert {
    let mut spec = AlertSpec {
        provider_ref: LocalObjectReference {
            name: "chat".into(),
        },
        event_severity: None,
        event_sources: vec![EventSource {
            kind: "ImagePolicy".into(),
            name: "*".into(),
            ..EventSource::default()
        }],
        event_reasons: Vec::new(),
        inclusion_list: Vec::new(),
        exclusion_list: Vec::new(),
        summary: None,
        event_metadata: BTreeMap::new(),
        suspend: false,
    };
    edit(&mut spec);
    let mut alert = Alert::new("on-call", spec);
    alert.metadata.namespace = Some("team-a".into());
    alert
}

#[test]
fn an_alert_admits_its_sources_severity_reasons_and_messages_only() {
    let rule =
        |edit: fn(&mut AlertSpec)| Rule::compile(&alert(edit)).unwrap_or_else(|e| panic!("{e:?}"));
    let tag = event(
        Reason::NewLatestTag,
        "ImagePolicy",
        "app",
        "resolved to 1.2.0",
    );
    let any = rule(|_| {});
    assert_eq!(any.provider, "team-a/chat");
    assert!(any.admits(&tag));
    // Another namespace's object never reaches this team's Provider.
    let mut elsewhere = tag.clone();
    elsewhere.namespace = "team-b".into();
    assert!(!any.admits(&elsewhere));
    // Another kind is not a source.
    assert!(!any.admits(&event(
        Reason::Pushed,
        "ImageUpdateAutomation",
        "app",
        "pushed"
    )));
    let errors = rule(|s| {
        s.event_severity = Some("error".into());
        s.event_sources[0].kind = "ImageRepository".into();
    });
    assert!(!errors.admits(&event(Reason::NewLatestTag, "ImageRepository", "app", "x")));
    assert!(errors.admits(&event(
        Reason::ScanFailed,
        "ImageRepository",
        "app",
        "HTTP 500"
    )));
    let named = rule(|s| {
        s.event_sources[0].name = "api".into();
        s.event_sources[0].match_labels = BTreeMap::from([("tier".into(), "web".into())]);
    });
    assert!(!named.admits(&tag));
    assert!(named.admits(&event(Reason::NewLatestTag, "ImagePolicy", "api", "x")));
    let mut unlabelled = event(Reason::NewLatestTag, "ImagePolicy", "api", "x");
    unlabelled.labels.clear();
    assert!(!named.admits(&unlabelled));
    let reasons = rule(|s| {
        s.event_sources[0].kind = "ImageUpdateAutomation".into();
        s.event_reasons = vec!["RolledBack".into(), "SyncFailed".into()];
    });
    assert!(!reasons.admits(&event(
        Reason::Pushed,
        "ImageUpdateAutomation",
        "fleet",
        "pushed"
    )));
    assert!(reasons.admits(&event(
        Reason::RolledBack,
        "ImageUpdateAutomation",
        "fleet",
        "rolled back"
    )));
    let filtered = rule(|s| {
        s.inclusion_list = vec!["^resolved".into()];
        s.exclusion_list = vec!["-rc\\.".into()];
    });
    assert!(filtered.admits(&tag));
    assert!(!filtered.admits(&event(
        Reason::NewLatestTag,
        "ImagePolicy",
        "app",
        "resolved to 2.0.0-rc.1"
    )));
    assert!(!filtered.admits(&event(
        Reason::NewLatestTag,
        "ImagePolicy",
        "app",
        "Latest is 1.2.0"
    )));
    let suspended = rule(|s| s.suspend = true);
    assert!(!suspended.admits(&tag));
}

#[test]
fn an_alert_that_cannot_work_names_its_field() {
    let field = |edit: fn(&mut AlertSpec)| {
        Rule::compile(&alert(edit))
            .err()
            .map(|e| (e.field, e.message))
    };
    let (f, m) = field(|s| s.event_severity = Some("warning".into())).unwrap_or_default();
    assert_eq!(f, "spec.eventSeverity");
    assert!(m.contains("use info or error"), "{m}");
    let (f, m) = field(|s| s.event_sources[0].kind = "Kustomization".into()).unwrap_or_default();
    assert_eq!(f, "spec.eventSources[0].kind");
    assert!(
        m.contains("ImageRepository, ImagePolicy, ImageUpdateAutomation"),
        "{m}"
    );
    let (f, m) =
        field(|s| s.event_sources[0].namespace = Some("team-b".into())).unwrap_or_default();
    assert_eq!(f, "spec.eventSources[0].namespace");
    assert!(
        m.contains("an Alert hears only its own namespace's objects"),
        "{m}"
    );
    let (f, _) =
        field(|s| s.event_reasons = vec!["Pushed".into(), "Deployed".into()]).unwrap_or_default();
    assert_eq!(f, "spec.eventReasons[1]");
    let (f, _) = field(|s| s.exclusion_list = vec!["(".into()]).unwrap_or_default();
    assert_eq!(f, "spec.exclusionList[0]");
    let (f, _) = field(|s| s.event_sources.clear()).unwrap_or_default();
    assert_eq!(f, "spec.eventSources");
}

#[test]
fn a_burst_of_fifty_events_of_one_object_is_one_message_per_window() {
    let start = Instant::now();
    let mut batcher = Batcher::new(Duration::from_secs(5), false);
    let mut sent = Vec::new();
    for i in 0..50 {
        let reason = if i == 20 {
            Reason::ScanFailed
        } else {
            Reason::NewLatestTag
        };
        let e = event(reason, "ImagePolicy", "app", &format!("event {i}"));
        sent.extend(batcher.push(e, None, start + Duration::from_millis(i * 10)));
    }
    // Another object has a window of its own.
    sent.extend(batcher.push(
        event(Reason::NewLatestTag, "ImagePolicy", "api", "other"),
        None,
        start,
    ));
    assert!(sent.is_empty());
    assert_eq!(batcher.next_due(), Some(start + Duration::from_secs(5)));
    assert!(batcher.due(start + Duration::from_millis(4999)).is_empty());
    let due = batcher.due(start + Duration::from_secs(5));
    assert_eq!(due.len(), 2);
    let app = due
        .iter()
        .find(|m| m.headline.name == "app")
        .unwrap_or_else(|| panic!("{due:?}"));
    assert_eq!(app.total, 50);
    // The error leads, though others came after it.
    assert_eq!(app.headline.message, "event 20");
    assert_eq!(app.counts.get(&Reason::NewLatestTag), Some(&49));
    assert_eq!(app.lines.len(), 10, "bounded");
    assert!(
        app.text()
            .contains("(50 events in this window: NewLatestTag ×49, ScanFailed ×1)"),
        "{}",
        app.text()
    );
    assert_eq!(batcher.next_due(), None);
    // The next event opens a new window.
    assert!(
        batcher
            .push(
                event(Reason::NewLatestTag, "ImagePolicy", "app", "later"),
                None,
                start + Duration::from_secs(6)
            )
            .is_empty()
    );
    // Window zero: each event at once.
    let mut immediate = Batcher::new(Duration::ZERO, false);
    assert_eq!(
        immediate
            .push(
                event(Reason::Pushed, "ImageUpdateAutomation", "fleet", "p"),
                None,
                start
            )
            .len(),
        1
    );
    // Commit statuses: a window per commit.
    let mut statuses = Batcher::new(Duration::from_secs(1), true);
    let mut other = event(Reason::Pushed, "ImageUpdateAutomation", "fleet", "p2");
    other
        .metadata
        .insert("revision".into(), "fedcba9876543210".into());
    statuses.push(
        event(Reason::Pushed, "ImageUpdateAutomation", "fleet", "p1"),
        None,
        start,
    );
    statuses.push(other, None, start);
    assert_eq!(statuses.drain().len(), 2);
}

fn target(type_: ProviderType, address: &str, token: Option<&str>) -> Target {
    Target {
        key: "team-a/chat".into(),
        type_,
        address: url::Url::parse(address).unwrap_or_else(|e| panic!("{e}")),
        channel: Some("#deploys".into()),
        username: Some("hoist".into()),
        token: token.map(str::to_string),
    }
}

fn message(reason: Reason, text: &str) -> Message {
    let mut batcher = Batcher::new(Duration::ZERO, false);
    let mut e = event(reason, "ImagePolicy", "app", text);
    e.metadata.insert("tag".into(), "1.2.0".into());
    batcher
        .push(e, Some("cluster prod".into()), Instant::now())
        .pop()
        .unwrap_or_else(|| panic!("no message"))
}

fn body(out: &Outgoing) -> Value {
    serde_json::from_slice(&out.body).unwrap_or_else(|e| panic!("{e}"))
}

fn sent(t: &Target, m: &Message) -> Outgoing {
    request(t, m)
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("nothing to send"))
}

#[test]
fn each_service_gets_its_published_shape() {
    let m = message(Reason::NewLatestTag, "resolved to 1.2.0 <for> A&B");
    let slack = body(&sent(
        &target(
            ProviderType::Slack,
            "https://hooks.slack.com/services/T/B/x",
            None,
        ),
        &m,
    ));
    assert_eq!(slack["channel"], "#deploys");
    assert_eq!(slack["blocks"][0]["type"], "header");
    assert_eq!(
        slack["blocks"][0]["text"]["text"],
        "ImagePolicy team-a/app: NewLatestTag"
    );
    assert_eq!(slack["blocks"][1]["elements"][0]["text"], "cluster prod");
    assert_eq!(
        slack["blocks"][2]["text"]["text"],
        "resolved to 1.2.0 &lt;for&gt; A&amp;B"
    );
    assert_eq!(slack["blocks"][3]["fields"][1]["text"], "*tag*\n1.2.0");
    assert!(
        slack["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("ImagePolicy team-a/app: NewLatestTag: resolved"))
    );

    let teams = body(&sent(
        &target(
            ProviderType::MsTeams,
            "https://prod.westeurope.logic.azure.com/workflows/x",
            None,
        ),
        &m,
    ));
    assert_eq!(teams["type"], "message");
    let card = &teams["attachments"][0];
    assert_eq!(
        card["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(card["content"]["type"], "AdaptiveCard");
    assert_eq!(card["content"]["body"][3]["type"], "FactSet");
    assert_eq!(card["content"]["body"][3]["facts"][1]["title"], "tag");

    let failed = message(Reason::ScanFailed, &"x".repeat(5000));
    let discord = body(&sent(
        &target(
            ProviderType::Discord,
            "https://discord.com/api/webhooks/1/x",
            None,
        ),
        &failed,
    ));
    let embed = &discord["embeds"][0];
    assert_eq!(embed["color"], 0xd4_0e0d);
    assert_eq!(
        embed["description"].as_str().map(|d| d.chars().count()),
        Some(4096)
    );
    assert_eq!(embed["fields"][1]["name"], "tag");
    assert_eq!(embed["timestamp"], "2026-12-07T12:00:00Z");

    let chat = body(&sent(
        &target(
            ProviderType::GoogleChat,
            "https://chat.googleapis.com/v1/spaces/S/messages?key=k",
            None,
        ),
        &m,
    ));
    assert_eq!(
        chat["cardsV2"][0]["card"]["header"]["title"],
        "ImagePolicy team-a/app: NewLatestTag"
    );
    assert_eq!(
        chat["cardsV2"][0]["card"]["sections"][0]["widgets"][2]["decoratedText"]["topLabel"],
        "tag"
    );

    let generic = sent(
        &target(
            ProviderType::GenericHmac,
            "https://hooks.example.com/hoist",
            Some("hmac-key"),
        ),
        &m,
    );
    let flux = body(&generic);
    assert_eq!(flux["involvedObject"]["kind"], "ImagePolicy");
    assert_eq!(flux["involvedObject"]["namespace"], "team-a");
    assert_eq!(flux["reason"], "NewLatestTag");
    assert_eq!(flux["severity"], "info");
    assert_eq!(flux["metadata"]["summary"], "cluster prod");
    assert_eq!(flux["reportingController"], "hoist");
    let signature = generic
        .headers
        .iter()
        .find(|(k, _)| k == "X-Signature")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    assert_eq!(
        signature,
        format!("sha256={}", hmac_sha256(b"hmac-key", &generic.body))
    );
    // The RFC 4231 vector 2 of HMAC-SHA256.
    assert_eq!(
        hmac_sha256(b"Jefe", b"what do ya want for nothing?"),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
    assert!(
        request(
            &target(ProviderType::GenericHmac, "https://h.example.com/", None),
            &m
        )
        .is_err()
    );
}

#[test]
fn commit_statuses_go_to_the_commit_of_the_event() {
    let pushed = message(Reason::Pushed, "pushed commit 0123456789ab to branch main");
    let github = sent(
        &target(
            ProviderType::GitHub,
            "https://github.com/acme/fleet.git",
            Some("ghp_x"),
        ),
        &pushed,
    );
    assert_eq!(
        github.url.as_str(),
        "https://api.github.com/repos/acme/fleet/statuses/0123456789abcdef"
    );
    assert!(
        github
            .headers
            .contains(&("Authorization".into(), "Bearer ghp_x".into()))
    );
    let status = body(&github);
    assert_eq!(status["state"], "success");
    assert_eq!(status["context"], "hoist/imagepolicy/app");
    let enterprise = sent(
        &target(
            ProviderType::GitHub,
            "https://git.example.com/acme/fleet",
            Some("t"),
        ),
        &message(Reason::SyncFailed, "sync failed"),
    );
    assert_eq!(
        enterprise.url.as_str(),
        "https://git.example.com/api/v3/repos/acme/fleet/statuses/0123456789abcdef"
    );
    assert_eq!(body(&enterprise)["state"], "failure");
    let gitlab = sent(
        &target(
            ProviderType::GitLab,
            "https://gitlab.example.com/group/sub/fleet",
            Some("glpat"),
        ),
        &pushed,
    );
    assert_eq!(
        gitlab.url.as_str(),
        "https://gitlab.example.com/api/v4/projects/group%2Fsub%2Ffleet/statuses/0123456789abcdef"
    );
    assert!(
        gitlab
            .headers
            .contains(&("PRIVATE-TOKEN".into(), "glpat".into()))
    );
    assert_eq!(body(&gitlab)["name"], "hoist/imagepolicy/app");
    // An event of no commit has no status to post.
    let mut no_commit = pushed.clone();
    no_commit.headline.metadata.remove("revision");
    assert_eq!(
        request(
            &target(
                ProviderType::GitHub,
                "https://github.com/acme/fleet",
                Some("t")
            ),
            &no_commit
        ),
        Ok(None)
    );
    assert!(
        request(
            &target(ProviderType::GitHub, "https://github.com/acme", Some("t")),
            &pushed
        )
        .is_err()
    );
    assert!(
        request(
            &target(ProviderType::GitHub, "https://github.com/acme/fleet", None),
            &pushed
        )
        .is_err()
    );
}

/// What a [`Recorder`] received: path, body and when.
type Seen = std::sync::Arc<std::sync::Mutex<Vec<(String, Vec<u8>, std::time::Instant)>>>;

/// A webhook receiver on a loopback port: records each request's path and
/// body, and answers with the status `answer` gives for the n-th request.
struct Recorder {
    url: String,
    seen: Seen,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Recorder {
    async fn start(answer: fn(usize) -> u16) -> Recorder {
        use http_body_util::BodyExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let seen: Seen = Default::default();
        let recorded = std::sync::Arc::clone(&seen);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let recorded = std::sync::Arc::clone(&recorded);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |request: hyper::Request<hyper::body::Incoming>| {
                            let recorded = std::sync::Arc::clone(&recorded);
                            async move {
                                let path = request.uri().path().to_string();
                                let body = request
                                    .into_body()
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes().to_vec())
                                    .unwrap_or_default();
                                let n = recorded
                                    .lock()
                                    .map(|mut r| {
                                        r.push((path, body, std::time::Instant::now()));
                                        r.len() - 1
                                    })
                                    .unwrap_or(0);
                                let mut response = hyper::Response::new(http_body_util::Full::new(
                                    hyper::body::Bytes::from_static(b"ok"),
                                ));
                                *response.status_mut() =
                                    hyper::StatusCode::from_u16(answer(n)).unwrap_or_default();
                                Ok::<_, std::convert::Infallible>(response)
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Recorder {
            url: format!("http://{addr}"),
            seen,
            task,
        }
    }

    fn seen(&self) -> Vec<(String, Vec<u8>, std::time::Instant)> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

#[derive(Default)]
struct Reports(std::sync::Mutex<Vec<(String, Result<(), String>)>>);

impl Reporter for Reports {
    fn report(&self, provider: &str, outcome: Result<(), String>) {
        if let Ok(mut r) = self.0.lock() {
            r.push((provider.to_string(), outcome));
        }
    }
}

fn routes_to(providers: &[(&str, ProviderType, String, Duration)]) -> Routes {
    let mut routes = Routes::default();
    for (name, type_, address, window) in providers {
        routes.providers.insert(
            format!("team-a/{name}"),
            Channel {
                target: Ok(Target {
                    key: format!("team-a/{name}"),
                    type_: *type_,
                    address: url::Url::parse(address).unwrap_or_else(|e| panic!("{e}")),
                    channel: None,
                    username: None,
                    token: None,
                }),
                window: *window,
                timeout: Duration::from_secs(5),
                suspend: false,
            },
        );
        let alert = alert(|s| {
            s.provider_ref.name = name.to_string();
        });
        routes
            .rules
            .push(Rule::compile(&alert).unwrap_or_else(|e| panic!("{e:?}")));
    }
    routes
}

async fn wait_until(what: &str, check: impl Fn() -> bool) {
    let started = std::time::Instant::now();
    while !check() {
        assert!(started.elapsed() < Duration::from_secs(20), "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_events_become_one_message_per_provider_and_emit_never_waits() {
    let server = Recorder::start(|_| 200).await;
    let reports = std::sync::Arc::new(Reports::default());
    let metrics = std::sync::Arc::new(crate::metrics::Metrics::default());
    let notifier = Notifier::start(
        routes_to(&[
            (
                "chat",
                ProviderType::Slack,
                format!("{}/slack", server.url),
                Duration::from_millis(500),
            ),
            (
                "hook",
                ProviderType::Generic,
                format!("{}/generic", server.url),
                Duration::from_millis(500),
            ),
        ]),
        reports.clone(),
        Some(metrics.clone()),
    );
    let started = std::time::Instant::now();
    for i in 0..50 {
        notifier.emit(event(
            Reason::NewLatestTag,
            "ImagePolicy",
            "app",
            &format!("resolved to 1.{i}.0"),
        ));
    }
    // Emitting fifty events does not wait on any delivery.
    assert!(started.elapsed() < Duration::from_millis(200));
    wait_until("both messages", || server.seen().len() >= 2).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let seen = server.seen();
    assert_eq!(
        seen.len(),
        2,
        "{:?}",
        seen.iter().map(|s| &s.0).collect::<Vec<_>>()
    );
    let generic = seen
        .iter()
        .find(|s| s.0 == "/generic")
        .map(|s| serde_json::from_slice::<Value>(&s.1).unwrap_or_default())
        .unwrap_or_default();
    assert_eq!(generic["metadata"]["events"], "50");
    assert!(
        generic["message"]
            .as_str()
            .is_some_and(|m| m
                .starts_with("resolved to 1.49.0\n(50 events in this window: NewLatestTag ×50)")),
        "{generic}"
    );
    assert!(
        metrics
            .encode()
            .contains("hoist_notifications_total{provider=\"team-a/chat\",result=\"delivered\"} 1"),
        "{}",
        metrics.encode()
    );
    // The same event again within five minutes is not sent again.
    notifier.emit(event(
        Reason::NewLatestTag,
        "ImagePolicy",
        "app",
        "resolved to 1.49.0",
    ));
    notifier.flush(Duration::from_secs(5)).await;
    assert_eq!(server.seen().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_delivery_is_retried_and_a_refused_one_marks_the_provider_failing() {
    // 503, then 200: retried after a second.
    let flaky = Recorder::start(|n| if n == 0 { 503 } else { 200 }).await;
    let gone = Recorder::start(|_| 404).await;
    let reports = std::sync::Arc::new(Reports::default());
    let metrics = std::sync::Arc::new(crate::metrics::Metrics::default());
    let notifier = Notifier::start(
        routes_to(&[
            (
                "flaky",
                ProviderType::Discord,
                format!("{}/webhook", flaky.url),
                Duration::ZERO,
            ),
            (
                "gone",
                ProviderType::GoogleChat,
                format!("{}/secret-path?key=k", gone.url),
                Duration::ZERO,
            ),
        ]),
        reports.clone(),
        Some(metrics.clone()),
    );
    notifier.emit(event(Reason::ScanFailed, "ImagePolicy", "app", "HTTP 500"));
    notifier.flush(Duration::from_secs(10)).await;
    assert_eq!(flaky.seen().len(), 2);
    assert_eq!(gone.seen().len(), 1, "a 404 is not retried");
    let reports = reports.0.lock().map(|r| r.clone()).unwrap_or_default();
    assert!(
        reports.contains(&("team-a/flaky".to_string(), Ok(()))),
        "{reports:?}"
    );
    let refused = reports
        .iter()
        .find(|(p, _)| p == "team-a/gone")
        .map(|(_, r)| r.clone());
    let message = refused.and_then(|r| r.err()).unwrap_or_default();
    assert!(
        message.starts_with(&format!("POST {}/…: HTTP 404", gone.url)),
        "{message}"
    );
    // The webhook URL's path and key are secrets: not in the message.
    assert!(
        !message.contains("secret-path") && !message.contains("key=k"),
        "{message}"
    );
    let text = metrics.encode();
    assert!(
        text.contains("hoist_notification_provider_failing{provider=\"team-a/gone\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("hoist_notification_provider_failing{provider=\"team-a/flaky\"} 0"),
        "{text}"
    );
}
