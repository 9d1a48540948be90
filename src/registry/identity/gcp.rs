//! `provider: gcp`: an OAuth2 access token, used as the password of
//! `oauth2accesstoken` for gcr.io and Artifact Registry. From a workload
//! identity federation credentials file (`external_account`, subject
//! token read from a file) when `GOOGLE_APPLICATION_CREDENTIALS` names
//! one, else from the GKE metadata server (workload identity).

use std::path::PathBuf;

use serde::Deserialize;

use super::*;

/// Where Google access tokens come from.
#[derive(Clone, Debug)]
pub struct GcpConfig {
    /// `GCE_METADATA_HOST`, default `metadata.google.internal`.
    pub metadata_host: String,
    /// `GOOGLE_APPLICATION_CREDENTIALS`.
    pub credentials_file: Option<PathBuf>,
    /// Google's STS and IAM Credentials endpoints, for a ServiceAccount's
    /// own identity (a credentials file names its own); tests move them.
    pub sts_url: String,
    pub iam_credentials_url: String,
}

impl Default for GcpConfig {
    fn default() -> Self {
        GcpConfig::from_vars(&|_| None)
    }
}

impl GcpConfig {
    pub(super) fn from_vars(var: &impl Fn(&str) -> Option<String>) -> Self {
        GcpConfig {
            metadata_host: var("GCE_METADATA_HOST")
                .unwrap_or_else(|| "metadata.google.internal".to_string()),
            credentials_file: var("GOOGLE_APPLICATION_CREDENTIALS").map(PathBuf::from),
            sts_url: "https://sts.googleapis.com/v1/token".to_string(),
            iam_credentials_url: "https://iamcredentials.googleapis.com".to_string(),
        }
    }
}

/// gcr.io, its regional hosts, and Artifact Registry's `*-docker.pkg.dev`.
pub(super) fn is_registry(host: &str) -> bool {
    host == "gcr.io"
        || host.strip_suffix(".gcr.io").is_some_and(|h| !h.is_empty())
        || host
            .strip_suffix("-docker.pkg.dev")
            .is_some_and(|h| !h.is_empty() && !h.contains('.'))
}

fn error(step: &str, message: impl Into<String>, hint: Option<&str>) -> IdentityError {
    IdentityError {
        provider: Provider::Gcp,
        step: step.to_string(),
        message: message.into(),
        hint: hint.map(str::to_string),
    }
}

const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";

/// The answer of the metadata server and of Google's STS.
#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: Option<u64>,
}

pub(super) async fn credential(
    identities: &Identities,
    deadline: Instant,
) -> Result<(Credential, jiff::Timestamp), IdentityError> {
    let config = &identities.config.gcp;
    let (token, expires) = match &config.credentials_file {
        Some(file) => {
            let exchange = read_credentials_file(file)?;
            federate(identities, &exchange, deadline).await?
        }
        None => metadata(identities, &config.metadata_host, deadline).await?,
    };
    Ok(registry_credential(token, expires))
}

/// A registry credential as the workload identity pool provider
/// `provider` (`projects/N/locations/L/workloadIdentityPools/P/providers/K`)
/// admits the ServiceAccount token `token`, impersonating
/// `service_account` when one is given (object-level identity).
pub(super) async fn as_pool_provider(
    identities: &Identities,
    provider: &str,
    service_account: Option<&str>,
    token: &str,
    deadline: Instant,
) -> Result<(Credential, jiff::Timestamp), IdentityError> {
    let config = &identities.config.gcp;
    let exchange = Exchange {
        audience: format!("//iam.googleapis.com/{provider}"),
        token_url: config.sts_url.clone(),
        subject_type: JWT.to_string(),
        subject: token.to_string(),
        impersonation_url: service_account.map(|email| {
            format!(
                "{}/v1/projects/-/serviceAccounts/{email}:generateAccessToken",
                config.iam_credentials_url.trim_end_matches('/')
            )
        }),
    };
    let (token, expires) = federate(identities, &exchange, deadline).await?;
    Ok(registry_credential(token, expires))
}

fn registry_credential(token: String, expires: jiff::Timestamp) -> (Credential, jiff::Timestamp) {
    (
        Credential::Basic {
            username: "oauth2accesstoken".to_string(),
            password: token,
        },
        expires,
    )
}

const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";

/// A token exchange at Google's STS: what a credentials file or a
/// ServiceAccount's annotations say.
struct Exchange {
    audience: String,
    token_url: String,
    subject_type: String,
    subject: String,
    impersonation_url: Option<String>,
}

const METADATA_STEP: &str = "the GKE metadata server";

async fn metadata(
    identities: &Identities,
    host: &str,
    deadline: Instant,
) -> Result<(String, jiff::Timestamp), IdentityError> {
    let url = format!("http://{host}/computeMetadata/v1/instance/service-accounts/default/token");
    let answer = identities
        .send(
            Provider::Gcp,
            METADATA_STEP,
            identities
                .metadata
                .get(url)
                .header("metadata-flavor", "Google"),
            deadline,
        )
        .await
        .map_err(|e| e.hinted("on GKE, enable workload identity on the node pool and annotate hoist's ServiceAccount with iam.gke.io/gcp-service-account; elsewhere set GOOGLE_APPLICATION_CREDENTIALS to a workload identity federation file"))?;
    let answer: TokenAnswer = json(Provider::Gcp, METADATA_STEP, &answer)?;
    let now = identities.now();
    let expires = after(
        now,
        answer.expires_in.unwrap_or(UNSTATED_LIFETIME.as_secs()),
    );
    Ok((answer.access_token, expires))
}

