//! Registry credentials from docker's `config.json`, the format users
//! already keep them in (and that `kubernetes.io/dockerconfigjson` Secrets
//! hold in a cluster).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use super::reference::DOCKER_HUB;

/// What to authenticate to one registry with.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    Basic {
        username: String,
        password: String,
    },
    /// An OAuth2 refresh token (`identitytoken`), traded for access tokens.
    IdentityToken(String),
    /// A Microsoft Entra access token (`provider: azure`), traded at the
    /// registry's `/oauth2/exchange` for an ACR refresh token.
    AadToken {
        token: String,
        tenant: Option<String>,
    },
}

impl fmt::Debug for Credential {
    // Secrets never reach a log line, not even through Debug.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
            Credential::IdentityToken(_) => f.write_str("IdentityToken(<redacted>)"),
            Credential::AadToken { .. } => f.write_str("AadToken(<redacted>)"),
        }
    }
}

impl Credential {
    /// A sha256 of the whole credential: keys caches so that two
    /// credentials never share an authorization, without keeping the
    /// secret itself as a key.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest;
        let mut hasher = sha2::Sha256::new();
        match self {
            Credential::Basic { username, password } => {
                hasher.update(b"basic\0");
                hasher.update(username.as_bytes());
                hasher.update(b"\0");
                hasher.update(password.as_bytes());
            }
            Credential::IdentityToken(token) => {
                hasher.update(b"identity\0");
                hasher.update(token.as_bytes());
            }
            Credential::AadToken { token, tenant } => {
                hasher.update(b"aad\0");
                hasher.update(token.as_bytes());
                hasher.update(b"\0");
                hasher.update(tenant.as_deref().unwrap_or("").as_bytes());
            }
        }
        format!("{:x}", hasher.finalize())
    }
}

/// Why credentials could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("{}: {message}", path.display())]
    Config { path: PathBuf, message: String },
    #[error("credential helper docker-credential-{helper} for {registry}: {message}")]
    Helper {
        helper: String,
        registry: String,
        message: String,
    },
}

/// The parts of docker's `config.json` hoist reads.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default)]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default)]
    creds_store: Option<String>,
}

#[derive(Clone, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

impl fmt::Debug for AuthEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthEntry(<redacted>)")
    }
}

impl DockerConfig {
    /// Parses a `config.json`. The error names where the file went wrong
    /// but never quotes it: the file holds secrets.
    pub fn parse(text: &str, origin: &Path) -> Result<Self, CredentialError> {
        serde_json::from_str(text).map_err(|e| CredentialError::Config {
            path: origin.to_path_buf(),
            message: format!(
                "not a docker config.json ({} error at line {}, column {})",
                match e.classify() {
                    serde_json::error::Category::Syntax | serde_json::error::Category::Eof =>
                        "syntax",
                    _ => "structure",
                },
                e.line(),
                e.column()
            ),
        })
    }

    /// Parses the `.dockerconfigjson` of a Secret. Its `credsStore` and
    /// `credHelpers` are ignored: a Secret must not make hoist run programs
    /// that act with hoist's own identity (a cloud credential helper).
    pub fn parse_secret(text: &str, origin: &Path) -> Result<Self, CredentialError> {
        let mut config = DockerConfig::parse(text, origin)?;
        if config.creds_store.take().is_some() || !config.cred_helpers.is_empty() {
            tracing::warn!(secret = %origin.display(), "credsStore and credHelpers in a Secret are ignored");
        }
        config.cred_helpers.clear();
        Ok(config)
    }

    /// Reads `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`; no
    /// file means no credentials (anonymous access).
    pub fn from_environment() -> Result<Self, CredentialError> {
        let dir = match std::env::var_os("DOCKER_CONFIG") {
            Some(dir) => PathBuf::from(dir),
            None => match std::env::var_os("HOME") {
                Some(home) => PathBuf::from(home).join(".docker"),
                None => return Ok(DockerConfig::default()),
            },
        };
        let path = dir.join("config.json");
        match std::fs::read_to_string(&path) {
            Ok(text) => DockerConfig::parse(&text, &path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DockerConfig::default()),
            Err(e) => Err(CredentialError::Config {
                path,
                message: e.to_string(),
            }),
        }
    }

    /// The credential for a registry (`docker.io`, `ghcr.io`,
    /// `localhost:5000`), in docker's order: a per-registry helper, an
    /// `auths` entry, then the default store.
    pub async fn lookup(&self, registry: &str) -> Result<Option<Credential>, CredentialError> {
        if let Some(helper) = self.cred_helpers.get(registry) {
            return run_helper(helper, registry).await;
        }
        for (key, entry) in &self.auths {
            if normalize_key(key) == registry
                && let Some(credential) = entry.credential(registry)?
            {
                return Ok(Some(credential));
            }
        }
        match &self.creds_store {
            Some(store) if !store.is_empty() => run_helper(store, registry).await,
            _ => Ok(None),
        }
    }
}

