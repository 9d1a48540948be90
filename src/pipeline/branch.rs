//! What to do with the branch hoist pushes to, after a rewrite: decided
//! from what the remote holds, as a value. Pure; the automation gathers
//! the facts and carries the step out.
//!
//! Pushing to the checkout branch, hoist's commit goes on the commit it
//! built on, or not at all. Pushing to a branch of its own (`push.branch`
//! other than the checkout branch), hoist rebuilds that branch on each run
//! from the checkout tip plus one commit — safe only while the branch's
//! tip is hoist's own commit for this automation. A commit by anyone else
//! stops hoist: their work is never pushed over.
//!
//! hoist knows its own commit by its committer (hoist's identity: whoever
//! amends or cherry-picks a commit becomes its committer) and by one of
//! two marks. Its own documents' messages end with the `Hoist-Automation`
//! trailer, which also tells one automation's commit from another's. A
//! Flux automation's message is exactly what its template says, with no
//! trailer, so there the mark is the commit's lineage: its parent is in
//! the checkout ref's history, as hoist's single commit on top of the
//! checkout always is, and a commit someone added on top never is.

use super::error::AutomationError;
use crate::git::{Commit, Signature};
use crate::message;

/// How hoist tells its own commit on a branch of its own (see the module's
/// documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ownership {
    /// The message carries hoist's trailer naming this automation.
    Trailer,
    /// The parent is in the checkout ref's history.
    Lineage,
}

/// What a run knows when it decides.
#[derive(Clone, Copy, Debug)]
pub struct Facts<'a> {
    /// `ns/name` of the automation, as its commits' trailer names it.
    pub key: &'a str,
    /// Who hoist commits as.
    pub author: &'a Signature,
    pub ownership: Ownership,
    /// The branch hoist pushes to, and what it is built on: the checkout
    /// branch (the same unless hoist owns a branch of its own), or a tag,
    /// ref or commit, as people read it.
    pub branch: &'a str,
    pub checkout_branch: &'a str,
    /// hoist pushes to a branch of its own.
    pub owned: bool,
    /// A pull request is kept for that branch (`push.pullRequest`).
    pub pull_request: bool,
    /// The checkout branch's commit the rewrite was made on.
    pub base: &'a str,
    /// hoist's new commit, when the rewrite changed something.
    pub ours: Option<&'a Commit>,
    /// An empty rewrite means the checkout branch has every change: each
    /// selected policy has a latest ref (a failed scan must not close a
    /// pull request), at least one is selected, and every file parsed.
    pub complete: bool,
    /// The tip of hoist's branch on the remote, `None` when it does not
    /// exist. Read only when [`Facts::reads_remote`] says so.
    pub remote: Option<&'a Commit>,
    /// Whether that tip's parent is in the checkout ref's history; read
    /// only when [`Facts::reads_lineage`] says so.
    pub remote_on_checkout: bool,
}

impl Facts<'_> {
    /// Whether the step depends on hoist's branch on the remote, so the
    /// automation fetches its tip: only for a branch of hoist's own, with
    /// a commit to push or a pull request to retire.
    pub fn reads_remote(&self) -> bool {
        self.owned && (self.ours.is_some() || (self.complete && self.pull_request))
    }

    /// Whether the step depends on the lineage of the remote `tip`: the
    /// automation looks it up only for a tip its committer could have made.
    pub fn reads_lineage(&self, tip: &Commit) -> bool {
        self.ownership == Ownership::Lineage && tip.committer == committer(self.author)
    }
}

/// The step, once decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing to push and nothing to retire.
    Nothing,
    /// Push hoist's commit only if the branch is still at `lease` (empty:
    /// the branch must not exist yet).
    Push { lease: String },
    /// hoist's branch already holds this very change on this very base:
    /// push nothing, keep the pull request current.
    UpToDate,
    /// The checkout branch has every change and hoist's branch is gone
    /// (merged and deleted): forget its pull request.
    Forget,
    /// The checkout branch has every change: close the pull request and
    /// delete hoist's branch, only while it is still at `tip`.
    Retire { tip: String },
    /// The checkout branch has every change, but someone committed on
    /// hoist's branch: leave the branch and its pull request alone.
    Leave { warning: String },
}

