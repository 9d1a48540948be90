//! `provider: aws`: ECR's `GetAuthorizationToken`, signed with SigV4 by an
//! access key from the standard chain — the environment, a web identity
//! (IRSA) through STS, EKS Pod Identity's container endpoint, then the
//! instance metadata service (IMDSv2).

use std::path::PathBuf;

use base64::Engine;
use serde::Deserialize;

use super::sigv4::{self, AccessKey};
use super::*;

/// An ECR registry's host, taken apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EcrRegistry {
    pub account: String,
    pub region: String,
    pub fips: bool,
    /// `amazonaws.com`, `amazonaws.com.cn` or `amazonaws.eu`.
    pub domain: String,
}

impl EcrRegistry {
    /// `123456789012.dkr.ecr[-fips].REGION.amazonaws.com[.cn]`.
    pub fn parse(host: &str) -> Option<EcrRegistry> {
        let (account, rest) = host.split_once(".dkr.")?;
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let (fips, rest) = match rest.strip_prefix("ecr-fips.") {
            Some(rest) => (true, rest),
            None => (false, rest.strip_prefix("ecr.")?),
        };
        let (region, domain) = rest.split_once('.')?;
        let region_ok = !region.is_empty()
            && region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !region_ok
            || !matches!(
                domain,
                "amazonaws.com" | "amazonaws.com.cn" | "amazonaws.eu"
            )
        {
            return None;
        }
        Some(EcrRegistry {
            account: account.to_string(),
            region: region.to_string(),
            fips,
            domain: domain.to_string(),
        })
    }

    /// ECR's API endpoint for this registry's region.
    fn api(&self) -> String {
        if self.fips {
            format!("https://ecr-fips.{}.{}", self.region, self.domain)
        } else {
            format!("https://api.ecr.{}.{}", self.region, self.domain)
        }
    }
}

/// A web identity to trade for a role's keys (IRSA): what the EKS pod
/// identity webhook sets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebIdentity {
    pub role_arn: String,
    pub token_file: PathBuf,
    pub session_name: Option<String>,
}

/// EKS Pod Identity's (or ECS's) credentials endpoint.
#[derive(Clone, PartialEq, Eq)]
pub struct Container {
    pub url: String,
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
}

impl fmt::Debug for Container {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Container")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("token_file", &self.token_file)
            .finish()
    }
}

