//! Health evidence and self-healing rollback on the real control plane:
//! `hoist run` commits a tag, applies it, and kube-controller-manager and
//! kwok roll it out — or, for an image with "-fails" in it, do not (a kwok
//! Stage keeps its Pods crashing until the progress deadline passes).

use serde_json::Value;

use crate::support::cluster::{self, Cluster};
use crate::support::git::BareRepo;
use crate::support::registry::{Auth, DockerRegistry, OCI_MANIFEST};
use crate::support::{files, hoist_env};

/// Pushes each tag as an image of its own (its own digest).
fn push_tags(registry: &DockerRegistry, tags: &[&str]) {
    for tag in tags {
        let manifest = registry.image_manifest("team/app", OCI_MANIFEST, tag);
        registry.push_manifest("team/app", OCI_MANIFEST, &manifest, &[tag]);
    }
}

fn manifest(ns: &str, registry: &str, tag: &str) -> String {
    format!(
        "# the app\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: app, namespace: {ns}}}\nspec:\n  replicas: 1\n  progressDeadlineSeconds: 10\n  selector: {{matchLabels: {{app: app}}}}\n  template:\n    metadata: {{labels: {{app: app}}}}\n    spec:\n      containers:\n      - name: app\n        image: {registry}/team/app:{tag} # {{\"$imagepolicy\": \"{ns}:app\"}}\n"
    )
}

fn config(level: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: settings}}\ndata: {{level: {level}}}\n"
    )
}

/// The repository, policy and automation of one environment. Tags such
/// as `1.3.0-fails` count as 1.3.0.
fn objects(ns: &str, registry: &str, remote: &str, sync: &str) -> String {
    environment(ns, registry, remote, "staging", "", sync)
}

/// [`objects`] for the environment whose manifests are in `dir`, with
/// `policy` added to the ImagePolicy's spec.
fn environment(
    ns: &str,
    registry: &str,
    remote: &str,
    dir: &str,
    policy: &str,
    sync: &str,
) -> String {
    format!(
        "apiVersion: hoist.dev/v1alpha1
kind: ImageRepository
metadata: {{name: app, namespace: {ns}}}
spec: {{image: {registry}/team/app, insecure: true, interval: 1s}}
---
apiVersion: hoist.dev/v1alpha1
kind: ImagePolicy
metadata: {{name: app, namespace: {ns}}}
spec:
  imageRepositoryRef: {{name: app}}
  filterTags: {{pattern: '^(?P<v>[0-9]+[.][0-9]+[.][0-9]+)(-fails)?$', extract: '$v'}}
  policy: {{semver: {{range: '>=1.0.0'}}}}
  digestReflectionPolicy: IfNotPresent
{policy}---
apiVersion: hoist.dev/v1alpha1
kind: ImageUpdateAutomation
metadata: {{name: fleet, namespace: {ns}}}
spec:
  interval: 5m
  git:
    url: {remote}
    checkout: {{ref: {{branch: main}}}}
    commit:
      author: {{name: hoist-bot, email: bot@example.com}}
  update: {{path: ./{dir}}}
{}",
        sync.replace("./staging", &format!("./{dir}"))
    )
}

/// The fleet repository of staging and production, both running 1.1.0.
fn two_environments(staging: &str, production: &str, registry: &str) -> BareRepo {
    BareRepo::new(&[
        ("staging/app.yaml", &manifest(staging, registry, "1.1.0")),
        (
            "production/app.yaml",
            &manifest(production, registry, "1.1.0"),
        ),
    ])
}

/// An ImagePolicy's `spec.promotion` from staging's automation, whose
/// evidence is on `main` of `url`.
fn promotion(staging: &str, url: &str, soak: &str) -> String {
    format!(
        "  promotion:\n    from: {staging}/fleet\n    soak: {soak}\n    evidence: {{url: '{url}', branch: main}}\n"
    )
}

const SYNC: &str = "  sync: {path: ./staging, wait: true, timeout: 60s, rollback: {}}\n";

/// `hoist run --once -o json` with `file` against the cluster.
fn run(
    cluster: &Cluster,
    dir: &std::path::Path,
    file: &str,
    extra: &[&str],
) -> (i32, Value, String) {
    run_in(cluster, dir, file, "state", extra)
}

