//! `spec.provider` end to end: hoist logs in to ECR, Artifact Registry
//! and ACR with credentials that in-process fakes of STS, ECR, the GKE
//! metadata server, Entra ID and ACR's token endpoints issue, and a real
//! docker-registry takes them. The cloud registries' host names reach that
//! docker-registry through a forward proxy (hoist's HTTP_PROXY); NO_PROXY
//! sends the identity endpoints' requests, on 127.0.0.1, straight to their
//! fakes. The proxy's log gives the requests each scan costs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hoist::registry::identity::sigv4::{self, AccessKey};

use crate::support::git::{BareRepo, git};
use crate::support::http::{FakeServer, Reply, Request};
use crate::support::registry::{Auth, DockerRegistry};
use crate::support::token::TokenIssuer;
use crate::support::{files, hoist_env};

const ECR_HOST: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";
const GAR_HOST: &str = "europe-docker.pkg.dev";
const ACR_HOST: &str = "team.azurecr.io";

/// What the proxy did with one request: its absolute target and the
/// status it answered.
#[derive(Clone, Debug)]
struct Proxied {
    target: String,
    status: u16,
    at: Instant,
}

/// A handler the proxy answers a host's requests with instead of
/// forwarding them.
type Local = Arc<dyn Fn(&Request, &str) -> Option<Reply> + Send + Sync>;

/// A forward proxy for plain HTTP: a request for `http://HOST/PATH` goes
/// to `upstream` (a docker-registry) with its method, headers and body,
/// unless `local` answers it first. Any other host is a 502: a request
/// for it would have left the machine.
struct Proxy {
    server: FakeServer,
    log: Arc<Mutex<Vec<Proxied>>>,
}

impl Proxy {
    fn start(host: &'static str, upstream: String, local: Option<Local>) -> Proxy {
        let log: Arc<Mutex<Vec<Proxied>>> = Arc::default();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        let logged = Arc::clone(&log);
        let server = FakeServer::start(move |request, _| {
            let reply = forward(&agent, request, host, &upstream, local.as_ref());
            let status = match &reply {
                Reply::Respond { status, .. } => *status,
                _ => 0,
            };
            if let Ok(mut log) = logged.lock() {
                log.push(Proxied {
                    target: request.target.clone(),
                    status,
                    at: Instant::now(),
                });
            }
            reply
        });
        Proxy { server, log }
    }

    fn url(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    fn log(&self) -> Vec<Proxied> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

fn forward(
    agent: &ureq::Agent,
    request: &Request,
    host: &str,
    upstream: &str,
    local: Option<&Local>,
) -> Reply {
    let Some(path) = request
        .target
        .strip_prefix("http://")
        .and_then(|rest| rest.strip_prefix(host))
        .filter(|path| path.starts_with('/'))
    else {
        return Reply::json(502, r#"{"error":"this proxy reaches one registry host"}"#);
    };
    if let Some(reply) = local.and_then(|local| local(request, path)) {
        return reply;
    }
    let mut builder = ureq::http::Request::builder()
        .method(request.method.as_str())
        .uri(format!("http://{upstream}{path}"));
    for (name, value) in &request.headers {
        if !matches!(
            name.to_ascii_lowercase().as_str(),
            "host" | "connection" | "proxy-connection" | "content-length" | "keep-alive"
        ) {
            builder = builder.header(name.as_str(), value.as_str());
        }
    }
    let sent = match request.method.as_str() {
        "GET" | "HEAD" => builder.body(()).map(|r| agent.run(r)),
        _ => builder.body(request.body.clone()).map(|r| agent.run(r)),
    };
    let mut response = match sent {
        Ok(Ok(response)) => response,
        Ok(Err(e)) => return Reply::json(502, &format!("{{\"error\":\"{e}\"}}")),
        Err(e) => return Reply::json(502, &format!("{{\"error\":\"{e}\"}}")),
    };
    let status = response.status().as_u16();
    let head = request.method == "HEAD";
    let headers = response
        .headers()
        .iter()
        .filter(|(name, _)| {
            let name = name.as_str();
            // The proxy frames the body itself; a HEAD keeps the length.
            !matches!(name, "connection" | "transfer-encoding" | "keep-alive")
                && (head || name != "content-length")
        })
        .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_string())))
        .collect();
    let body = response.body_mut().read_to_vec().unwrap_or_default();
    Reply::Respond {
        status,
        headers,
        body,
    }
}

