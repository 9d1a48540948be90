//! The signing vectors AWS publishes, and each provider's flow against
//! in-process fakes of the endpoints it calls, expiry and refresh included.

use std::sync::{Arc, Mutex};

use http_body_util::BodyExt;

use super::sigv4::{AccessKey, Request, Scope, sign};
use super::*;

fn example_key() -> AccessKey {
    AccessKey {
        id: "AKIDEXAMPLE".into(),
        secret: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
        session_token: None,
    }
}

fn authorization(headers: &[(String, String)]) -> &str {
    headers
        .iter()
        .find(|(k, _)| k == "authorization")
        .map(|(_, v)| v.as_str())
        .unwrap_or_default()
}

const VECTOR_SCOPE: Scope<'static> = Scope {
    region: "us-east-1",
    service: "service",
    amz_date: "20150830T123600Z",
};

#[test]
fn sigv4_matches_the_published_get_vanilla_vector() {
    let headers = sign(
        &example_key(),
        &VECTOR_SCOPE,
        &Request {
            method: "GET",
            host: "example.amazonaws.com",
            path: "/",
            query: &[],
            headers: &[],
            body: b"",
        },
    );
    assert_eq!(
        authorization(&headers),
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
    );
}

#[test]
fn sigv4_matches_the_published_query_order_vector() {
    // get-vanilla-query-order-key-case: /?Param2=value2&Param1=value1
    let headers = sign(
        &example_key(),
        &VECTOR_SCOPE,
        &Request {
            method: "GET",
            host: "example.amazonaws.com",
            path: "/",
            query: &[("Param2", "value2"), ("Param1", "value1")],
            headers: &[],
            body: b"",
        },
    );
    assert!(
        authorization(&headers).ends_with(
            "Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"
        ),
        "{headers:?}"
    );
}

#[test]
fn sigv4_signs_a_session_token_and_never_shows_a_secret() {
    let key = AccessKey {
        session_token: Some("session-secret".into()),
        ..example_key()
    };
    let headers = sign(
        &key,
        &VECTOR_SCOPE,
        &Request {
            method: "POST",
            host: "example.amazonaws.com",
            path: "/",
            query: &[],
            headers: &[("Content-Type", "application/x-amz-json-1.1")],
            body: b"{}",
        },
    );
    assert!(
        authorization(&headers)
            .contains("SignedHeaders=content-type;host;x-amz-date;x-amz-security-token,"),
        "{headers:?}"
    );
    let shown = format!("{key:?}");
    assert!(
        !shown.contains("session-secret") && !shown.contains("EXAMPLEKEY"),
        "{shown}"
    );
}

#[test]
fn registries_are_told_apart_by_host() {
    let ecr = EcrRegistry::parse("123456789012.dkr.ecr.eu-west-1.amazonaws.com");
    assert_eq!(
        ecr,
        Some(EcrRegistry {
            account: "123456789012".into(),
            region: "eu-west-1".into(),
            fips: false,
            domain: "amazonaws.com".into()
        })
    );
    assert!(
        EcrRegistry::parse("123456789012.dkr.ecr-fips.us-east-1.amazonaws.com")
            .is_some_and(|r| r.fips)
    );
    assert!(EcrRegistry::parse("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn").is_some());
    for bad in [
        "12345.dkr.ecr.us-east-1.amazonaws.com",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com.evil.example",
        "123456789012.dkr.ecr..amazonaws.com",
        "ghcr.io",
    ] {
        assert_eq!(EcrRegistry::parse(bad), None, "{bad}");
    }
    assert_eq!(Provider::Gcp.registry_problem("gcr.io"), None);
    assert_eq!(Provider::Gcp.registry_problem("eu.gcr.io"), None);
    assert_eq!(
        Provider::Gcp.registry_problem("europe-west1-docker.pkg.dev"),
        None
    );
    assert!(
        Provider::Gcp
            .registry_problem("evil.example/-docker.pkg.dev")
            .is_some()
    );
    assert!(Provider::Gcp.registry_problem("ghcr.io").is_some());
    assert_eq!(Provider::Azure.registry_problem("team.azurecr.io"), None);
    assert_eq!(
        Provider::Azure.registry_problem("team.azurecr.io:443"),
        None
    );
    assert!(Provider::Azure.registry_problem("azurecr.io").is_some());
    let problem = Provider::Aws
        .registry_problem("ghcr.io")
        .unwrap_or_default();
    assert!(problem.contains("is not an ECR registry"), "{problem}");
    assert_eq!(Provider::of(Some("generic")), Ok(None));
    assert_eq!(Provider::of(Some("aws")), Ok(Some(Provider::Aws)));
    assert!(Provider::of(Some("oracle")).is_err());
}

