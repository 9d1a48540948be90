//! GitHub and GitHub Enterprise, by the REST API
//! (https://docs.github.com/en/rest/pulls/pulls).

use serde::Deserialize;
use serde_json::json;

use super::{Connection, Forge, ForgeError, ForgeRepo, PullRequest, PullRequestSpec};

/// A GitHub repository and the token to act on it with.
pub struct GitHub {
    connection: Connection,
    owner: String,
    name: String,
}

#[derive(Deserialize)]
struct Pull {
    number: u64,
    html_url: String,
}

impl GitHub {
    /// `api` is `https://api.github.com` or an Enterprise server's
    /// `https://HOST/api/v3`. Calls block on `runtime` from outside it.
    pub fn new(
        api: &str,
        repo: &ForgeRepo,
        token: String,
        runtime: tokio::runtime::Handle,
    ) -> Result<GitHub, ForgeError> {
        let (owner, name) = repo.owner_name()?;
        Ok(GitHub {
            connection: Connection::new(api, token, runtime)?,
            owner,
            name,
        })
    }

    fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value, ForgeError> {
        self.connection.call(method, path, body, |r, token| {
            r.bearer_auth(token)
                .header("Accept", "application/vnd.github+json")
                .header("X-GitHub-Api-Version", "2022-11-28")
        })
    }

    fn pull(value: serde_json::Value, path: &str) -> Result<PullRequest, ForgeError> {
        let pull: Pull = serde_json::from_value(value).map_err(|e| ForgeError::Transport {
            method: "GET",
            path: path.to_string(),
            message: format!("unexpected pull request JSON: {e}"),
        })?;
        Ok(PullRequest {
            number: pull.number,
            url: pull.html_url,
        })
    }
}

impl Forge for GitHub {
    fn ensure(&self, spec: &PullRequestSpec) -> Result<PullRequest, ForgeError> {
        let repo = format!("/repos/{}/{}", self.owner, self.name);
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("state", "open")
            .append_pair("head", &format!("{}:{}", self.owner, spec.head))
            .append_pair("base", &spec.base)
            .finish();
        let listed = self.call(reqwest::Method::GET, &format!("{repo}/pulls?{query}"), None)?;
        let existing = listed.as_array().and_then(|a| a.first()).cloned();
        let pull = match existing {
            Some(open) => {
                let open = GitHub::pull(open, &format!("{repo}/pulls"))?;
                let path = format!("{repo}/pulls/{}", open.number);
                let updated = self.call(
                    reqwest::Method::PATCH,
                    &path,
                    Some(json!({"title": spec.title, "body": spec.body})),
                )?;
                GitHub::pull(updated, &path)?
            }
            None => {
                let path = format!("{repo}/pulls");
                let created = self.call(
                    reqwest::Method::POST,
                    &path,
                    Some(json!({"title": spec.title, "body": spec.body, "head": spec.head, "base": spec.base})),
                )?;
                GitHub::pull(created, &path)?
            }
        };
        if !spec.labels.is_empty() {
            self.call(
                reqwest::Method::POST,
                &format!("{repo}/issues/{}/labels", pull.number),
                Some(json!({"labels": spec.labels})),
            )?;
        }
        Ok(pull)
    }
}
