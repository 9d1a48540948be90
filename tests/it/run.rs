//! `hoist run --once` end to end: a real registry, a real git remote.

use crate::support::git::BareRepo;
use crate::support::registry::{Auth, DockerRegistry};
use crate::support::{files, hoist_env};

fn objects(registry: &str, remote: &str) -> String {
    format!(
        "apiVersion: hoist.dev/v1alpha1
kind: ImageRepository
metadata: {{name: app}}
spec: {{image: {registry}/team/app, insecure: true, interval: 1s}}
---
apiVersion: hoist.dev/v1alpha1
kind: ImagePolicy
metadata: {{name: app}}
spec:
  imageRepositoryRef: {{name: app}}
  policy: {{semver: {{range: '^1'}}}}
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
  update: {{path: ./clusters/prod}}
"
    )
}

/// The files of a test and an empty DOCKER_CONFIG directory beside them
/// (no registry credentials unless the test writes some).
fn workspace(entries: &[(&str, &str)]) -> (tempfile::TempDir, String) {
    let dir = files(entries);
    let docker = dir.path().join("docker");
    std::fs::create_dir_all(&docker).unwrap_or_else(|e| panic!("{e}"));
    let docker = docker.to_string_lossy().into_owned();
    (dir, docker)
}

/// `hoist run -f FILE --once --state-dir STATE EXTRA...` in `dir`, with
/// `docker` as DOCKER_CONFIG.
fn run_once(
    dir: &tempfile::TempDir,
    docker: &str,
    file: &str,
    state: &str,
    extra: &[&str],
) -> crate::support::Run {
    let mut args = vec!["run", "-f", file, "--once", "--state-dir", state];
    args.extend_from_slice(extra);
    hoist_env(dir.path(), &args, &[("DOCKER_CONFIG", docker)])
}

/// A fleet repository served by `git http-backend` (Basic auth bot/git-pass)
/// as `project.git`, and the objects of an automation that pushes to
/// `hoist/fleet` and keeps the pull request `pull_request` (a YAML flow map)
/// describes.
fn forge_fleet(
    addr: &str,
    remote: &BareRepo,
    project: &str,
    pull_request: &str,
) -> (tempfile::TempDir, crate::support::git::GitHttp, String) {
    let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let served = root.path().join(format!("{project}.git"));
    if let Some(parent) = served.parent() {
        std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{e}"));
    }
    std::os::unix::fs::symlink(&remote.path, &served).unwrap_or_else(|e| panic!("{e}"));
    let http = crate::support::git::GitHttp::start(root.path(), "bot", "git-pass");
    let url = format!("http://{}/{project}.git", http.server.addr);
    let text = objects(addr, &url)
        .replace("    url: ", "    secretRef: {name: git}\n    url: ")
        .replace(
            "      author: {name: hoist-bot, email: bot@example.com}\n",
            &format!(
                "      author: {{name: hoist-bot, email: bot@example.com}}\n    push:\n      branch: hoist/fleet\n      pullRequest: {pull_request}\n"
            ),
        )
        + "---\napiVersion: v1\nkind: Secret\nmetadata: {name: git}\nstringData: {username: bot, password: git-pass}\n";
    (root, http, text)
}

fn manifest(registry: &str, tag: &str) -> String {
    format!(
        "# the app\r\napiVersion: apps/v1\r\nkind: Deployment\r\nmetadata: {{name: app, namespace: prod}}\r\nspec:\r\n  template:\r\n    spec:\r\n      containers:\r\n        - name: app\r\n          image: \"{registry}/team/app:{tag}\" # {{\"$imagepolicy\": \"default:app\"}}\r\n          args: [\"--port\", \"8080\"]   # kept\r\n"
    )
}

