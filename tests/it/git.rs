//! The git stage against real remotes: file://, plain paths, git daemon
//! and smart HTTP.

use std::path::Path;

use hoist::git::{Git, GitCredentials, Push, Reference, Signature, Source};

use crate::support::git::{BareRepo, GitHttp, arm_hooks, git, marker_script};

const DEPLOY: &str = "image: ghcr.io/acme/app:1.0.0 # {\"$imagepolicy\": \"ns:app\"}\n";

fn hoist_signature() -> Signature {
    Signature {
        name: "hoist".into(),
        email: "hoist@example.com".into(),
    }
}

fn branch(url: String) -> Source {
    Source::branch(&url, "main")
}

#[test]
fn clone_commit_push_and_fetch_again() {
    let remote = BareRepo::new(&[("apps/deploy.yaml", DEPLOY), ("README", "fleet\n")]);
    let cache = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let git = Git::default();
    let checkout = git
        .checkout(cache.path(), &branch(remote.url()))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(checkout.base, remote.head("main"));
    // Nothing changed: no commit.
    assert_eq!(
        git.commit(&checkout, &hoist_signature(), "nothing").ok(),
        Some(None)
    );
    std::fs::write(
        checkout.dir.join("apps/deploy.yaml"),
        DEPLOY.replace("1.0.0", "1.1.0"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let commit = git
        .commit(
            &checkout,
            &hoist_signature(),
            "Update ghcr.io/acme/app to 1.1.0\n\nHoist-Automation: apps/fleet",
        )
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("expected a commit"));
    assert_eq!(
        git.push(&checkout, "main", &checkout.base).ok(),
        Some(Push::Pushed(commit.clone()))
    );
    assert_eq!(remote.head("main"), commit);
    assert_eq!(
        remote.log("main")[0],
        "hoist|Update ghcr.io/acme/app to 1.1.0"
    );
    assert!(remote.show("main", "apps/deploy.yaml").contains("1.1.0"));
    // Someone else commits; the next checkout fetches it into the same cache
    // directory and drops whatever hoist left in the tree.
    remote.commit_elsewhere("main", "README", "fleet, edited\n");
    std::fs::write(checkout.dir.join("stray.txt"), "left over").unwrap_or_else(|e| panic!("{e}"));
    let again = git
        .checkout(cache.path(), &branch(remote.url()))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again.dir, checkout.dir);
    assert_eq!(again.base, remote.head("main"));
    assert!(!again.dir.join("stray.txt").exists());
    assert_eq!(
        std::fs::read_to_string(again.dir.join("README"))
            .ok()
            .as_deref(),
        Some("fleet, edited\n")
    );
}

#[test]
fn a_push_race_overwrites_nothing_and_a_retry_lands_both() {
    let remote = BareRepo::new(&[("apps/deploy.yaml", DEPLOY), ("README", "fleet\n")]);
    let cache = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let git = Git::default();
    let checkout = git
        .checkout(cache.path(), &branch(remote.url()))
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        checkout.dir.join("apps/deploy.yaml"),
        DEPLOY.replace("1.0.0", "1.1.0"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    git.commit(&checkout, &hoist_signature(), "hoist's change")
        .unwrap_or_else(|e| panic!("{e}"));
    // Between hoist's fetch and its push, another commit lands.
    remote.commit_elsewhere("main", "README", "someone else\n");
    let theirs = remote.head("main");
    let push = git
        .push(&checkout, "main", &checkout.base)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(push, Push::Rejected(_)), "{push:?}");
    assert_eq!(remote.head("main"), theirs, "their commit was overwritten");
    // Fetch, re-apply on the new tip, push again: both commits are there.
    let again = git
        .checkout(cache.path(), &branch(remote.url()))
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        again.dir.join("apps/deploy.yaml"),
        DEPLOY.replace("1.0.0", "1.1.0"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    git.commit(&again, &hoist_signature(), "hoist's change")
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        git.push(&again, "main", &again.base),
        Ok(Push::Pushed(_))
    ));
    let log = remote.log("main");
    assert_eq!(
        log[..2],
        [
            "hoist|hoist's change".to_string(),
            "Someone Else|someone else's change".to_string()
        ]
    );
}

