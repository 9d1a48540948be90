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

mod auth;
mod tags;
mod transport;

use auth::{Authorization, basic};
use tags::TagPage;
use transport::{Failure, Host, failure_from, read_body, too_large};

/// Manifest media types hoist asks for, so a registry answers with the
/// digest of what a runtime would pull (an index for multi-arch images).
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// A manifest's bytes as served, with their digest and media type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    pub digest: String,
    /// `Content-Type` as the registry sent it (the JSON's `mediaType`
    /// says the same when present).
    pub media_type: String,
    pub bytes: Vec<u8>,
}

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
    /// A chart of a classic chart repository: its versions are read from
    /// the index, and there is no registry API.
    pub chart_index: Option<super::ChartIndex>,
}

impl ScanTarget {
    /// The repository as messages name it: the canonical image name, or
    /// the chart repository's URL and chart.
    pub fn display_name(&self) -> String {
        match &self.chart_index {
            Some(index) => index.key(),
            None => self.image.canonical(),
        }
    }
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
/// Longest the HTTPS-or-HTTP probe of a local registry waits per scheme.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// ACR refresh tokens by (registry, fingerprint of the Entra token
    /// they were exchanged for), so that a new access token needs no new
    /// exchange while the Entra token is the same.
    exchanged: Mutex<HashMap<(String, String), String>>,
    requests: AtomicU64,
    /// Local registries (see [`ImageName::is_local`]) found to speak plain
    /// HTTP (true) or HTTPS (false), probed once per host and process.
    plain_http: Mutex<HashMap<String, bool>>,
    /// Told each answer's host and status (0: no answer), for metrics.
    observer: Option<Observer>,
}

/// A callback for each registry answer: host and HTTP status.
pub type Observer = Arc<dyn Fn(&str, u16) + Send + Sync>;

