//! charts/hoist with a real, pinned Helm (`scripts/helm-tool`): `helm lint`
//! passes; every rendering, default and with every optional part on,
//! validates strictly against the Kubernetes JSON schemas of the versions
//! deploy.rs checks; the default rendering is the objects of `kustomize
//! build deploy/` (and the namespaced and Flux renderings those of its
//! components), so the two cannot drift apart; the chart's CRDs are `hoist
//! crds`; values that cannot work are refused; and `helm install` into the
//! test control plane rolls the controller out.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::support::cluster;
use crate::support::{hoist, repo_root, required};

const IMAGE: &str = "ghcr.io/hoist-dev/hoist";
const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn chart_dir() -> PathBuf {
    repo_root().join("charts/hoist")
}

/// Helm of `scripts/helm-tool`, with its config, cache and data in a
/// directory of its own (never the user's ~/.config/helm).
pub(crate) struct Helm {
    bin: PathBuf,
    home: tempfile::TempDir,
}

/// Helm, or `None` (with a note why) when it is not built outside CI. In
/// CI it must be there: `.ci/run` builds it.
pub(crate) fn helm() -> Option<Helm> {
    let bin = Command::new(repo_root().join("scripts/helm-tool"))
        .arg("bin")
        .output()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()).join("helm"));
    let why = match bin {
        Ok(bin) if bin.is_file() => {
            let home = tempfile::Builder::new()
                .prefix("hoist-helm-")
                .tempdir()
                .expect("a directory for helm's config and cache");
            return Some(Helm { bin, home });
        }
        Ok(bin) => format!("{} is missing", bin.display()),
        Err(e) => format!("running scripts/helm-tool: {e}"),
    };
    let why = format!("helm is not built (scripts/helm-tool build): {why}");
    assert!(!required(), "{why}");
    eprintln!("skipping: {why}");
    None
}

/// What one helm run printed, and whether it succeeded.
pub(crate) struct Run {
    pub(crate) ok: bool,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Helm {
    pub(crate) fn run(&self, args: &[&str]) -> Run {
        let home = self.home.path();
        let out: Output = Command::new(&self.bin)
            .args(args)
            .current_dir(repo_root())
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_DATA_HOME", home.join("data"))
            .env_remove("KUBECONFIG")
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", self.bin.display()));
        Run {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `helm template RELEASE charts/hoist -n NAMESPACE -f VALUES EXTRA...`.
    fn template(
        &self,
        release: &str,
        namespace: &str,
        values: &str,
        extra: &[&str],
    ) -> Result<String, String> {
        let file = tempfile::Builder::new()
            .suffix(".yaml")
            .tempfile_in(self.home.path())
            .expect("a values file");
        std::fs::write(file.path(), values).expect("writing the values file");
        let chart = chart_dir().to_string_lossy().into_owned();
        let values_path = file.path().to_string_lossy().into_owned();
        let mut args = vec![
            "template",
            release,
            &chart,
            "--namespace",
            namespace,
            "--values",
            &values_path,
        ];
        args.extend_from_slice(extra);
        let run = self.run(&args);
        if run.ok {
            Ok(run.stdout)
        } else {
            Err(run.stderr)
        }
    }

    /// [`Helm::template`] that must succeed.
    fn render(&self, release: &str, namespace: &str, values: &str, extra: &[&str]) -> String {
        self.template(release, namespace, values, extra)
            .unwrap_or_else(|e| panic!("helm template with\n{values}\nfailed: {e}"))
    }
}

/// The documents of a multi-document YAML text, each as its text and its
/// value; empty documents are dropped.
fn documents(text: &str) -> Vec<(String, Value)> {
    let mut chunks = vec![String::new()];
    for line in text.lines() {
        if line == "---" {
            chunks.push(String::new());
        } else if let Some(chunk) = chunks.last_mut() {
            chunk.push_str(line);
            chunk.push('\n');
        }
    }
    chunks
        .into_iter()
        .filter_map(|chunk| {
            let values = serde_saphyr::from_multiple::<Value>(&chunk)
                .unwrap_or_else(|e| panic!("a rendered document does not parse: {e}\n{chunk}"));
            let value = values.into_iter().find(|v| !v.is_null())?;
            Some((chunk, value))
        })
        .collect()
}

fn parse_objects(text: &str) -> Vec<Value> {
    documents(text).into_iter().map(|(_, v)| v).collect()
}

fn kind_name(object: &Value) -> String {
    format!(
        "{}/{}",
        object["kind"].as_str().unwrap_or("?"),
        object["metadata"]["name"].as_str().unwrap_or("?")
    )
}

fn sorted_kinds(objects: &[Value]) -> Vec<String> {
    let mut kinds: Vec<String> = objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap_or("?").to_string())
        .collect();
    kinds.sort_unstable();
    kinds
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| {
            let all: Vec<String> = objects.iter().map(kind_name).collect();
            panic!("no {kind}/{name} in {all:?}")
        })
}

fn container(deployment: &Value) -> &Value {
    &deployment["spec"]["template"]["spec"]["containers"][0]
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The Kubernetes versions deploy.rs validates deploy/ against, read from
/// its `VERSIONS`, so that the chart is checked against the same ones.
fn kubernetes_versions() -> Vec<String> {
    let source = std::fs::read_to_string(repo_root().join("tests/it/deploy.rs"))
        .expect("reading tests/it/deploy.rs");
    let line = source
        .lines()
        .find(|l| l.starts_with("const VERSIONS:"))
        .expect("tests/it/deploy.rs has a `const VERSIONS: [&str; N] = [...]` line");
    let list = &line[line.rfind('[').expect("a list of versions")..];
    let versions: Vec<String> = list
        .split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    assert!(
        versions.len() >= 2 && versions.iter().all(|v| v.starts_with("1.")),
        "{line}"
    );
    versions
}

/// kubernetes-validate of $HOIST_KUBERNETES_VALIDATE, else on PATH.
fn validator() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("HOIST_KUBERNETES_VALIDATE") {
        return Some(PathBuf::from(path));
    }
    let found = Command::new("kubernetes-validate")
        .arg("--help")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Some(PathBuf::from("kubernetes-validate"));
    }
    assert!(
        !required(),
        "kubernetes-validate is missing (pip install kubernetes-validate)"
    );
    eprintln!("skipped: kubernetes-validate is not installed");
    None
}

