//! Cloud registry identity: `ImageRepository.spec.provider` (`aws`, `gcp`,
//! `azure`, as Flux has it). A provider turns the workload's own identity
//! (IRSA, EKS Pod Identity, GKE workload identity, Azure workload or
//! managed identity) into a registry credential, cached until shortly
//! before it expires. A failure names the provider, the step and what to
//! check: never a silent anonymous scan.
//!
//! The driver reads the environment once ([`IdentityConfig::from_environment`]);
//! nothing here reads it afterwards, so tests hand in their own endpoints.

mod aws;
mod azure;
mod gcp;
mod object;
pub mod sigv4;

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

pub use aws::{AwsConfig, Container, EcrRegistry, WebIdentity};
pub use azure::AzureConfig;
pub use gcp::GcpConfig;
pub use object::{
    AWS_ROLE_ARN, AZURE_CLIENT_ID, AZURE_TENANT_ID, GCP_SERVICE_ACCOUNT,
    GCP_WORKLOAD_IDENTITY_PROVIDER, ServiceAccounts,
};

use super::Credential;

/// A cloud whose registries take the workload's identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Provider {
    Aws,
    Gcp,
    Azure,
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Provider {
    /// `spec.provider`: none or `generic` is the Secret or config.json.
    pub fn of(spec: Option<&str>) -> Result<Option<Provider>, String> {
        match spec {
            None | Some("generic") => Ok(None),
            Some("aws") => Ok(Some(Provider::Aws)),
            Some("gcp") => Ok(Some(Provider::Gcp)),
            Some("azure") => Ok(Some(Provider::Azure)),
            Some(other) => Err(format!(
                "{:?} is not a provider; use aws, gcp, azure or generic",
                crate::redact::escape_control(other)
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Provider::Aws => "aws",
            Provider::Gcp => "gcp",
            Provider::Azure => "azure",
        }
    }

    /// Why this provider cannot log in to `host` (the registry, without a
    /// port): its registries have names of their own.
    pub fn registry_problem(self, host: &str) -> Option<String> {
        let host = host.split(':').next().unwrap_or(host);
        let (ok, which) = match self {
            Provider::Aws => (
                EcrRegistry::parse(host).is_some(),
                "an ECR registry (ACCOUNT.dkr.ecr.REGION.amazonaws.com)",
            ),
            Provider::Gcp => (
                gcp::is_registry(host),
                "a Google registry (gcr.io, *.gcr.io or *-docker.pkg.dev)",
            ),
            Provider::Azure => (
                azure::is_registry(host),
                "an Azure registry (*.azurecr.io, .cn, .us or .de)",
            ),
        };
        (!ok).then(|| format!("{host} is not {which}; use provider: generic with a secretRef"))
    }
}

/// Where each provider finds the workload's identity: what the cloud's
/// own SDKs read from the environment, gathered once by the driver.
#[derive(Clone, Debug, Default)]
pub struct IdentityConfig {
    pub aws: AwsConfig,
    pub gcp: GcpConfig,
    pub azure: AzureConfig,
}

impl IdentityConfig {
    /// The process environment's settings.
    pub fn from_environment() -> Self {
        IdentityConfig::from_vars(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    /// The settings a lookup of environment variables gives.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Self {
        IdentityConfig {
            aws: AwsConfig::from_vars(&var),
            gcp: GcpConfig::from_vars(&var),
            azure: AzureConfig::from_vars(&var),
        }
    }
}

/// Why a provider gave no credential.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("spec.provider {provider}: {step}: {message}{}", hint.as_ref().map(|h| format!("; {h}")).unwrap_or_default())]
pub struct IdentityError {
    pub provider: Provider,
    /// What was being done: `STS AssumeRoleWithWebIdentity`, `ECR
    /// GetAuthorizationToken`, `the GKE metadata server`, …
    pub step: String,
    pub message: String,
    /// What to check.
    pub hint: Option<String>,
}

impl IdentityError {
    /// The error with what to check.
    fn hinted(mut self, hint: &str) -> Self {
        self.hint = Some(hint.to_string());
        self
    }
}

/// A credential and when to fetch a new one.
#[derive(Clone)]
struct Cached {
    credential: Credential,
    refresh_at: jiff::Timestamp,
}

/// The clock credentials expire by; tests move it.
pub type Clock = std::sync::Arc<dyn Fn() -> jiff::Timestamp + Send + Sync>;

/// The providers' credentials, shared by every scan of a process so that
/// a cached token saves every request until it nears its expiry.
pub struct Identities {
    config: IdentityConfig,
    /// For the cloud's public endpoints (STS, ECR, AAD, Google STS).
    http: reqwest::Client,
    /// For link-local metadata services: no proxy, no redirect.
    metadata: reqwest::Client,
    /// By provider, registry host and whose identity (None: hoist's own;
    /// else the ServiceAccount and what its annotations say).
    credentials: Mutex<HashMap<CacheKey, Cached>>,
    /// `spec.serviceAccountName`, when the controller turns it on.
    object_level: Option<object::ObjectLevel>,
    /// AWS access keys from STS, the container endpoint or IMDS, shared by
    /// every ECR region.
    aws_keys: Mutex<Option<(sigv4::AccessKey, jiff::Timestamp)>>,
    /// Single-flight: one refresh at a time, so that a burst of scans
    /// asks the cloud once.
    refreshing: tokio::sync::Mutex<()>,
    requests: AtomicU64,
    clock: Clock,
}

type CacheKey = (Provider, String, Option<String>);

/// Most bytes read from any identity endpoint's answer.
const MAX_ANSWER: usize = 64 << 10;

impl Default for Identities {
    /// No identity configured but each cloud's defaults (the metadata
    /// services): what a process without the environment gets.
    fn default() -> Self {
        Identities::new(IdentityConfig::default())
    }
}

impl fmt::Debug for Identities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identities")
            .field("requests", &self.requests())
            .finish_non_exhaustive()
    }
}

impl Identities {
    pub fn new(config: IdentityConfig) -> Self {
        crate::install_crypto_provider();
        let agent = concat!("hoist/", env!("CARGO_PKG_VERSION"));
        let http = reqwest::Client::builder()
            .user_agent(agent)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        let metadata = reqwest::Client::builder()
            .user_agent(agent)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .unwrap_or_default();
        Identities {
            config,
            http,
            metadata,
            credentials: Mutex::default(),
            object_level: None,
            aws_keys: Mutex::default(),
            refreshing: tokio::sync::Mutex::new(()),
            requests: AtomicU64::new(0),
            clock: std::sync::Arc::new(jiff::Timestamp::now),
        }
    }

    /// Judges expiry by `clock` instead of the system time.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Turns on `spec.serviceAccountName`: the identity of that
    /// ServiceAccount, through `accounts`. With `default`, a repository
    /// without one gets that ServiceAccount of its own namespace, never
    /// hoist's own identity (multi-tenancy lockdown).
    pub fn with_service_accounts(
        mut self,
        accounts: std::sync::Arc<dyn ServiceAccounts>,
        default: Option<String>,
    ) -> Self {
        self.object_level = Some(object::ObjectLevel { accounts, default });
        self
    }

    /// The credential `provider` gives an ImageRepository of `namespace`
    /// whose `spec.serviceAccountName` is `service_account`.
    pub async fn credential_for(
        &self,
        provider: Provider,
        host: &str,
        namespace: &str,
        service_account: Option<&str>,
        deadline: Instant,
    ) -> Result<Credential, IdentityError> {
        let Some(level) = &self.object_level else {
            return match service_account {
                None => self.credential(provider, host, deadline).await,
                Some(name) => Err(IdentityError {
                    provider,
                    step: "spec.serviceAccountName".to_string(),
                    message: format!(
                        "ServiceAccount {namespace}/{name} is named, but object-level identity is off"
                    ),
                    hint: Some(
                        "start hoist controller with --object-level-identity (hoist run and scan have no cluster to issue its token)".to_string(),
                    ),
                }),
            };
        };
        match service_account.or(level.default.as_deref()) {
            Some(name) => {
                object::credential(self, level, provider, host, namespace, name, deadline).await
            }
            None => self.credential(provider, host, deadline).await,
        }
    }

    /// Requests sent to identity endpoints so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// The credential `provider` gives for the registry `host`, from the
    /// cache while it is good. The caller has checked the host with
    /// [`Provider::registry_problem`].
    pub async fn credential(
        &self,
        provider: Provider,
        host: &str,
        deadline: Instant,
    ) -> Result<Credential, IdentityError> {
        let key = (provider, host.to_string(), None);
        if let Some(credential) = self.cached(&key) {
            return Ok(credential);
        }
        let _refreshing = self.refreshing.lock().await;
        // Another scan may have refreshed it while this one waited.
        if let Some(credential) = self.cached(&key) {
            return Ok(credential);
        }
        let (credential, expires) = match provider {
            Provider::Aws => aws::credential(self, host, deadline).await?,
            Provider::Gcp => gcp::credential(self, deadline).await?,
            Provider::Azure => azure::credential(self, host, deadline).await?,
        };
        self.keep(key, credential.clone(), expires);
        Ok(credential)
    }

    fn keep(&self, key: CacheKey, credential: Credential, expires: jiff::Timestamp) {
        let now = self.now();
        if let Ok(mut cache) = self.credentials.lock() {
            // Bounded: identities that are gone (a ServiceAccount
            // re-annotated, a repository deleted) are not kept forever.
            if cache.len() >= MAX_CACHED {
                cache.retain(|_, c| now < c.refresh_at);
                if cache.len() >= MAX_CACHED {
                    cache.clear();
                }
            }
            cache.insert(
                key,
                Cached {
                    credential,
                    refresh_at: refresh_at(now, expires),
                },
            );
        }
    }

    /// Forgets the credential of `host`: the registry refused it before
    /// its time (revoked, or the clock is off).
    /// Every identity's, hoist's own and the ServiceAccounts'.
    pub fn forget(&self, provider: Provider, host: &str) {
        if let Ok(mut cache) = self.credentials.lock() {
            cache.retain(|(p, h, _), _| !(*p == provider && h == host));
        }
    }

    fn cached(&self, key: &CacheKey) -> Option<Credential> {
        let now = self.now();
        let cache = self.credentials.lock().ok()?;
        cache
            .get(key)
            .filter(|c| now < c.refresh_at)
            .map(|c| c.credential.clone())
    }

    fn now(&self) -> jiff::Timestamp {
        (self.clock)()
    }

    /// Sends one request to an identity endpoint and reads at most
    /// [`MAX_ANSWER`] bytes of its answer, by `deadline`. A non-2xx answer
    /// is an error quoting the start of what the server said.
    async fn send(
        &self,
        provider: Provider,
        step: &str,
        request: reqwest::RequestBuilder,
        deadline: Instant,
    ) -> Result<Vec<u8>, IdentityError> {
        let failed = |message: String| IdentityError {
            provider,
            step: step.to_string(),
            message,
            hint: None,
        };
        self.requests.fetch_add(1, Ordering::Relaxed);
        let exchange = async {
            let mut response = request.send().await.map_err(|e| failed(describe(&e)))?;
            let status = response.status();
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(|e| failed(describe(&e)))? {
                if body.len() + chunk.len() > MAX_ANSWER {
                    return Err(failed(format!(
                        "the answer is larger than {} KiB",
                        MAX_ANSWER >> 10
                    )));
                }
                body.extend_from_slice(&chunk);
            }
            if !status.is_success() {
                return Err(failed(format!(
                    "HTTP {}{}",
                    status.as_u16(),
                    excerpt(&body)
                )));
            }
            Ok(body)
        };
        match tokio::time::timeout_at(deadline, exchange).await {
            Ok(result) => result,
            Err(_) => Err(failed(
                "no answer within the repository's timeout".to_string(),
            )),
        }
    }
}

/// When to fetch a credential that expires at `expires`: a fifth of its
/// life early, at most five minutes, so that no scan starts with a token
/// about to lapse.
fn refresh_at(now: jiff::Timestamp, expires: jiff::Timestamp) -> jiff::Timestamp {
    let life = expires.duration_since(now);
    let early = (life / 5).min(jiff::SignedDuration::from_mins(5));
    expires
        .checked_sub(early.max(jiff::SignedDuration::ZERO))
        .unwrap_or(expires)
}

/// A transport error without the URL's query (which may carry a token).
fn describe(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let url = e
        .url()
        .map(|u| format!(" to {}{}", u.origin().ascii_serialization(), u.path()))
        .unwrap_or_default();
    let source = std::error::Error::source(e)
        .map(|s| format!(": {s}"))
        .unwrap_or_default();
    format!("{what}{url}{source}")
}

/// The start of an error answer, on one line, for the message.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        return String::new();
    }
    let short: String = text.chars().take(300).collect();
    format!(": {}", crate::redact::escape_control(&short))
}