#[test]
fn scan_select_rewrite_commit_push_and_nothing_twice() {
    let Some(registry) = DockerRegistry::start(Auth::None) else {
        return;
    };
    registry.push_image("team/app", &["1.0.0", "1.1.0", "2.0.0"]);
    let addr = registry.addr.clone();
    let remote = BareRepo::new(&[
        ("clusters/prod/app.yaml", &manifest(&addr, "1.0.0")),
        ("clusters/staging/app.yaml", &manifest(&addr, "1.0.0")),
    ]);
    let (dir, docker) = workspace(&[("objects.yaml", &objects(&addr, &remote.url()))]);
    let run = |extra: &[&str]| {
        let mut args = vec![
            "run",
            "-f",
            "objects.yaml",
            "--once",
            "--state-dir",
            "state",
            "-o",
            "json",
        ];
        args.extend_from_slice(extra);
        hoist_env(dir.path(), &args, &[("DOCKER_CONFIG", &docker)])
    };
    let before = remote.head("main");

    // Dry run: the diff, and nothing pushed.
    let dry = run(&["--dry-run"]);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    let report: serde_json::Value =
        serde_json::from_str(&dry.stdout).unwrap_or_else(|e| panic!("{e}: {}", dry.stdout));
    assert!(
        report[0]["diff"]
            .as_str()
            .is_some_and(|d| d.contains("+          image: \"") && d.contains("1.1.0")),
        "{report}"
    );
    assert_eq!(remote.head("main"), before);

    let first = run(&[]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let report: serde_json::Value =
        serde_json::from_str(&first.stdout).unwrap_or_else(|e| panic!("{e}: {}", first.stdout));
    let commit = report[0]["commit"].as_str().unwrap_or_default().to_string();
    assert_eq!(remote.head("main"), commit);
    assert_eq!(report[0]["changes"][0]["file"], "clusters/prod/app.yaml");
    // Exactly the marked value changed, CRLF and all; staging is outside update.path.
    assert_eq!(
        remote.show("main", "clusters/prod/app.yaml"),
        manifest(&addr, "1.1.0")
    );
    assert_eq!(
        remote.show("main", "clusters/staging/app.yaml"),
        manifest(&addr, "1.0.0")
    );
    let log = remote.log("main");
    assert_eq!(
        log[0],
        format!("hoist-bot|Update {addr}/team/app 1.0.0 → 1.1.0")
    );
    let body = crate::support::git::git(&remote.path, &["log", "-1", "--format=%B", "main"]);
    assert!(body.contains("Hoist-Automation: default/fleet"), "{body}");

    // A second run changes nothing and commits nothing.
    let second = run(&[]);
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert_eq!(remote.head("main"), commit);
    let report: serde_json::Value =
        serde_json::from_str(&second.stdout).unwrap_or_else(|e| panic!("{e}: {}", second.stdout));
    assert_eq!(report[0]["commit"], serde_json::Value::Null, "{report}");

    // A new tag: after the repository's interval, a new commit.
    registry.push_image("team/app", &["1.2.0"]);
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let third = run(&[]);
    assert_eq!(third.code, 0, "{}", third.stderr);
    assert_ne!(remote.head("main"), commit);
    assert!(
        remote
            .show("main", "clusters/prod/app.yaml")
            .contains("team/app:1.2.0")
    );
    assert_eq!(remote.log("main").len(), 3);
}

#[test]
fn a_failing_automation_is_reported_and_pushes_nothing() {
    let Some(registry) = DockerRegistry::start(Auth::None) else {
        return;
    };
    registry.push_image("team/app", &["1.0.0"]);
    let text = objects(&registry.addr, "file:///nonexistent/fleet.git");
    let (dir, docker) = workspace(&[("objects.yaml", &text)]);
    let run = run_once(&dir, &docker, "objects.yaml", "state", &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    // The error once, on stderr; stdout claims nothing.
    assert!(
        run.stderr
            .contains("error: ImageUpdateAutomation default/fleet: git clone:"),
        "{}",
        run.stderr
    );
    assert_eq!(
        run.stderr.matches("git clone:").count(),
        1,
        "{}",
        run.stderr
    );
    assert!(!run.stdout.contains("default/fleet"), "{}", run.stdout);
}

#[test]
fn a_registry_that_is_down_is_the_automations_error_not_up_to_date() {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|e| panic!("{e}"))
        .to_string();
    let remote = BareRepo::new(&[("clusters/prod/app.yaml", &manifest(&closed, "1.0.0"))]);
    let (dir, docker) = workspace(&[("objects.yaml", &objects(&closed, &remote.url()))]);
    let before = remote.head("main");
    let json = run_once(&dir, &docker, "objects.yaml", "state", &["-o", "json"]);
    assert_eq!(json.code, 1, "{}", json.stderr);
    let reports: serde_json::Value = serde_json::from_str(&json.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", json.stdout, json.stderr));
    let error = &reports[0]["error"];
    assert_eq!(error["kind"], "scan", "{reports}");
    assert_eq!(error["class"], "retry", "{reports}");
    let message = error["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{reports}"));
    assert!(
        message.starts_with(
            "ImagePolicy default/app has no latest tag: ImageRepository default/app: "
        ),
        "{message}"
    );
    assert!(reports[0]["commit"].is_null(), "{reports}");
    assert_eq!(remote.head("main"), before);
    // In text: not "up to date", and the registry's failure once, on stderr.
    let text = run_once(&dir, &docker, "objects.yaml", "state", &[]);
    assert_eq!(text.code, 1, "{}", text.stderr);
    assert!(!text.stdout.contains("up to date"), "{}", text.stdout);
    assert_eq!(
        text.stderr.matches("ImageRepository default/app:").count(),
        1,
        "{}",
        text.stderr
    );
}

#[test]
fn a_push_branch_of_its_own_is_rebuilt_and_never_taken_from_others() {
    let Some(registry) = DockerRegistry::start(Auth::None) else {
        return;
    };
    registry.push_image("team/app", &["1.0.0", "1.1.0"]);
    let addr = registry.addr.clone();
    let remote = BareRepo::new(&[
        ("clusters/prod/app.yaml", &manifest(&addr, "1.0.0")),
        ("README", "fleet\n"),
    ]);
    let text = objects(&addr, &remote.url()).replace(
        "      author: {name: hoist-bot, email: bot@example.com}\n",
        "      author: {name: hoist-bot, email: bot@example.com}\n    push: {branch: hoist/fleet}\n",
    );
    let (dir, docker) = workspace(&[("objects.yaml", &text)]);
    let run = || run_once(&dir, &docker, "objects.yaml", "state", &[]);
    let main = remote.head("main");
    let first = run();
    assert_eq!(first.code, 0, "{}{}", first.stdout, first.stderr);
    assert!(
        first.stdout.contains("pushed") && first.stdout.contains("to hoist/fleet"),
        "{}",
        first.stdout
    );
    assert_eq!(remote.head("main"), main, "main must not move");
    assert!(
        remote
            .show("hoist/fleet", "clusters/prod/app.yaml")
            .contains("1.1.0")
    );
    let owned = remote.head("hoist/fleet");
    // Same change on the same base: nothing pushed.
    let second = run();
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert_eq!(remote.head("hoist/fleet"), owned);
    // main moves: the branch is rebuilt on the new tip.
    remote.commit_elsewhere("main", "README", "fleet, edited\n");
    let third = run();
    assert_eq!(third.code, 0, "{}", third.stderr);
    let rebuilt = remote.log("hoist/fleet");
    assert!(
        rebuilt[0].starts_with("hoist-bot|") && rebuilt[1].starts_with("Someone Else|"),
        "{rebuilt:?}"
    );
    // Someone commits onto hoist's branch: hoist stops and says so.
    remote.commit_elsewhere("hoist/fleet", "README", "a reviewer's fix\n");
    let theirs = remote.head("hoist/fleet");
    let fourth = run();
    assert_eq!(fourth.code, 1, "{}", fourth.stdout);
    assert!(
        fourth.stderr.contains("has a commit hoist did not make"),
        "{}",
        fourth.stderr
    );
    assert_eq!(remote.head("hoist/fleet"), theirs);
}

#[test]
fn https_credentials_come_from_a_secret_in_the_files() {
    let Some(registry) = DockerRegistry::start(Auth::None) else {
        return;
    };
    registry.push_image("team/app", &["1.0.0", "1.1.0"]);
    let addr = registry.addr.clone();
    let remote = BareRepo::new(&[("clusters/prod/app.yaml", &manifest(&addr, "1.0.0"))]);
    let base = remote
        .path
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    let http = crate::support::git::GitHttp::start(&base, "git-bot", "s3cr3t-pass");
    let url = format!("http://{}/fleet.git", http.server.addr);
    let with_secret = objects(&addr, &url)
        .replace("    url: ", "    secretRef: {name: fleet-git}\n    url: ")
        + "---\napiVersion: v1\nkind: Secret\nmetadata: {name: fleet-git}\nstringData: {username: git-bot, password: s3cr3t-pass}\n";
    let (dir, docker) = workspace(&[
        ("objects.yaml", &with_secret),
        (
            "wrong.yaml",
            &with_secret
                .replace("s3cr3t-pass", "n0t-the-pa55")
                .replace("name: fleet}", "name: other}"),
        ),
    ]);
    let before = remote.head("main");
    // Wrong credentials: a clear error, nothing pushed, no secret shown.
    let wrong = run_once(&dir, &docker, "wrong.yaml", "state-wrong", &[]);
    assert_eq!(wrong.code, 1, "{}{}", wrong.stdout, wrong.stderr);
    assert!(
        wrong
            .stderr
            .contains("ImageUpdateAutomation default/other: git clone:"),
        "{}",
        wrong.stderr
    );
    assert!(
        !wrong.stdout.contains("n0t-the-pa55") && !wrong.stderr.contains("n0t-the-pa55"),
        "{}",
        wrong.stdout
    );
    assert_eq!(remote.head("main"), before);
    let run = run_once(&dir, &docker, "objects.yaml", "state", &[]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        remote
            .show("main", "clusters/prod/app.yaml")
            .contains("team/app:1.1.0")
    );
    assert!(!run.stdout.contains("s3cr3t") && !run.stderr.contains("s3cr3t"));
    // The password was sent in an Authorization header, not in the URL.
    assert!(
        http.server
            .requests()
            .iter()
            .all(|r| !r.target.contains("s3cr3t"))
    );
}

/// A Secret with `identity` and `known_hosts`, as Flux's git Secrets hold.
fn ssh_secret(identity: &str, known_hosts: &str) -> String {
    let indent = |text: &str| {
        text.lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    };
    format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: fleet-git}}\nstringData:\n  identity: |\n{}  known_hosts: |\n{}",
        indent(identity),
        indent(known_hosts)
    )
}

#[test]
fn ssh_with_an_identity_and_verified_host_keys() {
    let Some(sshd) = crate::support::git::Sshd::start() else {
        return;
    };
    let Some(registry) = DockerRegistry::start(Auth::None) else {
        return;
    };
    registry.push_image("team/app", &["1.0.0", "1.1.0"]);
    let addr = registry.addr.clone();
    let remote = BareRepo::new(&[("clusters/prod/app.yaml", &manifest(&addr, "1.0.0"))]);
    let url = format!(
        "ssh://root@127.0.0.1:{}{}",
        sshd.port,
        remote.path.display()
    );
    let automation =
        objects(&addr, &url).replace("    url: ", "    secretRef: {name: fleet-git}\n    url: ");
    // A known_hosts entry with another key: the host is not trusted.
    let other = format!(
        "[127.0.0.1]:{} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n",
        sshd.port
    );
    let (dir, docker) = workspace(&[
        (
            "ok.yaml",
            &(automation.clone() + &ssh_secret(&sshd.identity, &sshd.known_hosts)),
        ),
        (
            "spoofed.yaml",
            &(automation.replace("name: fleet}", "name: spoofed}")
                + &ssh_secret(&sshd.identity, &other)),
        ),
    ]);
    let before = remote.head("main");
    let spoofed = run_once(&dir, &docker, "spoofed.yaml", "state-spoofed", &[]);
    assert_eq!(spoofed.code, 1, "{}{}", spoofed.stdout, spoofed.stderr);
    assert!(
        spoofed.stderr.contains("Host key verification failed"),
        "{}",
        spoofed.stderr
    );
    assert_eq!(remote.head("main"), before);
    let run = run_once(&dir, &docker, "ok.yaml", "state", &[]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        remote
            .show("main", "clusters/prod/app.yaml")
            .contains("team/app:1.1.0")
    );
    assert!(!run.stdout.contains("PRIVATE KEY") && !run.stderr.contains("PRIVATE KEY"));
}

