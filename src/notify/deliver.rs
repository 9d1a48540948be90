//! Delivery: events in, messages out, off the pipeline's path. `emit`
//! never waits (a full queue drops the event and counts it); one worker
//! per Provider batches by window, keeps at least [`MIN_GAP`] between
//! its messages (Slack's documented webhook limit is one a second), and
//! retries a failed delivery with backoff. A Provider whose delivery
//! failed is reported (status, metric) until one succeeds.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::alert::Rule;
use super::batch::{Batcher, Message};
use super::event::Event;
use super::payload::{self, Target};

/// Events waiting for the dispatcher, and per Provider for its worker.
const QUEUE: usize = 1024;
/// The least time between two messages to one Provider.
pub const MIN_GAP: Duration = Duration::from_secs(1);
/// Tries of one message, the first included.
const ATTEMPTS: u32 = 5;
/// An event just like one sent this recently is not sent again (Flux's
/// notification-controller waits as long): a registry down for an hour
/// is not sixty messages.
const REPEAT: Duration = Duration::from_secs(5 * 60);
/// The most recent events remembered for that.
const REMEMBERED: usize = 10_000;
/// The longest a `Retry-After` is waited.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// A Provider as its worker needs it.
#[derive(Clone, Debug)]
pub struct Channel {
    /// The resolved Provider, or why it cannot be delivered to (its
    /// Secret is missing, its address is not a URL).
    pub target: Result<Target, String>,
    pub window: Duration,
    pub timeout: Duration,
    pub suspend: bool,
}

/// The Alerts and Providers in force.
#[derive(Clone, Debug, Default)]
pub struct Routes {
    pub rules: Vec<Rule>,
    /// By `ns/name`.
    pub providers: BTreeMap<String, Channel>,
}

/// Where a Provider's health goes: its status (the controller), a log
/// line (`hoist run`).
pub trait Reporter: Send + Sync {
    /// `Ok` after a delivery, `Err` after one failed for good.
    fn report(&self, provider: &str, outcome: Result<(), String>);
}

/// A reporter that logs.
pub struct LogReporter;

impl Reporter for LogReporter {
    fn report(&self, provider: &str, outcome: Result<(), String>) {
        if let Err(message) = outcome {
            tracing::warn!(provider, "notification not delivered: {message}");
        }
    }
}

enum Command {
    Event(Box<Event>),
    Routes(Box<Routes>),
    /// Send what every window holds now, then answer.
    Flush(oneshot::Sender<()>),
}

/// The handle the drivers emit through; cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    tx: Option<mpsc::Sender<Command>>,
    metrics: Option<Arc<crate::metrics::Metrics>>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("running", &self.tx.is_some())
            .finish()
    }
}

impl Default for Notifier {
    /// Sends nothing: no Alert is configured.
    fn default() -> Notifier {
        Notifier {
            tx: None,
            metrics: None,
        }
    }
}

impl Notifier {
    /// Starts the dispatcher on the current runtime.
    pub fn start(
        routes: Routes,
        reporter: Arc<dyn Reporter>,
        metrics: Option<Arc<crate::metrics::Metrics>>,
    ) -> Notifier {
        let (tx, rx) = mpsc::channel(QUEUE);
        crate::install_crypto_provider();
        let http = reqwest::Client::builder()
            .user_agent(concat!("hoist/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        tokio::spawn(dispatch(rx, routes, reporter, metrics.clone(), http));
        Notifier {
            tx: Some(tx),
            metrics,
        }
    }

    /// Whether anything listens: without Alerts there is nothing to do.
    pub fn is_running(&self) -> bool {
        self.tx.is_some()
    }

    /// Hands an event on without waiting: a full queue drops it.
    pub fn emit(&self, event: Event) {
        let Some(tx) = &self.tx else { return };
        if let Err(mpsc::error::TrySendError::Full(_)) =
            tx.try_send(Command::Event(Box::new(event)))
        {
            tracing::warn!("the notification queue is full: an event was dropped");
            if let Some(metrics) = &self.metrics {
                metrics.notification("", "dropped");
            }
        }
    }

    /// New Alerts and Providers (the controller's watch, a reload).
    pub async fn set_routes(&self, routes: Routes) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Command::Routes(Box::new(routes))).await;
        }
    }

    /// Sends what the windows hold and waits for it, at most `within`:
    /// what `hoist run --once` does before it exits.
    pub async fn flush(&self, within: Duration) {
        let Some(tx) = &self.tx else { return };
        let (done, wait) = oneshot::channel();
        let sent = tokio::time::timeout(within, async {
            if tx.send(Command::Flush(done)).await.is_ok() {
                let _ = wait.await;
            }
        })
        .await;
        if sent.is_err() {
            tracing::warn!("notifications still pending after {within:?} were left unsent");
        }
    }
}

enum Work {
    Event {
        event: Box<Event>,
        summary: Option<String>,
        channel: Arc<Channel>,
    },
    Flush(oneshot::Sender<()>),
}