/// [`run`] with the state directory `state`.
fn run_in(
    cluster: &Cluster,
    dir: &std::path::Path,
    file: &str,
    state: &str,
    extra: &[&str],
) -> (i32, Value, String) {
    let kubeconfig = cluster.hoist_kubeconfig().to_string_lossy().into_owned();
    let docker = dir.join("docker");
    std::fs::create_dir_all(&docker).unwrap_or_else(|e| panic!("{e}"));
    let docker = docker.to_string_lossy().into_owned();
    let mut args = vec![
        "run",
        "-f",
        file,
        "--once",
        "--state-dir",
        state,
        "--kubeconfig",
        &kubeconfig,
        "-o",
        "json",
    ];
    args.extend_from_slice(extra);
    let run = hoist_env(dir, &args, &[("DOCKER_CONFIG", &docker)]);
    let report = serde_json::from_str(&run.stdout).unwrap_or(Value::Null);
    (run.code, report, format!("{}{}", run.stdout, run.stderr))
}

fn live_image(cluster: &Cluster, ns: &str) -> String {
    cluster
        .get("deployment", ns, "app")
        .and_then(|d| {
            d["spec"]["template"]["spec"]["containers"][0]["image"]
                .as_str()
                .map(str::to_string)
        })
        .unwrap_or_default()
}