#[test]
fn a_repository_of_ten_thousand_files() {
    let Some(registry) = DockerRegistry::start(Auth::None) else {
        return;
    };
    registry.push_image("team/app", &["1.0.0", "1.1.0"]);
    let addr = registry.addr.clone();
    let filler: Vec<(String, String)> = (0..10_000)
        .map(|i| {
            (
                format!("clusters/prod/svc{:02}/cm-{i}.yaml", i % 50),
                format!("kind: ConfigMap\nmetadata: {{name: cm-{i}}}\ndata: {{n: \"{i}\"}}\n"),
            )
        })
        .collect();
    let mut entries: Vec<(&str, &str)> = filler
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    let marked = manifest(&addr, "1.0.0");
    entries.push(("clusters/prod/app.yaml", &marked));
    let remote = BareRepo::new(&entries);
    let (dir, docker) = workspace(&[("objects.yaml", &objects(&addr, &remote.url()))]);
    let run = run_once(&dir, &docker, "objects.yaml", "state", &["-o", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let changed =
        crate::support::git::git(&remote.path, &["diff", "--name-only", "main~1", "main"]);
    assert_eq!(changed, "clusters/prod/app.yaml\n");
    assert_eq!(
        remote.show("main", "clusters/prod/app.yaml"),
        manifest(&addr, "1.1.0")
    );
}

#[test]
fn an_unreachable_registry_pushes_nothing() {
    let Some(registry) = DockerRegistry::start(Auth::None) else {
        return;
    };
    let addr = registry.addr.clone();
    drop(registry);
    let remote = BareRepo::new(&[("clusters/prod/app.yaml", &manifest(&addr, "1.0.0"))]);
    let (dir, docker) = workspace(&[("objects.yaml", &objects(&addr, &remote.url()))]);
    let before = remote.head("main");
    let run = run_once(&dir, &docker, "objects.yaml", "state", &[]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("ImageRepository default/app") && run.stderr.contains("cannot connect"),
        "{}",
        run.stderr
    );
    assert_eq!(remote.head("main"), before);
}

#[test]
fn without_once_it_keeps_running_and_stops_cleanly_on_sigterm() {
    let Some(registry) = DockerRegistry::start(Auth::None) else {
        return;
    };
    registry.push_image("team/app", &["1.0.0", "1.1.0"]);
    let addr = registry.addr.clone();
    let remote = BareRepo::new(&[("clusters/prod/app.yaml", &manifest(&addr, "1.0.0"))]);
    let (dir, docker) = workspace(&[("objects.yaml", &objects(&addr, &remote.url()))]);
    let before = remote.head("main");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hoist"))
        .args(["run", "-f", "objects.yaml", "--state-dir", "state"])
        .current_dir(dir.path())
        .env("DOCKER_CONFIG", &docker)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let waited = std::time::Instant::now();
    while remote.head("main") == before && waited.elapsed() < std::time::Duration::from_secs(30) {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_ne!(remote.head("main"), before, "the first pass did not push");
    // Still running after its first pass: it waits for the next interval.
    assert!(matches!(child.try_wait(), Ok(None)));
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success());
    let stopped = std::time::Instant::now();
    let code = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status.code();
        }
        assert!(
            stopped.elapsed() < std::time::Duration::from_secs(10),
            "hoist did not stop on SIGTERM"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(code, Some(0));
}

#[test]
fn git_variables_of_the_caller_never_redirect_hoist_and_refusals_are_errors() {
    let Some(registry) = DockerRegistry::start(Auth::None) else {
        return;
    };
    registry.push_image("team/app", &["1.0.0", "1.1.0"]);
    let addr = registry.addr.clone();
    let remote = BareRepo::new(&[("clusters/prod/app.yaml", &manifest(&addr, "1.0.0"))]);
    // The user's own checkout, which a git hook's GIT_DIR would point at.
    let user = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    crate::support::git::git(user.path(), &["clone", "--quiet", &remote.url(), "mine"]);
    let mine = user.path().join("mine");
    let mine_head = crate::support::git::git(&mine, &["rev-parse", "HEAD"]);
    // A remote that refuses every push: an error, not a race to retry.
    let hook = remote.path.join("hooks/pre-receive");
    std::fs::write(&hook, "#!/bin/sh\necho 'pushes are frozen' >&2\nexit 1\n")
        .unwrap_or_else(|e| panic!("{e}"));
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("{e}"));
    // Served by git daemon: the hook is the server's, and hoist never runs
    // a local remote's hooks.
    let (_daemon, url) = remote.serve();
    let (dir, docker) = workspace(&[("objects.yaml", &objects(&addr, &url))]);
    let git_dir = mine.join(".git").to_string_lossy().into_owned();
    let work_tree = mine.to_string_lossy().into_owned();
    let run = hoist_env(
        dir.path(),
        &[
            "run",
            "-f",
            "objects.yaml",
            "--once",
            "--state-dir",
            "state",
        ],
        &[
            ("DOCKER_CONFIG", &docker),
            ("GIT_DIR", &git_dir),
            ("GIT_WORK_TREE", &work_tree),
        ],
    );
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("pre-receive hook declined"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("kept moving"), "{}", run.stderr);
    assert_eq!(
        crate::support::git::git(&mine, &["rev-parse", "HEAD"]),
        mine_head
    );
    assert_eq!(
        crate::support::git::git(&mine, &["status", "--porcelain"]),
        ""
    );
}

/// The forge calls the last `hoist run` made: `METHOD path` after `before`.
fn calls_since(forge: &crate::support::forge::FakeForge, before: usize) -> Vec<String> {
    forge.calls().split_off(before)
}

#[test]
fn github_enterprise_pull_request_lifecycle_and_its_api_calls() {
    let Some(registry) = DockerRegistry::start(Auth::None) else {
        return;
    };
    registry.push_image("team/app", &["1.0.0", "1.1.0"]);
    let addr = registry.addr.clone();
    let remote = BareRepo::new(&[
        ("clusters/prod/app.yaml", &manifest(&addr, "1.0.0")),
        ("README", "fleet\n"),
    ]);
    // GitHub Enterprise serves its API under /api/v3 on its own host.
    let github = crate::support::forge::FakeForge::github("acme", "fleet", "ghp_t0ken", "/api/v3");
    let (_served, _http, text) = forge_fleet(
        &addr,
        &remote,
        "acme/fleet",
        &format!(
            "{{provider: github, apiURL: 'http://{}/api/v3', secretRef: {{name: forge}}, labels: [dependencies]}}",
            github.server.addr
        ),
    );
    let text = text
        + "---\napiVersion: v1\nkind: Secret\nmetadata: {name: forge}\nstringData: {token: ghp_t0ken}\n";
    let (dir, docker) = workspace(&[
        ("objects.yaml", &text),
        (
            "bad-token.yaml",
            &text.replace("token: ghp_t0ken", "token: ghp_wr0ng"),
        ),
    ]);
    let run = |file: &str, state: &str| -> serde_json::Value {
        let run = run_once(&dir, &docker, file, state, &["-o", "json"]);
        assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout))
    };
    let repo = "/api/v3/repos/acme/fleet";

    // Open: one listing, one pull request, its label.
    let report = run("objects.yaml", "state");
    assert_eq!(report[0]["pull_request"]["number"], 1, "{report}");
    assert_eq!(report[0]["pull_request"]["action"], "opened", "{report}");
    assert_eq!(
        calls_since(&github, 0),
        [
            format!("GET {repo}/pulls"),
            format!("POST {repo}/pulls"),
            format!("POST {repo}/issues/1/labels")
        ]
    );
    let pulls = github.pulls();
    assert_eq!(pulls.len(), 1);
    assert_eq!(
        (pulls[0].head.as_str(), pulls[0].base.as_str()),
        ("hoist/fleet", "main")
    );
    assert!(
        pulls[0].title.contains("1.0.0 → 1.1.0"),
        "{}",
        pulls[0].title
    );
    assert!(
        pulls[0]
            .body
            .contains("| Image | Old | New | File | Object |")
            && pulls[0].body.contains("default/fleet"),
        "{}",
        pulls[0].body
    );
    assert_eq!(pulls[0].labels, ["dependencies"]);
    assert!(
        remote
            .show("hoist/fleet", "clusters/prod/app.yaml")
            .contains("1.1.0")
    );

    // Steady state: the store knows the pull request; no forge call at all.
    let before = github.calls().len();
    let report = run("objects.yaml", "state");
    assert_eq!(report[0]["pull_request"]["action"], "unchanged");
    let steady = calls_since(&github, before);
    assert_eq!(steady, Vec::<String>::new());

    // An update: a new tag rebuilds the branch; the same pull request is
    // read by number and its text edited.
    registry.push_image("team/app", &["1.2.0"]);
    let before = github.calls().len();
    // --refresh: the new tag without waiting for the interval.
    let refreshed = run_once(
        &dir,
        &docker,
        "objects.yaml",
        "state",
        &["-o", "json", "--refresh"],
    );
    assert_eq!(
        refreshed.code, 0,
        "{}{}",
        refreshed.stdout, refreshed.stderr
    );
    let report: serde_json::Value = serde_json::from_str(&refreshed.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", refreshed.stdout));
    assert_eq!(report[0]["pull_request"]["action"], "updated", "{report}");
    let update = calls_since(&github, before);
    assert_eq!(
        update,
        [
            format!("GET {repo}/pulls/1"),
            format!("PATCH {repo}/pulls/1")
        ]
    );
    let pulls = github.pulls();
    assert_eq!(pulls.len(), 1, "never two pull requests");
    assert!(
        pulls[0].title.contains("1.0.0 → 1.2.0"),
        "{}",
        pulls[0].title
    );
    eprintln!(
        "forge API calls per run: open {}, steady state {}, update {}",
        3,
        steady.len(),
        update.len()
    );

    // The base moves: the branch is rebuilt on it; the pull request's text
    // is the same, so it is only read.
    remote.commit_elsewhere("main", "README", "fleet, edited\n");
    let before = github.calls().len();
    let report = run("objects.yaml", "state");
    assert_eq!(report[0]["pull_request"]["action"], "unchanged");
    assert_eq!(
        calls_since(&github, before),
        [format!("GET {repo}/pulls/1")]
    );
    let log = remote.log("hoist/fleet");
    assert!(
        log[0].starts_with("hoist-bot|") && log[1] == "Someone Else|someone else's change",
        "{log:?}"
    );

    // The base gets every change another way (here: the branch merged by
    // fast-forward while the pull request stays open): hoist closes it
    // with a comment saying why and deletes its branch.
    remote.fast_forward("main", "hoist/fleet");
    let before = github.calls().len();
    let report = run("objects.yaml", "state");
    assert_eq!(report[0]["pull_request"]["action"], "closed", "{report}");
    assert_eq!(
        calls_since(&github, before),
        [
            format!("GET {repo}/pulls/1"),
            format!("PATCH {repo}/pulls/1"),
            format!("POST {repo}/issues/1/comments")
        ]
    );
    let pulls = github.pulls();
    assert!(!pulls[0].open);
    assert!(
        pulls[0].comments[0].contains("`main` already has every change"),
        "{:?}",
        pulls[0].comments
    );
    assert_eq!(remote.branches(), ["main"]);
    // Nothing to propose, no branch, no record: no forge call.
    let before = github.calls().len();
    let report = run("objects.yaml", "state");
    assert!(report[0]["pull_request"].is_null(), "{report}");
    assert_eq!(calls_since(&github, before), Vec::<String>::new());

    // A wrong token: a clear, secret-free error, and nothing is lost.
    registry.push_image("team/app", &["1.3.0"]);
    // A state directory of its own: no stored scan, so the new tag is seen.
    let bad = run_once(&dir, &docker, "bad-token.yaml", "state-bad", &[]);
    assert_eq!(bad.code, 1, "{}", bad.stdout);
    assert!(
        bad.stderr
            .contains("HTTP 401: Bad credentials; the token is missing or invalid"),
        "{}",
        bad.stderr
    );
    assert!(!bad.stdout.contains("ghp_wr0ng") && !bad.stderr.contains("ghp_wr0ng"));
    assert!(
        remote
            .show("hoist/fleet", "clusters/prod/app.yaml")
            .contains("1.3.0"),
        "the branch was pushed before the forge refused"
    );

    // A reviewer commits onto hoist's branch, and main takes it all: the
    // base has every change, but the branch holds someone's work, so hoist
    // leaves branch and pull requests alone and says so.
    remote.commit_elsewhere("hoist/fleet", "README", "a reviewer's note\n");
    remote.fast_forward("main", "hoist/fleet");
    let theirs = remote.head("hoist/fleet");
    let before = github.calls().len();
    // --refresh: this state's last scan predates 1.3.0.
    let kept = run_once(&dir, &docker, "objects.yaml", "state", &["--refresh"]);
    assert_eq!(kept.code, 0, "{}{}", kept.stdout, kept.stderr);
    assert!(
        kept.stdout.contains("has a commit hoist did not make"),
        "{}",
        kept.stdout
    );
    assert_eq!(remote.head("hoist/fleet"), theirs);
    assert_eq!(calls_since(&github, before), Vec::<String>::new());
}

