//! The git stage against real remotes: file:// and git daemon.

use hoist::git::{Branch, Git, Push, Signature};

use crate::support::git::BareRepo;

const DEPLOY: &str = "image: ghcr.io/acme/app:1.0.0 # {\"$imagepolicy\": \"ns:app\"}\n";

fn hoist_signature() -> Signature {
    Signature {
        name: "hoist".into(),
        email: "hoist@example.com".into(),
    }
}

fn branch(url: String) -> Branch {
    Branch {
        url,
        name: "main".into(),
    }
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
        .checkout(
            cache.path(),
            &Branch {
                url: url.clone(),
                name: "nope".into(),
            },
        )
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