/// Where AWS keys come from, as the AWS SDKs read the environment.
#[derive(Clone, Debug, Default)]
pub struct AwsConfig {
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`.
    pub static_key: Option<AccessKey>,
    /// `AWS_ROLE_ARN`, `AWS_WEB_IDENTITY_TOKEN_FILE`, `AWS_ROLE_SESSION_NAME`.
    pub web_identity: Option<WebIdentity>,
    /// `AWS_CONTAINER_CREDENTIALS_FULL_URI` (or `_RELATIVE_URI`) and its
    /// authorization token.
    pub container: Option<Container>,
    /// The instance metadata service; None when `AWS_EC2_METADATA_DISABLED`.
    pub imds: Option<String>,
    /// `AWS_REGION`, else `AWS_DEFAULT_REGION`: the region STS is asked in
    /// (else the registry's).
    pub region: Option<String>,
    /// `AWS_ENDPOINT_URL_STS`, else `AWS_ENDPOINT_URL`.
    pub sts_endpoint: Option<String>,
    /// `AWS_ENDPOINT_URL_ECR`, else `AWS_ENDPOINT_URL`.
    pub ecr_endpoint: Option<String>,
}

impl AwsConfig {
    pub(super) fn from_vars(var: &impl Fn(&str) -> Option<String>) -> Self {
        let static_key = match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
            (Some(id), Some(secret)) => Some(AccessKey {
                id,
                secret,
                session_token: var("AWS_SESSION_TOKEN"),
            }),
            _ => None,
        };
        let web_identity = match (var("AWS_ROLE_ARN"), var("AWS_WEB_IDENTITY_TOKEN_FILE")) {
            (Some(role_arn), Some(file)) => Some(WebIdentity {
                role_arn,
                token_file: PathBuf::from(file),
                session_name: var("AWS_ROLE_SESSION_NAME"),
            }),
            _ => None,
        };
        let container = var("AWS_CONTAINER_CREDENTIALS_FULL_URI")
            .or_else(|| {
                var("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
                    .map(|path| format!("http://169.254.170.2{path}"))
            })
            .map(|url| Container {
                url,
                token: var("AWS_CONTAINER_AUTHORIZATION_TOKEN"),
                token_file: var("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE").map(PathBuf::from),
            });
        let disabled =
            var("AWS_EC2_METADATA_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let imds = (!disabled).then(|| {
            var("AWS_EC2_METADATA_SERVICE_ENDPOINT")
                .unwrap_or_else(|| "http://169.254.169.254".to_string())
        });
        let any = var("AWS_ENDPOINT_URL");
        AwsConfig {
            static_key,
            web_identity,
            container,
            imds,
            region: var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")),
            sts_endpoint: var("AWS_ENDPOINT_URL_STS").or_else(|| any.clone()),
            ecr_endpoint: var("AWS_ENDPOINT_URL_ECR").or(any),
        }
    }
}

fn error(step: &str, message: impl Into<String>, hint: Option<&str>) -> IdentityError {
    IdentityError {
        provider: Provider::Aws,
        step: step.to_string(),
        message: message.into(),
        hint: hint.map(str::to_string),
    }
}

const ECR_STEP: &str = "ECR GetAuthorizationToken";
const IRSA_HINT: &str = "check the ServiceAccount's eks.amazonaws.com/role-arn annotation and that the role's trust policy admits it";

/// A registry credential for the ECR registry `host`, and when it expires.
pub(super) async fn credential(
    identities: &Identities,
    host: &str,
    deadline: Instant,
) -> Result<(Credential, jiff::Timestamp), IdentityError> {
    let registry = ecr_registry(host)?;
    let key = access_key(identities, &registry.region, deadline).await?;
    authorization_token(identities, &registry, &key, deadline).await
}

/// A registry credential for `host` as the IAM role `role_arn`, which
/// the ServiceAccount token `token` assumes (object-level identity).
pub(super) async fn as_role(
    identities: &Identities,
    host: &str,
    role_arn: &str,
    token: &str,
    session: &str,
    deadline: Instant,
) -> Result<(Credential, jiff::Timestamp), IdentityError> {
    let registry = ecr_registry(host)?;
    let (key, _) = assume_role_with_web_identity(
        identities,
        role_arn,
        token,
        session,
        &registry.region,
        deadline,
    )
    .await?;
    authorization_token(identities, &registry, &key, deadline).await
}

fn ecr_registry(host: &str) -> Result<EcrRegistry, IdentityError> {
    EcrRegistry::parse(host.split(':').next().unwrap_or(host)).ok_or_else(|| {
        error(
            "reading the registry host",
            format!("{host} is not an ECR registry"),
            None,
        )
    })
}

/// ECR's GetAuthorizationToken for `registry`, signed with `key`.
async fn authorization_token(
    identities: &Identities,
    registry: &EcrRegistry,
    key: &AccessKey,
    deadline: Instant,
) -> Result<(Credential, jiff::Timestamp), IdentityError> {
    let config = &identities.config.aws;
    let endpoint = config
        .ecr_endpoint
        .clone()
        .unwrap_or_else(|| registry.api());
    let url = url::Url::parse(&endpoint).map_err(|e| {
        error(
            ECR_STEP,
            format!("the endpoint {endpoint} is not a URL: {e}"),
            None,
        )
    })?;
    let authority = authority(&url);
    let body = br#"{}"#;
    let headers = [
        ("content-type", "application/x-amz-json-1.1"),
        (
            "x-amz-target",
            "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken",
        ),
    ];
    let path = match url.path() {
        "" => "/",
        p => p,
    };
    let signed = sigv4::sign(
        key,
        &sigv4::Scope {
            region: &registry.region,
            service: "ecr",
            amz_date: &sigv4::amz_date(identities.now()),
        },
        &sigv4::Request {
            method: "POST",
            host: &authority,
            path,
            query: &[],
            headers: &headers,
            body,
        },
    );
    let mut request = identities.http.post(url.clone()).body(body.to_vec());
    for (k, v) in headers.iter().copied() {
        request = request.header(k, v);
    }
    for (k, v) in &signed {
        request = request.header(k.as_str(), v.as_str());
    }
    let answer = identities
        .send(Provider::Aws, ECR_STEP, request, deadline)
        .await
        .map_err(|e| e.hinted("check that the role may call ecr:GetAuthorizationToken (e.g. the AmazonEC2ContainerRegistryReadOnly policy)"))?;
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Answer {
        authorization_data: Vec<AuthorizationData>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct AuthorizationData {
        authorization_token: String,
        expires_at: Option<f64>,
    }
    let answer: Answer = json(Provider::Aws, ECR_STEP, &answer)?;
    let data = answer
        .authorization_data
        .into_iter()
        .next()
        .ok_or_else(|| error(ECR_STEP, "the answer has no authorizationData", None))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(data.authorization_token.trim())
        .ok()
        .and_then(|d| String::from_utf8(d).ok())
        .ok_or_else(|| error(ECR_STEP, "authorizationToken is not base64 text", None))?;
    let (username, password) = decoded.split_once(':').ok_or_else(|| {
        error(
            ECR_STEP,
            "authorizationToken is not base64 of user:password",
            None,
        )
    })?;
    let now = identities.now();
    let expires = data
        .expires_at
        .filter(|t| t.is_finite() && *t > 0.0)
        .and_then(|t| jiff::Timestamp::from_second(t as i64).ok())
        .unwrap_or_else(|| after(now, UNSTATED_LIFETIME.as_secs()));
    Ok((
        Credential::Basic {
            username: username.to_string(),
            password: password.to_string(),
        },
        expires,
    ))
}

/// `host` or `host:port` as the Host header carries it, which is what
/// SigV4 signs.
fn authority(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

/// An access key from the first source the environment configures:
/// cached, shared by every region, until shortly before it expires.
async fn access_key(
    identities: &Identities,
    region: &str,
    deadline: Instant,
) -> Result<AccessKey, IdentityError> {
    let config = &identities.config.aws;
    if let Some(key) = &config.static_key {
        return Ok(key.clone());
    }
    let now = identities.now();
    if let Ok(cached) = identities.aws_keys.lock()
        && let Some((key, refresh)) = cached.as_ref()
        && now < *refresh
    {
        return Ok(key.clone());
    }
    let (key, expires) = if let Some(web) = &config.web_identity {
        let token = read_token_file(Provider::Aws, STS_STEP, &web.token_file).map_err(|e| e.hinted("AWS_WEB_IDENTITY_TOKEN_FILE is mounted by the EKS pod identity webhook when the ServiceAccount has eks.amazonaws.com/role-arn"))?;
        let session = web
            .session_name
            .clone()
            .unwrap_or_else(|| format!("hoist-{}", identities.now().as_second()));
        assume_role_with_web_identity(
            identities,
            &web.role_arn,
            &token,
            &session,
            region,
            deadline,
        )
        .await?
    } else if let Some(container) = &config.container {
        container_credentials(identities, container, deadline).await?
    } else if let Some(imds) = &config.imds {
        instance_credentials(identities, imds, deadline).await?
    } else {
        return Err(error(
            "finding credentials",
            "none of AWS_ACCESS_KEY_ID, AWS_WEB_IDENTITY_TOKEN_FILE (IRSA) or AWS_CONTAINER_CREDENTIALS_FULL_URI (EKS Pod Identity) is set, and AWS_EC2_METADATA_DISABLED turns off the instance metadata service",
            Some(
                "annotate hoist's ServiceAccount with eks.amazonaws.com/role-arn, or give it a Pod Identity association",
            ),
        ));
    };
    if let Ok(mut cached) = identities.aws_keys.lock() {
        *cached = Some((key.clone(), refresh_at(now, expires)));
    }
    Ok(key)
}

const STS_STEP: &str = "STS AssumeRoleWithWebIdentity";

async fn assume_role_with_web_identity(
    identities: &Identities,
    role_arn: &str,
    token: &str,
    session: &str,
    registry_region: &str,
    deadline: Instant,
) -> Result<(AccessKey, jiff::Timestamp), IdentityError> {
    let config = &identities.config.aws;
    let region = config.region.as_deref().unwrap_or(registry_region);
    let endpoint = config.sts_endpoint.clone().unwrap_or_else(|| {
        let domain = if region.starts_with("cn-") {
            "amazonaws.com.cn"
        } else {
            "amazonaws.com"
        };
        format!("https://sts.{region}.{domain}")
    });
    // A form body, so that the token never sits in a URL a proxy logs.
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("Action", "AssumeRoleWithWebIdentity")
        .append_pair("Version", "2011-06-15")
        .append_pair("RoleArn", role_arn)
        .append_pair("RoleSessionName", session)
        .append_pair("WebIdentityToken", token)
        .finish();
    let request = identities
        .http
        .post(&endpoint)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form);
    let answer = identities
        .send(Provider::Aws, STS_STEP, request, deadline)
        .await
        .map_err(|e| e.hinted(IRSA_HINT))?;
    let text = String::from_utf8_lossy(&answer);
    let field = |name: &str| {
        xml_text(&text, name)
            .ok_or_else(|| error(STS_STEP, format!("the answer has no {name}"), None))
    };
    let key = AccessKey {
        id: field("AccessKeyId")?,
        secret: field("SecretAccessKey")?,
        session_token: Some(field("SessionToken")?),
    };
    let expires = parse_time(Provider::Aws, STS_STEP, "Expiration", &field("Expiration")?)?;
    Ok((key, expires))
}

/// The text of the first `<name>…</name>` element, entities decoded. STS
/// answers are flat and small; a full XML parser buys nothing here.
fn xml_text(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&close)?;
    let raw = xml[start..end].trim();
    Some(
        raw.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

/// The JSON the container endpoint and IMDS answer with.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KeyAnswer {
    access_key_id: String,
    secret_access_key: String,
    token: Option<String>,
    expiration: Option<String>,
    code: Option<String>,
}

fn key_of(
    step: &str,
    answer: &[u8],
    now: jiff::Timestamp,
) -> Result<(AccessKey, jiff::Timestamp), IdentityError> {
    let answer: KeyAnswer = json(Provider::Aws, step, answer)?;
    if let Some(code) = answer.code.filter(|c| c != "Success") {
        return Err(error(
            step,
            format!(
                "the answer's Code is {}",
                crate::redact::escape_control(&code)
            ),
            None,
        ));
    }
    let expires = match &answer.expiration {
        Some(t) => parse_time(Provider::Aws, step, "Expiration", t)?,
        None => after(now, UNSTATED_LIFETIME.as_secs()),
    };
    Ok((
        AccessKey {
            id: answer.access_key_id,
            secret: answer.secret_access_key,
            session_token: answer.token,
        },
        expires,
    ))
}

const CONTAINER_STEP: &str = "the container credentials endpoint (EKS Pod Identity)";

async fn container_credentials(
    identities: &Identities,
    container: &Container,
    deadline: Instant,
) -> Result<(AccessKey, jiff::Timestamp), IdentityError> {
    let token = match (&container.token_file, &container.token) {
        (Some(file), _) => Some(read_token_file(Provider::Aws, CONTAINER_STEP, file)?),
        (None, token) => token.clone(),
    };
    let mut request = identities.metadata.get(&container.url);
    if let Some(token) = token {
        request = request.header("authorization", token);
    }
    let answer = identities
        .send(Provider::Aws, CONTAINER_STEP, request, deadline)
        .await
        .map_err(|e| e.hinted("check the Pod Identity association of hoist's ServiceAccount and that the eks-pod-identity-agent runs"))?;
    key_of(CONTAINER_STEP, &answer, identities.now())
}

const IMDS_STEP: &str = "the instance metadata service (IMDSv2)";

async fn instance_credentials(
    identities: &Identities,
    base: &str,
    deadline: Instant,
) -> Result<(AccessKey, jiff::Timestamp), IdentityError> {
    let base = base.trim_end_matches('/');
    let hint = "no AWS identity is configured (IRSA, Pod Identity or keys) and the node's instance profile gave none; on EKS, annotate hoist's ServiceAccount with eks.amazonaws.com/role-arn";
    let hinted = |e: IdentityError| e.hinted(hint);
    let session = identities
        .send(
            Provider::Aws,
            IMDS_STEP,
            identities
                .metadata
                .put(format!("{base}/latest/api/token"))
                .header("x-aws-ec2-metadata-token-ttl-seconds", "21600"),
            deadline,
        )
        .await
        .map_err(hinted)?;
    let session = String::from_utf8(session)
        .map_err(|_| error(IMDS_STEP, "the session token is not text", None))?;
    let session = session.trim();
    let roles = identities
        .send(
            Provider::Aws,
            IMDS_STEP,
            identities
                .metadata
                .get(format!("{base}/latest/meta-data/iam/security-credentials/"))
                .header("x-aws-ec2-metadata-token", session),
            deadline,
        )
        .await
        .map_err(hinted)?;
    let roles = String::from_utf8_lossy(&roles);
    let role = roles
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .ok_or_else(|| hinted(error(IMDS_STEP, "the instance has no IAM role", None)))?;
    if !role
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
    {
        return Err(error(
            IMDS_STEP,
            "the role name is not an IAM role name",
            None,
        ));
    }
    let answer = identities
        .send(
            Provider::Aws,
            IMDS_STEP,
            identities
                .metadata
                .get(format!(
                    "{base}/latest/meta-data/iam/security-credentials/{role}"
                ))
                .header("x-aws-ec2-metadata-token", session),
            deadline,
        )
        .await
        .map_err(hinted)?;
    key_of(IMDS_STEP, &answer, identities.now())
}
