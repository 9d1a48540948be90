use std::fmt;

/// What kind of failure a registry request met; decides retries and the
/// hint a user gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// 401: missing or wrong credentials.
    Unauthorized,
    /// 403: the credentials may not read this repository.
    Denied,
    /// 404: no such repository or tag.
    NotFound,
    /// 429 that outlasted the retries or the timeout.
    RateLimited,
    /// No answer within the repository's `timeout`.
    Timeout,
    /// Connection refused or reset, DNS, TLS.
    Transport,
    /// 5xx that outlasted the retries.
    Server,
    /// The registry answered something that does not follow the protocol.
    Protocol,
    /// Credentials could not be read (config.json, credential helper).
    Credentials,
    /// The repository lists more tags, or more bytes of them, than the
    /// caps allow.
    TooLarge,
}

/// A failed registry operation. Names the image, the request and what the
/// registry said; never carries a credential (URLs are shown without their
/// query, headers never).
#[derive(Clone, Debug, thiserror::Error)]
pub struct RegistryError {
    /// The canonical image name.
    pub image: String,
    /// `GET /v2/acme/app/tags/list`, or the token endpoint's path.
    pub request: String,
    pub kind: FailureKind,
    pub status: Option<u16>,
    /// The registry's error code: `NAME_UNKNOWN`, `UNAUTHORIZED`, `DENIED`,
    /// `TOOMANYREQUESTS`, …
    pub code: Option<String>,
    pub detail: String,
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: ", self.image, self.request)?;
        if let Some(status) = self.status {
            write!(f, "HTTP {status}")?;
            if let Some(reason) = reqwest::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
            {
                write!(f, " {reason}")?;
            }
            match &self.code {
                Some(code) => write!(f, " ({code}: {})", self.detail)?,
                None if !self.detail.is_empty() => write!(f, " ({})", self.detail)?,
                None => {}
            }
        } else {
            f.write_str(&self.detail)?;
        }
        Ok(())
    }
}

impl RegistryError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<&'static str> {
        match self.kind {
            FailureKind::Unauthorized => Some(
                "add credentials for this registry to config.json (`docker login`, $DOCKER_CONFIG) or spec.secretRef",
            ),
            FailureKind::Denied => {
                Some("the credentials may not pull this repository; check their scope")
            }
            FailureKind::NotFound => Some(
                "check spec.image; private repositories may also answer 404 without credentials",
            ),
            FailureKind::RateLimited => Some(
                "the registry is rate limiting; raise spec.interval or authenticate for a higher limit",
            ),
            FailureKind::Timeout => {
                Some("raise spec.timeout, or check that the registry is reachable")
            }
            FailureKind::Transport => Some(
                "check the registry host, port, TLS settings (spec.insecure, spec.certSecretRef)",
            ),
            FailureKind::TooLarge => Some(
                "if the repository really has this many tags, raise spec.maxTags (default 50000)",
            ),
            FailureKind::Server | FailureKind::Protocol | FailureKind::Credentials => None,
        }
    }
}

/// The first entry of a registry's `{"errors": [{"code", "message"}]}` body.
pub(crate) fn error_code(body: &[u8]) -> Option<(String, String)> {
    #[derive(serde::Deserialize)]
    struct Body {
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        code: String,
        #[serde(default)]
        message: String,
    }
    let body: Body = serde_json::from_slice(body).ok()?;
    body.errors.into_iter().next().map(|e| (e.code, e.message))
}
