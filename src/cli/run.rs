//! `hoist run -f PATH... [--once] [--dry-run] [--refresh] [--strict]
//! [--state-dir DIR] [-o json] [--webhook-addr ADDR] [--metrics-addr ADDR]`

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use super::scan::ScanSession;
use super::{CliError, Output};
use crate::git::Git;
use crate::load::ObjectSet;
use crate::metrics::Metrics;
use crate::notify::{self, Notifier};
use crate::pipeline::ports::{Cluster, ClusterSync, ForgeClients, Ports};
use crate::pipeline::{self, AutomationReport, ErrorClass, ErrorReport, RunOptions};
use crate::webhook::server::{self as webhook, Delivery, Endpoint, Endpoints};
use crate::webhook::targets::{Targets, targets};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Files or directories with ImageRepositories, ImagePolicies and
    /// ImageUpdateAutomations (repeatable).
    #[arg(short = 'f', long = "file", value_name = "PATH", required = true)]
    pub files: Vec<PathBuf>,
    /// One pass, then exit. Without it hoist keeps running, waking for the
    /// shortest automation interval, until SIGTERM or Ctrl-C.
    #[arg(long)]
    pub once: bool,
    /// Print the diff each automation would commit; push nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Ask the registries for every repository's tags on every pass,
    /// whatever its interval (as `hoist scan --refresh`).
    #[arg(long)]
    pub refresh: bool,
    /// Warnings are errors (exit 2): unknown or ignored fields in the
    /// files, and markers that do nothing or a Secret not in the files,
    /// found before an automation commits.
    #[arg(long)]
    pub strict: bool,
    /// Refuse every ImagePolicy that reads an ImageRepository of another
    /// namespace, whatever its accessFrom says.
    #[arg(long)]
    pub no_cross_namespace_refs: bool,
    /// Where hoist keeps its state and repository cache [default:
    /// $XDG_STATE_HOME/hoist, else ~/.local/state/hoist].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// The cluster `spec.sync` applies to [default: KUBECONFIG,
    /// ~/.kube/config, or the in-cluster service account]. Only read when
    /// an automation has `spec.sync`.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    /// Serve the Receivers in the files on HOST:PORT: a verified push
    /// re-scans or runs at once instead of at the next interval.
    #[arg(long, value_name = "ADDR")]
    pub webhook_addr: Option<std::net::SocketAddr>,
    /// Serve /metrics, /healthz and /readyz on HOST:PORT.
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Run as if at TIME (RFC 3339, e.g. 2026-12-07T14:00:00Z): update
    /// windows, minimumAge and soak times are judged then, and evidence
    /// is dated then. For rehearsing a schedule.
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
}

/// What one pass does: everything (the interval), or what webhooks named.
#[derive(Debug, Default)]
struct Work {
    /// Repositories scanned from the registry whatever their interval.
    rescan: BTreeSet<String>,
    /// Only these automations run; `None`: all of them.
    automations: Option<BTreeSet<String>>,
}