/// Validates a rendering strictly against each version's schemas. The
/// validator has no schema for the Prometheus Operator's ServiceMonitor
/// and only warns about a kind it has no schema for, so ServiceMonitors are
/// left out of its input (and checked by [`check_service_monitor`]); every
/// other document must pass, and a missing schema is a failure.
fn validate(validator: &Path, what: &str, rendered: &str) {
    let docs = documents(rendered);
    let checked: Vec<&(String, Value)> = docs
        .iter()
        .filter(|(_, v)| v["kind"] != "ServiceMonitor")
        .collect();
    assert!(!checked.is_empty(), "{what}: nothing rendered");
    let dir = tempfile::tempdir().expect("a directory for the rendering");
    let file = dir.path().join("rendered.yaml");
    let text: Vec<&str> = checked.iter().map(|(t, _)| t.as_str()).collect();
    std::fs::write(&file, text.join("---\n")).expect("writing the rendering");
    for version in kubernetes_versions() {
        let out = Command::new(validator)
            .args(["--strict", "-k", &version])
            .arg(&file)
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", validator.display()));
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "{what}, Kubernetes {version}:\n{report}"
        );
        assert!(
            !report.contains("Couldn't find schema"),
            "{what}, Kubernetes {version}:\n{report}"
        );
        assert_eq!(
            report.matches("passed for resource").count(),
            checked.len(),
            "{what}, Kubernetes {version}:\n{report}"
        );
    }
}

/// A ServiceMonitor as the Prometheus Operator's monitoring.coreos.com/v1
/// CRD takes it, for the chart's metrics Service: no field but the ones
/// the chart means to set, and a selector and port that find that Service.
fn check_service_monitor(monitor: &Value, metrics: &Value, namespace: &str, interval: &str) {
    fn keys(value: &Value) -> Vec<&str> {
        let mut keys: Vec<&str> = value
            .as_object()
            .map(|m| m.keys().map(String::as_str).collect())
            .unwrap_or_default();
        keys.sort_unstable();
        keys
    }
    assert_eq!(
        monitor["apiVersion"], "monitoring.coreos.com/v1",
        "{monitor}"
    );
    assert_eq!(keys(monitor), ["apiVersion", "kind", "metadata", "spec"]);
    assert_eq!(monitor["metadata"]["namespace"], namespace, "{monitor}");
    let spec = &monitor["spec"];
    assert_eq!(
        keys(spec),
        ["endpoints", "namespaceSelector", "selector"],
        "{spec}"
    );
    assert_eq!(
        strings(&spec["namespaceSelector"]["matchNames"]),
        [namespace],
        "{spec}"
    );
    assert_eq!(keys(&spec["selector"]), ["matchLabels"], "{spec}");
    let selector = spec["selector"]["matchLabels"]
        .as_object()
        .expect("matchLabels is a map");
    assert!(!selector.is_empty(), "{spec}");
    for (key, value) in selector {
        assert_eq!(
            &metrics["metadata"]["labels"][key], value,
            "the ServiceMonitor selects {key}={value}, which the metrics Service does not carry"
        );
    }
    let endpoints = spec["endpoints"].as_array().expect("endpoints is a list");
    assert_eq!(endpoints.len(), 1, "{spec}");
    let endpoint = &endpoints[0];
    for key in keys(endpoint) {
        assert!(
            ["port", "path", "scheme", "interval", "scrapeTimeout"].contains(&key),
            "unexpected endpoint field {key}: {endpoint}"
        );
    }
    assert_eq!(endpoint["port"], metrics["spec"]["ports"][0]["name"]);
    assert_eq!(endpoint["path"], "/metrics");
    assert_eq!(endpoint["scheme"], "http");
    assert_eq!(endpoint["interval"], interval);
    // Prometheus durations: a number and a unit, one or more times.
    let duration = regex::Regex::new(r"^([0-9]+(ms|s|m|h|d|w|y))+$").expect("the duration pattern");
    for key in ["interval", "scrapeTimeout"] {
        if let Some(value) = endpoint[key].as_str() {
            assert!(
                duration.is_match(value),
                "{key} {value:?} is not a Prometheus duration"
            );
        }
    }
}

/// hoist accepts `args` (`hoist ARGS --help` exits 0): the chart passes no
/// flag hoist does not have.
fn hoist_knows(args: &[&str]) {
    assert_eq!(args.first(), Some(&"controller"), "{args:?}");
    let mut check = args.to_vec();
    check.push("--help");
    let dir = tempfile::tempdir().expect("a directory for hoist");
    let run = hoist(dir.path(), &check, "");
    assert_eq!(run.code, 0, "hoist {}: {}", args.join(" "), run.stderr);
}

