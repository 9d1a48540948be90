//! The webhook server (`--webhook-addr`): finds the Receiver by its secret
//! path, verifies the request the way its sender signs, and hands the event
//! on. Events for one Receiver that arrive close together are merged, so a
//! burst of pushes costs one scan.
//!
//! What a refused request learns is its status code, nothing more; why it
//! was refused goes to the log and `hoist_webhook_requests_total`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{Event, Rejection, verify};
use crate::api::{Receiver, ReceiverOrigin};
use crate::metrics::Metrics;

/// The largest body read; larger ones are refused with 413.
pub const MAX_BODY: usize = 1 << 20;
/// The time a client has to send its body.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// A Receiver ready to verify requests: its object and its token.
pub struct Endpoint {
    pub receiver: Receiver,
    token: Vec<u8>,
}

impl Endpoint {
    pub fn new(receiver: Receiver, token: Vec<u8>) -> Endpoint {
        Endpoint { receiver, token }
    }

    /// `ns/name`
    pub fn key(&self) -> String {
        crate::model::ObjectKey::of(&self.receiver.metadata).to_string()
    }

    /// The URL path senders are configured with.
    pub fn path(&self) -> String {
        let namespace = crate::model::namespace_of(&self.receiver.metadata);
        let name = self.receiver.metadata.name.as_deref().unwrap_or("");
        match self.receiver.spec.origin {
            ReceiverOrigin::Hoist => super::path(namespace, name, self.token.trim_ascii()),
            ReceiverOrigin::Flux => super::flux_path(namespace, name, &self.token),
        }
    }
}

impl std::fmt::Debug for Endpoint {
    // The token never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("receiver", &self.key())
            .finish_non_exhaustive()
    }
}

/// The Receivers served, by path. The controller replaces entries as
/// Receivers and their Secrets change; `hoist run` fills it once.
#[derive(Clone, Default)]
pub struct Endpoints {
    by_path: Arc<RwLock<HashMap<String, Arc<Endpoint>>>>,
}

impl Endpoints {
    /// Serves `endpoint` at its path, in place of whatever served the
    /// Receiver before (its token may have changed).
    pub fn insert(&self, endpoint: Endpoint) -> String {
        let path = endpoint.path();
        let key = endpoint.key();
        if let Ok(mut map) = self.by_path.write() {
            map.retain(|_, e| e.key() != key);
            map.insert(path.clone(), Arc::new(endpoint));
        }
        path
    }

    /// Stops serving the Receiver `key` (`ns/name`).
    pub fn remove(&self, key: &str) {
        if let Ok(mut map) = self.by_path.write() {
            map.retain(|_, e| e.key() != key);
        }
    }

    /// Keeps serving only the Receivers whose `ns/name` `keep` accepts.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        if let Ok(mut map) = self.by_path.write() {
            map.retain(|_, e| keep(&e.key()));
        }
    }

    fn get(&self, path: &str) -> Option<Arc<Endpoint>> {
        self.by_path.read().ok()?.get(path).cloned()
    }
}

/// A verified event, and the Receiver it came to.
#[derive(Debug)]
pub struct Delivery {
    pub endpoint: Arc<Endpoint>,
    pub event: Event,
}

/// How long events for one Receiver are gathered before they are acted on:
/// until none came for `quiet`, and never longer than `longest` after the
/// first; and never sooner than `spacing` after the Receiver's previous
/// delivery, so that a sender (or someone who learnt a Docker Hub path)
/// cannot make hoist scan a registry more than once per `spacing`.
#[derive(Clone, Copy, Debug)]
pub struct Coalescing {
    pub quiet: Duration,
    pub longest: Duration,
    pub spacing: Duration,
}

impl Default for Coalescing {
    fn default() -> Coalescing {
        // A registry sends one event per tag and per platform of a push,
        // within milliseconds; 250 ms gathers them and keeps a tag to
        // commit well under a second.
        Coalescing {
            quiet: Duration::from_millis(250),
            longest: Duration::from_secs(2),
            spacing: Duration::from_secs(1),
        }
    }
}

