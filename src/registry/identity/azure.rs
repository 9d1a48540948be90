//! `provider: azure`: a Microsoft Entra (AAD) access token from workload
//! identity (a federated token file) or managed identity (IMDS). The
//! registry client trades it at the registry's `/oauth2/exchange` for an
//! ACR refresh token when the registry challenges
//! ([`Credential::AadToken`]): that endpoint is the registry's own.

use std::path::PathBuf;

use serde::Deserialize;

use super::*;

/// Where AAD tokens come from, as the Azure SDKs read the environment.
#[derive(Clone, Debug)]
pub struct AzureConfig {
    /// `AZURE_CLIENT_ID`: the workload identity's application, or a
    /// user-assigned managed identity.
    pub client_id: Option<String>,
    /// `AZURE_TENANT_ID`.
    pub tenant_id: Option<String>,
    /// `AZURE_FEDERATED_TOKEN_FILE`.
    pub federated_token_file: Option<PathBuf>,
    /// `AZURE_AUTHORITY_HOST`, default `https://login.microsoftonline.com/`.
    pub authority_host: String,
    /// The instance metadata service, `http://169.254.169.254`.
    pub imds: String,
}

impl Default for AzureConfig {
    fn default() -> Self {
        AzureConfig::from_vars(&|_| None)
    }
}

impl AzureConfig {
    pub(super) fn from_vars(var: &impl Fn(&str) -> Option<String>) -> Self {
        AzureConfig {
            client_id: var("AZURE_CLIENT_ID"),
            tenant_id: var("AZURE_TENANT_ID"),
            federated_token_file: var("AZURE_FEDERATED_TOKEN_FILE").map(PathBuf::from),
            authority_host: var("AZURE_AUTHORITY_HOST")
                .unwrap_or_else(|| "https://login.microsoftonline.com/".to_string()),
            imds: var("AZURE_IMDS_ENDPOINT")
                .unwrap_or_else(|| "http://169.254.169.254".to_string()),
        }
    }
}

/// An ACR host of Azure's public, China, US Government or German cloud.
pub(super) fn is_registry(host: &str) -> bool {
    [".azurecr.io", ".azurecr.cn", ".azurecr.us", ".azurecr.de"]
        .iter()
        .any(|suffix| {
            host.strip_suffix(suffix)
                .is_some_and(|name| !name.is_empty())
        })
}

/// What an Entra token for ACR is asked for: the registry audience, the
/// same in every cloud (earlier clients asked for the resource manager's).
const ACR_RESOURCE: &str = "https://containerregistry.azure.net";

fn error(step: &str, message: impl Into<String>, hint: Option<&str>) -> IdentityError {
    IdentityError {
        provider: Provider::Azure,
        step: step.to_string(),
        message: message.into(),
        hint: hint.map(str::to_string),
    }
}

const WORKLOAD_STEP: &str = "Microsoft Entra token (workload identity)";
const IMDS_STEP: &str = "the instance metadata service (managed identity)";

pub(super) async fn credential(
    identities: &Identities,
    host: &str,
    deadline: Instant,
) -> Result<(Credential, jiff::Timestamp), IdentityError> {
    let host = host.split(':').next().unwrap_or(host);
    if !is_registry(host) {
        return Err(error(
            "reading the registry host",
            format!("{host} is not an Azure registry"),
            None,
        ));
    }
    let resource = ACR_RESOURCE;
    let config = &identities.config.azure;
    let (token, expires) = match (
        &config.federated_token_file,
        &config.client_id,
        &config.tenant_id,
    ) {
        (Some(file), Some(client), Some(tenant)) => {
            let assertion = read_token_file(Provider::Azure, WORKLOAD_STEP, file)?;
            workload(identities, &assertion, client, tenant, resource, deadline).await?
        }
        (Some(_), _, _) => {
            return Err(error(
                WORKLOAD_STEP,
                "AZURE_FEDERATED_TOKEN_FILE is set without AZURE_CLIENT_ID and AZURE_TENANT_ID",
                Some(
                    "label hoist's pod azure.workload.identity/use: \"true\" and annotate its ServiceAccount with azure.workload.identity/client-id",
                ),
            ));
        }
        _ => managed(identities, config, resource, deadline).await?,
    };
    Ok((
        Credential::AadToken {
            token,
            tenant: config.tenant_id.clone(),
        },
        expires,
    ))
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    /// A number from Entra, a string from IMDS.
    expires_in: Option<serde_json::Value>,
}

