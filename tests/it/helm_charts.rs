//! Helm chart versions as tags: charts packaged by the real, pinned helm
//! (`scripts/helm-tool`), pushed to docker-registry with `helm push` (an
//! OCI chart repository) and indexed with `helm repo index` (a classic
//! one); `hoist run` bumps the marked versions of a HelmRelease, a
//! Chart.yaml's dependencies and an Argo CD Application, byte for byte
//! outside the marked scalars.

use std::path::Path;

use crate::chart::{Helm, helm};
use crate::support::git::BareRepo;
use crate::support::http::{FakeServer, Reply};
use crate::support::registry::{Auth, DockerRegistry, basic};
use crate::support::{files, hoist_env};

/// `helm package` of chart `name` at each version into `out`.
fn package(helm: &Helm, work: &Path, name: &str, versions: &[&str]) {
    for version in versions {
        let dir = work.join(format!("src-{name}-{version}"));
        std::fs::create_dir_all(dir.join("templates")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(
            dir.join("Chart.yaml"),
            format!(
                "apiVersion: v2\nname: {name}\nversion: {version}\nappVersion: \"{version}\"\n"
            ),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(
            dir.join("templates/configmap.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: {{ .Release.Name }}}\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let out = work.join("out");
        let run = helm.run(&[
            "package",
            &dir.to_string_lossy(),
            "-d",
            &out.to_string_lossy(),
        ]);
        assert!(run.ok, "helm package: {}", run.stderr);
    }
}

const HELM_RELEASE: &str = "# podinfo, kept by hoist\napiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata:\n  name: podinfo\n  namespace: apps\nspec:\n  interval: 10m\n  chart:\n    spec:\n      chart: podinfo\n      version: \"6.0.0\" # {\"$imagepolicy\": \"default:podinfo:tag\"}\n      sourceRef: {kind: HelmRepository, name: podinfo}\n  values:\n    replicaCount: 2   # not ours\n";

const CHART_YAML: &str = "apiVersion: v2\nname: umbrella\nversion: 1.0.0\ndependencies:\n  - name: podinfo\n    version: 6.0.0 # {\"$imagepolicy\": \"default:podinfo:tag\"}\n    repository: oci://example.invalid/charts\n  - name: redis\n    version: 17.0.0\n    repository: https://charts.example.com\n";

const APPLICATION: &str = "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {name: podinfo, namespace: argocd}\nspec:\n  source:\n    chart: podinfo\n    repoURL: example.invalid/charts\n    targetRevision: 6.0.0 # {\"$imagepolicy\": \"default:podinfo:tag\"}\n";

fn objects(image: &str, chart_line: &str, remote: &str, extra: &str) -> String {
    format!(
        "apiVersion: hoist.dev/v1alpha1
kind: ImageRepository
metadata: {{name: podinfo}}
spec:
  image: {image}
{chart_line}  insecure: true
  interval: 1h
{extra}---
apiVersion: hoist.dev/v1alpha1
kind: ImagePolicy
metadata: {{name: podinfo}}
spec:
  imageRepositoryRef: {{name: podinfo}}
  policy: {{semver: {{range: '^6'}}}}
---
apiVersion: hoist.dev/v1alpha1
kind: ImageUpdateAutomation
metadata: {{name: fleet}}
spec:
  interval: 5m
  git:
    url: {remote}
    checkout: {{ref: {{branch: main}}}}
    commit:
      author: {{name: hoist-bot, email: bot@example.com}}
  update: {{path: ./}}
"
    )
}

fn run_once(dir: &Path) -> crate::support::Run {
    let docker = dir.join("docker");
    std::fs::create_dir_all(&docker).unwrap_or_else(|e| panic!("{e}"));
    let docker = docker.to_string_lossy().into_owned();
    hoist_env(
        dir,
        &[
            "run",
            "-f",
            "objects.yaml",
            "--once",
            "--state-dir",
            "state",
            "-o",
            "json",
        ],
        &[("DOCKER_CONFIG", docker.as_str())],
    )
}

fn fleet() -> BareRepo {
    BareRepo::new(&[
        ("apps/podinfo.yaml", HELM_RELEASE),
        ("charts/umbrella/Chart.yaml", CHART_YAML),
        ("argocd/podinfo.yaml", APPLICATION),
    ])
}

/// Each fixture with 6.0.0 as `version` in its marked field, and only there.
fn bumped(version: &str) -> [(String, String); 3] {
    [
        (
            "apps/podinfo.yaml".into(),
            HELM_RELEASE.replace("\"6.0.0\"", &format!("\"{version}\"")),
        ),
        (
            "charts/umbrella/Chart.yaml".into(),
            CHART_YAML.replace("version: 6.0.0", &format!("version: {version}")),
        ),
        (
            "argocd/podinfo.yaml".into(),
            APPLICATION.replace(
                "targetRevision: 6.0.0",
                &format!("targetRevision: {version}"),
            ),
        ),
    ]
}

#[test]
fn oci_chart_versions_bump_a_helm_release_a_chart_and_an_application() {
    let Some(helm) = helm() else { return };
    let Some(registry) = DockerRegistry::start(Auth::None) else {
        return;
    };
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    package(
        &helm,
        work.path(),
        "podinfo",
        &["6.0.0", "6.1.0", "6.3.1", "7.0.0", "6.4.0-rc.1"],
    );
    for version in ["6.0.0", "6.1.0", "6.3.1", "7.0.0", "6.4.0-rc.1"] {
        let tgz = work.path().join(format!("out/podinfo-{version}.tgz"));
        let run = helm.run(&[
            "push",
            &tgz.to_string_lossy(),
            &format!("oci://{}/charts", registry.addr),
            "--plain-http",
        ]);
        assert!(run.ok, "helm push: {}", run.stderr);
    }
    let remote = fleet();
    let image = format!("oci://{}/charts", registry.addr);
    let dir = files(&[(
        "objects.yaml",
        &objects(&image, "  chart: podinfo\n", &remote.url(), ""),
    )]);
    let run = run_once(dir.path());
    assert_eq!(run.code, 0, "{}", run.stderr);
    for (file, text) in bumped("6.3.1") {
        assert_eq!(remote.show("main", &file), text, "{file}");
    }
    assert_eq!(remote.log("main").len(), 2);
}

#[test]
fn classic_chart_repositories_are_read_from_their_index_with_basic_auth() {
    let Some(helm) = helm() else { return };
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    package(
        &helm,
        work.path(),
        "podinfo",
        &["6.0.0", "6.2.0", "6.10.0+build.7", "7.1.0"],
    );
    package(&helm, work.path(), "other", &["6.99.0"]);
    let out = work.path().join("out");
    let run = helm.run(&[
        "repo",
        "index",
        &out.to_string_lossy(),
        "--url",
        "https://charts.example.com/",
    ]);
    assert!(run.ok, "helm repo index: {}", run.stderr);
    let index = std::fs::read(out.join("index.yaml")).unwrap_or_else(|e| panic!("{e}"));
    // The server asks for Basic auth, as a private chart repository (or a
    // Harbor, Nexus, Artifactory one) does.
    let expected = basic("reader", "chart-pass");
    let server = FakeServer::start(move |request, _| {
        if request.path() != "/stable/index.yaml" {
            return Reply::json(404, "{}");
        }
        if request.header("authorization") != Some(expected.as_str()) {
            return Reply::json(401, "{}")
                .with_header("WWW-Authenticate", "Basic realm=\"charts\"");
        }
        Reply::Respond {
            status: 200,
            headers: vec![("Content-Type".into(), "text/yaml".into())],
            body: index.clone(),
        }
    });
    let remote = fleet();
    let image = format!("http://{}/stable", server.addr);
    let secret = "  secretRef: {name: charts}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: charts}\nstringData: {username: reader, password: chart-pass}\n";
    let dir = files(&[(
        "objects.yaml",
        &objects(&image, "  chart: podinfo\n", &remote.url(), secret),
    )]);
    let run = run_once(dir.path());
    assert_eq!(run.code, 0, "{}", run.stderr);
    // The highest ^6 version of podinfo, not of the other chart; the build
    // metadata is written as the index has it.
    for (file, text) in bumped("6.10.0+build.7") {
        assert_eq!(remote.show("main", &file), text, "{file}");
    }
    let requests = server.requests();
    assert!(
        requests
            .iter()
            .all(|r| r.method == "GET" && r.path() == "/stable/index.yaml"),
        "{requests:?}"
    );
    assert!(!run.stderr.contains("chart-pass"), "{}", run.stderr);

    // Without the Secret: refused, nothing pushed, and the error says why.
    let before = remote.head("main");
    let dir = files(&[(
        "objects.yaml",
        &objects(&image, "  chart: podinfo\n", &remote.url(), ""),
    )]);
    let run = run_once(dir.path());
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains("401") || run.stderr.contains("username and password"),
        "{}",
        run.stderr
    );
    assert_eq!(remote.head("main"), before);
}

#[test]
fn a_chart_index_past_its_byte_bound_is_refused_not_held() {
    // A server that sends index bytes without end.
    let server = FakeServer::start(|_, _| {
        let (send, chunks) = std::sync::mpsc::sync_channel(4);
        std::thread::spawn(move || {
            let mut chunk = b"entries:\n  app:\n".to_vec();
            chunk.resize(1 << 20, b' ');
            for _ in 0..200 {
                if send.send(chunk.clone()).is_err() {
                    return;
                }
            }
        });
        Reply::Stream {
            status: 200,
            headers: vec![],
            chunks,
        }
    });
    let text = format!(
        "apiVersion: hoist.dev/v1alpha1\nkind: ImageRepository\nmetadata: {{name: app}}\nspec: {{image: 'http://{}/', chart: app, interval: 1h, insecure: true}}\n---\napiVersion: hoist.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {{name: app}}\nspec:\n  imageRepositoryRef: {{name: app}}\n  policy: {{semver: {{range: '*'}}}}\n",
        server.addr
    );
    // Plain HTTP only when the spec says so.
    let plain = files(&[("objects.yaml", &text.replace(", insecure: true", ""))]);
    let refused = hoist_env(
        plain.path(),
        &["scan", "-f", "objects.yaml", "--state-dir", "state"],
        &[],
    );
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("spec.insecure: ") && refused.stderr.contains("is plain HTTP"),
        "{}",
        refused.stderr
    );
    assert!(server.requests().is_empty());
    let dir = files(&[("objects.yaml", &text)]);
    let docker = dir.path().join("docker");
    std::fs::create_dir_all(&docker).unwrap_or_else(|e| panic!("{e}"));
    let run = hoist_env(
        dir.path(),
        &["scan", "-f", "objects.yaml", "--state-dir", "state"],
        &[("DOCKER_CONFIG", &docker.to_string_lossy())],
    );
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains("MiB") || run.stderr.contains("limit"),
        "{}",
        run.stderr
    );
}