#[test]
fn gitlab_merge_request_in_a_subgroup_opened_once_then_updated() {
    let Some(registry) = DockerRegistry::start(Auth::None) else {
        return;
    };
    registry.push_image("team/app", &["1.0.0", "1.1.0"]);
    let addr = registry.addr.clone();
    let remote = BareRepo::new(&[("clusters/prod/app.yaml", &manifest(&addr, "1.0.0"))]);
    let gitlab = crate::support::forge::FakeForge::gitlab("platform/apps/fleet", "glpat-t0ken");
    let (_served, _http, text) = forge_fleet(
        &addr,
        &remote,
        "platform/apps/fleet",
        &format!(
            "{{provider: gitlab, apiURL: 'http://{}/api/v4', labels: [dependencies]}}",
            gitlab.server.addr
        ),
    );
    let (dir, docker) = workspace(&[("objects.yaml", &text)]);
    // --refresh: each run sees the registry's tags, whatever the interval.
    let run = || {
        hoist_env(
            dir.path(),
            &[
                "run",
                "-f",
                "objects.yaml",
                "--once",
                "--refresh",
                "--state-dir",
                "state",
                "-o",
                "json",
            ],
            &[("DOCKER_CONFIG", &docker), ("GITLAB_TOKEN", "glpat-t0ken")],
        )
    };
    let first = run();
    assert_eq!(first.code, 0, "{}{}", first.stdout, first.stderr);
    let report: serde_json::Value =
        serde_json::from_str(&first.stdout).unwrap_or_else(|e| panic!("{e}: {}", first.stdout));
    assert_eq!(report[0]["pull_request"]["number"], 1, "{report}");
    registry.push_image("team/app", &["1.2.0"]);
    let second = run();
    assert_eq!(second.code, 0, "{}{}", second.stdout, second.stderr);
    let mrs = gitlab.pulls();
    assert_eq!(mrs.len(), 1, "never two merge requests");
    assert_eq!(
        (mrs[0].head.as_str(), mrs[0].base.as_str()),
        ("hoist/fleet", "main")
    );
    assert!(mrs[0].title.contains("1.0.0 → 1.2.0"), "{}", mrs[0].title);
    assert_eq!(mrs[0].labels, ["dependencies"]);
    assert!(!first.stdout.contains("glpat") && !second.stdout.contains("glpat"));
    // Merged on GitLab (the branch kept): hoist finds nothing open to close
    // and deletes the branch it owns, without a comment.
    remote.fast_forward("main", "hoist/fleet");
    gitlab.edit(1, |mr| {
        mr.open = false;
        mr.merged = true;
    });
    let before = gitlab.calls().len();
    let third = run();
    assert_eq!(third.code, 0, "{}{}", third.stdout, third.stderr);
    let project = "/api/v4/projects/platform%2Fapps%2Ffleet/merge_requests";
    assert_eq!(
        calls_since(&gitlab, before),
        [format!("GET {project}/1"), format!("GET {project}")]
    );
    assert!(gitlab.pulls()[0].comments.is_empty());
    assert_eq!(remote.branches(), ["main"]);
}

