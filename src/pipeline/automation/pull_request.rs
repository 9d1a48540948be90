//! Keeping the automation's pull request: opened or updated after a push,
//! retired when the checkout branch has every change.

use super::credentials::forge_for;
use super::{AutomationReport, Context};
use crate::forge::{self, PullRequestSpec};
use crate::git::{Checkout, Commit, Push};
use crate::message;
use crate::model::ChangeSet;
use crate::pipeline::branch::{Facts, Step};
use crate::pipeline::error::AutomationError;
use crate::pipeline::ports::Repository;
use crate::promotion::Promoted;

/// `body` and, when it has room, the upstream evidence each promoted
/// change came with: a downstream pull request is the approval gate, and
/// whoever approves it sees what ran healthy where.
fn with_evidence(
    body: String,
    promoted: &[(String, Promoted)],
    changes: &ChangeSet,
    provider: crate::api::ForgeProvider,
    limit: usize,
) -> String {
    let lines: Vec<String> = promoted
        .iter()
        .filter(|(policy, _)| changes.changes.iter().any(|c| &c.policy == policy))
        .map(|(policy, e)| {
            format!(
                "- ImagePolicy {policy}: ran healthy under ImageUpdateAutomation {} since {} (its commit {}); evidence: {}",
                e.from,
                e.since,
                e.revision.get(..12).unwrap_or(&e.revision),
                e.link(Some(provider))
            )
        })
        .collect();
    if lines.is_empty() {
        return body;
    }
    let section = format!(
        "\n**Promoted** once the upstream environment ran it healthy for the soak time:\n\n{}\n",
        lines.join("\n")
    );
    if body.len() + section.len() > limit {
        return body;
    }
    body + &section
}

/// After hoist's branch holds its change: make sure one pull request from
/// it to the checkout branch is open, with a current title and body.
/// `pushed` says whether this run moved the branch; when it did not and
/// the store remembers the pull request as hoist left it, the forge is not
/// asked at all.
pub(super) async fn pull_request(
    context: &Context<'_>,
    changes: &ChangeSet,
    message: &str,
    promoted: &[(String, Promoted)],
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
    let body = with_evidence(body, promoted, changes, fields.provider, forge.body_limit());
    let spec = PullRequestSpec {
        head: report.branch.clone(),
        base: context.checkout_branch().to_string(),
        title,
        body,
        labels: fields.labels.clone(),
    };
    let recorded = context.recorded_pull_request();
    let (outcome, record) = forge::ensure(forge.as_ref(), &spec, recorded.as_ref(), pushed).await?;
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
pub(super) async fn retire_pull_request(
    context: &Context<'_>,
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
    )
    .await?;
    match git.delete_branch(checkout, &branch, &tip).await? {
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
/// on it (`None` when the branch does not exist, or is not asked about),
/// and whether its parent is in the checkout's history, when the step
/// depends on that.
pub(super) async fn remote_tip(
    git: &dyn Repository,
    checkout: &Checkout,
    facts: &Facts<'_>,
) -> Result<(Option<Commit>, bool), AutomationError> {
    if !facts.reads_remote() || git.remote_head(checkout, facts.branch).await?.is_none() {
        return Ok((None, false));
    }
    let tip = git.tip(checkout, facts.branch).await?;
    let on_checkout = match &tip.parent {
        Some(parent) if facts.reads_lineage(&tip) => git.contains(checkout, parent).await?,
        _ => false,
    };
    Ok((Some(tip), on_checkout))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Change, ObjectRef};

    fn change(policy: &str) -> Change {
        Change {
            file: "clusters/prod/app.yaml".into(),
            line: 7,
            object: ObjectRef::default(),
            marker: policy.to_string(),
            policy: policy.into(),
            image: "registry.example/app".into(),
            old: "registry.example/app:1.1.0".into(),
            new: "registry.example/app:1.2.0".into(),
        }
    }

    #[test]
    fn a_promoted_change_s_body_says_what_ran_healthy_upstream_and_where_it_is_recorded() {
        let promoted = Promoted {
            from: "staging/fleet".into(),
            url: "https://github.com/acme/fleet.git".into(),
            branch: "main".into(),
            path: ".hoist/evidence/staging/fleet.yaml".into(),
            since: "2026-12-07T10:00:00Z".into(),
            revision: "0123456789abcdef0123456789abcdef01234567".into(),
        };
        let changes = ChangeSet {
            changes: vec![change("prod/app")],
        };
        let promoted = [("prod/app".to_string(), promoted)];
        let body = with_evidence(
            "table\n".into(),
            &promoted,
            &changes,
            crate::api::ForgeProvider::Github,
            65_536,
        );
        assert!(
            body.starts_with("table\n")
                && body.contains("- ImagePolicy prod/app: ran healthy under ImageUpdateAutomation staging/fleet since 2026-12-07T10:00:00Z (its commit 0123456789ab); evidence: [.hoist/evidence/staging/fleet.yaml](https://github.com/acme/fleet/blob/main/.hoist/evidence/staging/fleet.yaml)"),
            "{body}"
        );
        // A change of another policy, or no room: the body as it was.
        let other = ChangeSet {
            changes: vec![change("prod/other")],
        };
        let github = crate::api::ForgeProvider::Github;
        assert_eq!(
            with_evidence("table\n".into(), &promoted, &other, github, 65_536),
            "table\n"
        );
        assert_eq!(
            with_evidence("table\n".into(), &promoted, &changes, github, 10),
            "table\n"
        );
    }
}