impl TokenAnswer {
    fn expires(&self, now: jiff::Timestamp) -> jiff::Timestamp {
        let seconds = match &self.expires_in {
            Some(serde_json::Value::Number(n)) => n.as_u64(),
            Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
            _ => None,
        };
        after(now, seconds.unwrap_or(UNSTATED_LIFETIME.as_secs()))
    }
}

/// A registry credential for `host` as the Entra application `client`
/// of `tenant`, whose federated credential admits the ServiceAccount
/// token `assertion` (object-level identity).
pub(super) async fn as_application(
    identities: &Identities,
    host: &str,
    assertion: &str,
    client: &str,
    tenant: &str,
    deadline: Instant,
) -> Result<(Credential, jiff::Timestamp), IdentityError> {
    let bare = host.split(':').next().unwrap_or(host);
    if !is_registry(bare) {
        return Err(error(
            "reading the registry host",
            format!("{bare} is not an Azure registry"),
            None,
        ));
    }
    let (token, expires) = workload(
        identities,
        assertion,
        client,
        tenant,
        ACR_RESOURCE,
        deadline,
    )
    .await?;
    Ok((
        Credential::AadToken {
            token,
            tenant: Some(tenant.to_string()),
        },
        expires,
    ))
}

async fn workload(
    identities: &Identities,
    assertion: &str,
    client: &str,
    tenant: &str,
    resource: &str,
    deadline: Instant,
) -> Result<(String, jiff::Timestamp), IdentityError> {
    if !tenant
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return Err(error(
            WORKLOAD_STEP,
            "AZURE_TENANT_ID is not a tenant id or domain",
            None,
        ));
    }
    let authority = identities.config.azure.authority_host.trim_end_matches('/');
    let url = format!("{authority}/{tenant}/oauth2/v2.0/token");
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("client_id", client)
        .append_pair(
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        )
        .append_pair("client_assertion", assertion)
        .append_pair("grant_type", "client_credentials")
        .append_pair("scope", &format!("{resource}/.default"))
        .finish();
    let answer = identities
        .send(
            Provider::Azure,
            WORKLOAD_STEP,
            identities
                .http
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form),
            deadline,
        )
        .await
        .map_err(|e| e.hinted("check the federated identity credential of the application named by azure.workload.identity/client-id: its subject must be system:serviceaccount:NAMESPACE:NAME of hoist's ServiceAccount"))?;
    let answer: TokenAnswer = json(Provider::Azure, WORKLOAD_STEP, &answer)?;
    let expires = answer.expires(identities.now());
    Ok((answer.access_token, expires))
}

async fn managed(
    identities: &Identities,
    config: &AzureConfig,
    resource: &str,
    deadline: Instant,
) -> Result<(String, jiff::Timestamp), IdentityError> {
    let base = config.imds.trim_end_matches('/');
    let mut url = url::Url::parse(&format!("{base}/metadata/identity/oauth2/token"))
        .map_err(|e| error(IMDS_STEP, format!("the endpoint is not a URL: {e}"), None))?;
    url.query_pairs_mut()
        .append_pair("api-version", "2018-02-01")
        .append_pair("resource", resource);
    if let Some(client) = &config.client_id {
        url.query_pairs_mut().append_pair("client_id", client);
    }
    let answer = identities
        .send(
            Provider::Azure,
            IMDS_STEP,
            identities.metadata.get(url).header("metadata", "true"),
            deadline,
        )
        .await
        .map_err(|e| e.hinted("no workload identity is configured (AZURE_FEDERATED_TOKEN_FILE) and the node gave no managed identity token; assign the AcrPull role to the kubelet's or hoist's identity"))?;
    let answer: TokenAnswer = json(Provider::Azure, IMDS_STEP, &answer)?;
    let expires = answer.expires(identities.now());
    Ok((answer.access_token, expires))
}
