//! Files in the repository that other files are made from must agree.

use crate::support::{hoist, repo_root};

/// `deploy/crds/` is the output of `hoist crds`; regenerate it with
/// `cargo run -- crds > deploy/crds/hoist.dev.yaml`.
#[test]
fn deploy_crds_match_hoist_crds() {
    let run = hoist(&repo_root(), &["crds"], "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    let committed = std::fs::read_to_string(repo_root().join("deploy/crds/hoist.dev.yaml"))
        .unwrap_or_else(|e| panic!("reading deploy/crds/hoist.dev.yaml: {e}"));
    assert!(
        committed == run.stdout,
        "deploy/crds/hoist.dev.yaml differs from `hoist crds`; regenerate it with \
         `cargo run -- crds > deploy/crds/hoist.dev.yaml`"
    );
    for kind in [
        "ImageRepository",
        "ImagePolicy",
        "ImageUpdateAutomation",
        "Receiver",
        "Provider",
        "Alert",
    ] {
        assert!(
            run.stdout.contains(&format!("kind: {kind}\n")),
            "{kind} missing"
        );
    }
    assert_eq!(run.stdout.matches("subresources:\n").count(), 6);
    assert_eq!(run.stdout.matches("additionalPrinterColumns:").count(), 6);
    assert_eq!(run.stdout.matches("openAPIV3Schema:").count(), 6);
}

/// Every example a user may copy loads without error or warning.
#[test]
fn every_example_in_policies_loads() {
    let dir = repo_root().join("policies");
    let mut checked = 0;
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{e}"))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    entries.sort();
    for path in entries {
        let set = hoist::load::load(std::slice::from_ref(&path))
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let objects = set.repositories.len()
            + set.policies.len()
            + set.automations.len()
            + set.receivers.len();
        assert!(objects > 0, "{} holds no hoist object", path.display());
        assert!(
            set.warnings.is_empty(),
            "{}: {:?}",
            path.display(),
            set.warnings
        );
        checked += 1;
    }
    assert!(checked >= 6, "only {checked} examples");
    let all = hoist::load::load(&[dir]).unwrap_or_else(|e| panic!("{e}"));
    // One example per policy kind, each showing filterTags.
    for kind in ["semver", "alphabetical", "numerical"] {
        let shown = all.policies.iter().any(|p| {
            let json = serde_json::to_value(&p.object.spec.policy).unwrap_or_default();
            json.get(kind).is_some() && p.object.spec.filter_tags.is_some()
        });
        assert!(shown, "no {kind} example with filterTags in policies/");
    }
    assert!(!all.repositories.is_empty());
}
