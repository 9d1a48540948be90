//! The automation pipeline's decisions, through in-memory ports: what is
//! pushed where, over which lease, and what happens to the pull request,
//! without a git server or a forge.

use super::memory::{MemoryForges, MemoryGit, MemoryRecords};
use super::ports::Ports;
use super::{AutomationReport, PolicyRef, RunOptions, ScanReport, run_automations};
use crate::git::Signature;
use crate::load::ObjectSet;

const IMAGE: &str = "localhost:5000/team/app";

fn person() -> Signature {
    Signature {
        name: "alice".into(),
        email: "alice@example.com".into(),
    }
}

fn deployment(tag: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: app, namespace: team}}\nspec:\n  image: {IMAGE}:{tag} # {{\"$imagepolicy\": \"team:app\"}}\n"
    )
}

/// The automation `team/fleet` over the policy `team/app`; `push` adds a
/// `push:` block, `extra` more of the spec.
fn objects(push: &str, extra: &str) -> ObjectSet {
    let text = format!(
        "apiVersion: hoist.dev/v1alpha1
kind: ImageRepository
metadata: {{name: app, namespace: team}}
spec: {{image: {IMAGE}}}
---
apiVersion: hoist.dev/v1alpha1
kind: ImagePolicy
metadata: {{name: app, namespace: team}}
spec:
  imageRepositoryRef: {{name: app}}
  policy: {{semver: {{range: '^1'}}}}
---
apiVersion: hoist.dev/v1alpha1
kind: ImageUpdateAutomation
metadata: {{name: fleet, namespace: team}}
spec:
  interval: 5m
  git:
    url: https://github.com/acme/fleet.git
    checkout: {{ref: {{branch: main}}}}
    commit:
      author: {{name: hoist-bot, email: bot@example.com}}
{push}  update: {{path: ./clusters/prod}}
{extra}"
    );
    let mut set = ObjectSet::default();
    let mut errors = Vec::new();
    crate::load::load_text(
        std::path::Path::new("test.yaml"),
        &text,
        true,
        &mut set,
        &mut errors,
    );
    assert!(errors.is_empty(), "{errors:?}");
    set
}

const PULL_REQUEST: &str = "    push:
      branch: hoist/update
      pullRequest: {provider: github}
";

/// A scan that selected `tag` for `team/app`, or failed.
fn scan(tag: Option<&str>) -> ScanReport {
    ScanReport {
        policies: vec![PolicyRef {
            policy: "team/app".into(),
            repository: "team/app".into(),
            image: IMAGE.into(),
            name: IMAGE.into(),
            tag: tag.map(Into::into),
            digest: None,
            tags: 3,
            waiting: None,
            verified: None,
            passed_over: Vec::new(),
            promoted: None,
            error: tag.is_none().then(|| super::ErrorReport {
                kind: "registry",
                class: super::ErrorClass::Retry,
                message: "connection refused".into(),
            }),
        }],
        ..ScanReport::default()
    }
}

/// A remote whose `main` has the deployment at `tag`.
fn remote(tag: &str) -> MemoryGit {
    let git = MemoryGit::default();
    git.remote().commit_on(
        "main",
        &[("clusters/prod/app.yaml", &deployment(tag))],
        &person(),
        "initial",
    );
    git
}

struct World {
    git: MemoryGit,
    forges: MemoryForges,
    records: MemoryRecords,
    cache: tempfile::TempDir,
}

impl World {
    fn new(git: MemoryGit) -> World {
        let mut forges = MemoryForges::default();
        forges.env.insert("GITHUB_TOKEN".into(), "t0ken".into());
        World {
            git,
            forges,
            records: MemoryRecords::default(),
            cache: tempfile::tempdir().unwrap_or_else(|e| panic!("{e}")),
        }
    }

    fn options(&self) -> RunOptions {
        RunOptions {
            dry_run: false,
            cache: self.cache.path().to_path_buf(),
            push_attempts: 3,
            now: None,
            strict: false,
        }
    }

