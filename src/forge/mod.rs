//! The forge stage: one pull request per automation, from the branch hoist
//! owns to the checkout branch, on GitHub (and GitHub Enterprise), GitLab
//! and Gitea / Forgejo behind one trait.

mod gitea;
mod github;
mod gitlab;

use std::fmt;

pub use gitea::Gitea;
pub use github::GitHub;
pub use gitlab::GitLab;

/// A repository on a forge, derived from a git URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForgeRepo {
    /// The host (with port) the URL names: `github.com`, `git.example.com:8443`.
    pub host: String,
    /// `owner/name`, or `group/subgroup/project` on GitLab.
    pub path: String,
}

impl ForgeRepo {
    /// Reads `https://host[:port]/owner/name(.git)`, `ssh://git@host[:port]/owner/name.git`
    /// and `git@host:owner/name.git`.
    pub fn from_git_url(url: &str) -> Result<ForgeRepo, ForgeError> {
        let invalid = || {
            ForgeError::Config(format!(
                "{} does not name a repository on a forge",
                crate::git::redact(url)
            ))
        };
        let (host, path) = if let Some((scheme, rest)) = url.split_once("://") {
            if !matches!(scheme, "https" | "http" | "ssh" | "git") {
                return Err(invalid());
            }
            let (authority, path) = rest.split_once('/').ok_or_else(invalid)?;
            let host = authority.rsplit('@').next().unwrap_or(authority);
            // An ssh port is not the forge's web port; keep the host only.
            let host = if scheme == "ssh" {
                host.split(':').next().unwrap_or(host)
            } else {
                host
            };
            (host.to_string(), path.to_string())
        } else if let Some((user_host, path)) = url.split_once(':') {
            let host = user_host.rsplit('@').next().unwrap_or(user_host);
            (host.to_string(), path.trim_start_matches('/').to_string())
        } else {
            return Err(invalid());
        };
        let path = path
            .trim_end_matches('/')
            .trim_end_matches(".git")
            .to_string();
        if host.is_empty()
            || path.split('/').filter(|p| !p.is_empty()).count() < 2
            || path.split('/').any(|p| p.is_empty() || p == "..")
        {
            return Err(invalid());
        }
        Ok(ForgeRepo { host, path })
    }
}

impl ForgeRepo {
    /// `owner` and `name` of a GitHub or Gitea repository.
    fn owner_name(&self) -> Result<(String, String), ForgeError> {
        self.path
            .split_once('/')
            .filter(|(_, n)| !n.contains('/'))
            .map(|(o, n)| (o.to_string(), n.to_string()))
            .ok_or_else(|| ForgeError::Config(format!("{} is not owner/name", self.path)))
    }
}

/// A forge API root, the token for it, and the HTTP client and runtime its
/// calls use: what every provider shares.
struct Connection {
    api: String,
    token: String,
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

impl Connection {
    fn new(
        api: &str,
        token: String,
        runtime: tokio::runtime::Handle,
    ) -> Result<Connection, ForgeError> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("hoist/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ForgeError::Config(format!("setting up HTTP: {e}")))?;
        Ok(Connection {
            api: api.trim_end_matches('/').to_string(),
            token,
            client,
            runtime,
        })
    }

    /// One JSON call to `path` under the API root; `authorize` adds the
    /// provider's auth headers.
    fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
        authorize: impl FnOnce(reqwest::RequestBuilder, &str) -> reqwest::RequestBuilder,
    ) -> Result<serde_json::Value, ForgeError> {
        call(
            &self.client,
            &self.runtime,
            method,
            &format!("{}{path}", self.api),
            path,
            body,
            |r| authorize(r, &self.token),
        )
    }
}

/// An open pull (or merge) request.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PullRequest {
    pub number: u64,
    pub url: String,
}

/// What hoist asks of a forge for one automation.
#[derive(Clone, Debug)]
pub struct PullRequestSpec {
    /// hoist's branch.
    pub head: String,
    /// The checkout branch.
    pub base: String,
    pub title: String,
    pub body: String,
    pub labels: Vec<String>,
}

