//! ImageUpdateAutomations: after a scan, rewrite each automation's
//! repository with its policies' latest refs, commit, and push without
//! overwriting anyone's commits.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde::Serialize;

use super::scan::{ScanReport, object_key};
use crate::api::{ImageRef, ImageUpdateAutomation};
use crate::git::{Branch, Git, GitCredentials, Push, Signature};
use crate::load::ObjectSet;
use crate::message;
use crate::model::{Change, ChangeSet};
use crate::rewrite::{Refs, rewrite_tree};

/// How automations run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Rewrite and report, but commit and push nothing.
    pub dry_run: bool,
    /// Where checkouts are cached (under the state directory).
    pub cache: PathBuf,
    /// Fetch-rewrite-commit-push rounds when the branch keeps moving.
    pub push_attempts: u32,
    /// The async runtime forge clients block on (from outside it).
    pub runtime: Option<tokio::runtime::Handle>,
}

/// What one automation did. `-o json` prints these.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AutomationReport {
    /// `ns/name` of the ImageUpdateAutomation.
    pub automation: String,
    /// The branch pushed to (or that would be).
    pub branch: String,
    /// The commit pushed, if any.
    pub commit: Option<String>,
    /// Paths relative to the repository root.
    pub changes: Vec<Change>,
    /// Problems with single files or markers that did not stop the run.
    pub warnings: Vec<String>,
    /// Why the automation failed; nothing was pushed then.
    pub error: Option<String>,
    /// The pull request hoist keeps for this automation, if it uses one.
    pub pull_request: Option<crate::forge::PullRequest>,
    /// Milliseconds spent in each stage, over all push attempts.
    pub timings: Timings,
    /// With `--dry-run`: the unified diff that would be committed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
}

/// Where an automation's time went.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Timings {
    /// The scan of every repository of the run (shared by all automations).
    pub scan_ms: u64,
    pub checkout_ms: u64,
    pub rewrite_ms: u64,
    pub commit_ms: u64,
    pub push_ms: u64,
}

