//! ImageUpdateAutomations: after a scan, rewrite each automation's
//! repository with its policies' latest refs, commit, and push without
//! overwriting anyone's commits.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde::Serialize;

use super::branch::{Facts, Step, step};
use super::error::{AutomationError, ErrorReport};
use super::ports::{Ports, Repository};
use super::scan::ScanReport;
use crate::api::{ImageRef, ImageUpdateAutomation, PullRequestSpec as PullRequestFields};
use crate::forge::{self, Forge, ForgeRepo, Outcome, PullRequestRecord, PullRequestSpec};
use crate::git::{Branch, Checkout, Commit, GitCredentials, Push, Signature};
use crate::load::ObjectSet;
use crate::message;
use crate::model::{Change, ChangeSet};
use crate::rewrite::{Refs, rewrite_tree};

/// How automations run.
#[derive(Clone)]
pub struct RunOptions {
    /// Rewrite and report, but commit and push nothing.
    pub dry_run: bool,
    /// Where checkouts are cached (under the state directory).
    pub cache: PathBuf,
    /// Fetch-rewrite-commit-push rounds when the branch keeps moving.
    pub push_attempts: u32,
    /// The clock: the time update windows are judged at (default: now);
    /// tests set it.
    pub now: Option<jiff::Timestamp>,
    /// Warnings (a marker that does nothing, a Secret not in the files)
    /// fail the automation before it commits (`hoist run --strict`).
    pub strict: bool,
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
    /// Why the automation failed, and whether retrying can help. Nothing
    /// was pushed then, unless the failure came after the push (the forge
    /// refused the pull request, a selected policy's repository could not
    /// be scanned, the sync failed): `commit` says.
    pub error: Option<ErrorReport>,
    /// The pull request hoist keeps for this automation, if it uses one,
    /// and what this run did to it.
    pub pull_request: Option<Outcome>,
    /// Milliseconds spent in each stage, over all push attempts.
    pub timings: Timings,
    /// Set when the automation has update windows and none is open: the
    /// run only worked out what it would change (`changes`, `diff`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<WindowReport>,
    /// What `spec.sync` applied, and from which commit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncOutcome>,
    /// With `--dry-run`: the unified diff that would be committed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
}

/// Outside every update window.
#[derive(Clone, Debug, Serialize)]
pub struct WindowReport {
    pub open: bool,
    /// RFC 3339, when the next window opens (within a year).
    pub next_open: Option<String>,
}

