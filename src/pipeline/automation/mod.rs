//! ImageUpdateAutomations: after a scan, rewrite each automation's
//! repository with its policies' latest refs, commit, and push without
//! overwriting anyone's commits.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use super::branch::{Facts, Ownership, Step, step};
use super::error::{AutomationError, ErrorReport};
use super::ports::{Ports, Repository};
use super::scan::ScanReport;
use crate::api::{
    ImageRef, ImageUpdateAutomation, MessageFormat, PullRequestSpec as PullRequestFields,
};
use crate::forge::PullRequestRecord;
use crate::git::{Push, Reference, Signature, Source};
use crate::load::ObjectSet;
use crate::message;
use crate::model::{Change, ChangeSet};
use crate::rewrite::{Refs, rewrite_tree};

pub(crate) mod credentials;
mod pull_request;
mod report;
mod rollout;
mod sync;

use credentials::git_for;
use pull_request::{pull_request, remote_tip, retire_pull_request};
pub use report::{AutomationReport, SyncOutcome, Timings, WindowReport};
use sync::sync_branch;

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

/// Runs file work (the rewrite, reading the manifests to sync) on a
/// blocking thread: a large repository takes a while to read, and the
/// controller's workers keep serving its watches and leases meanwhile.
async fn off_the_runtime<T: Send + 'static>(
    what: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, AutomationError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| AutomationError::Internal(format!("{what} did not finish: {e}")))
}

