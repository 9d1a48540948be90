//! What a waited sync's verdict leads to. A healthy rollout is recorded in
//! the automation's evidence file, in a commit of its own, for downstream
//! policies to promote from. A failed one, with `spec.sync.rollback`, is
//! rolled back: the failed tags are rejected for their policies, and the
//! images that last ran healthy are written back into the marked fields —
//! a new commit, pushed only when hoist's own commit is the branch's tip,
//! else proposed on a branch of hoist's own.

use std::path::{Path, PathBuf};

use super::credentials::forge_for;
use super::report::{EvidenceReport, RejectedReport, RollbackReport};
use super::sync::Applied;
use super::{AutomationReport, Context, off_the_runtime, repository_path, update_root};
use crate::api::{ImageRef, RejectedTag};
use crate::git::{Checkout, Push};
use crate::message;
use crate::pipeline::error::AutomationError;
use crate::pipeline::ports::Repository;
use crate::promotion::{self, Evidence, PolicyImage, Rejected};
use crate::rewrite::{Refs, rewrite_tree};

/// How much of what the cluster said a rejection keeps.
const REASON_LIMIT: usize = 1000;

/// What [`roll_back`] did.
pub(super) enum RolledBack {
    /// The rollback commit is on the checkout branch; what it did.
    Pushed(String),
    /// Someone committed on top of hoist's commit: the rollback waits on
    /// a branch (and pull request) of hoist's own; what and why.
    Proposed(String),
    /// None of the images deployed is one hoist changed since the last
    /// healthy rollout.
    NotOurs,
}

fn now(context: &Context<'_>) -> jiff::Timestamp {
    context.options.now.unwrap_or_else(jiff::Timestamp::now)
}

/// The evidence file `path` in `checkout`, and what the automation
/// recorded in it so far (none yet: empty).
fn evidence_in(
    context: &Context<'_>,
    checkout: &Checkout,
    path: &str,
) -> Result<(PathBuf, Evidence), AutomationError> {
    let problem = |message: String| AutomationError::Repository {
        field: "spec.sync.evidence.path".into(),
        message,
    };
    let file = crate::pipeline::evidence::evidence_file(&checkout.dir, path).map_err(problem)?;
    let Some(evidence) = crate::pipeline::evidence::read_file(&file, path).map_err(problem)? else {
        return Ok((file, Evidence::new(context.key)));
    };
    if evidence.automation != context.key {
        return Err(problem(format!(
            "{path} is the evidence of ImageUpdateAutomation {}; give {} a path of its own",
            evidence.automation, context.key
        )));
    }
    Ok((file, evidence))
}

fn write_evidence(file: &Path, path: &str, evidence: &Evidence) -> Result<(), AutomationError> {
    let problem = |e: std::io::Error| AutomationError::Repository {
        field: "spec.sync.evidence.path".into(),
        message: format!("writing {path}: {e}"),
    };
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(problem)?;
    }
    let text = evidence
        .render()
        .map_err(|e| AutomationError::Internal(e.to_string()))?;
    std::fs::write(file, text).map_err(problem)
}

/// Whether `message` carries this automation's trailer.
fn ours(context: &Context<'_>, message: &str) -> bool {
    let trailer = format!("{}: {}", message::TRAILER, context.key);
    message.lines().any(|l| l.trim() == trailer)
}

fn push_options<'a>(context: &Context<'a>) -> &'a [String] {
    context
        .automation
        .spec
        .git
        .push
        .as_ref()
        .map_or(&[][..], |p| p.options.as_slice())
}

/// A healthy rollout: the images of `refs` it ran, recorded in the
/// evidence file and pushed onto the checkout branch in a commit of their
/// own (when they are new there).
pub(super) async fn record_healthy(
    context: &Context<'_>,
    git: &dyn Repository,
    applied: &Applied,
    path: &str,
    refs: &[PolicyImage],
    report: &mut AutomationReport,
) -> Result<(), AutomationError> {
    let checkout = &applied.checkout;
    let (file, mut evidence) = evidence_in(context, checkout, path)?;
    let (deployed, undigested) = promotion::deployed(refs, &applied.images);
    for policy in undigested {
        report.warnings.push(format!(
            "spec.sync.evidence: the latest ref of ImagePolicy {policy} has no digest, so its healthy rollout is not recorded (evidence names digests); set its digestReflectionPolicy to IfNotPresent"
        ));
    }
    if !evidence.record_healthy(&deployed, &checkout.base, now(context)) {
        return Ok(());
    }
    let lines: Vec<String> = deployed.iter().map(ToString::to_string).collect();
    let text = message::evidence_message(context.key, &lines, &checkout.base);
    publish_evidence(
        context,
        git,
        checkout,
        (&file, path),
        &evidence,
        &text,
        report,
    )
    .await
}