#[test]
fn gitea_pull_request_found_across_pages_and_updated() {
    let Some(registry) = DockerRegistry::start(Auth::None) else {
        return;
    };
    registry.push_image("team/app", &["1.0.0", "1.1.0"]);
    let addr = registry.addr.clone();
    let remote = BareRepo::new(&[("clusters/prod/app.yaml", &manifest(&addr, "1.0.0"))]);
    let gitea = crate::support::forge::FakeForge::gitea("acme", "fleet", "gitea-t0ken", 60);
    let (_served, _http, text) = forge_fleet(
        &addr,
        &remote,
        "acme/fleet",
        &format!(
            "{{provider: gitea, apiURL: 'http://{}/api/v1', labels: [dependencies]}}",
            gitea.server.addr
        ),
    );
    let unreachable = text.replace(&addr, "127.0.0.1:1");
    let (dir, docker) = workspace(&[("objects.yaml", &text), ("unreachable.yaml", &unreachable)]);
    let run_with = |file: &str, state: &str| {
        hoist_env(
            dir.path(),
            &[
                "run",
                "-f",
                file,
                "--once",
                "--state-dir",
                state,
                "-o",
                "json",
            ],
            &[("DOCKER_CONFIG", &docker), ("GITEA_TOKEN", "gitea-t0ken")],
        )
    };
    let run = || run_with("objects.yaml", "state");
    let first = run();
    assert_eq!(first.code, 0, "{}{}", first.stdout, first.stderr);
    let report: serde_json::Value =
        serde_json::from_str(&first.stdout).unwrap_or_else(|e| panic!("{e}: {}", first.stdout));
    assert_eq!(report[0]["pull_request"]["number"], 61, "{report}");
    registry.push_image("team/app", &["1.2.0"]);
    // A fresh state directory: hoist knows no pull request and looks
    // for its own among the open ones, page by page.
    let second = run_with("objects.yaml", "fresh-state");
    assert_eq!(second.code, 0, "{}{}", second.stdout, second.stderr);
    let pulls = gitea.pulls();
    let ours: Vec<_> = pulls.iter().filter(|p| p.head == "hoist/fleet").collect();
    assert_eq!(ours.len(), 1, "never two pull requests");
    assert!(ours[0].title.contains("1.0.0 → 1.2.0"), "{}", ours[0].title);
    assert_eq!(ours[0].labels, ["dependencies"]);
    let second_pages = gitea
        .server
        .requests()
        .iter()
        .filter(|r| r.target.contains("page=2"))
        .count();
    assert_eq!(
        second_pages, 2,
        "the first run and the fresh one both paged"
    );
    // The registry cannot be reached: with no latest tag, nothing is
    // proposed, but that is no reason to close the pull request.
    let before = gitea.calls().len();
    let third = run_with("unreachable.yaml", "state-unreachable");
    assert_eq!(third.code, 1, "{}{}", third.stdout, third.stderr);
    assert_eq!(calls_since(&gitea, before), Vec::<String>::new());
    assert!(
        gitea
            .pulls()
            .iter()
            .any(|p| p.head == "hoist/fleet" && p.open)
    );
    assert_eq!(remote.branches(), ["hoist/fleet", "main"]);
}

#[test]
fn spec_sync_applies_the_branch_hoist_just_pushed_and_then_anyones_commit() {
    let Some(registry) = DockerRegistry::start(Auth::None) else {
        return;
    };
    registry.push_image("team/app", &["1.0.0", "1.1.0"]);
    let addr = registry.addr.clone();
    let remote = BareRepo::new(&[
        ("clusters/prod/app.yaml", &manifest(&addr, "1.0.0")),
        (
            "clusters/prod/config.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: prod}\ndata: {level: info}\n",
        ),
    ]);
    let fake = crate::support::kube::FakeKube::start();
    let text = objects(&addr, &remote.url()) + "  sync: {path: ./clusters/prod, prune: true}\n";
    let (dir, docker) = workspace(&[("objects.yaml", &text)]);
    let kubeconfig = fake.kubeconfig.to_string_lossy().into_owned();
    let run = || {
        let run = run_once(
            &dir,
            &docker,
            "objects.yaml",
            "state",
            &["--kubeconfig", &kubeconfig, "-o", "json"],
        );
        assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
        serde_json::from_str::<serde_json::Value>(&run.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", run.stdout))
    };
    // hoist's own commit is applied in the same run, not at the next interval.
    let first = run();
    assert_eq!(first[0]["sync"]["revision"], remote.head("main"), "{first}");
    assert_eq!(first[0]["commit"], remote.head("main"));
    let deployment = fake
        .get("apps/v1", "Deployment", "prod", "app")
        .unwrap_or_default();
    let image = deployment["spec"]["template"]["spec"]["containers"][0]["image"].clone();
    assert_eq!(image, format!("{addr}/team/app:1.1.0"), "{deployment}");
    assert_eq!(
        deployment["metadata"]["labels"]["sync.hoist.dev/name"],
        "fleet"
    );
    // Nothing new: nothing written.
    let second = run();
    assert_eq!(second[0]["sync"]["writes"], 0, "{second}");
    // Someone else's commit on the branch is applied too: a GitOps sync.
    remote.commit_elsewhere(
        "main",
        "clusters/prod/config.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: prod}\ndata: {level: debug}\n",
    );
    let third = run();
    assert_eq!(third[0]["sync"]["revision"], remote.head("main"));
    assert_eq!(third[0]["sync"]["writes"], 1, "{third}");
    let config = fake
        .get("v1", "ConfigMap", "prod", "settings")
        .unwrap_or_default();
    assert_eq!(config["data"]["level"], "debug");
}

#[test]
fn spec_sync_in_pull_request_mode_applies_the_base_branch_not_the_proposal() {
    let Some(registry) = DockerRegistry::start(Auth::None) else {
        return;
    };
    registry.push_image("team/app", &["1.0.0", "1.1.0"]);
    let addr = registry.addr.clone();
    let remote = BareRepo::new(&[("clusters/prod/app.yaml", &manifest(&addr, "1.0.0"))]);
    let github = crate::support::forge::FakeForge::github("acme", "fleet", "ghp_t0ken", "");
    let (_served, _http, text) = forge_fleet(
        &addr,
        &remote,
        "acme/fleet",
        &format!(
            "{{provider: github, apiURL: 'http://{}'}}",
            github.server.addr
        ),
    );
    let text = text.replace(
        "  update: {path: ./clusters/prod}\n",
        "  update: {path: ./clusters/prod}\n  sync: {path: ./clusters/prod}\n",
    );
    let fake = crate::support::kube::FakeKube::start();
    let kubeconfig = fake.kubeconfig.to_string_lossy().into_owned();
    let (dir, docker) = workspace(&[("objects.yaml", &text)]);
    let run = hoist_env(
        dir.path(),
        &[
            "run",
            "-f",
            "objects.yaml",
            "--once",
            "--state-dir",
            "state",
            "--kubeconfig",
            &kubeconfig,
            "-o",
            "json",
        ],
        &[("DOCKER_CONFIG", &docker), ("GITHUB_TOKEN", "ghp_t0ken")],
    );
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let report: serde_json::Value =
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout));
    assert_eq!(report[0]["pull_request"]["action"], "opened", "{report}");
    // The proposal waits for review; the cluster runs what main holds.
    assert_eq!(report[0]["sync"]["revision"], remote.head("main"));
    let deployment = fake
        .get("apps/v1", "Deployment", "prod", "app")
        .unwrap_or_default();
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        format!("{addr}/team/app:1.0.0")
    );
}

