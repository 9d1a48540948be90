//! The real control plane of `scripts/test-cluster`: one per test binary,
//! started on first use and stopped when the binary exits (its watchdog
//! follows this process), a namespace per test.
//!
//! `HOIST_TEST_KUBECONFIG` points the tests at a control plane started by
//! hand (`scripts/test-cluster up DIR`), whose audit log is then read from
//! `DIR/logs/audit.log` beside that kubeconfig.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

use super::{repo_root, required};

/// A running control plane.
pub struct Cluster {
    /// The admin kubeconfig (user `hoist-test-admin`, group system:masters).
    pub kubeconfig: PathBuf,
    /// Where the control plane keeps its logs and state.
    pub dir: PathBuf,
    /// The directory of the control plane's binaries, kubectl among them.
    pub bin: PathBuf,
    /// deploy/ applied, once.
    installed: OnceLock<()>,
    /// Flux's CRDs applied, once.
    flux_installed: OnceLock<()>,
}

/// The user of the admin kubeconfig, as the audit log names it.
pub const ADMIN: &str = "hoist-test-admin";

/// The user of [`Cluster::hoist_kubeconfig`] (group system:masters), as
/// the audit log names it: requests by it are hoist's, not the test's.
pub const HOIST: &str = "hoist";

/// What went wrong starting the control plane, shown by every test that
/// needs it.
static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();

/// The controller's ServiceAccount as deploy/ ships it, as the audit log
/// names it.
pub const CONTROLLER: &str = "system:serviceaccount:hoist-system:hoist";

fn script() -> PathBuf {
    repo_root().join("scripts/test-cluster")
}