/// A failed rollout hoist does not roll back: the images that ran healthy
/// until now and fail no longer soak, and the evidence says so.
pub(super) async fn record_failed(
    context: &Context<'_>,
    git: &dyn Repository,
    applied: &Applied,
    path: &str,
    refs: &[PolicyImage],
    report: &mut AutomationReport,
) -> Result<(), AutomationError> {
    let checkout = &applied.checkout;
    let (file, mut evidence) = evidence_in(context, checkout, path)?;
    let (failed, _) = promotion::deployed(refs, &applied.failing);
    if !evidence.record_failed(&failed, now(context)) {
        return Ok(());
    }
    let lines: Vec<String> = failed.iter().map(ToString::to_string).collect();
    let reason = promotion::plain(&applied.verdict, REASON_LIMIT);
    let text = message::failed_message(context.key, &lines, &checkout.base, &reason);
    publish_evidence(
        context,
        git,
        checkout,
        (&file, path),
        &evidence,
        &text,
        report,
    )
    .await
}

/// Writes `evidence` to its file (`path` in the repository), commits it
/// alone with `text` and pushes it onto the checkout branch; the report
/// says so, or (with a warning) that the branch moved meanwhile.
async fn publish_evidence(
    context: &Context<'_>,
    git: &dyn Repository,
    checkout: &Checkout,
    (file, path): (&Path, &str),
    evidence: &Evidence,
    text: &str,
    report: &mut AutomationReport,
) -> Result<(), AutomationError> {
    write_evidence(file, path, evidence)?;
    if let Some(commit) = commit_evidence(context, git, checkout, text, report).await? {
        report.evidence = Some(EvidenceReport {
            path: path.to_string(),
            commit,
        });
    }
    Ok(())
}

/// Commits the evidence file alone and pushes it onto the checkout
/// branch; `None` (with a warning) when the branch moved meanwhile.
async fn commit_evidence(
    context: &Context<'_>,
    git: &dyn Repository,
    checkout: &Checkout,
    text: &str,
    report: &mut AutomationReport,
) -> Result<Option<String>, AutomationError> {
    let author = crate::git::Signature {
        name: context.automation.spec.git.commit.author.name.clone(),
        email: context.automation.spec.git.commit.author.email.clone(),
    };
    let Some(commit) = git.commit(checkout, &author, text).await? else {
        return Ok(None);
    };
    let branch = context.checkout_branch();
    match git
        .push(checkout, branch, &checkout.base, push_options(context))
        .await?
    {
        Push::Pushed(_) => Ok(Some(commit)),
        Push::Rejected(reason) => {
            report.warnings.push(format!(
                "{branch} moved while hoist recorded the rollout's verdict ({reason}); nothing was overwritten, the next run records it"
            ));
            Ok(None)
        }
    }
}

