//! deploy/: every manifest validates against the Kubernetes JSON schemas
//! of the supported versions (kubernetes-validate, offline), `kustomize
//! build` renders them all, and the Deployment's flags are hoist's.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{hoist, repo_root};

/// Kubernetes versions hoist supports (k8s-openapi is built for 1.33).
const VERSIONS: [&str; 4] = ["1.31.0", "1.32.0", "1.33.0", "1.34.0"];

fn manifests() -> Vec<PathBuf> {
    let deploy = repo_root().join("deploy");
    let mut files: Vec<PathBuf> = [
        "namespace",
        "serviceaccount",
        "rbac",
        "deployment",
        "service",
        "webhook-service",
    ]
    .iter()
    .map(|f| deploy.join(format!("{f}.yaml")))
    .collect();
    files.push(deploy.join("crds/hoist.dev.yaml"));
    files.push(deploy.join("namespaced/rbac.yaml"));
    files.push(deploy.join("flux/rbac.yaml"));
    files.push(deploy.join("object-identity/rbac.yaml"));
    files
}

/// A program from `variable`, else on PATH; None when neither has it.
fn tool(variable: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(variable) {
        return Some(PathBuf::from(path));
    }
    names.iter().find_map(|name| {
        Command::new(name)
            .arg("--help")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|_| PathBuf::from(name))
    })
}

#[test]
fn manifests_validate_against_the_kubernetes_schemas() {
    let Some(validator) = tool("HOIST_KUBERNETES_VALIDATE", &["kubernetes-validate"]) else {
        assert!(
            !crate::support::required(),
            "kubernetes-validate is missing (pip install kubernetes-validate)"
        );
        eprintln!("skipped: kubernetes-validate is not installed");
        return;
    };
    for version in VERSIONS {
        let out = Command::new(&validator)
            .args(["--strict", "-k", version])
            .args(manifests())
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", validator.display()));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "Kubernetes {version}:\n{text}");
        // 21 objects: 6 CRDs, namespace, service account, 4 RBAC,
        // deployment, 2 services, the namespaced install's Role and
        // RoleBinding, and the Flux and object-identity components'
        // ClusterRoles and bindings.
        assert_eq!(text.matches("passed for resource").count(), 21, "{text}");
    }
}

#[test]
fn kustomize_build_renders_every_object_into_the_namespace() {
    let deploy = repo_root().join("deploy");
    let rendered = if let Some(kustomize) = tool("HOIST_KUSTOMIZE", &["kustomize"]) {
        Command::new(kustomize).arg("build").arg(&deploy).output()
    } else if tool("HOIST_KUBECTL", &["kubectl"]).is_some() {
        Command::new("kubectl")
            .arg("kustomize")
            .arg(&deploy)
            .output()
    } else {
        eprintln!("skipped: neither kustomize nor kubectl is installed");
        return;
    };
    let out = rendered.unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        sorted_kinds(&text),
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "Deployment",
            "Namespace",
            "Role",
            "RoleBinding",
            "Service",
            "Service",
            "ServiceAccount"
        ]
    );
    // Every namespaced object lands in hoist's namespace: six objects and
    // the service account the two bindings name.
    let placed = text
        .lines()
        .filter(|l| *l == "  namespace: hoist-system")
        .count();
    assert_eq!(placed, 8, "{text}");
}

