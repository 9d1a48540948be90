//! Registry authentication: Basic, and Bearer tokens from the
//! challenge's realm, remembered per registry, repository and credential
//! until shortly before they expire.

use super::*;

/// An `Authorization` header value, and when it stops being good.
#[derive(Clone)]
pub(super) struct Authorization {
    pub(super) header: String,
    pub(super) expires: Option<Instant>,
}

impl Registry {
    pub(super) fn remembered(&self, key: &(String, String, String)) -> Option<String> {
        let map = self
            .authorizations
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        map.get(key)
            .filter(|a| a.expires.is_none_or(|at| Instant::now() < at))
            .map(|a| a.header.clone())
    }

    pub(super) fn remember(&self, key: &(String, String, String), authorization: &Authorization) {
        let mut map = self
            .authorizations
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        map.insert(key.clone(), authorization.clone());
    }

    /// A Bearer token from the challenge's realm for the repository's pull
    /// scope, asked for with the credential (Basic, or an identity token
    /// traded through the OAuth2 refresh grant).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn token(
        &self,
        client: &reqwest::Client,
        target: &ScanTarget,
        realm: &str,
        service: Option<&str>,
        scope: Option<&str>,
        credential: Option<&Credential>,
        deadline: Instant,
    ) -> Result<Authorization, RegistryError> {
        let image = target.image.canonical();
        let scope = scope
            .map(str::to_string)
            .unwrap_or_else(|| format!("repository:{}:pull", target.image.repository));
        let token_error = |path: &str, f: Failure| RegistryError {
            image: image.clone(),
            // The path comes from the registry's challenge.
            request: format!("GET {}", crate::redact::escape_control(path)),
            ..self.scrubbed(target, f)
        };
        let url = Url::parse(realm).map_err(|e| {
            token_error(
                realm,
                Failure::new(
                    FailureKind::Protocol,
                    format!("the token realm is not a URL: {e}"),
                ),
            )
        })?;
        let realm_host = url.host_str().unwrap_or("").to_string();
        let path = url.path().to_string();
        let exchanged;
        let credential = match credential {
            Some(aad @ Credential::AadToken { token, tenant }) => {
                let key = (target.image.registry.clone(), aad.fingerprint());
                let known = self
                    .exchanged
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&key)
                    .cloned();
                let refresh = match known {
                    Some(refresh) => refresh,
                    None => {
                        let refresh = self
                            .acr_exchange(
                                client,
                                target,
                                &url,
                                service,
                                token,
                                tenant.as_deref(),
                                deadline,
                            )
                            .await?;
                        let mut known = self.exchanged.lock().unwrap_or_else(|e| e.into_inner());
                        // Entra tokens are renewed hourly: keep the map
                        // from growing with the ones gone by.
                        if known.len() >= 64 {
                            known.clear();
                        }
                        known.insert(key, refresh.clone());
                        refresh
                    }
                };
                exchanged = Credential::IdentityToken(refresh);
                Some(&exchanged)
            }
            other => other,
        };
        let mut form: Vec<(&str, String)> = Vec::new();
        if let Some(service) = service {
            form.push(("service", service.to_string()));
        }
        form.push(("scope", scope));
        let request = || match credential {
            Some(Credential::IdentityToken(token)) => {
                let mut form = form.clone();
                form.push(("grant_type", "refresh_token".to_string()));
                form.push(("client_id", "hoist".to_string()));
                form.push(("refresh_token", token.clone()));
                let body = url::form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(form.iter().map(|(k, v)| (*k, v.as_str())))
                    .finish();
                client
                    .post(url.clone())
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    )
                    .body(body)
            }
            other => {
                let mut u = url.clone();
                u.query_pairs_mut()
                    .extend_pairs(form.iter().map(|(k, v)| (*k, v.as_str())));
                let r = client.get(u);
                match other {
                    Some(Credential::Basic { username, password }) => {
                        r.header(AUTHORIZATION, basic(username, password))
                    }
                    _ => r,
                }
            }
        };
        let response = self
            .send(&realm_host, deadline, request)
            .await
            .map_err(|f| token_error(&path, f))?;
        if !response.status().is_success() {
            return Err(token_error(&path, failure_from(response, deadline).await));
        }
        let body = read_body(response, deadline, MAX_TOKEN)
            .await
            .map_err(|f| token_error(&path, f))?;
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|e| {
            token_error(
                &path,
                Failure::new(
                    FailureKind::Protocol,
                    format!("the token response is not JSON: {e}"),
                ),
            )
        })?;
        let token = parsed
            .token
            .or(parsed.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                token_error(
                    &path,
                    Failure::new(
                        FailureKind::Protocol,
                        "the token response has neither token nor access_token",
                    ),
                )
            })?;
        // The spec's default lifetime is 60 s; renew a little early.
        let lifetime = Duration::from_secs(parsed.expires_in.unwrap_or(60)).min(MAX_TOKEN_LIFETIME);
        Ok(Authorization {
            header: format!("Bearer {token}"),
            expires: Instant::now().checked_add(lifetime.saturating_sub(Duration::from_secs(5))),
        })
    }
}