/// A request a fake received.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

type Handler = Arc<dyn Fn(&Seen) -> (u16, String) + Send + Sync>;

/// An HTTP/1.1 server on a loopback port that records every request and
/// answers with the handler's status and body.
struct Fake {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Fake {
    async fn start(handler: impl Fn(&Seen) -> (u16, String) + Send + Sync + 'static) -> Fake {
        let handler: Handler = Arc::new(handler);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let recorded = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let handler = Arc::clone(&handler);
                let recorded = Arc::clone(&recorded);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |request: hyper::Request<hyper::body::Incoming>| {
                            let handler = Arc::clone(&handler);
                            let recorded = Arc::clone(&recorded);
                            async move {
                                let method = request.method().to_string();
                                let target = request
                                    .uri()
                                    .path_and_query()
                                    .map(|p| p.to_string())
                                    .unwrap_or_default();
                                let headers = request
                                    .headers()
                                    .iter()
                                    .map(|(k, v)| {
                                        (k.to_string(), v.to_str().unwrap_or_default().to_string())
                                    })
                                    .collect();
                                let body = request
                                    .into_body()
                                    .collect()
                                    .await
                                    .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
                                    .unwrap_or_default();
                                let seen = Seen {
                                    method,
                                    target,
                                    headers,
                                    body,
                                };
                                let (status, answer) = handler(&seen);
                                if let Ok(mut r) = recorded.lock() {
                                    r.push(seen);
                                }
                                let mut response = hyper::Response::new(http_body_util::Full::new(
                                    hyper::body::Bytes::from(answer),
                                ));
                                *response.status_mut() =
                                    hyper::StatusCode::from_u16(status).unwrap_or_default();
                                Ok::<_, std::convert::Infallible>(response)
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Fake {
            url: format!("http://{addr}"),
            seen,
            task,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// A clock the test moves.
fn clock(start: &str) -> (Clock, Arc<Mutex<jiff::Timestamp>>) {
    let now = Arc::new(Mutex::new(
        start
            .parse::<jiff::Timestamp>()
            .unwrap_or_else(|e| panic!("{e}")),
    ));
    let read = Arc::clone(&now);
    let clock: Clock = Arc::new(move || {
        read.lock()
            .map(|t| *t)
            .unwrap_or_else(|_| jiff::Timestamp::UNIX_EPOCH)
    });
    (clock, now)
}

fn later() -> Instant {
    Instant::now() + Duration::from_secs(10)
}

const ECR_HOST: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";

/// A fake ECR that checks each request's SigV4 signature by signing what
/// it received with the key it expects, and issues `AWS:ecr-password-N`.
async fn fake_ecr(expected: AccessKey, lifetime: i64) -> Fake {
    let issued = Arc::new(Mutex::new(0));
    Fake::start(move |seen| {
        let date = seen.header("x-amz-date").unwrap_or_default().to_string();
        let host = seen.header("host").unwrap_or_default().to_string();
        let content_type = seen.header("content-type").unwrap_or_default().to_string();
        let target = seen.header("x-amz-target").unwrap_or_default().to_string();
        let again = sign(
            &expected,
            &Scope {
                region: "eu-west-1",
                service: "ecr",
                amz_date: &date,
            },
            &Request {
                method: &seen.method,
                host: &host,
                path: "/",
                query: &[],
                headers: &[("content-type", &content_type), ("x-amz-target", &target)],
                body: seen.body.as_bytes(),
            },
        );
        if seen.header("authorization") != Some(authorization(&again))
            || target != "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken"
        {
            return (403, r#"{"__type":"InvalidSignatureException"}"#.into());
        }
        let n = issued.lock().map(|mut n| {
            *n += 1;
            *n
        });
        let n = n.unwrap_or(0);
        let token = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("AWS:ecr-password-{n}"),
        );
        // Expiry relative to the signed date, as ECR's is to its clock.
        let signed = jiff::civil::DateTime::strptime("%Y%m%dT%H%M%SZ", &date)
            .and_then(|t| t.to_zoned(jiff::tz::TimeZone::UTC))
            .map(|t| t.timestamp().as_second())
            .unwrap_or(0);
        (
            200,
            format!(
                r#"{{"authorizationData":[{{"authorizationToken":"{token}","expiresAt":{}.5,"proxyEndpoint":"https://{ECR_HOST}"}}]}}"#,
                signed + lifetime
            ),
        )
    })
    .await
}

fn sts_answer(id: &str, expiration: &str) -> String {
    format!(
        "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>{id}</AccessKeyId><SecretAccessKey>sts-secret</SecretAccessKey><SessionToken>sts-session&amp;token</SessionToken><Expiration>{expiration}</Expiration></Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>"
    )
}

#[tokio::test]
async fn aws_web_identity_signs_ecr_caches_the_token_and_refreshes_before_expiry() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "projected-sa-token\n").unwrap_or_else(|e| panic!("{e}"));
    let sts = Fake::start(|seen| {
        if seen.body.contains("Action=AssumeRoleWithWebIdentity")
            && seen.body.contains("WebIdentityToken=projected-sa-token")
            && seen
                .body
                .contains("RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fhoist")
        {
            (200, sts_answer("ASIAHOIST", "2026-12-07T13:00:00Z"))
        } else {
            (
                400,
                "<ErrorResponse><Error><Code>InvalidParameter</Code></Error></ErrorResponse>"
                    .into(),
            )
        }
    })
    .await;
    let ecr = fake_ecr(
        AccessKey {
            id: "ASIAHOIST".into(),
            secret: "sts-secret".into(),
            session_token: Some("sts-session&token".into()),
        },
        12 * 3600,
    )
    .await;
    let config = IdentityConfig {
        aws: AwsConfig {
            web_identity: Some(WebIdentity {
                role_arn: "arn:aws:iam::123456789012:role/hoist".into(),
                token_file,
                session_name: None,
            }),
            imds: None,
            sts_endpoint: Some(sts.url.clone()),
            ecr_endpoint: Some(ecr.url.clone()),
            ..AwsConfig::default()
        },
        ..IdentityConfig::default()
    };
    let (clock, now) = clock("2026-12-07T12:00:00Z");
    let identities = Identities::new(config).with_clock(clock);
    let first = identities
        .credential(Provider::Aws, ECR_HOST, later())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        first,
        Credential::Basic {
            username: "AWS".into(),
            password: "ecr-password-1".into()
        }
    );
    assert_eq!(identities.requests(), 2);
    // The token never sits in a URL.
    assert!(sts.seen().iter().all(|s| !s.target.contains("projected")));
    // Cached: no request while the token is good.
    *now.lock().unwrap_or_else(|e| e.into_inner()) = "2026-12-07T12:50:00Z"
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    for _ in 0..5 {
        let again = identities
            .credential(Provider::Aws, ECR_HOST, later())
            .await;
        assert_eq!(again.as_ref(), Ok(&first));
    }
    assert_eq!(identities.requests(), 2);
    assert_eq!(ecr.seen().len(), 1);
    // Shortly before the ECR token expires (12 h, refreshed 5 min early),
    // both the keys and the token are fetched again.
    *now.lock().unwrap_or_else(|e| e.into_inner()) = "2026-12-07T23:56:00Z"
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    let refreshed = identities
        .credential(Provider::Aws, ECR_HOST, later())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        refreshed,
        Credential::Basic {
            username: "AWS".into(),
            password: "ecr-password-2".into()
        }
    );
    assert_eq!((sts.seen().len(), ecr.seen().len()), (2, 2));
}

#[tokio::test]
async fn aws_failures_name_the_step_and_what_to_check_and_never_the_token() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "secret-sa-token").unwrap_or_else(|e| panic!("{e}"));
    let sts = Fake::start(|_| {
        (
            403,
            "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>Not authorized to perform sts:AssumeRoleWithWebIdentity</Message></Error></ErrorResponse>".into(),
        )
    })
    .await;
    let config = IdentityConfig {
        aws: AwsConfig {
            web_identity: Some(WebIdentity {
                role_arn: "arn:aws:iam::123456789012:role/hoist".into(),
                token_file,
                session_name: Some("hoist".into()),
            }),
            sts_endpoint: Some(sts.url.clone()),
            ..AwsConfig::default()
        },
        ..IdentityConfig::default()
    };
    let identities = Identities::new(config);
    let e = identities
        .credential(Provider::Aws, ECR_HOST, later())
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        e.starts_with("spec.provider aws: STS AssumeRoleWithWebIdentity: HTTP 403")
            && e.contains("AccessDenied")
            && e.contains("eks.amazonaws.com/role-arn"),
        "{e}"
    );
    assert!(!e.contains("secret-sa-token"), "{e}");

    // Nothing configured and the metadata service turned off.
    let none = Identities::new(IdentityConfig::default());
    let e = none
        .credential(Provider::Aws, ECR_HOST, later())
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        e.contains("finding credentials") && e.contains("AWS_WEB_IDENTITY_TOKEN_FILE"),
        "{e}"
    );
}