/// deploy/ names the image by a placeholder that its `images:` sets, to
/// the release of Cargo.toml's version. `kustomize edit set image` moves
/// it to a user's own build, both ways the README shows: in deploy/ itself,
/// by the placeholder, and in an overlay of one's own, by the release's
/// name (the base's `images:` has already renamed the placeholder when an
/// overlay's run, so `hoist=` there would match nothing and change
/// nothing).
#[test]
fn kustomize_sets_the_image_to_this_release() {
    let Some(kustomize) = tool("HOIST_KUSTOMIZE", &["kustomize"]) else {
        assert!(!crate::support::required(), "kustomize is not installed");
        eprintln!("skipped: kustomize is not installed");
        return;
    };
    let kustomize_in = |dir: &Path, args: &[&str]| {
        let out = Command::new(&kustomize)
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            out.status.success(),
            "kustomize {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let images = |dir: &Path| {
        kustomize_in(dir, &["build", "."])
            .lines()
            .filter_map(|l| l.trim().strip_prefix("image: "))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let deploy = repo_root().join("deploy");
    let deployment =
        std::fs::read_to_string(deploy.join("deployment.yaml")).unwrap_or_else(|e| panic!("{e}"));
    assert!(deployment.contains("image: hoist\n"), "{deployment}");
    let release = format!("ghcr.io/hoist-dev/hoist:{}", env!("CARGO_PKG_VERSION"));
    assert_eq!(images(&deploy), [release.as_str()]);

    // In a copy of deploy/, by the placeholder.
    let copy = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let cp = Command::new("cp")
        .arg("-R")
        .arg(&deploy)
        .arg(copy.path())
        .status()
        .unwrap_or_else(|e| panic!("cp: {e}"));
    assert!(cp.success());
    let copied = copy.path().join("deploy");
    let own = "registry.example.com/platform/hoist:0.1.0-rc1";
    kustomize_in(&copied, &["edit", "set", "image", &format!("hoist={own}")]);
    assert_eq!(images(&copied), [own]);
    let pinned = format!(
        "registry.example.com/platform/hoist@sha256:{}",
        "ab".repeat(32)
    );
    kustomize_in(
        &copied,
        &["edit", "set", "image", &format!("hoist={pinned}")],
    );
    assert_eq!(images(&copied), [pinned.as_str()]);

    // In an overlay of one's own, by the release's name.
    let overlay = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // kustomize takes only relative paths to other kustomizations.
    let up = "../".repeat(overlay.path().components().count().saturating_sub(1));
    let base = format!(
        "{up}{}/deploy",
        repo_root().to_string_lossy().trim_start_matches('/')
    );
    kustomize_in(overlay.path(), &["create", "--resources", &base]);
    kustomize_in(
        overlay.path(),
        &["edit", "set", "image", &format!("hoist={own}")],
    );
    assert_eq!(
        images(overlay.path()),
        [release.as_str()],
        "the placeholder is already renamed when an overlay's images: run"
    );
    kustomize_in(
        overlay.path(),
        &[
            "edit",
            "set",
            "image",
            &format!("ghcr.io/hoist-dev/hoist={own}"),
        ],
    );
    assert_eq!(images(overlay.path()), [own]);
}

#[test]
fn the_deployment_passes_flags_hoist_knows() {
    let text = std::fs::read_to_string(repo_root().join("deploy/deployment.yaml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let args: Vec<&str> = text
        .lines()
        .skip_while(|l| l.trim() != "args:")
        .skip(1)
        .map_while(|l| l.trim().strip_prefix("- "))
        .collect();
    assert_eq!(args.first(), Some(&"controller"), "{args:?}");
    let mut check = args.clone();
    check.push("--help");
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let run = hoist(dir.path(), &check, "");
    assert_eq!(run.code, 0, "hoist {}: {}", args.join(" "), run.stderr);
}

/// The `rules:` list of the first object in an RBAC file.
fn rules(file: &str) -> String {
    let text = std::fs::read_to_string(repo_root().join("deploy").join(file))
        .unwrap_or_else(|e| panic!("{file}: {e}"));
    let start = text
        .find("\nrules:\n")
        .unwrap_or_else(|| panic!("{file}: no rules"));
    let rest = &text[start..];
    rest[..rest.find("\n---\n").unwrap_or(rest.len())].to_string()
}

/// One list of permissions, two scopes: the namespaced install's Role
/// grants exactly what the ClusterRole does, no more and no less.
#[test]
fn the_namespaced_role_has_the_cluster_roles_rules() {
    let cluster = rules("rbac.yaml");
    assert!(cluster.contains("secrets"), "{cluster}");
    assert_eq!(rules("namespaced/rbac.yaml"), cluster);
}

/// The kinds of a rendered kustomization, sorted.
fn sorted_kinds(text: &str) -> Vec<&str> {
    let mut kinds: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("kind: "))
        .collect();
    kinds.sort_unstable();
    kinds
}

/// `kubectl kustomize` of a kustomization of one's own that takes
/// deploy/ with `component` (and `extra` lines); None without kubectl.
fn kustomize_with(extra: &str, component: &str) -> Option<String> {
    let Some(kubectl) = tool("HOIST_KUBECTL", &["kubectl"]) else {
        eprintln!("skipped: kubectl is not installed");
        return None;
    };
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // kustomize takes only relative paths to other kustomizations.
    let up = "../".repeat(dir.path().components().count().saturating_sub(1));
    let root = repo_root();
    let root = root.to_string_lossy();
    let deploy = format!("{up}{}/deploy", root.trim_start_matches('/'));
    std::fs::write(
        dir.path().join("kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n{extra}resources: [{deploy}]\ncomponents: [{deploy}/{component}]\n"
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(kubectl)
        .arg("kustomize")
        .arg(dir.path())
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The Flux component: none of hoist's CRDs (Flux's stay), the Flux
/// ClusterRole in place of hoist's, and a controller started with
/// `--flux` on flags hoist knows.
#[test]
fn the_flux_component_swaps_hoist_s_kinds_for_flux_s() {
    let Some(text) = kustomize_with("", "flux") else {
        return;
    };
    assert_eq!(
        sorted_kinds(&text),
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "Namespace",
            "Role",
            "RoleBinding",
            "Service",
            "Service",
            "ServiceAccount"
        ],
        "{text}"
    );
    assert!(text.contains("name: hoist-flux"), "{text}");
    assert!(!text.contains("hoist.dev"), "{text}");
    // Rendered in key order, `args` comes first in the container: `- args:`.
    let args: Vec<&str> = text
        .lines()
        .skip_while(|l| l.trim().trim_start_matches("- ") != "args:")
        .skip(1)
        .map_while(|l| l.trim().strip_prefix("- "))
        .collect();
    assert_eq!(
        args.get(..2),
        Some(&["controller", "--flux"][..]),
        "{args:?}"
    );
    let mut check = args.clone();
    check.push("--help");
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let run = hoist(dir.path(), &check, "");
    assert_eq!(run.code, 0, "hoist {}: {}", args.join(" "), run.stderr);
}

/// The object-identity component: deploy/ plus one ClusterRole that
/// reads ServiceAccounts and creates their tokens, bound to hoist's
/// ServiceAccount, and the controller started with
/// `--object-level-identity` on flags hoist knows.
#[test]
fn the_object_identity_component_adds_token_requests_and_the_flag() {
    let Some(text) = kustomize_with("", "object-identity") else {
        return;
    };
    assert!(text.contains("name: hoist-object-identity"), "{text}");
    assert!(text.contains("- serviceaccounts/token"), "{text}");
    let args: Vec<&str> = text
        .lines()
        .skip_while(|l| l.trim().trim_start_matches("- ") != "args:")
        .skip(1)
        .map_while(|l| l.trim().strip_prefix("- "))
        .collect();
    assert_eq!(args.last(), Some(&"--object-level-identity"), "{args:?}");
    let mut check = args.clone();
    check.push("--help");
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let run = hoist(dir.path(), &check, "");
    assert_eq!(run.code, 0, "hoist {}: {}", args.join(" "), run.stderr);
}

/// A kustomization of a team's own that takes deploy/ with the
/// namespaced component: no cluster-wide RBAC, every object in the
/// team's namespace, and a controller that watches only that namespace.
#[test]
fn the_namespaced_component_holds_no_cluster_role() {
    let Some(text) = kustomize_with("namespace: team-a\n", "namespaced") else {
        return;
    };
    assert_eq!(
        sorted_kinds(&text),
        [
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "Deployment",
            "Namespace",
            "Role",
            "Role",
            "RoleBinding",
            "RoleBinding",
            "Service",
            "Service",
            "ServiceAccount"
        ],
        "{text}"
    );
    // Eight namespaced objects, and the service account in each of the
    // two bindings' subjects.
    let placed = text
        .lines()
        .filter(|l| *l == "  namespace: team-a" || *l == "    namespace: team-a")
        .count();
    assert_eq!(placed, 10, "{text}");
    assert!(!text.contains("hoist-system"), "{text}");
    assert!(text.contains("- --namespace=$(POD_NAMESPACE)"), "{text}");
}

/// Every emptyDir of the Deployment has a sizeLimit: a remote or registry
/// that sends without end gets the pod evicted, not the node's disk filled.
#[test]
fn every_volume_of_the_deployment_is_bounded() {
    let text = std::fs::read_to_string(repo_root().join("deploy/deployment.yaml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let volumes: Vec<&str> = text
        .lines()
        .skip_while(|l| l.trim() != "volumes:")
        .collect();
    let empty_dirs = volumes.iter().filter(|l| l.trim() == "emptyDir:").count();
    let limits = volumes
        .iter()
        .filter(|l| l.trim().starts_with("sizeLimit: "))
        .count();
    assert!(
        empty_dirs == 2 && limits == empty_dirs && !text.contains("emptyDir: {}"),
        "{}",
        volumes.join("\n")
    );
}