/// `key=value` pairs of a form body or query.
fn form(text: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(text.as_bytes())
        .into_owned()
        .collect()
}

fn objects(image: &str, provider: &str, remote: &str) -> String {
    format!(
        "apiVersion: hoist.dev/v1alpha1
kind: ImageRepository
metadata: {{name: app}}
spec: {{image: {image}, provider: {provider}, insecure: true, interval: 1s}}
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
  interval: 1s
  git:
    url: {remote}
    checkout: {{ref: {{branch: main}}}}
    commit:
      author: {{name: hoist-bot, email: bot@example.com}}
  update: {{path: ./clusters/prod}}
"
    )
}

fn manifest(image: &str, tag: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: app}}\nspec:\n  template:\n    spec:\n      containers:\n        - name: app\n          image: {image}:{tag} # {{\"$imagepolicy\": \"default:app\"}}\n"
    )
}

/// What one provider's run cost.
struct Figures {
    /// Scans that listed the tags.
    scans: usize,
    /// Registry requests (through the proxy) of the first scan, the
    /// provider's exchange at the registry included.
    first: usize,
    /// Registry requests per scan after the first.
    steady: f64,
}

/// Runs `hoist run` (not `--once`) over an automation of `image` until
/// the proxy has seen six scans list the tags, then stops it, and checks
/// that it pushed 1.2.0. Every identity request must come before the
/// first listing: the token is cached from then on.
fn run_until_steady(
    image: &str,
    provider: &str,
    proxy: &Proxy,
    env: &[(&str, &str)],
    identity_requests: &dyn Fn() -> Vec<Instant>,
) -> Figures {
    run_with_docker_config(image, provider, proxy, env, identity_requests, "{}")
}

