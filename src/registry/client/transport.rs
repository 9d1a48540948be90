//! How requests reach a registry: one HTTP client per TLS setting, a
//! concurrency gate and 429 pause per host, retries with jittered
//! backoff, and bodies read within a size limit.

use super::*;

/// One registry host: how many requests may be in flight, and until when
/// it asked us (429) to send none.
pub(super) struct Host {
    pub(super) permits: Semaphore,
    pub(super) not_before: Mutex<Option<Instant>>,
}

/// What a request did not get, before it is tied to an image.
pub(super) struct Failure {
    pub(super) kind: FailureKind,
    pub(super) status: Option<u16>,
    pub(super) code: Option<String>,
    pub(super) detail: String,
}

impl Failure {
    pub(super) fn new(kind: FailureKind, detail: impl Into<String>) -> Self {
        Failure {
            kind,
            status: None,
            code: None,
            detail: detail.into(),
        }
    }
}

impl Registry {
    pub(super) fn client(&self, tls: &TlsConfig) -> Result<reqwest::Client, Failure> {
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

    pub(super) fn host(&self, name: &str) -> Arc<Host> {
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
    pub(super) async fn execute(
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

    /// Sends one request with the host's gates, retrying what is worth
    /// retrying: resets and timeouts, 5xx, and 429 after its Retry-After.
    /// Any other response, 401 and 404 included, goes back to the caller.
    pub(super) async fn send(
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
    pub(super) fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self.settings.backoff.saturating_mul(1 << attempt.min(10));
        let fraction = (random_u64() % 1000) as u32;
        ceiling / 2 + ceiling * fraction / 2000
    }
}

impl Host {
    /// How long to wait before the next request, if the host asked for a pause.
    pub(super) fn wait(&self) -> Option<Duration> {
        let not_before = *self.not_before.lock().unwrap_or_else(|e| e.into_inner());
        not_before
            .map(|at| at.saturating_duration_since(Instant::now()))
            .filter(|d| !d.is_zero())
    }

    pub(super) fn pause(&self, pause: Duration) {
        let mut not_before = self.not_before.lock().unwrap_or_else(|e| e.into_inner());
        let until = Instant::now() + pause.min(MAX_PAUSE);
        if not_before.is_none_or(|at| at < until) {
            *not_before = Some(until);
        }
    }
}

/// A random number for jitter; std's hasher keys are random per instance.
pub(super) fn random_u64() -> u64 {
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
pub(super) fn describe(e: &reqwest::Error) -> String {
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
pub(super) async fn read_body(
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

pub(super) fn too_large(detail: String) -> Failure {
    Failure::new(FailureKind::TooLarge, detail)
}

pub(super) fn size(bytes: usize) -> String {
    if bytes >= 1 << 20 {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{} KiB", bytes >> 10)
    }
}

/// Turns an unsuccessful response into a failure with the registry's code.
pub(super) async fn failure_from(response: reqwest::Response, deadline: Instant) -> Failure {
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