/// Serves webhooks on `listener` until `stop` completes, sending verified
/// events to `deliveries`, on the stack in [`crate::serve`] (its connection
/// limits and deadlines). One request per connection (webhook senders open
/// one for each); its body within [`BODY_TIMEOUT`].
pub async fn serve(
    listener: tokio::net::TcpListener,
    endpoints: Endpoints,
    metrics: Arc<Metrics>,
    deliveries: mpsc::Sender<Delivery>,
    stop: impl std::future::Future<Output = ()>,
) {
    let options = crate::serve::Options {
        name: "webhook",
        keep_alive: false,
        lifetime: crate::serve::HEAD + BODY_TIMEOUT,
    };
    let handler = {
        let metrics = Arc::clone(&metrics);
        move |request| {
            let (endpoints, metrics, deliveries) =
                (endpoints.clone(), Arc::clone(&metrics), deliveries.clone());
            async move { handle(request, &endpoints, &metrics, &deliveries).await }
        }
    };
    crate::serve::serve(listener, options, metrics, handler, stop).await;
}

/// Answers one request; the body says nothing beyond the status.
async fn handle(
    request: Request<Incoming>,
    endpoints: &Endpoints,
    metrics: &Metrics,
    deliveries: &mpsc::Sender<Delivery>,
) -> Response<Full<Bytes>> {
    let answer = |status: StatusCode, result: &str| {
        metrics.webhook(result);
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = status;
        response
    };
    if request.method() != Method::POST {
        return answer(StatusCode::METHOD_NOT_ALLOWED, "method");
    }
    let Some(endpoint) = endpoints.get(request.uri().path()) else {
        tracing::debug!(path = request.uri().path(), "webhook: unknown path");
        return answer(StatusCode::NOT_FOUND, "unknown_path");
    };
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    let declared = request
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return answer(StatusCode::PAYLOAD_TOO_LARGE, "too_large");
    }
    let body = Limited::new(request.into_body(), MAX_BODY).collect();
    let body = match tokio::time::timeout(BODY_TIMEOUT, body).await {
        Ok(Ok(body)) => body.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return answer(StatusCode::PAYLOAD_TOO_LARGE, "too_large");
        }
        // The client went away or sent garbage.
        Ok(Err(_)) => return answer(StatusCode::BAD_REQUEST, "bad_payload"),
        Err(_) => return answer(StatusCode::REQUEST_TIMEOUT, "timeout"),
    };
    let receiver = endpoint.key();
    let event = match verify(
        endpoint.receiver.spec.type_,
        &endpoint.token,
        &headers,
        &body,
    ) {
        Ok(event) => event,
        Err(rejection) => {
            tracing::info!(%receiver, "webhook refused: {rejection}");
            let (status, result) = match rejection {
                Rejection::Unsigned => (StatusCode::UNAUTHORIZED, "unsigned"),
                Rejection::BadSignature => (StatusCode::UNAUTHORIZED, "bad_signature"),
                Rejection::IgnoredEvent => (StatusCode::BAD_REQUEST, "ignored_event"),
                Rejection::BadPayload => (StatusCode::BAD_REQUEST, "bad_payload"),
            };
            return answer(status, result);
        }
    };
    if endpoint.receiver.spec.suspend {
        tracing::info!(%receiver, "webhook: the Receiver is suspended; nothing triggered");
        return answer(StatusCode::ACCEPTED, "accepted");
    }
    tracing::debug!(%receiver, images = ?event.images, repositories = ?event.repositories, "webhook accepted");
    let delivery = Delivery { endpoint, event };
    match deliveries.try_send(delivery) {
        Ok(()) => answer(StatusCode::ACCEPTED, "accepted"),
        Err(_) => answer(StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
    }
}

/// Events gathered for one Receiver.
struct Gathering {
    endpoint: Arc<Endpoint>,
    event: Event,
    first: Instant,
    last: Instant,
    /// The Receiver's previous delivery, if within `spacing`.
    previous: Option<Instant>,
    /// The accepted requests gathered.
    requests: u64,
}

impl Gathering {
    /// Hands the gathered event on as one delivery, and counts it.
    fn hand_on(self, merged: &mpsc::UnboundedSender<Delivery>, metrics: &Metrics) {
        metrics.webhook_handed_on(self.requests);
        let _ = merged.send(Delivery {
            endpoint: self.endpoint,
            event: self.event,
        });
    }
}