/// A `git.url` that leads into the state directory — by absolute path,
/// relative path, `file://` (percent-encoded or not) or a symlink — would
/// reach a clone another automation made, and git would run what that
/// clone's configuration and hooks say. Refused with exit 2, naming the
/// file, the object and the field, before the store is opened.
#[test]
fn a_git_url_into_the_state_directory_is_refused() {
    let (dir, docker) = workspace(&[]);
    let cache = dir.path().join("state/git/0a1b2c/fleet.git");
    std::fs::create_dir_all(&cache).unwrap_or_else(|e| panic!("{e}"));
    crate::support::git::git(&cache, &["init", "--quiet", "--bare"]);
    std::os::unix::fs::symlink(dir.path().join("state"), dir.path().join("link"))
        .unwrap_or_else(|e| panic!("{e}"));
    let absolute = cache.display().to_string();
    for url in [
        absolute.clone(),
        format!("file://{absolute}"),
        format!("file://{}", absolute.replace("state", "st%61te")),
        "state/git/0a1b2c/fleet.git".to_string(),
        "./elsewhere/../state/git/0a1b2c/fleet.git".to_string(),
        "link/git/0a1b2c/fleet.git".to_string(),
        "state/git/not-yet-cloned".to_string(),
    ] {
        std::fs::write(
            dir.path().join("fleet.yaml"),
            objects("127.0.0.1:1", &format!("'{url}'")),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let run = run_once(&dir, &docker, "fleet.yaml", "state", &[]);
        assert_eq!(run.code, 2, "{url}: {}", run.stderr);
        assert!(
            run.stderr.contains("fleet.yaml:")
                && run
                    .stderr
                    .contains("ImageUpdateAutomation default/fleet: spec.git.url: ")
                && run.stderr.contains("state directory"),
            "{url}: {}",
            run.stderr
        );
        assert!(
            !dir.path().join("state/hoist.redb").exists(),
            "{url}: the store was opened"
        );
    }
}

#[test]
fn strict_refresh_and_the_loaders_warnings_in_json() {
    let Some(registry) = DockerRegistry::start(Auth::None) else {
        return;
    };
    registry.push_image("team/app", &["1.0.0", "1.1.0"]);
    let addr = registry.addr.clone();
    let remote = BareRepo::new(&[("clusters/prod/app.yaml", &manifest(&addr, "1.0.0"))]);
    // An hour's interval, so only --refresh asks the registry again; and
    // a misspelt field, which the loader warns about.
    let text = objects(&addr, &remote.url())
        .replace("interval: 1s", "interval: 1h")
        .replace(
            "  imageRepositoryRef: {name: app}\n",
            "  imageRepositoryRef: {name: app}\n  filterTag: {pattern: '.*'}\n",
        );
    let (dir, docker) = workspace(&[("objects.yaml", &text)]);
    let before = remote.head("main");

    // --strict: the warning is an error, exit 2, and nothing is pushed.
    let strict = run_once(&dir, &docker, "objects.yaml", "state", &["--strict"]);
    assert_eq!(strict.code, 2, "{}", strict.stderr);
    assert!(
        strict
            .stderr
            .contains("ImagePolicy default/app: spec.filterTag: unknown field"),
        "{}",
        strict.stderr
    );
    assert!(
        strict.stderr.contains("hint: --strict"),
        "{}",
        strict.stderr
    );
    assert_eq!(remote.head("main"), before);
    // The same with --log-format json: every line on stderr is a record.
    let json_log = run_once(
        &dir,
        &docker,
        "objects.yaml",
        "state",
        &["--strict", "--log-format", "json"],
    );
    assert_eq!(json_log.code, 2, "{}", json_log.stderr);
    let records: Vec<serde_json::Value> = json_log
        .stderr
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{e}: {line:?} in {}", json_log.stderr))
        })
        .collect();
    let last = records.last().unwrap_or_else(|| panic!("no stderr"));
    assert_eq!(last["level"], "ERROR", "{last}");
    assert!(
        last["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("spec.filterTag: unknown field")),
        "{last}"
    );
    assert!(
        last["fields"]["hint"]
            .as_str()
            .is_some_and(|h| h.contains("--strict")),
        "{last}"
    );

    // Without --strict: pushed, and -o json carries the warning with the
    // automation whose policy it concerns.
    let first = run_once(&dir, &docker, "objects.yaml", "state", &["-o", "json"]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let reports: serde_json::Value =
        serde_json::from_str(&first.stdout).unwrap_or_else(|e| panic!("{e}: {}", first.stdout));
    let warnings = reports[0]["warnings"]
        .as_array()
        .unwrap_or_else(|| panic!("{reports}"));
    assert!(
        warnings.iter().any(|w| w.as_str().is_some_and(
            |w| w.contains("objects.yaml:") && w.contains("spec.filterTag: unknown field")
        )),
        "{reports}"
    );
    assert!(reports[0]["commit"].is_string(), "{reports}");
    let pushed = remote.head("main");
    assert_ne!(pushed, before);

    // A new tag within the interval: the stored tags stand, until
    // --refresh asks the registry.
    registry.push_image("team/app", &["1.2.0"]);
    let cached = run_once(&dir, &docker, "objects.yaml", "state", &[]);
    assert_eq!(cached.code, 0, "{}", cached.stderr);
    assert!(
        cached.stdout.contains("default/fleet: up to date"),
        "{}",
        cached.stdout
    );
    assert_eq!(remote.head("main"), pushed);
    let refreshed = run_once(&dir, &docker, "objects.yaml", "state", &["--refresh"]);
    assert_eq!(refreshed.code, 0, "{}", refreshed.stderr);
    assert!(
        remote
            .show("main", "clusters/prod/app.yaml")
            .contains("team/app:1.2.0")
    );
}

#[test]
fn strict_refuses_a_marker_that_does_nothing_before_anything_is_pushed() {
    let Some(registry) = DockerRegistry::start(Auth::None) else {
        return;
    };
    registry.push_image("team/app", &["1.0.0", "1.1.0"]);
    let addr = registry.addr.clone();
    let broken = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata:\n  image: nginx:1 # {\"$imagepolicy\": \"app\"}\n";
    let remote = BareRepo::new(&[
        ("clusters/prod/app.yaml", &manifest(&addr, "1.0.0")),
        ("clusters/prod/broken.yaml", broken),
    ]);
    let (dir, docker) = workspace(&[("objects.yaml", &objects(&addr, &remote.url()))]);
    let before = remote.head("main");
    let strict = run_once(
        &dir,
        &docker,
        "objects.yaml",
        "state",
        &["--strict", "-o", "json"],
    );
    assert_eq!(strict.code, 2, "{}", strict.stderr);
    let reports: serde_json::Value =
        serde_json::from_str(&strict.stdout).unwrap_or_else(|e| panic!("{e}: {}", strict.stdout));
    assert_eq!(reports[0]["error"]["kind"], "strict", "{reports}");
    assert_eq!(reports[0]["error"]["class"], "stalled", "{reports}");
    assert!(
        reports[0]["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("clusters/prod/broken.yaml:5:")),
        "{reports}"
    );
    assert_eq!(remote.head("main"), before);
    // Without it, the good marker is rewritten and the bad one reported.
    let lenient = run_once(&dir, &docker, "objects.yaml", "state", &[]);
    assert_eq!(lenient.code, 0, "{}", lenient.stderr);
    assert!(
        lenient
            .stdout
            .contains("warning: clusters/prod/broken.yaml:5:"),
        "{}",
        lenient.stdout
    );
    assert_ne!(remote.head("main"), before);
    assert_eq!(remote.show("main", "clusters/prod/broken.yaml"), broken);
}

/// Flux's own documents, as its "automate image updates to Git" guide
/// writes them, with no `insecure` on a loopback registry (Flux's registry
/// library speaks plain HTTP to it too): the GitRepository gives the
/// remote, `update.path` names one file, and the commit carries Flux's
/// default message byte for byte, with no hoist trailer.
#[test]
fn flux_documents_of_the_guide_update_one_file_with_flux_s_message() {
    let Some(registry) = DockerRegistry::start(Auth::None) else {
        return;
    };
    registry.push_image("team/app", &["1.0.0", "1.1.0", "2.0.0"]);
    let addr = registry.addr.clone();
    let deployment = |tag: &str| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: app, namespace: prod}}\nspec:\n  template:\n    spec:\n      containers:\n        - name: app\n          image: {addr}/team/app:{tag} # {{\"$imagepolicy\": \"flux-system:app\"}}\n"
        )
    };
    let remote = BareRepo::new(&[
        ("clusters/my-cluster/app.yaml", &deployment("1.0.0")),
        ("clusters/my-cluster/other.yaml", &deployment("1.0.0")),
    ]);
    // Served by git daemon: hoist runs no hook of a repository on disk, a
    // server does.
    let (_daemon, url) = remote.serve();
    let objects = format!(
        "apiVersion: image.toolkit.fluxcd.io/v1
kind: ImageRepository
metadata: {{name: app, namespace: flux-system}}
spec: {{image: {addr}/team/app, interval: 1m0s}}
---
apiVersion: image.toolkit.fluxcd.io/v1
kind: ImagePolicy
metadata: {{name: app, namespace: flux-system}}
spec:
  imageRepositoryRef: {{name: app}}
  policy: {{semver: {{range: 1.x}}}}
---
apiVersion: image.toolkit.fluxcd.io/v1
kind: ImageUpdateAutomation
metadata: {{name: flux-system, namespace: flux-system}}
spec:
  interval: 30m
  sourceRef: {{kind: GitRepository, name: flux-system}}
  git:
    checkout: {{ref: {{branch: main}}}}
    commit:
      author: {{email: fluxcdbot@users.noreply.github.com, name: fluxcdbot}}
    push: {{branch: main, refspec: 'refs/heads/main:refs/heads/auto', options: {{ci.skip: '', team: apps}}}}
  update: {{path: ./clusters/my-cluster/app.yaml, strategy: Setters}}
---
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {{name: flux-system, namespace: flux-system}}
spec:
  interval: 1m0s
  ref: {{branch: main}}
  url: {url}
"
    );
    // The remote takes push options and records the ones it gets.
    crate::support::git::git(
        &remote.path,
        &["config", "receive.advertisePushOptions", "true"],
    );
    let hook = remote.path.join("hooks/post-receive");
    std::fs::write(
        &hook,
        "#!/bin/sh\ni=0\nwhile [ $i -lt \"${GIT_PUSH_OPTION_COUNT:-0}\" ]; do eval \"echo \\$GIT_PUSH_OPTION_$i\" >> push-options; i=$((i+1)); done\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut permissions = std::fs::metadata(&hook)
        .unwrap_or_else(|e| panic!("{e}"))
        .permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(&hook, permissions).unwrap_or_else(|e| panic!("{e}"));
    let (dir, docker) = workspace(&[("flux.yaml", &objects)]);
    let run = run_once(&dir, &docker, "flux.yaml", "state", &["-o", "json"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stderr, run.stdout);
    let report: serde_json::Value =
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout));
    assert_eq!(
        report[0]["automation"], "flux-system/flux-system",
        "{report}"
    );
    assert_eq!(
        remote.show("main", "clusters/my-cluster/app.yaml"),
        deployment("1.1.0")
    );
    assert_eq!(
        remote.show("main", "clusters/my-cluster/other.yaml"),
        deployment("1.0.0"),
        "update.path names one file"
    );
    let raw = crate::support::git::git(&remote.path, &["cat-file", "commit", "main"]);
    let message = raw.split_once("\n\n").map(|(_, m)| m).unwrap_or_default();
    assert_eq!(message, "Update from image update automation");
    assert!(
        raw.contains("\nauthor fluxcdbot <fluxcdbot@users.noreply.github.com> "),
        "{raw}"
    );
    // push.refspec: the same commit on refs/heads/auto; push.options sent
    // with both pushes.
    assert_eq!(remote.head("auto"), remote.head("main"));
    let options =
        std::fs::read_to_string(remote.path.join("push-options")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(options, "ci.skip\nteam=apps\nci.skip\nteam=apps\n");

    // With the guide's Go template and messageTemplateValues, the message
    // is exactly what the template renders (from a fresh state, so the
    // new tag is scanned now).
    registry.push_image("team/app", &["1.2.0"]);
    let templated = objects.replace(
        "      author: {email: fluxcdbot@users.noreply.github.com, name: fluxcdbot}\n",
        "      author: {email: fluxcdbot@users.noreply.github.com, name: fluxcdbot}\n      messageTemplate: |\n        {{range .Changed.Changes}}{{print .OldValue}} -> {{println .NewValue}}{{end}}\n        Files:{{ range $file, $_ := .Changed.FileChanges }} {{ $file }}{{ end }} on {{ .Values.cluster }} by {{ .AutomationObject }}\n      messageTemplateValues: {cluster: prod}\n      signingKey: {type: ssh, secretRef: {name: signing-key}}\n",
    );
    // ... and signed with Flux's SSH signingKey Secret: a key protected by
    // the passphrase in its `password`.
    let keys = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let key = keys.path().join("signing");
    let made = std::process::Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "ssh-s3cret",
            "-C",
            "fluxcdbot",
            "-f",
        ])
        .arg(&key)
        .status()
        .unwrap_or_else(|e| panic!("ssh-keygen: {e}"));
    assert!(made.success());
    let private = std::fs::read_to_string(&key).unwrap_or_else(|e| panic!("{e}"));
    let public =
        std::fs::read_to_string(key.with_extension("pub")).unwrap_or_else(|e| panic!("{e}"));
    let secret = format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: signing-key, namespace: flux-system}}\nstringData:\n  password: ssh-s3cret\n  identity: |\n{}",
        private
            .lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    );
    std::fs::write(dir.path().join("flux.yaml"), templated + &secret)
        .unwrap_or_else(|e| panic!("{e}"));
    let run = run_once(&dir, &docker, "flux.yaml", "state2", &[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stderr, run.stdout);
    let raw = crate::support::git::git(&remote.path, &["cat-file", "commit", "main"]);
    let message = raw.split_once("\n\n").map(|(_, m)| m).unwrap_or_default();
    assert_eq!(
        message,
        format!(
            "{addr}/team/app:1.1.0 -> {addr}/team/app:1.2.0\n\nFiles: app.yaml on prod by flux-system/flux-system\n"
        )
        .as_str(),
        "the signature is a header, not part of the message"
    );
    let allowed = keys.path().join("allowed_signers");
    std::fs::write(
        &allowed,
        format!("fluxcdbot@users.noreply.github.com {public}"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let verified = std::process::Command::new("git")
        .arg("-c")
        .arg(format!("gpg.ssh.allowedSignersFile={}", allowed.display()))
        .args(["verify-commit", "main"])
        .current_dir(&remote.path)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );

    // Without its signing Secret, or with a password that does not open
    // the key, hoist commits nothing rather than an unsigned commit.
    registry.push_image("team/app", &["1.3.0"]);
    let signed = remote.head("main");
    let wrong = std::fs::read_to_string(dir.path().join("flux.yaml"))
        .unwrap_or_else(|e| panic!("{e}"))
        .replace("password: ssh-s3cret", "password: not-it");
    std::fs::write(dir.path().join("wrong.yaml"), wrong).unwrap_or_else(|e| panic!("{e}"));
    let run = run_once(&dir, &docker, "wrong.yaml", "state-wrong", &[]);
    assert_ne!(run.code, 0, "{}", run.stdout);
    assert!(
        run.stderr.contains("spec.git.commit.signingKey.secretRef: Secret flux-system/signing-key: the SSH signing key does not open with the Secret's password"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("not-it"), "{}", run.stderr);
    assert_eq!(remote.head("main"), signed);
    let without_secret = std::fs::read_to_string(dir.path().join("flux.yaml"))
        .unwrap_or_else(|e| panic!("{e}"))
        .replace("name: signing-key, namespace", "name: other-key, namespace");
    std::fs::write(dir.path().join("flux.yaml"), without_secret).unwrap_or_else(|e| panic!("{e}"));
    let run = run_once(&dir, &docker, "flux.yaml", "state3", &[]);
    assert_ne!(run.code, 0, "{}", run.stdout);
    assert!(
        run.stderr.contains("spec.git.commit.signingKey.secretRef: Secret flux-system/signing-key is not in the files"),
        "{}",
        run.stderr
    );
    assert_eq!(remote.head("main"), signed);

    // Flux's default signingKey type, OpenPGP: git.asc and its passphrase.
    let gpg = |home: &std::path::Path, args: &[&str]| {
        let out = std::process::Command::new("gpg")
            .arg("--homedir")
            .arg(home)
            .args([
                "--batch",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "s3cret",
            ])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("gpg: {e}"));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let made = keys.path().join("made");
    let verify = keys.path().join("verify");
    for home in [&made, &verify] {
        std::fs::create_dir(home).unwrap_or_else(|e| panic!("{e}"));
        let mut permissions = std::fs::metadata(home)
            .unwrap_or_else(|e| panic!("{e}"))
            .permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o700);
        std::fs::set_permissions(home, permissions).unwrap_or_else(|e| panic!("{e}"));
    }
    let identity = "fluxcdbot <fluxcdbot@users.noreply.github.com>";
    gpg(
        &made,
        &["--quick-gen-key", identity, "ed25519", "sign", "never"],
    );
    let armored = String::from_utf8(gpg(&made, &["--armor", "--export-secret-keys", identity]))
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        keys.path().join("public.asc"),
        gpg(&made, &["--armor", "--export", identity]),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    gpg(
        &verify,
        &[
            "--import",
            &keys.path().join("public.asc").to_string_lossy(),
        ],
    );
    registry.push_image("team/app", &["1.4.0"]);
    let openpgp = std::fs::read_to_string(dir.path().join("flux.yaml"))
        .unwrap_or_else(|e| panic!("{e}"))
        .replace(
            "signingKey: {type: ssh, secretRef: {name: signing-key}}",
            "signingKey: {secretRef: {name: gpg-key}}",
        )
        + &format!(
            "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: gpg-key, namespace: flux-system}}\nstringData:\n  passphrase: s3cret\n  git.asc: |\n{}",
            armored
                .lines()
                .map(|l| format!("    {l}\n"))
                .collect::<String>()
        );
    // A wrong passphrase: the key cannot sign, and nothing is pushed.
    std::fs::write(
        dir.path().join("flux.yaml"),
        openpgp.replace("passphrase: s3cret", "passphrase: wrong"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let run = run_once(&dir, &docker, "flux.yaml", "state4", &[]);
    assert_ne!(run.code, 0, "{}", run.stdout);
    assert_eq!(remote.head("main"), signed, "{}", run.stderr);
    assert!(
        !run.stderr.contains("wrong"),
        "the passphrase leaked: {}",
        run.stderr
    );
    std::fs::write(dir.path().join("flux.yaml"), openpgp).unwrap_or_else(|e| panic!("{e}"));
    let run = run_once(&dir, &docker, "flux.yaml", "state5", &[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stderr, run.stdout);
    assert_ne!(remote.head("main"), signed);
    let verified = std::process::Command::new("git")
        .args(["verify-commit", "main"])
        .env("GNUPGHOME", &verify)
        .current_dir(&remote.path)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    for home in [&made, &verify] {
        let _ = std::process::Command::new("gpgconf")
            .arg("--homedir")
            .arg(home)
            .args(["--kill", "gpg-agent"])
            .status();
    }
}

/// A Flux automation that pushes to a branch of its own: its messages
/// carry no trailer, so hoist knows its commit there by its committer and
/// its lineage (the parent is on the checkout branch). It rebuilds the
/// branch on the moved checkout branch, and stops, overwriting nothing,
/// once someone commits on top. A GitRepository pinned by a semver range
/// checks out the highest tag in it.
#[test]
fn a_flux_push_branch_is_rebuilt_by_lineage_and_a_semver_ref_checks_out_a_tag() {
    let Some(registry) = DockerRegistry::start(Auth::None) else {
        return;
    };
    registry.push_image("team/app", &["1.0.0", "1.1.0"]);
    let addr = registry.addr.clone();
    let deployment = |tag: &str| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: app}}\nspec:\n  template:\n    spec:\n      containers:\n        - name: app\n          image: {addr}/team/app:{tag} # {{\"$imagepolicy\": \"flux-system:app\"}}\n"
        )
    };
    let remote = BareRepo::new(&[("app.yaml", &deployment("1.0.0")), ("README", "fleet\n")]);
    let (_daemon, url) = remote.serve();
    let objects = |reference: &str| {
        format!(
            "apiVersion: image.toolkit.fluxcd.io/v1
kind: ImageRepository
metadata: {{name: app, namespace: flux-system}}
spec: {{image: {addr}/team/app, interval: 1m0s}}
---
apiVersion: image.toolkit.fluxcd.io/v1
kind: ImagePolicy
metadata: {{name: app, namespace: flux-system}}
spec:
  imageRepositoryRef: {{name: app}}
  policy: {{semver: {{range: 1.x}}}}
---
apiVersion: image.toolkit.fluxcd.io/v1
kind: ImageUpdateAutomation
metadata: {{name: apps, namespace: flux-system}}
spec:
  interval: 30m
  sourceRef: {{kind: GitRepository, name: fleet}}
  git:
    commit: {{author: {{email: fluxcdbot@example.com, name: fluxcdbot}}}}
    push: {{branch: image-updates}}
---
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {{name: fleet, namespace: flux-system}}
spec:
  interval: 1m0s
  ref: {reference}
  url: {url}
"
        )
    };
    let (dir, docker) = workspace(&[
        ("branch.yaml", &objects("{branch: main}")),
        ("semver.yaml", &objects("{semver: '~1.0'}")),
    ]);
    let run = |file: &str, state: &str| run_once(&dir, &docker, file, state, &[]);
    let first = run("branch.yaml", "state-1");
    assert_eq!(first.code, 0, "{}\n{}", first.stderr, first.stdout);
    let parent = |branch: &str| {
        crate::support::git::git(&remote.path, &["rev-parse", &format!("{branch}^")])
            .trim()
            .to_string()
    };
    assert_eq!(parent("image-updates"), remote.head("main"));
    assert_eq!(
        remote.show("image-updates", "app.yaml"),
        deployment("1.1.0")
    );
    assert_eq!(remote.show("main", "app.yaml"), deployment("1.0.0"));

    // main moves on, and a newer image comes: hoist's commit is rebuilt on
    // main's new tip (its old parent is in main's history).
    remote.commit_elsewhere("main", "README", "fleet, edited\n");
    registry.push_image("team/app", &["1.2.0"]);
    let second = run("branch.yaml", "state-2");
    assert_eq!(second.code, 0, "{}\n{}", second.stderr, second.stdout);
    assert_eq!(parent("image-updates"), remote.head("main"));
    assert_eq!(
        remote.show("image-updates", "app.yaml"),
        deployment("1.2.0")
    );
    assert_eq!(remote.log("image-updates").len(), 3, "seed, edit, hoist's");

    // Someone commits on top of hoist's commit: the next run stops.
    remote.commit_elsewhere("image-updates", "README", "reviewed\n");
    let theirs = remote.head("image-updates");
    registry.push_image("team/app", &["1.3.0"]);
    let third = run("branch.yaml", "state-3");
    assert_ne!(third.code, 0, "{}\n{}", third.stderr, third.stdout);
    assert!(
        third
            .stderr
            .contains("branch image-updates has a commit hoist did not make"),
        "{}",
        third.stderr
    );
    assert_eq!(remote.head("image-updates"), theirs, "nothing overwritten");

    // A GitRepository pinned by a semver range: the highest tag in it.
    let seed = crate::support::git::git(&remote.path, &["rev-list", "--max-parents=0", "main"])
        .trim()
        .to_string();
    crate::support::git::git(&remote.path, &["tag", "v1.0.3", &seed]);
    crate::support::git::git(&remote.path, &["tag", "v2.0.0", "main"]);
    crate::support::git::git(
        &remote.path,
        &["branch", "--delete", "--force", "image-updates"],
    );
    let pinned = run("semver.yaml", "state-4");
    assert_eq!(pinned.code, 0, "{}\n{}", pinned.stderr, pinned.stdout);
    assert_eq!(parent("image-updates"), seed, "built on v1.0.3");
    assert_eq!(
        remote.show("image-updates", "app.yaml"),
        deployment("1.3.0")
    );
}