async fn dispatch(
    mut rx: mpsc::Receiver<Command>,
    mut routes: Routes,
    reporter: Arc<dyn Reporter>,
    metrics: Option<Arc<crate::metrics::Metrics>>,
    http: reqwest::Client,
) {
    let mut workers: HashMap<String, mpsc::Sender<Work>> = HashMap::new();
    let mut channels: HashMap<String, Arc<Channel>> = HashMap::new();
    while let Some(command) = rx.recv().await {
        match command {
            Command::Routes(new) => {
                routes = *new;
                channels.clear();
                // A Provider that is gone takes its worker with it (what
                // its windows hold is sent as the worker ends).
                workers.retain(|provider, _| routes.providers.contains_key(provider));
            }
            Command::Flush(done) => {
                let mut waits = Vec::new();
                for worker in workers.values() {
                    let (tx, wait) = oneshot::channel();
                    if worker.send(Work::Flush(tx)).await.is_ok() {
                        waits.push(wait);
                    }
                }
                for wait in waits {
                    let _ = wait.await;
                }
                let _ = done.send(());
            }
            Command::Event(event) => {
                for rule in routes.rules.iter().filter(|r| r.admits(&event)) {
                    let Some(settings) = routes.providers.get(&rule.provider) else {
                        tracing::warn!(alert = %rule.alert, provider = %rule.provider, "the Alert's Provider does not exist");
                        continue;
                    };
                    let channel = channels
                        .entry(rule.provider.clone())
                        .or_insert_with(|| Arc::new(settings.clone()))
                        .clone();
                    let mut event = event.clone();
                    for (k, v) in &rule.metadata {
                        event.metadata.entry(k.clone()).or_insert_with(|| v.clone());
                    }
                    let worker = workers.entry(rule.provider.clone()).or_insert_with(|| {
                        let (tx, rx) = mpsc::channel(QUEUE);
                        tokio::spawn(work(
                            rule.provider.clone(),
                            rx,
                            Arc::clone(&reporter),
                            metrics.clone(),
                            http.clone(),
                        ));
                        tx
                    });
                    let item = Work::Event {
                        event,
                        summary: rule.summary.clone(),
                        channel,
                    };
                    if worker.try_send(item).is_err() {
                        tracing::warn!(provider = %rule.provider, "the Provider's queue is full: an event was dropped");
                        if let Some(metrics) = &metrics {
                            metrics.notification(&rule.provider, "dropped");
                        }
                    }
                }
            }
        }
    }
}

/// One Provider's worker: its windows, its pace, its retries.
async fn work(
    provider: String,
    mut rx: mpsc::Receiver<Work>,
    reporter: Arc<dyn Reporter>,
    metrics: Option<Arc<crate::metrics::Metrics>>,
    http: reqwest::Client,
) {
    let mut batcher: Option<Batcher> = None;
    let mut channel: Option<Arc<Channel>> = None;
    let mut last_sent: Option<Instant> = None;
    let mut recent: HashMap<u64, Instant> = HashMap::new();
    loop {
        let due = batcher.as_ref().and_then(Batcher::next_due);
        let next = match due {
            Some(at) => tokio::select! {
                work = rx.recv() => Next::Work(work),
                () = tokio::time::sleep_until(at) => Next::Due,
            },
            None => Next::Work(rx.recv().await),
        };
        let mut ready: Vec<Message> = Vec::new();
        let mut flushed = None;
        let mut closing = false;
        match next {
            Next::Due => {}
            Next::Work(Some(Work::Event {
                event,
                summary,
                channel: settings,
            })) => {
                let batch = batcher.get_or_insert_with(|| {
                    Batcher::new(
                        settings.window,
                        settings
                            .target
                            .as_ref()
                            .is_ok_and(|t| t.type_.is_commit_status()),
                    )
                });
                batch.set_window(settings.window);
                let now = Instant::now();
                if repeated(&mut recent, &event, now) {
                    tracing::debug!(provider, object = %event.object(), "the same event was sent less than 5 minutes ago");
                } else {
                    ready.extend(batch.push(*event, summary, now));
                }
                channel = Some(settings);
            }
            Next::Work(Some(Work::Flush(done))) => {
                if let Some(batch) = batcher.as_mut() {
                    ready.extend(batch.drain());
                }
                flushed = Some(done);
            }
            // The dispatcher is gone (the process ends): what is open
            // goes now.
            Next::Work(None) => {
                if let Some(batch) = batcher.as_mut() {
                    ready.extend(batch.drain());
                }
                closing = true;
            }
        }
        if let Some(batch) = batcher.as_mut() {
            ready.extend(batch.due(Instant::now()));
        }
        if let Some(settings) = &channel {
            for message in ready {
                if let Some(last) = last_sent {
                    tokio::time::sleep_until(last + MIN_GAP).await;
                }
                let (result, outcome) = match deliver(&http, settings, &message).await {
                    Delivered::Sent => ("delivered", Ok(())),
                    Delivered::Nothing | Delivered::Suspended => continue,
                    Delivered::Invalid(m) => ("invalid", Err(m)),
                    Delivered::Refused(m) => ("refused", Err(m)),
                    Delivered::Failed(m) => ("failed", Err(m)),
                };
                last_sent = Some(Instant::now());
                if let Some(metrics) = &metrics {
                    metrics.notification(&provider, result);
                }
                reporter.report(&provider, outcome);
            }
        }
        if let Some(done) = flushed {
            let _ = done.send(());
        }
        if closing {
            return;
        }
    }
}