/// A sync of the checkout branch: its commit and what was applied.
#[derive(Clone, Debug, Serialize)]
pub struct SyncOutcome {
    pub revision: String,
    #[serde(flatten)]
    pub report: crate::sync::SyncReport,
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

/// Runs every ImageUpdateAutomation against the refs a scan selected,
/// through `ports`. One failing automation does not stop the others; the
/// records keep each automation's pull request and sync between runs.
pub fn run_automations(
    objects: &ObjectSet,
    scan: &ScanReport,
    ports: Ports,
    options: &RunOptions,
) -> Vec<AutomationReport> {
    objects
        .automations
        .iter()
        .map(|a| {
            let automation = &a.object;
            let key = crate::model::ObjectKey::of(&automation.metadata).to_string();
            let mut report = AutomationReport {
                automation: key.clone(),
                branch: push_branch(automation),
                ..AutomationReport::default()
            };
            if automation.spec.suspend {
                report.warnings.push("suspended; not run".to_string());
                return report;
            }
            let context = Context {
                automation,
                key: &key,
                objects,
                ports,
                options,
            };
            // Outside every update window: work out what would change,
            // push nothing, open or update no pull request.
            let closed = match window_gate(automation, options) {
                Ok(gate) => gate,
                Err(e) => {
                    report.error = Some(e.report());
                    return report;
                }
            };
            report.window = closed.clone();
            let rehearsal = RunOptions {
                dry_run: true,
                ..options.clone()
            };
            let update = Context {
                options: if closed.is_some() {
                    &rehearsal
                } else {
                    options
                },
                ..context
            };
            let published = git_for(&context, &mut report).and_then(|git| {
                let git = git.as_deref().unwrap_or(ports.git);
                run_one(&update, scan, git, &mut report)?;
                if context.options.dry_run {
                    return Ok(());
                }
                sync_branch(&context, git, &mut report)
            });
            // What could be updated was; a policy left without a latest
            // ref by a failed scan still means the automation is not up to
            // date.
            let failed = published.err().or_else(|| unscanned(&context, scan));
            report.error = failed.map(|e| e.report());
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

/// One automation in one run, and what it runs against.
struct Context<'a> {
    automation: &'a ImageUpdateAutomation,
    /// `namespace/name`
    key: &'a str,
    objects: &'a ObjectSet,
    ports: Ports<'a>,
    options: &'a RunOptions,
}

impl Context<'_> {
    fn namespace(&self) -> &str {
        crate::model::namespace_of(&self.automation.metadata)
    }

    fn checkout_branch(&self) -> &str {
        &self.automation.spec.git.checkout.reference.branch
    }

    fn pull_request_fields(&self) -> Option<&PullRequestFields> {
        self.automation
            .spec
            .git
            .push
            .as_ref()
            .and_then(|p| p.pull_request.as_ref())
    }

    /// The pull request hoist recorded for this automation; a damaged
    /// record is as good as none (the forge is asked instead).
    fn recorded_pull_request(&self) -> Option<PullRequestRecord> {
        self.ports
            .records
            .pull_request(self.key)
            .unwrap_or_else(|e| {
                tracing::warn!(automation = self.key, "{e}");
                None
            })
    }

    fn record_pull_request(
        &self,
        record: Option<&PullRequestRecord>,
        report: &mut AutomationReport,
    ) {
        if let Err(e) = self.ports.records.put_pull_request(self.key, record) {
            report
                .warnings
                .push(format!("recording the pull request: {e}"));
        }
    }
}

/// The selected policies left without a latest ref by a failed scan: what
/// keeps the automation from being up to date.
fn unscanned(context: &Context, scan: &ScanReport) -> Option<AutomationError> {
    let selected = selected_policies(context);
    let failures: Vec<ErrorReport> = scan
        .policies
        .iter()
        .filter(|row| row.tag.is_none() && selected.contains(&row.policy))
        .filter_map(|row| {
            let e = row.error.as_ref()?;
            Some(ErrorReport {
                message: format!(
                    "ImagePolicy {} has no latest tag: {}",
                    row.policy, e.message
                ),
                ..e.clone()
            })
        })
        .collect();
    (!failures.is_empty()).then_some(AutomationError::Scan(failures))
}

/// `Some(window report)` when the automation has update windows and none
/// is open at `options.now` (or now).
fn window_gate(
    automation: &ImageUpdateAutomation,
    options: &RunOptions,
) -> Result<Option<WindowReport>, AutomationError> {
    if automation.spec.schedule.is_empty() {
        return Ok(None);
    }
    let windows = automation
        .spec
        .schedule
        .iter()
        .enumerate()
        .map(|(i, w)| {
            crate::schedule::Window::parse(w).map_err(|e| {
                AutomationError::spec(format!("spec.schedule[{i}].{}", e.field), e.message)
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let now = options.now.unwrap_or_else(jiff::Timestamp::now);
    Ok(match crate::schedule::gate(&windows, now) {
        crate::schedule::Gate::Open => None,
        crate::schedule::Gate::Closed { next } => Some(WindowReport {
            open: false,
            next_open: next.map(|t| t.to_string()),
        }),
    })
}

/// Whether `automation` selects `policy`: same namespace, labels matching
/// `policySelector`.
pub fn selects(automation: &ImageUpdateAutomation, policy: &crate::api::ImagePolicy) -> bool {
    let empty = BTreeMap::new();
    crate::model::namespace_of(&automation.metadata) == crate::model::namespace_of(&policy.metadata)
        && automation
            .spec
            .policy_selector
            .clone()
            .unwrap_or_default()
            .matches(policy.metadata.labels.as_ref().unwrap_or(&empty))
}

/// `ns/name` of the policies the automation selects.
fn selected_policies(context: &Context) -> Vec<String> {
    context
        .objects
        .policies
        .iter()
        .map(|p| &p.object)
        .filter(|p| selects(context.automation, p))
        .map(|p| crate::model::ObjectKey::of(&p.metadata).to_string())
        .collect()
}

/// The latest refs of the policies the automation selects (those in its
/// namespace that match `policySelector`), and the selected policies that
/// have no latest ref (their repository failed to scan, or no tag fits).
fn refs_for(context: &Context, scan: &ScanReport) -> (Refs, Vec<String>) {
    let selected = selected_policies(context);
    let refs: Refs = scan
        .policies
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
        .collect();
    let missing = selected
        .into_iter()
        .filter(|p| !refs.contains_key(p))
        .collect();
    (refs, missing)
}

/// The git to use for an automation: with the credentials of the Secret
/// `spec.git.secretRef` names, when the files hold it (Flux's keys:
/// `username`/`password`, `identity`/`known_hosts`); else (`None`) the
/// driver's, which uses the user's own credential helpers and ssh
/// configuration — with a warning when a Secret was named.
fn git_for(
    context: &Context,
    report: &mut AutomationReport,
) -> Result<Option<Box<dyn Repository>>, AutomationError> {
    let Some(reference) = &context.automation.spec.git.secret_ref else {
        return Ok(None);
    };
    let namespace = context.namespace();
    let Some(secret) = context.objects.secret(namespace, &reference.name) else {
        report.warnings.push(format!(
            "spec.git.secretRef: Secret {namespace}/{} is not in the files; using git's own credential helpers and ssh configuration",
            reference.name
        ));
        return Ok(None);
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
    let dir = context.options.cache.join("credentials").join(
        format!("{:x}", sha2::Sha256::digest(context.key.as_bytes()))
            .get(..16)
            .unwrap_or("automation"),
    );
    Ok(Some(
        context.ports.git.with_credentials(&credentials, &dir)?,
    ))
}

/// The forge client for `spec.git.push.pullRequest`, with its token from
/// the Secret `secretRef` names, else the provider's environment variable.
fn forge_for(
    context: &Context,
    fields: &PullRequestFields,
) -> Result<Box<dyn Forge>, AutomationError> {
    use crate::api::ForgeProvider;
    let namespace = context.namespace();
    let variable = match fields.provider {
        ForgeProvider::Github => "GITHUB_TOKEN",
        ForgeProvider::Gitlab => "GITLAB_TOKEN",
        ForgeProvider::Gitea => "GITEA_TOKEN",
    };
    let token = match &fields.secret_ref {
        Some(reference) => context
            .objects
            .secret(namespace, &reference.name)
            .and_then(|s| s.data.get("token"))
            .map(|t| String::from_utf8_lossy(t).trim().to_string())
            .ok_or_else(|| AutomationError::Secret {
                field: "spec.git.push.pullRequest.secretRef".into(),
                message: format!(
                    "Secret {namespace}/{} with key token is not in the files",
                    reference.name
                ),
            })?,
        None => context
            .ports
            .forges
            .token_from_env(variable)
            .ok_or_else(|| AutomationError::Secret {
                field: "spec.git.push.pullRequest.secretRef".into(),
                message: format!(
                    "no forge token: set {variable} or spec.git.push.pullRequest.secretRef"
                ),
            })?,
    };
    let repo = ForgeRepo::from_git_url(&context.automation.spec.git.url)?;
    // `apiURL`, else the API root on the repository's own host: GitHub's
    // lives on api.github.com, an Enterprise server's under /api/v3.
    let api = |path: &str| {
        fields.api_url.clone().unwrap_or_else(|| match path {
            "/api/v3" if repo.host == "github.com" => "https://api.github.com".to_string(),
            _ => format!("https://{}{path}", repo.host),
        })
    };
    let api = match fields.provider {
        ForgeProvider::Gitlab => api("/api/v4"),
        ForgeProvider::Gitea => api("/api/v1"),
        ForgeProvider::Github => api("/api/v3"),
    };
    Ok(context
        .ports
        .forges
        .connect(fields.provider, &api, &repo, token)?)
}

/// After hoist's branch holds its change: make sure one pull request from
/// it to the checkout branch is open, with a current title and body.
/// `pushed` says whether this run moved the branch; when it did not and
/// the store remembers the pull request as hoist left it, the forge is not
/// asked at all.
fn pull_request(
    context: &Context,
    changes: &ChangeSet,
    message: &str,
    pushed: bool,
    report: &mut AutomationReport,
) -> Result<(), AutomationError> {
    let Some(fields) = context.pull_request_fields() else {
        return Ok(());
    };
    let forge = forge_for(context, fields)?;
    let title = match fields.title.as_deref().filter(|t| !t.trim().is_empty()) {
        Some(template) => message::render_plain(
            "spec.git.push.pullRequest.title",
            template,
            context.key,
            changes,
            message::TITLE_LIMIT,
        )?,
        None => message::shorten_title(message.lines().next().unwrap_or("Update images")),
    };
    let body = match fields.body.as_deref().filter(|t| !t.trim().is_empty()) {
        Some(template) => message::render_plain(
            "spec.git.push.pullRequest.body",
            template,
            context.key,
            changes,
            forge.body_limit(),
        )?,
        None => message::pull_request_body(context.key, changes, forge.body_limit()),
    };
    let spec = PullRequestSpec {
        head: report.branch.clone(),
        base: context.checkout_branch().to_string(),
        title,
        body,
        labels: fields.labels.clone(),
    };
    let recorded = context.recorded_pull_request();
    let (outcome, record) = forge::ensure(forge.as_ref(), &spec, recorded.as_ref(), pushed)?;
    if recorded.as_ref() != Some(&record) {
        context.record_pull_request(Some(&record), report);
    }
    report.pull_request = Some(outcome);
    Ok(())
}

/// The checkout branch already has every image the automation would set,
/// so hoist's branch proposes nothing any more (its pull request was
/// merged, or someone made the same change): carries out the
/// [`Step::Forget`], [`Step::Retire`] or [`Step::Leave`] decided for it.
/// Retiring closes the pull request with a comment saying why and deletes
/// the branch, only while it is still at the tip hoist checked.
fn retire_pull_request(
    context: &Context,
    git: &dyn Repository,
    checkout: &Checkout,
    step: Step,
    report: &mut AutomationReport,
) -> Result<(), AutomationError> {
    let Some(fields) = context.pull_request_fields() else {
        return Ok(());
    };
    let branch = report.branch.clone();
    let recorded = context.recorded_pull_request();
    let tip = match step {
        // Merged and deleted (by the forge or a person): nothing to close.
        Step::Forget if recorded.is_some() => {
            context.record_pull_request(None, report);
            return Ok(());
        }
        Step::Leave { warning } => {
            report.warnings.push(warning);
            return Ok(());
        }
        Step::Retire { tip } => tip,
        _ => return Ok(()),
    };
    let forge = forge_for(context, fields)?;
    let comment = format!(
        "Closed by hoist: `{base}` already has every change this pull request proposed, so there is nothing left to merge. hoist deletes its branch `{branch}` next.\n\n— ImageUpdateAutomation `{key}`",
        base = context.checkout_branch(),
        key = context.key,
    );
    report.pull_request = forge::retire(
        forge.as_ref(),
        &branch,
        context.checkout_branch(),
        recorded.as_ref(),
        &comment,
    )?;
    match git.delete_branch(checkout, &branch, &tip)? {
        Push::Pushed(_) => {}
        Push::Rejected(reason) => {
            return Err(AutomationError::BranchMoved(format!(
                "branch {branch} moved while hoist deleted it ({reason}); it was left as it is"
            )));
        }
    }
    context.record_pull_request(None, report);
    Ok(())
}

/// The tip of hoist's branch on the remote, fetched when the step depends
/// on it; `None` when the branch does not exist (or is not asked about).
fn remote_tip(
    git: &dyn Repository,
    checkout: &Checkout,
    facts: &Facts,
) -> Result<Option<Commit>, AutomationError> {
    if !facts.reads_remote() || git.remote_head(checkout, facts.branch)?.is_none() {
        return Ok(None);
    }
    Ok(Some(git.tip(checkout, facts.branch)?))
}

/// A path from the spec (`field`) as a relative path that stays inside
/// the repository.
fn repository_path(field: &str, value: &str) -> Result<PathBuf, AutomationError> {
    let mut clean = PathBuf::new();
    for component in Path::new(value).components() {
        match component {
            Component::Normal(part) => clean.push(part),
            Component::CurDir => {}
            _ => {
                return Err(AutomationError::spec(
                    field,
                    format!("{value:?} must stay inside the repository"),
                ));
            }
        }
    }
    Ok(clean)
}

/// `spec.sync`: apply the checkout branch as it is now on the remote —
/// hoist's own commit right after it pushed one, the base branch when
/// hoist proposes changes by pull request, anyone's commit otherwise.
fn sync_branch(
    context: &Context,
    git: &dyn Repository,
    report: &mut AutomationReport,
) -> Result<(), AutomationError> {
    let (Some(spec), Some(cluster)) = (&context.automation.spec.sync, context.ports.cluster) else {
        return Ok(());
    };
    let relative = repository_path("spec.sync.path", &spec.path)?;
    let branch = Branch {
        url: context.automation.spec.git.url.clone(),
        name: context.checkout_branch().to_string(),
    };
    let checkout = git.checkout(&context.options.cache, &branch)?;
    let root = checkout.dir.join(&relative);
    // A symbolic link must not lead the sync out of the repository.
    let inside = std::fs::canonicalize(&root)
        .ok()
        .zip(std::fs::canonicalize(&checkout.dir).ok())
        .is_some_and(|(r, c)| r.starts_with(&c) && !r.starts_with(c.join(".git")));
    if !inside {
        return Err(AutomationError::Repository {
            field: "spec.sync.path".into(),
            message: format!("{:?} is not a directory inside the repository", spec.path),
        });
    }
    let source =
        crate::sync::source::read(&root).map_err(|errors| AutomationError::Repository {
            field: "spec.sync.path".into(),
            message: errors
                .iter()
                .map(|e| format!("{}: {}", relative.join(&e.file).display(), e.message))
                .collect::<Vec<_>>()
                .join("; "),
        })?;
    let owner = crate::sync::Owner {
        namespace: context.namespace().to_string(),
        name: context.automation.metadata.name.clone().unwrap_or_default(),
    };
    // Without the inventory hoist could not prune what it applied: stop
    // rather than start a new, empty one.
    let previous = context
        .ports
        .records
        .sync_record(context.key)?
        .unwrap_or_default();
    let options = crate::sync::SyncOptions {
        prune: spec.prune,
        dry_run: false,
        wait: spec.wait.then(|| {
            spec.timeout
                .as_ref()
                .and_then(|t| t.parse().ok())
                .unwrap_or(std::time::Duration::from_secs(300))
        }),
        default_namespace: context.namespace().to_string(),
    };
    let (synced, impersonated) = cluster
        .sync(
            context.namespace(),
            context.automation.spec.service_account_name.as_deref(),
            source,
            &previous.inventory,
            &owner,
            &options,
        )
        .map_err(|e| AutomationError::Sync(e.to_string()))?;
    let record = crate::store::SyncRecord {
        revision: Some(checkout.base.clone()),
        inventory: synced.inventory.clone(),
    };
    if let Err(e) = context.ports.records.put_sync_record(context.key, &record) {
        report
            .warnings
            .push(format!("recording the sync inventory: {e}"));
    }
    let error = synced.error.clone();
    report.sync = Some(SyncOutcome {
        revision: checkout.base,
        report: synced,
    });
    match (error, impersonated) {
        (Some(e), Some(user)) => Err(AutomationError::Sync(format!(
            "sync of {} as {user}: {e}",
            relative.display()
        ))),
        (Some(e), None) => Err(AutomationError::Sync(format!(
            "sync of {}: {e}",
            relative.display()
        ))),
        (None, _) => Ok(()),
    }
}

fn run_one(
    context: &Context,
    scan: &ScanReport,
    git: &dyn Repository,
    report: &mut AutomationReport,
) -> Result<(), AutomationError> {
    let automation = context.automation;
    let (key, options) = (context.key, context.options);
    let checkout_branch = context.checkout_branch();
    let owned = report.branch != checkout_branch;
    let (refs, unresolved) = refs_for(context, scan);
    let relative = repository_path("spec.update.path", &automation.spec.update.path)?;
    let branch = Branch {
        url: automation.spec.git.url.clone(),
        name: checkout_branch.to_string(),
    };
    let author = Signature {
        name: automation.spec.git.commit.author.name.clone(),
        email: automation.spec.git.commit.author.email.clone(),
    };
    let base_warnings = report.warnings.clone();
    for _ in 0..options.push_attempts.max(1) {
        let started = std::time::Instant::now();
        let checkout = git.checkout(&options.cache, &branch)?;
        report.timings.checkout_ms += elapsed_ms(started);
        let root = checkout.dir.join(&relative);
        // A symlink in the repository must not lead the rewrite out of it.
        let inside = std::fs::canonicalize(&root)
            .ok()
            .zip(std::fs::canonicalize(&checkout.dir).ok())
            .is_some_and(|(r, c)| r.starts_with(&c) && !r.starts_with(c.join(".git")));
        if root.exists() && !inside {
            return Err(AutomationError::Repository {
                field: "spec.update.path".into(),
                message: format!(
                    "{:?} leads out of the repository",
                    automation.spec.update.path
                ),
            });
        }
        if !root.is_dir() {
            return Err(AutomationError::Repository {
                field: "spec.update.path".into(),
                message: format!(
                    "{:?} is not a directory in {}",
                    automation.spec.update.path, branch.name
                ),
            });
        }
        let started = std::time::Instant::now();
        let rewritten = rewrite_tree(&root, &refs, options.dry_run, None)?;
        report.timings.rewrite_ms += elapsed_ms(started);
        report.warnings = base_warnings.clone();
        report.warnings.extend(
            rewritten
                .problems
                .iter()
                .map(|problem| problem.located(&relative)),
        );
        if options.strict && !report.warnings.is_empty() {
            return Err(AutomationError::Strict(report.warnings.clone()));
        }
        report.changes = rewritten
            .changeset
            .changes
            .iter()
            .map(|c| Change {
                file: relative.join(&c.file),
                ..c.clone()
            })
            .collect();
        let facts = Facts {
            key,
            author: &author,
            branch: &report.branch,
            checkout_branch,
            owned,
            pull_request: context.pull_request_fields().is_some(),
            base: &checkout.base,
            ours: None,
            complete: !options.dry_run
                && unresolved.is_empty()
                && !refs.is_empty()
                && rewritten.problems.is_empty(),
            remote: None,
        };
        if report.changes.is_empty() {
            // Nothing to propose: maybe a pull request to retire.
            let tip = remote_tip(git, &checkout, &facts)?;
            let step = step(&Facts {
                remote: tip.as_ref(),
                ..facts
            })?;
            return retire_pull_request(context, git, &checkout, step, report);
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
                message::render("spec.git.commit.messageTemplate", template, key, &changeset)?
            }
            _ => message::default_message(key, &changeset),
        };
        let started = std::time::Instant::now();
        let committed = git.commit(&checkout, &author, &message)?;
        report.timings.commit_ms += elapsed_ms(started);
        let Some(commit) = committed else {
            return Ok(());
        };
        let ours = git.commit_info(&checkout, &commit)?;
        let facts = Facts {
            ours: Some(&ours),
            ..facts
        };
        let tip = remote_tip(git, &checkout, &facts)?;
        let lease = match step(&Facts {
            remote: tip.as_ref(),
            ..facts
        })? {
            Step::Push { lease } => lease,
            Step::UpToDate => return pull_request(context, &changeset, &message, false, report),
            other => {
                return Err(AutomationError::Internal(format!(
                    "a commit to push came to {other:?}"
                )));
            }
        };
        let started = std::time::Instant::now();
        let pushed = git.push(&checkout, &report.branch, &lease)?;
        report.timings.push_ms += elapsed_ms(started);
        match pushed {
            Push::Pushed(pushed) => {
                debug_assert_eq!(pushed, commit);
                report.commit = Some(pushed);
                return pull_request(context, &changeset, &message, true, report);
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
    Err(AutomationError::BranchMoved(format!(
        "branch {} kept moving during {} attempts; nothing was overwritten, the next run tries again",
        report.branch, options.push_attempts
    )))
}