pub fn run(args: RunArgs) -> Result<(), CliError> {
    if args.once && (args.webhook_addr.is_some() || args.metrics_addr.is_some()) {
        return Err(CliError::invalid(
            "--webhook-addr and --metrics-addr serve while hoist keeps running; drop --once",
        ));
    }
    let at = match &args.at {
        Some(text) => Some(text.parse::<jiff::Timestamp>().map_err(|e| {
            CliError::invalid(format!("--at {text:?} is not an RFC 3339 time: {e}"))
        })?),
        None => None,
    };
    let mut session = ScanSession::open(
        &args.files,
        args.state_dir.clone(),
        args.refresh,
        8,
        args.no_cross_namespace_refs,
        args.strict,
    )?;
    if let Some(at) = at {
        session.options.now = u64::try_from(at.as_second()).ok();
    }
    let endpoints = endpoints(&session.objects)?;
    if !endpoints.is_empty() && args.webhook_addr.is_none() && !args.once {
        super::diag::warning("the files hold Receivers; serve them with --webhook-addr");
    }
    let metrics = Arc::new(Metrics::default());
    if args.metrics_addr.is_some() {
        let metrics = Arc::clone(&metrics);
        session.registry =
            session
                .registry
                .with_observer(Arc::new(move |host: &str, status: u16| {
                    metrics.registry_request(host, status)
                }));
    }
    let syncs = session
        .objects
        .automations
        .iter()
        .any(|a| a.object.spec.sync.is_some());
    let cluster = if syncs && !args.dry_run {
        Some(session.runtime.block_on(super::cluster::access(
            args.kubeconfig.as_deref(),
            args.context.as_deref(),
            None,
        ))?)
    } else {
        None
    };
    let options = RunOptions {
        now: at,
        dry_run: args.dry_run,
        cache: session.state_dir.join("git"),
        push_attempts: 3,
        strict: args.strict,
    };
    let git = Git::default();
    let cluster = cluster.map(|access| ClusterSync { access });
    let ports = Ports {
        git: &git,
        forges: &ForgeClients,
        cluster: cluster.as_ref().map(|c| c as &dyn Cluster),
        records: &session.store,
    };
    let interval = session
        .objects
        .automations
        .iter()
        .filter_map(|a| a.object.spec.interval.parse().ok())
        .min()
        .unwrap_or(Duration::from_secs(300))
        // A zero interval must not spin against registries and remotes.
        .max(Duration::from_secs(1));
    // Listen for SIGTERM and SIGINT from the start: one that arrives during
    // a pass is kept and honoured when the pass is done.
    let mut signals = if args.once {
        None
    } else {
        let _guard = session.runtime.enter();
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(term), Ok(int)) => Some((term, int)),
            (Err(e), _) | (_, Err(e)) => {
                return Err(CliError::runtime(format!("listening for signals: {e}")));
            }
        }
    };
    let mut webhooks = match args.webhook_addr {
        Some(addr) => Some(serve(&session, addr, endpoints, &metrics)?),
        None => None,
    };
    if let Some(addr) = args.metrics_addr {
        let listener = bind(&session, addr, "--metrics-addr")?;
        // The bound address: with port 0 the kernel picked it.
        let bound = listener.local_addr().unwrap_or(addr);
        super::diag::info(&format!("metrics: listening on {bound}"));
        metrics
            .ready
            .store(true, std::sync::atomic::Ordering::Relaxed);
        session
            .runtime
            .spawn(crate::metrics::serve(listener, Arc::clone(&metrics)));
    }
    let notifier = notifier(&session, &metrics)?;
    // What the windows hold is sent before hoist exits, within a bound.
    let finish = |result: Result<(), CliError>| {
        session.runtime.block_on(notifier.flush(FLUSH_WITHIN));
        result
    };
    let mut work = Work::default();
    let mut next = tokio::time::Instant::now();
    loop {
        if work.automations.is_none() {
            next = tokio::time::Instant::now() + interval;
        }
        let outcome = pass(&session, ports, &options, args.output, &work, &notifier);
        let Some((term, int)) = signals.as_mut() else {
            return finish(outcome);
        };
        if let Err(e) = &outcome {
            super::diag::error_with_hint(&e.to_string(), e.hint.as_deref());
        }
        // Sleep until the next pass or a webhook, or stop on a signal.
        work = loop {
            let woke = session.runtime.block_on(async {
                tokio::select! {
                    _ = tokio::time::sleep_until(next) => Wake::Interval,
                    _ = term.recv() => Wake::Stop,
                    _ = int.recv() => Wake::Stop,
                    Some(delivery) = async {
                        match webhooks.as_mut() {
                            Some(w) => w.deliveries.recv().await,
                            None => std::future::pending().await,
                        }
                    } => Wake::Webhook(delivery),
                }
            });
            match woke {
                Wake::Stop => {
                    tracing::info!("stopping");
                    // Events answered 202 get their pass before the exit.
                    let last = match webhooks.as_mut() {
                        Some(w) => last_deliveries(&session, w),
                        None => Vec::new(),
                    };
                    if let Some(work) = webhook_work(&session.objects, &last) {
                        tracing::info!("a last pass for webhooks accepted before the stop");
                        return finish(pass(
                            &session,
                            ports,
                            &options,
                            args.output,
                            &work,
                            &notifier,
                        ));
                    }
                    return finish(Ok(()));
                }
                Wake::Interval => break Work::default(),
                Wake::Webhook(first) => {
                    // Whatever else arrived while the last pass ran joins it.
                    let batch = match webhooks.as_mut() {
                        Some(w) => crate::webhook::batch(first, &mut w.deliveries),
                        None => vec![first],
                    };
                    if let Some(work) = webhook_work(&session.objects, &batch) {
                        break work;
                    }
                }
            }
        };
    }
}