#[test]
fn git_daemon_and_clear_errors() {
    let remote = BareRepo::new(&[("apps/deploy.yaml", DEPLOY)]);
    let (_daemon, url) = remote.serve();
    let cache = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let git = Git::default();
    let checkout = git
        .checkout(cache.path(), &branch(url.clone()))
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        checkout.dir.join("apps/deploy.yaml"),
        DEPLOY.replace("1.0.0", "2.0.0"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    git.commit(&checkout, &hoist_signature(), "over git://")
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        git.push(&checkout, "main", &checkout.base),
        Ok(Push::Pushed(_))
    ));
    assert!(remote.show("main", "apps/deploy.yaml").contains("2.0.0"));
    // A branch that does not exist.
    let missing = git
        .checkout(cache.path(), &Source::branch(&url, "nope"))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert_eq!(missing, format!("{url}: branch \"nope\" does not exist"));
    // A repository that does not exist; credentials in a URL never show.
    let unknown = git
        .checkout(
            cache.path(),
            &branch("https://bot:t0psecret@127.0.0.1:1/none.git".into()),
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(unknown.starts_with("git clone: "), "{unknown}");
    assert!(!unknown.contains("t0psecret"), "{unknown}");
}

/// What the marker file says ran, for an assertion message.
fn ran(marker: &Path) -> String {
    std::fs::read_to_string(marker).unwrap_or_default()
}