/// Whether an event like `event` (object, reason, message) came within
/// [`REPEAT`]; remembers it.
fn repeated(recent: &mut HashMap<u64, Instant>, event: &Event, now: Instant) -> bool {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (event.object(), event.reason, &event.message).hash(&mut hasher);
    let key = hasher.finish();
    if recent.len() >= REMEMBERED {
        recent.retain(|_, at| now.duration_since(*at) < REPEAT);
        if recent.len() >= REMEMBERED {
            recent.clear();
        }
    }
    match recent.insert(key, now) {
        Some(at) if now.duration_since(at) < REPEAT => {
            // The first sighting keeps counting, not the repeat.
            recent.insert(key, at);
            true
        }
        _ => false,
    }
}

enum Next {
    Work(Option<Work>),
    Due,
}

enum Delivered {
    Sent,
    /// The message needs no request (a commit status without a commit).
    Nothing,
    Suspended,
    Invalid(String),
    /// A 4xx other than 408 and 429: sending again would not help.
    Refused(String),
    /// Every attempt failed.
    Failed(String),
}

async fn deliver(http: &reqwest::Client, channel: &Channel, message: &Message) -> Delivered {
    if channel.suspend {
        return Delivered::Suspended;
    }
    let target = match &channel.target {
        Ok(target) => target,
        Err(why) => return Delivered::Invalid(why.clone()),
    };
    let outgoing = match payload::request(target, message) {
        Ok(Some(outgoing)) => outgoing,
        Ok(None) => return Delivered::Nothing,
        Err(why) => return Delivered::Invalid(why),
    };
    // The origin only: a webhook URL's path is its secret.
    let origin = outgoing.url.origin().ascii_serialization();
    // A webhook URL's path and query are its secret, and a service may
    // echo them ("Cannot POST /services/…"): never in what is reported.
    let mut secrets = crate::redact::Secrets::new();
    if outgoing.url.path().len() > 1 {
        secrets.add(outgoing.url.path());
    }
    if let Some(query) = outgoing.url.query() {
        secrets.add(query);
    }
    for (name, value) in &outgoing.headers {
        if name.eq_ignore_ascii_case("authorization") || name.eq_ignore_ascii_case("private-token")
        {
            secrets.add(value);
            if let Some((_, credential)) = value.split_once(' ') {
                secrets.add(credential);
            }
        }
    }
    if let Ok(target) = &channel.target
        && let Some(token) = &target.token
    {
        secrets.add(token);
    }
    let mut last = String::new();
    for attempt in 1..=ATTEMPTS {
        let mut request = http
            .post(outgoing.url.clone())
            .timeout(channel.timeout)
            .body(outgoing.body.clone());
        for (k, v) in &outgoing.headers {
            request = request.header(k.as_str(), v.as_str());
        }
        let wait = match request.send().await {
            Ok(response) => {
                let status = response.status();
                if status.is_success() {
                    return Delivered::Sent;
                }
                let retry_after = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER));
                let excerpt = excerpt(response, &secrets).await;
                last = format!("POST {origin}/…: HTTP {}{excerpt}", status.as_u16());
                let code = status.as_u16();
                if (400..500).contains(&code) && code != 408 && code != 429 {
                    return Delivered::Refused(last);
                }
                retry_after
            }
            Err(e) => {
                last = format!(
                    "POST {origin}/…: {}",
                    if e.is_timeout() {
                        "timed out"
                    } else if e.is_connect() {
                        "cannot connect"
                    } else {
                        "request failed"
                    }
                );
                None
            }
        };
        if attempt < ATTEMPTS {
            let backoff = Duration::from_secs(1 << (attempt - 1));
            tokio::time::sleep(wait.unwrap_or(backoff)).await;
        }
    }
    Delivered::Failed(format!("{last} (after {ATTEMPTS} tries)"))
}

/// The start of an error answer, read to 1 KiB at most.
async fn excerpt(mut response: reqwest::Response, secrets: &crate::redact::Secrets) -> String {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        body.extend_from_slice(&chunk);
        if body.len() >= 1024 {
            body.truncate(1024);
            break;
        }
    }
    let text: String = String::from_utf8_lossy(&body)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if text.is_empty() {
        String::new()
    } else {
        format!(
            ": {}",
            crate::redact::server_text(&text, secrets)
                .chars()
                .take(200)
                .collect::<String>()
        )
    }
}
