//! The cluster's ServiceAccounts for object-level registry identity
//! (`spec.serviceAccountName` with `--object-level-identity`): their
//! annotations, and tokens from the TokenRequest API.

use std::collections::BTreeMap;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};

/// How long an issued token lives: the shortest the API server grants
/// is ten minutes, and the cloud's credential outlives it anyway.
const TOKEN_SECONDS: i64 = 3600;

pub(super) struct ClusterServiceAccounts {
    pub(super) client: kube::Client,
}

/// A Kubernetes error as one line, without what the server echoed of
/// the request (a token request's answer is never quoted).
fn describe(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => format!("{} ({})", status.message, status.code),
        other => other.to_string(),
    }
}

#[async_trait::async_trait]
impl crate::registry::identity::ServiceAccounts for ClusterServiceAccounts {
    async fn annotations(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<BTreeMap<String, String>, String> {
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), namespace);
        let account = api.get(name).await.map_err(|e| describe(&e))?;
        Ok(account.metadata.annotations.unwrap_or_default())
    }

    async fn token(&self, namespace: &str, name: &str, audience: &str) -> Result<String, String> {
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), namespace);
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: vec![audience.to_string()],
                expiration_seconds: Some(TOKEN_SECONDS),
                bound_object_ref: None,
            },
            ..TokenRequest::default()
        };
        let issued = api
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .map_err(|e| describe(&e))?;
        issued
            .status
            .map(|s| s.token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| "the TokenRequest answer has no token".to_string())
    }
}
