//! The forge clients against the fake forges: errors a user can act on,
//! never a token in them, and rate limits waited out rather than hammered.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hoist::forge::{self, Forge, ForgeRepo, GitHub, GitLab, Gitea, PullRequestSpec};

use crate::support::forge::FakeForge;

fn spec() -> PullRequestSpec {
    PullRequestSpec {
        head: "hoist/fleet".into(),
        base: "main".into(),
        title: "Update team/app: 1.0.0 → 1.1.0".into(),
        body: "| Image | Old | New | File | Object |".into(),
        labels: vec!["dependencies".into()],
    }
}

fn repo(url: &str) -> ForgeRepo {
    ForgeRepo::from_git_url(url).unwrap_or_else(|e| panic!("{e}"))
}

fn github(fake: &FakeForge, name: &str, token: &str) -> GitHub {
    GitHub::new(
        &format!("http://{}", fake.server.addr),
        &repo(&format!("https://github.com/acme/{name}.git")),
        token.to_string(),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

async fn ensure_error(forge: &dyn Forge) -> String {
    match forge::ensure(forge, &spec(), None, true).await {
        Ok((outcome, _)) => panic!("expected an error, got {outcome:?}"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn each_forge_error_says_what_to_fix_and_never_shows_the_token() {
    let fake = FakeForge::github("acme", "fleet", "ghp_t0ken", "");
    let cases: Vec<(String, &str)> = vec![
        (
            ensure_error(&github(&fake, "fleet", "ghp_wr0ng")).await,
            "GET /repos/acme/fleet/pulls: HTTP 401: Bad credentials; the token is missing or invalid",
        ),
        (
            ensure_error(&github(&fake, "other", "ghp_t0ken")).await,
            "GET /repos/acme/other/pulls: HTTP 404: Not Found; no such repository, or the token cannot see it",
        ),
        {
            fake.fail_next(
                "GET",
                403,
                r#"{"message": "Resource not accessible by personal access token"}"#,
                &[("X-RateLimit-Remaining", "4990")],
            );
            (
                ensure_error(&github(&fake, "fleet", "ghp_t0ken")).await,
                "HTTP 403: Resource not accessible by personal access token; the token lacks a scope",
            )
        },
        {
            // Another hoist opened the same pull request between this one's
            // listing and its POST: GitHub's 422.
            fake.fail_next(
                "POST",
                422,
                r#"{"message": "Validation Failed", "errors": [{"resource": "PullRequest", "code": "custom", "message": "A pull request already exists for acme:hoist/fleet."}]}"#,
                &[],
            );
            (
                ensure_error(&github(&fake, "fleet", "ghp_t0ken")).await,
                "POST /repos/acme/fleet/pulls: HTTP 422: Validation Failed: A pull request already exists for acme:hoist/fleet.; the forge refused the request as invalid",
            )
        },
    ];
    for (error, expected) in cases {
        assert!(error.contains(expected), "{error}\nexpected: {expected}");
        assert!(
            !error.contains("t0ken") && !error.contains("wr0ng"),
            "{error}"
        );
    }
    // GitLab's 409 for a second merge request from one branch.
    let gitlab = FakeForge::gitlab("platform/fleet", "glpat-t0ken");
    let client = GitLab::new(
        &format!("http://{}/api/v4", gitlab.server.addr),
        &repo("git@gitlab.example.com:platform/fleet.git"),
        "glpat-t0ken".into(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    client
        .create(&spec())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let error = client
        .create(&spec())
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        error.contains(
            "HTTP 409: [\"Another open merge request already exists for this source branch: !1\"]"
        ),
        "{error}"
    );
    // A Gitea label that does not exist is named, not dropped.
    let gitea = FakeForge::gitea("acme", "fleet", "gitea-t0ken", 0);
    let client = Gitea::new(
        &format!("http://{}/api/v1", gitea.server.addr),
        &repo("https://gitea.example.com/acme/fleet"),
        "gitea-t0ken".into(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let unknown = PullRequestSpec {
        labels: vec!["renovate".into()],
        ..spec()
    };
    let error = forge::ensure(&client, &unknown, None, true)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert_eq!(
        error,
        "label \"renovate\" does not exist in acme/fleet; create it first"
    );
    assert!(gitea.pulls().is_empty(), "nothing opened");
}

/// The time between the rate-limited request and the one after it.
fn gap(fake: &FakeForge, index: usize) -> Duration {
    let requests = fake.server.requests();
    requests[index + 1].at.duration_since(requests[index].at)
}

#[tokio::test]
async fn rate_limits_are_waited_out_not_hammered() {
    let fake = FakeForge::github("acme", "fleet", "ghp_t0ken", "");
    let forge = github(&fake, "fleet", "ghp_t0ken");
    // GitHub's secondary limit: 429 (or 403) with Retry-After.
    fake.fail_next(
        "GET",
        429,
        r#"{"message": "You have exceeded a secondary rate limit"}"#,
        &[("Retry-After", "1")],
    );
    let (outcome, _) = forge::ensure(&forge, &spec(), None, true)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcome.pull_request.number, 1);
    assert!(
        gap(&fake, 0) >= Duration::from_millis(950),
        "{:?}",
        gap(&fake, 0)
    );
    // GitHub's primary limit: 403, none remaining, X-RateLimit-Reset.
    let reset = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        + 2;
    let before = fake.server.requests().len();
    fake.fail_next(
        "GET",
        403,
        r#"{"message": "API rate limit exceeded for user ID 1."}"#,
        &[
            ("X-RateLimit-Remaining", "0"),
            ("X-RateLimit-Reset", &reset.to_string()),
        ],
    );
    forge.get(1).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(
        gap(&fake, before) >= Duration::from_millis(950),
        "{:?}",
        gap(&fake, before)
    );
    // A limit longer than hoist waits inside a run: a clear error at once,
    // and the next run tries again.
    let before = fake.server.requests().len();
    fake.fail_next(
        "GET",
        429,
        r#"{"message": "slow down"}"#,
        &[("Retry-After", "3600")],
    );
    let error = forge
        .get(1)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert_eq!(
        error,
        "GET /repos/acme/fleet/pulls/1: rate limited for another 3600s; the next run tries again"
    );
    assert_eq!(fake.server.requests().len(), before + 1, "no retry");
    // A limit that never lifts is given up on after a few waits.
    let before = fake.server.requests().len();
    for _ in 0..4 {
        fake.fail_next("GET", 429, "{}", &[("Retry-After", "1")]);
    }
    let error = forge
        .get(1)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(error.contains("rate limited"), "{error}");
    assert_eq!(fake.server.requests().len(), before + 4);
    // GitLab: 429 with RateLimit-Reset.
    let gitlab = FakeForge::gitlab("platform/fleet", "glpat-t0ken");
    let client = GitLab::new(
        &format!("http://{}/api/v4", gitlab.server.addr),
        &repo("https://gitlab.example.com/platform/fleet.git"),
        "glpat-t0ken".into(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let reset = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        + 2;
    gitlab.fail_next(
        "GET",
        429,
        r#"{"message": "Retry later"}"#,
        &[
            ("RateLimit-Remaining", "0"),
            ("RateLimit-Reset", &reset.to_string()),
        ],
    );
    let (outcome, _) = forge::ensure(&client, &spec(), None, true)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcome.pull_request.number, 1);
    assert!(
        gap(&gitlab, 0) >= Duration::from_millis(950),
        "{:?}",
        gap(&gitlab, 0)
    );
}

#[tokio::test]
async fn pull_requests_from_forks_are_never_taken_for_hoists() {
    let fork = |number| crate::support::forge::FakePull {
        number,
        head: "hoist/fleet".into(),
        base: "main".into(),
        title: "a fork's change on a branch of the same name".into(),
        open: true,
        fork: true,
        ..Default::default()
    };
    let gitea = FakeForge::gitea("acme", "fleet", "gitea-t0ken", 0);
    gitea.seed(fork(1));
    let client = Gitea::new(
        &format!("http://{}/api/v1", gitea.server.addr),
        &repo("https://gitea.example.com/acme/fleet"),
        "gitea-t0ken".into(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let (outcome, _) = forge::ensure(&client, &spec(), None, true)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcome.pull_request.number, 2);
    let gitlab = FakeForge::gitlab("platform/fleet", "glpat-t0ken");
    gitlab.seed(fork(1));
    let client = GitLab::new(
        &format!("http://{}/api/v4", gitlab.server.addr),
        &repo("https://gitlab.example.com/platform/fleet.git"),
        "glpat-t0ken".into(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let (outcome, _) = forge::ensure(&client, &spec(), None, true)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcome.pull_request.number, 2);
    for fake in [&gitea, &gitlab] {
        let pulls = fake.pulls();
        assert_eq!(
            pulls[0].title,
            "a fork's change on a branch of the same name"
        );
        assert!(pulls[0].open);
    }
}

#[tokio::test]
async fn a_record_from_another_repository_is_not_trusted() {
    let fake = FakeForge::github("acme", "fleet", "ghp_t0ken", "");
    let forge = github(&fake, "fleet", "ghp_t0ken");
    let (_, mut record) = forge::ensure(&forge, &spec(), None, true)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // The same number, remembered from before spec.git.url changed.
    record.forge = "github https://api.github.com/repos/acme/old".into();
    let before = fake.calls().len();
    let changed = PullRequestSpec {
        title: "Update team/app: 1.0.0 → 1.2.0".into(),
        ..spec()
    };
    forge::ensure(&forge, &changed, Some(&record), false)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let calls = fake.calls().split_off(before);
    assert_eq!(
        calls,
        [
            "GET /repos/acme/fleet/pulls",
            "PATCH /repos/acme/fleet/pulls/1"
        ],
        "listed, not read by the remembered number"
    );
}

fn many_changes(n: usize) -> hoist::model::ChangeSet {
    hoist::model::ChangeSet {
        changes: (0..n)
            .map(|i| hoist::model::Change {
                file: format!("clusters/prod/service-{i}/deployment.yaml").into(),
                line: 12,
                object: hoist::model::ObjectRef {
                    kind: Some("Deployment".into()),
                    namespace: Some("prod".into()),
                    name: Some(format!("service-{i}")),
                    api_version: None,
                },
                marker: "apps:service".into(),
                policy: "apps/service".into(),
                image: format!("ghcr.io/acme/service-{i}"),
                old: format!("ghcr.io/acme/service-{i}:1.2.3"),
                new: format!("ghcr.io/acme/service-{i}:1.3.0"),
            })
            .collect(),
    }
}

#[tokio::test]
async fn a_pull_request_body_over_thousands_of_changes_is_shortened_to_the_forges_limit() {
    let fake = FakeForge::github("acme", "fleet", "ghp_t0ken", "");
    let client = github(&fake, "fleet", "ghp_t0ken");
    for n in [600, 3000] {
        let body =
            hoist::message::pull_request_body("apps/fleet", &many_changes(n), client.body_limit());
        let spec = PullRequestSpec { body, ..spec() };
        forge::ensure(&client, &spec, None, true)
            .await
            .unwrap_or_else(|e| panic!("{n} changes: {e}"));
        let pulls = fake.pulls();
        let Some(pull) = pulls.last() else {
            panic!("nothing opened");
        };
        assert!(
            pull.body.chars().count() <= 65_536,
            "{n} changes: {}",
            pull.body.len()
        );
        let rows = pull
            .body
            .lines()
            .filter(|l| l.starts_with("| ghcr.io"))
            .count();
        assert!(
            pull.body.contains(&format!("\n… and {} more\n", n - rows)),
            "{n} changes, {rows} rows"
        );
        // The next round opens a fresh one.
        fake.edit(pull.number, |p| p.open = false);
    }
    // GitLab takes a megabyte: a few thousand rows fit whole.
    let gitlab = FakeForge::gitlab("platform/fleet", "glpat-t0ken");
    let client = GitLab::new(
        &format!("http://{}/api/v4", gitlab.server.addr),
        &repo("https://gitlab.example.com/platform/fleet.git"),
        "glpat-t0ken".into(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let body =
        hoist::message::pull_request_body("apps/fleet", &many_changes(3000), client.body_limit());
    assert!(
        !body.contains("more\n") && body.len() > 65_536,
        "{}",
        body.len()
    );
}

#[tokio::test]
async fn what_a_forge_sends_back_is_scrubbed_of_the_token_and_escaped() {
    let fake = FakeForge::github("acme", "fleet", "ghp_t0ken", "");
    let client = github(&fake, "fleet", "ghp_t0ken");
    // A forge that echoes the request it refused, and one that writes
    // escapes and a line of its own into its message.
    fake.fail_next(
        "POST",
        422,
        r#"{"message": "Validation Failed", "errors": [{"message": "bad request with Authorization: {authorization}"}]}"#,
        &[],
    );
    let error = ensure_error(&client).await;
    assert!(!error.contains("t0ken"), "{error}");
    assert!(error.contains("Authorization: Bearer ***"), "{error}");
    fake.fail_next(
        "POST",
        422,
        r#"{"message": "\u001b[31m\nerror: forged\r"}"#,
        &[],
    );
    let error = ensure_error(&client).await;
    assert!(
        error.contains(r"HTTP 422: \x1b[31m\nerror: forged\r;"),
        "{error:?}"
    );
    assert!(!error.contains(['\x1b', '\n', '\r']), "{error:?}");
    // GitLab's PRIVATE-TOKEN and Gitea's `token` header, echoed.
    let gitlab = FakeForge::gitlab("platform/fleet", "glpat-t0ken");
    let client = GitLab::new(
        &format!("http://{}/api/v4", gitlab.server.addr),
        &repo("https://gitlab.example.com/platform/fleet.git"),
        "glpat-t0ken".into(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    gitlab.fail_next(
        "GET",
        400,
        r#"{"error": "token {authorization} refused"}"#,
        &[],
    );
    let error = ensure_error(&client).await;
    assert!(
        error.contains("token *** refused") && !error.contains("t0ken"),
        "{error}"
    );
    let gitea = FakeForge::gitea("acme", "fleet", "gitea-t0ken", 0);
    let client = Gitea::new(
        &format!("http://{}/api/v1", gitea.server.addr),
        &repo("https://gitea.example.com/acme/fleet"),
        "gitea-t0ken".into(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    gitea.fail_next("GET", 403, r#"{"message": "{authorization} may not"}"#, &[]);
    let error = ensure_error(&client).await;
    assert!(
        error.contains("token *** may not") && !error.contains("t0ken"),
        "{error}"
    );
}

/// `hoist run --once -o json` against a real registry, a fleet served
/// over smart HTTP and a fake GitHub whose answer to the pull request
/// echoes the credentials and carries escapes: the token is nowhere in
/// what hoist prints, and the forge's text stays on one line.
#[tokio::test]
async fn a_forge_answer_echoing_the_token_never_reaches_the_report() {
    use crate::support::registry::{Auth, DockerRegistry};
    let Some(registry) = DockerRegistry::start(Auth::None) else {
        return;
    };
    registry.push_image("team/app", &["1.0.0", "1.1.0"]);
    let addr = registry.addr.clone();
    let manifest = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: app, namespace: prod}}\nspec:\n  template:\n    spec:\n      containers:\n        - name: app\n          image: {addr}/team/app:1.0.0 # {{\"$imagepolicy\": \"default:app\"}}\n"
    );
    let remote = crate::support::git::BareRepo::new(&[("clusters/prod/app.yaml", &manifest)]);
    let served = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir_all(served.path().join("acme")).unwrap_or_else(|e| panic!("{e}"));
    std::os::unix::fs::symlink(&remote.path, served.path().join("acme/fleet.git"))
        .unwrap_or_else(|e| panic!("{e}"));
    let http = crate::support::git::GitHttp::start(served.path(), "bot", "git-pass");
    let github = FakeForge::github("acme", "fleet", "ghp_t0ken", "/api/v3");
    github.fail_next(
        "POST",
        422,
        r#"{"message": "Validation Failed: \u001b[31m\nerror: forged", "errors": [{"message": "request had Authorization: {authorization}"}]}"#,
        &[],
    );
    let objects = format!(
        "apiVersion: hoist.dev/v1alpha1
kind: ImageRepository
metadata: {{name: app}}
spec: {{image: {addr}/team/app, insecure: true, interval: 1s}}
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
    secretRef: {{name: git}}
    url: http://{git}/acme/fleet.git
    checkout: {{ref: {{branch: main}}}}
    commit:
      author: {{name: hoist-bot, email: bot@example.com}}
    push:
      branch: hoist/fleet
      pullRequest: {{provider: github, apiURL: 'http://{api}/api/v3', secretRef: {{name: forge}}}}
  update: {{path: ./clusters/prod}}
---
apiVersion: v1
kind: Secret
metadata: {{name: git}}
stringData: {{username: bot, password: git-pass}}
---
apiVersion: v1
kind: Secret
metadata: {{name: forge}}
stringData: {{token: ghp_t0ken}}
",
        git = http.server.addr,
        api = github.server.addr,
    );
    let dir = crate::support::files(&[("objects.yaml", &objects)]);
    let docker = dir.path().join("docker");
    std::fs::create_dir_all(&docker).unwrap_or_else(|e| panic!("{e}"));
    let docker = docker.to_string_lossy().into_owned();
    let run = crate::support::hoist_env(
        dir.path(),
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
        &[("DOCKER_CONFIG", &docker)],
    );
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let report: serde_json::Value =
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout));
    let error = report[0]["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{report}"));
    assert!(
        error.contains(r"HTTP 422: Validation Failed: \x1b[31m\nerror: forged: request had Authorization: Bearer ***"),
        "{error}"
    );
    for out in [&run.stdout, &run.stderr] {
        assert!(!out.contains("t0ken"), "{out}");
    }
    assert!(
        !run.stderr.lines().any(|l| l.starts_with("error: forged")),
        "{}",
        run.stderr
    );
}

/// A server posing as a forge that sends without end, or declares more
/// than hoist reads, is refused once the limit is reached: the answer is
/// never buffered whole.
#[tokio::test]
async fn an_endless_or_oversized_forge_answer_is_refused_not_buffered() {
    use crate::support::http::{FakeServer, Reply};
    const MIB: usize = 1024 * 1024;
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = std::sync::Arc::clone(&sent);
    let server = FakeServer::start(move |_, index| {
        if index == 0 {
            // Chunked, no length: 1 MiB at a time, for up to 256 MiB.
            let (chunks, receiver) = std::sync::mpsc::sync_channel(1);
            let counted = std::sync::Arc::clone(&counted);
            std::thread::spawn(move || {
                for _ in 0..256 {
                    if chunks.send(vec![b' '; MIB]).is_err() {
                        break;
                    }
                    counted.fetch_add(MIB, std::sync::atomic::Ordering::SeqCst);
                }
            });
            Reply::Stream {
                status: 200,
                headers: Vec::new(),
                chunks: receiver,
            }
        } else {
            // A declared length over the limit: refused before reading.
            Reply::json(200, &" ".repeat(17 * MIB))
        }
    });
    let client = GitHub::new(
        &format!("http://{}", server.addr),
        &repo("https://github.com/acme/fleet.git"),
        "ghp_t0ken".into(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    for _ in 0..2 {
        let error = client
            .get(1)
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(
            error, "GET /repos/acme/fleet/pulls/1: the answer is larger than 16 MiB",
            "{error}"
        );
    }
    // The endless answer stopped soon after the limit, not at its end.
    let streamed = sent.load(std::sync::atomic::Ordering::SeqCst);
    assert!(streamed < 64 * MIB, "{} MiB sent", streamed / MIB);
}