enum Wake {
    Interval,
    Webhook(Delivery),
    Stop,
}

/// The Receivers in the files, each with the token its Secret holds.
fn endpoints(objects: &ObjectSet) -> Result<Vec<Endpoint>, CliError> {
    let mut endpoints = Vec::new();
    for loaded in &objects.receivers {
        let receiver = &loaded.object;
        let namespace = crate::model::namespace_of(&receiver.metadata);
        let key = crate::model::ObjectKey::of(&receiver.metadata).to_string();
        let secret = &receiver.spec.secret_ref.name;
        let found = objects
            .secret(namespace, secret)
            .and_then(|s| s.data.get("token"))
            .map(Vec::as_slice);
        let token = crate::webhook::receiver_token(receiver, found).map_err(|refused| {
            let hint = if refused.problem.is_none() {
                " (not in the files)"
            } else {
                ""
            };
            CliError::invalid(format!(
                "{}: Receiver {key}: {refused}{hint}",
                loaded.origin
            ))
        })?;
        for (i, resource) in receiver.spec.resources.iter().enumerate() {
            let wanted = crate::model::ObjectKey::referred(
                resource.namespace.as_deref(),
                &resource.name,
                namespace,
            )
            .to_string();
            let key_of = |m: &kube::api::ObjectMeta| crate::model::ObjectKey::of(m).to_string();
            let found = match resource.kind.as_str() {
                "ImageRepository" => objects
                    .repositories
                    .iter()
                    .any(|r| key_of(&r.object.metadata) == wanted),
                _ => objects
                    .automations
                    .iter()
                    .any(|a| key_of(&a.object.metadata) == wanted),
            };
            if !found {
                return Err(CliError::invalid(format!(
                    "{}: Receiver {key}: spec.resources[{i}]: {} {wanted} is not in the files",
                    loaded.origin, resource.kind
                )));
            }
        }
        endpoints.push(Endpoint::new(receiver.clone(), token.to_vec()));
    }
    Ok(endpoints)
}

fn bind(
    session: &ScanSession,
    addr: std::net::SocketAddr,
    flag: &str,
) -> Result<tokio::net::TcpListener, CliError> {
    session
        .runtime
        .block_on(tokio::net::TcpListener::bind(addr))
        .map_err(|e| CliError::runtime(format!("{flag} {addr}: {e}")))
}

/// Starts the webhook server and its coalescing; merged deliveries come
/// out of the returned channel.
/// The webhook server's output, and how to stop it.
struct Webhooks {
    /// Merged deliveries; closed once the server has stopped and handed
    /// on everything it accepted.
    deliveries: tokio::sync::mpsc::UnboundedReceiver<Delivery>,
    stop: tokio::sync::watch::Sender<bool>,
}

fn serve(
    session: &ScanSession,
    addr: std::net::SocketAddr,
    endpoints: Vec<Endpoint>,
    metrics: &Arc<Metrics>,
) -> Result<Webhooks, CliError> {
    let listener = bind(session, addr, "--webhook-addr")?;
    let bound = listener.local_addr().unwrap_or(addr);
    let served = Endpoints::default();
    for endpoint in endpoints {
        let key = endpoint.key();
        let path = served.insert(endpoint);
        super::diag::info(&format!(
            "webhook: Receiver {key}: POST http://{bound}{path}"
        ));
    }
    super::diag::info(&format!("webhook: listening on {bound}"));
    let (sender, received) = tokio::sync::mpsc::channel(1024);
    let (merged, deliveries) = tokio::sync::mpsc::unbounded_channel();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|s| *s).await;
    };
    session.runtime.spawn(webhook::serve(
        listener,
        served,
        Arc::clone(metrics),
        sender,
        until(stopped.clone()),
    ));
    session.runtime.spawn(webhook::coalesce(
        received,
        merged,
        webhook::Coalescing::default(),
        Arc::clone(metrics),
        until(stopped),
    ));
    Ok(Webhooks { deliveries, stop })
}

