//! What hoist counts (`hoist_` metrics in the Prometheus text format) and
//! the small HTTP endpoint that serves them with `/healthz` and `/readyz`:
//! the controller's `--metrics-addr`, and a long-running `hoist run`'s.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    pub kind: String,
    /// `success` or `error`.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub kind: String,
    /// What failed: `spec`, `git`, `forge`, `registry_timeout`, `kube_api`, …
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    /// `accepted`, or why not: `unknown_path`, `unsigned`,
    /// `bad_signature`, `ignored_event`, `bad_payload`, `too_large`,
    /// `method`, `overloaded`.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectionLabels {
    /// `webhook` or `metrics`.
    pub listener: String,
    /// `refused` (every slot busy), `evicted` (an idle connection closed
    /// to make room), `quiet` (closed having sent nothing in time),
    /// `lifetime`, `accept_error` (out of file descriptors, say).
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NotificationLabels {
    /// `ns/name` of the Provider.
    pub provider: String,
    /// `delivered`, `failed` (retries used up), `refused` (a 4xx: not
    /// retried), `dropped` (a queue full), `invalid` (its spec or Secret).
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabels {
    pub provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RegistryLabels {
    pub host: String,
    /// The HTTP status, or `0` when no answer came.
    pub status: u16,
}

type Histograms = Family<KindLabels, Histogram, fn() -> Histogram>;

fn reconcile_histogram() -> Histogram {
    // 5 ms to about 80 s.
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

/// hoist's metrics.
pub struct Metrics {
    registry: Registry,
    pub reconciles: Family<ReconcileLabels, Counter>,
    pub reconcile_seconds: Histograms,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub registry_requests: Family<RegistryLabels, Counter>,
    pub tags_scanned: Counter,
    pub commits_pushed: Counter,
    pub pull_requests_opened: Counter,
    pub webhook_requests: Family<WebhookLabels, Counter>,
    /// Deliveries the webhook coalescer handed on, and the accepted
    /// requests gathered into them.
    pub webhook_deliveries: Counter,
    pub webhook_gathered_requests: Counter,
    pub connections: Family<ConnectionLabels, Counter>,
    pub notifications: Family<NotificationLabels, Counter>,
    /// 1 while a Provider's last delivery failed.
    pub provider_failing: Family<ProviderLabels, prometheus_client::metrics::gauge::Gauge>,
    /// Whether the controller is up and its caches are filled.
    pub ready: AtomicBool,
    /// Whether the API server stopped answering: not ready meanwhile.
    pub api_unreachable: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Metrics {
        let mut registry = Registry::with_prefix("hoist");
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        let reconcile_seconds: Histograms = Family::new_with_constructor(reconcile_histogram);
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        let registry_requests = Family::<RegistryLabels, Counter>::default();
        let tags_scanned = Counter::default();
        let commits_pushed = Counter::default();
        let pull_requests_opened = Counter::default();
        let webhook_requests = Family::<WebhookLabels, Counter>::default();
        let connections = Family::<ConnectionLabels, Counter>::default();
        let webhook_deliveries = Counter::default();
        let webhook_gathered_requests = Counter::default();
        let notifications = Family::<NotificationLabels, Counter>::default();
        let provider_failing =
            Family::<ProviderLabels, prometheus_client::metrics::gauge::Gauge>::default();
        registry.register(
            "notifications",
            "Notification messages by Provider and result (delivered, failed, refused, dropped, invalid)",
            notifications.clone(),
        );
        registry.register(
            "notification_provider_failing",
            "1 while a Provider's last delivery failed",
            provider_failing.clone(),
        );
        registry.register(
            "reconciles",
            "Reconciles by kind and result",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "How long reconciles took, by kind",
            reconcile_seconds.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconciles that failed or stalled, by kind and reason (spec, git, forge, registry_timeout, kube_api, …)",
            reconcile_errors.clone(),
        );
        registry.register(
            "registry_requests",
            "Requests to container registries by host and HTTP status (0: no answer)",
            registry_requests.clone(),
        );
        registry.register(
            "tags_scanned",
            "Tags read from registries (scans served from the store not counted)",
            tags_scanned.clone(),
        );
        registry.register(
            "commits_pushed",
            "Commits pushed by ImageUpdateAutomations",
            commits_pushed.clone(),
        );
        registry.register(
            "pull_requests_opened",
            "Pull requests opened by ImageUpdateAutomations",
            pull_requests_opened.clone(),
        );
        registry.register(
            "webhook_requests",
            "Webhook requests by result: accepted, or why they were refused",
            webhook_requests.clone(),
        );
        registry.register(
            "webhook_deliveries",
            "Webhook deliveries handed on, each one pass (or one reconcile per object) for the requests gathered into it",
            webhook_deliveries.clone(),
        );
        registry.register(
            "webhook_gathered_requests",
            "Accepted webhook requests gathered into those deliveries",
            webhook_gathered_requests.clone(),
        );
        registry.register(
            "connections",
            "Connections the HTTP listeners closed early, by listener and why",
            connections.clone(),
        );
        Metrics {
            registry,
            reconciles,
            reconcile_seconds,
            reconcile_errors,
            notifications,
            provider_failing,
            registry_requests,
            tags_scanned,
            commits_pushed,
            pull_requests_opened,
            webhook_requests,
            webhook_deliveries,
            webhook_gathered_requests,
            connections,
            ready: AtomicBool::new(false),
            api_unreachable: AtomicBool::new(false),
        }
    }
}

impl Metrics {
    /// Counts one reconcile of `kind` that took `seconds`.
    pub fn reconciled(&self, kind: &str, ok: bool, seconds: f64) {
        self.reconciles
            .get_or_create(&ReconcileLabels {
                kind: kind.to_string(),
                result: if ok { "success" } else { "error" }.to_string(),
            })
            .inc();
        self.reconcile_seconds
            .get_or_create(&KindLabels {
                kind: kind.to_string(),
            })
            .observe(seconds);
    }

    /// Counts a reconcile of `kind` that failed or stalled for `reason`.
    pub fn reconcile_error(&self, kind: &str, reason: &str) {
        self.reconcile_errors
            .get_or_create(&ErrorLabels {
                kind: kind.to_string(),
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Counts one webhook request and how it ended.
    pub fn webhook(&self, result: &str) {
        self.webhook_requests
            .get_or_create(&WebhookLabels {
                result: result.to_string(),
            })
            .inc();
    }

    /// Counts one delivery the webhook coalescer handed on, gathered from
    /// `requests` accepted requests.
    pub fn webhook_handed_on(&self, requests: u64) {
        self.webhook_deliveries.inc();
        self.webhook_gathered_requests.inc_by(requests);
    }

    /// Counts a connection `listener` closed early, and why.
    pub fn connection(&self, listener: &str, result: &str) {
        self.connections
            .get_or_create(&ConnectionLabels {
                listener: listener.to_string(),
                result: result.to_string(),
            })
            .inc();
    }

    /// Counts one notification message to `provider` and how it ended;
    /// the Provider is failing from a failure until a delivery.
    pub fn notification(&self, provider: &str, result: &str) {
        self.notifications
            .get_or_create(&NotificationLabels {
                provider: provider.to_string(),
                result: result.to_string(),
            })
            .inc();
        let failing = match result {
            "delivered" => 0,
            "failed" | "refused" | "invalid" => 1,
            _ => return,
        };
        self.provider_failing
            .get_or_create(&ProviderLabels {
                provider: provider.to_string(),
            })
            .set(failing);
    }

    /// Counts one registry request to `host` that ended in `status`.
    pub fn registry_request(&self, host: &str, status: u16) {
        self.registry_requests
            .get_or_create(&RegistryLabels {
                host: host.to_string(),
                status,
            })
            .inc();
    }

    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::warn!("encoding metrics: {e}");
        }
        text
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until the
/// process ends, on the serving stack the webhook server uses (the same
/// connection limits and deadlines): probes and scrapes.
pub async fn serve(listener: tokio::net::TcpListener, metrics: Arc<Metrics>) {
    let options = crate::serve::Options {
        name: "metrics",
        keep_alive: true,
        lifetime: std::time::Duration::from_secs(60),
    };
    let handler = {
        let metrics = Arc::clone(&metrics);
        move |request: hyper::Request<hyper::body::Incoming>| {
            let metrics = Arc::clone(&metrics);
            async move { answer(&request, &metrics) }
        }
    };
    crate::serve::serve(listener, options, metrics, handler, std::future::pending()).await;
}

fn answer<B>(
    request: &hyper::Request<B>,
    metrics: &Metrics,
) -> hyper::Response<http_body_util::Full<hyper::body::Bytes>> {
    let (status, content_type, body) = match (request.method(), request.uri().path()) {
        (&hyper::Method::GET, "/metrics") => (
            200,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.encode(),
        ),
        (&hyper::Method::GET, "/healthz") => (200, "text/plain", "ok\n".to_string()),
        (&hyper::Method::GET, "/readyz") if metrics.api_unreachable.load(Ordering::Relaxed) => (
            503,
            "text/plain",
            "cannot reach the API server\n".to_string(),
        ),
        (&hyper::Method::GET, "/readyz") if metrics.ready.load(Ordering::Relaxed) => {
            (200, "text/plain", "ok\n".to_string())
        }
        (&hyper::Method::GET, "/readyz") => (503, "text/plain", "starting\n".to_string()),
        (&hyper::Method::GET, _) => (404, "text/plain", "not found\n".to_string()),
        _ => (405, "text/plain", "GET only\n".to_string()),
    };
    let mut response = hyper::Response::new(http_body_util::Full::new(body.into()));
    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
    if let Ok(value) = hyper::header::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}