/// Why a forge call failed. Never carries the token.
#[derive(Debug, thiserror::Error)]
pub enum ForgeError {
    #[error("{0}")]
    Config(String),
    #[error("{method} {path}: HTTP {status}: {message}{}", hint(*status))]
    Http {
        method: &'static str,
        path: String,
        status: u16,
        message: String,
    },
    #[error("{method} {path}: {message}")]
    Transport {
        method: &'static str,
        path: String,
        message: String,
    },
}

fn hint(status: u16) -> &'static str {
    match status {
        401 => "; the token is missing or invalid",
        403 => {
            "; the token lacks a scope (pull requests: write, contents: write) or the rate limit is spent"
        }
        404 => "; no such repository, or the token cannot see it",
        422 => "; the forge refused the request as invalid",
        _ => "",
    }
}

/// Opens or updates the one pull request of an automation.
pub trait Forge {
    /// Finds the open pull request from `spec.head` to `spec.base`, updates
    /// its title and body, or opens one when there is none.
    fn ensure(&self, spec: &PullRequestSpec) -> Result<PullRequest, ForgeError>;
}

/// One JSON call to a forge, blocking on `runtime` from outside it. Errors
/// carry the path without its query and the forge's own message, never the
/// token.
#[allow(clippy::too_many_arguments)]
fn call(
    client: &reqwest::Client,
    runtime: &tokio::runtime::Handle,
    method: reqwest::Method,
    url: &str,
    path: &str,
    body: Option<serde_json::Value>,
    authorize: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
) -> Result<serde_json::Value, ForgeError> {
    let method_name: &'static str = match method.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PATCH" => "PATCH",
        "PUT" => "PUT",
        _ => "DELETE",
    };
    let mut request = authorize(client.request(method, url));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let shown = path.split('?').next().unwrap_or(path).to_string();
    runtime.block_on(async {
        let response = request.send().await.map_err(|e| ForgeError::Transport {
            method: method_name,
            path: shown.clone(),
            message: if e.is_connect() {
                "cannot connect".into()
            } else {
                "request failed".into()
            },
        })?;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        if !(200..300).contains(&status) {
            // GitHub and Gitea say `message`; GitLab `message` (a string or
            // an object of field errors) or `error`.
            let parsed: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            let message = match (parsed.get("message"), parsed.get("error")) {
                (Some(serde_json::Value::String(m)), _) => m.clone(),
                (Some(other), _) => other.to_string(),
                (None, Some(serde_json::Value::String(e))) => e.clone(),
                _ => "no details".to_string(),
            };
            return Err(ForgeError::Http {
                method: method_name,
                path: shown,
                status,
                message,
            });
        }
        if text.trim().is_empty() {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| ForgeError::Transport {
            method: method_name,
            path: shown,
            message: format!("the answer is not JSON: {e}"),
        })
    })
}

impl fmt::Display for PullRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{} {}", self.number, self.url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(url: &str) -> Result<(String, String), String> {
        ForgeRepo::from_git_url(url)
            .map(|r| (r.host, r.path))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn repositories_from_git_urls() {
        let ok = |h: &str, p: &str| Ok((h.to_string(), p.to_string()));
        assert_eq!(
            repo("https://github.com/acme/fleet.git"),
            ok("github.com", "acme/fleet")
        );
        assert_eq!(
            repo("https://github.com/acme/fleet"),
            ok("github.com", "acme/fleet")
        );
        assert_eq!(
            repo("git@github.com:acme/fleet.git"),
            ok("github.com", "acme/fleet")
        );
        assert_eq!(
            repo("ssh://git@github.com/acme/fleet.git"),
            ok("github.com", "acme/fleet")
        );
        assert_eq!(
            repo("ssh://git@gitlab.example.com:2222/group/sub/project.git"),
            ok("gitlab.example.com", "group/sub/project")
        );
        assert_eq!(
            repo("https://bot:tok@git.example.com:8443/team/app.git/"),
            ok("git.example.com:8443", "team/app")
        );
        for bad in [
            "file:///srv/fleet.git",
            "https://github.com/acme",
            "fleet",
            "https://github.com//x",
        ] {
            assert!(repo(bad).is_err(), "{bad}");
        }
        let error = repo("https://bot:tok@github.com/x")
            .err()
            .unwrap_or_default();
        assert!(!error.is_empty() && !error.contains("tok"), "{error}");
    }
}