impl Gathering {
    fn due(&self, timing: Coalescing) -> Instant {
        let gathered = (self.last + timing.quiet).min(self.first + timing.longest);
        match self.previous {
            Some(previous) => gathered.max(previous + timing.spacing),
            None => gathered,
        }
    }
}

/// Merges the deliveries for each Receiver that arrive within `timing` and
/// sends one per Receiver on, until `deliveries` closes or `stop`
/// completes; then what is still gathered goes on at once.
pub async fn coalesce(
    mut deliveries: mpsc::Receiver<Delivery>,
    merged: mpsc::UnboundedSender<Delivery>,
    timing: Coalescing,
    metrics: Arc<Metrics>,
    stop: impl std::future::Future<Output = ()>,
) {
    let mut gathering: HashMap<String, Gathering> = HashMap::new();
    // When each Receiver last had a delivery (kept for `spacing`).
    let mut delivered: HashMap<String, Instant> = HashMap::new();
    tokio::pin!(stop);
    loop {
        let next = gathering.values().map(|g| g.due(timing)).min();
        let wake = async {
            match next {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = &mut stop => {
                // Later requests find the channel closed and get a 503.
                deliveries.close();
                while let Ok(delivery) = deliveries.try_recv() {
                    merge_into(&mut gathering, delivery);
                }
                for (_, g) in gathering.drain() {
                    g.hand_on(&merged, &metrics);
                }
                return;
            }
            delivery = deliveries.recv() => {
                let Some(delivery) = delivery else {
                    for (_, g) in gathering.drain() {
                        g.hand_on(&merged, &metrics);
                    }
                    return;
                };
                let now = Instant::now();
                let key = delivery.endpoint.key();
                match gathering.get_mut(&key) {
                    Some(g) => {
                        merge(&mut g.event, delivery.event);
                        g.last = now;
                        g.requests += 1;
                        // The newest object: a token rotated mid-burst.
                        g.endpoint = delivery.endpoint;
                    }
                    None => {
                        delivered.retain(|_, at| *at + timing.spacing > now);
                        let previous = delivered.get(&key).copied();
                        gathering.insert(key, Gathering {
                            endpoint: delivery.endpoint,
                            event: delivery.event,
                            first: now,
                            last: now,
                            previous,
                            requests: 1,
                        });
                    }
                }
            }
            () = wake => {
                let now = Instant::now();
                let due: Vec<String> = gathering
                    .iter()
                    .filter(|(_, g)| g.due(timing) <= now)
                    .map(|(k, _)| k.clone())
                    .collect();
                for key in due {
                    if let Some(g) = gathering.remove(&key) {
                        g.hand_on(&merged, &metrics);
                        delivered.insert(key, now);
                    }
                }
            }
        }
    }
}

/// Adds a delivery to what is gathered for its Receiver, without timing.
fn merge_into(gathering: &mut HashMap<String, Gathering>, delivery: Delivery) {
    let now = Instant::now();
    match gathering.get_mut(&delivery.endpoint.key()) {
        Some(g) => {
            merge(&mut g.event, delivery.event);
            g.requests += 1;
        }
        None => {
            gathering.insert(
                delivery.endpoint.key(),
                Gathering {
                    endpoint: delivery.endpoint,
                    event: delivery.event,
                    first: now,
                    last: now,
                    previous: None,
                    requests: 1,
                },
            );
        }
    }
}

/// Adds what `more` names to `event`, each name once, at most
/// [`super::MAX_NAMES`] of each kind.
pub(crate) fn merge(event: &mut Event, more: Event) {
    fn add(names: &mut Vec<String>, more: Vec<String>) {
        for name in more {
            if names.contains(&name) {
                continue;
            }
            if names.len() >= super::MAX_NAMES {
                tracing::warn!(
                    "webhook: more than {} names in one burst; {name} and later ones wait for the interval",
                    super::MAX_NAMES
                );
                return;
            }
            names.push(name);
        }
    }
    add(&mut event.images, more.images);
    add(&mut event.repositories, more.repositories);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(name: &str) -> Arc<Endpoint> {
        let receiver: Receiver = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "apps"},
            "spec": {"type": "dockerhub", "secretRef": {"name": "token"}}
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        Arc::new(Endpoint::new(receiver, b"token".to_vec()))
    }

    fn image(name: &str) -> Event {
        Event {
            images: vec![name.to_string()],
            ..Event::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn bursts_for_one_receiver_become_one_delivery() {
        let (tx, rx) = mpsc::channel(1024);
        let (out, mut merged) = mpsc::unbounded_channel();
        let timing = Coalescing::default();
        let metrics = Arc::new(Metrics::default());
        tokio::spawn(coalesce(
            rx,
            out,
            timing,
            Arc::clone(&metrics),
            std::future::pending(),
        ));
        let (a, b) = (endpoint("a"), endpoint("b"));
        // 50 events 10 ms apart for `a`, the same image each time but one;
        // one for `b`.
        for i in 0..50 {
            let name = if i == 20 {
                "docker.io/acme/other"
            } else {
                "docker.io/acme/app"
            };
            tx.send(Delivery {
                endpoint: Arc::clone(&a),
                event: image(name),
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
            if i == 0 {
                tx.send(Delivery {
                    endpoint: Arc::clone(&b),
                    event: image("docker.io/acme/b"),
                })
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let first = merged.recv().await.unwrap_or_else(|| panic!("closed"));
        assert_eq!(first.endpoint.key(), "apps/b");
        let second = merged.recv().await.unwrap_or_else(|| panic!("closed"));
        assert_eq!(second.endpoint.key(), "apps/a");
        assert_eq!(
            second.event.images,
            ["docker.io/acme/app", "docker.io/acme/other"]
        );
        // Nothing more: 50 events, one delivery.
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(merged.try_recv().is_err());
        assert_eq!(
            (
                metrics.webhook_deliveries.get(),
                metrics.webhook_gathered_requests.get()
            ),
            (2, 51)
        );

        // Events that never pause are still delivered within `longest`.
        let started = Instant::now();
        for _ in 0..400 {
            tx.send(Delivery {
                endpoint: Arc::clone(&a),
                event: image("docker.io/acme/app"),
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
            tokio::time::sleep(Duration::from_millis(100)).await;
            if merged.try_recv().is_ok() {
                break;
            }
        }
        let waited = started.elapsed();
        assert!(
            waited >= timing.longest && waited <= timing.longest + Duration::from_millis(200),
            "{waited:?}"
        );

        // A Receiver's next delivery waits for `spacing` after its last.
        tokio::time::sleep(Duration::from_secs(5)).await;
        while merged.try_recv().is_ok() {}
        tx.send(Delivery {
            endpoint: Arc::clone(&a),
            event: image("docker.io/acme/app"),
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let delivered = merged.recv().await.unwrap_or_else(|| panic!("closed"));
        let sent = Instant::now();
        assert_eq!(delivered.endpoint.key(), "apps/a");
        tx.send(Delivery {
            endpoint: Arc::clone(&a),
            event: image("docker.io/acme/app"),
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        merged.recv().await.unwrap_or_else(|| panic!("closed"));
        assert_eq!(sent.elapsed(), timing.spacing);

        // What is gathered when the senders go away is delivered at once.
        tx.send(Delivery {
            endpoint: Arc::clone(&b),
            event: image("docker.io/acme/last"),
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        drop(tx);
        let last = merged.recv().await.unwrap_or_else(|| panic!("closed"));
        assert_eq!(last.event.images, ["docker.io/acme/last"]);
        assert!(merged.recv().await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_hands_on_what_is_gathered_at_once() {
        let (tx, rx) = mpsc::channel(16);
        let (out, mut merged) = mpsc::unbounded_channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(coalesce(
            rx,
            out,
            Coalescing::default(),
            Arc::default(),
            async {
                let _ = stopped.await;
            },
        ));
        tx.send(Delivery {
            endpoint: endpoint("a"),
            event: image("docker.io/acme/app"),
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        tokio::time::sleep(Duration::from_millis(10)).await;
        let started = Instant::now();
        let _ = stop.send(());
        let delivery = merged.recv().await.unwrap_or_else(|| panic!("closed"));
        assert_eq!(delivery.event.images, ["docker.io/acme/app"]);
        assert_eq!(started.elapsed(), Duration::ZERO);
        task.await.unwrap_or_else(|e| panic!("{e}"));
        // Later requests find the channel closed.
        assert!(
            tx.try_send(Delivery {
                endpoint: endpoint("a"),
                event: image("x")
            })
            .is_err()
        );
    }
}