#[test]
fn a_failed_rollout_is_rolled_back_to_what_ran_healthy_and_its_tag_never_adopted_again() {
    let Some(cluster) = cluster::cluster() else {
        return;
    };
    let Some(registry) = DockerRegistry::start(Auth::None) else {
        return;
    };
    let ns = cluster.namespace("rollback");
    let addr = registry.addr.clone();
    push_tags(&registry, &["1.2.0"]);
    let remote = BareRepo::new(&[
        ("staging/app.yaml", &manifest(&ns, &addr, "1.1.0")),
        ("staging/config.yaml", &config("info")),
    ]);
    let dir = files(&[("objects.yaml", &objects(&ns, &addr, &remote.url(), SYNC))]);
    let evidence_path = format!(".hoist/evidence/{ns}/fleet.yaml");

    // 1.2.0: committed, applied, Available; the evidence says so, in a
    // commit of its own.
    let (code, first, out) = run(cluster, dir.path(), "objects.yaml", &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        live_image(cluster, &ns).contains("/team/app:1.2.0@sha256:"),
        "{out}"
    );
    assert_eq!(
        first[0]["evidence"]["path"],
        evidence_path.as_str(),
        "{out}"
    );
    assert_eq!(first[0]["evidence"]["commit"], remote.head("main").as_str());
    let evidence = remote.show("main", &evidence_path);
    assert!(
        evidence.contains(&format!("automation: {ns}/fleet"))
            && evidence.contains("tag: \"1.2.0\"")
            && evidence.contains("digest: sha256:"),
        "{evidence}"
    );
    let healthy_text = remote.show("main", "staging/app.yaml");
    let log = remote.log("main");
    assert!(
        log[0].starts_with("hoist-bot|Record healthy rollout of ImagePolicy"),
        "{log:?}"
    );

    // 1.3.0-fails: committed, applied, never Available. hoist commits 1.2.0
    // back on top of its own commit, applies it, and the pass fails.
    push_tags(&registry, &["1.3.0-fails"]);
    let (code, second, out) = run(cluster, dir.path(), "objects.yaml", &["--refresh"]);
    assert_eq!(code, 1, "{out}");
    let rollback = &second[0]["rollback"];
    assert_eq!(rollback["rejected"][0]["tag"], "1.3.0-fails", "{out}");
    assert_eq!(rollback["rejected"][0]["restored"], "1.2.0", "{out}");
    assert_eq!(rollback["branch"], "main");
    assert_eq!(rollback["commit"], remote.head("main").as_str(), "{out}");
    assert!(
        rollback["reason"]
            .as_str()
            .is_some_and(|r| r.contains(&format!("Deployment.apps {ns}/app: failed:"))),
        "{out}"
    );
    assert_eq!(second[0]["error"]["kind"], "rolled_back", "{out}");
    let log = remote.log("main");
    assert!(
        log[0].starts_with("hoist-bot|Roll back ") && log[1].contains("1.3.0-fails"),
        "{log:?}"
    );
    // Byte for byte what ran healthy, and the cluster runs it again.
    assert_eq!(remote.show("main", "staging/app.yaml"), healthy_text);
    assert!(live_image(cluster, &ns).contains("/team/app:1.2.0@sha256:"));
    assert_eq!(second[0]["sync"]["revision"], remote.head("main").as_str());
    assert!(second[0]["sync"]["error"].is_null(), "{out}");
    let evidence = remote.show("main", &evidence_path);
    assert!(
        evidence.contains("rejected:") && evidence.contains("tag: 1.3.0-fails"),
        "{evidence}"
    );

    // Not adopted again: nothing to do, and the scan says why.
    let (code, third, out) = run(cluster, dir.path(), "objects.yaml", &[]);
    assert_eq!(code, 0, "{out}");
    assert!(third[0]["commit"].is_null(), "{out}");
    let head = remote.head("main");
    let scan = hoist_env(
        dir.path(),
        &[
            "scan",
            "-f",
            "objects.yaml",
            "--state-dir",
            "state",
            "-o",
            "json",
        ],
        &[],
    );
    let rows: Value = serde_json::from_str(&scan.stdout).unwrap_or(Value::Null);
    assert_eq!(rows[0]["tag"], "1.2.0", "{}{}", scan.stdout, scan.stderr);
    assert_eq!(rows[0]["passedOver"][0]["tag"], "1.3.0-fails");
    assert_eq!(rows[0]["passedOver"][0]["reason"], "rolled back");
    assert!(
        rows[0]["passedOver"][0]["message"].as_str().is_some_and(
            |m| m.contains(&format!("rolled back by ImageUpdateAutomation {ns}/fleet"))
        ),
        "{rows}"
    );

    // A newer tag is.
    push_tags(&registry, &["1.4.0"]);
    let (code, fourth, out) = run(cluster, dir.path(), "objects.yaml", &["--refresh"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        live_image(cluster, &ns).contains("/team/app:1.4.0@sha256:"),
        "{out}"
    );
    assert_ne!(remote.head("main"), head);
    assert!(fourth[0]["evidence"]["commit"].is_string(), "{out}");
}

/// Staging and production in one `hoist run`, sharing only the fleet
/// repository: production adopts what staging ran healthy for two hours,
/// not before (on the clock `--at` sets), and never what staging rolled
/// back.
#[test]
fn production_adopts_only_what_staging_ran_healthy_for_the_soak() {
    let Some(cluster) = cluster::cluster() else {
        return;
    };
    let Some(registry) = DockerRegistry::start(Auth::None) else {
        return;
    };
    let staging = cluster.namespace("staging");
    let production = cluster.namespace("production");
    let addr = registry.addr.clone();
    push_tags(&registry, &["1.2.0"]);
    let remote = two_environments(&staging, &production, &addr);
    let url = remote.url();
    let promotion = promotion(&staging, &url, "2h");
    let text = environment(&staging, &addr, &url, "staging", "", SYNC)
        + "---\n"
        + &environment(
            &production,
            &addr,
            &url,
            "production",
            &promotion,
            "  sync: {path: ./staging, wait: true, timeout: 60s}\n",
        );
    let dir = files(&[("objects.yaml", &text)]);
    let at = |hours: f64| {
        let start: jiff::Timestamp = "2027-01-04T09:00:00Z"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        start
            .checked_add(jiff::SignedDuration::from_secs_f64(hours * 3600.0))
            .unwrap_or(start)
            .to_string()
    };
    let pass = |hours: f64| {
        let at = at(hours);
        run(
            cluster,
            dir.path(),
            "objects.yaml",
            &["--refresh", "--at", &at],
        )
    };
    let production_tag = || remote.show("main", "production/app.yaml");

    // Staging runs 1.2.0 healthy; production had no evidence to go by.
    let (code, _, out) = pass(0.0);
    assert_eq!(code, 0, "{out}");
    assert!(live_image(cluster, &staging).contains(":1.2.0@"), "{out}");
    assert!(production_tag().contains("app:1.1.0 #"), "{out}");
    // An hour later 1.2.0 is soaking: production waits.
    let (code, report, out) = pass(1.0);
    assert_eq!(code, 0, "{out}");
    assert!(production_tag().contains("app:1.1.0 #"), "{out}");
    assert!(report[1]["commit"].is_null(), "{out}");
    // Two hours after staging's healthy verdict: promoted, and rolled out.
    let (code, report, out) = pass(2.01);
    assert_eq!(code, 0, "{out}");
    assert!(production_tag().contains("app:1.2.0@sha256:"), "{out}");
    assert_eq!(report[1]["commit"], remote.head("main").as_str(), "{out}");
    assert!(
        live_image(cluster, &production).contains(":1.2.0@"),
        "{out}"
    );

    // 1.3.0-fails: staging rolls it back; production never sees it.
    push_tags(&registry, &["1.3.0-fails"]);
    let (code, report, out) = pass(3.0);
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        report[0]["rollback"]["rejected"][0]["tag"], "1.3.0-fails",
        "{out}"
    );
    for hours in [6.0, 12.0] {
        let (code, _, out) = pass(hours);
        assert_eq!(code, 0, "{out}");
        assert!(production_tag().contains("app:1.2.0@"), "{out}");
        assert!(live_image(cluster, &staging).contains(":1.2.0@"), "{out}");
    }
    // 1.4.0 runs healthy in staging, soaks, and reaches production.
    push_tags(&registry, &["1.4.0"]);
    let (code, _, out) = pass(13.0);
    assert_eq!(code, 0, "{out}");
    assert!(live_image(cluster, &staging).contains(":1.4.0@"), "{out}");
    assert!(production_tag().contains("app:1.2.0@"), "{out}");
    let (code, _, out) = pass(15.5);
    assert_eq!(code, 0, "{out}");
    assert!(production_tag().contains("app:1.4.0@"), "{out}");
    let history = crate::support::git::git(
        &remote.path,
        &["log", "-p", "main", "--", "production/app.yaml"],
    );
    assert!(!history.contains("1.3.0"), "{history}");
}