/// A time a server wrote as RFC 3339.
fn parse_time(
    provider: Provider,
    step: &str,
    field: &str,
    text: &str,
) -> Result<jiff::Timestamp, IdentityError> {
    text.trim()
        .parse::<jiff::Timestamp>()
        .map_err(|_| IdentityError {
            provider,
            step: step.to_string(),
            message: format!("{field} is not an RFC 3339 time"),
            hint: None,
        })
}

/// Parses a JSON answer, naming the step when it does not fit.
fn json<T: serde::de::DeserializeOwned>(
    provider: Provider,
    step: &str,
    body: &[u8],
) -> Result<T, IdentityError> {
    serde_json::from_slice(body).map_err(|e| IdentityError {
        provider,
        step: step.to_string(),
        // The error's position only: the answer holds a secret.
        message: format!(
            "the answer is not the expected JSON (line {}, column {})",
            e.line(),
            e.column()
        ),
        hint: None,
    })
}

/// `now + seconds`, for answers that say how long a token lives.
fn after(now: jiff::Timestamp, seconds: u64) -> jiff::Timestamp {
    let seconds = i64::try_from(seconds.min(u64::from(u32::MAX))).unwrap_or(i64::MAX);
    now.checked_add(jiff::SignedDuration::from_secs(seconds))
        .unwrap_or(now)
}

/// Reads a token file the platform mounts (a projected ServiceAccount
/// token), at most [`MAX_ANSWER`] bytes.
fn read_token_file(
    provider: Provider,
    step: &str,
    path: &std::path::Path,
) -> Result<String, IdentityError> {
    let failed = |message: String| IdentityError {
        provider,
        step: step.to_string(),
        message,
        hint: None,
    };
    let metadata =
        std::fs::metadata(path).map_err(|e| failed(format!("reading {}: {e}", path.display())))?;
    if metadata.len() > MAX_ANSWER as u64 {
        return Err(failed(format!(
            "{} is larger than {} KiB",
            path.display(),
            MAX_ANSWER >> 10
        )));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| failed(format!("reading {}: {e}", path.display())))?;
    let token = text.trim().to_string();
    if token.is_empty() {
        return Err(failed(format!("{} is empty", path.display())));
    }
    Ok(token)
}

/// Most credentials cached: one per provider, registry and identity.
const MAX_CACHED: usize = 4096;

/// How long to keep a credential whose expiry the server did not say.
const UNSTATED_LIFETIME: Duration = Duration::from_secs(15 * 60);

#[cfg(test)]
mod tests;
