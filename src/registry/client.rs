//! The OCI distribution client: tag listing with `Link` pagination,
//! manifest digests, the Basic and Bearer auth flows, retries, rate-limit
//! gates and a concurrency limit per registry host.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use base64::Engine;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, LINK, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode, Url};
use sha2::Digest as _;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::credentials::Credential;
use super::error::{FailureKind, RegistryError, error_code};
use super::headers::{Challenge, next_link, parse_challenge};
use super::reference::ImageName;
use crate::model::Tag;
use crate::net::retry_after;

/// Manifest media types hoist asks for, so a registry answers with the
/// digest of what a runtime would pull (an index for multi-arch images).
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// Everything one ImageRepository asks of the registry.
#[derive(Clone, Debug)]
pub struct ScanTarget {
    pub image: ImageName,
    /// Plain HTTP instead of HTTPS.
    pub insecure: bool,
    /// Bound on one whole operation (all pages, all retries).
    pub timeout: Duration,
    pub tls: TlsConfig,
    /// What to answer a challenge with, looked up once per scan.
    pub credential: Option<Credential>,
    /// Most tags one listing keeps (`spec.maxTags`); the bytes read for
    /// the listing are bounded by [`scan_bytes`] of it.
    pub max_tags: usize,
}

/// Tags kept per repository when `spec.maxTags` is not set. The largest
/// public repositories hold tens of thousands of tags; 50,000 is above
/// them, and at most ~10 MB of tag text (a tag is at most 128 bytes).
pub const DEFAULT_MAX_TAGS: usize = 50_000;
/// Bytes read per tag listing at the default tag cap: a tag list entry is
/// at most ~132 bytes of JSON, so 64 MiB leaves room for padding and
/// dropped names while keeping a scan far below 256 MB of memory.
const MIN_SCAN_BYTES: u64 = 64 << 20;

/// The bytes a listing of `max_tags` tags may read: 64 MiB, or 1 KiB per
/// tag when `spec.maxTags` is raised past 65,536.
pub fn scan_bytes(max_tags: usize) -> u64 {
    (max_tags as u64).saturating_mul(1024).max(MIN_SCAN_BYTES)
}

/// Extra trust and a client certificate, from `certSecretRef`.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct TlsConfig {
    /// PEM certificates trusted in addition to the system roots (`ca.crt`).
    pub ca_pem: Option<Vec<u8>>,
    /// PEM certificate and private key (`tls.crt` + `tls.key`).
    pub client_pem: Option<Vec<u8>>,
}

/// Limits that apply across scans.
#[derive(Clone, Debug)]
pub struct RegistrySettings {
    /// Requests in flight to one registry host at once.
    pub per_host: usize,
    /// Retries of one request after a 5xx, a reset, a timeout or a 429.
    pub retries: u32,
    /// First backoff; doubled on each retry, with jitter.
    pub backoff: Duration,
    /// Page size asked for; registries may return fewer.
    pub page_size: u32,
}