    async fn run_with(
        &self,
        objects: &ObjectSet,
        scan: &ScanReport,
        options: &RunOptions,
    ) -> AutomationReport {
        let ports = Ports {
            git: &self.git,
            forges: &self.forges,
            cluster: None,
            records: &self.records,
        };
        let mut reports = run_automations(objects, scan, ports, options).await;
        assert_eq!(reports.len(), 1);
        reports.remove(0)
    }

    async fn run(&self, objects: &ObjectSet, scan: &ScanReport) -> AutomationReport {
        self.run_with(objects, scan, &self.options()).await
    }

    fn file(&self, branch: &str) -> Option<String> {
        self.git.remote().file(branch, "clusters/prod/app.yaml")
    }
}

fn kind(report: &AutomationReport) -> Option<&'static str> {
    report.error.as_ref().map(|e| e.kind)
}

#[tokio::test]
async fn nothing_to_do_pushes_nothing() {
    let world = World::new(remote("1.1.0"));
    let report = world.run(&objects("", ""), &scan(Some("1.1.0"))).await;
    assert_eq!(kind(&report), None, "{report:?}");
    assert!(report.changes.is_empty());
    assert_eq!(report.commit, None);
    assert!(world.git.pushes().is_empty());
}

#[tokio::test]
async fn a_new_tag_is_pushed_onto_the_commit_it_was_made_on() {
    let world = World::new(remote("1.0.0"));
    let base = world.git.remote().branches.get("main").cloned();
    let report = world.run(&objects("", ""), &scan(Some("1.1.0"))).await;
    assert_eq!(kind(&report), None, "{report:?}");
    assert_eq!(world.file("main"), Some(deployment("1.1.0")));
    assert_eq!(
        world.git.pushes(),
        vec![("main".to_string(), base.unwrap_or_default())]
    );
    let tip = world.git.remote().branches.get("main").cloned();
    assert_eq!(report.commit, tip);
    let message = tip
        .and_then(|id| world.git.remote().info(&id))
        .map(|c| c.message)
        .unwrap_or_default();
    assert!(
        message.starts_with(&format!("Update {IMAGE} 1.0.0 → 1.1.0\n")),
        "{message}"
    );
}

#[tokio::test]
async fn a_push_race_is_lost_once_then_won_on_the_new_tip_keeping_the_other_commit() {
    let world = World::new(remote("1.0.0"));
    let mut raced = false;
    world.git.before_push(move |remote| {
        if !std::mem::replace(&mut raced, true) {
            remote.commit_on("main", &[("README.md", "hello\n")], &person(), "docs");
        }
    });
    let report = world.run(&objects("", ""), &scan(Some("1.1.0"))).await;
    assert_eq!(kind(&report), None, "{report:?}");
    let pushes = world.git.pushes();
    assert_eq!(pushes.len(), 2, "{pushes:?}");
    assert_ne!(pushes[0].1, pushes[1].1, "the retry leases the new tip");
    // hoist's commit sits on the other writer's, which is kept.
    let remote = world.git.remote();
    let tip = remote.branches.get("main").and_then(|id| remote.info(id));
    let parent = tip.as_ref().and_then(|t| t.parent.clone());
    assert_eq!(parent.as_deref(), Some(pushes[1].1.as_str()));
    assert_eq!(remote.file("main", "README.md").as_deref(), Some("hello\n"));
    drop(remote);
    assert_eq!(world.file("main"), Some(deployment("1.1.0")));
}

#[tokio::test]
async fn a_branch_that_keeps_moving_is_never_overwritten() {
    let world = World::new(remote("1.0.0"));
    let mut n = 0;
    world.git.before_push(move |remote| {
        n += 1;
        remote.commit_on("main", &[("notes", &format!("{n}\n"))], &person(), "notes");
    });
    let report = world.run(&objects("", ""), &scan(Some("1.1.0"))).await;
    assert_eq!(kind(&report), Some("branch_moved"), "{report:?}");
    assert_eq!(world.git.pushes().len(), 3);
    assert_eq!(report.commit, None);
    // The last writer's commit is main's tip; hoist's change is not there.
    assert_eq!(world.file("main"), Some(deployment("1.0.0")));
    let remote = world.git.remote();
    let tip = remote.branches.get("main").and_then(|id| remote.info(id));
    assert_eq!(tip.map(|t| t.author), Some("alice".to_string()));
}

