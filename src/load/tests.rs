use super::*;
use crate::git::Reference;

fn load_str(text: &str) -> Result<ObjectSet, LoadErrors> {
    let mut set = ObjectSet::default();
    let mut errors = Vec::new();
    load_text(Path::new("test.yaml"), text, true, &mut set, &mut errors);
    finish(&mut set, &mut errors);
    if errors.is_empty() {
        Ok(set)
    } else {
        Err(LoadErrors {
            errors,
            warnings: Vec::new(),
        })
    }
}

fn error_of(text: &str) -> String {
    match load_str(text) {
        Ok(set) => panic!("expected an error, loaded {set:?}"),
        Err(e) => e.to_string(),
    }
}

const POLICY_HEAD: &str = "apiVersion: hoist.dev/v1alpha1
kind: ImagePolicy
metadata:
  name: app
spec:
  imageRepositoryRef:
    name: app
";

#[test]
fn reads_all_three_kinds_and_defaults_the_namespace() {
    let set = load_str(
        "apiVersion: hoist.dev/v1alpha1
kind: ImageRepository
metadata: {name: app, namespace: apps}
spec:
  image: ghcr.io/acme/app
  interval: 5m
---
apiVersion: hoist.dev/v1alpha1
kind: ImagePolicy
metadata: {name: app}
spec:
  imageRepositoryRef: {name: app, namespace: apps}
  policy: {semver: {range: '^1'}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: skipped}
---
apiVersion: hoist.dev/v1alpha1
kind: ImageUpdateAutomation
metadata: {name: fleet}
spec:
  interval: 10m
  git:
    url: https://git.example.com/acme/fleet.git
    checkout: {ref: {branch: main}}
  update: {path: ./clusters/prod}
",
    );
    let set = match set {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(set.repositories.len(), 1);
    assert_eq!(
        set.repositories[0].object.metadata.namespace.as_deref(),
        Some("apps")
    );
    assert_eq!(set.policies.len(), 1);
    assert_eq!(
        set.policies[0].object.metadata.namespace.as_deref(),
        Some("default")
    );
    assert_eq!(set.policies[0].origin.line, 8);
    assert_eq!(set.automations.len(), 1);
    assert_eq!(
        set.automations[0].object.spec.git.checkout.reference.branch,
        "main"
    );
    assert!(set.warnings.is_empty(), "{:?}", set.warnings);
}

#[test]
fn reads_flux_documents_unchanged() {
    for version in ["v1", "v1beta2"] {
        let text = format!(
            "apiVersion: image.toolkit.fluxcd.io/{version}
kind: ImageRepository
metadata:
  name: podinfo
  namespace: flux-system
spec:
  image: ghcr.io/stefanprodan/podinfo
  interval: 1m0s
  provider: generic
---
apiVersion: image.toolkit.fluxcd.io/{version}
kind: ImagePolicy
metadata:
  name: podinfo
  namespace: flux-system
spec:
  imageRepositoryRef:
    name: podinfo
  filterTags:
    pattern: '^main-[a-f0-9]+-(?P<ts>[0-9]+)'
    extract: '$ts'
  policy:
    numerical:
      order: asc
---
apiVersion: image.toolkit.fluxcd.io/{version}
kind: ImageUpdateAutomation
metadata: {{name: flux-system, namespace: flux-system}}
spec:
  interval: 30m
  sourceRef: {{kind: GitRepository, name: flux-system}}
  git:
    checkout:
      ref:
        branch: main
    commit:
      author:
        email: fluxcdbot@users.noreply.github.com
        name: fluxcdbot
    push:
      branch: main
  update:
    path: ./clusters/my-cluster
    strategy: Setters
---
apiVersion: source.toolkit.fluxcd.io/{version}
kind: GitRepository
metadata: {{name: flux-system, namespace: flux-system}}
spec:
  interval: 1m0s
  ref:
    branch: main
  secretRef:
    name: flux-system
  url: ssh://git@github.com/acme/fleet
"
        );
        let set = match load_str(&text) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(set.repositories.len(), 1, "{version}");
        assert_eq!(set.policies.len(), 1, "{version}");
        assert!(set.warnings.is_empty(), "{:?}", set.warnings);
        let [automation] = set.automations.as_slice() else {
            panic!("{version}: {:?}", set.automations)
        };
        let spec = &automation.object.spec;
        assert_eq!(spec.git.url, "ssh://git@github.com/acme/fleet");
        assert_eq!(
            spec.git.secret_ref.as_ref().map(|r| r.name.as_str()),
            Some("flux-system")
        );
        assert_eq!(spec.git.secret_namespace, None);
        assert_eq!(spec.git.checkout.reference.branch, "main");
        assert_eq!(spec.git.commit.author.name, "fluxcdbot");
        assert_eq!(
            spec.git.commit.author.email,
            "fluxcdbot@users.noreply.github.com"
        );
        assert_eq!(spec.git.commit.format, crate::api::MessageFormat::Flux);
        assert_eq!(spec.update.path, "./clusters/my-cluster");
        assert_eq!(spec.interval.0, "30m");
        assert_eq!(automation.origin.line, 26, "the automation's own document");
    }
}

/// The GitRepository may come after the automation and live in another
/// namespace (its Secret with it); without a checkout ref on the
/// automation, the GitRepository's branch (default master) is checked out.
#[test]
fn a_flux_automation_takes_its_repository_from_the_git_repository_it_names() {
    let set = load_str(
        "apiVersion: image.toolkit.fluxcd.io/v1
kind: ImageUpdateAutomation
metadata: {name: apps, namespace: team-a}
spec:
  interval: 5m
  sourceRef: {kind: GitRepository, name: fleet, namespace: flux-system}
  git:
    commit: {author: {email: bot@example.com}}
  update: {path: ./apps/app.yaml}
  policySelector: {matchLabels: {team: a}}
---
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {name: fleet, namespace: flux-system}
spec:
  url: https://git.example.com/fleet.git
  secretRef: {name: https-credentials}
",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let [automation] = set.automations.as_slice() else {
        panic!("{:?}", set.automations)
    };
    let spec = &automation.object.spec;
    assert_eq!(spec.git.url, "https://git.example.com/fleet.git");
    assert_eq!(spec.git.secret_namespace.as_deref(), Some("flux-system"));
    assert_eq!(spec.git.checkout.reference.branch, "master");
    assert_eq!(
        spec.git.commit.author.name, "bot",
        "Flux's author name is optional; git needs one"
    );
    assert_eq!(spec.git.push, None, "pushes to the checkout branch");
    assert_eq!(spec.update.path, "./apps/app.yaml");
    assert!(spec.policy_selector.is_some());
}

/// Flux's ref precedence (commit, name, semver, tag, branch) picks the
/// checkout, from the automation's `checkout.ref` when it has one, from
/// the GitRepository's otherwise; it pushes to a branch of its own.
#[test]
fn a_flux_checkout_by_tag_semver_name_or_commit_pushes_to_its_own_branch() {
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let document = |automation_ref: &str, repository_ref: &str| {
        format!(
            "apiVersion: image.toolkit.fluxcd.io/v1
kind: ImageUpdateAutomation
metadata: {{name: auto, namespace: flux-system}}
spec:
  interval: 5m
  sourceRef: {{kind: GitRepository, name: fleet}}
  git:
{automation_ref}    commit: {{author: {{email: bot@example.com}}}}
    push: {{branch: image-updates}}
---
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {{name: fleet, namespace: flux-system}}
spec:
  url: https://git.example.com/fleet.git
  ref: {repository_ref}
"
        )
    };
    let cases = [
        (
            "",
            "{branch: main, tag: v1.0.0}",
            Reference::Tag("v1.0.0".into()),
        ),
        (
            "",
            "{tag: v1.0.0, semver: '~1.0'}",
            Reference::Semver("~1.0".into()),
        ),
        (
            "",
            &format!("{{branch: main, commit: {commit}}}"),
            Reference::Commit(commit.into()),
        ),
        (
            "    checkout: {ref: {name: refs/heads/release, tag: v2}}\n",
            "{tag: v1.0.0}",
            Reference::Name("refs/heads/release".into()),
        ),
        (
            "    checkout: {ref: {branch: develop}}\n",
            "{tag: v1.0.0}",
            Reference::Branch("develop".into()),
        ),
    ];
    for (automation_ref, repository_ref, expected) in cases {
        let set = load_str(&document(automation_ref, repository_ref))
            .unwrap_or_else(|e| panic!("{repository_ref}: {e}"));
        let spec = &set.automations[0].object.spec;
        assert_eq!(spec.git.checkout.reference.reference(), expected);
        assert_eq!(
            spec.git.push.as_ref().and_then(|p| p.branch.as_deref()),
            Some("image-updates")
        );
    }
}

/// hoist's own documents take the same refs, one at a time; what cannot
/// work is refused with the field named.
#[test]
fn a_hoist_checkout_names_one_ref_and_a_branch_to_push_to_when_it_is_not_one() {
    let document = |git: &str| {
        format!(
            "apiVersion: hoist.dev/v1alpha1
kind: ImageUpdateAutomation
metadata: {{name: auto, namespace: team}}
spec:
  interval: 5m
  git:
    url: https://git.example.com/fleet.git
    commit: {{author: {{name: bot, email: bot@example.com}}}}
{git}
  update: {{path: ./}}
"
        )
    };
    let set = load_str(&document(
        "    checkout: {ref: {tag: v1.0.0}}\n    push: {branch: hotfix}",
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        set.automations[0]
            .object
            .spec
            .git
            .checkout
            .reference
            .reference(),
        Reference::Tag("v1.0.0".into())
    );
    for (git, expected) in [
        (
            "    checkout: {ref: {tag: v1.0.0, semver: '>=1'}}\n    push: {branch: x}",
            "spec.git.checkout.ref.semver: give one of tag, semver, name and commit, not tag and semver",
        ),
        (
            "    checkout: {ref: {branch: main, tag: v1.0.0}}\n    push: {branch: x}",
            "spec.git.checkout.ref.tag: give a branch or a tag",
        ),
        (
            "    checkout: {ref: {tag: v1.0.0}}",
            "spec.git.push.branch: missing; a checkout of tag \"v1.0.0\" needs a branch to push to",
        ),
        (
            "    checkout: {ref: {}}",
            "spec.git.checkout.ref.branch: missing",
        ),
        (
            "    checkout: {ref: {tag: v1.0.0}}\n    push: {branch: x, pullRequest: {provider: github}}",
            "spec.git.push.pullRequest: a pull request is opened against the checkout branch, and tag \"v1.0.0\" is not one",
        ),
    ] {
        let error = error_of(&document(git));
        assert!(error.contains(expected), "{error}\nexpected: {expected}");
    }
}

/// A Flux field hoist cannot honour yet stops the load, naming it: a
/// signature, a push target or a checkout ref is never dropped quietly.
#[test]
fn flux_fields_hoist_cannot_honour_are_errors_that_name_them() {
    let automation = |git: &str| {
        format!(
            "apiVersion: image.toolkit.fluxcd.io/v1
kind: ImageUpdateAutomation
metadata: {{name: auto, namespace: flux-system}}
spec:
  interval: 5m
  sourceRef: {{kind: GitRepository, name: fleet}}
  git:
{git}
---
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {{name: fleet, namespace: flux-system}}
spec:
  url: https://git.example.com/fleet.git
  ref: {{branch: main}}
"
        )
    };
    let author = "    commit:\n      author: {name: bot, email: bot@example.com}\n";
    let cases = [
        (
            "    commit:\n      author: {name: bot, email: bot@example.com}\n      signingKey: {type: x509, secretRef: {name: key}}\n".to_string(),
            "test.yaml:10: ImageUpdateAutomation flux-system/auto: spec.git.commit.signingKey.type: \"x509\": Flux's types are gpg and ssh",
        ),
        (
            "    commit:\n      author: {name: bot, email: bot@example.com}\n      messageTemplate: '{{range .Changed.Changes}}'\n".to_string(),
            "spec.git.commit.messageTemplate: not a Go template hoist can render: line 1: unexpected EOF in range",
        ),
        (
            format!("{author}    push: {{branch: main, refspec: '+refs/heads/main:refs/heads/auto'}}\n"),
            "spec.git.push.refspec: \"+refs/heads/main:refs/heads/auto\" forces the push (+); hoist never force-pushes",
        ),
        (
            format!("{author}    push: {{refspec: 'refs/heads/dev:refs/for/main'}}\n"),
            "the source is \"refs/heads/dev\", but hoist's commit is on refs/heads/main",
        ),
        (
            format!("{author}    push: {{refspec: 'HEAD:auto'}}\n"),
            "the destination is a full ref name",
        ),
        (
            format!("{author}    push: {{options: {{\"a\\nb\": ''}}}}\n"),
            "a push option is one line",
        ),
        (
            format!("{author}    checkout: {{ref: {{tag: v1.0.0}}}}\n"),
            "test.yaml:1: ImageUpdateAutomation flux-system/auto: spec.git.push.branch: missing; a checkout of tag \"v1.0.0\" needs a branch to push to",
        ),
        (
            format!("{author}    checkout: {{ref: {{commit: abc123}}}}\n    push: {{branch: auto}}\n"),
            "spec.git.checkout.ref.commit: \"abc123\" is not a full commit id",
        ),
        (
            format!("{author}    checkout: {{ref: {{name: pull/7/head}}}}\n    push: {{branch: auto}}\n"),
            "spec.git.checkout.ref.name: \"pull/7/head\" is not a full ref name",
        ),
    ];
    for (git, expected) in cases {
        let error = error_of(&automation(&git));
        assert!(error.contains(expected), "{error}\nexpected: {expected}");
    }
    // The GitRepository's own ref, and a GitRepository that is not there.
    let tagged = automation(&format!("{author}    push: {{branch: auto}}\n"))
        .replace("ref: {branch: main}", "ref: {semver: '>=1.0 ||| 2'}");
    let error = error_of(&tagged);
    assert!(
        error.contains("spec.sourceRef: GitRepository flux-system/fleet (test.yaml:13): spec.ref.semver: \">=1.0 ||| 2\" is not a semver range"),
        "{error}"
    );
    let missing = automation(author).replace("name: fleet}", "name: other}");
    let error = error_of(&missing);
    assert!(
        error.contains("test.yaml:6: ImageUpdateAutomation flux-system/auto: spec.sourceRef: GitRepository flux-system/other is not in the files"),
        "{error}"
    );
    let proxied =
        automation(author).replace("ref: {branch: main}", "proxySecretRef: {name: proxy}");
    assert!(error_of(&proxied).contains("GitRepository flux-system/fleet: spec.proxySecretRef"));
}

/// A kind hoist reads, written without its apiVersion, is a warning that
/// says what to write; other kinds stay quietly skipped.
#[test]
fn a_kind_hoist_reads_without_an_api_version_is_a_warning() {
    let set = load_str(
        "kind: ImagePolicy
metadata: {name: app}
spec: {}
---
kind: ConfigMap
metadata: {name: other}
",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(set.policies.is_empty());
    let [warning] = set.warnings.as_slice() else {
        panic!("{:?}", set.warnings)
    };
    let text = warning.to_string();
    assert!(
        text.contains("test.yaml:1: ImagePolicy: skipped: no apiVersion; write hoist.dev/v1alpha1"),
        "{text}"
    );
}

/// Flux's Receiver becomes hoist's, served at Flux's path, with the image
/// objects it lists; what is for Flux's other controllers is a warning, a
/// field hoist cannot honour an error naming it.
#[test]
fn flux_receivers_keep_their_image_objects_and_refuse_what_hoist_cannot_honour() {
    let receiver = |spec: &str| {
        format!(
            "apiVersion: notification.toolkit.fluxcd.io/v1
kind: Receiver
metadata: {{name: github, namespace: flux-system}}
spec:
  type: github
  events: [push]
  secretRef: {{name: token}}
{spec}"
        )
    };
    let set = load_str(&receiver(
        "  resources:
    - {kind: GitRepository, name: fleet}
    - {apiVersion: image.toolkit.fluxcd.io/v1, kind: ImageUpdateAutomation, name: fleet}
",
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let [loaded] = set.receivers.as_slice() else {
        panic!("{:?}", set.receivers)
    };
    let spec = &loaded.object.spec;
    assert_eq!(spec.origin, crate::api::ReceiverOrigin::Flux);
    assert_eq!(spec.type_, crate::api::ReceiverType::GitHub);
    assert_eq!(
        spec.resources
            .iter()
            .map(|r| (r.kind.as_str(), r.name.as_str()))
            .collect::<Vec<_>>(),
        [("ImageUpdateAutomation", "fleet")]
    );
    let [warning] = set.warnings.as_slice() else {
        panic!("{:?}", set.warnings)
    };
    assert!(
        warning.to_string().contains("spec.resources[0].kind: skipped: hoist triggers ImageRepositories and ImageUpdateAutomations; GitRepository fleet"),
        "{warning}"
    );
    // Nothing left for hoist: skipped, with a warning.
    let set = load_str(&receiver(
        "  resources: [{kind: Kustomization, name: apps}]\n",
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(set.receivers.is_empty());
    assert!(
        set.warnings.iter().any(|w| w
            .to_string()
            .contains("spec.resources: skipped: lists no ImageRepository")),
        "{:?}",
        set.warnings
    );
    let image = "  resources: [{kind: ImageRepository, name: app}]\n";
    for (text, message) in [
        (
            receiver(image).replace("type: github", "type: bitbucket"),
            "Receiver flux-system/github: spec.type: \"bitbucket\": hoist serves Flux's generic",
        ),
        (
            receiver(image).replace("  secretRef: {name: token}\n", ""),
            "spec.secretRef: missing",
        ),
        (
            receiver(&format!("{image}  resourceFilter: 'true'\n")),
            "spec.resourceFilter: hoist does not evaluate CEL",
        ),
        (
            receiver("  resources: [{kind: ImageRepository, name: '*', matchLabels: {a: b}}]\n"),
            "spec.resources[0].name: hoist triggers objects listed by name",
        ),
        (
            receiver(image).replace(
                "notification.toolkit.fluxcd.io/v1",
                "notification.toolkit.fluxcd.io/v1beta2",
            ),
            "apiVersion: notification.toolkit.fluxcd.io/v1beta2 is not a version hoist reads; use notification.toolkit.fluxcd.io/v1",
        ),
        (
            receiver("  resources: [{kind: ImageRepository, name: app, namespace: apps}]\n"),
            "spec.resources[0].namespace: \"apps\": a Receiver triggers objects in its own namespace (flux-system) only",
        ),
    ] {
        let error = load_str(&text)
            .map(|_| String::new())
            .unwrap_or_else(|e| e.to_string());
        assert!(error.contains(message), "{message}: {error}");
    }
}

#[test]
fn flux_fields_hoist_does_not_act_on_are_warnings() {
    let set = load_str(
        "apiVersion: image.toolkit.fluxcd.io/v1
kind: ImageRepository
metadata: {name: app}
spec:
  image: 123456789012.dkr.ecr.us-east-1.amazonaws.com/app
  provider: generic
  serviceAccountName: scanner
  accessFrom: {namespaceSelectors: [{matchLabels: {a: b}}]}
  exclusionlist: ['^x']
",
    );
    let set = match set {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    let warnings: Vec<String> = set.warnings.iter().map(ToString::to_string).collect();
    // accessFrom and provider are acted on: no warning for them.
    assert_eq!(warnings.len(), 2, "{warnings:#?}");
    assert!(!warnings.iter().any(|w| w.contains("accessFrom")));
    assert_eq!(
        set.repositories[0].object.spec.access_from,
        Some(crate::api::AccessFrom {
            namespace_selectors: vec![crate::api::NamespaceSelector {
                match_labels: [("a".to_string(), "b".to_string())].into(),
            }],
        })
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("test.yaml:9") && w.contains("spec.exclusionlist: unknown field"))
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("test.yaml:7") && w.contains("spec.serviceAccountName"))
    );
}

#[test]
fn a_service_account_beside_a_cloud_provider_is_its_identity_and_must_be_a_name() {
    let repository = |name: &str| {
        format!(
            "apiVersion: image.toolkit.fluxcd.io/v1\nkind: ImageRepository\nmetadata: {{name: app, namespace: team-a}}\nspec:\n  image: 123456789012.dkr.ecr.us-east-1.amazonaws.com/app\n  provider: aws\n  serviceAccountName: {name}\n"
        )
    };
    let set = load_str(&repository("scanner")).unwrap_or_else(|e| panic!("{e}"));
    assert!(set.warnings.is_empty(), "{:?}", set.warnings);
    let refused = load_str(&repository("../kube-system"))
        .err()
        .map(|e| e.to_string());
    assert!(
        refused
            .as_deref()
            .is_some_and(|e| e.contains("ImageRepository team-a/app: spec.serviceAccountName:")),
        "{refused:?}"
    );
}

#[test]
fn a_provider_that_cannot_log_in_to_the_registry_is_refused() {
    let repository = |image: &str, provider: &str| {
        format!(
            "apiVersion: image.toolkit.fluxcd.io/v1
kind: ImageRepository
metadata: {{name: app, namespace: team}}
spec:
  image: {image}
  provider: {provider}
"
        )
    };
    for (image, provider, message) in [
        (
            "ghcr.io/acme/app",
            "aws",
            "test.yaml:6: ImageRepository team/app: spec.provider: ghcr.io is not an ECR registry",
        ),
        (
            "team.azurecr.io/app",
            "gcp",
            "spec.provider: team.azurecr.io is not a Google registry",
        ),
        (
            "europe-docker.pkg.dev/p/r/app",
            "azure",
            "spec.provider: europe-docker.pkg.dev is not an Azure registry",
        ),
        (
            "ghcr.io/acme/app",
            "oracle",
            "spec.provider: \"oracle\" is not a provider; use aws, gcp, azure or generic",
        ),
    ] {
        let error = load_str(&repository(image, provider))
            .map(|_| String::new())
            .unwrap_or_else(|e| e.to_string());
        assert!(error.contains(message), "{message}: {error}");
    }
    for (image, provider) in [
        ("123456789012.dkr.ecr.eu-west-1.amazonaws.com/app", "aws"),
        ("eu.gcr.io/p/app", "gcp"),
        ("team.azurecr.io/app", "azure"),
        ("ghcr.io/acme/app", "generic"),
    ] {
        let loaded = load_str(&repository(image, provider));
        assert!(loaded.is_ok(), "{image} {provider}: {:?}", loaded.err());
    }
}

/// The errors the issue lists: each names file, line, object and field.
#[test]
fn invalid_documents_name_file_line_object_and_field() {
    let cases: &[(&str, &str)] = &[
        (
            "  policy:\n    semver: {range: '^1'}\n    alphabetical: {order: asc}\n",
            "test.yaml:10: ImagePolicy default/app: spec.policy.alphabetical: semver and alphabetical are both set",
        ),
        (
            "  policy:\n    alphabetical:\n      order: up\n",
            "test.yaml:10: ImagePolicy default/app: spec.policy.alphabetical.order: unknown variant `up`, expected `asc` or `desc`",
        ),
        (
            "  policy:\n    semver:\n      range: '>=1.0 <<2'\n",
            "test.yaml:10: ImagePolicy default/app: spec.policy.semver.range: \">=1.0 <<2\" is not a valid semver range",
        ),
        (
            "  policy: {semver: {range: '*'}}\n  filterTags:\n    pattern: '^v(['\n",
            "test.yaml:10: ImagePolicy default/app: spec.filterTags.pattern: \"^v([\" is not a valid regular expression",
        ),
        (
            "  policy: {semver: {range: '*'}}\n  filterTags:\n    pattern: '^v(?P<v>.*)$'\n    extract: '$version'\n",
            "test.yaml:11: ImagePolicy default/app: spec.filterTags.extract: \"$version\" refers to group \"version\"",
        ),
        (
            "  policy: {semver: {}}\n",
            "test.yaml:8: ImagePolicy default/app: spec.policy.semver: missing field `range`",
        ),
        (
            "  policy: {latest: {}}\n",
            "test.yaml:8: ImagePolicy default/app: spec.policy.latest: unknown policy kind \"latest\"",
        ),
        (
            "  policy: {numerical: {}}\n  digestReflectionPolicy: Always\n",
            "test.yaml:5: ImagePolicy default/app: spec.interval: required when digestReflectionPolicy is Always",
        ),
        (
            "  policy: {numerical: {}}\n  interval: 5 minutes\n",
            "test.yaml:9: ImagePolicy default/app: spec.interval: \"5 minutes\" is not a duration",
        ),
    ];
    for (tail, expected) in cases {
        let text = format!("{POLICY_HEAD}{tail}");
        let error = error_of(&text);
        assert!(
            error.starts_with(expected),
            "got:\n{error}\nexpected to start with:\n{expected}"
        );
    }
}

#[test]
fn repository_errors() {
    let cases = [
        (
            "image: ghcr.io/acme/app:1.0",
            "test.yaml:5: ImageRepository ops/app: spec.image: \"ghcr.io/acme/app:1.0\" carries a tag (1.0)",
        ),
        (
            "image: localhost:5000/app@sha256:abc",
            "spec.image: \"localhost:5000/app@sha256:abc\" carries a digest",
        ),
        (
            "image: ghcr.io/acme/app\n  interval: 5 minutes",
            "test.yaml:6: ImageRepository ops/app: spec.interval: \"5 minutes\" is not a duration; expected a number with a unit",
        ),
        (
            "image: ghcr.io/acme/app\n  timeout: 30",
            "spec.timeout: invalid type: integer `30`, expected a string",
        ),
        ("image: ''", "spec.image: must not be empty"),
        (
            "image: a/b\n  exclusionList: ['ok', '(']",
            "test.yaml:6: ImageRepository ops/app: spec.exclusionList[1]: \"(\" is not a valid regular expression",
        ),
    ];
    for (spec, expected) in cases {
        let text = format!(
            "apiVersion: hoist.dev/v1alpha1\nkind: ImageRepository\nmetadata: {{name: app, namespace: ops}}\nspec:\n  {spec}\n"
        );
        let error = error_of(&text);
        assert!(
            error.contains(expected),
            "got:\n{error}\nexpected:\n{expected}"
        );
    }
    // A registry port is not a tag.
    let ok = "apiVersion: hoist.dev/v1alpha1\nkind: ImageRepository\nmetadata: {name: app}\nspec:\n  image: localhost:5000/team/app\n";
    assert!(load_str(ok).is_ok());
}

#[test]
fn other_document_errors() {
    let e = error_of(
        "apiVersion: hoist.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {namespace: x}\nspec: {}\n",
    );
    assert!(
        e.contains("test.yaml:3: ImagePolicy x/: metadata.name: every object needs a name"),
        "{e}"
    );
    let e = error_of("apiVersion: hoist.dev/v2\nkind: ImagePolicy\nmetadata: {name: a}\n");
    assert!(
        e.contains("test.yaml:1: ImagePolicy default/a: apiVersion: hoist.dev/v2 is not a version"),
        "{e}"
    );
    let e = error_of("a: [1, 2\nb: 3\n");
    assert!(e.starts_with("test.yaml:"), "{e}");
    assert!(e.contains("not valid YAML"), "{e}");
    let twice = format!(
        "{POLICY_HEAD}  policy: {{numerical: {{}}}}\n---\n{POLICY_HEAD}  policy: {{numerical: {{}}}}\n"
    );
    let e = error_of(&twice);
    assert!(e.contains("test.yaml:10: ImagePolicy default/app is defined twice; the other definition is at test.yaml:1"), "{e}");
    let e = error_of(
        "apiVersion: hoist.dev/v1alpha1\nkind: ImageUpdateAutomation\nmetadata: {name: a}\nspec:\n  interval: 1m\n  git:\n    url: ''\n    checkout: {ref: {branch: main}}\n",
    );
    assert!(
        e.contains("test.yaml:7: ImageUpdateAutomation default/a: spec.git.url: must not be empty"),
        "{e}"
    );
}

#[test]
fn collects_errors_from_every_document() {
    let text = format!(
        "{POLICY_HEAD}  policy: {{semver: {{range: 'nope'}}}}\n---\n{}",
        POLICY_HEAD.replace("name: app\nspec", "name: other\nspec")
    ) + "  policy: {numerical: {order: sideways}}\n";
    let e = error_of(&text);
    assert_eq!(e.lines().count(), 2, "{e}");
    assert!(e.contains("ImagePolicy default/other"), "{e}");
}

#[test]
fn unknown_fields_inside_a_policy_kind_name_the_real_path() {
    let set = load_str(&format!(
        "{POLICY_HEAD}  policy:\n    semver:\n      range: '*'\n      rnage: x\n"
    ));
    let set = match set {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    let warnings: Vec<String> = set.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        [
            "test.yaml:11: ImagePolicy default/app: spec.policy.semver.rnage: unknown field, ignored; check its spelling against `hoist crds`"
        ]
    );
}

#[test]
fn shapes_that_are_not_mappings() {
    let e = error_of(
        "apiVersion: hoist.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: a}\nspec: hello\n",
    );
    assert!(
        e.contains("test.yaml:4: ImagePolicy default/a: spec: must be a mapping"),
        "{e}"
    );
    let e = error_of(&format!("{POLICY_HEAD}  policy: semver\n"));
    assert!(
        e.contains("spec.policy: must be a mapping with exactly one of"),
        "{e}"
    );
    let e = error_of(&format!(
        "{POLICY_HEAD}  policy: {{semver: {{range: 1.10}}}}\n"
    ));
    assert!(
        e.contains("spec.policy.semver.range: invalid type: floating point")
            && e.contains("quote the value"),
        "{e}"
    );
}

#[test]
fn reserved_and_invalid_selector_fields_are_errors() {
    let e = error_of(&format!(
        "{POLICY_HEAD}  policy: {{numerical: {{}}}}\n  minimumAge: a day\n"
    ));
    assert!(
        e.contains("test.yaml:9: ImagePolicy default/app: spec.minimumAge:"),
        "{e}"
    );
    let e = error_of(
        "apiVersion: hoist.dev/v1alpha1\nkind: ImageUpdateAutomation\nmetadata: {name: a}\nspec:\n  interval: 1m\n  git:\n    url: https://example.com/r.git\n    checkout: {ref: {branch: main}}\n  policySelector:\n    matchExpressions:\n      - {key: app, operator: In}\n",
    );
    assert!(
        e.contains("spec.policySelector.matchExpressions[0]: In and NotIn need at least one value"),
        "{e}"
    );
}

#[test]
fn directories_skip_yaml_that_is_not_for_hoist() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{e}"));
        }
        std::fs::write(path, text).unwrap_or_else(|e| panic!("{e}"));
    };
    write(
        "a/policy.yaml",
        &format!("{POLICY_HEAD}  policy: {{numerical: {{}}}}\n"),
    );
    write(
        "b/chart/templates/deploy.yaml",
        "metadata:\n  name: {{ include \"x\" . }}\n  - broken\n",
    );
    write("b/dup.yml", "a: 1\na: 2\n");
    let paths = [dir.path().to_path_buf(), dir.path().join("a/policy.yaml")];
    let set = load(&paths).unwrap_or_else(|e| panic!("{e}"));
    // The policy is read once although two paths reach it.
    assert_eq!(set.policies.len(), 1);
    assert_eq!(set.warnings.len(), 2, "{:?}", set.warnings);
    assert!(
        set.warnings
            .iter()
            .all(|w| w.message.starts_with("skipped: not valid YAML"))
    );
    // Broken YAML that names a hoist kind is an error.
    write("c/bad.yaml", "kind: ImagePolicy\nmetadata: [\n");
    let e = load(&[dir.path().to_path_buf()])
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        e.contains("bad.yaml:") && e.contains("not valid YAML"),
        "{e}"
    );
}

#[test]
fn warnings_survive_a_failed_load() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("p.yaml");
    std::fs::write(
        &path,
        format!("{POLICY_HEAD}  policy: {{numerical: {{}}}}\n  filterTags: {{patern: '^1', extract: '$1'}}\n"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let errors = match load(&[path]) {
        Ok(set) => panic!("expected an error, got {set:?}"),
        Err(e) => e,
    };
    assert!(errors.to_string().contains("needs a pattern"), "{errors}");
    assert!(
        errors
            .warnings
            .iter()
            .any(|w| w.message.contains("spec.filterTags.patern")),
        "{:?}",
        errors.warnings
    );
}

#[test]
fn near_miss_api_versions_and_kinds_are_warned_about() {
    let set = load_str(
        "apiVersion: hoist/v1alpha1\nkind: ImagePolicy\nmetadata: {name: a}\n---\napiVersion: hoist.dev/v1alpha1\nkind: ImagePolicies\nmetadata: {name: b}\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(set.warnings.len(), 2, "{:?}", set.warnings);
    assert!(
        set.warnings[0]
            .message
            .contains("hoist/v1alpha1 is neither"),
        "{:?}",
        set.warnings
    );
    assert!(
        set.warnings[1].message.contains("skipped: hoist reads"),
        "{:?}",
        set.warnings
    );
}

#[test]
fn a_broken_message_template_is_a_load_error() {
    let text = "apiVersion: hoist.dev/v1alpha1\nkind: ImageUpdateAutomation\nmetadata: {name: a}\nspec:\n  interval: 1m\n  git:\n    url: https://example.com/r.git\n    checkout: {ref: {branch: main}}\n    commit:\n      author: {name: hoist, email: h@example.com}\n      messageTemplate: 'Update {{ imgaes }}'\n";
    let e = error_of(text);
    assert!(
        e.contains(
            "test.yaml:11: ImageUpdateAutomation default/a: spec.git.commit.messageTemplate:"
        ),
        "{e}"
    );
    assert!(e.contains("imgaes") || e.contains("undefined"), "{e}");
    assert!(load_str(&text.replace("{{ imgaes }}", "{{ files | length }} files")).is_ok());
}

/// The controller loads on its runtime's threads: the deepest document the
/// parser lets through, and deeper ones it refuses, must load on a stack of
/// their size, block or flow, in a hoist kind's spec. (On tokio's default
/// 2 MiB a debug build overflows at 56 levels.)
#[test]
fn the_deepest_document_loads_on_a_worker_sized_stack() {
    fn nested(levels: usize, flow: bool) -> String {
        let mut text = format!("{POLICY_HEAD}  policy:\n    x:\n");
        if flow {
            text.push_str(&format!(
                "      {}1{}\n",
                "[".repeat(levels),
                "]".repeat(levels)
            ));
        } else {
            for level in 0..levels {
                text.push_str(&format!("{}k:\n", "  ".repeat(level + 3)));
            }
            text.push_str(&format!("{}1\n", "  ".repeat(levels + 3)));
        }
        text
    }
    for flow in [false, true] {
        for levels in [56, 62, 63, 64, 70, 200, 10_000] {
            let text = nested(levels, flow);
            let outcome = std::thread::Builder::new()
                .stack_size(STACK_BYTES)
                .spawn(move || load_str(&text).err())
                .and_then(|t| t.join().map_err(|_| std::io::Error::other("panicked")));
            match outcome {
                Ok(Some(error)) => assert!(!error.to_string().is_empty()),
                Ok(None) => panic!("{levels} levels (flow: {flow}) loaded without an error"),
                Err(e) => panic!("{levels} levels (flow: {flow}): {e}"),
            }
        }
    }
}

#[test]
fn a_service_account_name_must_name_a_service_account() {
    let automation = |name: &str| {
        format!(
            "apiVersion: hoist.dev/v1alpha1\nkind: ImageUpdateAutomation\nmetadata: {{name: a, namespace: team-a}}\nspec:\n  interval: 1m\n  git:\n    url: https://example.com/fleet.git\n    checkout: {{ref: {{branch: main}}}}\n    commit: {{author: {{name: bot, email: bot@example.com}}}}\n  sync: {{path: ./clusters}}\n  serviceAccountName: {name}\n"
        )
    };
    let set = load_str(&automation("deployer")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        set.automations[0]
            .object
            .spec
            .service_account_name
            .as_deref(),
        Some("deployer")
    );
    for bad in ["Deployer", "team-b/deployer", "'system:serviceaccount:b:x'"] {
        let e = error_of(&automation(bad));
        assert!(
            e.contains("ImageUpdateAutomation team-a/a: spec.serviceAccountName:")
                && e.contains("is not a ServiceAccount name"),
            "{bad}: {e}"
        );
    }
}

#[test]
fn a_file_past_the_parsers_budget_says_so_in_words() {
    let many: String = (0..1100)
        .map(|i| format!("---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c{i}}}\n"))
        .collect();
    let e = error_of(&many);
    assert!(
        e.contains("test.yaml:")
            && e.contains("more YAML documents in one file than hoist reads")
            && e.contains("split the file"),
        "{e}"
    );
}

#[test]
fn rollback_needs_a_wait_and_evidence_lives_below_a_hidden_directory() {
    let automation = |sync: &str| {
        format!(
            "apiVersion: hoist.dev/v1alpha1\nkind: ImageUpdateAutomation\nmetadata: {{name: a, namespace: s}}\nspec:\n  interval: 1m\n  git:\n    url: https://git.example/fleet.git\n    checkout: {{ref: {{branch: main}}}}\n    commit: {{author: {{name: b, email: b@example.com}}}}\n  sync: {sync}\n"
        )
    };
    let e = error_of(&automation("{path: ./c, rollback: {}}"));
    assert!(
        e.contains("ImageUpdateAutomation s/a: spec.sync.rollback: ")
            && e.contains("spec.sync.wait: true"),
        "{e}"
    );
    for path in [
        "evidence.yaml",
        "clusters/e.yaml",
        ".git/e.yaml",
        "../.hoist/e.yaml",
    ] {
        let e = error_of(&automation(&format!(
            "{{path: ./c, wait: true, evidence: {{path: '{path}'}}}}"
        )));
        assert!(
            e.contains("ImageUpdateAutomation s/a: spec.sync.evidence.path: "),
            "{path}: {e}"
        );
    }
    let set = load_str(&automation("{path: ./c, wait: true, rollback: {}}"))
        .unwrap_or_else(|e| panic!("{e}"));
    let sync = set.automations[0]
        .object
        .spec
        .sync
        .clone()
        .unwrap_or_else(|| panic!("no sync"));
    assert_eq!(
        sync.evidence_path("s", "a").as_deref(),
        Some(".hoist/evidence/s/a.yaml")
    );

    let promotion = |spec: &str| {
        format!("{POLICY_HEAD}  policy: {{semver: {{range: '^1'}}}}\n  promotion: {spec}\n")
    };
    let e = error_of(&promotion(
        "{from: fleet, evidence: {url: u, branch: main}}",
    ));
    assert!(
        e.contains("ImagePolicy default/app: spec.promotion.from: \"fleet\" is not namespace/name"),
        "{e}"
    );
    let e = error_of(&promotion(
        "{from: s/a, soak: 2 hours, evidence: {url: u, branch: main}}",
    ));
    assert!(e.contains("spec.promotion.soak"), "{e}");
    let e = error_of(&promotion(
        "{from: s/a, evidence: {url: u, branch: main, path: e.yaml}}",
    ));
    assert!(e.contains("spec.promotion.evidence.path"), "{e}");
    let set = load_str(&promotion(
        "{from: s/a, soak: 2h, evidence: {url: u, branch: main}}",
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let spec = set.policies[0]
        .object
        .spec
        .promotion
        .clone()
        .unwrap_or_else(|| panic!("none"));
    assert_eq!(spec.evidence_path(), ".hoist/evidence/s/a.yaml");
}