#[tokio::test]
async fn aws_reads_pod_identity_and_imds_v2_keys() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let token_file = dir.path().join("eks-pod-identity-token");
    std::fs::write(&token_file, "pod-identity-token").unwrap_or_else(|e| panic!("{e}"));
    let agent = Fake::start(|seen| {
        if seen.header("authorization") == Some("pod-identity-token") {
            (200, r#"{"AccessKeyId":"ASIAPOD","SecretAccessKey":"pod-secret","Token":"pod-session","AccountId":"123456789012","Expiration":"2026-12-07T18:00:00Z"}"#.into())
        } else {
            (401, "{}".into())
        }
    })
    .await;
    let ecr = fake_ecr(
        AccessKey {
            id: "ASIAPOD".into(),
            secret: "pod-secret".into(),
            session_token: Some("pod-session".into()),
        },
        3600,
    )
    .await;
    let config = IdentityConfig {
        aws: AwsConfig {
            container: Some(Container {
                url: format!("{}/v1/credentials", agent.url),
                token: None,
                token_file: Some(token_file),
            }),
            ecr_endpoint: Some(ecr.url.clone()),
            ..AwsConfig::default()
        },
        ..IdentityConfig::default()
    };
    let identities = Identities::new(config);
    let got = identities
        .credential(Provider::Aws, ECR_HOST, later())
        .await;
    assert!(
        matches!(got, Ok(Credential::Basic { ref username, .. }) if username == "AWS"),
        "{got:?}"
    );

    let imds = Fake::start(|seen| match (seen.method.as_str(), seen.target.as_str()) {
        ("PUT", "/latest/api/token") if seen.header("x-aws-ec2-metadata-token-ttl-seconds").is_some() => {
            (200, "imds-session".into())
        }
        (_, _) if seen.header("x-aws-ec2-metadata-token") != Some("imds-session") => (401, String::new()),
        ("GET", "/latest/meta-data/iam/security-credentials/") => (200, "node-role\n".into()),
        ("GET", "/latest/meta-data/iam/security-credentials/node-role") => (
            200,
            r#"{"Code":"Success","Type":"AWS-HMAC","AccessKeyId":"ASIANODE","SecretAccessKey":"node-secret","Token":"node-session","Expiration":"2026-12-07T18:00:00Z"}"#.into(),
        ),
        _ => (404, String::new()),
    })
    .await;
    let ecr = fake_ecr(
        AccessKey {
            id: "ASIANODE".into(),
            secret: "node-secret".into(),
            session_token: Some("node-session".into()),
        },
        3600,
    )
    .await;
    let config = IdentityConfig {
        aws: AwsConfig {
            imds: Some(imds.url.clone()),
            ecr_endpoint: Some(ecr.url.clone()),
            ..AwsConfig::default()
        },
        ..IdentityConfig::default()
    };
    let identities = Identities::new(config);
    let got = identities
        .credential(Provider::Aws, ECR_HOST, later())
        .await;
    assert!(got.is_ok(), "{got:?}");
    assert_eq!(imds.seen().len(), 3);
}