/// Stops the webhook server and returns what it accepted and had not yet
/// handed on.
fn last_deliveries(session: &ScanSession, webhooks: &mut Webhooks) -> Vec<Delivery> {
    let _ = webhooks.stop.send(true);
    session.runtime.block_on(async {
        let mut batch = Vec::new();
        // The coalescer flushes at once and closes the channel.
        while let Ok(Some(delivery)) =
            tokio::time::timeout(Duration::from_secs(5), webhooks.deliveries.recv()).await
        {
            batch.push(delivery);
        }
        batch
    })
}

/// What a batch of webhook deliveries asks of the next pass: re-scan the
/// repositories named and run the automations named or fed by them.
/// `None` when they name nothing hoist knows.
fn webhook_work(objects: &ObjectSet, batch: &[Delivery]) -> Option<Work> {
    let mut wanted = Targets::default();
    for delivery in batch {
        let named = targets(
            &delivery.endpoint.receiver,
            &delivery.event,
            objects.repositories.iter().map(|r| &r.object),
            objects.automations.iter().map(|a| &a.object),
        );
        if named.is_empty() {
            tracing::info!(
                receiver = %delivery.endpoint.key(),
                images = ?delivery.event.images,
                repositories = ?delivery.event.repositories,
                "webhook: names nothing this hoist scans or runs"
            );
        }
        wanted.merge(named);
    }
    if wanted.is_empty() {
        return None;
    }
    let mut automations = wanted.automations;
    for loaded in &objects.automations {
        let automation = &loaded.object;
        let fed = objects.policies.iter().any(|p| {
            pipeline::selects(automation, &p.object)
                && wanted
                    .repositories
                    .contains(&pipeline::repository_of(&p.object))
        });
        if fed {
            automations.insert(crate::model::ObjectKey::of(&automation.metadata).to_string());
        }
    }
    tracing::info!(repositories = ?wanted.repositories, ?automations, "webhook: running now");
    Some(Work {
        rescan: wanted.repositories,
        automations: Some(automations),
    })
}

/// One pass: scan, then every automation (or those `work` names).
/// The longest `hoist run` waits at exit for notifications to go out.
const FLUSH_WITHIN: Duration = Duration::from_secs(30);

/// The files' Alerts and Providers, delivering from now on; none when the
/// files hold no Alert. An Alert whose Provider is not in the files is
/// bad input, as a policy's missing repository is.
fn notifier(session: &ScanSession, metrics: &Arc<Metrics>) -> Result<Notifier, CliError> {
    let objects = &session.objects;
    if objects.alerts.is_empty() {
        return Ok(Notifier::default());
    }
    for alert in &objects.alerts {
        let namespace = crate::model::namespace_of(&alert.object.metadata);
        let provider = &alert.object.spec.provider_ref.name;
        let known = objects.providers.iter().any(|p| {
            crate::model::namespace_of(&p.object.metadata) == namespace
                && p.object.metadata.name.as_deref() == Some(provider.as_str())
        });
        if !known {
            return Err(CliError::invalid(format!(
                "{}: Alert {namespace}/{}: spec.providerRef: Provider {namespace}/{provider} is not in the files",
                alert.origin,
                alert.object.metadata.name.as_deref().unwrap_or_default()
            )));
        }
    }
    let secret =
        |namespace: &str, name: &str| objects.secret(namespace, name).map(|s| s.data.clone());
    let alerts: Vec<&crate::api::Alert> = objects.alerts.iter().map(|a| &a.object).collect();
    let providers: Vec<&crate::api::Provider> =
        objects.providers.iter().map(|p| &p.object).collect();
    let (routes, _) = notify::routes(&alerts, &providers, &secret);
    for (key, channel) in &routes.providers {
        if let Err(why) = &channel.target {
            let origin = objects
                .providers
                .iter()
                .find(|p| crate::model::ObjectKey::of(&p.object.metadata).to_string() == *key)
                .map(|p| p.origin.to_string())
                .unwrap_or_default();
            return Err(CliError::invalid(format!(
                "{origin}: Provider {key}: {why}"
            )));
        }
    }
    let _runtime = session.runtime.enter();
    Ok(Notifier::start(
        routes,
        Arc::new(notify::LogReporter),
        Some(Arc::clone(metrics)),
    ))
}

