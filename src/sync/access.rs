//! Whose identity `spec.sync` applies, prunes and waits with: a
//! ServiceAccount of the automation's own namespace, impersonated (Flux's
//! `spec.serviceAccountName` and `--default-service-account`), or, when
//! neither names one, the command's own.

use std::fmt;

/// How the sync stage reaches the cluster.
#[derive(Clone)]
pub struct ClusterAccess {
    /// The command's own connection, from which impersonating ones are made.
    config: kube::Config,
    client: kube::Client,
    /// The ServiceAccount an automation without `spec.serviceAccountName`
    /// runs as (`--default-service-account`).
    default_service_account: Option<String>,
}

impl fmt::Debug for ClusterAccess {
    // Not the config: it may hold a token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterAccess")
            .field("cluster_url", &self.config.cluster_url.to_string())
            .field("default_service_account", &self.default_service_account)
            .finish_non_exhaustive()
    }
}

/// The user name a ServiceAccount authenticates as.
pub fn service_account_user(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

impl ClusterAccess {
    pub fn new(
        config: kube::Config,
        default_service_account: Option<String>,
    ) -> Result<ClusterAccess, kube::Error> {
        let client = kube::Client::try_from(config.clone())?;
        Ok(ClusterAccess {
            config,
            client,
            default_service_account,
        })
    }

    /// The API server's address, for messages.
    pub fn server(&self) -> String {
        self.config.cluster_url.to_string()
    }

    /// `--default-service-account`.
    pub fn default_service_account(&self) -> Option<&str> {
        self.default_service_account.as_deref()
    }

    /// The command's own client.
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// The client a sync of an automation in `namespace` uses, and the
    /// ServiceAccount it impersonates (`None`: the command's identity).
    /// Only a ServiceAccount of that namespace can be named, so one team's
    /// automation never acts as another team's.
    pub fn client_for(
        &self,
        namespace: &str,
        service_account: Option<&str>,
    ) -> Result<(kube::Client, Option<String>), ImpersonationError> {
        let Some(name) = service_account.or(self.default_service_account.as_deref()) else {
            return Ok((self.client.clone(), None));
        };
        let user = service_account_user(namespace, name);
        let mut config = self.config.clone();
        config.auth_info.impersonate = Some(user.clone());
        // The API server adds a ServiceAccount's own groups; none other.
        config.auth_info.impersonate_groups = None;
        let client = kube::Client::try_from(config).map_err(|source| ImpersonationError {
            user: user.clone(),
            source,
        })?;
        Ok((client, Some(user)))
    }
}

/// A client that impersonates a ServiceAccount could not be made.
#[derive(Debug, thiserror::Error)]
#[error("a client impersonating {user}: {source}")]
pub struct ImpersonationError {
    pub user: String,
    #[source]
    pub source: kube::Error,
}