#[tokio::test]
async fn gcp_metadata_and_federation_give_oauth2accesstoken() {
    let metadata = Fake::start(|seen| {
        if seen.header("metadata-flavor") == Some("Google")
            && seen.target == "/computeMetadata/v1/instance/service-accounts/default/token"
        {
            (
                200,
                r#"{"access_token":"ya29.metadata","expires_in":3599,"token_type":"Bearer"}"#
                    .into(),
            )
        } else {
            (403, String::new())
        }
    })
    .await;
    let config = IdentityConfig {
        gcp: GcpConfig {
            metadata_host: metadata.url.trim_start_matches("http://").to_string(),
            credentials_file: None,
            ..GcpConfig::default()
        },
        ..IdentityConfig::default()
    };
    let identities = Identities::new(config);
    let got = identities
        .credential(Provider::Gcp, "europe-docker.pkg.dev", later())
        .await;
    assert_eq!(
        got,
        Ok(Credential::Basic {
            username: "oauth2accesstoken".into(),
            password: "ya29.metadata".into()
        })
    );

    let google = Fake::start(|seen| match seen.target.as_str() {
        "/v1/token"
            if seen.body.contains("subject_token=federated-subject")
                && seen.body.contains("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange") =>
        {
            (200, r#"{"access_token":"federated-access","issued_token_type":"urn:ietf:params:oauth:token-type:access_token","token_type":"Bearer","expires_in":3600}"#.into())
        }
        "/v1/projects/-/serviceAccounts/hoist@p.iam.gserviceaccount.com:generateAccessToken"
            if seen.header("authorization") == Some("Bearer federated-access") =>
        {
            (200, r#"{"accessToken":"ya29.impersonated","expireTime":"2026-12-07T19:00:00Z"}"#.into())
        }
        _ => (400, r#"{"error":"invalid_request"}"#.into()),
    })
    .await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let subject = dir.path().join("subject");
    std::fs::write(&subject, "federated-subject").unwrap_or_else(|e| panic!("{e}"));
    let file = dir.path().join("credentials.json");
    std::fs::write(
        &file,
        serde_json::json!({
            "type": "external_account",
            "audience": "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/k",
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "token_url": format!("{}/v1/token", google.url),
            "service_account_impersonation_url": format!("{}/v1/projects/-/serviceAccounts/hoist@p.iam.gserviceaccount.com:generateAccessToken", google.url),
            "credential_source": {"file": subject}
        })
        .to_string(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let config = IdentityConfig {
        gcp: GcpConfig {
            metadata_host: "127.0.0.1:1".into(),
            credentials_file: Some(file.clone()),
            ..GcpConfig::default()
        },
        ..IdentityConfig::default()
    };
    let identities = Identities::new(config);
    let got = identities
        .credential(Provider::Gcp, "gcr.io", later())
        .await;
    assert_eq!(
        got,
        Ok(Credential::Basic {
            username: "oauth2accesstoken".into(),
            password: "ya29.impersonated".into()
        })
    );
    // An executable source is refused: hoist runs no programs.
    std::fs::write(
        &file,
        r#"{"type":"external_account","audience":"a","credential_source":{"executable":{"command":"/bin/true"}}}"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let e = identities
        .credential(Provider::Gcp, "eu.gcr.io", later())
        .await;
    assert!(
        e.as_ref()
            .err()
            .is_some_and(|e| e.to_string().contains("only a credential_source.file")),
        "{e:?}"
    );
}

#[tokio::test]
async fn azure_workload_and_managed_identity_give_an_entra_token() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let token_file = dir.path().join("azure-identity-token");
    std::fs::write(&token_file, "federated-assertion").unwrap_or_else(|e| panic!("{e}"));
    let entra = Fake::start(|seen| {
        if seen.target == "/tenant-1/oauth2/v2.0/token"
            && seen.body.contains("client_assertion=federated-assertion")
            && seen.body.contains("client_id=client-1")
            && seen
                .body
                .contains("scope=https%3A%2F%2Fcontainerregistry.azure.net%2F.default")
        {
            (
                200,
                r#"{"token_type":"Bearer","expires_in":3599,"access_token":"entra-access"}"#.into(),
            )
        } else {
            (400, r#"{"error":"invalid_client"}"#.into())
        }
    })
    .await;
    let config = IdentityConfig {
        azure: AzureConfig {
            client_id: Some("client-1".into()),
            tenant_id: Some("tenant-1".into()),
            federated_token_file: Some(token_file),
            authority_host: format!("{}/", entra.url),
            imds: "http://127.0.0.1:1".into(),
        },
        ..IdentityConfig::default()
    };
    let identities = Identities::new(config);
    let got = identities
        .credential(Provider::Azure, "team.azurecr.io", later())
        .await;
    assert_eq!(
        got,
        Ok(Credential::AadToken {
            token: "entra-access".into(),
            tenant: Some("tenant-1".into())
        })
    );

    let imds = Fake::start(|seen| {
        if seen.header("metadata") == Some("true")
            && seen.target == "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fcontainerregistry.azure.net"
        {
            (200, r#"{"access_token":"managed-access","expires_in":"86399","token_type":"Bearer"}"#.into())
        } else {
            (400, String::new())
        }
    })
    .await;
    let config = IdentityConfig {
        azure: AzureConfig {
            imds: imds.url.clone(),
            ..AzureConfig::default()
        },
        ..IdentityConfig::default()
    };
    let identities = Identities::new(config);
    let got = identities
        .credential(Provider::Azure, "team.azurecr.io", later())
        .await;
    assert_eq!(
        got,
        Ok(Credential::AadToken {
            token: "managed-access".into(),
            tenant: None
        })
    );
}

#[tokio::test]
async fn an_endless_answer_is_cut_at_the_limit() {
    let metadata = Fake::start(|_| (200, "x".repeat(MAX_ANSWER + 1))).await;
    let config = IdentityConfig {
        gcp: GcpConfig {
            metadata_host: metadata.url.trim_start_matches("http://").to_string(),
            credentials_file: None,
            ..GcpConfig::default()
        },
        ..IdentityConfig::default()
    };
    let e = Identities::new(config)
        .credential(Provider::Gcp, "gcr.io", later())
        .await;
    assert!(
        e.as_ref()
            .err()
            .is_some_and(|e| e.to_string().contains("larger than 64 KiB")),
        "{e:?}"
    );
}

/// ServiceAccounts as a cluster keeps them: annotations by `ns/name`,
/// and a token per request that says whose it is and for which audience.
#[derive(Default)]
struct Accounts {
    annotations:
        Mutex<std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>>,
    issued: Mutex<Vec<(String, String)>>,
}

impl Accounts {
    fn annotate(&self, account: &str, pairs: &[(&str, &str)]) {
        if let Ok(mut all) = self.annotations.lock() {
            all.insert(
                account.to_string(),
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            );
        }
    }

    fn issued(&self) -> Vec<(String, String)> {
        self.issued.lock().map(|i| i.clone()).unwrap_or_default()
    }
}

#[async_trait::async_trait]
impl ServiceAccounts for Accounts {
    async fn annotations(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<std::collections::BTreeMap<String, String>, String> {
        self.annotations
            .lock()
            .ok()
            .and_then(|all| all.get(&format!("{namespace}/{name}")).cloned())
            .ok_or_else(|| format!("serviceaccounts \"{name}\" not found (404)"))
    }

    async fn token(&self, namespace: &str, name: &str, audience: &str) -> Result<String, String> {
        let account = format!("{namespace}/{name}");
        if let Ok(mut issued) = self.issued.lock() {
            issued.push((account.clone(), audience.to_string()));
        }
        Ok(format!("token-of-{namespace}-{name}"))
    }
}

#[tokio::test]
async fn a_service_account_s_own_role_logs_in_to_ecr_and_each_team_gets_its_own() {
    let sts = Fake::start(|seen| {
        let form: std::collections::HashMap<String, String> =
            url::form_urlencoded::parse(seen.body.as_bytes())
                .into_owned()
                .collect();
        let get = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
        let id = match (
            get("WebIdentityToken"),
            get("RoleArn"),
            get("RoleSessionName"),
        ) {
            (
                "token-of-team-a-scanner",
                "arn:aws:iam::123456789012:role/team-a",
                "hoist.team-a.scanner",
            ) => "ASIATEAMA",
            (
                "token-of-team-b-scanner",
                "arn:aws:iam::123456789012:role/team-b",
                "hoist.team-b.scanner",
            ) => "ASIATEAMB",
            (
                "token-of-team-b-default",
                "arn:aws:iam::123456789012:role/team-b-default",
                "hoist.team-b.default",
            ) => "ASIATEAMB",
            _ => {
                return (
                    403,
                    "<ErrorResponse><Error><Code>AccessDenied</Code></Error></ErrorResponse>"
                        .into(),
                );
            }
        };
        (
            200,
            sts_answer(id, "2026-12-07T13:00:00Z")
                .replace("sts-session&amp;token", id)
                .replace("sts-secret", id),
        )
    })
    .await;
    // ECR signs per team: a request signed with team A's key gets team
    // A's password.
    let ecr = Fake::start(|seen| {
        let auth = seen.header("authorization").unwrap_or_default();
        let team = if auth.contains("Credential=ASIATEAMA/") { "a" } else if auth.contains("Credential=ASIATEAMB/") { "b" } else { return (403, "{}".into()) };
        let token = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("AWS:password-of-team-{team}"));
        (200, format!(r#"{{"authorizationData":[{{"authorizationToken":"{token}","expiresAt":1796688000}}]}}"#))
    })
    .await;
    let config = IdentityConfig {
        aws: AwsConfig {
            imds: None,
            sts_endpoint: Some(sts.url.clone()),
            ecr_endpoint: Some(ecr.url.clone()),
            ..AwsConfig::default()
        },
        ..IdentityConfig::default()
    };
    let accounts = Arc::new(Accounts::default());
    accounts.annotate(
        "team-a/scanner",
        &[(AWS_ROLE_ARN, "arn:aws:iam::123456789012:role/team-a")],
    );
    accounts.annotate(
        "team-b/scanner",
        &[(AWS_ROLE_ARN, "arn:aws:iam::123456789012:role/team-b")],
    );
    let (clock, _) = clock("2026-12-07T12:00:00Z");
    let identities = Identities::new(config.clone())
        .with_clock(Arc::clone(&clock))
        .with_service_accounts(Arc::clone(&accounts) as Arc<dyn ServiceAccounts>, None);
    let password = |c: Result<Credential, IdentityError>| match c {
        Ok(Credential::Basic { password, .. }) => password,
        other => panic!("{other:?}"),
    };
    let a = identities
        .credential_for(Provider::Aws, ECR_HOST, "team-a", Some("scanner"), later())
        .await;
    assert_eq!(password(a), "password-of-team-a");
    let b = identities
        .credential_for(Provider::Aws, ECR_HOST, "team-b", Some("scanner"), later())
        .await;
    assert_eq!(password(b), "password-of-team-b");
    // Cached per ServiceAccount: no new token, STS or ECR call.
    let again = identities
        .credential_for(Provider::Aws, ECR_HOST, "team-a", Some("scanner"), later())
        .await;
    assert_eq!(password(again), "password-of-team-a");
    assert_eq!(
        accounts.issued(),
        vec![
            (
                "team-a/scanner".to_string(),
                "sts.amazonaws.com".to_string()
            ),
            (
                "team-b/scanner".to_string(),
                "sts.amazonaws.com".to_string()
            ),
        ]
    );
    assert_eq!((sts.seen().len(), ecr.seen().len()), (2, 2));
    // A changed annotation is another identity: fetched anew, never the
    // old role's credential.
    accounts.annotate(
        "team-a/scanner",
        &[(AWS_ROLE_ARN, "arn:aws:iam::123456789012:role/elsewhere")],
    );
    let moved = identities
        .credential_for(Provider::Aws, ECR_HOST, "team-a", Some("scanner"), later())
        .await;
    let e = moved.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        e.contains("spec.provider aws: STS AssumeRoleWithWebIdentity: HTTP 403"),
        "{e}"
    );
    // No annotation: an error that names it.
    accounts.annotate("team-a/bare", &[]);
    let bare = identities
        .credential_for(Provider::Aws, ECR_HOST, "team-a", Some("bare"), later())
        .await;
    let e = bare.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        e.contains(
            "reading ServiceAccount team-a/bare: it has no eks.amazonaws.com/role-arn annotation"
        ),
        "{e}"
    );
    // Locked down: without serviceAccountName, the default ServiceAccount
    // of the repository's namespace, not hoist's own (which has none).
    accounts.annotate(
        "team-b/default",
        &[(
            AWS_ROLE_ARN,
            "arn:aws:iam::123456789012:role/team-b-default",
        )],
    );
    let locked = Identities::new(config.clone())
        .with_clock(Arc::clone(&clock))
        .with_service_accounts(
            Arc::clone(&accounts) as Arc<dyn ServiceAccounts>,
            Some("default".into()),
        );
    let by_default = locked
        .credential_for(Provider::Aws, ECR_HOST, "team-b", None, later())
        .await;
    assert_eq!(password(by_default), "password-of-team-b");
    assert_eq!(
        accounts.issued().last().map(|(a, _)| a.as_str()),
        Some("team-b/default")
    );
    let missing = locked
        .credential_for(Provider::Aws, ECR_HOST, "team-c", None, later())
        .await;
    let e = missing.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        e.contains("reading ServiceAccount team-c/default: serviceaccounts \"default\" not found"),
        "{e}"
    );
    // Off: naming a ServiceAccount is an error, not hoist's own identity.
    let off = Identities::new(config).with_clock(clock);
    let e = off
        .credential_for(Provider::Aws, ECR_HOST, "team-a", Some("scanner"), later())
        .await;
    let e = e.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(e.contains("spec.serviceAccountName: ServiceAccount team-a/scanner is named, but object-level identity is off; start hoist controller with --object-level-identity"), "{e}");
}

#[tokio::test]
async fn azure_and_gcp_trade_a_service_account_s_token_as_its_annotations_say() {
    let entra = Fake::start(|seen| {
        if seen.target == "/tenant-a/oauth2/v2.0/token"
            && seen
                .body
                .contains("client_assertion=token-of-team-a-scanner")
            && seen.body.contains("client_id=client-a")
        {
            (
                200,
                r#"{"expires_in":3599,"access_token":"entra-of-team-a"}"#.into(),
            )
        } else {
            (400, r#"{"error":"invalid_client"}"#.into())
        }
    })
    .await;
    let google = Fake::start(|seen| match seen.target.as_str() {
        "/v1/token"
            if seen.body.contains("subject_token=token-of-team-a-scanner")
                && seen.body.contains("audience=%2F%2Fiam.googleapis.com%2Fprojects%2F7%2Flocations%2Fglobal%2FworkloadIdentityPools%2Fpool%2Fproviders%2Fk8s") =>
        {
            (200, r#"{"access_token":"federated-a","expires_in":3600}"#.into())
        }
        "/v1/projects/-/serviceAccounts/reader@p.iam.gserviceaccount.com:generateAccessToken"
            if seen.header("authorization") == Some("Bearer federated-a") =>
        {
            (200, r#"{"accessToken":"ya29.team-a","expireTime":"2026-12-07T19:00:00Z"}"#.into())
        }
        _ => (400, r#"{"error":"invalid_request"}"#.into()),
    })
    .await;
    let config = IdentityConfig {
        azure: AzureConfig {
            authority_host: format!("{}/", entra.url),
            imds: "http://127.0.0.1:1".into(),
            ..AzureConfig::default()
        },
        gcp: GcpConfig {
            sts_url: format!("{}/v1/token", google.url),
            iam_credentials_url: google.url.clone(),
            ..GcpConfig::default()
        },
        ..IdentityConfig::default()
    };
    let accounts = Arc::new(Accounts::default());
    accounts.annotate(
        "team-a/scanner",
        &[
            (AZURE_CLIENT_ID, "client-a"),
            (AZURE_TENANT_ID, "tenant-a"),
            (
                GCP_WORKLOAD_IDENTITY_PROVIDER,
                "projects/7/locations/global/workloadIdentityPools/pool/providers/k8s",
            ),
            (GCP_SERVICE_ACCOUNT, "reader@p.iam.gserviceaccount.com"),
        ],
    );
    let identities = Identities::new(config)
        .with_service_accounts(Arc::clone(&accounts) as Arc<dyn ServiceAccounts>, None);
    let azure = identities
        .credential_for(
            Provider::Azure,
            "team.azurecr.io",
            "team-a",
            Some("scanner"),
            later(),
        )
        .await;
    assert_eq!(
        azure,
        Ok(Credential::AadToken {
            token: "entra-of-team-a".into(),
            tenant: Some("tenant-a".into())
        })
    );
    let gcp = identities
        .credential_for(
            Provider::Gcp,
            "europe-docker.pkg.dev",
            "team-a",
            Some("scanner"),
            later(),
        )
        .await;
    assert_eq!(
        gcp,
        Ok(Credential::Basic {
            username: "oauth2accesstoken".into(),
            password: "ya29.team-a".into()
        })
    );
    assert_eq!(
        accounts.issued(),
        vec![
            ("team-a/scanner".to_string(), "api://AzureADTokenExchange".to_string()),
            (
                "team-a/scanner".to_string(),
                "https://iam.googleapis.com/projects/7/locations/global/workloadIdentityPools/pool/providers/k8s".to_string()
            ),
        ]
    );
    // A malformed annotation is refused before any request.
    accounts.annotate(
        "team-a/odd",
        &[(GCP_WORKLOAD_IDENTITY_PROVIDER, "pool/k8s")],
    );
    let odd = identities
        .credential_for(Provider::Gcp, "gcr.io", "team-a", Some("odd"), later())
        .await;
    let e = odd.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        e.contains(
            "its gcp.auth.fluxcd.io/workload-identity-provider annotation is not projects/NUMBER"
        ),
        "{e}"
    );
    assert_eq!(accounts.issued().len(), 2);
}
