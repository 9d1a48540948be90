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
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    pub kind: String,
    /// `success` or `error`.
    pub result: String,
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
    pub registry_requests: Family<RegistryLabels, Counter>,
    pub tags_scanned: Counter,
    pub commits_pushed: Counter,
    pub pull_requests_opened: Counter,
    pub webhook_requests: Family<WebhookLabels, Counter>,
    /// Whether the controller is up and its caches are filled.
    pub ready: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Metrics {
        let mut registry = Registry::with_prefix("hoist");
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        let reconcile_seconds: Histograms = Family::new_with_constructor(reconcile_histogram);
        let registry_requests = Family::<RegistryLabels, Counter>::default();
        let tags_scanned = Counter::default();
        let commits_pushed = Counter::default();
        let pull_requests_opened = Counter::default();
        let webhook_requests = Family::<WebhookLabels, Counter>::default();
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
        Metrics {
            registry,
            reconciles,
            reconcile_seconds,
            registry_requests,
            tags_scanned,
            commits_pushed,
            pull_requests_opened,
            webhook_requests,
            ready: AtomicBool::new(false),
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

    /// Counts one webhook request and how it ended.
    pub fn webhook(&self, result: &str) {
        self.webhook_requests
            .get_or_create(&WebhookLabels {
                result: result.to_string(),
            })
            .inc();
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
/// process ends. One small request per connection: probes and scrapes.
pub async fn serve(listener: tokio::net::TcpListener, metrics: Arc<Metrics>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            // Out of file descriptors, say: do not spin.
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            continue;
        };
        let metrics = Arc::clone(&metrics);
        // Each connection gets 10 s in all, however slowly it sends.
        tokio::spawn(tokio::time::timeout(
            std::time::Duration::from_secs(10),
            async move {
                let mut request = Vec::with_capacity(1024);
                let mut buffer = [0u8; 1024];
                // Read the request head, at most 8 KiB of it.
                while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 8192 {
                    match tokio::time::timeout(
                        std::time::Duration::from_secs(5),
                        stream.read(&mut buffer),
                    )
                    .await
                    {
                        Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
                        Ok(Ok(n)) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&request);
                let mut parts = head.split_whitespace();
                let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                let path = path.split('?').next().unwrap_or(path);
                let (status, content_type, body) = match (method, path) {
                    ("GET", "/metrics") => (
                        "200 OK",
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        metrics.encode(),
                    ),
                    ("GET", "/healthz") => ("200 OK", "text/plain", "ok\n".to_string()),
                    ("GET", "/readyz") if metrics.ready.load(Ordering::Relaxed) => {
                        ("200 OK", "text/plain", "ok\n".to_string())
                    }
                    ("GET", "/readyz") => (
                        "503 Service Unavailable",
                        "text/plain",
                        "starting\n".to_string(),
                    ),
                    ("GET", _) => ("404 Not Found", "text/plain", "not found\n".to_string()),
                    _ => (
                        "405 Method Not Allowed",
                        "text/plain",
                        "GET only\n".to_string(),
                    ),
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            },
        ));
    }
}