impl AuthEntry {
    fn credential(&self, registry: &str) -> Result<Option<Credential>, CredentialError> {
        if let Some(token) = self.identitytoken.as_deref().filter(|t| !t.is_empty()) {
            return Ok(Some(Credential::IdentityToken(token.to_string())));
        }
        if let (Some(username), Some(password)) = (&self.username, &self.password) {
            return Ok(Some(Credential::Basic {
                username: username.clone(),
                password: password.clone(),
            }));
        }
        let Some(auth) = self.auth.as_deref().filter(|a| !a.is_empty()) else {
            return Ok(None);
        };
        let bad = |what: &str| CredentialError::Config {
            path: PathBuf::from("config.json"),
            message: format!("auths entry for {registry}: `auth` {what}"),
        };
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| bad("is not base64"))?;
        let decoded = String::from_utf8(decoded).map_err(|_| bad("is not UTF-8"))?;
        let (username, password) = decoded
            .split_once(':')
            .ok_or_else(|| bad("is not base64 of username:password"))?;
        Ok(Some(Credential::Basic {
            username: username.to_string(),
            password: password.to_string(),
        }))
    }
}

/// `https://index.docker.io/v1/` → `docker.io`, `https://ghcr.io` →
/// `ghcr.io`: the keys docker writes, as registry names.
fn normalize_key(key: &str) -> String {
    let without_scheme = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = without_scheme.split('/').next().unwrap_or(without_scheme);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            DOCKER_HUB.to_string()
        }
        other => other.to_string(),
    }
}

#[derive(Deserialize)]
struct HelperOutput {
    #[serde(rename = "Username")]
    username: String,
    #[serde(rename = "Secret")]
    secret: String,
}

/// Runs `docker-credential-NAME get` with the server URL on stdin, as the
/// docker CLI does. Docker Hub's entry is keyed by its v1 URL.
async fn run_helper(helper: &str, registry: &str) -> Result<Option<Credential>, CredentialError> {
    let error = |message: String| CredentialError::Helper {
        helper: helper.to_string(),
        registry: registry.to_string(),
        message,
    };
    let server = if registry == DOCKER_HUB {
        "https://index.docker.io/v1/"
    } else {
        registry
    };
    let mut child = tokio::process::Command::new(format!("docker-credential-{helper}"))
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| error(format!("cannot run it: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(server.as_bytes())
            .await
            .map_err(|e| error(format!("writing to it: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| error(format!("waiting for it: {e}")))?;
    if !out.status.success() {
        let stdout = String::from_utf8_lossy(&out.stdout);
        // Helpers report a missing entry on stdout with exit 1.
        if stdout.contains("credentials not found") {
            return Ok(None);
        }
        return Err(error(format!("exited with {}", out.status)));
    }
    let parsed: HelperOutput = serde_json::from_slice(&out.stdout).map_err(|_| {
        error("printed something that is not {\"Username\", \"Secret\"} JSON".to_string())
    })?;
    if parsed.username == "<token>" {
        return Ok(Some(Credential::IdentityToken(parsed.secret)));
    }
    Ok(Some(Credential::Basic {
        username: parsed.username,
        password: parsed.secret,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> DockerConfig {
        DockerConfig::parse(json, Path::new("config.json")).unwrap_or_else(|e| panic!("{e}"))
    }

    fn basic(u: &str, p: &str) -> Option<Credential> {
        Some(Credential::Basic {
            username: u.into(),
            password: p.into(),
        })
    }

    #[tokio::test]
    async fn reads_every_auths_form() {
        let c = config(
            r#"{"auths": {
                "https://index.docker.io/v1/": {"auth": "dXNlcjpwYXNzOndvcmQ="},
                "ghcr.io": {"username": "octo", "password": "ghp_x"},
                "http://localhost:5000": {"identitytoken": "refresh"},
                "quay.io": {}
            }}"#,
        );
        let get = |r: &'static str| {
            let c = c.clone();
            async move { c.lookup(r).await.unwrap_or_else(|e| panic!("{e}")) }
        };
        assert_eq!(get("docker.io").await, basic("user", "pass:word"));
        assert_eq!(get("ghcr.io").await, basic("octo", "ghp_x"));
        assert_eq!(
            get("localhost:5000").await,
            Some(Credential::IdentityToken("refresh".into()))
        );
        assert_eq!(get("quay.io").await, None);
        assert_eq!(get("example.com").await, None);
    }

    #[test]
    fn debug_never_shows_secrets() {
        let text = format!(
            "{:?} {:?}",
            basic("u", "hunter2"),
            Credential::IdentityToken("tok123".into())
        );
        assert!(
            !text.contains("hunter2") && !text.contains("tok123"),
            "{text}"
        );
    }
}