fn start() -> Result<Cluster, String> {
    let bin = Command::new(script())
        .arg("bin")
        .output()
        .map_err(|e| format!("running scripts/test-cluster: {e}"))?;
    let bin = PathBuf::from(String::from_utf8_lossy(&bin.stdout).trim());
    if let Ok(kubeconfig) = std::env::var("HOIST_TEST_KUBECONFIG") {
        let kubeconfig = PathBuf::from(kubeconfig);
        let dir = kubeconfig
            .parent()
            .ok_or("HOIST_TEST_KUBECONFIG has no parent directory")?
            .to_path_buf();
        return Ok(Cluster {
            kubeconfig,
            dir,
            bin,
            installed: OnceLock::new(),
            flux_installed: OnceLock::new(),
        });
    }
    // The script's watchdog stops the control plane and removes this
    // directory once this process has exited: a static is never dropped.
    let dir = tempfile::Builder::new()
        .prefix("hoist-test-cluster-")
        .tempdir()
        .map_err(|e| format!("a directory for the control plane: {e}"))?
        .keep();
    let out = Command::new(script())
        .arg("up")
        .arg(&dir)
        .env("HOIST_TEST_CLUSTER_OWNER", std::process::id().to_string())
        .output()
        .map_err(|e| format!("running scripts/test-cluster up: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "scripts/test-cluster up failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(Cluster {
        kubeconfig: dir.join("kubeconfig"),
        dir,
        bin,
        installed: OnceLock::new(),
        flux_installed: OnceLock::new(),
    })
}

/// The control plane, or `None` (with a note why) when it cannot be started
/// outside CI. In CI it must start: a missing control plane fails the test.
pub fn cluster() -> Option<&'static Cluster> {
    match CLUSTER.get_or_init(start) {
        Ok(cluster) => Some(cluster),
        Err(why) => unavailable(why),
    }
}

fn unavailable<T>(why: &str) -> Option<T> {
    if required() {
        panic!("the test control plane is required in CI: {why}");
    }
    eprintln!("skipping: no test control plane: {why}");
    None
}

/// A control plane of the test's own, for a test that stops or restarts
/// its API server (which would disturb every other test on a shared one);
/// stopped and removed when dropped.
pub struct Private(Cluster);

impl std::ops::Deref for Private {
    type Target = Cluster;
    fn deref(&self) -> &Cluster {
        &self.0
    }
}

impl Drop for Private {
    fn drop(&mut self) {
        let _ = Command::new(script()).arg("down").arg(&self.0.dir).status();
        let _ = std::fs::remove_dir_all(&self.0.dir);
    }
}

/// Starts a [`Private`] control plane, or `None` as [`cluster`] does.
pub fn private() -> Option<Private> {
    if std::env::var_os("HOIST_TEST_KUBECONFIG").is_some() {
        eprintln!(
            "skipping: this test stops its API server, and HOIST_TEST_KUBECONFIG names a shared one"
        );
        return None;
    }
    match start() {
        Ok(cluster) => Some(Private(cluster)),
        Err(why) => unavailable(&why),
    }
}

/// What one kubectl run printed.
pub struct Kubectl {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Cluster {
    /// `scripts/test-cluster ACTION DIR COMPONENT`: stop, start or restart
    /// one component (a started kube-apiserver is ready when it returns).
    pub fn component(&self, action: &str, component: &str) {
        let out = Command::new(script())
            .args([action, &self.dir.to_string_lossy(), component])
            .output()
            .unwrap_or_else(|e| panic!("scripts/test-cluster {action}: {e}"));
        assert!(
            out.status.success(),
            "scripts/test-cluster {action} {component}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The kubeconfig hoist runs with in the tests, user [`HOIST`].
    pub fn hoist_kubeconfig(&self) -> PathBuf {
        self.dir.join("hoist.kubeconfig")
    }

    /// Runs kubectl as the admin with `stdin`, in `dir`.
    pub fn kubectl_in(&self, dir: &Path, args: &[&str], stdin: &str) -> Kubectl {
        use std::io::Write;
        let mut child = Command::new(self.bin.join("kubectl"))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .current_dir(dir)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting kubectl: {e}"));
        if let Some(mut input) = child.stdin.take() {
            input
                .write_all(stdin.as_bytes())
                .unwrap_or_else(|e| panic!("kubectl stdin: {e}"));
        }
        let out = child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("kubectl: {e}"));
        Kubectl {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs kubectl as the admin and returns what it printed, panicking
    /// with its error when it fails.
    pub fn kubectl(&self, args: &[&str]) -> String {
        let run = self.kubectl_in(&repo_root(), args, "");
        assert!(run.ok, "kubectl {}: {}", args.join(" "), run.stderr);
        run.stdout
    }

    /// Applies YAML documents as the admin (server-side, as a manager of
    /// the test's own, so hoist's later applies never conflict with it).
    pub fn apply(&self, yaml: &str) {
        let run = self.kubectl_in(
            &repo_root(),
            &[
                "apply",
                "--server-side",
                "--field-manager=test",
                "--force-conflicts",
                "-f",
                "-",
            ],
            yaml,
        );
        assert!(run.ok, "kubectl apply: {}\n{yaml}", run.stderr);
    }

    /// One object as JSON, or `None` when the server has none.
    pub fn get(&self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        let run = self.kubectl_in(
            &repo_root(),
            &["get", resource, name, "-n", namespace, "-o", "json"],
            "",
        );
        if !run.ok {
            assert!(
                run.stderr.contains("NotFound"),
                "kubectl get: {}",
                run.stderr
            );
            return None;
        }
        serde_json::from_str(&run.stdout).ok()
    }

    /// deploy/ as a user installs it, `kubectl apply --server-side -k
    /// deploy/`, once; returns when the CRDs are Established.
    pub fn install_hoist(&self) {
        self.installed.get_or_init(|| {
            self.kubectl(&["apply", "--server-side", "-k", "deploy/"]);
            self.wait_for_hoist_crds();
        });
    }

    /// Returns when hoist's CRDs are Established, however they were
    /// installed (kustomize here, Helm in chart.rs).
    pub fn wait_for_hoist_crds(&self) {
        self.kubectl(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/imagerepositories.hoist.dev",
            "crd/imagepolicies.hoist.dev",
            "crd/imageupdateautomations.hoist.dev",
            "crd/receivers.hoist.dev",
            "crd/providers.hoist.dev",
            "crd/alerts.hoist.dev",
        ]);
    }

    /// A field of the admin kubeconfig (`server:`,
    /// `certificate-authority-data:`), empty when it has none.
    pub fn admin_field(&self, name: &str) -> String {
        let admin = std::fs::read_to_string(&self.kubeconfig).unwrap_or_default();
        admin
            .lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .map(str::trim)
            .unwrap_or_default()
            .to_string()
    }

    /// Flux's CRDs (of `scripts/flux-tools`), as `flux install` applies
    /// them, once; returns when they are Established.
    pub fn install_flux_crds(&self, crds: &Path) {
        self.flux_installed.get_or_init(|| {
            let dir = crds.to_string_lossy();
            self.kubectl(&["apply", "--server-side", "-f", &dir]);
            self.kubectl(&[
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                "crd/imagerepositories.image.toolkit.fluxcd.io",
                "crd/imagepolicies.image.toolkit.fluxcd.io",
                "crd/imageupdateautomations.image.toolkit.fluxcd.io",
                "crd/gitrepositories.source.toolkit.fluxcd.io",
            ]);
        });
    }

    /// A kubeconfig, in `dir`, that authenticates as deploy/'s ServiceAccount
    /// with a token the API server issued for it: the controller runs with
    /// exactly the permissions deploy/rbac.yaml gives it.
    pub fn controller_kubeconfig(&self, dir: &Path) -> PathBuf {
        self.install_hoist();
        self.service_account_kubeconfig(dir, "hoist-system", "hoist")
    }

    /// A kubeconfig, in `dir`, that authenticates as ServiceAccount
    /// `namespace/account` with a token the API server issued for it.
    pub fn service_account_kubeconfig(
        &self,
        dir: &Path,
        namespace: &str,
        account: &str,
    ) -> PathBuf {
        use std::os::unix::fs::OpenOptionsExt;
        let token = self.kubectl(&["create", "token", account, "-n", namespace, "--duration=2h"]);
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\n    certificate-authority-data: {}\nusers:\n- name: hoist\n  user:\n    token: {}\ncontexts:\n- name: test\n  context: {{cluster: test, user: hoist}}\ncurrent-context: test\n",
            self.admin_field("server:"),
            self.admin_field("certificate-authority-data:"),
            token.trim()
        );
        let path = dir.join("controller.kubeconfig");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        std::io::Write::write_all(&mut file, text.as_bytes())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        path
    }

    /// A new namespace for one test, named after it and unique in this run.
    pub fn namespace(&self, test: &str) -> String {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "{}-{}-{}",
            test.replace('_', "-"),
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        self.kubectl(&["create", "namespace", &name]);
        name
    }

    /// How far the audit log has got: events after this mark are what
    /// happened since.
    pub fn audit_mark(&self) -> u64 {
        std::fs::metadata(self.audit_log()).map_or(0, |m| m.len())
    }

    fn audit_log(&self) -> PathBuf {
        self.dir.join("logs/audit.log")
    }

    /// The audit events written after `mark`, one per request.
    pub fn audit_since(&self, mark: u64) -> Vec<Value> {
        let text = std::fs::read(self.audit_log()).unwrap_or_default();
        let start = usize::try_from(mark).unwrap_or(usize::MAX).min(text.len());
        String::from_utf8_lossy(&text[start..])
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

/// Requests by `user` that change something about objects whose path
/// holds `scope` (a test's namespace, which its other objects' names hold
/// too: tests run in parallel): every verb but the reads and the
/// server-side dry runs, which the audit log records as `dryRun=All` in
/// the URI.
pub fn writes_by<'a>(events: &'a [Value], user: &str, scope: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["user"]["username"] == user)
        .filter(|e| e["requestURI"].as_str().unwrap_or("").contains(scope))
        .filter(|e| {
            let verb = e["verb"].as_str().unwrap_or("");
            !matches!(verb, "get" | "list" | "watch")
        })
        .filter(|e| {
            !e["requestURI"]
                .as_str()
                .unwrap_or("")
                .contains("dryRun=All")
        })
        .collect()
}

/// An audit event in short: `verb URI code`.
pub fn describe(event: &Value) -> String {
    format!(
        "{} {} {}",
        event["verb"].as_str().unwrap_or("?"),
        event["requestURI"].as_str().unwrap_or("?"),
        event["responseStatus"]["code"]
    )
}