/// Someone committed on top of hoist's failed commit: hoist leaves the
/// branch alone and proposes the rollback in a pull request that says why.
#[test]
fn a_commit_on_top_of_hoists_turns_the_rollback_into_a_pull_request() {
    let Some(cluster) = cluster::cluster() else {
        return;
    };
    let Some(registry) = DockerRegistry::start(Auth::None) else {
        return;
    };
    let ns = cluster.namespace("rollback-pr");
    let addr = registry.addr.clone();
    push_tags(&registry, &["1.2.0"]);
    let remote = BareRepo::new(&[
        ("staging/app.yaml", &manifest(&ns, &addr, "1.1.0")),
        ("staging/config.yaml", &config("info")),
    ]);
    // GitHub's fake, and the repository under the path its URL names.
    let github = crate::support::forge::FakeForge::github("acme", "fleet", "ghp_t0ken", "");
    let served = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir_all(served.path().join("acme")).unwrap_or_else(|e| panic!("{e}"));
    std::os::unix::fs::symlink(&remote.path, served.path().join("acme/fleet.git"))
        .unwrap_or_else(|e| panic!("{e}"));
    let http = crate::support::git::GitHttp::start(served.path(), "bot", "git-pass");
    let url = format!("http://{}/acme/fleet.git", http.server.addr);
    let secrets = format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: git, namespace: {ns}}}\nstringData: {{username: bot, password: git-pass}}\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: forge, namespace: {ns}}}\nstringData: {{token: ghp_t0ken}}\n"
    );
    let with_secret = |text: String| {
        text.replace("    url: ", "    secretRef: {name: git}\n    url: ") + &secrets
    };
    let sync = format!(
        "  sync:\n    path: ./staging\n    wait: true\n    timeout: 60s\n    rollback:\n      pullRequest: {{provider: github, apiURL: 'http://{}', secretRef: {{name: forge}}, labels: [rollback]}}\n",
        github.server.addr
    );
    let dir = files(&[
        (
            "objects.yaml",
            &with_secret(objects(&ns, &addr, &url, &sync)),
        ),
        ("unsynced.yaml", &with_secret(objects(&ns, &addr, &url, ""))),
    ]);
    let (code, _, out) = run(cluster, dir.path(), "objects.yaml", &[]);
    assert_eq!(code, 0, "{out}");
    // hoist commits 1.3.0-fails (without syncing), then a person commits
    // on top of it.
    push_tags(&registry, &["1.3.0-fails"]);
    let (code, report, out) = run(cluster, dir.path(), "unsynced.yaml", &["--refresh"]);
    assert_eq!(code, 0, "{out}");
    assert!(report[0]["commit"].is_string(), "{out}");
    remote.commit_elsewhere("main", "staging/config.yaml", &config("debug"));
    let theirs = remote.head("main");

    let (code, report, out) = run(cluster, dir.path(), "objects.yaml", &[]);
    assert_eq!(code, 1, "{out}");
    let rollback = &report[0]["rollback"];
    let proposal = format!("hoist/rollback/{ns}/fleet");
    assert_eq!(rollback["branch"], proposal.as_str(), "{out}");
    assert_eq!(rollback["pull_request"]["action"], "opened", "{out}");
    assert_eq!(rollback["rejected"][0]["tag"], "1.3.0-fails", "{out}");
    assert!(
        report[0]["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("not at hoist's commit")),
        "{out}"
    );
    // main is as the person left it; the proposal keeps their commit and
    // puts back only the marked image.
    assert_eq!(remote.head("main"), theirs);
    let proposal = proposal.as_str();
    assert!(
        remote
            .show(proposal, "staging/app.yaml")
            .contains("/team/app:1.2.0@sha256:"),
        "{out}"
    );
    assert_eq!(
        remote.show(proposal, "staging/config.yaml"),
        config("debug")
    );
    let log = remote.log(proposal);
    assert!(
        log[0].starts_with("hoist-bot|Roll back ") && log[1].contains("someone else"),
        "{log:?}"
    );
    let pulls = github.pulls();
    assert_eq!(pulls.len(), 1, "{pulls:?}");
    assert_eq!(
        (pulls[0].head.as_str(), pulls[0].base.as_str()),
        (proposal, "main")
    );
    assert_eq!(pulls[0].labels, ["rollback"]);
    assert!(
        pulls[0].body.contains("not at hoist's commit") && pulls[0].body.contains("failed:"),
        "{}",
        pulls[0].body
    );
    // The token never reaches what hoist prints.
    assert!(
        !out.contains("ghp_t0ken") && !out.contains("git-pass"),
        "{out}"
    );

    // While the proposal waits, the policy is held: the next run does not
    // push the rollback's change (or 1.2.0 by selection) onto their commit.
    let (_, report, out) = run(cluster, dir.path(), "objects.yaml", &["--refresh"]);
    assert_eq!(remote.head("main"), theirs, "{out}");
    assert!(
        report[0]["warnings"].as_array().is_some_and(|w| w
            .iter()
            .any(|w| w.as_str().is_some_and(|w| w.contains("is held")))),
        "{out}"
    );
    // Merged: the hold ends and hoist deletes its branch.
    remote.fast_forward("main", proposal);
    let (code, _, out) = run(cluster, dir.path(), "objects.yaml", &["--refresh"]);
    assert_eq!(code, 0, "{out}");
    assert!(!remote.branches().iter().any(|b| b == proposal), "{out}");
    assert!(live_image(cluster, &ns).contains(":1.2.0@"), "{out}");
}