impl std::fmt::Debug for TlsConfig {
    // The client PEM holds a private key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("ca_pem", &self.ca_pem.as_ref().map(|c| c.len()))
            .field(
                "client_pem",
                &self.client_pem.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Longest pause a 429 can impose on a host, whatever its Retry-After says:
/// a long-running hoist must not stop scanning a host for a year.
const MAX_PAUSE: Duration = Duration::from_secs(15 * 60);
/// Longest a token is reused, whatever its `expires_in` says.
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// Body size limits: a tag list page, a manifest, a token response.
const MAX_PAGE: usize = 16 << 20;
const MAX_MANIFEST: usize = 4 << 20;
const MAX_TOKEN: usize = 1 << 20;
/// An error body: only its first code and message are kept, and only
/// [`crate::redact::SERVER_TEXT_LIMIT`] bytes of that.
const MAX_ERROR_BODY: usize = 64 << 10;

impl Default for RegistrySettings {
    fn default() -> Self {
        RegistrySettings {
            per_host: 8,
            retries: 4,
            backoff: Duration::from_millis(250),
            page_size: 1000,
        }
    }
}

/// A registry client shared by all scans of a run: it pools connections,
/// caches tokens and keeps each host's rate-limit gate.
pub struct Registry {
    settings: RegistrySettings,
    clients: Mutex<HashMap<TlsConfig, reqwest::Client>>,
    hosts: Mutex<HashMap<String, Arc<Host>>>,
    /// Authorization header values by (registry host, repository,
    /// principal), so later requests skip the 401 round trip.
    authorizations: Mutex<HashMap<(String, String, String), Authorization>>,
    requests: AtomicU64,
    /// Told each answer's host and status (0: no answer), for metrics.
    observer: Option<Observer>,
}

/// A callback for each registry answer: host and HTTP status.
pub type Observer = Arc<dyn Fn(&str, u16) + Send + Sync>;

#[derive(Clone)]
struct Authorization {
    header: String,
    expires: Option<Instant>,
}

/// One registry host: how many requests may be in flight, and until when
/// it asked us (429) to send none.
struct Host {
    permits: Semaphore,
    not_before: Mutex<Option<Instant>>,
}

/// What a request did not get, before it is tied to an image.
struct Failure {
    kind: FailureKind,
    status: Option<u16>,
    code: Option<String>,
    detail: String,
}

impl Failure {
    fn new(kind: FailureKind, detail: impl Into<String>) -> Self {
        Failure {
            kind,
            status: None,
            code: None,
            detail: detail.into(),
        }
    }
}

impl Registry {
    pub fn new(settings: RegistrySettings) -> Self {
        crate::install_crypto_provider();
        Registry {
            settings,
            clients: Mutex::default(),
            hosts: Mutex::default(),
            authorizations: Mutex::default(),
            requests: AtomicU64::new(0),
            observer: None,
        }
    }

    /// Calls `observer` with the host and status of every answer.
    pub fn with_observer(mut self, observer: Observer) -> Self {
        self.observer = Some(observer);
        self
    }

    /// HTTP requests sent so far, token requests and retries included.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Every tag of the repository, following `Link: rel="next"` pages as
    /// the registry writes them.
    pub async fn list_tags(&self, target: &ScanTarget) -> Result<Vec<Tag>, RegistryError> {
        let deadline = Instant::now() + target.timeout;
        let mut url = self.url(target, &format!("tags/list?n={}", self.settings.page_size))?;
        let mut tags = Vec::new();
        let budget = scan_bytes(target.max_tags);
        let mut read: u64 = 0;
        let mut pages = 0;
        let mut visited = std::collections::HashSet::from([url.clone()]);
        loop {
            let response = self
                .execute(target, Method::GET, &url, "application/json", deadline)
                .await?;
            let next = response
                .headers()
                .get(LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(next_link)
                .map(str::to_string);
            // Each page may take what is left of the listing's budget, so
            // that endless pages end at the budget, not at memory's end.
            let left = budget.saturating_sub(read);
            let limit = usize::try_from(left).unwrap_or(usize::MAX).min(MAX_PAGE);
            let body = read_body(response, deadline, limit).await.map_err(|f| {
                let f = if f.kind == FailureKind::TooLarge && limit < MAX_PAGE {
                    too_large(format!(
                        "the tag list is larger than {} MiB in all, the limit for spec.maxTags {}",
                        budget >> 20,
                        target.max_tags
                    ))
                } else {
                    f
                };
                self.error(target, "GET", &url, f)
            })?;
            read += body.len() as u64;
            // Parsed one tag at a time against what is left of the cap, so
            // a page of millions of short names never becomes millions of
            // strings.
            let room = target.max_tags.saturating_sub(tags.len());
            let mut page = serde_json::Deserializer::from_slice(&body);
            let list = serde::de::DeserializeSeed::deserialize(TagPage { room }, &mut page)
                .and_then(|list| page.end().map(|()| list))
                .map_err(|e| {
                    self.error(
                        target,
                        "GET",
                        &url,
                        Failure::new(
                            FailureKind::Protocol,
                            format!("the tag list is not the expected JSON: {e}"),
                        ),
                    )
                })?;
            if list.over {
                return Err(self.error(
                    target,
                    "GET",
                    &url,
                    too_large(format!(
                        "the repository has more than {} tags (spec.maxTags)",
                        target.max_tags
                    )),
                ));
            }
            if list.dropped > 0 {
                // Tags go into URLs and manifests; one that is not a valid
                // tag could redirect a request or break a file.
                tracing::warn!(image = %target.image, dropped = list.dropped, "dropping listed tags that are not valid tags");
            }
            tags.extend(list.tags.into_iter().map(Tag));
            pages += 1;
            let Some(next) = next else { break };
            let resolved = url.join(&next).map_err(|e| {
                self.error(
                    target,
                    "GET",
                    &url,
                    Failure::new(FailureKind::Protocol, format!("Link header {next:?}: {e}")),
                )
            })?;
            // The next page must come from the same origin: the request
            // carries the registry's credentials.
            if resolved.origin() != url.origin() {
                return Err(self.error(
                    target,
                    "GET",
                    &url,
                    Failure::new(
                        FailureKind::Protocol,
                        format!("the Link header points at another host or scheme ({}); not following it", resolved.origin().ascii_serialization()),
                    ),
                ));
            }
            if !visited.insert(resolved.clone()) || pages >= 100_000 {
                return Err(self.error(
                    target,
                    "GET",
                    &url,
                    Failure::new(
                        FailureKind::Protocol,
                        "the Link header does not advance; stopping",
                    ),
                ));
            }
            url = resolved;
        }
        Ok(tags)
    }

    /// The digest of the manifest a tag points at: `Docker-Content-Digest`
    /// of a HEAD, or the sha256 of the body of a GET when a registry does
    /// not send the header.
    pub async fn digest(&self, target: &ScanTarget, tag: &str) -> Result<String, RegistryError> {
        let deadline = Instant::now() + target.timeout;
        let url = self.url(target, &format!("manifests/{tag}"))?;
        let head = self
            .execute(target, Method::HEAD, &url, MANIFEST_ACCEPT, deadline)
            .await?;
        if let Some(digest) = head
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .filter(|d| valid_digest(d))
        {
            return Ok(digest.to_string());
        }
        let response = self
            .execute(target, Method::GET, &url, MANIFEST_ACCEPT, deadline)
            .await?;
        let body = read_body(response, deadline, MAX_MANIFEST)
            .await
            .map_err(|f| self.error(target, "GET", &url, f))?;
        Ok(format!("sha256:{:x}", sha2::Sha256::digest(&body)))
    }

    fn url(&self, target: &ScanTarget, rest: &str) -> Result<Url, RegistryError> {
        let scheme = if target.insecure { "http" } else { "https" };
        let text = format!(
            "{scheme}://{}/v2/{}/{rest}",
            target.image.api_host(),
            target.image.repository
        );
        Url::parse(&text).map_err(|e| RegistryError {
            image: target.image.canonical(),
            request: format!("GET /v2/{}/{rest}", target.image.repository),
            kind: FailureKind::Protocol,
            status: None,
            code: None,
            detail: format!("not a URL: {e}"),
        })
    }

    fn error(
        &self,
        target: &ScanTarget,
        method: &str,
        url: &Url,
        failure: Failure,
    ) -> RegistryError {
        RegistryError {
            image: target.image.canonical(),
            request: format!("{method} {}", url.path()),
            ..self.scrubbed(target, failure)
        }
    }

    /// A failure as an error whose server-sent text (error bodies, codes,
    /// challenges, Link headers) is masked of every secret sent for the
    /// target and escaped of control characters; `image` and `request` are
    /// the caller's.
    fn scrubbed(&self, target: &ScanTarget, failure: Failure) -> RegistryError {
        let secrets = self.secrets(target);
        RegistryError {
            image: String::new(),
            request: String::new(),
            kind: failure.kind,
            status: failure.status,
            code: failure
                .code
                .map(|c| crate::redact::server_text(&c, &secrets)),
            detail: crate::redact::server_text(&failure.detail, &secrets),
        }
    }

    /// What hoist sends to the target's registry and token endpoint: the
    /// credential, in every form, and the bearer tokens it was given.
    fn secrets(&self, target: &ScanTarget) -> crate::redact::Secrets {
        let mut secrets = crate::redact::Secrets::new();
        match &target.credential {
            Some(Credential::Basic { username, password }) => {
                secrets.add_basic(username, password);
            }
            Some(Credential::IdentityToken(token)) => {
                secrets.add(token);
            }
            None => {}
        }
        let map = self
            .authorizations
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for ((host, repository, _), authorization) in map.iter() {
            if host == target.image.api_host()
                && *repository == target.image.repository
                && let Some(token) = authorization.header.strip_prefix("Bearer ")
            {
                secrets.add(token);
            }
        }
        secrets
    }

    fn client(&self, tls: &TlsConfig) -> Result<reqwest::Client, Failure> {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = clients.get(tls) {
            return Ok(client.clone());
        }
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("hoist/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(self.settings.per_host)
            .redirect(reqwest::redirect::Policy::limited(5));
        if let Some(ca) = &tls.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(ca).map_err(|e| {
                Failure::new(
                    FailureKind::Transport,
                    format!("ca.crt is not PEM certificates: {e}"),
                )
            })?;
            builder = builder.tls_certs_merge(certs);
        }
        if let Some(pem) = &tls.client_pem {
            let identity = reqwest::Identity::from_pem(pem).map_err(|e| {
                Failure::new(
                    FailureKind::Transport,
                    format!("tls.crt/tls.key are not a PEM certificate and key: {e}"),
                )
            })?;
            builder = builder.identity(identity);
        }
        let client = builder
            .build()
            .map_err(|e| Failure::new(FailureKind::Transport, format!("setting up TLS: {e}")))?;
        clients.insert(tls.clone(), client.clone());
        Ok(client)
    }

    fn host(&self, name: &str) -> Arc<Host> {
        let mut hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        hosts
            .entry(name.to_string())
            .or_insert_with(|| {
                Arc::new(Host {
                    permits: Semaphore::new(self.settings.per_host.max(1)),
                    not_before: Mutex::new(None),
                })
            })
            .clone()
    }

    /// Sends a request to the registry with authentication: a remembered
    /// Authorization first; on 401, answers the challenge once and retries.
    async fn execute(
        &self,
        target: &ScanTarget,
        method: Method,
        url: &Url,
        accept: &str,
        deadline: Instant,
    ) -> Result<reqwest::Response, RegistryError> {
        let fail = |f: Failure| self.error(target, method.as_str(), url, f);
        let client = self.client(&target.tls).map_err(fail)?;
        let credential = target.credential.as_ref();
        // Keyed by the whole credential: two Secrets with the same user
        // name and different passwords must not share an authorization.
        let key = (
            target.image.api_host().to_string(),
            target.image.repository.clone(),
            credential.map_or_else(String::new, Credential::fingerprint),
        );
        let mut authorization = self.remembered(&key);
        let mut answered = false;
        loop {
            let request = || {
                let mut r = client
                    .request(method.clone(), url.clone())
                    .header(ACCEPT, accept);
                if let Some(a) = &authorization {
                    r = r.header(AUTHORIZATION, a.as_str());
                }
                r
            };
            let response = self
                .send(target.image.api_host(), deadline, request)
                .await
                .map_err(fail)?;
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED && !answered {
                answered = true;
                let challenge = response
                    .headers()
                    .get_all(WWW_AUTHENTICATE)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .find_map(parse_challenge);
                let Some(challenge) = challenge else {
                    let found = response
                        .headers()
                        .get(WWW_AUTHENTICATE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("none")
                        .to_string();
                    return Err(fail(Failure {
                        kind: FailureKind::Unauthorized,
                        status: Some(401),
                        code: None,
                        detail: format!(
                            "the registry's WWW-Authenticate challenge cannot be answered: {found:?}"
                        ),
                    }));
                };
                let answer = match &challenge {
                    Challenge::Basic => match credential {
                        Some(Credential::Basic { username, password }) => Authorization {
                            header: basic(username, password),
                            expires: None,
                        },
                        _ => {
                            return Err(fail(Failure {
                                kind: FailureKind::Unauthorized,
                                status: Some(401),
                                code: None,
                                detail: format!(
                                    "the registry asks for a username and password and config.json has none for {}",
                                    target.image.registry
                                ),
                            }));
                        }
                    },
                    Challenge::Bearer {
                        realm,
                        service,
                        scope,
                    } => {
                        self.token(
                            &client,
                            target,
                            realm,
                            service.as_deref(),
                            scope.as_deref(),
                            credential,
                            deadline,
                        )
                        .await?
                    }
                };
                self.remember(&key, &answer);
                authorization = Some(answer.header);
                continue;
            }
            if status.is_success() {
                return Ok(response);
            }
            return Err(fail(failure_from(response, deadline).await));
        }
    }

    fn remembered(&self, key: &(String, String, String)) -> Option<String> {
        let map = self
            .authorizations
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        map.get(key)
            .filter(|a| a.expires.is_none_or(|at| Instant::now() < at))
            .map(|a| a.header.clone())
    }

    fn remember(&self, key: &(String, String, String), authorization: &Authorization) {
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
    async fn token(
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

    /// Sends one request with the host's gates, retrying what is worth
    /// retrying: resets and timeouts, 5xx, and 429 after its Retry-After.
    /// Any other response, 401 and 404 included, goes back to the caller.
    async fn send(
        &self,
        host_name: &str,
        deadline: Instant,
        request: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, Failure> {
        let host = self.host(host_name);
        let mut attempt = 0;
        let mut last: String;
        loop {
            let wait = host.wait();
            if let Some(wait) = wait {
                if Instant::now() + wait >= deadline {
                    return Err(Failure {
                        kind: FailureKind::RateLimited,
                        status: Some(429),
                        code: Some("TOOMANYREQUESTS".into()),
                        detail: format!(
                            "the registry asked for a pause of {}s, longer than the time left",
                            wait.as_secs()
                        ),
                    });
                }
                tokio::time::sleep(wait).await;
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(Failure::new(FailureKind::Timeout, "timed out"));
            }
            let permit = host.permits.acquire().await;
            self.requests.fetch_add(1, Ordering::Relaxed);
            let result = request().timeout(remaining).send().await;
            drop(permit);
            if let Some(observe) = &self.observer {
                observe(
                    host_name,
                    result.as_ref().map_or(0, |r| r.status().as_u16()),
                );
            }
            let retry_in = match result {
                Ok(response) => {
                    let status = response.status();
                    last = format!("the last answer was HTTP {}", status.as_u16());
                    if status == StatusCode::TOO_MANY_REQUESTS {
                        let pause = response
                            .headers()
                            .get(RETRY_AFTER)
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| retry_after(v, SystemTime::now()))
                            .unwrap_or_else(|| self.backoff(attempt));
                        host.pause(pause);
                        if attempt >= self.settings.retries {
                            return Err(failure_from(response, deadline).await);
                        }
                        Duration::ZERO
                    } else if status.is_server_error() && attempt < self.settings.retries {
                        self.backoff(attempt)
                    } else {
                        return Ok(response);
                    }
                }
                Err(e) => {
                    let kind = if e.is_timeout() {
                        FailureKind::Timeout
                    } else {
                        FailureKind::Transport
                    };
                    last = describe(&e);
                    if attempt >= self.settings.retries
                        || kind == FailureKind::Timeout && Instant::now() >= deadline
                    {
                        return Err(Failure::new(kind, last));
                    }
                    self.backoff(attempt)
                }
            };
            attempt += 1;
            if Instant::now() + retry_in >= deadline {
                return Err(Failure::new(
                    FailureKind::Timeout,
                    format!("timed out while retrying; {last}"),
                ));
            }
            tokio::time::sleep(retry_in).await;
        }
    }

    /// Exponential backoff with full jitter: up to base × 2^attempt.
    fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self.settings.backoff.saturating_mul(1 << attempt.min(10));
        let fraction = (random_u64() % 1000) as u32;
        ceiling / 2 + ceiling * fraction / 2000
    }
}

impl Host {
    /// How long to wait before the next request, if the host asked for a pause.
    fn wait(&self) -> Option<Duration> {
        let not_before = *self.not_before.lock().unwrap_or_else(|e| e.into_inner());
        not_before
            .map(|at| at.saturating_duration_since(Instant::now()))
            .filter(|d| !d.is_zero())
    }

    fn pause(&self, pause: Duration) {
        let mut not_before = self.not_before.lock().unwrap_or_else(|e| e.into_inner());
        let until = Instant::now() + pause.min(MAX_PAUSE);
        if not_before.is_none_or(|at| at < until) {
            *not_before = Some(until);
        }
    }
}

fn basic(username: &str, password: &str) -> String {
    let raw = format!("{username}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// The distribution spec's tag grammar: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

fn valid_digest(digest: &str) -> bool {
    digest.split_once(':').is_some_and(|(alg, hex)| {
        !alg.is_empty() && hex.len() >= 32 && hex.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// A random number for jitter; std's hasher keys are random per instance.
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// reqwest's error text names the URL (with its query); keep the cause.
fn describe(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "cannot connect".to_string()
    } else {
        "request failed".to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Reads a body of at most `limit` bytes: a registry that sends more is
/// broken or hostile, and must not exhaust memory.
async fn read_body(
    mut response: reqwest::Response,
    deadline: Instant,
    limit: usize,
) -> Result<Vec<u8>, Failure> {
    // A declared length over the limit is refused before reading any.
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(too_large(format!(
            "the response is larger than {}",
            size(limit)
        )));
    }
    // Sized once from a declared length (at most `limit`, checked above)
    // rather than grown and copied chunk by chunk.
    let declared = response
        .content_length()
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(0);
    let read = async {
        let mut body = Vec::with_capacity(declared);
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| Failure::new(FailureKind::Transport, describe(&e)))?
        {
            if body.len() + chunk.len() > limit {
                return Err(too_large(format!(
                    "the response is larger than {}",
                    size(limit)
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    };
    tokio::time::timeout_at(deadline, read)
        .await
        .unwrap_or_else(|_| {
            Err(Failure::new(
                FailureKind::Timeout,
                "timed out reading the response",
            ))
        })
}

/// One page of a tag list, `{"tags": [...]}` (other members ignored, a
/// null or missing `tags` is empty), keeping at most `room` valid tags.
struct TagPage {
    room: usize,
}

#[derive(Default)]
struct ListedTags {
    tags: Vec<String>,
    /// Names that are not valid tags, not kept.
    dropped: usize,
    /// More valid tags than `room`; those past it are not kept.
    over: bool,
}

impl<'de> serde::de::DeserializeSeed<'de> for TagPage {
    type Value = ListedTags;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<ListedTags, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for TagPage {
    type Value = ListedTags;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an object with a tags array")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<ListedTags, A::Error> {
        let mut listed = ListedTags::default();
        while let Some(key) = map.next_key::<String>()? {
            if key == "tags" {
                listed = map.next_value_seed(TagArray { room: self.room })?;
            } else {
                map.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        Ok(listed)
    }
}

struct TagArray {
    room: usize,
}

impl<'de> serde::de::DeserializeSeed<'de> for TagArray {
    type Value = ListedTags;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<ListedTags, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> serde::de::Visitor<'de> for TagArray {
    type Value = ListedTags;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of tags or null")
    }
    fn visit_none<E>(self) -> Result<ListedTags, E> {
        Ok(ListedTags::default())
    }
    fn visit_unit<E>(self) -> Result<ListedTags, E> {
        Ok(ListedTags::default())
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<ListedTags, D::Error> {
        d.deserialize_seq(self)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<ListedTags, A::Error> {
        let mut listed = ListedTags::default();
        while let Some(tag) = seq.next_element::<String>()? {
            if !valid_tag(&tag) {
                listed.dropped += 1;
            } else if listed.tags.len() < self.room {
                listed.tags.push(tag);
            } else {
                listed.over = true;
                // The rest is read, not kept, so the error is the cap's.
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                break;
            }
        }
        Ok(listed)
    }
}

fn too_large(detail: String) -> Failure {
    Failure::new(FailureKind::TooLarge, detail)
}

fn size(bytes: usize) -> String {
    if bytes >= 1 << 20 {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{} KiB", bytes >> 10)
    }
}

/// Turns an unsuccessful response into a failure with the registry's code.
async fn failure_from(response: reqwest::Response, deadline: Instant) -> Failure {
    let status = response.status();
    let headers: HeaderMap = response.headers().clone();
    let body = read_body(response, deadline, MAX_ERROR_BODY)
        .await
        .unwrap_or_default();
    let (code, message) = match error_code(&body) {
        Some((code, message)) => (Some(code), message),
        None => (None, String::new()),
    };
    let kind = match status.as_u16() {
        401 => FailureKind::Unauthorized,
        403 => FailureKind::Denied,
        404 => FailureKind::NotFound,
        429 => FailureKind::RateLimited,
        s if s >= 500 => FailureKind::Server,
        _ => FailureKind::Protocol,
    };
    let detail = if message.is_empty() && kind == FailureKind::RateLimited {
        headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(|v| format!("Retry-After: {v}"))
            .unwrap_or_default()
    } else {
        message
    };
    Failure {
        kind,
        status: Some(status.as_u16()),
        code,
        detail,
    }
}

#[cfg(test)]
mod tag_page_tests {
    use super::*;

    fn parse(body: &str, room: usize) -> Result<ListedTags, serde_json::Error> {
        let mut page = serde_json::Deserializer::from_str(body);
        let list = serde::de::DeserializeSeed::deserialize(TagPage { room }, &mut page)?;
        page.end().map(|()| list)
    }

    #[test]
    fn a_page_keeps_at_most_its_room_and_says_so() {
        let tags: Vec<String> = (0..5000).map(|i| format!("t{i}")).collect();
        let body = serde_json::json!({"name": "x", "tags": tags, "manifest": {"a": 1}}).to_string();
        let list = parse(&body, 1000).unwrap_or_else(|e| panic!("{e}"));
        assert!(list.over);
        assert_eq!(list.tags.len(), 1000);
        let list = parse(&body, 5000).unwrap_or_else(|e| panic!("{e}"));
        assert!(!list.over);
        assert_eq!(list.tags.len(), 5000);
    }

    #[test]
    fn null_missing_and_invalid_tags() {
        for body in [r#"{"tags": null}"#, r#"{"name": "x"}"#] {
            let list = parse(body, 10).unwrap_or_else(|e| panic!("{e}"));
            assert!(list.tags.is_empty() && !list.over);
        }
        let list =
            parse(r#"{"tags": ["1.0", "../x", "-a"]}"#, 10).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((list.tags, list.dropped), (vec!["1.0".to_string()], 2));
        for body in [
            r#"{"tags": 3}"#,
            r#"{"tags": [1]}"#,
            r#"{"tags": []} x"#,
            "[]",
        ] {
            assert!(parse(body, 10).is_err(), "{body}");
        }
    }
}