/// The step for these facts. An error when hoist's branch carries a commit
/// hoist did not make and hoist has a change for it.
pub fn step(facts: &Facts) -> Result<Step, AutomationError> {
    let Some(ours) = facts.ours else {
        if !(facts.owned && facts.complete && facts.pull_request) {
            return Ok(Step::Nothing);
        }
        return Ok(match facts.remote {
            None => Step::Forget,
            Some(tip) if made_by_hoist(tip, facts) => Step::Retire {
                tip: tip.id.clone(),
            },
            Some(tip) => Step::Leave {
                warning: format!(
                    "{} already has every change, but branch {} has a commit hoist did not make ({}); hoist leaves the branch and its pull request alone",
                    facts.checkout_branch,
                    facts.branch,
                    short(&tip.id)
                ),
            },
        });
    };
    if !facts.owned {
        return Ok(Step::Push {
            lease: facts.base.to_string(),
        });
    }
    let Some(tip) = facts.remote else {
        return Ok(Step::Push {
            lease: String::new(),
        });
    };
    if !made_by_hoist(tip, facts) {
        return Err(AutomationError::ForeignCommit(format!(
            "branch {} has a commit hoist did not make ({} by {}); hoist stops updating it so that work is not lost — merge or delete the branch",
            facts.branch,
            short(&tip.id),
            tip.author
        )));
    }
    if tip.tree == ours.tree && tip.parent == ours.parent {
        return Ok(Step::UpToDate);
    }
    // The lease is the tip hoist checked, not a head read before it: a
    // commit landing after the check makes the push fail, never vanish.
    Ok(Step::Push {
        lease: tip.id.clone(),
    })
}

/// A commit id as people read it.
pub fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// `Name <email>`, as [`Commit::committer`] reads.
fn committer(author: &Signature) -> String {
    format!("{} <{}>", author.name, author.email)
}