/// Hands a pass's events to the notifier: a policy's new latest tag
/// (judged against the last one told of, kept in the store), a failed
/// scan, and what each automation did.
fn notify_pass(
    session: &ScanSession,
    scan: &pipeline::ScanReport,
    reports: &[AutomationReport],
    notifier: &Notifier,
) {
    if !notifier.is_running() {
        return;
    }
    let objects = &session.objects;
    let labels = |object: &str| -> std::collections::BTreeMap<String, String> {
        let (kind, key) = object.split_once(' ').unwrap_or_default();
        let of = |m: &kube::api::ObjectMeta| {
            (crate::model::ObjectKey::of(m).to_string() == key)
                .then(|| m.labels.clone().unwrap_or_default())
        };
        match kind {
            "ImagePolicy" => objects.policies.iter().find_map(|p| of(&p.object.metadata)),
            "ImageRepository" => objects
                .repositories
                .iter()
                .find_map(|r| of(&r.object.metadata)),
            _ => objects
                .automations
                .iter()
                .find_map(|a| of(&a.object.metadata)),
        }
        .unwrap_or_default()
    };
    let store = &session.store;
    let previous = |policy: &str| store.announced(policy).ok().flatten();
    let now = jiff::Timestamp::now();
    let mut events = notify::events::of_scan(scan, &previous, &labels, now);
    for event in &events {
        if let (notify::Reason::NewLatestTag, Some(tag)) = (event.reason, event.metadata.get("tag"))
            && let Err(e) = store.put_announced(&format!("{}/{}", event.namespace, event.name), tag)
        {
            tracing::warn!("{e}");
        }
    }
    for report in reports {
        let labels = labels(&format!("ImageUpdateAutomation {}", report.automation));
        events.extend(notify::events::of_automation(report, &labels, now));
    }
    for event in events {
        notifier.emit(event);
    }
}