/// [`run_until_steady`] with `docker_config` as hoist's config.json.
fn run_with_docker_config(
    image: &str,
    provider: &str,
    proxy: &Proxy,
    env: &[(&str, &str)],
    identity_requests: &dyn Fn() -> Vec<Instant>,
    docker_config: &str,
) -> Figures {
    let remote = BareRepo::new(&[("clusters/prod/app.yaml", &manifest(image, "1.0.0"))]);
    let dir = files(&[
        ("objects.yaml", &objects(image, provider, &remote.url())),
        ("docker/config.json", docker_config),
    ]);
    let proxy_url = proxy.url();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hoist"))
        .args(["run", "-f", "objects.yaml", "--state-dir", "state"])
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .env_remove("HOIST_LOG")
        .env("DOCKER_CONFIG", dir.path().join("docker"))
        .env("HTTP_PROXY", &proxy_url)
        .env("NO_PROXY", "127.0.0.1,localhost")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let listings = || {
        proxy
            .log()
            .iter()
            .filter(|p| p.status == 200 && p.target.contains("/tags/list"))
            .count()
    };
    let started = Instant::now();
    while listings() < 6 && started.elapsed() < Duration::from_secs(60) {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let log = proxy.log();
    let listed: Vec<usize> = log
        .iter()
        .enumerate()
        .filter(|(_, p)| p.status == 200 && p.target.contains("/tags/list"))
        .map(|(i, _)| i)
        .collect();
    assert!(
        listed.len() >= 6,
        "{provider}: {} scans listed the tags in 60 s\nproxy: {log:#?}\nstderr: {stderr}",
        listed.len()
    );
    let text = git(&remote.path, &["show", "main:clusters/prod/app.yaml"]);
    assert!(
        text.contains(&format!("{image}:1.2.0")),
        "{provider}: {text}\nstderr: {stderr}"
    );
    // Nothing but the registry went through the proxy: every request
    // named the registry's host, and none was refused for another.
    assert!(log.iter().all(|p| p.status != 502), "{log:#?}");
    assert!(
        !stderr.contains("sa-token") && !stderr.contains("entra-access"),
        "{stderr}"
    );
    let identity = identity_requests();
    assert!(
        provider == "generic" || !identity.is_empty(),
        "{provider}: no identity request"
    );
    let first_listing = log[listed[0]].at;
    assert!(
        identity.iter().all(|at| *at <= first_listing),
        "{provider}: an identity request after the first scan: the token was not cached"
    );
    let figures = Figures {
        scans: listed.len(),
        first: listed[0] + 1,
        steady: (listed[listed.len() - 1] - listed[0]) as f64 / (listed.len() - 1) as f64,
    };
    println!(
        "identity {provider}: {} identity requests in {} scans; registry requests: first scan {}, then {:.2} per scan",
        identity.len(),
        figures.scans,
        figures.first,
        figures.steady
    );
    figures
}

fn timestamp(at: jiff::Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// STS: AssumeRoleWithWebIdentity for `sa-token`, and ECR: a
/// GetAuthorizationToken whose SigV4 signature must be made with the keys
/// STS gave; it issues `AWS:ecr-password`.
fn fake_aws(role_arn: &'static str) -> (FakeServer, FakeServer) {
    let sts = FakeServer::start(move |request, _| {
        let body = form(&String::from_utf8_lossy(&request.body));
        let asked = |k: &str, v: &str| body.get(k).map(String::as_str) == Some(v);
        if !(asked("Action", "AssumeRoleWithWebIdentity")
            && asked("WebIdentityToken", "sa-token")
            && asked("RoleArn", role_arn))
        {
            return Reply::json(
                400,
                "<ErrorResponse><Error><Code>InvalidParameterValue</Code></Error></ErrorResponse>",
            );
        }
        let expiration = timestamp(jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1));
        Reply::json(
            200,
            &format!(
                "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>ASIAHOIST</AccessKeyId><SecretAccessKey>sts-secret</SecretAccessKey><SessionToken>sts-session</SessionToken><Expiration>{expiration}</Expiration></Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>"
            ),
        )
    });
    let key = AccessKey {
        id: "ASIAHOIST".into(),
        secret: "sts-secret".into(),
        session_token: Some("sts-session".into()),
    };
    let ecr = FakeServer::start(move |request, _| {
        let header = |name: &str| request.header(name).unwrap_or_default().to_string();
        let (date, content_type, target) = (
            header("x-amz-date"),
            header("content-type"),
            header("x-amz-target"),
        );
        let expected = sigv4::sign(
            &key,
            &sigv4::Scope {
                region: "eu-west-1",
                service: "ecr",
                amz_date: &date,
            },
            &sigv4::Request {
                method: &request.method,
                host: &header("host"),
                path: "/",
                query: &[],
                headers: &[("content-type", &content_type), ("x-amz-target", &target)],
                body: &request.body,
            },
        );
        let signed = expected
            .iter()
            .find(|(k, _)| k == "authorization")
            .map(|(_, v)| v.as_str());
        if request.header("authorization") != signed
            || target != "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken"
        {
            return Reply::json(403, r#"{"__type":"InvalidSignatureException"}"#);
        }
        let expires = jiff::Timestamp::now().as_second() + 12 * 3600;
        let token = STANDARD.encode("AWS:ecr-password");
        Reply::json(
            200,
            &format!(
                r#"{{"authorizationData":[{{"authorizationToken":"{token}","expiresAt":{expires}.0,"proxyEndpoint":"https://{ECR_HOST}"}}]}}"#
            ),
        )
    });
    (sts, ecr)
}

#[test]
fn ecr_through_irsa_web_identity_signs_once_and_scans_on_the_cached_token() {
    let Some(registry) = DockerRegistry::start(Auth::Basic {
        username: "AWS".into(),
        password: "ecr-password".into(),
    }) else {
        return;
    };
    registry.push_image("team/app", &["1.0.0", "1.2.0", "2.0.0"]);
    let role = "arn:aws:iam::123456789012:role/hoist";
    let (sts, ecr) = fake_aws(role);
    let proxy = Proxy::start(ECR_HOST, registry.addr.clone(), None);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "sa-token").unwrap_or_else(|e| panic!("{e}"));
    let token_file = token_file.to_string_lossy().into_owned();
    let (sts_url, ecr_url) = (
        format!("http://{}", sts.addr),
        format!("http://{}", ecr.addr),
    );
    let env = [
        ("AWS_ROLE_ARN", role),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", token_file.as_str()),
        ("AWS_ENDPOINT_URL_STS", sts_url.as_str()),
        ("AWS_ENDPOINT_URL_ECR", ecr_url.as_str()),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    let identity = || {
        let mut at: Vec<Instant> = sts.requests().iter().map(|r| r.at).collect();
        at.extend(ecr.requests().iter().map(|r| r.at));
        at
    };
    let figures = run_until_steady(
        &format!("{ECR_HOST}/team/app"),
        "aws",
        &proxy,
        &env,
        &identity,
    );
    // One STS call and one ECR call for the whole run.
    assert_eq!((sts.requests().len(), ecr.requests().len()), (1, 1));
    assert!(figures.steady <= figures.first as f64);
}

/// The baseline the providers' figures are read against: the same
/// registry and run with a static password from config.json.
#[test]
fn a_static_password_in_config_json_is_the_baseline() {
    let Some(registry) = DockerRegistry::start(Auth::Basic {
        username: "AWS".into(),
        password: "ecr-password".into(),
    }) else {
        return;
    };
    registry.push_image("team/app", &["1.0.0", "1.2.0", "2.0.0"]);
    let proxy = Proxy::start(ECR_HOST, registry.addr.clone(), None);
    let auth = STANDARD.encode("AWS:ecr-password");
    let config = format!(r#"{{"auths": {{"{ECR_HOST}": {{"auth": "{auth}"}}}}}}"#);
    run_with_docker_config(
        &format!("{ECR_HOST}/team/app"),
        "generic",
        &proxy,
        &[],
        &Vec::new,
        &config,
    );
}

#[test]
fn a_failing_provider_is_an_error_that_names_the_step_and_never_an_anonymous_scan() {
    let role = "arn:aws:iam::123456789012:role/hoist";
    let (sts, _ecr) = fake_aws("arn:aws:iam::123456789012:role/someone-else");
    let proxy = Proxy::start(ECR_HOST, "127.0.0.1:1".into(), None);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "sa-token").unwrap_or_else(|e| panic!("{e}"));
    let token_file = token_file.to_string_lossy().into_owned();
    let sts_url = format!("http://{}", sts.addr);
    let image = format!("{ECR_HOST}/team/app");
    // The repository and policy only: `hoist scan` needs no automation.
    let all = objects(&image, "aws", "/nonexistent");
    let scanned = all
        .split("\n---\napiVersion: hoist.dev/v1alpha1\nkind: ImageUpdateAutomation")
        .next()
        .unwrap_or_default();
    let work = files(&[("objects.yaml", scanned)]);
    std::fs::create_dir_all(work.path().join("docker")).unwrap_or_else(|e| panic!("{e}"));
    let proxy_url = proxy.url();
    let run = hoist_env(
        work.path(),
        &["scan", "-f", "objects.yaml", "--state-dir", "state"],
        &[
            ("DOCKER_CONFIG", "docker"),
            ("HTTP_PROXY", &proxy_url),
            ("NO_PROXY", "127.0.0.1,localhost"),
            ("AWS_ROLE_ARN", role),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", &token_file),
            ("AWS_ENDPOINT_URL_STS", &sts_url),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ],
    );
    assert_ne!(run.code, 0, "{}", run.stdout);
    assert!(
        run.stderr
            .contains("spec.provider aws: STS AssumeRoleWithWebIdentity"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("sa-token"), "{}", run.stderr);
    // STS was asked; the registry never was, with or without credentials.
    assert_eq!(sts.requests().len(), 1);
    assert!(proxy.log().is_empty(), "{:#?}", proxy.log());
}

#[test]
fn artifact_registry_through_the_gke_metadata_server() {
    let Some(registry) = DockerRegistry::start(Auth::Basic {
        username: "oauth2accesstoken".into(),
        password: "ya29.workload".into(),
    }) else {
        return;
    };
    registry.push_image("project/team/app", &["1.0.0", "1.2.0", "2.0.0"]);
    let metadata = FakeServer::start(|request, _| {
        if request.header("metadata-flavor") == Some("Google")
            && request.target == "/computeMetadata/v1/instance/service-accounts/default/token"
        {
            Reply::json(
                200,
                r#"{"access_token":"ya29.workload","expires_in":3599,"token_type":"Bearer"}"#,
            )
        } else {
            Reply::json(403, "{}")
        }
    });
    let proxy = Proxy::start(GAR_HOST, registry.addr.clone(), None);
    let metadata_host = metadata.addr.to_string();
    let identity = || metadata.requests().iter().map(|r| r.at).collect();
    run_until_steady(
        &format!("{GAR_HOST}/project/team/app"),
        "gcp",
        &proxy,
        &[("GCE_METADATA_HOST", metadata_host.as_str())],
        &identity,
    );
    assert_eq!(metadata.requests().len(), 1);
}

#[test]
fn acr_through_azure_workload_identity_and_the_registry_s_exchange() {
    let issuer = TokenIssuer::start("unused", "unused");
    let Some(registry) = DockerRegistry::start(Auth::Token {
        realm: format!("http://{ACR_HOST}/oauth2/token"),
        certificate: issuer.certificate.clone(),
        signer: Arc::clone(&issuer.signer),
    }) else {
        return;
    };
    registry.push_image("team/app", &["1.0.0", "1.2.0", "2.0.0"]);
    let entra = FakeServer::start(|request, _| {
        let body = form(&String::from_utf8_lossy(&request.body));
        let asked = |k: &str, v: &str| body.get(k).map(String::as_str) == Some(v);
        if request.path() == "/tenant-1/oauth2/v2.0/token"
            && asked("client_assertion", "sa-token")
            && asked("client_id", "client-1")
            && asked("scope", "https://containerregistry.azure.net/.default")
        {
            Reply::json(
                200,
                r#"{"token_type":"Bearer","expires_in":3599,"access_token":"entra-access"}"#,
            )
        } else {
            Reply::json(400, r#"{"error":"invalid_client"}"#)
        }
    });
    // ACR's own endpoints, on the registry's host: the exchange turns the
    // Entra token into a refresh token, the token endpoint that into a
    // registry token for the scope asked.
    let signer = Arc::clone(&issuer.signer);
    let exchanges: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let exchanged = Arc::clone(&exchanges);
    let acr: Local = Arc::new(move |request: &Request, path: &str| {
        let body = form(&String::from_utf8_lossy(&request.body));
        let asked = |k: &str, v: &str| body.get(k).map(String::as_str) == Some(v);
        match path {
            "/oauth2/exchange" => {
                if let Ok(mut e) = exchanged.lock() {
                    e.push(Instant::now());
                }
                Some(
                    if asked("grant_type", "access_token")
                        && asked("access_token", "entra-access")
                        && asked("tenant", "tenant-1")
                    {
                        Reply::json(200, r#"{"refresh_token":"acr-refresh"}"#)
                    } else {
                        Reply::json(401, r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#)
                    },
                )
            }
            "/oauth2/token" => Some(
                if asked("grant_type", "refresh_token") && asked("refresh_token", "acr-refresh") {
                    let scopes: Vec<String> = body.get("scope").into_iter().cloned().collect();
                    let token = signer.token("hoist", &scopes);
                    Reply::json(200, &format!(r#"{{"access_token":"{token}"}}"#))
                } else {
                    Reply::json(401, r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#)
                },
            ),
            _ => None,
        }
    });
    let proxy = Proxy::start(ACR_HOST, registry.addr.clone(), Some(acr));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let token_file = dir.path().join("azure-identity-token");
    std::fs::write(&token_file, "sa-token").unwrap_or_else(|e| panic!("{e}"));
    let token_file = token_file.to_string_lossy().into_owned();
    let authority = format!("http://{}/", entra.addr);
    let identity = || {
        let mut at: Vec<Instant> = entra.requests().iter().map(|r| r.at).collect();
        at.extend(exchanges.lock().map(|e| e.clone()).unwrap_or_default());
        at
    };
    run_until_steady(
        &format!("{ACR_HOST}/team/app"),
        "azure",
        &proxy,
        &[
            ("AZURE_FEDERATED_TOKEN_FILE", token_file.as_str()),
            ("AZURE_CLIENT_ID", "client-1"),
            ("AZURE_TENANT_ID", "tenant-1"),
            ("AZURE_AUTHORITY_HOST", authority.as_str()),
        ],
        &identity,
    );
    // One Entra token and one exchange for the whole run.
    assert_eq!(entra.requests().len(), 1);
    assert_eq!(exchanges.lock().map(|e| e.len()).unwrap_or(0), 1);
}

/// The claims of a JWT, unverified: the fake reads what the API server
/// put in the token it issued.
fn claims(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

#[test]
fn the_controller_logs_in_as_each_repository_s_service_account_through_token_request() {
    let Some(cluster) = crate::support::cluster::cluster() else {
        return;
    };
    let Some(registry) = DockerRegistry::start(Auth::Basic {
        username: "AWS".into(),
        password: "ecr-password".into(),
    }) else {
        return;
    };
    registry.push_image("team/app", &["1.0.0", "1.2.0", "2.0.0"]);
    let ns = cluster.namespace("object-identity");
    let role = "arn:aws:iam::123456789012:role/team-scanner";
    // STS admits only a token the API server issued for ns/scanner with
    // STS's audience, as an IAM OIDC provider for the cluster would.
    let subject = format!("system:serviceaccount:{ns}:scanner");
    let session = format!("hoist.{ns}.scanner");
    let tokens: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let seen = Arc::clone(&tokens);
    let sts = FakeServer::start(move |request, _| {
        let body = form(&String::from_utf8_lossy(&request.body));
        let token = body.get("WebIdentityToken").cloned().unwrap_or_default();
        let claims = claims(&token);
        if let Ok(mut seen) = seen.lock() {
            seen.push(claims.clone());
        }
        let admitted = claims["sub"] == subject.as_str()
            && claims["aud"]
                .as_array()
                .is_some_and(|a| a.iter().any(|v| v == "sts.amazonaws.com"))
            && body.get("RoleArn").map(String::as_str) == Some(role)
            && body.get("RoleSessionName") == Some(&session);
        if !admitted {
            return Reply::json(
                403,
                "<ErrorResponse><Error><Code>AccessDenied</Code><Message>Not authorized to perform sts:AssumeRoleWithWebIdentity</Message></Error></ErrorResponse>",
            );
        }
        let expiration = timestamp(jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1));
        Reply::json(
            200,
            &format!(
                "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>ASIAHOIST</AccessKeyId><SecretAccessKey>sts-secret</SecretAccessKey><SessionToken>sts-session</SessionToken><Expiration>{expiration}</Expiration></Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>"
            ),
        )
    });
    let (_unused, ecr) = fake_aws(role);
    let proxy = Proxy::start(ECR_HOST, registry.addr.clone(), None);

    // deploy/object-identity's ClusterRole, bound as a user binds it.
    cluster.install_hoist();
    let rbac = std::fs::read_to_string(
        crate::support::repo_root().join("deploy/object-identity/rbac.yaml"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    cluster.apply(&rbac);
    let image = format!("{ECR_HOST}/team/app");
    let repository = |name: &str, account: Option<&str>| {
        let mut spec = serde_json::json!({"image": image, "provider": "aws", "insecure": true, "interval": "1s"});
        if let Some(account) = account {
            spec["serviceAccountName"] = account.into();
        }
        serde_json::json!({"apiVersion": "hoist.dev/v1alpha1", "kind": "ImageRepository",
            "metadata": {"name": name, "namespace": ns}, "spec": spec})
        .to_string()
    };
    cluster.apply(&format!(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: scanner\n  namespace: {ns}\n  annotations:\n    eks.amazonaws.com/role-arn: {role}\n"
    ));
    cluster.apply(&repository("app", Some("scanner")));
    // Another ServiceAccount's name that does not exist in this namespace,
    // and none at all under lockdown: neither borrows an identity.
    cluster.apply(&repository("absent", Some("nobody")));
    cluster.apply(&repository("unnamed", None));

    let mark = cluster.audit_mark();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let kubeconfig = cluster.controller_kubeconfig(dir.path());
    let proxy_url = proxy.url();
    let (sts_url, ecr_url) = (
        format!("http://{}", sts.addr),
        format!("http://{}", ecr.addr),
    );
    let controller = crate::support::controller::Running::start_with_env(
        &kubeconfig,
        &[
            "--namespace",
            &ns,
            "--object-level-identity",
            "--default-service-account",
            "tenant",
        ],
        &[
            ("HTTP_PROXY", proxy_url.as_str()),
            ("NO_PROXY", "127.0.0.1,localhost"),
            ("AWS_ENDPOINT_URL_STS", sts_url.as_str()),
            ("AWS_ENDPOINT_URL_ECR", ecr_url.as_str()),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ],
    );
    let status = |name: &str| cluster.get("imagerepositories.hoist.dev", &ns, name);
    let ready = crate::support::wait_for(
        "the repository scanned as its ServiceAccount",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            let r = status("app")?;
            (crate::support::condition(&r, "Ready")?.0 == "True").then_some(r)
        },
    );
    assert_eq!(
        ready["status"]["lastScanResult"]["tagCount"],
        3,
        "{}",
        controller.log()
    );
    let refused = |name: &str, expected: &str| {
        let message = crate::support::wait_for(
            &format!("{name}'s refusal"),
            Duration::from_secs(60),
            Duration::from_millis(200),
            || {
                let r = status(name)?;
                let (state, _, message) = crate::support::condition(&r, "Ready")?;
                (state == "False" && message.contains("ServiceAccount")).then_some(message)
            },
        );
        assert!(message.contains(expected), "{name}: {message}");
    };
    refused("absent", &format!("reading ServiceAccount {ns}/nobody"));
    refused("unnamed", &format!("reading ServiceAccount {ns}/tenant"));
    // Scans go on with the cached credential: one token, one STS and one
    // ECR call, however many scans.
    crate::support::wait_for(
        "five more scans",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            let listed = proxy
                .log()
                .iter()
                .filter(|p| p.status == 200 && p.target.contains("/tags/list"))
                .count();
            (listed >= 6).then_some(())
        },
    );
    let scans = proxy
        .log()
        .iter()
        .filter(|p| p.status == 200 && p.target.contains("/tags/list"))
        .count();
    assert_eq!(
        sts.requests().len(),
        1,
        "{:#?}",
        tokens.lock().map(|t| t.clone()).unwrap_or_default()
    );
    assert_eq!(ecr.requests().len(), 1);
    let claims = tokens.lock().map(|t| t[0].clone()).unwrap_or_default();
    // A short-lived token, bound to no pod.
    let life = claims["exp"].as_i64().unwrap_or(0) - claims["iat"].as_i64().unwrap_or(0);
    assert!((600..=3600).contains(&life), "{claims}");
    let audit = cluster.audit_since(mark);
    let by_hoist = |resource: &str, verb: &str, name: &str| {
        audit
            .iter()
            .filter(|e| e["user"]["username"] == crate::support::cluster::CONTROLLER)
            .filter(|e| e["verb"] == verb && e["objectRef"]["resource"] == "serviceaccounts")
            .filter(|e| e["objectRef"]["subresource"].as_str().unwrap_or("") == resource)
            .filter(|e| {
                e["objectRef"]["namespace"] == ns.as_str() && e["objectRef"]["name"] == name
            })
            .count()
    };
    assert_eq!(by_hoist("token", "create", "scanner"), 1);
    let reads = by_hoist("", "get", "scanner");
    let denied = audit
        .iter()
        .filter(|e| e["user"]["username"] == crate::support::cluster::CONTROLLER)
        .filter(|e| e["responseStatus"]["code"] == 403)
        .map(crate::support::cluster::describe)
        .collect::<Vec<_>>();
    assert!(denied.is_empty(), "{denied:#?}");
    println!(
        "object-level identity: {scans} scans, 1 TokenRequest, {} STS and {} ECR calls, {reads} ServiceAccount reads",
        sts.requests().len(),
        ecr.requests().len()
    );
}
