//! Object-level identity: an ImageRepository's `spec.serviceAccountName`
//! (Flux's semantics, behind its ObjectLevelWorkloadIdentity gate). The
//! cloud identity is that ServiceAccount's, not hoist's: the controller
//! asks the TokenRequest API for a token of it with the cloud's audience,
//! and the cloud trades that token for a credential as it would the
//! projected token of a pod running as the ServiceAccount. One team's
//! repositories thus reach only what their own ServiceAccount may.

use std::collections::BTreeMap;

use super::*;

/// The cluster's ServiceAccounts, as the controller reaches them (the
/// TokenRequest API); tests plug in their own.
#[async_trait::async_trait]
pub trait ServiceAccounts: Send + Sync {
    /// The ServiceAccount's annotations.
    async fn annotations(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<BTreeMap<String, String>, String>;
    /// A token of the ServiceAccount for `audience`.
    async fn token(&self, namespace: &str, name: &str, audience: &str) -> Result<String, String>;
}

/// What `hoist controller --object-level-identity` turns on.
#[derive(Clone)]
pub(super) struct ObjectLevel {
    pub(super) accounts: std::sync::Arc<dyn ServiceAccounts>,
    /// `--default-service-account`: the ServiceAccount (of the object's
    /// namespace) a repository without `serviceAccountName` gets, so that
    /// no team borrows hoist's own identity.
    pub(super) default: Option<String>,
}

/// The annotations each cloud reads, as its pod identity webhook does.
pub const AWS_ROLE_ARN: &str = "eks.amazonaws.com/role-arn";
pub const AZURE_CLIENT_ID: &str = "azure.workload.identity/client-id";
pub const AZURE_TENANT_ID: &str = "azure.workload.identity/tenant-id";
pub const GCP_WORKLOAD_IDENTITY_PROVIDER: &str = "gcp.auth.fluxcd.io/workload-identity-provider";
pub const GCP_SERVICE_ACCOUNT: &str = "iam.gke.io/gcp-service-account";

/// How one ServiceAccount logs in to a provider: decided from its
/// annotations alone, before any request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Federation {
    /// STS AssumeRoleWithWebIdentity into `role_arn`.
    Aws { role_arn: String },
    /// An Entra token for the application `client_id`.
    Azure {
        client_id: String,
        tenant_id: String,
    },
    /// Google STS for the pool provider, then optionally impersonation.
    Gcp {
        provider: String,
        service_account: Option<String>,
    },
}

impl Federation {
    /// Reads the annotations `provider` needs; a missing or malformed one
    /// is an error naming it. `tenant` is AZURE_TENANT_ID, the fallback
    /// for an application without a tenant annotation.
    pub(super) fn of(
        provider: Provider,
        account: &str,
        annotations: &BTreeMap<String, String>,
        tenant: Option<&str>,
    ) -> Result<Federation, IdentityError> {
        let get = |name: &str| {
            annotations
                .get(name)
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
        };
        let missing = |name: &str| IdentityError {
            provider,
            step: format!("reading ServiceAccount {account}"),
            message: format!("it has no {name} annotation"),
            hint: Some(format!(
                "annotate the ServiceAccount with {name}, as for a pod running as it"
            )),
        };
        let malformed = |name: &str, what: &str| IdentityError {
            provider,
            step: format!("reading ServiceAccount {account}"),
            message: format!("its {name} annotation is not {what}"),
            hint: None,
        };
        match provider {
            Provider::Aws => {
                let role = get(AWS_ROLE_ARN).ok_or_else(|| missing(AWS_ROLE_ARN))?;
                let fits = role.starts_with("arn:aws")
                    && role
                        .split(':')
                        .nth(5)
                        .is_some_and(|r| r.starts_with("role/"))
                    && role.bytes().all(|b| b.is_ascii_graphic());
                if !fits {
                    return Err(malformed(AWS_ROLE_ARN, "an IAM role ARN"));
                }
                Ok(Federation::Aws {
                    role_arn: role.to_string(),
                })
            }
            Provider::Azure => {
                let client = get(AZURE_CLIENT_ID).ok_or_else(|| missing(AZURE_CLIENT_ID))?;
                let tenant = get(AZURE_TENANT_ID)
                    .or(tenant)
                    .ok_or_else(|| missing(AZURE_TENANT_ID))?;
                let plain = |v: &str| {
                    v.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
                };
                if !plain(client) {
                    return Err(malformed(AZURE_CLIENT_ID, "an application (client) id"));
                }
                if !plain(tenant) {
                    return Err(malformed(AZURE_TENANT_ID, "a tenant id or domain"));
                }
                Ok(Federation::Azure {
                    client_id: client.to_string(),
                    tenant_id: tenant.to_string(),
                })
            }
            Provider::Gcp => {
                let pool = get(GCP_WORKLOAD_IDENTITY_PROVIDER)
                    .ok_or_else(|| missing(GCP_WORKLOAD_IDENTITY_PROVIDER))?;
                let parts: Vec<&str> = pool.split('/').collect();
                let fits = parts.len() == 8
                    && parts[0] == "projects"
                    && parts[2] == "locations"
                    && parts[4] == "workloadIdentityPools"
                    && parts[6] == "providers"
                    && parts.iter().all(|p| {
                        !p.is_empty()
                            && p.bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                    });
                if !fits {
                    return Err(malformed(
                        GCP_WORKLOAD_IDENTITY_PROVIDER,
                        "projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER",
                    ));
                }
                let service_account = match get(GCP_SERVICE_ACCOUNT) {
                    None => None,
                    Some(email)
                        if email.ends_with(".iam.gserviceaccount.com")
                            && email
                                .bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b"@.-_".contains(&b)) =>
                    {
                        Some(email.to_string())
                    }
                    Some(_) => {
                        return Err(malformed(
                            GCP_SERVICE_ACCOUNT,
                            "a service account email (NAME@PROJECT.iam.gserviceaccount.com)",
                        ));
                    }
                };
                Ok(Federation::Gcp {
                    provider: pool.to_string(),
                    service_account,
                })
            }
        }
    }

    /// The audience the ServiceAccount's token is asked for: what the
    /// cloud's token exchange expects.
    pub(super) fn audience(&self) -> String {
        match self {
            Federation::Aws { .. } => "sts.amazonaws.com".to_string(),
            Federation::Azure { .. } => "api://AzureADTokenExchange".to_string(),
            Federation::Gcp { provider, .. } => format!("https://iam.googleapis.com/{provider}"),
        }
    }

    /// What the credential's cache key carries of it: a changed
    /// annotation is a different identity, fetched anew.
    pub(super) fn key(&self) -> String {
        format!("{self:?}")
    }
}