fn pass(
    session: &ScanSession,
    ports: Ports,
    options: &RunOptions,
    output: Output,
    work: &Work,
    notifier: &Notifier,
) -> Result<(), CliError> {
    let started = std::time::Instant::now();
    let scan = session.scan_with(&work.rescan)?;
    let scan_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let selected;
    let objects = match &work.automations {
        None => &session.objects,
        Some(keys) => {
            let mut only = session.objects.clone();
            only.automations.retain(|a| {
                keys.contains(&crate::model::ObjectKey::of(&a.object.metadata).to_string())
            });
            selected = only;
            &selected
        }
    };
    let mut reports = session
        .runtime
        .block_on(pipeline::run_automations(objects, &scan, ports, options));
    for r in &mut reports {
        r.timings.scan_ms = scan_ms;
    }
    if !options.dry_run {
        notify_pass(session, &scan, &reports, notifier);
    }
    let text = match output {
        Output::Json => {
            // Text mode printed these on stderr at load; JSON carries them
            // with the automation they concern, before its own.
            for (r, loaded) in reports.iter_mut().zip(&objects.automations) {
                let mut loader = super::warnings_about(objects, &concerning(objects, loaded));
                loader.append(&mut r.warnings);
                r.warnings = loader;
            }
            let mut json = serde_json::to_string_pretty(&reports)
                .map_err(|e| CliError::runtime(e.to_string()))?;
            json.push('\n');
            json
        }
        Output::Text => reports.iter().map(describe).collect(),
    };
    std::io::stdout()
        .write_all(text.as_bytes())
        .map_err(|e| CliError::runtime(format!("writing to stdout: {e}")))?;
    let failed: Vec<(&str, &ErrorReport)> = reports
        .iter()
        .filter_map(|r| Some((r.automation.as_str(), r.error.as_ref()?)))
        .collect();
    // Each error once, on stderr: a repository's failure that an
    // automation reports (its policy has no latest tag) is printed with it.
    for failure in &scan.failures {
        let message = failure.to_string();
        if !failed.iter().any(|(_, e)| e.message.contains(&message)) {
            super::diag::error(&message);
        }
    }
    if let Some((automation, last)) = failed.last() {
        for (automation, e) in &failed[..failed.len() - 1] {
            super::diag::error(&format!(
                "ImageUpdateAutomation {automation}: {}",
                e.message
            ));
        }
        let message = format!("ImageUpdateAutomation {automation}: {}", last.message);
        // A spec that cannot work is bad input, as at load time.
        return Err(
            if failed.iter().any(|(_, e)| e.class == ErrorClass::Stalled) {
                CliError::invalid(message)
            } else {
                CliError::runtime(message)
            },
        );
    }
    if !scan.failures.is_empty() {
        return Err(CliError::runtime(format!(
            "{} repositories could not be scanned",
            scan.failures.len()
        )));
    }
    Ok(())
}

/// The objects an automation's report speaks for (`Kind ns/name`): the
/// automation, the policies it selects and their repositories.
fn concerning(
    objects: &ObjectSet,
    loaded: &crate::load::Loaded<crate::api::ImageUpdateAutomation>,
) -> Vec<String> {
    let automation = &loaded.object;
    let mut keys = vec![format!(
        "ImageUpdateAutomation {}",
        crate::model::ObjectKey::of(&automation.metadata).to_string()
    )];
    for p in &objects.policies {
        if pipeline::selects(automation, &p.object) {
            keys.push(format!(
                "ImagePolicy {}",
                crate::model::ObjectKey::of(&p.object.metadata)
            ));
            keys.push(format!(
                "ImageRepository {}",
                pipeline::repository_of(&p.object)
            ));
        }
    }
    keys
}

fn describe(r: &AutomationReport) -> String {
    let mut text = String::new();
    for w in &r.warnings {
        text.push_str(&format!(
            "{}: warning: {}\n",
            r.automation,
            super::printable(w)
        ));
    }
    // An error is not repeated here: it goes to stderr, once.
    match (&r.error, &r.commit, &r.diff) {
        (_, Some(commit), _) => text.push_str(&format!(
            "{}: pushed {} to {} ({} change{})\n",
            r.automation,
            &commit[..commit.len().min(12)],
            r.branch,
            r.changes.len(),
            if r.changes.len() == 1 { "" } else { "s" }
        )),
        (_, None, Some(diff)) => text.push_str(&format!(
            "{}: would commit {} change(s) to {}:\n{diff}",
            r.automation,
            r.changes.len(),
            r.branch
        )),
        (Some(_), None, None) => {}
        (None, None, None) => text.push_str(&format!("{}: up to date\n", r.automation)),
    }
    if let Some(sync) = &r.sync {
        let changed = sync
            .report
            .applied
            .iter()
            .filter(|a| a.action != crate::sync::Action::Unchanged)
            .count();
        text.push_str(&format!(
            "{}: synced {}: {} object{}, {changed} changed, {} pruned\n",
            r.automation,
            &sync.revision[..sync.revision.len().min(12)],
            sync.report.applied.len(),
            if sync.report.applied.len() == 1 {
                ""
            } else {
                "s"
            },
            sync.report.pruned.len()
        ));
    }
    if let Some(pull) = &r.pull_request {
        text.push_str(&format!(
            "{}: pull request {} {}\n",
            r.automation, pull.pull_request, pull.action
        ));
    }
    text
}