fn elapsed_ms(since: std::time::Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Runs every ImageUpdateAutomation against the refs a scan selected,
/// through `ports`, one after another. One failing automation does not
/// stop the others; the records keep each automation's pull request and
/// sync between runs.
pub async fn run_automations(
    objects: &ObjectSet,
    scan: &ScanReport,
    ports: Ports<'_>,
    options: &RunOptions,
) -> Vec<AutomationReport> {
    let mut reports = Vec::with_capacity(objects.automations.len());
    for a in &objects.automations {
        let automation = &a.object;
        let key = crate::model::ObjectKey::of(&automation.metadata).to_string();
        let context = Context {
            automation,
            key: &key,
            objects,
            ports,
            options,
        };
        reports.push(run_automation(context, scan).await);
    }
    reports
}

/// One automation: the window gate, the rewrite and publish, then the sync.
async fn run_automation(context: Context<'_>, scan: &ScanReport) -> AutomationReport {
    let (automation, options) = (context.automation, context.options);
    let mut report = AutomationReport {
        automation: context.key.to_string(),
        branch: push_branch(automation),
        ..AutomationReport::default()
    };
    if automation.spec.suspend {
        report.warnings.push("suspended; not run".to_string());
        return report;
    }
    // Outside every update window: work out what would change, push
    // nothing, open or update no pull request.
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
    let published = async {
        let git = git_for(&context, &mut report)?;
        let git = git.as_deref().unwrap_or(context.ports.git);
        run_one(&update, scan, git, &mut report).await?;
        if options.dry_run {
            return Ok(());
        }
        let images = policy_images(&context, scan);
        sync_branch(&context, git, &images, &mut report).await
    }
    .await;
    // What could be updated was; a policy left without a latest ref by a
    // failed scan still means the automation is not up to date.
    let failed = published.err().or_else(|| unscanned(&context, scan));
    report.error = failed.map(|e| e.report());
    report
}

/// `push.branch`, or the checkout branch (the loader makes sure one of
/// them is set).
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
#[derive(Clone, Copy)]
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

    /// The checkout branch; empty when the checkout is a tag, ref or
    /// commit (the loader allows pull requests and sync on branches only).
    fn checkout_branch(&self) -> &str {
        &self.automation.spec.git.checkout.reference.branch
    }

    /// What the checkout starts from.
    fn checkout_source(&self) -> Source {
        Source {
            url: self.automation.spec.git.url.clone(),
            reference: self.automation.spec.git.checkout.reference.reference(),
        }
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
fn unscanned(context: &Context<'_>, scan: &ScanReport) -> Option<AutomationError> {
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
    selects_in(
        crate::model::namespace_of(&automation.metadata),
        automation.spec.policy_selector.as_ref(),
        policy,
    )
}

/// Whether an automation in `namespace` with `selector` selects `policy`.
pub fn selects_in(
    namespace: &str,
    selector: Option<&crate::api::LabelSelector>,
    policy: &crate::api::ImagePolicy,
) -> bool {
    let empty = BTreeMap::new();
    namespace == crate::model::namespace_of(&policy.metadata)
        && selector
            .cloned()
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
fn refs_for(context: &Context<'_>, scan: &ScanReport) -> (Refs, Vec<String>) {
    let selected = selected_policies(context);
    // A tag rolled back is never written again, even while a policy's
    // latest ref (a controller's status, say) still names it.
    let rejected = |policy: &str, tag: &str| {
        context
            .ports
            .records
            .rejections(policy)
            .unwrap_or_else(|e| {
                tracing::warn!(policy, "{e}");
                Vec::new()
            })
            .iter()
            .any(|r| r.tag == tag)
    };
    let refs: Refs = scan
        .policies
        .iter()
        .filter(|row| selected.contains(&row.policy))
        .filter_map(|row| {
            let tag = row
                .tag
                .as_ref()
                .filter(|t| !rejected(&row.policy, t.as_str()))?;
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

/// The latest refs of the automation's policies, as markers write them.
fn policy_images(context: &Context<'_>, scan: &ScanReport) -> Vec<crate::promotion::PolicyImage> {
    refs_for(context, scan)
        .0
        .into_iter()
        .map(|(policy, r)| crate::promotion::PolicyImage {
            policy,
            image: r.name,
            tag: r.tag,
            digest: r.digest,
        })
        .collect()
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

/// Where `spec.update.path` (`relative`) leads in `checkout`: a directory,
/// read recursively, or (as Flux allows) one file. Returns the directory to
/// rewrite, the one file in it (if so), and the directory the changes are
/// named from.
fn update_root(
    checkout: &crate::git::Checkout,
    automation: &ImageUpdateAutomation,
    relative: &Path,
) -> Result<(PathBuf, Option<PathBuf>, PathBuf), AutomationError> {
    let root = checkout.dir.join(relative);
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
    if root.is_dir() {
        return Ok((root, None, relative.to_path_buf()));
    }
    if let (true, Some(name), Some(dir)) = (root.is_file(), root.file_name(), relative.parent()) {
        let name = PathBuf::from(name);
        let parent = root.parent().map(Path::to_path_buf).unwrap_or_default();
        return Ok((parent, Some(name), dir.to_path_buf()));
    }
    Err(AutomationError::Repository {
        field: "spec.update.path".into(),
        message: format!(
            "{:?} is neither a directory nor a file in {}",
            automation.spec.update.path, checkout.source.reference
        ),
    })
}

async fn run_one(
    context: &Context<'_>,
    scan: &ScanReport,
    git: &dyn Repository,
    report: &mut AutomationReport,
) -> Result<(), AutomationError> {
    let automation = context.automation;
    let (key, options) = (context.key, context.options);
    let source = context.checkout_source();
    let owned = source.reference.branch() != Some(report.branch.as_str());
    // How messages name what the branch is built on.
    let checkout_branch = match &source.reference {
        Reference::Branch(name) => name.clone(),
        other => other.to_string(),
    };
    let checkout_branch = checkout_branch.as_str();
    let (refs, unresolved) = refs_for(context, scan);
    // The upstream evidence promoted tags came with, for the pull request.
    let promoted: Vec<(String, crate::promotion::Promoted)> = scan
        .policies
        .iter()
        .filter(|row| refs.contains_key(&row.policy))
        .filter_map(|row| Some((row.policy.clone(), row.promoted.clone()?)))
        .collect();
    let relative = repository_path("spec.update.path", &automation.spec.update.path)?;
    let author = Signature {
        name: automation.spec.git.commit.author.name.clone(),
        email: automation.spec.git.commit.author.email.clone(),
    };
    let base_warnings = report.warnings.clone();
    for _ in 0..options.push_attempts.max(1) {
        let started = std::time::Instant::now();
        let checkout = git.checkout(&options.cache, &source).await?;
        report.timings.checkout_ms += elapsed_ms(started);
        let (root, only, relative) = update_root(&checkout, automation, &relative)?;
        let (refs, held) =
            rollout::hold_proposed(context, git, &checkout, scan, &root, only.as_deref(), &refs)
                .await?;
        let started = std::time::Instant::now();
        let rewritten = {
            let (root, refs, dry_run) = (root.clone(), refs.clone(), options.dry_run);
            off_the_runtime("the rewrite", move || {
                rewrite_tree(&root, &refs, dry_run, only.as_deref())
            })
            .await??
        };
        report.timings.rewrite_ms += elapsed_ms(started);
        report.warnings = base_warnings.clone();
        report.warnings.extend(held);
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
            // A Flux message carries no trailer.
            ownership: match automation.spec.git.commit.format {
                MessageFormat::Hoist => Ownership::Trailer,
                MessageFormat::Flux => Ownership::Lineage,
            },
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
            remote_on_checkout: false,
        };
        if report.changes.is_empty() {
            // Nothing to propose: maybe a pull request to retire.
            let (tip, remote_on_checkout) = remote_tip(git, &checkout, &facts).await?;
            let step = step(&Facts {
                remote: tip.as_ref(),
                remote_on_checkout,
                ..facts
            })?;
            return retire_pull_request(context, git, &checkout, step, report).await;
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
        let commit_spec = &automation.spec.git.commit;
        let message = match (commit_spec.format, &commit_spec.message_template) {
            // A Flux automation's commit says what Flux's would, and no more.
            (MessageFormat::Flux, template) => message::render_flux(
                template.as_deref(),
                &crate::model::ObjectKey::of(&automation.metadata),
                &changeset,
                &relative,
                &commit_spec.template_values,
            )?,
            (MessageFormat::Hoist, Some(template)) if !template.trim().is_empty() => {
                message::cleanup(&message::render(
                    "spec.git.commit.messageTemplate",
                    template,
                    key,
                    &changeset,
                )?)
            }
            (MessageFormat::Hoist, _) => {
                message::cleanup(&message::default_message(key, &changeset))
            }
        };
        let started = std::time::Instant::now();
        let committed = git.commit(&checkout, &author, &message).await?;
        report.timings.commit_ms += elapsed_ms(started);
        let Some(commit) = committed else {
            return Ok(());
        };
        let ours = git.commit_info(&checkout, &commit).await?;
        let facts = Facts {
            ours: Some(&ours),
            ..facts
        };
        let (tip, remote_on_checkout) = remote_tip(git, &checkout, &facts).await?;
        let lease = match step(&Facts {
            remote: tip.as_ref(),
            remote_on_checkout,
            ..facts
        })? {
            Step::Push { lease } => lease,
            Step::UpToDate => {
                return pull_request(context, &changeset, &message, &promoted, false, report).await;
            }
            other => {
                return Err(AutomationError::Internal(format!(
                    "a commit to push came to {other:?}"
                )));
            }
        };
        let started = std::time::Instant::now();
        let push_spec = automation.spec.git.push.as_ref();
        let push_options = push_spec.map_or(&[][..], |p| p.options.as_slice());
        let pushed = git
            .push(&checkout, &report.branch, &lease, push_options)
            .await?;
        report.timings.push_ms += elapsed_ms(started);
        match pushed {
            Push::Pushed(pushed) => {
                debug_assert_eq!(pushed, commit);
                report.commit = Some(pushed);
                // Flux's push.refspec: the same commit to a second ref,
                // after the branch, as Flux does. A refusal there is this
                // run's error; the branch already has the commit.
                if let Some(destination) = push_spec.and_then(|p| p.also_to.as_deref()) {
                    match git.push_also(&checkout, destination, push_options).await? {
                        Push::Pushed(_) => {}
                        Push::Rejected(reason) => {
                            return Err(AutomationError::BranchMoved(format!(
                                "pushed {commit} to {}, but {destination} refused it ({reason}); hoist does not force it",
                                report.branch
                            )));
                        }
                    }
                }
                return pull_request(context, &changeset, &message, &promoted, true, report).await;
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