fn elapsed_ms(since: std::time::Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Runs every ImageUpdateAutomation against the refs a scan selected.
/// One failing automation does not stop the others.
pub fn run_automations(
    objects: &ObjectSet,
    scan: &ScanReport,
    git: &Git,
    options: &RunOptions,
) -> Vec<AutomationReport> {
    objects
        .automations
        .iter()
        .map(|a| {
            let automation = &a.object;
            let key = object_key(
                automation.metadata.namespace.as_deref(),
                automation.metadata.name.as_deref(),
            );
            let mut report = AutomationReport {
                automation: key.clone(),
                branch: push_branch(automation),
                ..AutomationReport::default()
            };
            if automation.spec.suspend {
                report.warnings.push("suspended; not run".to_string());
                return report;
            }
            if let Err(e) = run_one(automation, &key, objects, scan, git, options, &mut report) {
                report.error = Some(e);
            }
            report
        })
        .collect()
}

fn push_branch(automation: &ImageUpdateAutomation) -> String {
    automation
        .spec
        .git
        .push
        .as_ref()
        .and_then(|p| p.branch.clone())
        .unwrap_or_else(|| automation.spec.git.checkout.reference.branch.clone())
}

/// The latest refs of the policies the automation selects: those in its
/// namespace that match `policySelector` and have a latest tag.
fn refs_for(automation: &ImageUpdateAutomation, objects: &ObjectSet, scan: &ScanReport) -> Refs {
    let namespace = automation
        .metadata
        .namespace
        .as_deref()
        .unwrap_or("default");
    let selector = automation.spec.policy_selector.clone().unwrap_or_default();
    let empty = BTreeMap::new();
    let selected: Vec<String> = objects
        .policies
        .iter()
        .map(|p| &p.object)
        .filter(|p| p.metadata.namespace.as_deref().unwrap_or("default") == namespace)
        .filter(|p| selector.matches(p.metadata.labels.as_ref().unwrap_or(&empty)))
        .map(|p| object_key(p.metadata.namespace.as_deref(), p.metadata.name.as_deref()))
        .collect();
    scan.policies
        .iter()
        .filter(|row| selected.contains(&row.policy))
        .filter_map(|row| {
            let tag = row.tag.as_ref()?;
            Some((
                row.policy.clone(),
                ImageRef {
                    name: row.name.clone(),
                    tag: tag.to_string(),
                    digest: row.digest.clone(),
                },
            ))
        })
        .collect()
}

/// The git to use for an automation: with the credentials of the Secret
/// `spec.git.secretRef` names, when the files hold it (Flux's keys:
/// `username`/`password`, `identity`/`known_hosts`); else the user's own
/// credential helpers and ssh configuration, with a warning.
fn git_for(
    automation: &ImageUpdateAutomation,
    key: &str,
    objects: &ObjectSet,
    git: &Git,
    options: &RunOptions,
    report: &mut AutomationReport,
) -> Result<Git, String> {
    let Some(reference) = &automation.spec.git.secret_ref else {
        return Ok(git.clone());
    };
    let namespace = automation
        .metadata
        .namespace
        .as_deref()
        .unwrap_or("default");
    let Some(secret) = objects.secret(namespace, &reference.name) else {
        report.warnings.push(format!(
            "spec.git.secretRef: Secret {namespace}/{} is not in the files; using git's own credential helpers and ssh configuration",
            reference.name
        ));
        return Ok(git.clone());
    };
    let text = |k: &str| {
        secret.data.get(k).map(|v| {
            String::from_utf8_lossy(v)
                .trim_end_matches('\n')
                .to_string()
        })
    };
    let credentials = GitCredentials {
        username: text("username"),
        password: text("password"),
        identity: secret.data.get("identity").cloned(),
        known_hosts: secret.data.get("known_hosts").cloned(),
    };
    use sha2::Digest;
    let dir = options.cache.join("credentials").join(
        format!("{:x}", sha2::Sha256::digest(key.as_bytes()))
            .get(..16)
            .unwrap_or("automation"),
    );
    git.with_credentials(&credentials, &dir)
        .map_err(|e| e.to_string())
}

/// After hoist's branch holds its change: make sure one pull request from
/// it to the checkout branch is open, with a current title and body.
fn pull_request(
    automation: &ImageUpdateAutomation,
    key: &str,
    objects: &ObjectSet,
    options: &RunOptions,
    changes: &ChangeSet,
    message: &str,
    report: &mut AutomationReport,
) -> Result<(), String> {
    use crate::api::ForgeProvider;
    use crate::forge::{Forge, ForgeRepo, GitHub, GitLab, Gitea, PullRequestSpec};
    let Some(spec) = automation
        .spec
        .git
        .push
        .as_ref()
        .and_then(|p| p.pull_request.as_ref())
    else {
        return Ok(());
    };
    let base = automation.spec.git.checkout.reference.branch.clone();
    if report.branch == base {
        return Err("spec.git.push.pullRequest needs spec.git.push.branch to name a branch other than the checkout branch".to_string());
    }
    let namespace = automation
        .metadata
        .namespace
        .as_deref()
        .unwrap_or("default");
    let variable = match spec.provider {
        ForgeProvider::Github => "GITHUB_TOKEN",
        ForgeProvider::Gitlab => "GITLAB_TOKEN",
        ForgeProvider::Gitea => "GITEA_TOKEN",
    };
    let token = match &spec.secret_ref {
        Some(reference) => objects
            .secret(namespace, &reference.name)
            .and_then(|s| s.data.get("token"))
            .map(|t| String::from_utf8_lossy(t).trim().to_string())
            .ok_or_else(|| format!("spec.git.push.pullRequest.secretRef: Secret {namespace}/{} with key token is not in the files", reference.name))?,
        None => std::env::var(variable).map_err(|_| format!("no forge token: set {variable} or spec.git.push.pullRequest.secretRef"))?,
    };
    let repo = ForgeRepo::from_git_url(&automation.spec.git.url).map_err(|e| e.to_string())?;
    let runtime = options
        .runtime
        .clone()
        .ok_or("no runtime for forge calls")?;
    // The provider's public API for its public host, else the same path on
    // the repository's host (GitHub Enterprise, self-managed GitLab).
    let forge: Box<dyn Forge> = match spec.provider {
        ForgeProvider::Gitlab => {
            let api = spec
                .api_url
                .clone()
                .unwrap_or_else(|| format!("https://{}/api/v4", repo.host));
            Box::new(GitLab::new(&api, &repo, token, runtime).map_err(|e| e.to_string())?)
        }
        ForgeProvider::Gitea => {
            let api = spec
                .api_url
                .clone()
                .unwrap_or_else(|| format!("https://{}/api/v1", repo.host));
            Box::new(Gitea::new(&api, &repo, token, runtime).map_err(|e| e.to_string())?)
        }
        ForgeProvider::Github => {
            let api = spec.api_url.clone().unwrap_or_else(|| {
                if repo.host == "github.com" {
                    "https://api.github.com".to_string()
                } else {
                    format!("https://{}/api/v3", repo.host)
                }
            });
            Box::new(GitHub::new(&api, &repo, token, runtime).map_err(|e| e.to_string())?)
        }
    };
    let title = match spec.title.as_deref().filter(|t| !t.trim().is_empty()) {
        Some(template) => message::render_plain(template, key, changes)?,
        None => message
            .lines()
            .next()
            .unwrap_or("Update images")
            .to_string(),
    };
    let body = match spec.body.as_deref().filter(|t| !t.trim().is_empty()) {
        Some(template) => message::render_plain(template, key, changes)?,
        None => message::pull_request_body(key, changes),
    };
    let pull = forge
        .ensure(&PullRequestSpec {
            head: report.branch.clone(),
            base,
            title,
            body,
            labels: spec.labels.clone(),
        })
        .map_err(|e| e.to_string())?;
    report.pull_request = Some(pull);
    Ok(())
}

/// How to push to a branch hoist owns.
enum Lease {
    /// Push over this commit ("" when the branch does not exist yet).
    Expect(String),
    /// The branch already holds this very change on this very base.
    UpToDate,
}

/// hoist owns `branch`: it rebuilds it from the checkout tip plus its own
/// commit on each run. That is safe only while the branch's tip is hoist's
/// commit for this automation; a commit by anyone else stops hoist.
fn owned_branch_lease(
    git: &Git,
    checkout: &crate::git::Checkout,
    branch: &str,
    key: &str,
    commit: &str,
    author: &Signature,
) -> Result<Lease, String> {
    let Some(head) = git
        .remote_head(checkout, branch)
        .map_err(|e| e.to_string())?
    else {
        return Ok(Lease::Expect(String::new()));
    };
    let tip = git.tip(checkout, branch).map_err(|e| e.to_string())?;
    let trailer = format!("{}: {key}", message::TRAILER);
    // hoist's commit carries its trailer and hoist as committer; an amended
    // or cherry-picked copy names whoever amended it as committer.
    let committer = format!("{} <{}>", author.name, author.email);
    if !tip.message.lines().any(|l| l.trim() == trailer) || tip.committer != committer {
        return Err(format!(
            "branch {branch} has a commit hoist did not make ({} by {}); hoist stops updating it so that work is not lost — merge or delete the branch",
            &tip.id[..tip.id.len().min(12)],
            tip.author
        ));
    }
    let ours = git
        .commit_info(checkout, commit)
        .map_err(|e| e.to_string())?;
    if tip.tree == ours.tree && tip.parent == ours.parent {
        return Ok(Lease::UpToDate);
    }
    Ok(Lease::Expect(head))
}

/// `update.path` as a relative path that stays inside the repository.
fn update_path(automation: &ImageUpdateAutomation) -> Result<PathBuf, String> {
    let path = Path::new(&automation.spec.update.path);
    let mut clean = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => clean.push(part),
            Component::CurDir => {}
            _ => {
                return Err(format!(
                    "spec.update.path {:?} must stay inside the repository",
                    automation.spec.update.path
                ));
            }
        }
    }
    Ok(clean)
}