#[test]
fn helm_lint_passes() {
    let Some(helm) = helm() else { return };
    let chart = chart_dir().to_string_lossy().into_owned();
    for strict in [false, true] {
        let mut args = vec!["lint", chart.as_str()];
        if strict {
            args.push("--strict");
        }
        let run = helm.run(&args);
        assert!(
            run.ok && run.stdout.contains("1 chart(s) linted, 0 chart(s) failed"),
            "helm {}:\n{}{}",
            args.join(" "),
            run.stdout,
            run.stderr
        );
        assert!(
            !run.stdout.contains("[WARNING]") && !run.stdout.contains("[ERROR]"),
            "{}",
            run.stdout
        );
    }
    // With every optional part on, too.
    let values = tempfile::Builder::new()
        .suffix(".yaml")
        .tempfile()
        .expect("a values file");
    std::fs::write(values.path(), everything_on()).expect("writing the values");
    let values = values.path().to_string_lossy().into_owned();
    let run = helm.run(&["lint", &chart, "--strict", "--values", &values]);
    assert!(run.ok, "{}{}", run.stdout, run.stderr);
}

/// Values with every optional part of the chart on.
fn everything_on() -> String {
    format!(
        r#"image:
  tag: "0.1.0"
  digest: {DIGEST}
  pullPolicy: Always
imagePullSecrets: [{{name: regcred}}]
replicas: 2
leaderElection: {{enabled: true, leaseName: hoist-team-a}}
rbac: {{create: true, scope: namespace}}
flux: {{enabled: true}}
serviceAccount: {{create: true, annotations: {{example.com/role: hoist}}}}
webhook:
  enabled: true
  ingress:
    enabled: true
    className: nginx
    annotations: {{cert-manager.io/cluster-issuer: letsencrypt}}
    hosts:
      - host: hoist.example.com
        paths: [{{path: /hook, pathType: Prefix}}]
    tls: [{{secretName: hoist-tls, hosts: [hoist.example.com]}}]
metrics:
  enabled: true
  serviceMonitor: {{enabled: true, interval: 1m, scrapeTimeout: 10s, labels: {{release: prometheus}}}}
podAnnotations: {{example.com/scrape: "true"}}
podLabels: {{team: platform}}
nodeSelector: {{kubernetes.io/os: linux}}
tolerations: [{{key: dedicated, operator: Equal, value: hoist, effect: NoSchedule}}]
affinity:
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          topologyKey: kubernetes.io/hostname
          labelSelector: {{matchLabels: {{app.kubernetes.io/name: hoist}}}}
extraArgs: [--watch-label-selector=shard=a, --no-cross-namespace-refs]
extraEnv: [{{name: SSL_CERT_DIR, value: /etc/hoist/ca}}]
extraVolumes: [{{name: ca, configMap: {{name: hoist-ca}}}}]
extraVolumeMounts: [{{name: ca, mountPath: /etc/hoist/ca, readOnly: true}}]
"#
    )
}

#[test]
fn the_default_rendering_validates_against_the_kubernetes_schemas() {
    let Some(helm) = helm() else { return };
    let Some(validator) = validator() else { return };
    let rendered = helm.render("hoist", "hoist-system", "", &["--include-crds"]);
    validate(&validator, "default values", &rendered);
    let objects = parse_objects(&rendered);
    assert_eq!(
        sorted_kinds(&objects),
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
            "Role",
            "RoleBinding",
            "Service",
            "Service",
            "ServiceAccount"
        ]
    );
    // Standard labels on every object the chart owns (not the CRDs, which
    // are `hoist crds` byte for byte).
    for object in objects
        .iter()
        .filter(|o| o["kind"] != "CustomResourceDefinition")
    {
        let labels = &object["metadata"]["labels"];
        assert_eq!(labels["app.kubernetes.io/name"], "hoist", "{object}");
        assert_eq!(labels["app.kubernetes.io/instance"], "hoist", "{object}");
        assert_eq!(
            labels["app.kubernetes.io/version"],
            env!("CARGO_PKG_VERSION"),
            "{object}"
        );
        assert_eq!(labels["app.kubernetes.io/managed-by"], "Helm", "{object}");
        assert_eq!(
            labels["helm.sh/chart"],
            format!("hoist-{}", env!("CARGO_PKG_VERSION")),
            "{object}"
        );
    }
    let deployment = find(&objects, "Deployment", "hoist");
    assert_eq!(
        container(deployment)["image"],
        format!("{IMAGE}:{}", env!("CARGO_PKG_VERSION"))
    );
    hoist_knows(&strings(&container(deployment)["args"]));
}