/// Two controllers on the real control plane, each restricted to its own
/// namespace as it would be to its own cluster, sharing only the fleet
/// repository: production promotes what staging ran healthy (soak 0);
/// staging rolls back a failed rollout even across a restart between its
/// commit and the verdict, and production never sees that tag.
#[test]
fn two_controllers_promote_through_git_and_roll_back_across_a_restart() {
    use crate::support::controller::Running;
    use std::time::{Duration, Instant};
    let Some(cluster) = cluster::cluster() else {
        return;
    };
    let Some(registry) = DockerRegistry::start(Auth::None) else {
        return;
    };
    let staging = cluster.namespace("ctl-staging");
    let production = cluster.namespace("ctl-production");
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let kubeconfig = cluster.controller_kubeconfig(work.path());
    let addr = registry.addr.clone();
    push_tags(&registry, &["1.2.0"]);
    let remote = two_environments(&staging, &production, &addr);
    let (_git, url) = remote.serve_http();
    let wait = |what: &str, check: &mut dyn FnMut() -> bool| {
        crate::support::wait_for(
            what,
            Duration::from_secs(180),
            Duration::from_millis(100),
            || check().then_some(()),
        )
    };
    for ns in [&staging, &production] {
        // What the automation applies as: edit in its namespace only.
        cluster.apply(&format!(
            "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: deployer, namespace: {ns}}}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: deployer-edit, namespace: {ns}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: edit}}\nsubjects: [{{kind: ServiceAccount, name: deployer, namespace: {ns}}}]\n"
        ));
    }
    let documents = |ns: &str, dir: &str, policy: &str, sync: &str| {
        environment(ns, &addr, &url, dir, policy, sync).replace(
            "  interval: 5m\n",
            "  interval: 10m\n  serviceAccountName: deployer\n",
        )
    };
    cluster.apply(&documents(&staging, "staging", "", SYNC));
    cluster.apply(&documents(
        &production,
        "production",
        &format!("  interval: 2s\n{}", promotion(&staging, &url, "0s")),
        "  sync: {path: ./staging, wait: true, timeout: 60s}\n",
    ));
    let mark = cluster.audit_mark();
    let started = Instant::now();
    let mut staging_controller = Running::start(&kubeconfig, &["--namespace", &staging]);
    let mut production_controller = Running::start(&kubeconfig, &["--namespace", &production]);
    let evidence_path = format!(".hoist/evidence/{staging}/fleet.yaml");
    // A file that is not there yet shows nothing.
    let shows = |file: &str, text: &str| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(&remote.path)
            .args(["show", &format!("main:{file}")])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(text))
    };

    // Staging runs 1.2.0 healthy and records it; production adopts it.
    wait("staging's evidence of 1.2.0", &mut || {
        shows(&evidence_path, "tag: \"1.2.0\"")
    });
    let recorded = Instant::now();
    wait("production's commit of 1.2.0", &mut || {
        shows("production/app.yaml", "app:1.2.0@")
    });
    let promoted = recorded.elapsed();
    // The policy says what it was promoted on, for its automation's pull
    // requests and for whoever reads the status.
    let policy = cluster
        .get("imagepolicies.hoist.dev", &production, "app")
        .unwrap_or_default();
    let evidence = &policy["status"]["promoted"];
    assert_eq!(evidence["from"], format!("{staging}/fleet"), "{policy}");
    assert_eq!(evidence["path"], evidence_path.as_str(), "{policy}");
    assert!(
        evidence["revision"].as_str().is_some_and(|r| r.len() == 40),
        "{policy}"
    );
    wait("production's rollout of 1.2.0", &mut || {
        live_image(cluster, &production).contains(":1.2.0@")
    });

    // 1.3.0-fails: committed; the controller is killed before the verdict,
    // and the one that replaces it (with an empty store) rolls it back.
    push_tags(&registry, &["1.3.0-fails"]);
    wait("staging's commit of 1.3.0-fails", &mut || {
        shows("staging/app.yaml", "1.3.0-fails")
    });
    staging_controller.kill();
    let mut staging_controller = Running::start(&kubeconfig, &["--namespace", &staging]);
    // From kube-controller-manager's verdict to hoist's revert commit.
    let mut failed: Option<Instant> = None;
    wait("staging's rollback", &mut || {
        let deadline = cluster.get("deployment", &staging, "app").is_some_and(|d| {
            d["status"]["conditions"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["reason"] == "ProgressDeadlineExceeded"))
        });
        if deadline && failed.is_none() {
            failed = Some(Instant::now());
        }
        remote
            .log("main")
            .first()
            .is_some_and(|l| l.contains("Roll back"))
    });
    let rollback = failed.map(|f| f.elapsed());
    assert!(shows("staging/app.yaml", "app:1.2.0@"));
    wait("the RolledBack condition", &mut || {
        cluster
            .get("imageupdateautomations.hoist.dev", &staging, "fleet")
            .and_then(|a| crate::support::condition(&a, "RolledBack"))
            .is_some_and(|c| c.0 == "True" && c.2.contains("1.3.0-fails"))
    });
    wait("the rejected tag in the policy's status", &mut || {
        cluster
            .get("imagepolicies.hoist.dev", &staging, "app")
            .is_some_and(|p| p["status"]["rejected"][0]["tag"] == "1.3.0-fails")
    });
    let events = cluster.kubectl(&[
        "get",
        "events",
        "-n",
        &staging,
        "--field-selector",
        "reason=RolledBack",
        "-o",
        "name",
    ]);
    assert!(!events.trim().is_empty(), "no RolledBack event");
    wait("staging's rollout of 1.2.0 again", &mut || {
        live_image(cluster, &staging).contains(":1.2.0@")
    });

    // 1.4.0 is adopted in staging and promoted; 1.3.0-fails never reached
    // production and was never committed twice.
    // The baseline: a new tag to staging's commit, the same loop without
    // the evidence step.
    push_tags(&registry, &["1.4.0"]);
    let pushed = Instant::now();
    wait("staging's commit of 1.4.0", &mut || {
        shows("staging/app.yaml", "app:1.4.0@")
    });
    let adopted = pushed.elapsed();
    wait("production's commit of 1.4.0", &mut || {
        shows("production/app.yaml", "app:1.4.0@")
    });
    let history = crate::support::git::git(
        &remote.path,
        &["log", "-p", "main", "--", "production/app.yaml"],
    );
    assert!(!history.contains("1.3.0"), "{history}");
    let fails = remote
        .log("main")
        .iter()
        .filter(|l| l.contains("→ 1.3.0-fails"))
        .count();
    assert_eq!(fails, 1, "{:?}", remote.log("main"));

    // What the health verdicts cost the API server: the reads of the
    // impersonated deployers while the syncs waited.
    let events = cluster.audit_since(mark);
    let health_reads = events
        .iter()
        .filter(|e| {
            e["impersonatedUser"]["username"]
                .as_str()
                .is_some_and(|u| u.ends_with(":deployer"))
        })
        .filter(|e| e["verb"] == "get" && e["objectRef"]["resource"] == "deployments")
        .count();
    eprintln!(
        "promotion (soak 0): {} ms from staging's evidence commit to production's commit, {:.2}x the {} ms from a new tag to staging's commit; rollback: {:?} ms from ProgressDeadlineExceeded to the revert commit; health waits: {health_reads} deployment GETs in {} s",
        promoted.as_millis(),
        promoted.as_secs_f64() / adopted.as_secs_f64().max(0.001),
        adopted.as_millis(),
        rollback.map(|r| r.as_millis()),
        started.elapsed().as_secs()
    );
    assert_eq!(
        crate::cluster_controller::forbidden(cluster, mark),
        Vec::<String>::new()
    );
    assert_eq!(staging_controller.stop(), Some(0));
    assert_eq!(production_controller.stop(), Some(0));
}

