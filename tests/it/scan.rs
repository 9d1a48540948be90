//! `hoist scan` against a real registry (Debian's docker-registry) and
//! against in-process fakes for what a real one will not do on demand:
//! opaque pagination cursors, 429, 500, hangs, broken answers.

use std::path::Path;
use std::sync::Arc;

use crate::support::http::{FakeServer, Reply, Request};
use crate::support::registry::{
    Auth, DOCKER_LIST, DOCKER_MANIFEST, DockerRegistry, OCI_INDEX, OCI_MANIFEST, basic, sha256,
};
use crate::support::{Run, files, hoist_env};

fn repository(image: &str, extra: &str) -> String {
    format!(
        "apiVersion: hoist.dev/v1alpha1\nkind: ImageRepository\nmetadata: {{name: app}}\nspec:\n  image: {image}\n  insecure: true\n  interval: 1h\n{extra}"
    )
}

fn policy(name: &str, range: &str, reflect: &str) -> String {
    format!(
        "---\napiVersion: hoist.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {{name: {name}}}\nspec:\n  imageRepositoryRef: {{name: app}}\n  policy: {{semver: {{range: '{range}'}}}}\n  digestReflectionPolicy: {reflect}\n"
    )
}

fn scan(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Run {
    let mut args = vec![
        "scan",
        "-f",
        "objects.yaml",
        "--state-dir",
        "state",
        "-o",
        "json",
    ];
    args.extend_from_slice(extra);
    // An empty DOCKER_CONFIG directory: no credentials unless a test adds them.
    let docker = dir.join("docker");
    let _ = std::fs::create_dir_all(&docker);
    let docker = docker.to_string_lossy().into_owned();
    let mut all = vec![("DOCKER_CONFIG", docker.as_str())];
    all.extend_from_slice(env);
    hoist_env(dir, &args, &all)
}

fn json(run: &Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("{e}\nstdout: {}\nstderr: {}", run.stdout, run.stderr))
}