/// Every operation hoist makes against `url`: clone, commit, push, a new
/// branch and its deletion, ls-remote, a fetch of a tip, a second fetch.
fn every_operation(git: &Git, cache: &Path, url: &str, marker: &Path) {
    let checkout = git
        .checkout(cache, &branch(url.to_string()))
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    // The cache's own hooks are off too.
    arm_hooks(&checkout.dir.join(".git/hooks"), marker);
    std::fs::write(
        checkout.dir.join("apps/deploy.yaml"),
        DEPLOY.replace("1.0.0", "1.1.0"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    git.commit(&checkout, &hoist_signature(), "hoist's change")
        .unwrap_or_else(|e| panic!("{e}"));
    let pushed = git.push(&checkout, "main", &checkout.base);
    assert!(matches!(pushed, Ok(Push::Pushed(_))), "{url}: {pushed:?}");
    let created = git.push(&checkout, "hoist/side", "");
    assert!(matches!(created, Ok(Push::Pushed(_))), "{url}: {created:?}");
    let side = git
        .remote_head(&checkout, "hoist/side")
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_default();
    let deleted = git.delete_branch(&checkout, "hoist/side", &side);
    assert!(matches!(deleted, Ok(Push::Pushed(_))), "{url}: {deleted:?}");
    git.tip(&checkout, "main").unwrap_or_else(|e| panic!("{e}"));
    git.checkout(cache, &branch(url.to_string()))
        .unwrap_or_else(|e| panic!("{url}: {e}"));
}

#[test]
fn no_hook_of_a_local_remote_or_of_the_cache_runs() {
    for hooks_in_config in [false, true] {
        for plain_path in [false, true] {
            let remote = BareRepo::new(&[("apps/deploy.yaml", DEPLOY)]);
            let scratch = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
            let marker = scratch.path().join("marker");
            if hooks_in_config {
                // The repository's own configuration names its hooks.
                let hooks = scratch.path().join("hooks");
                arm_hooks(&hooks, &marker);
                git(
                    &remote.path,
                    &["config", "core.hooksPath", &hooks.display().to_string()],
                );
            } else {
                arm_hooks(&remote.path.join("hooks"), &marker);
            }
            let fsmonitor = scratch.path().join("fsmonitor");
            marker_script(&fsmonitor, "core.fsmonitor", &marker);
            git(
                &remote.path,
                &["config", "core.fsmonitor", &fsmonitor.display().to_string()],
            );
            let url = if plain_path {
                remote.path.display().to_string()
            } else {
                remote.url()
            };
            let cache = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
            every_operation(&Git::default(), cache.path(), &url, &marker);
            assert!(
                !marker.exists(),
                "{url} (hooks in config: {hooks_in_config}) ran: {}",
                ran(&marker)
            );
            assert_eq!(remote.log("main")[0], "hoist|hoist's change");
        }
    }
}

#[test]
fn a_remote_with_a_work_tree_is_never_updated_in_place() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let work = dir.path().join("work");
    git(
        dir.path(),
        &["init", "--quiet", "--initial-branch=main", "work"],
    );
    std::fs::create_dir_all(work.join("apps")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(work.join("apps/deploy.yaml"), DEPLOY).unwrap_or_else(|e| panic!("{e}"));
    git(&work, &["add", "--all"]);
    git(&work, &["commit", "--quiet", "-m", "seed"]);
    let marker = dir.path().join("marker");
    arm_hooks(&work.join(".git/hooks"), &marker);
    let fsmonitor = dir.path().join("fsmonitor");
    marker_script(&fsmonitor, "core.fsmonitor", &marker);
    git(
        &work,
        &["config", "core.fsmonitor", &fsmonitor.display().to_string()],
    );
    // Updating the work tree would run its fsmonitor, hooks and filters.
    git(
        &work,
        &["config", "receive.denyCurrentBranch", "updateInstead"],
    );
    let cache = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let git = Git::default();
    let url = format!("file://{}", work.display());
    let checkout = git
        .checkout(cache.path(), &branch(url))
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        checkout.dir.join("apps/deploy.yaml"),
        DEPLOY.replace("1.0.0", "1.1.0"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    git.commit(&checkout, &hoist_signature(), "hoist's change")
        .unwrap_or_else(|e| panic!("{e}"));
    let push = git.push(&checkout, "main", &checkout.base);
    assert!(push.is_err(), "{push:?}");
    assert!(!marker.exists(), "ran: {}", ran(&marker));
    assert_eq!(
        std::fs::read_to_string(work.join("apps/deploy.yaml")).ok(),
        Some(DEPLOY.to_string())
    );
}

#[test]
fn the_fsmonitor_in_a_cache_configuration_never_runs() {
    let remote = BareRepo::new(&[("apps/deploy.yaml", DEPLOY)]);
    let cache = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let marker = cache.path().join("marker");
    let git = Git::default();
    let checkout = git
        .checkout(cache.path(), &branch(remote.url()))
        .unwrap_or_else(|e| panic!("{e}"));
    let fsmonitor = cache.path().join("fsmonitor");
    marker_script(&fsmonitor, "core.fsmonitor", &marker);
    crate::support::git::git(
        &checkout.dir,
        &["config", "core.fsmonitor", &fsmonitor.display().to_string()],
    );
    std::fs::write(
        checkout.dir.join("apps/deploy.yaml"),
        DEPLOY.replace("1.0.0", "1.1.0"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    git.commit(&checkout, &hoist_signature(), "hoist's change")
        .unwrap_or_else(|e| panic!("{e}"));
    git.checkout(cache.path(), &branch(remote.url()))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!marker.exists(), "ran: {}", ran(&marker));
}

#[test]
fn a_commit_message_of_any_size() {
    let remote = BareRepo::new(&[("apps/deploy.yaml", DEPLOY)]);
    let cache = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let git = Git::default();
    let checkout = git
        .checkout(cache.path(), &branch(remote.url()))
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        checkout.dir.join("apps/deploy.yaml"),
        DEPLOY.replace("1.0.0", "1.1.0"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    // Over 128 KiB, the most one argument may be on Linux.
    let body = "- ghcr.io/acme/app: 1.0.0 → 1.1.0\n".repeat(6000);
    let message = format!("Update 6000 images\n\n{body}");
    assert!(message.len() > 200 * 1024);
    let id = git
        .commit(&checkout, &hoist_signature(), &message)
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("expected a commit"));
    let commit = git
        .commit_info(&checkout, &id)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(commit.message.trim_end(), message.trim_end());
}

#[test]
fn a_push_that_loses_the_race_at_the_ref_lock_is_rejected_and_a_retry_lands() {
    let remote = BareRepo::new(&[("apps/deploy.yaml", DEPLOY), ("README", "fleet\n")]);
    // The server (not hoist) moves the branch after the advertisement and
    // before its own update takes the lock, once.
    let once = remote.path.join("raced");
    let hook = remote.path.join("hooks/update");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\n[ -e '{once}' ] && exit 0\ntouch '{once}'\ntree=$(git rev-parse \"$2^{{tree}}\")\nc=$(echo raced | git -c user.name=Racer -c user.email=r@example.com commit-tree -p \"$2\" \"$tree\")\ngit update-ref \"$1\" \"$c\" \"$2\"\n",
            once = once.display()
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let (_daemon, url) = remote.serve();
    let cache = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let git = Git::default();
    let mut pushes = Vec::new();
    for _ in 0..2 {
        let checkout = git
            .checkout(cache.path(), &branch(url.clone()))
            .unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(
            checkout.dir.join("apps/deploy.yaml"),
            DEPLOY.replace("1.0.0", "1.1.0"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        git.commit(&checkout, &hoist_signature(), "hoist's change")
            .unwrap_or_else(|e| panic!("{e}"));
        pushes.push(git.push(&checkout, "main", &checkout.base));
    }
    assert!(matches!(pushes[0], Ok(Push::Rejected(_))), "{pushes:?}");
    assert!(matches!(pushes[1], Ok(Push::Pushed(_))), "{pushes:?}");
    assert_eq!(
        remote.log("main")[..2],
        [
            "hoist|hoist's change".to_string(),
            "Racer|raced".to_string()
        ]
    );
}

#[test]
fn userinfo_in_a_url_reaches_git_only_through_askpass() {
    use std::os::unix::fs::PermissionsExt;
    let remote = BareRepo::new(&[("apps/deploy.yaml", DEPLOY)]);
    let base = remote.path.parent().unwrap_or(&remote.path);
    let http = GitHttp::start(base, "bot", "p@ss:w0rd/x");
    let url = format!(
        "http://bot:p%40ss%3Aw0rd%2Fx@{}/fleet.git",
        http.server.addr
    );
    let scratch = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let trace = scratch.path().join("trace");
    let mut git = Git::default();
    git.env.push(("GIT_TRACE".into(), trace.clone().into()));
    let cache = scratch.path().join("state/git");
    let checkout = git
        .checkout(&cache, &branch(url.clone()))
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        checkout.dir.join("apps/deploy.yaml"),
        DEPLOY.replace("1.0.0", "1.1.0"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    git.commit(&checkout, &hoist_signature(), "over http")
        .unwrap_or_else(|e| panic!("{e}"));
    let push = git.push(&checkout, "main", &checkout.base);
    assert!(matches!(push, Ok(Push::Pushed(_))), "{push:?}");
    assert_eq!(
        git.remote_head(&checkout, "main").ok().flatten(),
        Some(remote.head("main"))
    );
    git.checkout(&cache, &branch(url))
        .unwrap_or_else(|e| panic!("{e}"));
    let config = std::fs::read_to_string(checkout.dir.join(".git/config")).unwrap_or_default();
    assert!(config.contains("url = http://"), "{config}");
    let argv = std::fs::read_to_string(&trace).unwrap_or_default();
    assert!(argv.contains("git clone"), "no trace of the clone");
    for secret in ["w0rd", "p%40ss"] {
        assert!(
            !config.contains(secret),
            ".git/config holds {secret}: {config}"
        );
        assert!(!argv.contains(secret), "argv holds {secret}: {argv}");
    }
    for dir in [&cache, &checkout.dir] {
        let mode = std::fs::metadata(dir)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or_default();
        assert_eq!(mode, 0o700, "{}", dir.display());
    }
}

/// Flux's `bearerToken`: sent as `Authorization: Bearer`, through git's
/// environment configuration, never argv or a file; masked in what the
/// server says; refused beside a username/password.
#[test]
fn a_bearer_token_reaches_the_server_and_nothing_else() {
    let remote = BareRepo::new(&[("apps/deploy.yaml", DEPLOY)]);
    let base = remote.path.parent().unwrap_or(&remote.path);
    let http = GitHttp::bearer(base, "t0k3n-b3arer");
    let url = format!("http://{}/fleet.git", http.server.addr);
    let scratch = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let trace = scratch.path().join("trace");
    let cache = scratch.path().join("state/git");
    // Without the token the server refuses.
    assert!(
        Git::default()
            .checkout(&cache, &branch(url.clone()))
            .is_err()
    );
    let credentials = GitCredentials {
        bearer_token: Some("t0k3n-b3arer".into()),
        ..GitCredentials::default()
    };
    let mut git = Git::default()
        .with_credentials(&credentials, &scratch.path().join("credentials"))
        .unwrap_or_else(|e| panic!("{e}"));
    git.env.push(("GIT_TRACE".into(), trace.clone().into()));
    let checkout = git
        .checkout(&cache, &branch(url.clone()))
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        checkout.dir.join("apps/deploy.yaml"),
        DEPLOY.replace("1.0.0", "1.1.0"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    git.commit(&checkout, &hoist_signature(), "with a bearer token")
        .unwrap_or_else(|e| panic!("{e}"));
    let push = git.push(&checkout, "main", &checkout.base);
    assert!(matches!(push, Ok(Push::Pushed(_))), "{push:?}");
    assert_eq!(remote.log("main")[0], "hoist|with a bearer token");
    let argv = std::fs::read_to_string(&trace).unwrap_or_default();
    assert!(argv.contains("git push"), "no trace of the push");
    assert!(!argv.contains("t0k3n"), "argv holds the token: {argv}");
    let config = std::fs::read_to_string(checkout.dir.join(".git/config")).unwrap_or_default();
    assert!(!config.contains("t0k3n"), "{config}");
    let both = GitCredentials {
        username: Some("bot".into()),
        ..credentials
    };
    let refused = Git::default()
        .with_credentials(&both, &scratch.path().join("credentials"))
        .err()
        .map(|e| e.to_string());
    assert_eq!(
        refused.as_deref(),
        Some("git credentials: the Secret holds bearerToken and username/password; keep one")
    );
}

#[test]
fn key_files_last_as_long_as_the_git_that_uses_them() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let credentials = GitCredentials {
        username: Some("bot".into()),
        password: Some("pw".into()),
        bearer_token: None,
        identity: Some(b"-----BEGIN OPENSSH PRIVATE KEY-----\n".to_vec()),
        known_hosts: Some(b"[127.0.0.1]:22 ssh-ed25519 AAAA\n".to_vec()),
        signing: Some(hoist::git::SigningKey::Ssh {
            key: b"-----BEGIN OPENSSH PRIVATE KEY-----\n".to_vec(),
            passphrase: None,
        }),
    };
    let files = |root: &Path| -> Vec<String> {
        let mut found = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                if entry.path().is_dir() {
                    stack.push(entry.path());
                } else {
                    found.push(entry.file_name().to_string_lossy().into_owned());
                }
            }
        }
        found.sort();
        found
    };
    let git = Git::default()
        .with_credentials(&credentials, &dir.path().join("credentials"))
        .unwrap_or_else(|e| panic!("{e}"));
    let copy = git.clone();
    assert_eq!(
        files(dir.path()),
        ["askpass", "identity", "known_hosts", "signing-key"]
    );
    drop(git);
    assert_eq!(files(dir.path()).len(), 4, "removed while a copy uses them");
    drop(copy);
    assert_eq!(files(dir.path()), Vec::<String>::new());
}

#[test]
fn what_a_remote_prints_is_scrubbed_and_escaped() {
    let remote = BareRepo::new(&[("apps/deploy.yaml", DEPLOY)]);
    // The server's hook echoes the secret and colours the terminal.
    let hook = remote.path.join("hooks/pre-receive");
    std::fs::write(
        &hook,
        "#!/bin/sh\nprintf '\\033[31merror: forged, token t0k3n-s3cret\\n' >&2\nexit 1\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let (_daemon, url) = remote.serve();
    let cache = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let git = Git::default()
        .with_credentials(
            &GitCredentials {
                username: Some("bot".into()),
                password: Some("t0k3n-s3cret".into()),
                ..GitCredentials::default()
            },
            &cache.path().join("credentials"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let checkout = git
        .checkout(cache.path(), &branch(url))
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        checkout.dir.join("apps/deploy.yaml"),
        DEPLOY.replace("1.0.0", "1.1.0"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    git.commit(&checkout, &hoist_signature(), "refused")
        .unwrap_or_else(|e| panic!("{e}"));
    let error = git
        .push(&checkout, "main", &checkout.base)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(error.contains("pre-receive hook declined"), "{error}");
    assert!(error.contains("\\x1b[31m"), "{error}");
    assert!(!error.contains('\x1b'), "{error:?}");
    assert!(!error.contains("t0k3n-s3cret"), "{error}");
}

/// Flux's GitRepository refs other than a branch: a tag (annotated or
/// not), the highest tag in a semver range, a full ref name and a commit,
/// over git's own network protocol; hoist's commit on top of one goes to
/// a branch of its own.
#[test]
fn checkouts_of_a_tag_a_semver_range_a_ref_name_and_a_commit() {
    let remote = BareRepo::new(&[("apps/deploy.yaml", DEPLOY), ("README", "fleet\n")]);
    let seed = remote.head("main");
    git(
        &remote.path,
        &["tag", "-a", "v1.0.0", "-m", "release", &seed],
    );
    remote.commit_elsewhere("main", "README", "fleet 1.2\n");
    let second = remote.head("main");
    git(&remote.path, &["tag", "v1.2.0", &second]);
    remote.commit_elsewhere("main", "README", "fleet 2.0 rc\n");
    git(&remote.path, &["tag", "v2.0.0-rc.1", "main"]);
    remote.commit_elsewhere("main", "README", "fleet next\n");
    let (_daemon, url) = remote.serve();
    let cache = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let git_ = Git::default();
    let at = |reference: Reference| {
        git_.checkout(
            cache.path(),
            &Source {
                url: url.clone(),
                reference,
            },
        )
    };
    let base = |reference: Reference| {
        at(reference)
            .map(|c| c.base)
            .unwrap_or_else(|e| panic!("{e}"))
    };
    // An annotated tag checks out the commit it names.
    assert_eq!(base(Reference::Tag("v1.0.0".into())), seed);
    assert_eq!(base(Reference::Semver(">=1.0.0 <2.0.0".into())), second);
    assert_eq!(
        base(Reference::Name("refs/heads/main".into())),
        remote.head("main")
    );
    assert_eq!(base(Reference::Commit(second.clone())), second);
    // Asked again, a cached checkout follows a tag that moved.
    git(&remote.path, &["tag", "--force", "v1.2.0", &seed]);
    assert_eq!(base(Reference::Semver("~1.2".into())), seed);
    for (reference, missing) in [
        (Reference::Tag("v9.0.0".into()), "tag \"v9.0.0\""),
        (
            Reference::Semver(">=3.0.0".into()),
            "the highest tag in semver range \">=3.0.0\"",
        ),
    ] {
        let error = at(reference).err().map(|e| e.to_string());
        assert_eq!(error, Some(format!("{url}: {missing} does not exist")));
    }
    // hoist's commit on a tag goes to a branch of its own.
    let checkout = at(Reference::Tag("v1.0.0".into())).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        checkout.dir.join("apps/deploy.yaml"),
        DEPLOY.replace("1.0.0", "1.0.1"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let commit = git_
        .commit(&checkout, &hoist_signature(), "Update on the release")
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("expected a commit"));
    assert_eq!(
        git_.push(&checkout, "release-fixes", "").ok(),
        Some(Push::Pushed(commit.clone()))
    );
    assert_eq!(remote.head("release-fixes"), commit);
    assert_eq!(
        git(&remote.path, &["rev-parse", "release-fixes^"]).trim(),
        seed
    );
    // Lineage: the seed is in main's history, though the checkout is
    // shallow; hoist's commit on the tag is not.
    let main = at(Reference::Branch("main".into())).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(git_.contains(&main, &main.base).ok(), Some(true));
    git_.tip(&main, "release-fixes")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(git_.contains(&main, &seed).ok(), Some(true));
    assert_eq!(git_.contains(&main, &commit).ok(), Some(false));
}