#[tokio::test]
async fn a_pull_request_is_opened_then_left_alone_while_nothing_changes() {
    let world = World::new(remote("1.0.0"));
    let objects = objects(PULL_REQUEST, "");
    let first = world.run(&objects, &scan(Some("1.1.0"))).await;
    assert_eq!(kind(&first), None, "{first:?}");
    assert_eq!(world.file("hoist/update"), Some(deployment("1.1.0")));
    assert_eq!(world.file("main"), Some(deployment("1.0.0")));
    assert_eq!(
        world.git.pushes(),
        vec![("hoist/update".into(), String::new())]
    );
    let pulls = world.forges.forge.pulls();
    assert_eq!(pulls.len(), 1);
    assert!(pulls[0].open && pulls[0].head == "hoist/update" && pulls[0].base == "main");
    assert!(
        pulls[0]
            .body
            .contains(&format!("| {IMAGE} | 1.0.0 | 1.1.0 |")),
        "{}",
        pulls[0].body
    );

    // The same change on the same base: no push, the same pull request.
    let second = world.run(&objects, &scan(Some("1.1.0"))).await;
    assert_eq!(kind(&second), None, "{second:?}");
    assert_eq!(world.git.pushes().len(), 1);
    assert_eq!(second.commit, None);
    assert_eq!(world.forges.forge.pulls(), pulls);

    // A newer tag: hoist's branch is rebuilt over its own commit.
    let before = world.git.remote().branches.get("hoist/update").cloned();
    let third = world.run(&objects, &scan(Some("1.2.0"))).await;
    assert_eq!(kind(&third), None, "{third:?}");
    assert_eq!(
        world.git.pushes().last().cloned(),
        Some(("hoist/update".to_string(), before.unwrap_or_default()))
    );
    assert_eq!(world.file("hoist/update"), Some(deployment("1.2.0")));
    assert_eq!(
        world.forges.forge.pulls().len(),
        1,
        "one pull request, updated"
    );
}

#[tokio::test]
async fn someone_elses_commit_on_hoists_branch_stops_hoist_and_is_kept() {
    let world = World::new(remote("1.0.0"));
    let objects = objects(PULL_REQUEST, "");
    world.run(&objects, &scan(Some("1.1.0"))).await;
    let theirs = world.git.remote().commit_on(
        "hoist/update",
        &[("clusters/prod/extra.yaml", "kind: ConfigMap\n")],
        &person(),
        "tweak",
    );
    let report = world.run(&objects, &scan(Some("1.2.0"))).await;
    assert_eq!(kind(&report), Some("foreign_commit"), "{report:?}");
    assert_eq!(
        world.git.remote().branches.get("hoist/update"),
        Some(&theirs)
    );
    assert_eq!(world.git.pushes().len(), 1, "no push over their commit");
}

#[tokio::test]
async fn a_merged_pull_request_is_retired_and_its_branch_deleted() {
    let world = World::new(remote("1.0.0"));
    let objects = objects(PULL_REQUEST, "");
    world.run(&objects, &scan(Some("1.1.0"))).await;
    // Merged: main has the change now.
    world.git.remote().commit_on(
        "main",
        &[("clusters/prod/app.yaml", &deployment("1.1.0"))],
        &person(),
        "Merge pull request #1",
    );
    let report = world.run(&objects, &scan(Some("1.1.0"))).await;
    assert_eq!(kind(&report), None, "{report:?}");
    let pulls = world.forges.forge.pulls();
    assert!(!pulls[0].open, "closed");
    assert!(
        world
            .forges
            .forge
            .comments
            .lock()
            .map(|c| c.len())
            .unwrap_or(0)
            == 1,
        "with a comment saying why"
    );
    assert_eq!(world.git.remote().branches.get("hoist/update"), None);
    assert!(
        world
            .records
            .pull_requests
            .lock()
            .map(|r| r.is_empty())
            .unwrap_or(false)
    );
}