/// `provider`'s credential for `host` as the ServiceAccount `namespace/name`.
pub(super) async fn credential(
    identities: &Identities,
    level: &ObjectLevel,
    provider: Provider,
    host: &str,
    namespace: &str,
    name: &str,
    deadline: Instant,
) -> Result<Credential, IdentityError> {
    let account = format!("{namespace}/{name}");
    let cluster = |step: &str, message: String| {
        IdentityError {
        provider,
        step: step.to_string(),
        message,
        hint: Some(
            "hoist's ServiceAccount needs get on serviceaccounts and create on serviceaccounts/token in that namespace".to_string(),
        ),
    }
    };
    let step = format!("reading ServiceAccount {account}");
    let annotations = bounded(deadline, level.accounts.annotations(namespace, name))
        .await
        .map_err(|message| cluster(&step, message))?;
    let federation = Federation::of(
        provider,
        &account,
        &annotations,
        identities.config.azure.tenant_id.as_deref(),
    )?;
    let key = (
        provider,
        host.to_string(),
        Some(format!("{account} {}", federation.key())),
    );
    if let Some(credential) = identities.cached(&key) {
        return Ok(credential);
    }
    let _refreshing = identities.refreshing.lock().await;
    if let Some(credential) = identities.cached(&key) {
        return Ok(credential);
    }
    let step = format!("TokenRequest for ServiceAccount {account}");
    let token = bounded(
        deadline,
        level
            .accounts
            .token(namespace, name, &federation.audience()),
    )
    .await
    .map_err(|message| cluster(&step, message))?;
    let (credential, expires) = match &federation {
        Federation::Aws { role_arn } => {
            // A session name AWS takes (64 characters of [\w+=,.@-]) that
            // says in CloudTrail which object asked.
            let session: String = format!("hoist.{namespace}.{name}")
                .chars()
                .take(64)
                .collect();
            aws::as_role(identities, host, role_arn, &token, &session, deadline).await?
        }
        Federation::Azure {
            client_id,
            tenant_id,
        } => {
            azure::as_application(identities, host, &token, client_id, tenant_id, deadline).await?
        }
        Federation::Gcp {
            provider,
            service_account,
        } => {
            gcp::as_pool_provider(
                identities,
                provider,
                service_account.as_deref(),
                &token,
                deadline,
            )
            .await?
        }
    };
    identities.keep(key, credential.clone(), expires);
    Ok(credential)
}

/// A cluster call, cut at the repository's deadline.
async fn bounded<T>(
    deadline: Instant,
    call: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, String> {
    tokio::time::timeout_at(deadline, call)
        .await
        .unwrap_or_else(|_| Err("no answer within the repository's timeout".to_string()))
}