/// A workload identity federation configuration, the parts hoist reads.
#[derive(Deserialize)]
struct ExternalAccount {
    #[serde(rename = "type")]
    kind: String,
    audience: Option<String>,
    subject_token_type: Option<String>,
    token_url: Option<String>,
    service_account_impersonation_url: Option<String>,
    credential_source: Option<CredentialSource>,
}

#[derive(Deserialize)]
struct CredentialSource {
    file: Option<PathBuf>,
    #[serde(default)]
    format: Option<SourceFormat>,
    url: Option<String>,
    executable: Option<serde_json::Value>,
    environment_id: Option<String>,
}

#[derive(Deserialize)]
struct SourceFormat {
    #[serde(rename = "type")]
    kind: Option<String>,
    subject_token_field_name: Option<String>,
}

const FILE_STEP: &str = "reading GOOGLE_APPLICATION_CREDENTIALS";
const STS_STEP: &str = "Google STS token exchange";
const IMPERSONATION_STEP: &str = "IAM generateAccessToken (service account impersonation)";

fn read_credentials_file(file: &std::path::Path) -> Result<Exchange, IdentityError> {
    let text = read_token_file(Provider::Gcp, FILE_STEP, file)?;
    let account: ExternalAccount = json(Provider::Gcp, FILE_STEP, text.as_bytes())?;
    if account.kind != "external_account" {
        return Err(error(
            FILE_STEP,
            format!(
                "{} is of type {:?}; only external_account (workload identity federation) is taken, so that no long-lived key is needed",
                file.display(),
                crate::redact::escape_control(&account.kind)
            ),
            None,
        ));
    }
    let missing = |field: &str| {
        error(
            FILE_STEP,
            format!("{}: {field} is missing", file.display()),
            None,
        )
    };
    let source = account
        .credential_source
        .ok_or_else(|| missing("credential_source"))?;
    if source.executable.is_some() || source.url.is_some() || source.environment_id.is_some() {
        return Err(error(
            FILE_STEP,
            format!(
                "{}: only a credential_source.file is taken (hoist runs no programs and reads no other sources)",
                file.display()
            ),
            None,
        ));
    }
    let subject_file = source
        .file
        .ok_or_else(|| missing("credential_source.file"))?;
    let raw = read_token_file(Provider::Gcp, FILE_STEP, &subject_file)?;
    let subject = match source.format.as_ref().and_then(|f| f.kind.as_deref()) {
        Some("json") => {
            let field = source
                .format
                .as_ref()
                .and_then(|f| f.subject_token_field_name.clone())
                .ok_or_else(|| missing("credential_source.format.subject_token_field_name"))?;
            let value: serde_json::Value = json(Provider::Gcp, FILE_STEP, raw.as_bytes())?;
            value
                .get(&field)
                .and_then(|v| v.as_str())
                .map(str::to_string)
                .ok_or_else(|| {
                    error(
                        FILE_STEP,
                        format!("{} has no string field {field}", subject_file.display()),
                        None,
                    )
                })?
        }
        None | Some("text") => raw,
        Some(other) => {
            return Err(error(
                FILE_STEP,
                format!(
                    "credential_source.format.type {:?} is not text or json",
                    crate::redact::escape_control(other)
                ),
                None,
            ));
        }
    };
    Ok(Exchange {
        audience: account.audience.ok_or_else(|| missing("audience"))?,
        token_url: account
            .token_url
            .unwrap_or_else(|| "https://sts.googleapis.com/v1/token".to_string()),
        subject_type: account
            .subject_token_type
            .unwrap_or_else(|| JWT.to_string()),
        subject,
        impersonation_url: account.service_account_impersonation_url,
    })
}

/// Google STS, then impersonation when the exchange names it.
async fn federate(
    identities: &Identities,
    exchange: &Exchange,
    deadline: Instant,
) -> Result<(String, jiff::Timestamp), IdentityError> {
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair(
            "grant_type",
            "urn:ietf:params:oauth:grant-type:token-exchange",
        )
        .append_pair("audience", &exchange.audience)
        .append_pair("scope", CLOUD_PLATFORM)
        .append_pair(
            "requested_token_type",
            "urn:ietf:params:oauth:token-type:access_token",
        )
        .append_pair("subject_token", &exchange.subject)
        .append_pair("subject_token_type", &exchange.subject_type)
        .finish();
    let answer = identities
        .send(
            Provider::Gcp,
            STS_STEP,
            identities
                .http
                .post(&exchange.token_url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form),
            deadline,
        )
        .await
        .map_err(|e| e.hinted("check the workload identity pool provider named by audience and that it trusts the token's issuer"))?;
    let answer: TokenAnswer = json(Provider::Gcp, STS_STEP, &answer)?;
    let now = identities.now();
    let federated_expiry = after(
        now,
        answer.expires_in.unwrap_or(UNSTATED_LIFETIME.as_secs()),
    );
    let Some(impersonate) = &exchange.impersonation_url else {
        return Ok((answer.access_token, federated_expiry));
    };
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Impersonated {
        access_token: String,
        expire_time: String,
    }
    let body = serde_json::json!({"scope": [CLOUD_PLATFORM], "lifetime": "3600s"});
    let answer = identities
        .send(
            Provider::Gcp,
            IMPERSONATION_STEP,
            identities
                .http
                .post(impersonate)
                .bearer_auth(&answer.access_token)
                .json(&body),
            deadline,
        )
        .await
        .map_err(|e| e.hinted("grant the federated principal roles/iam.workloadIdentityUser (or serviceAccountTokenCreator) on the service account"))?;
    let answer: Impersonated = json(Provider::Gcp, IMPERSONATION_STEP, &answer)?;
    let expires = parse_time(
        Provider::Gcp,
        IMPERSONATION_STEP,
        "expireTime",
        &answer.expire_time,
    )?;
    Ok((answer.access_token, expires))
}