#[tokio::test]
async fn a_pull_request_is_kept_when_the_scan_failed_or_someone_committed_on_the_branch() {
    let world = World::new(remote("1.0.0"));
    let objects = objects(PULL_REQUEST, "");
    world.run(&objects, &scan(Some("1.1.0"))).await;
    world.git.remote().commit_on(
        "main",
        &[("clusters/prod/app.yaml", &deployment("1.1.0"))],
        &person(),
        "same change by hand",
    );
    // The registry is down: an empty rewrite proves nothing.
    let failed = world.run(&objects, &scan(None)).await;
    assert_eq!(kind(&failed), Some("scan"), "{failed:?}");
    assert!(world.forges.forge.pulls()[0].open);
    assert!(world.git.remote().branches.contains_key("hoist/update"));

    // Someone's commit on hoist's branch: left alone, with a warning.
    world.git.remote().commit_on(
        "hoist/update",
        &[("notes", "mine\n")],
        &person(),
        "keep this",
    );
    let kept = world.run(&objects, &scan(Some("1.1.0"))).await;
    assert_eq!(kind(&kept), None, "{kept:?}");
    assert!(world.forges.forge.pulls()[0].open);
    assert!(
        kept.warnings
            .iter()
            .any(|w| w.contains("has a commit hoist did not make")),
        "{kept:?}"
    );
}

#[tokio::test]
async fn outside_every_update_window_hoist_works_out_the_change_and_pushes_nothing() {
    let world = World::new(remote("1.0.0"));
    // Open 09:00–10:00 UTC; the clock says 12:00.
    let objects = objects(
        "",
        "  schedule:\n  - {cron: '0 9 * * *', duration: 1h, timeZone: UTC}\n",
    );
    let options = RunOptions {
        now: "2026-12-02T12:00:00Z".parse().ok(),
        ..world.options()
    };
    let report = world
        .run_with(&objects, &scan(Some("1.1.0")), &options)
        .await;
    assert_eq!(kind(&report), None, "{report:?}");
    let window = report
        .window
        .clone()
        .unwrap_or_else(|| panic!("{report:?}"));
    assert!(!window.open);
    assert_eq!(window.next_open.as_deref(), Some("2026-12-03T09:00:00Z"));
    assert_eq!(report.changes.len(), 1);
    assert!(world.git.pushes().is_empty());
    assert_eq!(world.file("main"), Some(deployment("1.0.0")));

    // Inside it, the same run pushes.
    let open = RunOptions {
        now: "2026-12-03T09:30:00Z".parse().ok(),
        ..world.options()
    };
    let report = world.run_with(&objects, &scan(Some("1.1.0")), &open).await;
    assert_eq!((kind(&report), report.window.is_none()), (None, true));
    assert_eq!(world.file("main"), Some(deployment("1.1.0")));
}

#[tokio::test]
async fn a_dry_run_reports_the_diff_and_pushes_nothing() {
    let world = World::new(remote("1.0.0"));
    let options = RunOptions {
        dry_run: true,
        ..world.options()
    };
    let report = world
        .run_with(&objects(PULL_REQUEST, ""), &scan(Some("1.1.0")), &options)
        .await;
    assert_eq!(kind(&report), None, "{report:?}");
    let diff = report.diff.unwrap_or_default();
    assert!(diff.contains(&format!("+  image: {IMAGE}:1.1.0")), "{diff}");
    assert!(world.git.pushes().is_empty());
    assert!(world.forges.forge.pulls().is_empty());
}

#[tokio::test]
async fn a_pull_request_without_a_token_fails_naming_the_field_after_the_push() {
    let mut world = World::new(remote("1.0.0"));
    world.forges.env.clear();
    let report = world
        .run(&objects(PULL_REQUEST, ""), &scan(Some("1.1.0")))
        .await;
    assert_eq!(kind(&report), Some("secret"), "{report:?}");
    let message = report.error.map(|e| e.message).unwrap_or_default();
    assert!(message.contains("GITHUB_TOKEN"), "{message}");
    // The branch was pushed; the next run opens the pull request.
    assert!(report.commit.is_some());
}