/// A failed rollout: rejects each image hoist changed since the last
/// healthy one and writes that one back.
pub(super) async fn roll_back(
    context: &Context<'_>,
    git: &dyn Repository,
    applied: &Applied,
    path: &str,
    refs: &[PolicyImage],
    report: &mut AutomationReport,
) -> Result<RolledBack, AutomationError> {
    let checkout = &applied.checkout;
    let (file, mut evidence) = evidence_in(context, checkout, path)?;
    let suspects: Vec<(PolicyImage, promotion::Rollout)> =
        promotion::suspects(&evidence, refs, &applied.failing)
            .into_iter()
            .map(|(r, healthy)| (r, healthy.clone()))
            .collect();
    if suspects.is_empty() {
        return Ok(RolledBack::NotOurs);
    }
    // The objects' own verdicts: what their Pods say may quote the
    // application's output, which has no place in a commit or a status.
    let reason = promotion::plain(&applied.verdict, REASON_LIMIT);
    let at = now(context).to_string();
    let revision = checkout.base.clone();
    let mut rollback = RollbackReport {
        reason: reason.clone(),
        ..RollbackReport::default()
    };
    let mut restore = Refs::new();
    let mut moves = Vec::new();
    for (r, healthy) in &suspects {
        // Rejected before anything is committed: whatever happens to the
        // commit, the tag is not adopted again.
        let tag = RejectedTag {
            tag: r.tag.clone(),
            digest: r.digest.clone(),
            automation: context.key.to_string(),
            at: at.clone(),
            reason: reason.clone(),
        };
        context.ports.records.reject(&r.policy, &[tag])?;
        evidence.record_rejected(Rejected {
            policy: r.policy.clone(),
            image: r.image.clone(),
            tag: r.tag.clone(),
            digest: r.digest.clone(),
            revision: revision.clone(),
            at: at.clone(),
            reason: reason.clone(),
        });
        // The marker writes a digest only when the policy reflects one.
        restore.insert(
            r.policy.clone(),
            ImageRef {
                name: r.image.clone(),
                tag: healthy.tag.clone(),
                digest: r.digest.as_ref().map(|_| healthy.digest.clone()),
            },
        );
        moves.push(format!("{} {} → {}", r.image, r.tag, healthy.tag));
        rollback.rejected.push(RejectedReport {
            policy: r.policy.clone(),
            tag: r.tag.clone(),
            digest: r.digest.clone(),
            restored: Some(healthy.tag.clone()),
        });
    }
    let rejected_text = rollback
        .rejected
        .iter()
        .map(|r| format!("{} of ImagePolicy {}", r.tag, r.policy))
        .collect::<Vec<_>>()
        .join(", ");
    let automation = context.automation;
    let relative = repository_path("spec.update.path", &automation.spec.update.path)?;
    let (root, only, _) = update_root(checkout, automation, &relative)?;
    let rewritten = {
        let restore = restore.clone();
        off_the_runtime("the rollback", move || {
            rewrite_tree(&root, &restore, false, only.as_deref())
        })
        .await??
    };
    if rewritten.changeset.changes.is_empty() {
        report.warnings.push(format!(
            "spec.sync.rollback: no marker of {} is in spec.update.path; only the rejection is recorded",
            restore.keys().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    write_evidence(&file, path, &evidence)?;
    let text = message::rollback_message(context.key, &moves, &revision, &reason);
    let author = crate::git::Signature {
        name: automation.spec.git.commit.author.name.clone(),
        email: automation.spec.git.commit.author.email.clone(),
    };
    let Some(commit) = git.commit(checkout, &author, &text).await? else {
        report.rollback = Some(rollback);
        return Ok(RolledBack::Proposed(format!(
            "rejected {rejected_text}; nothing to commit"
        )));
    };
    let summary = format!("rolled back {}; rejected {rejected_text}", moves.join(", "));
    let branch = context.checkout_branch().to_string();
    let tip = git.commit_info(checkout, &checkout.base).await?;
    if ours(context, &tip.message) {
        rollback.branch = branch.clone();
        return match git
            .push(checkout, &branch, &checkout.base, push_options(context))
            .await?
        {
            Push::Pushed(_) => {
                rollback.commit = Some(commit);
                report.rollback = Some(rollback);
                Ok(RolledBack::Pushed(summary))
            }
            Push::Rejected(why) => {
                report.rollback = Some(rollback);
                Err(AutomationError::BranchMoved(format!(
                    "{summary}, but {branch} moved before the rollback could be pushed ({why}); nothing was overwritten, the next run tries again"
                )))
            }
        };
    }
    // Someone committed on top of hoist's commit: their commit stays, and
    // the rollback is theirs to merge.
    let proposal = proposal_branch(context);
    rollback.branch = proposal.clone();
    let why = format!(
        "{branch} is at {} by {}, not at hoist's commit, so hoist proposes the rollback instead of pushing it",
        short(&tip.id),
        tip.author
    );
    let expected = match git.remote_head(checkout, &proposal).await? {
        None => String::new(),
        Some(head) => {
            let previous = git.tip(checkout, &proposal).await?;
            if !ours(context, &previous.message) {
                report.rollback = Some(rollback);
                return Err(AutomationError::ForeignCommit(format!(
                    "{summary}; {why}, but branch {proposal} holds a commit hoist did not make ({}); hoist leaves it",
                    short(&head)
                )));
            }
            head
        }
    };
    match git
        .push(checkout, &proposal, &expected, push_options(context))
        .await?
    {
        Push::Pushed(_) => rollback.commit = Some(commit),
        Push::Rejected(reason) => {
            report.rollback = Some(rollback);
            return Err(AutomationError::BranchMoved(format!(
                "{summary}; {why}, but branch {proposal} moved ({reason}); the next run tries again"
            )));
        }
    }
    let fields = automation
        .spec
        .sync
        .as_ref()
        .and_then(|s| s.rollback.as_ref())
        .and_then(|r| r.pull_request.as_ref())
        .or_else(|| context.pull_request_fields());
    let Some(fields) = fields else {
        report.rollback = Some(rollback);
        return Ok(RolledBack::Proposed(format!(
            "{summary}; {why}: the rollback is on branch {proposal}; open a pull request from it to {branch} (with spec.sync.rollback.pullRequest hoist opens one)"
        )));
    };
    let forge = forge_for(context, fields)?;
    let title = message::shorten_title(text.lines().next().unwrap_or("Roll back"));
    let body = format!(
        "{}\n\n{why}.\n\nThe rollout failed:\n\n```\n{reason}\n```\n\nOpened by hoist for ImageUpdateAutomation {}.\n",
        text.lines()
            .skip(1)
            .filter(|l| l.starts_with("- "))
            .collect::<Vec<_>>()
            .join("\n"),
        context.key
    );
    let spec = crate::forge::PullRequestSpec {
        head: proposal.clone(),
        base: branch.clone(),
        title,
        body,
        labels: fields.labels.clone(),
    };
    let (outcome, _) = crate::forge::ensure(forge.as_ref(), &spec, None, true).await?;
    let url = outcome.pull_request.url.clone();
    rollback.pull_request = Some(outcome);
    report.rollback = Some(rollback);
    Ok(RolledBack::Proposed(format!(
        "{summary}; {why}: proposed in {url}"
    )))
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// The branch a rollback waits on when hoist may not push it: named by
/// namespace too, since automations of two namespaces may share a
/// repository and a name.
fn proposal_branch(context: &Context<'_>) -> String {
    format!(
        "hoist/rollback/{}/{}",
        context.namespace(),
        context
            .automation
            .metadata
            .name
            .as_deref()
            .unwrap_or_default()
    )
}

/// While a rollback this automation proposed waits for review, the
/// policies it rejected are not updated: the update would push the
/// rollback's change (or another) onto the commit a person made, which is
/// what the proposal leaves to them. Returns the refs to write and, for
/// each policy held, a warning. Once the checkout no longer carries any
/// rejected tag (the proposal was merged, or the branch fixed another
/// way), the proposal's branch is deleted — only while it holds hoist's
/// own commit — and nothing is held.
pub(super) async fn hold_proposed(
    context: &Context<'_>,
    git: &dyn Repository,
    checkout: &Checkout,
    scan: &crate::pipeline::ScanReport,
    root: &Path,
    only: Option<&Path>,
    refs: &Refs,
) -> Result<(Refs, Vec<String>), AutomationError> {
    // The rejected tags of this automation, as markers would write them.
    let mut probe = Refs::new();
    let selected = super::selected_policies(context);
    for row in scan
        .policies
        .iter()
        .filter(|row| selected.contains(&row.policy))
    {
        let Ok(rejected) = context.ports.records.rejections(&row.policy) else {
            continue;
        };
        for r in rejected.iter().filter(|r| r.automation == context.key) {
            probe.insert(
                row.policy.clone(),
                ImageRef {
                    name: row.name.clone(),
                    tag: r.tag.clone(),
                    digest: r.digest.clone().filter(|_| row.digest.is_some()),
                },
            );
        }
    }
    if probe.is_empty() {
        return Ok((refs.clone(), Vec::new()));
    }
    let proposal = proposal_branch(context);
    let Some(head) = git.remote_head(checkout, &proposal).await? else {
        return Ok((refs.clone(), Vec::new()));
    };
    // Which of those tags the checkout still carries: writing them would
    // change nothing there.
    let changed = {
        let (root, probe, only) = (
            root.to_path_buf(),
            probe.clone(),
            only.map(Path::to_path_buf),
        );
        off_the_runtime("looking for rejected tags", move || {
            rewrite_tree(&root, &probe, true, only.as_deref())
        })
        .await??
    };
    let carried: Vec<&String> = probe
        .keys()
        .filter(|p| !changed.changeset.changes.iter().any(|c| &&c.policy == p))
        .collect();
    if carried.is_empty() {
        let tip = git.tip(checkout, &proposal).await?;
        if ours(context, &tip.message) {
            // Gone already, or moved on: either way nothing to do.
            let _ = git.delete_branch(checkout, &proposal, &head).await?;
        }
        return Ok((refs.clone(), Vec::new()));
    }
    let mut kept = refs.clone();
    let mut warnings = Vec::new();
    for policy in carried {
        kept.remove(policy);
        warnings.push(format!(
            "ImagePolicy {policy} is held: the rollback of its rejected tag waits for review on branch {proposal}; merge or close that, and hoist updates it again"
        ));
    }
    Ok((kept, warnings))
}