impl Registry {
    /// Trades a Microsoft Entra access token for an ACR refresh token at
    /// the registry's `/oauth2/exchange`, beside the challenge's realm. The
    /// realm must be on the registry's own host: the Entra token opens
    /// more than this registry, and goes nowhere else.
    #[allow(clippy::too_many_arguments)]
    async fn acr_exchange(
        &self,
        client: &reqwest::Client,
        target: &ScanTarget,
        realm: &Url,
        service: Option<&str>,
        token: &str,
        tenant: Option<&str>,
        deadline: Instant,
    ) -> Result<String, RegistryError> {
        let image = target.image.canonical();
        let registry_host = target.image.registry.split(':').next().unwrap_or_default();
        let failed = |f: Failure| RegistryError {
            image: image.clone(),
            request: "POST /oauth2/exchange".to_string(),
            ..self.scrubbed(target, f)
        };
        if realm.host_str() != Some(registry_host) {
            return Err(failed(Failure::new(
                FailureKind::Credentials,
                format!(
                    "spec.provider azure: the registry's token realm is on {}, not on {registry_host}; the Entra token is sent only to the registry itself",
                    crate::redact::escape_control(realm.host_str().unwrap_or("no host"))
                ),
            )));
        }
        let mut url = realm.clone();
        url.set_path("/oauth2/exchange");
        url.set_query(None);
        // The serializer is not Send: built and dropped before any await.
        let body = {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "access_token")
                .append_pair("service", service.unwrap_or(registry_host))
                .append_pair("access_token", token);
            if let Some(tenant) = tenant {
                form.append_pair("tenant", tenant);
            }
            form.finish()
        };
        let request = || {
            client
                .post(url.clone())
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(body.clone())
        };
        let response = self
            .send(realm.host_str().unwrap_or_default(), deadline, request)
            .await
            .map_err(failed)?;
        if !response.status().is_success() {
            let mut f = failure_from(response, deadline).await;
            f.detail = format!(
                "{}; check that hoist's identity has the AcrPull role on the registry",
                f.detail
            );
            return Err(failed(f));
        }
        let body = read_body(response, deadline, MAX_TOKEN)
            .await
            .map_err(failed)?;
        #[derive(serde::Deserialize)]
        struct Exchanged {
            refresh_token: Option<String>,
        }
        serde_json::from_slice::<Exchanged>(&body)
            .ok()
            .and_then(|e| e.refresh_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                failed(Failure::new(
                    FailureKind::Protocol,
                    "the exchange's answer has no refresh_token",
                ))
            })
    }
}

pub(super) fn basic(username: &str, password: &str) -> String {
    let raw = format!("{username}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}