#[allow(clippy::too_many_arguments)]
fn run_one(
    automation: &ImageUpdateAutomation,
    key: &str,
    objects: &ObjectSet,
    scan: &ScanReport,
    git: &Git,
    options: &RunOptions,
    report: &mut AutomationReport,
) -> Result<(), String> {
    let checkout_branch = &automation.spec.git.checkout.reference.branch;
    let owned = &report.branch != checkout_branch;
    let git = &git_for(automation, key, objects, git, options, report)?;
    let refs = refs_for(automation, objects, scan);
    let relative = update_path(automation)?;
    let branch = Branch {
        url: automation.spec.git.url.clone(),
        name: checkout_branch.clone(),
    };
    let author = Signature {
        name: automation.spec.git.commit.author.name.clone(),
        email: automation.spec.git.commit.author.email.clone(),
    };
    let base_warnings = report.warnings.clone();
    for _ in 0..options.push_attempts.max(1) {
        let started = std::time::Instant::now();
        let checkout = git
            .checkout(&options.cache, &branch)
            .map_err(|e| e.to_string())?;
        report.timings.checkout_ms += elapsed_ms(started);
        let root = checkout.dir.join(&relative);
        // A symlink in the repository must not lead the rewrite out of it.
        let inside = std::fs::canonicalize(&root)
            .ok()
            .zip(std::fs::canonicalize(&checkout.dir).ok())
            .is_some_and(|(r, c)| r.starts_with(&c) && !r.starts_with(c.join(".git")));
        if root.exists() && !inside {
            return Err(format!(
                "spec.update.path {:?} leads out of the repository",
                automation.spec.update.path
            ));
        }
        if !root.is_dir() {
            return Err(format!(
                "spec.update.path {:?} is not a directory in {}",
                automation.spec.update.path, branch.name
            ));
        }
        let started = std::time::Instant::now();
        let rewritten =
            rewrite_tree(&root, &refs, options.dry_run, None).map_err(|e| e.to_string())?;
        report.timings.rewrite_ms += elapsed_ms(started);
        report.warnings = base_warnings.clone();
        report.warnings.extend(rewritten.problems.iter().map(|p| {
            format!(
                "{}:{}:{}: {}",
                relative.join(&p.file).display(),
                p.line,
                p.column,
                p.message
            )
        }));
        report.changes = rewritten
            .changeset
            .changes
            .iter()
            .map(|c| Change {
                file: relative.join(&c.file),
                ..c.clone()
            })
            .collect();
        if report.changes.is_empty() {
            return Ok(());
        }
        if options.dry_run {
            let mut diff = String::new();
            for (file, old, new) in &rewritten.files {
                let name = relative.join(file).display().to_string();
                diff.push_str(
                    &similar::TextDiff::from_lines(old, new)
                        .unified_diff()
                        .header(&format!("a/{name}"), &format!("b/{name}"))
                        .to_string(),
                );
            }
            report.diff = Some(diff);
            return Ok(());
        }
        let changeset = ChangeSet {
            changes: report.changes.clone(),
        };
        let message = match &automation.spec.git.commit.message_template {
            Some(template) if !template.trim().is_empty() => {
                message::render(template, key, &changeset)?
            }
            _ => message::default_message(key, &changeset),
        };
        let started = std::time::Instant::now();
        let committed = git
            .commit(&checkout, &author, &message)
            .map_err(|e| e.to_string())?;
        report.timings.commit_ms += elapsed_ms(started);
        let Some(commit) = committed else {
            return Ok(());
        };
        // Pushing to the checkout branch: on the commit hoist built on.
        // Pushing to a branch of its own: over hoist's previous commit
        // there, and only if nobody else has committed on top.
        let expected = if owned {
            match owned_branch_lease(git, &checkout, &report.branch, key, &commit, &author)? {
                Lease::Expect(head) => head,
                Lease::UpToDate => {
                    return pull_request(
                        automation, key, objects, options, &changeset, &message, report,
                    );
                }
            }
        } else {
            checkout.base.clone()
        };
        let started = std::time::Instant::now();
        let pushed = git
            .push(&checkout, &report.branch, &expected)
            .map_err(|e| e.to_string())?;
        report.timings.push_ms += elapsed_ms(started);
        match pushed {
            Push::Pushed(pushed) => {
                debug_assert_eq!(pushed, commit);
                report.commit = Some(pushed);
                return pull_request(
                    automation, key, objects, options, &changeset, &message, report,
                );
            }
            Push::Rejected(reason) => {
                tracing::info!(
                    automation = key,
                    reason,
                    "the branch moved; fetching and trying again"
                );
            }
        }
    }
    Err(format!(
        "branch {} kept moving during {} attempts; nothing was overwritten, the next run tries again",
        report.branch, options.push_attempts
    ))
}