#[test]
fn every_optional_part_renders_valid_objects() {
    let Some(helm) = helm() else { return };
    let Some(validator) = validator() else { return };

    // Everything on: namespace scope with --flux, ingress, ServiceMonitor,
    // digest, extra args, env and volumes.
    let rendered = helm.render("hoist", "team-a", &everything_on(), &[]);
    validate(&validator, "every optional part on", &rendered);
    let objects = parse_objects(&rendered);
    assert_eq!(
        sorted_kinds(&objects),
        [
            "Deployment",
            "Ingress",
            "Role",
            "Role",
            "RoleBinding",
            "RoleBinding",
            "Service",
            "Service",
            "ServiceAccount",
            "ServiceMonitor"
        ]
    );
    let deployment = find(&objects, "Deployment", "hoist");
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pod = &deployment["spec"]["template"];
    assert_eq!(pod["metadata"]["labels"]["team"], "platform");
    assert_eq!(pod["metadata"]["annotations"]["example.com/scrape"], "true");
    assert_eq!(pod["spec"]["imagePullSecrets"][0]["name"], "regcred");
    assert_eq!(pod["spec"]["nodeSelector"]["kubernetes.io/os"], "linux");
    assert_eq!(pod["spec"]["tolerations"][0]["key"], "dedicated");
    assert!(pod["spec"]["affinity"]["podAntiAffinity"].is_object());
    let c = container(deployment);
    assert_eq!(c["image"], format!("{IMAGE}:0.1.0@{DIGEST}"));
    assert_eq!(c["imagePullPolicy"], "Always");
    let args = strings(&c["args"]);
    assert_eq!(
        args,
        [
            "controller",
            "--flux",
            "--leader-elect",
            "--lease-name=hoist-team-a",
            "--state-dir=/var/lib/hoist",
            "--metrics-addr=0.0.0.0:8080",
            "--webhook-addr=0.0.0.0:9292",
            "--log-format=json",
            "--log-level=info",
            "--namespace=$(POD_NAMESPACE)",
            "--watch-label-selector=shard=a",
            "--no-cross-namespace-refs"
        ]
    );
    hoist_knows(&args);
    let env: Vec<&str> = c["env"]
        .as_array()
        .map(|e| e.iter().filter_map(|v| v["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(env, ["POD_NAME", "POD_NAMESPACE", "HOME", "SSL_CERT_DIR"]);
    assert_eq!(c["volumeMounts"][2]["mountPath"], "/etc/hoist/ca");
    assert_eq!(pod["spec"]["volumes"][2]["configMap"]["name"], "hoist-ca");
    // --flux in one namespace: deploy/flux's rules as a Role there.
    let role = find(&objects, "Role", "hoist-flux");
    assert_eq!(role["metadata"]["namespace"], "team-a");
    let groups = role["rules"].to_string();
    assert!(groups.contains("image.toolkit.fluxcd.io"), "{role}");
    assert!(!groups.contains("\"hoist.dev\""), "{role}");
    let binding = find(&objects, "RoleBinding", "hoist-flux");
    assert_eq!(binding["roleRef"]["name"], "hoist-flux");
    assert_eq!(binding["subjects"][0]["name"], "hoist");
    assert_eq!(
        find(&objects, "ServiceAccount", "hoist")["metadata"]["annotations"]["example.com/role"],
        "hoist"
    );
    let ingress = find(&objects, "Ingress", "hoist-webhook");
    assert_eq!(ingress["spec"]["ingressClassName"], "nginx");
    assert_eq!(ingress["spec"]["tls"][0]["secretName"], "hoist-tls");
    assert_eq!(
        ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"],
        "letsencrypt"
    );
    let rule = &ingress["spec"]["rules"][0];
    assert_eq!(rule["host"], "hoist.example.com");
    let backend = &rule["http"]["paths"][0]["backend"]["service"];
    let webhook = find(&objects, "Service", "hoist-webhook");
    assert_eq!(backend["name"], "hoist-webhook");
    assert_eq!(backend["port"]["name"], webhook["spec"]["ports"][0]["name"]);
    let monitor = find(&objects, "ServiceMonitor", "hoist");
    assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");
    check_service_monitor(
        monitor,
        find(&objects, "Service", "hoist-metrics"),
        "team-a",
        "1m",
    );

    // hoist's own kinds in another namespace than the release's.
    let rendered = helm.render(
        "hoist",
        "hoist-system",
        "rbac: {scope: namespace}\nwatchNamespace: team-b\n",
        &[],
    );
    validate(&validator, "rbac.scope=namespace", &rendered);
    let objects = parse_objects(&rendered);
    let role = find(&objects, "Role", "hoist");
    assert_eq!(role["metadata"]["namespace"], "team-b");
    assert!(
        role["rules"].to_string().contains("\"hoist.dev\""),
        "{role}"
    );
    assert_eq!(
        find(&objects, "RoleBinding", "hoist")["subjects"][0]["namespace"],
        "hoist-system"
    );
    assert_eq!(
        find(&objects, "Role", "hoist-leader-election")["metadata"]["namespace"],
        "hoist-system"
    );
    assert!(!objects.iter().any(|o| o["kind"] == "ClusterRole"));
    let args = strings(&container(find(&objects, "Deployment", "hoist"))["args"]);
    assert_eq!(args.last(), Some(&"--namespace=team-b"), "{args:?}");
    hoist_knows(&args);

    // A digest alone pins the image by digest; no tag.
    let rendered = helm.render(
        "hoist",
        "hoist-system",
        &format!("image: {{digest: {DIGEST}}}\n"),
        &[],
    );
    validate(&validator, "image.digest", &rendered);
    let objects = parse_objects(&rendered);
    assert_eq!(
        container(find(&objects, "Deployment", "hoist"))["image"],
        format!("{IMAGE}@{DIGEST}")
    );

    // Everything off: no webhook, no metrics Service, no RBAC, a
    // ServiceAccount of one's own, a single replica without a lease.
    let rendered = helm.render(
        "team",
        "hoist-system",
        "webhook: {enabled: false}\nmetrics: {enabled: false}\nrbac: {create: false}\nserviceAccount: {create: false, name: hoist-own}\nleaderElection: {enabled: false}\n",
        &[],
    );
    validate(&validator, "everything off", &rendered);
    let objects = parse_objects(&rendered);
    assert_eq!(sorted_kinds(&objects), ["Deployment"]);
    let deployment = find(&objects, "Deployment", "team-hoist");
    assert_eq!(
        deployment["spec"]["template"]["spec"]["serviceAccountName"],
        "hoist-own"
    );
    let c = container(deployment);
    let args = strings(&c["args"]);
    assert!(
        !args
            .iter()
            .any(|a| a.starts_with("--webhook-addr") || *a == "--leader-elect"),
        "{args:?}"
    );
    // The probes still have their port: the metrics listener serves them.
    assert!(args.contains(&"--metrics-addr=0.0.0.0:8080"), "{args:?}");
    assert_eq!(c["ports"].as_array().map(Vec::len), Some(1), "{c}");
    hoist_knows(&args);
}

/// objectLevelIdentity: the flag, and deploy/object-identity's rules in
/// the controller's ClusterRole (or its Role in one namespace).
#[test]
fn object_level_identity_adds_the_flag_and_the_token_rules() {
    let Some(helm) = helm() else { return };
    let Some(validator) = validator() else { return };
    let expected = std::fs::read_to_string(repo_root().join("deploy/object-identity/rbac.yaml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let expected_rules: String = expected
        .lines()
        .skip_while(|l| *l != "rules:")
        .skip(1)
        .take_while(|l| *l != "---")
        .map(|l| format!("{l}\n"))
        .collect();
    for scope in ["cluster", "namespace"] {
        let values = format!("objectLevelIdentity: {{enabled: true}}\nrbac: {{scope: {scope}}}\n");
        let rendered = helm.render("hoist", "hoist-system", &values, &[]);
        validate(
            &validator,
            &format!("objectLevelIdentity, {scope} scope"),
            &rendered,
        );
        let objects = parse_objects(&rendered);
        let args = strings(&container(find(&objects, "Deployment", "hoist"))["args"]);
        assert!(args.contains(&"--object-level-identity"), "{args:?}");
        hoist_knows(&args);
        let kind = if scope == "cluster" {
            "ClusterRole"
        } else {
            "Role"
        };
        let rules = find(&objects, kind, "hoist")["rules"].to_string();
        assert!(
            rules.contains(
                r#"{"apiGroups":[""],"resources":["serviceaccounts/token"],"verbs":["create"]}"#
            ) && rules
                .contains(r#"{"apiGroups":[""],"resources":["serviceaccounts"],"verbs":["get"]}"#),
            "{rules}"
        );
        // deploy/object-identity's rules, word for word.
        assert!(rendered.contains(&expected_rules), "{rendered}");
    }
}

/// Refused at render time, with a message that says what to change.
#[test]
fn values_that_cannot_work_are_refused() {
    let Some(helm) = helm() else { return };
    let refused = [
        (
            "replicas: 2\nleaderElection: {enabled: false}\n",
            "replicas is 2 but leaderElection.enabled is false",
        ),
        ("rbac: {scope: everywhere}\n", "it is cluster or namespace"),
        (
            "watchNamespace: team-b\n",
            "watchNamespace is set but rbac.scope is not namespace",
        ),
        (
            "webhook: {enabled: false, ingress: {enabled: true}}\n",
            "webhook.ingress.enabled needs webhook.enabled",
        ),
        (
            "metrics: {enabled: false, serviceMonitor: {enabled: true}}\n",
            "metrics.serviceMonitor.enabled needs metrics.enabled",
        ),
        ("image: {digest: latest}\n", "is not a digest"),
        (
            "podLabels: {app.kubernetes.io/name: other}\n",
            "podLabels sets app.kubernetes.io/name, which the Deployment's selector sets",
        ),
        (
            "metrics: {serviceMonitor: {enabled: true, labels: {app.kubernetes.io/instance: x}}}\n",
            "metrics.serviceMonitor.labels sets app.kubernetes.io/instance",
        ),
        (
            "serviceAccount: {create: false}\n",
            "would bind hoist's roles (Secrets, impersonation) to the namespace's default ServiceAccount",
        ),
    ];
    for (values, message) in refused {
        match helm.template("hoist", "hoist-system", values, &[]) {
            Ok(out) => panic!("helm template rendered\n{values}\n{out}"),
            Err(e) => assert!(e.contains(message), "{values}: {e}"),
        }
    }
    // The same replicas with leader election are fine.
    let out = helm.render("hoist", "hoist-system", "replicas: 2\n", &[]);
    assert!(out.contains("replicas: 2\n"), "{out}");
}

/// Two releases in one namespace elect on leases of their own (one lease
/// would leave the second waiting on the first forever), and a long name
/// still gives Services within the 63 characters a Service name may have.
#[test]
fn releases_get_their_own_lease_and_valid_names() {
    let Some(helm) = helm() else { return };
    let lease = |release: &str, values: &str| {
        let objects = parse_objects(&helm.render(release, "platform", values, &[]));
        let deployment = objects
            .iter()
            .find(|o| o["kind"] == "Deployment")
            .expect("a Deployment");
        strings(&container(deployment)["args"])
            .into_iter()
            .find_map(|a| a.strip_prefix("--lease-name="))
            .map(str::to_string)
    };
    assert_eq!(
        lease("hoist", ""),
        None,
        "hoist's default lease, as deploy/"
    );
    assert_eq!(lease("team-a", "").as_deref(), Some("team-a-hoist"));
    assert_eq!(lease("team-b", "").as_deref(), Some("team-b-hoist"));
    assert_eq!(
        lease("team-b", "leaderElection: {leaseName: shared}\n").as_deref(),
        Some("shared")
    );

    let long = "image-automation-for-the-platform-team-production-eu-west1";
    assert!(long.len() > 55);
    // Helm takes release names of up to 53 characters; with "-hoist" a
    // long one is over 55.
    let release_name = &long[..49];
    for (release, values) in [
        ("hoist", format!("fullnameOverride: {long}\n")),
        (release_name, String::new()),
    ] {
        let objects = parse_objects(&helm.render(release, "platform", &values, &[]));
        let services: Vec<&str> = objects
            .iter()
            .filter(|o| o["kind"] == "Service")
            .filter_map(|o| o["metadata"]["name"].as_str())
            .collect();
        assert_eq!(services.len(), 2, "{services:?}");
        for name in services {
            assert!(
                name.len() <= 63 && !name.contains("--"),
                "{release}: Service {name:?} is not a valid Service name"
            );
        }
    }
}

/// The chart's CRDs are `hoist crds` (and so deploy/crds) byte for byte.
#[test]
fn chart_crds_match_hoist_crds() {
    let run = hoist(&repo_root(), &["crds"], "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    let committed = std::fs::read_to_string(chart_dir().join("crds/hoist.dev.yaml"))
        .expect("reading charts/hoist/crds/hoist.dev.yaml");
    assert!(
        committed == run.stdout,
        "charts/hoist/crds/hoist.dev.yaml differs from `hoist crds`; regenerate it with \
         `cargo run -q -- crds > charts/hoist/crds/hoist.dev.yaml`"
    );
    assert_eq!(
        committed
            .matches("kind: CustomResourceDefinition\n")
            .count(),
        6
    );
}

#[test]
fn chart_version_is_hoist_s_version() {
    let text = std::fs::read_to_string(chart_dir().join("Chart.yaml")).expect("reading Chart.yaml");
    let chart: Value = serde_saphyr::from_str(&text).expect("Chart.yaml parses");
    assert_eq!(chart["apiVersion"], "v2");
    assert_eq!(chart["name"], "hoist");
    assert_eq!(
        chart["version"],
        env!("CARGO_PKG_VERSION"),
        "Chart.yaml's version is Cargo.toml's"
    );
    assert_eq!(
        chart["appVersion"],
        env!("CARGO_PKG_VERSION"),
        "Chart.yaml's appVersion is Cargo.toml's (a quoted string)"
    );
}

/// kustomize of `scripts/test-cluster bin` (or $HOIST_KUSTOMIZE), or None
/// outside CI when it is not built.
fn kustomize() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("HOIST_KUSTOMIZE") {
        return Some(PathBuf::from(path));
    }
    let bin = Command::new(repo_root().join("scripts/test-cluster"))
        .arg("bin")
        .output()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()).join("kustomize"));
    match bin {
        Ok(bin) if bin.is_file() => Some(bin),
        other => {
            let why = format!("kustomize is not built (scripts/test-cluster build): {other:?}");
            assert!(!required(), "{why}");
            eprintln!("skipping: {why}");
            None
        }
    }
}

/// `kustomize build` of deploy/, or of a kustomization of one's own that
/// takes deploy/ with `component` and `extra` lines.
fn kustomize_build(kustomize: &Path, extra: &str, component: Option<&str>) -> Vec<Value> {
    let dir = tempfile::tempdir().expect("a directory for the kustomization");
    let target = match component {
        None => repo_root().join("deploy"),
        Some(component) => {
            // kustomize takes only relative paths to other kustomizations.
            let up = "../".repeat(dir.path().components().count().saturating_sub(1));
            let root = repo_root();
            let deploy = format!(
                "{up}{}/deploy",
                root.to_string_lossy().trim_start_matches('/')
            );
            std::fs::write(
                dir.path().join("kustomization.yaml"),
                format!(
                    "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n{extra}resources: [{deploy}]\ncomponents: [{deploy}/{component}]\n"
                ),
            )
            .expect("writing the kustomization");
            dir.path().to_path_buf()
        }
    };
    let out = Command::new(kustomize)
        .arg("build")
        .arg(&target)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", kustomize.display()));
    assert!(
        out.status.success(),
        "kustomize build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_objects(&String::from_utf8_lossy(&out.stdout))
}

/// The labels only the chart sets: Helm's standard labels besides deploy/'s
/// `app.kubernetes.io/name`, and the component that tells the two Services
/// apart for a ServiceMonitor.
const CHART_LABELS: [&str; 5] = [
    "helm.sh/chart",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/component",
];

/// Removes `keys` from the map at `pointer` in `object`, when there is one.
fn drop_keys(object: &mut Value, pointer: &str, keys: &[&str]) {
    if let Some(map) = object.pointer_mut(pointer).and_then(Value::as_object_mut) {
        for key in keys {
            map.remove(*key);
        }
    }
}

/// A chart object as deploy/ has it: the chart's extra labels and selector
/// label dropped, the image (both tagged with Cargo.toml's version: the
/// chart's appVersion, deploy/'s kustomize `images:`) and the pull policy
/// checked and then set aside.
fn normalise_chart(mut object: Value) -> Value {
    drop_keys(&mut object, "/metadata/labels", &CHART_LABELS);
    let instance = ["app.kubernetes.io/instance"];
    match object["kind"].as_str() {
        Some("Service") => drop_keys(&mut object, "/spec/selector", &instance),
        Some("Deployment") => {
            drop_keys(&mut object, "/spec/selector/matchLabels", &instance);
            drop_keys(&mut object, "/spec/template/metadata/labels", &instance);
            let c = &mut object["spec"]["template"]["spec"]["containers"][0];
            assert_eq!(c["image"], format!("{IMAGE}:{}", env!("CARGO_PKG_VERSION")));
            assert_eq!(c["imagePullPolicy"], "IfNotPresent");
            c["image"] = Value::from(IMAGE);
            drop_keys(c, "", &["imagePullPolicy"]);
        }
        _ => {}
    }
    object
}

fn normalise_deploy(mut object: Value) -> Value {
    if object["kind"] == "Deployment" {
        let c = &mut object["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["image"], format!("{IMAGE}:{}", env!("CARGO_PKG_VERSION")));
        c["image"] = Value::from(IMAGE);
    }
    object
}

/// Numbers as one form: kustomize writes the CRDs' `1.0` as `1`.
fn canonical(value: Value) -> Value {
    match value {
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 9.0e15 => Value::from(f as i64),
            _ => Value::Number(n),
        },
        Value::Array(items) => Value::Array(items.into_iter().map(canonical).collect()),
        Value::Object(map) => {
            Value::Object(map.into_iter().map(|(k, v)| (k, canonical(v))).collect())
        }
        other => other,
    }
}

fn sort_key(object: &Value) -> (String, String, String) {
    let field = |v: &Value| v.as_str().unwrap_or("").to_string();
    (
        field(&object["kind"]),
        field(&object["metadata"]["namespace"]),
        field(&object["metadata"]["name"]),
    )
}

/// The chart's objects and kustomize's are the same but for what
/// [`normalise_chart`] sets aside, and the Namespace deploy/ makes (the
/// chart installs into the release's namespace).
fn assert_same_objects(what: &str, chart: Vec<Value>, deploy: Vec<Value>, namespace: &str) {
    let (namespaces, deploy): (Vec<Value>, Vec<Value>) =
        deploy.into_iter().partition(|o| o["kind"] == "Namespace");
    assert_eq!(namespaces.len(), 1, "{what}: deploy/ makes one Namespace");
    assert_eq!(namespaces[0]["metadata"]["name"], namespace);
    let mut chart: Vec<Value> = chart
        .into_iter()
        .map(|o| canonical(normalise_chart(o)))
        .collect();
    let mut deploy: Vec<Value> = deploy
        .into_iter()
        .map(|o| canonical(normalise_deploy(o)))
        .collect();
    chart.sort_by_key(sort_key);
    deploy.sort_by_key(sort_key);
    let names = |objects: &[Value]| objects.iter().map(kind_name).collect::<Vec<_>>();
    assert_eq!(names(&chart), names(&deploy), "{what}: the objects differ");
    for (chart, deploy) in chart.iter().zip(&deploy) {
        let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_default();
        assert!(
            chart == deploy,
            "{what}: {} differs from deploy/'s\n--- chart\n{}\n--- deploy/\n{}",
            kind_name(chart),
            pretty(chart),
            pretty(deploy)
        );
    }
}

/// With default values the chart renders what `kustomize build deploy/`
/// does, object for object and field for field (ServiceAccount, RBAC,
/// Deployment args, securityContext, probes, volumes, Services, CRDs).
#[test]
fn the_default_rendering_is_deploy_s_objects() {
    let Some(helm) = helm() else { return };
    let Some(kustomize) = kustomize() else { return };
    let chart = parse_objects(&helm.render("hoist", "hoist-system", "", &["--include-crds"]));
    let deploy = kustomize_build(&kustomize, "", None);
    assert_same_objects("default values", chart, deploy, "hoist-system");
}

/// rbac.scope=namespace renders what deploy/ with deploy/namespaced does
/// in that namespace.
#[test]
fn the_namespace_scope_is_deploy_namespaced() {
    let Some(helm) = helm() else { return };
    let Some(kustomize) = kustomize() else { return };
    let chart = parse_objects(&helm.render(
        "hoist",
        "team-a",
        "rbac: {scope: namespace}\n",
        &["--include-crds"],
    ));
    let deploy = kustomize_build(&kustomize, "namespace: team-a\n", Some("namespaced"));
    assert_same_objects("rbac.scope=namespace", chart, deploy, "team-a");
}

/// flux.enabled renders what deploy/ with deploy/flux does, installed with
/// --skip-crds (hoist's CRDs are not needed).
#[test]
fn flux_enabled_is_deploy_flux() {
    let Some(helm) = helm() else { return };
    let Some(kustomize) = kustomize() else { return };
    let chart = parse_objects(&helm.render(
        "hoist",
        "hoist-system",
        "flux: {enabled: true}\n",
        &["--skip-crds"],
    ));
    let deploy = kustomize_build(&kustomize, "", Some("flux"));
    assert_same_objects("flux.enabled", chart, deploy, "hoist-system");
}

/// Uninstalls the release when the test ends, however it ends.
struct Release<'a> {
    helm: &'a Helm,
    name: String,
    namespace: String,
    kubeconfig: String,
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        let run = self.helm.run(&[
            "uninstall",
            &self.name,
            "--namespace",
            &self.namespace,
            "--kubeconfig",
            &self.kubeconfig,
            "--wait",
            "--timeout",
            "60s",
        ]);
        if !run.ok {
            eprintln!("helm uninstall {}: {}", self.name, run.stderr);
        }
    }
}

/// `helm install` into the real control plane: the CRDs become
/// Established, the Deployment is accepted and rolls out (kwok runs its
/// pod) with the chart's image and flags, the ServiceAccount holds the
/// ClusterRole's permissions, and `helm uninstall` removes what it made.
#[test]
fn helm_install_into_the_test_control_plane() {
    let Some(helm) = helm() else { return };
    let Some(cluster) = cluster::cluster() else {
        return;
    };
    let namespace = cluster.namespace("chart_install");
    // The release's name is the namespace's, so that its cluster-wide
    // objects (ClusterRole NAME-hoist) are its own among the other tests'.
    let name = namespace.clone();
    let fullname = format!("{name}-hoist");
    let kubeconfig = cluster.kubeconfig.to_string_lossy().into_owned();
    let chart = chart_dir().to_string_lossy().into_owned();
    let release = Release {
        helm: &helm,
        name: name.clone(),
        namespace: namespace.clone(),
        kubeconfig: kubeconfig.clone(),
    };
    let run = helm.run(&[
        "install",
        &name,
        &chart,
        "--namespace",
        &namespace,
        "--kubeconfig",
        &kubeconfig,
        "--wait",
        "--timeout",
        "120s",
    ]);
    assert!(run.ok, "helm install:\n{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("STATUS: deployed"), "{}", run.stdout);
    assert!(
        run.stdout.contains(&format!("Deployment {fullname}")),
        "the NOTES name the Deployment:\n{}",
        run.stdout
    );

    cluster.wait_for_hoist_crds();

    readme_first_automation_is_accepted(cluster, &namespace);

    let deployment = cluster
        .get("deployment", &namespace, &fullname)
        .unwrap_or_else(|| panic!("no Deployment {namespace}/{fullname}"));
    let c = container(&deployment);
    assert_eq!(c["image"], format!("{IMAGE}:{}", env!("CARGO_PKG_VERSION")));
    let args = strings(&c["args"]);
    assert_eq!(
        args,
        [
            "controller",
            "--leader-elect",
            // A release not named hoist elects on a lease of its own.
            &format!("--lease-name={fullname}"),
            "--state-dir=/var/lib/hoist",
            "--metrics-addr=0.0.0.0:8080",
            "--webhook-addr=0.0.0.0:9292",
            "--log-format=json",
            "--log-level=info"
        ]
    );
    assert_eq!(deployment["status"]["readyReplicas"], 1, "{deployment}");
    assert_eq!(
        deployment["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "Helm"
    );

    // The bindings name the chart's ServiceAccount.
    let account = format!("system:serviceaccount:{namespace}:{fullname}");
    let can = |args: &[&str]| {
        let mut all = vec!["auth", "can-i"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--as", &account]);
        cluster.kubectl_in(&repo_root(), &all, "").stdout.trim() == "yes"
    };
    assert!(can(&["get", "secrets", "-n", "default"]));
    assert!(can(&[
        "patch",
        "imagepolicies.hoist.dev",
        "--subresource=status",
        "-A"
    ]));
    assert!(can(&["patch", "leases", "-n", &namespace]));
    assert!(!can(&["list", "secrets", "-n", "default"]));
    assert!(!can(&["patch", "leases", "-n", "default"]));

    drop(release);
    let left = cluster.kubectl_in(&repo_root(), &["get", "clusterrole", &fullname], "");
    assert!(
        !left.ok && left.stderr.contains("NotFound"),
        "helm uninstall left ClusterRole {fullname}: {}{}",
        left.stdout,
        left.stderr
    );
    assert!(cluster.get("deployment", &namespace, &fullname).is_none());
    cluster.kubectl(&["delete", "namespace", &namespace, "--wait=false"]);
}

/// The README's "first automation in the cluster" objects (the two example
/// files it applies and its ImageUpdateAutomation) are accepted by the
/// CRDs the chart installed, in the test's namespace instead of `apps`.
fn readme_first_automation_is_accepted(cluster: &cluster::Cluster, namespace: &str) {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("reading README.md");
    let section = readme
        .split("### A first automation in the cluster")
        .nth(1)
        .expect("the README has a first automation section");
    let automation = section
        .split("<<'YAML'\n")
        .nth(1)
        .and_then(|rest| rest.split("\nYAML\n").next())
        .expect("the section applies an ImageUpdateAutomation from a heredoc");
    assert!(
        section.contains("kubectl apply -f policies/image-repository.yaml -f policies/semver.yaml"),
        "the section applies the example repository and policy"
    );
    let mut objects = Vec::new();
    for file in ["policies/image-repository.yaml", "policies/semver.yaml"] {
        objects.push(std::fs::read_to_string(repo_root().join(file)).expect("an example file"));
    }
    objects.push(automation.to_string());
    let yaml = objects
        .join("\n---\n")
        .replace("namespace: apps", &format!("namespace: {namespace}"));
    assert_eq!(
        yaml.matches(&format!("namespace: {namespace}")).count(),
        3,
        "{yaml}"
    );
    cluster.apply(&yaml);
    let automation = cluster
        .get("imageupdateautomation", namespace, "fleet")
        .expect("the README's automation was stored");
    assert_eq!(automation["spec"]["git"]["secretRef"]["name"], "fleet-git");
    assert!(cluster.get("imagepolicy", namespace, "podinfo").is_some());
}