impl Registry {
    pub fn new(settings: RegistrySettings) -> Self {
        crate::install_crypto_provider();
        Registry {
            settings,
            clients: Mutex::default(),
            hosts: Mutex::default(),
            authorizations: Mutex::default(),
            exchanged: Mutex::default(),
            requests: AtomicU64::new(0),
            plain_http: Mutex::default(),
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
        if let Some(index) = &target.chart_index {
            return self.chart_versions(target, index).await;
        }
        let deadline = Instant::now() + target.timeout;
        let scheme = self.scheme(target, deadline).await;
        let mut url = self.url(
            target,
            scheme,
            &format!("tags/list?n={}", self.settings.page_size),
        )?;
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
        refuse_chart_index(target, "digests")?;
        let deadline = Instant::now() + target.timeout;
        let scheme = self.scheme(target, deadline).await;
        let url = self.url(target, scheme, &format!("manifests/{tag}"))?;
        let head = self
            .execute(target, Method::HEAD, &url, MANIFEST_ACCEPT, deadline)
            .await?;
        if let Some(digest) = head
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .filter(|d| crate::model::is_digest(d))
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

    /// The manifest `reference` (a tag or a digest) names, or None when the
    /// registry has none (404). Its bytes are checked against the digest
    /// asked for, or against `Docker-Content-Digest` when asked by tag: the
    /// gate judges these bytes, so a registry must not swap them.
    pub async fn manifest(
        &self,
        target: &ScanTarget,
        reference: &str,
        accept: &str,
    ) -> Result<Option<Manifest>, RegistryError> {
        let path = format!("manifests/{reference}");
        let Some((document, sent_digest, url)) =
            self.document(target, &path, accept, &[404]).await?
        else {
            return Ok(None);
        };
        let expected = if reference.contains(':') {
            Some(reference.to_string())
        } else {
            sent_digest.filter(|d| d.starts_with("sha256:"))
        };
        if let Some(expected) = expected
            && expected != document.digest
        {
            return Err(self.error(
                target,
                "GET",
                &url,
                Failure::new(
                    FailureKind::Protocol,
                    format!(
                        "the manifest's sha256 is {}, not {expected}",
                        document.digest
                    ),
                ),
            ));
        }
        Ok(Some(document))
    }

    /// The OCI 1.1 referrers of `digest` (an image index), or None when
    /// the registry does not serve the referrers API (404, 405): then the
    /// referrers tag `sha256-<hex>` stands in, as the spec says.
    pub async fn referrers(
        &self,
        target: &ScanTarget,
        digest: &str,
    ) -> Result<Option<Manifest>, RegistryError> {
        let path = format!("referrers/{digest}");
        let accept = "application/vnd.oci.image.index.v1+json";
        Ok(self
            .document(target, &path, accept, &[404, 405])
            .await?
            .map(|(document, _, _)| document))
    }

    /// A JSON document of the repository's API (`rest` under `/v2/NAME/`),
    /// at most a manifest's size, with the `Docker-Content-Digest` the
    /// registry sent and the URL asked; None for the `absent` statuses.
    async fn document(
        &self,
        target: &ScanTarget,
        rest: &str,
        accept: &str,
        absent: &[u16],
    ) -> Result<Option<(Manifest, Option<String>, Url)>, RegistryError> {
        refuse_chart_index(target, "manifests")?;
        let deadline = Instant::now() + target.timeout;
        let scheme = self.scheme(target, deadline).await;
        let url = self.url(target, scheme, rest)?;
        let response = match self
            .execute(target, Method::GET, &url, accept, deadline)
            .await
        {
            Ok(response) => response,
            Err(e) if e.status.is_some_and(|s| absent.contains(&s)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let media_type = header("content-type").unwrap_or_default();
        let sent_digest = header("docker-content-digest");
        let body = read_body(response, deadline, MAX_MANIFEST)
            .await
            .map_err(|f| self.error(target, "GET", &url, f))?;
        let document = Manifest {
            digest: format!("sha256:{:x}", sha2::Sha256::digest(&body)),
            media_type,
            bytes: body,
        };
        Ok(Some((document, sent_digest, url)))
    }

    /// The blob `digest` (sha256 only), at most `limit` bytes, checked
    /// against its digest.
    pub async fn blob(
        &self,
        target: &ScanTarget,
        digest: &str,
        limit: usize,
    ) -> Result<Vec<u8>, RegistryError> {
        refuse_chart_index(target, "blobs")?;
        let deadline = Instant::now() + target.timeout;
        let scheme = self.scheme(target, deadline).await;
        let url = self.url(target, scheme, &format!("blobs/{digest}"))?;
        if !digest.starts_with("sha256:") || !crate::model::is_digest(digest) {
            return Err(self.error(
                target,
                "GET",
                &url,
                Failure::new(
                    FailureKind::Protocol,
                    format!("{digest:?} is not a sha256 digest"),
                ),
            ));
        }
        let response = self
            .execute(target, Method::GET, &url, "*/*", deadline)
            .await?;
        let body = read_body(response, deadline, limit)
            .await
            .map_err(|f| self.error(target, "GET", &url, f))?;
        let got = format!("sha256:{:x}", sha2::Sha256::digest(&body));
        if got != digest {
            return Err(self.error(
                target,
                "GET",
                &url,
                Failure::new(
                    FailureKind::Protocol,
                    format!("the blob's sha256 is {got}, not {digest}"),
                ),
            ));
        }
        Ok(body)
    }

    /// The versions of a chart in a classic repository's `index.yaml`,
    /// read within the listing's byte bound. A username and password go
    /// with the request itself, to the index's host only, as Helm and
    /// Flux's HelmRepository send them: no challenge is answered, so no
    /// token realm a server names ever sees them (and a redirect to
    /// another host drops them).
    async fn chart_versions(
        &self,
        target: &ScanTarget,
        index: &super::ChartIndex,
    ) -> Result<Vec<Tag>, RegistryError> {
        let deadline = Instant::now() + target.timeout;
        let url = index.index_url();
        let fail = |f: Failure| self.error(target, "GET", &url, f);
        let client = self.client(&target.tls).map_err(fail)?;
        let authorization = match &target.credential {
            Some(Credential::Basic { username, password }) => Some(basic(username, password)),
            _ => None,
        };
        let request = || {
            let mut r = client.get(url.clone()).header(
                ACCEPT,
                "application/yaml, application/x-yaml, application/json, */*",
            );
            if let Some(a) = &authorization {
                r = r.header(AUTHORIZATION, a.as_str());
            }
            r
        };
        let response = self
            .send(target.image.api_host(), deadline, request)
            .await
            .map_err(fail)?;
        if !response.status().is_success() {
            return Err(fail(failure_from(response, deadline).await));
        }
        let limit = usize::try_from(scan_bytes(target.max_tags)).unwrap_or(usize::MAX);
        let body = read_body(response, deadline, limit)
            .await
            .map_err(|f| self.error(target, "GET", &url, f))?;
        let versions =
            super::index_versions(&body, &index.chart, target.max_tags).map_err(|detail| {
                self.error(
                    target,
                    "GET",
                    &url,
                    Failure::new(FailureKind::Protocol, detail),
                )
            })?;
        Ok(versions
            .into_iter()
            .map(|v| Tag::from(v.as_str()))
            .collect())
    }

    /// `http` with `spec.insecure`; for a local registry, what its probe
    /// found; else `https`.
    async fn scheme(&self, target: &ScanTarget, deadline: Instant) -> &'static str {
        if target.insecure {
            return "http";
        }
        if !target.image.is_local() {
            return "https";
        }
        let host = target.image.api_host();
        let known = self
            .plain_http
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(host)
            .copied();
        let plain = match known {
            Some(plain) => plain,
            None => {
                let plain = self.speaks_only_plain_http(target, deadline).await;
                self.plain_http
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(host.to_string(), plain);
                plain
            }
        };
        if plain { "http" } else { "https" }
    }

    /// As go-containerregistry does for local registries: HTTPS first, and
    /// plain HTTP only when HTTPS gets no answer at all (refused, or a TLS
    /// handshake with a server that does not speak TLS) and HTTP answers.
    /// One attempt each, no retries: the probe decides a scheme, the scan's
    /// own requests report the failures.
    async fn speaks_only_plain_http(&self, target: &ScanTarget, deadline: Instant) -> bool {
        let Ok(client) = self.client(&target.tls) else {
            return false;
        };
        let host = target.image.api_host();
        let probe = |scheme: &str| {
            let timeout = deadline
                .saturating_duration_since(Instant::now())
                .min(PROBE_TIMEOUT);
            self.requests.fetch_add(1, Ordering::Relaxed);
            client
                .get(format!("{scheme}://{host}/v2/"))
                .timeout(timeout)
                .send()
        };
        match probe("https").await {
            Ok(_) => false,
            Err(e) if e.is_timeout() => false,
            // Only a registry's answer to `/v2/` counts: a TLS server asked
            // in plain HTTP answers 400, and must keep being asked in TLS.
            Err(_) => probe("http")
                .await
                .is_ok_and(|r| matches!(r.status(), StatusCode::OK | StatusCode::UNAUTHORIZED)),
        }
    }

    fn url(&self, target: &ScanTarget, scheme: &str, rest: &str) -> Result<Url, RegistryError> {
        let text = format!(
            "{scheme}://{}/v2/{}/{rest}",
            target.image.api_host(),
            target.image.repository
        );
        Url::parse(&text).map_err(|e| RegistryError {
            image: target.display_name(),
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
            image: target.display_name(),
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
            Some(credential @ Credential::AadToken { token, .. }) => {
                secrets.add(token);
                let key = (target.image.registry.clone(), credential.fingerprint());
                if let Some(refresh) = self
                    .exchanged
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&key)
                {
                    secrets.add(refresh);
                }
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
}

/// A classic chart repository has an index, not the distribution API.
fn refuse_chart_index(target: &ScanTarget, what: &str) -> Result<(), RegistryError> {
    match &target.chart_index {
        None => Ok(()),
        Some(index) => Err(RegistryError {
            image: index.key(),
            request: String::new(),
            kind: FailureKind::Protocol,
            status: None,
            code: None,
            detail: format!(
                "a classic chart repository has no {what}; digestReflectionPolicy, verify and platforms need an OCI repository (oci://…)"
            ),
        }),
    }
}