/// hoist's commit names hoist as committer (an amended or cherry-picked
/// copy names whoever amended it) and carries its mark.
fn made_by_hoist(commit: &Commit, facts: &Facts) -> bool {
    if commit.committer != committer(facts.author) {
        return false;
    }
    match facts.ownership {
        Ownership::Trailer => {
            let trailer = format!("{}: {}", message::TRAILER, facts.key);
            commit.message.lines().any(|l| l.trim() == trailer)
        }
        Ownership::Lineage => facts.remote_on_checkout,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "team/fleet";

    fn bot() -> Signature {
        Signature {
            name: "hoist-bot".into(),
            email: "bot@example.com".into(),
        }
    }

    fn commit(id: &str, parent: &str, tree: &str, by_hoist: bool) -> Commit {
        Commit {
            id: id.into(),
            parent: Some(parent.into()),
            tree: tree.into(),
            author: if by_hoist { "hoist-bot" } else { "alice" }.into(),
            committer: if by_hoist {
                "hoist-bot <bot@example.com>"
            } else {
                "alice <alice@example.com>"
            }
            .into(),
            message: if by_hoist {
                format!("Update app\n\n{}: {KEY}\n", message::TRAILER)
            } else {
                "fix the chart\n".into()
            },
        }
    }

    #[test]
    fn each_branch_state_comes_to_its_step() {
        let author = bot();
        let ours = commit("c0ffee", "base1", "tree2", true);
        let previous = commit("aaaa", "base0", "tree1", true);
        let same = commit("bbbb", "base1", "tree2", true);
        let foreign = commit("dddd", "aaaa", "tree3", false);
        // A copy of hoist's commit amended by someone else.
        let amended = Commit {
            committer: "alice <alice@example.com>".into(),
            ..previous.clone()
        };
        // Another automation's commit on the same branch.
        let other = Commit {
            message: format!("Update\n\n{}: team/other\n", message::TRAILER),
            ..previous.clone()
        };
        let facts = |owned, ours, complete, remote| Facts {
            key: KEY,
            author: &author,
            ownership: Ownership::Trailer,
            remote_on_checkout: false,
            branch: if owned { "hoist/update" } else { "main" },
            checkout_branch: "main",
            owned,
            pull_request: true,
            base: "base1",
            ours,
            complete,
            remote,
        };
        let push = |lease: &str| {
            Ok(Step::Push {
                lease: lease.into(),
            })
        };
        let foreign_commit = || Err("foreign_commit");
        let table: Vec<(Facts, Result<Step, &str>)> = vec![
            // The checkout branch: on the commit hoist built on.
            (facts(false, Some(&ours), true, None), push("base1")),
            (facts(false, None, true, None), Ok(Step::Nothing)),
            // A branch of hoist's own that does not exist yet.
            (facts(true, Some(&ours), true, None), push("")),
            // hoist's previous commit on an older base: over it, exactly.
            (facts(true, Some(&ours), true, Some(&previous)), push("aaaa")),
            // The same change on the same base is there already.
            (
                facts(true, Some(&ours), true, Some(&same)),
                Ok(Step::UpToDate),
            ),
            // Someone else's work on hoist's branch: refuse.
            (facts(true, Some(&ours), true, Some(&foreign)), foreign_commit()),
            (facts(true, Some(&ours), true, Some(&amended)), foreign_commit()),
            (facts(true, Some(&ours), true, Some(&other)), foreign_commit()),
            // Nothing to change and the base has it all: retire, or forget
            // a branch already gone, or leave someone's work alone.
            (
                facts(true, None, true, Some(&previous)),
                Ok(Step::Retire { tip: "aaaa".into() }),
            ),
            (facts(true, None, true, None), Ok(Step::Forget)),
            (
                facts(true, None, true, Some(&foreign)),
                Ok(Step::Leave {
                    warning: "main already has every change, but branch hoist/update has a commit hoist did not make (dddd); hoist leaves the branch and its pull request alone".into(),
                }),
            ),
            // A failed scan, a file that does not parse, no policy
            // selected: an empty rewrite proves nothing; keep the PR.
            (facts(true, None, false, Some(&previous)), Ok(Step::Nothing)),
        ];
        for (i, (facts, expected)) in table.into_iter().enumerate() {
            let got = step(&facts).map_err(|e| e.metric_label());
            assert_eq!(got, expected, "row {i}: {facts:?}");
        }
    }

    #[test]
    fn the_remote_is_read_only_when_the_step_depends_on_it() {
        let author = bot();
        let ours = commit("c0ffee", "base1", "tree2", true);
        let facts = |owned, ours, complete, pull_request| Facts {
            key: KEY,
            author: &author,
            ownership: Ownership::Trailer,
            remote_on_checkout: false,
            branch: if owned { "hoist/update" } else { "main" },
            checkout_branch: "main",
            owned,
            pull_request,
            base: "base1",
            ours,
            complete,
            remote: None,
        };
        assert!(!facts(false, Some(&ours), true, true).reads_remote());
        assert!(facts(true, Some(&ours), false, false).reads_remote());
        assert!(facts(true, None, true, true).reads_remote());
        assert!(!facts(true, None, false, true).reads_remote());
        // Without a pull request there is nothing to retire.
        assert!(!facts(true, None, true, false).reads_remote());
        let without = facts(true, None, true, false);
        assert_eq!(step(&without).ok(), Some(Step::Nothing));
    }

    #[test]
    fn without_a_trailer_the_lineage_and_the_committer_say_whose_commit_it_is() {
        let author = bot();
        let ours = commit("c0ffee", "base1", "tree2", true);
        // Flux's message: no trailer.
        let flux = |id: &str, parent: &str, committer: &str| Commit {
            id: id.into(),
            parent: Some(parent.into()),
            tree: "tree1".into(),
            author: "hoist-bot".into(),
            committer: committer.into(),
            message: "Update from image update automation".into(),
        };
        let previous = flux("aaaa", "base0", "hoist-bot <bot@example.com>");
        let amended = flux("aaaa", "base0", "alice <alice@example.com>");
        let facts = |remote, on_checkout| Facts {
            key: KEY,
            author: &author,
            ownership: Ownership::Lineage,
            branch: "auto",
            checkout_branch: "main",
            owned: true,
            pull_request: false,
            base: "base1",
            ours: Some(&ours),
            complete: true,
            remote: Some(remote),
            remote_on_checkout: on_checkout,
        };
        // hoist's earlier commit, on an earlier commit of main.
        assert_eq!(
            step(&facts(&previous, true)).ok(),
            Some(Step::Push {
                lease: "aaaa".into()
            })
        );
        // Someone's commit on top of it: its parent is not on main.
        let on_top = flux("eeee", "aaaa", "hoist-bot <bot@example.com>");
        assert!(step(&facts(&on_top, false)).is_err());
        // Amended by someone: the committer says so, whatever the lineage.
        assert!(step(&facts(&amended, true)).is_err());
        assert!(facts(&previous, false).reads_lineage(&previous));
        assert!(!facts(&amended, false).reads_lineage(&amended));
        // hoist's documents go by the trailer and never read the lineage.
        let trailer = Facts {
            ownership: Ownership::Trailer,
            ..facts(&previous, true)
        };
        assert!(step(&trailer).is_err());
        assert!(!trailer.reads_lineage(&previous));
    }
}