/// The same promotion by two `hoist run` processes that share only the
/// fleet repository: each environment its own files and state directory.
#[test]
fn two_hoist_run_processes_promote_through_the_remote_alone() {
    let Some(cluster) = cluster::cluster() else {
        return;
    };
    let Some(registry) = DockerRegistry::start(Auth::None) else {
        return;
    };
    let staging = cluster.namespace("apart-staging");
    let production = cluster.namespace("apart-production");
    let addr = registry.addr.clone();
    push_tags(&registry, &["1.2.0"]);
    let remote = two_environments(&staging, &production, &addr);
    let url = remote.url();
    let promotion = promotion(&staging, &url, "30m");
    let dir = files(&[
        (
            "staging.yaml",
            &environment(&staging, &addr, &url, "staging", "", SYNC),
        ),
        (
            "production.yaml",
            &environment(&production, &addr, &url, "production", &promotion, ""),
        ),
    ]);
    let (code, _, out) = run_in(
        cluster,
        dir.path(),
        "staging.yaml",
        "staging-state",
        &["--at", "2027-01-04T09:00:00Z"],
    );
    assert_eq!(code, 0, "{out}");
    let production_file = || remote.show("main", "production/app.yaml");
    let (_, _, out) = run_in(
        cluster,
        dir.path(),
        "production.yaml",
        "production-state",
        &["--at", "2027-01-04T09:20:00Z"],
    );
    assert!(production_file().contains("app:1.1.0 #"), "{out}");
    let (code, report, out) = run_in(
        cluster,
        dir.path(),
        "production.yaml",
        "production-state",
        &["--at", "2027-01-04T09:31:00Z"],
    );
    assert_eq!(code, 0, "{out}");
    assert!(production_file().contains("app:1.2.0@sha256:"), "{out}");
    assert_eq!(report[0]["commit"], remote.head("main").as_str(), "{out}");
}
