//! GitHub and GitHub Enterprise, by the REST API
//! (https://docs.github.com/en/rest/pulls/pulls). Labels and comments go
//! through the issues API, which pull requests share.

use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use super::{Connection, Forge, ForgeError, ForgeRepo, PullRequestSpec, PullState, decode};

/// A GitHub repository and the token to act on it with.
pub struct GitHub {
    connection: Connection,
    owner: String,
    /// `/repos/OWNER/NAME`
    repo: String,
}

#[derive(Deserialize)]
struct Pull {
    number: u64,
    html_url: String,
    state: String,
    title: String,
    body: Option<String>,
    #[serde(default)]
    labels: Vec<Label>,
}

#[derive(Deserialize)]
struct Label {
    name: String,
}

impl From<Pull> for PullState {
    fn from(pull: Pull) -> PullState {
        PullState {
            number: pull.number,
            url: pull.html_url,
            open: pull.state == "open",
            title: pull.title,
            body: pull.body.unwrap_or_default(),
            labels: pull.labels.into_iter().map(|l| l.name).collect(),
        }
    }
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
            repo: format!("/repos/{owner}/{name}"),
            owner,
        })
    }

    fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value, ForgeError> {
        self.connection.call(method, path, body, |r, token| {
            r.bearer_auth(token)
                .header("Accept", "application/vnd.github+json")
                .header("X-GitHub-Api-Version", "2022-11-28")
        })
    }

    fn pull(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<PullState, ForgeError> {
        let name = if method == Method::GET {
            "GET"
        } else {
            "PATCH"
        };
        let pull: Pull = decode(self.call(method, path, body)?, name, path)?;
        Ok(pull.into())
    }
}

impl Forge for GitHub {
    fn find_open(&self, head: &str, base: &str) -> Result<Option<PullState>, ForgeError> {
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("state", "open")
            .append_pair("head", &format!("{}:{head}", self.owner))
            .append_pair("base", base)
            .finish();
        let path = format!("{}/pulls?{query}", self.repo);
        let pulls: Vec<Pull> = decode(self.call(Method::GET, &path, None)?, "GET", &path)?;
        Ok(pulls.into_iter().next().map(PullState::from))
    }

    fn get(&self, number: u64) -> Result<PullState, ForgeError> {
        self.pull(Method::GET, &format!("{}/pulls/{number}", self.repo), None)
    }

    fn create(&self, spec: &PullRequestSpec) -> Result<PullState, ForgeError> {
        let path = format!("{}/pulls", self.repo);
        let body =
            json!({"title": spec.title, "body": spec.body, "head": spec.head, "base": spec.base});
        let pull: Pull = decode(self.call(Method::POST, &path, Some(body))?, "POST", &path)?;
        Ok(pull.into())
    }

    fn edit(&self, number: u64, title: &str, body: &str) -> Result<PullState, ForgeError> {
        let path = format!("{}/pulls/{number}", self.repo);
        self.pull(
            Method::PATCH,
            &path,
            Some(json!({"title": title, "body": body})),
        )
    }

    fn add_labels(&self, number: u64, labels: &[String]) -> Result<(), ForgeError> {
        let path = format!("{}/issues/{number}/labels", self.repo);
        self.call(Method::POST, &path, Some(json!({"labels": labels})))
            .map(drop)
    }

    fn close(&self, number: u64, comment: &str) -> Result<(), ForgeError> {
        let path = format!("{}/issues/{number}/comments", self.repo);
        self.call(Method::POST, &path, Some(json!({"body": comment})))?;
        let path = format!("{}/pulls/{number}", self.repo);
        self.call(Method::PATCH, &path, Some(json!({"state": "closed"})))
            .map(drop)
    }
}
