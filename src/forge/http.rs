//! The HTTP every forge client shares: the API root and token, JSON
//! requests, and rate limits waited out within a budget.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;

use super::{ForgeError, PullState};

/// A forge API root, the token for it, and the HTTP client its calls use:
/// what every provider shares.
pub(super) struct Connection {
    pub(super) api: String,
    token: String,
    client: reqwest::Client,
    /// Time spent waiting out rate limits so far.
    waited: std::sync::Mutex<Duration>,
    /// The token, to be scrubbed from whatever the forge answers.
    secrets: crate::redact::Secrets,
}

impl Connection {
    pub(super) fn new(api: &str, token: String) -> Result<Connection, ForgeError> {
        crate::install_crypto_provider();
        let client = reqwest::Client::builder()
            .user_agent(concat!("hoist/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| ForgeError::Config(format!("setting up HTTP: {e}")))?;
        let mut secrets = crate::redact::Secrets::new();
        secrets.add(&token);
        Ok(Connection {
            api: api.trim_end_matches('/').to_string(),
            secrets,
            token,
            client,
            waited: std::sync::Mutex::default(),
        })
    }

    /// Text the forge sent, fit to print: the token masked, control
    /// characters escaped, bounded.
    pub(super) fn shown(&self, text: &str) -> String {
        crate::redact::server_text(text, &self.secrets)
    }

    /// A pull request as the forge described it, its web address (which
    /// hoist prints) made fit to print like any other text it sent.
    pub(super) fn clean(&self, mut pull: PullState) -> PullState {
        pull.url = self.shown(&pull.url);
        pull
    }

    /// One JSON call to `path` under the API root; `authorize` adds the
    /// provider's auth headers. Rate limits are waited out (see
    /// [`rate_limit_wait`]); answers over [`BODY_LIMIT`] are refused. Errors
    /// carry the path without its query and the forge's own message, never
    /// the token.
    pub(super) async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
        authorize: impl Fn(reqwest::RequestBuilder, &str) -> reqwest::RequestBuilder,
    ) -> Result<T, ForgeError> {
        let method_name = method.to_string();
        let shown = path.split('?').next().unwrap_or(path).to_string();
        let url = format!("{}{path}", self.api);
        let mut waits = 0;
        loop {
            let mut request = authorize(self.client.request(method.clone(), &url), &self.token);
            if let Some(body) = &body {
                request = request.json(body);
            }
            let response = request.send().await.map_err(|e| ForgeError::Transport {
                method: method_name.clone(),
                path: shown.clone(),
                message: if e.is_connect() {
                    "cannot connect".into()
                } else if e.is_timeout() {
                    "timed out".into()
                } else {
                    "request failed".into()
                },
            })?;
            let status = response.status().as_u16();
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            let limit = RateLimitHeaders {
                retry_after: header("retry-after"),
                remaining: header("x-ratelimit-remaining")
                    .or_else(|| header("ratelimit-remaining")),
                reset: header("x-ratelimit-reset").or_else(|| header("ratelimit-reset")),
            };
            let text = read_text(response, BODY_LIMIT, &method_name, &shown).await?;
            let wait = rate_limit_wait(status, &limit, &text, SystemTime::now());
            if let Some(wait) = wait {
                // One budget for all calls of this connection (one
                // automation in one run), so a forge that keeps saying
                // "later" cannot hold a run for long.
                let spent = self.waited.lock().map_or(RATE_LIMIT_BUDGET, |w| *w);
                if spent + wait > RATE_LIMIT_BUDGET || waits == RATE_LIMIT_MAX_WAITS {
                    return Err(ForgeError::RateLimited {
                        method: method_name,
                        path: shown,
                        seconds: wait.as_secs(),
                    });
                }
                if let Ok(mut waited) = self.waited.lock() {
                    *waited += wait;
                }
                waits += 1;
                tracing::info!(path = %shown, seconds = wait.as_secs_f64(), "forge rate limit; waiting");
                tokio::time::sleep(wait).await;
                continue;
            }
            if !(200..300).contains(&status) {
                // GitHub and Gitea say `message`; GitLab `message` (a
                // string, a list or an object of field errors) or `error`.
                let parsed: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                let mut message = match (parsed.get("message"), parsed.get("error")) {
                    (Some(serde_json::Value::String(m)), _) => m.clone(),
                    (Some(other), _) => other.to_string(),
                    (None, Some(serde_json::Value::String(e))) => e.clone(),
                    _ => "no details".to_string(),
                };
                // GitHub's 422 says what failed only in `errors`.
                if let Some(errors) = parsed.get("errors").and_then(|e| e.as_array()) {
                    let details: Vec<&str> = errors
                        .iter()
                        .filter_map(|e| e.get("message").and_then(|m| m.as_str()))
                        .collect();
                    if !details.is_empty() {
                        message = format!("{message}: {}", details.join("; "));
                    }
                }
                return Err(ForgeError::Http {
                    method: method_name,
                    path: shown,
                    status,
                    // The forge's words: it may echo the token, or send
                    // escapes that forge lines on a terminal.
                    message: self.shown(&message),
                });
            }
            let text = if text.trim().is_empty() {
                "null"
            } else {
                &text
            };
            return serde_json::from_str(text).map_err(|e| ForgeError::Transport {
                method: method_name,
                path: shown,
                message: format!("unexpected answer: {e}"),
            });
        }
    }
}

/// The largest answer hoist reads from a forge. A page of pull requests is
/// a few hundred KiB at most; GitLab's largest description is 1 MiB.
pub(super) const BODY_LIMIT: usize = 16 * 1024 * 1024;

/// The answer's text, read up to `limit` bytes: a forge (or something
/// posing as one) that sends more is refused, not buffered.
async fn read_text(
    mut response: reqwest::Response,
    limit: usize,
    method: &str,
    path: &str,
) -> Result<String, ForgeError> {
    let failed = |message: String| ForgeError::Transport {
        method: method.to_string(),
        path: path.to_string(),
        message,
    };
    let too_large = || {
        failed(format!(
            "the answer is larger than {} MiB",
            limit / (1024 * 1024)
        ))
    };
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|_| failed("the answer broke off".to_string()))?
    {
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// The longest hoist waits out rate limits for one automation in one run;
/// a longer limit fails the automation, and the next run tries again.
const RATE_LIMIT_BUDGET: Duration = Duration::from_secs(300);
/// Rate-limited answers one call waits out before it gives up.
const RATE_LIMIT_MAX_WAITS: u32 = 3;

/// The headers forges announce their rate limits with.
#[derive(Debug, Default)]
struct RateLimitHeaders {
    retry_after: Option<String>,
    /// GitHub and Gitea `X-RateLimit-Remaining`, GitLab `RateLimit-Remaining`.
    remaining: Option<String>,
    /// Unix seconds: GitHub `X-RateLimit-Reset`, GitLab `RateLimit-Reset`.
    reset: Option<String>,
}

/// How long to wait before asking again, when the answer is a rate limit:
/// a 429, or GitHub's 403 with no requests remaining, a `Retry-After`, or
/// a message about its secondary rate limit. `Retry-After` wins; else the
/// reset time (Unix seconds, or seconds from now in the IETF draft's form);
/// else a minute, as GitHub advises for secondary limits without headers.
fn rate_limit_wait(
    status: u16,
    headers: &RateLimitHeaders,
    body: &str,
    now: SystemTime,
) -> Option<Duration> {
    let exhausted = headers.remaining.as_deref().map(str::trim) == Some("0");
    let secondary = body.contains("secondary rate limit");
    let limited = status == 429
        || (status == 403 && (exhausted || secondary || headers.retry_after.is_some()));
    if !limited {
        return None;
    }
    if let Some(wait) = headers
        .retry_after
        .as_deref()
        .and_then(|h| crate::net::retry_after(h, now))
    {
        return Some(wait.max(Duration::from_secs(1)));
    }
    /// Smaller values are a number of seconds, not a point in time.
    const EPOCH_FLOOR: u64 = 1_000_000_000;
    let reset = headers
        .reset
        .as_deref()
        .and_then(|r| r.trim().parse::<u64>().ok())
        .map(|secs| {
            if secs < EPOCH_FLOOR {
                Duration::from_secs(secs)
            } else {
                (UNIX_EPOCH + Duration::from_secs(secs))
                    .duration_since(now)
                    .unwrap_or(Duration::ZERO)
            }
        });
    Some(reset.map_or(Duration::from_secs(60), |d| d.max(Duration::from_secs(1))))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn rate_limits_are_waited_out_for_as_long_as_the_forge_says() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let headers =
            |retry: Option<&str>, remaining: Option<&str>, reset: Option<&str>| RateLimitHeaders {
                retry_after: retry.map(str::to_string),
                remaining: remaining.map(str::to_string),
                reset: reset.map(str::to_string),
            };
        let secs = Duration::from_secs;
        let cases = [
            // GitHub's secondary limit: 403 or 429 with Retry-After.
            (403, headers(Some("30"), None, None), Some(secs(30))),
            (429, headers(Some("0"), None, None), Some(secs(1))),
            // GitHub's primary limit: 403, none remaining, reset in Unix seconds.
            (
                403,
                headers(None, Some("0"), Some("1800000090")),
                Some(secs(90)),
            ),
            // GitLab: 429 with RateLimit-Reset.
            (
                429,
                headers(None, Some("0"), Some("1800000005")),
                Some(secs(5)),
            ),
            // A reset in the past still waits a moment.
            (429, headers(None, None, Some("1700000000")), Some(secs(1))),
            // No header at all: a minute.
            (429, headers(None, None, None), Some(secs(60))),
            // A 403 with requests left is a permission problem, not a limit.
            (403, headers(None, Some("4999"), Some("1800000090")), None),
            (403, headers(None, None, None), None),
            // GitHub's secondary limit said only in the message: a minute.
            (429, headers(None, None, None), Some(secs(60))),
            // RateLimit-Reset as seconds from now (the IETF draft's form).
            (429, headers(None, Some("0"), Some("7")), Some(secs(7))),
            (200, headers(None, Some("0"), Some("1800000090")), None),
        ];
        let secondary = r#"{"message": "You have exceeded a secondary rate limit."}"#;
        assert_eq!(
            rate_limit_wait(403, &headers(None, Some("4000"), None), secondary, now),
            Some(secs(60))
        );
        for (status, headers, expected) in cases {
            assert_eq!(
                rate_limit_wait(status, &headers, "", now),
                expected,
                "{status} {headers:?}"
            );
        }
    }
}