#[test]
fn scans_a_real_registry_and_reflects_the_digest() {
    let Some(registry) = DockerRegistry::start(Auth::None) else {
        return;
    };
    let digest = registry.push_image("team/app", &["1.0.0", "1.2.0", "2.0.0", "latest"]);
    registry.push_image("team/app", &["sha256-1234.sig"]);
    let image = format!("{}/team/app", registry.addr);
    let dir = files(&[(
        "objects.yaml",
        &(repository(&image, "") + &policy("app", "^1", "IfNotPresent")),
    )]);
    let run = scan(dir.path(), &[], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        json(&run),
        serde_json::json!([{"policy": "default/app", "repository": "default/app", "image": image,
                            "tag": "1.2.0", "digest": digest, "tags": 4}])
    );
    let text = hoist_env(
        dir.path(),
        &["scan", "-f", "objects.yaml", "--state-dir", "state"],
        &[("DOCKER_CONFIG", "docker")],
    );
    assert_eq!(text.code, 0, "{}", text.stderr);
    let lines: Vec<&str> = text.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", text.stdout);
    assert!(
        lines[0].starts_with("POLICY") && lines[0].ends_with("TAGS"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("1.2.0") && lines[1].contains(&digest),
        "{}",
        lines[1]
    );
}

#[test]
fn lists_two_thousand_tags() {
    let Some(registry) = DockerRegistry::start(Auth::None) else {
        return;
    };
    let tags: Vec<String> = (0..2000)
        .map(|i| format!("1.{}.{}", i / 100, i % 100))
        .collect();
    let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
    registry.push_image("big/app", &tags);
    let dir = files(&[(
        "objects.yaml",
        &(repository(&format!("{}/big/app", registry.addr), "") + &policy("app", ">=1", "Never")),
    )]);
    let run = scan(dir.path(), &[], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let rows = json(&run);
    assert_eq!(rows[0]["tags"], 2000);
    assert_eq!(rows[0]["tag"], "1.19.99");
    assert_eq!(rows[0]["digest"], serde_json::Value::Null);
}

#[test]
fn basic_auth_from_docker_config() {
    let Some(registry) = DockerRegistry::start(Auth::Basic {
        username: "alice".into(),
        password: "hunter2-secret".into(),
    }) else {
        return;
    };
    registry.push_image("team/app", &["1.0.0", "1.1.0"]);
    let image = format!("{}/team/app", registry.addr);
    let dir = files(&[(
        "objects.yaml",
        &(repository(&image, "") + &policy("app", "^1", "Always") + "  interval: 1m\n"),
    )]);
    // Without credentials: a clear 401 that says where credentials go.
    let denied = scan(dir.path(), &[], &[]);
    assert_eq!(denied.code, 1, "{}", denied.stderr);
    assert!(
        denied.stderr.contains("GET /v2/team/app/tags/list"),
        "{}",
        denied.stderr
    );
    assert!(denied.stderr.contains("config.json"), "{}", denied.stderr);
    // With a config.json entry (the `auth` form docker login writes).
    let auth = basic("alice", "hunter2-secret");
    let auth = auth.trim_start_matches("Basic ");
    std::fs::create_dir_all(dir.path().join("docker")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        dir.path().join("docker/config.json"),
        format!(
            r#"{{"auths": {{"http://{}": {{"auth": "{auth}"}}}}}}"#,
            registry.addr
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let run = scan(dir.path(), &[], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(json(&run)[0]["tag"], "1.1.0");
    assert!(
        json(&run)[0]["digest"]
            .as_str()
            .is_some_and(|d| d.starts_with("sha256:"))
    );
    assert!(!denied.stderr.contains("hunter2") && !run.stderr.contains("hunter2"));
}

#[test]
fn digests_of_oci_and_docker_manifests_and_indexes() {
    let Some(registry) = DockerRegistry::start(Auth::None) else {
        return;
    };
    let repo = "multi/app";
    let oci = registry.image_manifest(repo, OCI_MANIFEST, "oci");
    let oci_digest = registry.push_manifest(repo, OCI_MANIFEST, &oci, &["1.0.0"]);
    let index = DockerRegistry::index_manifest(OCI_INDEX, OCI_MANIFEST, &oci);
    let index_digest = registry.push_manifest(repo, OCI_INDEX, &index, &["2.0.0"]);
    let docker = registry.image_manifest(repo, DOCKER_MANIFEST, "docker");
    registry.push_manifest(repo, DOCKER_MANIFEST, &docker, &["docker-child"]);
    let list = DockerRegistry::index_manifest(DOCKER_LIST, DOCKER_MANIFEST, &docker);
    let list_digest = registry.push_manifest(repo, DOCKER_LIST, &list, &["3.0.0"]);
    let objects = repository(&format!("{}/{repo}", registry.addr), "")
        + &policy("oci", "1.0.0", "IfNotPresent")
        + &policy("index", "2.0.0", "IfNotPresent")
        + &policy("list", "3.0.0", "IfNotPresent");
    let dir = files(&[("objects.yaml", &objects)]);
    let run = scan(dir.path(), &[], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let rows = json(&run);
    let digest_of = |policy: &str| {
        rows.as_array()
            .and_then(|rows| rows.iter().find(|r| r["policy"] == policy))
            .map(|r| r["digest"].clone())
    };
    assert_eq!(
        digest_of("default/oci"),
        Some(serde_json::json!(oci_digest))
    );
    assert_eq!(
        digest_of("default/index"),
        Some(serde_json::json!(index_digest))
    );
    assert_eq!(
        digest_of("default/list"),
        Some(serde_json::json!(list_digest))
    );
    assert_eq!(sha256(&list), list_digest);
}

#[test]
fn store_serves_scans_within_the_interval() {
    let Some(registry) = DockerRegistry::start(Auth::None) else {
        return;
    };
    registry.push_image("team/app", &["1.0.0"]);
    let image = format!("{}/team/app", registry.addr);
    let dir = files(&[(
        "objects.yaml",
        &(repository(&image, "") + &policy("app", "*", "IfNotPresent")),
    )]);
    let first = scan(dir.path(), &[], &[]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    drop(registry);
    // The registry is gone: within the interval the store answers.
    let second = scan(dir.path(), &[], &[]);
    assert_eq!(
        (second.code, json(&second)),
        (0, json(&first)),
        "{}",
        second.stderr
    );
    // --refresh goes to the registry, which is not there.
    let refreshed = scan(dir.path(), &["--refresh"], &[]);
    assert_eq!(refreshed.code, 1);
    assert!(
        refreshed.stderr.contains(&format!(
            "ImageRepository default/app: {image}: GET /v2/team/app/tags/list"
        )),
        "{}",
        refreshed.stderr
    );
    assert!(
        refreshed.stderr.contains("cannot connect"),
        "{}",
        refreshed.stderr
    );
}

/// A plain-HTTP registry on loopback needs no `insecure`, as under Flux:
/// HTTPS is tried first, gets no answer, and plain HTTP is used.
#[test]
fn a_plain_http_registry_on_loopback_needs_no_insecure() {
    let Some(registry) = DockerRegistry::start(Auth::None) else {
        return;
    };
    registry.push_image("team/app", &["1.0.0", "1.2.0"]);
    let objects = repository(&format!("{}/team/app", registry.addr), "")
        .replace("  insecure: true\n", "")
        + &policy("app", "*", "Never");
    let dir = files(&[("objects.yaml", &objects)]);
    let run = scan(dir.path(), &[], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("1.2.0"), "{}", run.stdout);
}

// ---- fakes ----

fn fake_objects(server: &FakeServer, extra: &str) -> tempfile::TempDir {
    let image = format!("{}/team/app", server.addr);
    files(&[(
        "objects.yaml",
        &(repository(&image, extra) + &policy("app", "*", "Never")),
    )])
}

fn tags_page(tags: &[&str]) -> String {
    serde_json::json!({"name": "team/app", "tags": tags}).to_string()
}

#[test]
fn follows_opaque_link_cursors_exactly() {
    let server = FakeServer::start(|request: &Request, _| {
        let addr = request.header("host").unwrap_or("").to_string();
        match request.target.as_str() {
            "/v2/team/app/tags/list?n=1000" => Reply::json(200, &tags_page(&["1.0.0", "1.1.0"]))
                .with_header(
                    "Link",
                    r#"</v2/team/app/tags/list?cursor=b3BhcXVl%3D%3D&n=1000>; rel="next""#,
                ),
            "/v2/team/app/tags/list?cursor=b3BhcXVl%3D%3D&n=1000" => {
                Reply::json(200, &tags_page(&["2.0.0"])).with_header(
                    "Link",
                    &format!(r#"<http://{addr}/v2/team/app/tags/list?page=3>; rel="next""#),
                )
            }
            "/v2/team/app/tags/list?page=3" => Reply::json(200, &tags_page(&["1.5.0"])),
            _ => Reply::json(
                404,
                r#"{"errors":[{"code":"NAME_UNKNOWN","message":"unknown"}]}"#,
            ),
        }
    });
    let dir = fake_objects(&server, "");
    let run = scan(dir.path(), &[], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(json(&run)[0]["tags"], 4);
    assert_eq!(json(&run)[0]["tag"], "2.0.0");
    let targets: Vec<String> = server.requests().iter().map(|r| r.target.clone()).collect();
    assert_eq!(
        targets,
        [
            "/v2/team/app/tags/list?n=1000",
            "/v2/team/app/tags/list?cursor=b3BhcXVl%3D%3D&n=1000",
            "/v2/team/app/tags/list?page=3"
        ]
    );
}

#[test]
fn waits_out_429_and_retries_500() {
    let server = FakeServer::start(|_, index| match index {
        0 => Reply::json(
            429,
            r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#,
        )
        .with_header("Retry-After", "1"),
        1 => Reply::json(500, "oops"),
        _ => Reply::json(200, &tags_page(&["1.0.0"])),
    });
    let dir = fake_objects(&server, "");
    let run = scan(dir.path(), &[], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(json(&run)[0]["tag"], "1.0.0");
    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    // Retry-After: 1 is honoured before the next request to that host.
    assert!(requests[1].at.duration_since(requests[0].at).as_millis() >= 900);
}

#[test]
fn a_hung_registry_times_out() {
    let server = FakeServer::start(|_, _| Reply::Hang);
    let dir = fake_objects(&server, "  timeout: 1s\n");
    let run = scan(dir.path(), &[], &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("timed out"), "{}", run.stderr);
    assert!(run.stderr.contains("spec.timeout"), "{}", run.stderr);
}

#[test]
fn odd_answers_give_clear_results() {
    // `tags: null` is an empty list: no tag, no failure of the registry's
    // (exit 1 for nothing matched).
    let server =
        FakeServer::start(|_, _| Reply::json(200, r#"{"name": "team/app", "tags": null}"#));
    let run = scan(fake_objects(&server, "").path(), &[], &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("no tag of 0 fits the policy"),
        "{}",
        run.stderr
    );
    assert_eq!(
        (json(&run)[0]["tags"].clone(), json(&run)[0]["tag"].clone()),
        (serde_json::json!(0), serde_json::Value::Null)
    );

    let cases: [(Reply, &str); 4] = [
        (
            Reply::json(200, "{\"tags\": [1, 2"),
            "the tag list is not the expected JSON",
        ),
        (
            Reply::json(401, "{}").with_header("WWW-Authenticate", "Bearer service=\"x\""),
            "challenge cannot be answered",
        ),
        (
            Reply::json(
                404,
                r#"{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry"}]}"#,
            ),
            "GET /v2/team/app/tags/list: HTTP 404 Not Found (NAME_UNKNOWN: repository name not known to registry)",
        ),
        (
            Reply::json(
                403,
                r#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}"#,
            ),
            "(DENIED: requested access",
        ),
    ];
    for (reply, expected) in cases {
        let reply = std::sync::Mutex::new(Some(reply));
        let server = FakeServer::start(move |_, _| {
            reply
                .lock()
                .ok()
                .and_then(|mut r| r.take())
                .unwrap_or(Reply::json(500, ""))
        });
        let run = scan(fake_objects(&server, "").path(), &[], &[]);
        assert_eq!(run.code, 1, "{expected}: {}", run.stderr);
        assert!(
            run.stderr.contains(expected),
            "expected {expected:?} in:\n{}",
            run.stderr
        );
    }
}

#[test]
fn bearer_token_flow_with_credentials() {
    let server = FakeServer::start(|request: &Request, _| {
        let addr = request.header("host").unwrap_or("").to_string();
        let authorized = request.header("authorization") == Some("Bearer t0ken");
        match request.path() {
            "/token" => Reply::json(200, r#"{"access_token": "t0ken", "expires_in": 300}"#),
            "/v2/team/app/tags/list" if authorized => Reply::json(200, &tags_page(&["1.0.0", "1.3.0"])),
            "/v2/team/app/manifests/1.3.0" if authorized => Reply::json(200, "{}")
                .with_header("Docker-Content-Digest", "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"),
            _ => Reply::json(401, r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#).with_header(
                "WWW-Authenticate",
                &format!(r#"Bearer realm="http://{addr}/token",service="fake-registry",scope="repository:team/app:pull""#),
            ),
        }
    });
    let image = format!("{}/team/app", server.addr);
    let dir = files(&[(
        "objects.yaml",
        &(repository(&image, "") + &policy("app", "*", "IfNotPresent")),
    )]);
    std::fs::create_dir_all(dir.path().join("docker")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        dir.path().join("docker/config.json"),
        format!(
            r#"{{"auths": {{"{}": {{"username": "bob", "password": "pa55word"}}}}}}"#,
            server.addr
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let run = scan(dir.path(), &[], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        json(&run)[0]["digest"],
        "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    );
    let requests = server.requests();
    let token_requests: Vec<&Request> = requests.iter().filter(|r| r.path() == "/token").collect();
    // One challenge, one token, reused for the digest: no second 401.
    assert_eq!(token_requests.len(), 1, "{requests:#?}");
    assert_eq!(
        requests.len(),
        4,
        "{:?}",
        requests.iter().map(|r| &r.target).collect::<Vec<_>>()
    );
    let digest_request = requests.last().map(|r| (r.method.as_str(), r.path()));
    assert_eq!(
        digest_request,
        Some(("HEAD", "/v2/team/app/manifests/1.3.0"))
    );
    let token = token_requests[0];
    assert_eq!(
        token.header("authorization"),
        Some(basic("bob", "pa55word").as_str())
    );
    assert!(
        token.target.contains("service=fake-registry")
            && token
                .target
                .contains("scope=repository%3Ateam%2Fapp%3Apull"),
        "{}",
        token.target
    );
}

#[test]
fn a_second_scan_within_the_interval_makes_no_request() {
    let server = FakeServer::start(|_, _| Reply::json(200, &tags_page(&["1.0.0"])));
    let dir = fake_objects(&server, "");
    assert_eq!(scan(dir.path(), &[], &[]).code, 0);
    assert_eq!(server.requests().len(), 1);
    assert_eq!(scan(dir.path(), &[], &[]).code, 0);
    assert_eq!(server.requests().len(), 1);
    assert_eq!(scan(dir.path(), &["--refresh"], &[]).code, 0);
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn token_auth_against_a_real_registry() {
    let issuer = crate::support::token::TokenIssuer::start("carol", "t0ken-pass");
    let Some(registry) = DockerRegistry::start(Auth::Token {
        realm: issuer.realm(),
        certificate: issuer.certificate.clone(),
        signer: std::sync::Arc::clone(&issuer.signer),
    }) else {
        return;
    };
    let digest = registry.push_image("team/app", &["0.9.0", "1.0.0", "1.4.2"]);
    let image = format!("{}/team/app", registry.addr);
    let dir = files(&[(
        "objects.yaml",
        &(repository(&image, "") + &policy("app", "^1", "IfNotPresent")),
    )]);
    // Without credentials the issuer refuses, and the error says where.
    let refused = scan(dir.path(), &[], &[]);
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("GET /token: HTTP 401"),
        "{}",
        refused.stderr
    );
    std::fs::create_dir_all(dir.path().join("docker")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        dir.path().join("docker/config.json"),
        format!(
            r#"{{"auths": {{"{}": {{"username": "carol", "password": "t0ken-pass"}}}}}}"#,
            registry.addr
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let run = scan(dir.path(), &[], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(json(&run)[0]["tag"], "1.4.2");
    assert_eq!(json(&run)[0]["digest"], serde_json::json!(digest));
    let scopes: Vec<String> = issuer
        .server
        .requests()
        .iter()
        .filter(|r| r.header("authorization").is_some())
        .map(|r| r.target.clone())
        .collect();
    assert!(
        !scopes.is_empty()
            && scopes
                .iter()
                .all(|t| t.contains("scope=repository%3Ateam%2Fapp%3Apull")),
        "{scopes:?}"
    );
    assert!(!run.stderr.contains("t0ken-pass") && !refused.stderr.contains("t0ken-pass"));
}

/// A Secret document in the files, as `kubectl create secret` writes it.
fn secret(name: &str, type_: &str, entries: &[(&str, String)]) -> String {
    let mut text = format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: {name}}}\ntype: {type_}\nstringData:\n"
    );
    for (key, value) in entries {
        text.push_str(&format!("  {key}: |\n"));
        for line in value.lines() {
            text.push_str(&format!("    {line}\n"));
        }
    }
    text
}

#[test]
fn tls_with_extra_ca_and_client_certificate_from_cert_secret_ref() {
    let Some(registry) = DockerRegistry::start(Auth::None) else {
        return;
    };
    registry.push_image("team/app", &["1.0.0", "1.1.0"]);
    let tls = crate::support::registry::TlsFiles::generate();
    let mirror = registry.tls_mirror(&tls);
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{e}"));
    let https = |extra: &str| {
        repository(&format!("{}/team/app", mirror.addr), extra).replace("  insecure: true\n", "")
            + &policy("app", "*", "Never")
    };
    // The system roots do not know the test CA.
    let dir = files(&[("objects.yaml", &https(""))]);
    let run = scan(dir.path(), &[], &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("GET /v2/team/app/tags/list: cannot connect"),
        "{}",
        run.stderr
    );
    // The CA alone: the registry still wants a client certificate.
    let ca_only = https("  certSecretRef: {name: registry-tls}\n")
        + &secret("registry-tls", "Opaque", &[("ca.crt", read(&tls.ca))]);
    let dir = files(&[("objects.yaml", &ca_only)]);
    let run = scan(dir.path(), &[], &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    // CA and client certificate: the scan works.
    let full = https("  certSecretRef: {name: registry-tls}\n")
        + &secret(
            "registry-tls",
            "kubernetes.io/tls",
            &[
                ("ca.crt", read(&tls.ca)),
                ("tls.crt", read(&tls.client_cert)),
                ("tls.key", read(&tls.client_key)),
            ],
        );
    let dir = files(&[("objects.yaml", &full)]);
    let run = scan(dir.path(), &[], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(json(&run)[0]["tag"], "1.1.0");
}

#[test]
fn secret_ref_names_a_dockerconfigjson_secret_in_the_files() {
    let Some(registry) = DockerRegistry::start(Auth::Basic {
        username: "dave".into(),
        password: "from-a-secret".into(),
    }) else {
        return;
    };
    registry.push_image("team/app", &["2.0.0"]);
    let config = format!(
        r#"{{"auths": {{"{}": {{"username": "dave", "password": "from-a-secret"}}}}}}"#,
        registry.addr
    );
    let objects = repository(
        &format!("{}/team/app", registry.addr),
        "  secretRef: {name: pull}\n",
    ) + &policy("app", "*", "Never")
        + &secret(
            "pull",
            "kubernetes.io/dockerconfigjson",
            &[(".dockerconfigjson", config)],
        );
    let dir = files(&[("objects.yaml", &objects)]);
    let run = scan(dir.path(), &[], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(json(&run)[0]["tag"], "2.0.0");
    // A secretRef whose Secret is not in the files falls back to config.json, and says so.
    let missing = repository(
        &format!("{}/team/app", registry.addr),
        "  secretRef: {name: elsewhere}\n",
    ) + &policy("app", "*", "Never");
    let dir = files(&[("objects.yaml", &missing)]);
    let run = scan(dir.path(), &[], &[]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("Secret default/elsewhere is not in the files; using config.json"),
        "{}",
        run.stderr
    );
}

#[test]
fn one_failing_repository_does_not_stop_the_others() {
    let good = FakeServer::start(|_, _| Reply::json(200, &tags_page(&["3.1.0"])));
    let bad = FakeServer::start(|_, _| {
        Reply::json(
            404,
            r#"{"errors":[{"code":"NAME_UNKNOWN","message":"no such repository"}]}"#,
        )
    });
    let objects = repository(&format!("{}/team/app", good.addr), "")
        + &policy("app", "*", "Never")
        + &repository(&format!("{}/team/gone", bad.addr), "")
            .replace("name: app}", "name: gone}")
            .replacen("apiVersion", "---\napiVersion", 1)
        + &policy("gone", "*", "Never").replace("{name: app}", "{name: gone}");
    let dir = files(&[("objects.yaml", &objects)]);
    let run = scan(dir.path(), &[], &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let rows = json(&run);
    assert_eq!(rows.as_array().map(Vec::len), Some(2), "{rows}");
    assert_eq!(rows[0]["policy"], "default/app");
    assert_eq!(rows[0]["tag"], "3.1.0");
    assert!(rows[0].get("error").is_none(), "{rows}");
    // The policy of the failed repository is there, with no tag and why.
    assert_eq!(rows[1]["policy"], "default/gone");
    assert!(rows[1]["tag"].is_null(), "{rows}");
    assert_eq!(rows[1]["error"]["kind"], "registry_not_found", "{rows}");
    assert_eq!(rows[1]["error"]["class"], "retry", "{rows}");
    let message = rows[1]["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{rows}"));
    assert!(
        message.starts_with("ImageRepository default/gone: ") && message.contains("NAME_UNKNOWN"),
        "{message}"
    );
    // Printed once, on stderr.
    assert_eq!(
        run.stderr.matches("NAME_UNKNOWN").count(),
        1,
        "{}",
        run.stderr
    );
}

#[test]
fn a_policy_that_selects_no_tag_is_exit_1_and_says_so() {
    let registry = FakeServer::start(|_, _| Reply::json(200, &tags_page(&["3.1.0", "3.2.0"])));
    let objects =
        repository(&format!("{}/team/app", registry.addr), "") + &policy("app", "^1", "Never");
    let dir = files(&[("objects.yaml", &objects)]);
    let run = scan(dir.path(), &[], &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let rows = json(&run);
    assert!(rows[0]["tag"].is_null(), "{rows}");
    assert!(rows[0].get("error").is_none(), "{rows}");
    assert_eq!(
        run.stderr.trim(),
        "error: ImagePolicy default/app: no tag of 2 fits the policy",
        "{}",
        run.stderr
    );
}

#[test]
fn digest_falls_back_to_hashing_the_manifest() {
    const MANIFEST: &str =
        r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#;
    let server =
        FakeServer::start(
            |request: &Request, _| match (request.method.as_str(), request.path()) {
                ("GET", "/v2/team/app/tags/list") => Reply::json(200, &tags_page(&["1.0.0"])),
                // A registry (or proxy) that drops Docker-Content-Digest.
                ("HEAD", "/v2/team/app/manifests/1.0.0") => Reply::json(200, ""),
                ("GET", "/v2/team/app/manifests/1.0.0") => Reply::json(200, MANIFEST),
                _ => Reply::json(404, "{}"),
            },
        );
    let image = format!("{}/team/app", server.addr);
    let dir = files(&[(
        "objects.yaml",
        &(repository(&image, "") + &policy("app", "*", "IfNotPresent")),
    )]);
    let run = scan(dir.path(), &[], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        json(&run)[0]["digest"],
        serde_json::json!(sha256(MANIFEST.as_bytes()))
    );
    let accept = server
        .requests()
        .iter()
        .find(|r| r.method == "HEAD")
        .and_then(|r| r.header("accept").map(str::to_string))
        .unwrap_or_default();
    for media_type in [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST] {
        assert!(accept.contains(media_type), "{accept}");
    }
}

/// A registry that wants Basic credentials `user:pass`.
fn basic_only(user: &'static str, pass: &'static str) -> FakeServer {
    FakeServer::start(move |request: &Request, _| {
        if request.header("authorization") == Some(basic(user, pass).as_str()) {
            Reply::json(200, &tags_page(&["1.2.3"]))
        } else {
            Reply::json(
                401,
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
            )
            .with_header("WWW-Authenticate", r#"Basic realm="fake""#)
        }
    })
}

#[test]
fn credentials_from_a_credential_helper() {
    let server = basic_only("helper-user", "helper-secret");
    let dir = fake_objects(&server, "");
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap_or_else(|e| panic!("{e}"));
    let helper = bin.join("docker-credential-hoisttest");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 2\nread server\n[ \"$server\" = {} ] || {{ echo 'credentials not found in native keychain'; exit 1; }}\necho '{{\"ServerURL\":\"'$server'\",\"Username\":\"helper-user\",\"Secret\":\"helper-secret\"}}'\n",
            server.addr
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir_all(dir.path().join("docker")).unwrap_or_else(|e| panic!("{e}"));
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for config in [
        r#"{"credsStore": "hoisttest"}"#.to_string(),
        format!(r#"{{"credHelpers": {{"{}": "hoisttest"}}}}"#, server.addr),
    ] {
        std::fs::write(dir.path().join("docker/config.json"), &config)
            .unwrap_or_else(|e| panic!("{e}"));
        let run = scan(dir.path(), &["--refresh"], &[("PATH", &path)]);
        assert_eq!(run.code, 0, "{config}: {}", run.stderr);
        assert_eq!(json(&run)[0]["tag"], "1.2.3");
        assert!(!run.stderr.contains("helper-secret"));
    }
    // A helper that cannot be run is named in the error.
    std::fs::write(
        dir.path().join("docker/config.json"),
        r#"{"credsStore": "nowhere-to-be-found"}"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let run = scan(dir.path(), &["--refresh"], &[("PATH", &path)]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("docker-credential-nowhere-to-be-found"),
        "{}",
        run.stderr
    );
}

#[test]
fn identity_tokens_use_the_refresh_grant() {
    let server = FakeServer::start(|request: &Request, _| {
        let addr = request.header("host").unwrap_or("").to_string();
        let body = String::from_utf8_lossy(&request.body).into_owned();
        match (request.method.as_str(), request.path()) {
            ("POST", "/oauth2/token")
                if body.contains("grant_type=refresh_token")
                    && body.contains("refresh_token=idt-123") =>
            {
                Reply::json(200, r#"{"access_token": "from-refresh", "expires_in": 60}"#)
            }
            (_, "/v2/team/app/tags/list")
                if request.header("authorization") == Some("Bearer from-refresh") =>
            {
                Reply::json(200, &tags_page(&["0.1.0"]))
            }
            (_, "/v2/team/app/tags/list") => Reply::json(401, "{}").with_header(
                "WWW-Authenticate",
                &format!(r#"Bearer realm="http://{addr}/oauth2/token",service="fake""#),
            ),
            _ => Reply::json(400, "{}"),
        }
    });
    let dir = fake_objects(&server, "");
    std::fs::create_dir_all(dir.path().join("docker")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        dir.path().join("docker/config.json"),
        format!(
            r#"{{"auths": {{"{}": {{"identitytoken": "idt-123"}}}}}}"#,
            server.addr
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let run = scan(dir.path(), &[], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(json(&run)[0]["tag"], "0.1.0");
    let token = server
        .requests()
        .into_iter()
        .find(|r| r.path() == "/oauth2/token");
    let body = token
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .unwrap_or_default();
    assert!(
        body.contains("scope=repository%3Ateam%2Fapp%3Apull") && body.contains("service=fake"),
        "{body}"
    );
}

#[test]
fn at_most_eight_requests_in_flight_per_registry_host() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (in_flight, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (now, max) = (Arc::clone(&in_flight), Arc::clone(&peak));
    let server = FakeServer::start(move |_, _| {
        let current = now.fetch_add(1, Ordering::SeqCst) + 1;
        max.fetch_max(current, Ordering::SeqCst);
        std::thread::sleep(std::time::Duration::from_millis(150));
        now.fetch_sub(1, Ordering::SeqCst);
        Reply::json(200, &tags_page(&["1.0.0"]))
    });
    let mut objects = String::new();
    for i in 0..20 {
        objects.push_str(&format!(
            "---\napiVersion: hoist.dev/v1alpha1\nkind: ImageRepository\nmetadata: {{name: app{i}}}\nspec: {{image: {}/team/app{i}, insecure: true}}\n",
            server.addr
        ));
    }
    let dir = files(&[("objects.yaml", &objects)]);
    let run = scan(dir.path(), &["--concurrency", "20"], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(server.requests().len(), 20);
    let peak = peak.load(Ordering::SeqCst);
    assert!((2..=8).contains(&peak), "peak in flight {peak}");
}

#[test]
fn a_killed_scan_leaves_a_readable_store_and_a_running_one_holds_it() {
    let good = FakeServer::start(|_, _| Reply::json(200, &tags_page(&["1.0.0", "1.1.0"])));
    let hung = FakeServer::start(|_, _| Reply::Hang);
    let dir = fake_objects(&good, "");
    assert_eq!(scan(dir.path(), &[], &[]).code, 0);
    std::fs::write(
        dir.path().join("hung.yaml"),
        repository(&format!("{}/team/app", hung.addr), "  timeout: 60s\n"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hoist"))
        .args([
            "scan",
            "-f",
            "hung.yaml",
            "--state-dir",
            "state",
            "--refresh",
        ])
        .current_dir(dir.path())
        .env("DOCKER_CONFIG", dir.path().join("docker"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let waited = std::time::Instant::now();
    while hung.requests().is_empty() && waited.elapsed() < std::time::Duration::from_secs(20) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        !hung.requests().is_empty(),
        "the scan never reached the registry"
    );
    // While it runs, a second hoist on the same state waits, then says why.
    let blocked = scan(dir.path(), &[], &[]);
    assert_eq!(blocked.code, 1, "{}", blocked.stderr);
    assert!(
        blocked
            .stderr
            .contains("is in use by another hoist process"),
        "{}",
        blocked.stderr
    );
    // SIGKILL mid-scan: no chance to clean up.
    child.kill().unwrap_or_else(|e| panic!("{e}"));
    let _ = child.wait();
    let after = scan(dir.path(), &[], &[]);
    assert_eq!(after.code, 0, "{}", after.stderr);
    assert_eq!(json(&after)[0]["tag"], "1.1.0");
}

#[test]
fn a_link_to_another_host_is_not_followed() {
    let other = FakeServer::start(|_, _| Reply::json(200, &tags_page(&["9.9.9"])));
    let target = format!("http://{}/v2/team/app/tags/list?page=2", other.addr);
    let server = FakeServer::start(move |_, _| {
        Reply::json(200, &tags_page(&["1.0.0"]))
            .with_header("Link", &format!("<{target}>; rel=\"next\""))
    });
    let run = scan(fake_objects(&server, "").path(), &[], &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("points at another host or scheme"),
        "{}",
        run.stderr
    );
    assert!(
        other.requests().is_empty(),
        "credentials could have gone to another host"
    );
}

#[test]
fn registry_controlled_numbers_do_not_crash_hoist() {
    let server = FakeServer::start(|request: &Request, _| {
        let addr = request.header("host").unwrap_or("").to_string();
        match request.path() {
            "/token" => Reply::json(200, r#"{"token": "t", "expires_in": 18446744073709551615}"#),
            _ if request.header("authorization") == Some("Bearer t") => {
                Reply::json(429, "{}").with_header("Retry-After", "18446744073709551615")
            }
            _ => Reply::json(401, "{}").with_header(
                "WWW-Authenticate",
                &format!(r#"Bearer realm="http://{addr}/token""#),
            ),
        }
    });
    let run = scan(fake_objects(&server, "  timeout: 5s\n").path(), &[], &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("TOOMANYREQUESTS") || run.stderr.contains("HTTP 429"),
        "{}",
        run.stderr
    );
}

#[test]
fn listed_names_that_are_not_tags_are_dropped() {
    let server = FakeServer::start(|_, _| {
        Reply::json(
            200,
            &tags_page(&["1.0.0", "../../other/manifests/x", "a?b", "-x", "1.1.0"]),
        )
    });
    let run = scan(fake_objects(&server, "").path(), &[], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(json(&run)[0]["tags"], 2);
    assert_eq!(json(&run)[0]["tag"], "1.1.0");
}

#[test]
fn minimum_age_holds_a_new_tag_back_and_says_until_when() {
    let Some(registry) = DockerRegistry::start(Auth::None) else {
        return;
    };
    registry.push_image("team/app", &["1.0.0", "1.1.0"]);
    let image = format!("{}/team/app", registry.addr);
    let dir = files(&[(
        "objects.yaml",
        &(repository(&image, "") + &policy("app", "^1", "Never") + "  minimumAge: 24h\n"),
    )]);
    // Tags there at the first scan count as old: no freeze on install.
    let first = scan(dir.path(), &[], &[]);
    assert_eq!(json(&first)[0]["tag"], "1.1.0", "{}", first.stderr);
    // A release pushed now waits a day; the latest stays as it was.
    registry.push_image("team/app", &["1.2.0"]);
    let second = scan(dir.path(), &["--refresh"], &[]);
    let rows = json(&second);
    assert_eq!(rows[0]["tag"], "1.1.0", "{rows}");
    assert_eq!(rows[0]["waiting"]["tag"], "1.2.0", "{rows}");
    let eligible = rows[0]["waiting"]["eligibleAt"].as_u64().unwrap_or(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    assert!(
        eligible > now + 86_000 && eligible <= now + 86_400,
        "{eligible} vs {now}"
    );
    // The table says so too.
    let text = crate::support::hoist_env(
        dir.path(),
        &["scan", "-f", "objects.yaml", "--state-dir", "state"],
        &[(
            "DOCKER_CONFIG",
            &dir.path().join("docker").to_string_lossy(),
        )],
    );
    assert!(
        text.stdout
            .contains("default/app: 1.2.0 is waiting for minimumAge; eligible at "),
        "{}",
        text.stdout
    );
}

// ---- hostile registries ----

/// Page `page` of a listing: 1000 distinct tags, and a Link to the next
/// page until `last`. Without a cap on the total, a registry that never
/// stops (`last` unbounded) grows hoist without end; the tests stop at a
/// few pages past the cap so that the unfixed state is observable.
fn numbered_page(page: usize, last: usize) -> Reply {
    let tags: Vec<String> = (0..1000).map(|i| format!("{page}.{i}.0")).collect();
    let body = serde_json::json!({"name": "team/app", "tags": tags}).to_string();
    let reply = Reply::json(200, &body);
    if page < last {
        reply.with_header(
            "Link",
            &format!(r#"</v2/team/app/tags/list?page={}>; rel="next""#, page + 1),
        )
    } else {
        reply
    }
}

fn page_number(request: &Request) -> usize {
    request
        .target
        .split_once("page=")
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn endless_tag_pages_stop_at_the_tag_cap() {
    let server = FakeServer::start(|request: &Request, _| numbered_page(page_number(request), 59));
    let dir = fake_objects(&server, "");
    let run = scan(dir.path(), &[], &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("team/app")
            && run.stderr.contains("more than 50000 tags")
            && run.stderr.contains("spec.maxTags"),
        "{}",
        run.stderr
    );
    // It stopped at the page that crossed the cap.
    assert_eq!(server.requests().len(), 51);

    // A user with a genuinely large repository raises the cap.
    let dir = fake_objects(&server, "  maxTags: 100000\n");
    let run = scan(dir.path(), &[], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(json(&run)[0]["tags"], 60_000);

    // And a low cap holds too.
    let dir = fake_objects(&server, "  maxTags: 1500\n");
    let run = scan(dir.path(), &["--refresh"], &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("more than 1500 tags"), "{}", run.stderr);
}

#[test]
fn pages_of_dropped_names_stop_at_the_byte_budget() {
    // Pages that are nearly all whitespace keep no tag, so only the bytes
    // read bound them: 8 MiB each, 12 of them (96 MiB) before the end.
    let padding = Arc::new(format!(
        "{{\"name\": \"team/app\", \"tags\": [{}\"1.0.0\"]}}",
        " ".repeat(8 << 20)
    ));
    let server = FakeServer::start(move |request: &Request, _| {
        let page = page_number(request);
        let reply = Reply::json(200, &padding);
        if page < 11 {
            reply.with_header(
                "Link",
                &format!(r#"</v2/team/app/tags/list?page={}>; rel="next""#, page + 1),
            )
        } else {
            reply
        }
    });
    let dir = fake_objects(&server, "");
    let run = scan(dir.path(), &[], &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("team/app")
            && run.stderr.contains("larger than 64 MiB in all")
            && run.stderr.contains("spec.maxTags"),
        "{}",
        run.stderr
    );
    assert!(server.requests().len() <= 9, "{}", server.requests().len());
}

#[test]
fn a_huge_single_page_is_refused_while_streaming() {
    // 1 GiB in 1 MiB chunks, never all sent: hoist stops reading at its
    // page limit and the sender stops when the connection goes.
    let server = FakeServer::start(|_, _| {
        let (send, chunks) = std::sync::mpsc::sync_channel(2);
        std::thread::spawn(move || {
            let _ = send.send(br#"{"name": "team/app", "tags": ["#.to_vec());
            for _ in 0..1024 {
                if send.send(vec![b' '; 1 << 20]).is_err() {
                    return;
                }
            }
        });
        Reply::Stream {
            status: 200,
            headers: vec![("Content-Type".into(), "application/json".into())],
            chunks,
        }
    });
    let dir = fake_objects(&server, "");
    let run = scan(dir.path(), &[], &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("team/app") && run.stderr.contains("larger than 16 MiB"),
        "{}",
        run.stderr
    );
}

const ECHO_USER: &str = "echo-user";
const ECHO_PASSWORD: &str = "s3cret-Pa55";

/// A registry whose errors echo what it was sent: the Authorization
/// header and the password, with an escape sequence and a forged line.
fn echoing_registry() -> FakeServer {
    FakeServer::start(|request: &Request, _| {
        let addr = request.header("host").unwrap_or("").to_string();
        let sent = request.header("authorization").unwrap_or("").to_string();
        let echo = |status: u16| {
            let message = format!(
                "you sent {sent:?} and password {ECHO_PASSWORD}\u{1b}[31m\r\nerror: forged line"
            );
            Reply::json(
                status,
                &serde_json::json!({"errors": [{"code": "DENIED", "message": message}]})
                    .to_string(),
            )
        };
        let path = request.path();
        if path == "/token" {
            // The token endpoint refuses, echoing the Basic value.
            return echo(401);
        }
        if path.starts_with("/v2/bearer/") {
            if sent == "Bearer t0ken-given" {
                return echo(403);
            }
            return Reply::json(401, "{}").with_header(
                "WWW-Authenticate",
                &format!(r#"Bearer realm="http://{addr}/mint",service="fake""#),
            );
        }
        if path == "/mint" {
            return Reply::json(200, r#"{"token": "t0ken-given"}"#);
        }
        if path.starts_with("/v2/token/") {
            return Reply::json(401, "{}").with_header(
                "WWW-Authenticate",
                &format!(r#"Bearer realm="http://{addr}/token",service="fake""#),
            );
        }
        if sent.is_empty() {
            return Reply::json(401, "{}").with_header("WWW-Authenticate", r#"Basic realm="x""#);
        }
        // /v2/basic/…: 401 for the answered challenge, 500 for the rest.
        if path.starts_with("/v2/basic/") {
            echo(401)
        } else {
            echo(500)
        }
    })
}

#[test]
fn server_text_never_carries_the_credentials_or_control_characters() {
    let server = echoing_registry();
    let objects: String = ["basic", "token", "bearer", "fivehundred"]
        .iter()
        .map(|name| {
            format!(
                "---\napiVersion: hoist.dev/v1alpha1\nkind: ImageRepository\nmetadata: {{name: {name}}}\nspec:\n  image: {}/{name}/app\n  insecure: true\n  interval: 1h\n  timeout: 20s\n",
                server.addr
            )
        })
        .collect();
    let dir = files(&[("objects.yaml", &objects)]);
    std::fs::create_dir_all(dir.path().join("docker")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        dir.path().join("docker/config.json"),
        format!(
            r#"{{"auths": {{"{}": {{"username": "{ECHO_USER}", "password": "{ECHO_PASSWORD}"}}}}}}"#,
            server.addr
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let run = scan(dir.path(), &[], &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let basic_value = basic(ECHO_USER, ECHO_PASSWORD);
    let basic_value = basic_value.trim_start_matches("Basic ");
    for output in [&run.stdout, &run.stderr] {
        assert!(!output.contains(basic_value), "{output}");
        assert!(!output.contains(ECHO_PASSWORD), "{output}");
        assert!(!output.contains("t0ken-given"), "{output}");
        assert!(!output.contains('\u{1b}'), "{output}");
        assert!(!output.contains("\nerror: forged"), "{output}");
    }
    // Each repository's error is there, masked and escaped.
    for name in ["basic", "token", "bearer", "fivehundred"] {
        assert!(
            run.stderr.contains(&format!("{name}/app")),
            "{}",
            run.stderr
        );
    }
    assert!(run.stderr.contains("***"), "{}", run.stderr);
    assert!(
        run.stderr.contains("\\x1b[31m\\r\\nerror: forged line"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_policy_reads_another_namespaces_repository_only_when_its_access_from_admits_it() {
    let Some(registry) = DockerRegistry::start(Auth::None) else {
        return;
    };
    registry.push_image("team/app", &["1.0.0", "1.2.0"]);
    let image = format!("{}/team/app", registry.addr);
    let objects = |access: &str, labels: &str| {
        format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: team-b{labels}}}\n---\napiVersion: hoist.dev/v1alpha1\nkind: ImageRepository\nmetadata: {{name: app, namespace: team-a}}\nspec:\n  image: {image}\n  insecure: true\n{access}---\napiVersion: hoist.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {{name: app, namespace: team-b}}\nspec:\n  imageRepositoryRef: {{name: app, namespace: team-a}}\n  policy: {{semver: {{range: '^1'}}}}\n"
        )
    };
    let admits = "  accessFrom: {namespaceSelectors: [{matchLabels: {team: b}}]}\n";
    let cases = [
        // No accessFrom: the repository is its namespace's alone.
        (
            "",
            ", labels: {team: b}",
            &[][..],
            Some("has no spec.accessFrom"),
        ),
        // A selector the namespace's labels do not match.
        (
            admits,
            ", labels: {team: c}",
            &[],
            Some("select no namespace with the labels of team-b"),
        ),
        (admits, ", labels: {team: b}", &[], None),
        // The namespace's own name label, as the API server adds it.
        (
            "  accessFrom: {namespaceSelectors: [{matchLabels: {kubernetes.io/metadata.name: team-b}}]}\n",
            "",
            &[],
            None,
        ),
        (
            admits,
            ", labels: {team: b}",
            &["--no-cross-namespace-refs"],
            Some("--no-cross-namespace-refs"),
        ),
    ];
    for (access, labels, flags, refused) in cases {
        let dir = files(&[("objects.yaml", &objects(access, labels))]);
        let run = scan(dir.path(), flags, &[]);
        match refused {
            Some(why) => {
                assert_eq!(run.code, 2, "{access}{labels}: {}", run.stderr);
                assert!(
                    run.stderr.contains("objects.yaml:")
                        && run
                            .stderr
                            .contains("ImagePolicy team-b/app: spec.imageRepositoryRef: ")
                        && run.stderr.contains(why),
                    "{}",
                    run.stderr
                );
            }
            None => {
                assert_eq!(run.code, 0, "{access}{labels}: {}", run.stderr);
                assert_eq!(json(&run)[0]["tag"], "1.2.0");
            }
        }
    }
}

#[test]
fn the_loaders_warnings_ride_with_their_rows_and_strict_refuses_them() {
    let Some(registry) = DockerRegistry::start(Auth::None) else {
        return;
    };
    registry.push_image("team/app", &["1.0.0"]);
    let image = format!("{}/team/app", registry.addr);
    let text = repository(&image, "  exclusionLst: ['^x']\n")
        + &policy("app", ">=1", "Never")
        + &policy("other", ">=1", "Never");
    let dir = files(&[("objects.yaml", &text)]);
    let run = scan(dir.path(), &[], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let rows = json(&run);
    for row in rows.as_array().unwrap_or_else(|| panic!("{rows}")) {
        let warnings = row["warnings"]
            .as_array()
            .unwrap_or_else(|| panic!("{row}"));
        assert_eq!(warnings.len(), 1, "{row}");
        assert!(
            warnings[0]
                .as_str()
                .is_some_and(|w| w.contains("ImageRepository default/app: spec.exclusionLst")),
            "{row}"
        );
    }
    let strict = scan(dir.path(), &["--strict"], &[]);
    assert_eq!(strict.code, 2, "{}", strict.stderr);
    assert!(strict.stdout.is_empty(), "{}", strict.stdout);
    assert!(
        strict.stderr.contains("spec.exclusionLst: unknown field"),
        "{}",
        strict.stderr
    );
}
