//! The events a run's reports hold: pure, so that `hoist run` and the
//! controller tell the same story of the same run.

use std::collections::BTreeMap;

use super::event::{Event, Reason};
use crate::forge::Action;
use crate::pipeline::{AutomationReport, ScanReport};

fn split(key: &str) -> (String, String) {
    match key.split_once('/') {
        Some((ns, name)) => (ns.to_string(), name.to_string()),
        None => ("default".to_string(), key.to_string()),
    }
}

fn event(
    reason: Reason,
    kind: &'static str,
    key: &str,
    labels: &BTreeMap<String, String>,
    message: String,
    metadata: BTreeMap<String, String>,
    at: jiff::Timestamp,
) -> Event {
    let (namespace, name) = split(key);
    Event {
        reason,
        kind,
        namespace,
        name,
        labels: labels.clone(),
        message,
        metadata,
        at,
    }
}

/// An automation run's events: its push, what it did to its pull
/// request, a failed sync, a rollback. `labels`: the automation's.
pub fn of_automation(
    report: &AutomationReport,
    labels: &BTreeMap<String, String>,
    at: jiff::Timestamp,
) -> Vec<Event> {
    const KIND: &str = "ImageUpdateAutomation";
    let mut events = Vec::new();
    let key = report.automation.as_str();
    if let Some(commit) = &report.commit {
        let updates: Vec<String> = report
            .changes
            .iter()
            .map(|c| {
                // A full image reference names its image already.
                if c.old.starts_with(&c.image) {
                    format!("{} → {}", c.old, c.new)
                } else {
                    format!("{}: {} → {}", c.image, c.old, c.new)
                }
            })
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let short: String = commit.chars().take(12).collect();
        let mut message = format!(
            "pushed commit {short} to branch {} ({} change{})",
            report.branch,
            report.changes.len(),
            if report.changes.len() == 1 { "" } else { "s" }
        );
        for update in updates.iter().take(20) {
            message.push_str(&format!("\n- {update}"));
        }
        let metadata = BTreeMap::from([
            ("revision".to_string(), commit.clone()),
            ("branch".to_string(), report.branch.clone()),
        ]);
        events.push(event(
            Reason::Pushed,
            KIND,
            key,
            labels,
            message,
            metadata,
            at,
        ));
    }
    if let Some(outcome) = &report.pull_request {
        let reason = match outcome.action {
            Action::Opened => Some(Reason::PullRequestOpened),
            Action::Updated => Some(Reason::PullRequestUpdated),
            Action::Closed => Some(Reason::PullRequestClosed),
            Action::Unchanged => None,
        };
        if let Some(reason) = reason {
            let pull = &outcome.pull_request;
            let verb = match outcome.action {
                Action::Opened => "opened",
                Action::Updated => "updated",
                _ => "closed: the base branch has every change of",
            };
            let message = format!("{verb} pull request #{} {}", pull.number, pull.url);
            let mut metadata = BTreeMap::from([
                ("pullRequest".to_string(), pull.url.clone()),
                ("branch".to_string(), report.branch.clone()),
            ]);
            if let Some(commit) = &report.commit {
                metadata.insert("revision".to_string(), commit.clone());
            }
            events.push(event(reason, KIND, key, labels, message, metadata, at));
        }
    }
    if let Some(synced) = &report.sync
        && let Some(error) = &synced.report.error
    {
        let metadata = BTreeMap::from([("revision".to_string(), synced.revision.clone())]);
        events.push(event(
            Reason::SyncFailed,
            KIND,
            key,
            labels,
            format!("sync of {} failed: {error}", short(&synced.revision)),
            metadata,
            at,
        ));
    }
    if let Some(rollback) = &report.rollback {
        let mut message = format!("rolled back: {}", rollback.reason);
        for rejected in &rollback.rejected {
            message.push_str(&format!(
                "\n- {} rejects {}{}",
                rejected.policy,
                rejected.tag,
                rejected
                    .restored
                    .as_ref()
                    .map(|t| format!(", back to {t}"))
                    .unwrap_or_default()
            ));
        }
        let mut metadata = BTreeMap::from([("branch".to_string(), rollback.branch.clone())]);
        if let Some(commit) = &rollback.commit {
            metadata.insert("revision".to_string(), commit.clone());
        }
        if let Some(pull) = &rollback.pull_request {
            metadata.insert("pullRequest".to_string(), pull.pull_request.url.clone());
        }
        events.push(event(
            Reason::RolledBack,
            KIND,
            key,
            labels,
            message,
            metadata,
            at,
        ));
    }
    events
}

fn short(revision: &str) -> String {
    revision.chars().take(12).collect()
}

/// A policy's new latest tag: `previous` is the tag it had before (the
/// last one told of), if any.
#[allow(clippy::too_many_arguments)]
pub fn new_latest_tag(
    policy: &str,
    image: &str,
    tag: &str,
    digest: Option<&str>,
    previous: Option<&str>,
    labels: &BTreeMap<String, String>,
    at: jiff::Timestamp,
) -> Event {
    let message = match previous {
        Some(old) => {
            format!("Latest image tag for {image} resolved to {tag} (previously {image}:{old})")
        }
        None => format!("Latest image tag for {image} resolved to {tag}"),
    };
    let mut metadata = BTreeMap::from([
        ("image".to_string(), image.to_string()),
        ("tag".to_string(), tag.to_string()),
    ]);
    if let Some(digest) = digest {
        metadata.insert("digest".to_string(), digest.to_string());
    }
    if let Some(old) = previous {
        metadata.insert("previousTag".to_string(), old.to_string());
    }
    event(
        Reason::NewLatestTag,
        "ImagePolicy",
        policy,
        labels,
        message,
        metadata,
        at,
    )
}

/// A repository that could not be scanned.
pub fn scan_failed(
    repository: &str,
    image: &str,
    error: String,
    labels: &BTreeMap<String, String>,
    at: jiff::Timestamp,
) -> Event {
    let metadata = BTreeMap::from([("image".to_string(), image.to_string())]);
    event(
        Reason::ScanFailed,
        "ImageRepository",
        repository,
        labels,
        error,
        metadata,
        at,
    )
}

/// A scan's events: each policy whose latest tag is not `previous`'s
/// (NewLatestTag), each repository that could not be scanned
/// (ScanFailed). `labels` gives an object's labels by `Kind ns/name`.
pub fn of_scan(
    report: &ScanReport,
    previous: &dyn Fn(&str) -> Option<String>,
    labels: &dyn Fn(&str) -> BTreeMap<String, String>,
    at: jiff::Timestamp,
) -> Vec<Event> {
    let mut events = Vec::new();
    for policy in &report.policies {
        let Some(tag) = &policy.tag else { continue };
        let before = previous(&policy.policy);
        if before.as_deref() == Some(tag.as_str()) {
            continue;
        }
        events.push(new_latest_tag(
            &policy.policy,
            &policy.image,
            tag.as_str(),
            policy.digest.as_deref(),
            before.as_deref(),
            &labels(&format!("ImagePolicy {}", policy.policy)),
            at,
        ));
    }
    for scanned in &report.repositories {
        if let Err(error) = &scanned.outcome {
            events.push(scan_failed(
                &scanned.repository,
                &scanned.image,
                error.to_string(),
                &labels(&format!("ImageRepository {}", scanned.repository)),
                at,
            ));
        }
    }
    events
}
