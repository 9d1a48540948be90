//! GitHub and GitHub Enterprise, by the REST API
//! (https://docs.github.com/en/rest/pulls/pulls). Labels and comments go
//! through the issues API, which pull requests share.

use reqwest::Method;
use serde::Deserialize;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde_json::json;

use super::{Connection, Forge, ForgeError, ForgeRepo, PullRequestSpec, PullState};

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
    head: Branch,
    base: Branch,
}

#[derive(Deserialize)]
struct Branch {
    #[serde(rename = "ref")]
    name: String,
    /// `owner:branch`; the owner tells a fork's branch from ours.
    label: Option<String>,
}

#[derive(Deserialize)]
struct Label {
    name: String,
}

impl GitHub {
    /// `api` is `https://api.github.com` or an Enterprise server's
    /// `https://HOST/api/v3`.
    pub fn new(api: &str, repo: &ForgeRepo, token: String) -> Result<GitHub, ForgeError> {
        let (owner, name) = repo.owner_name()?;
        Ok(GitHub {
            connection: Connection::new(api, token)?,
            repo: format!("/repos/{owner}/{name}"),
            owner,
        })
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<T, ForgeError> {
        self.connection
            .call(method, path, body, |r, token| {
                r.bearer_auth(token)
                    .header("Accept", "application/vnd.github+json")
                    .header("X-GitHub-Api-Version", "2022-11-28")
            })
            .await
    }

    fn state(&self, pull: Pull) -> PullState {
        let ours = format!("{}:{}", self.owner, pull.head.name);
        self.connection.clean(PullState {
            number: pull.number,
            url: pull.html_url,
            open: pull.state == "open",
            title: pull.title,
            body: pull.body.unwrap_or_default(),
            labels: pull.labels.into_iter().map(|l| l.name).collect(),
            fork: pull
                .head
                .label
                .is_some_and(|l| !l.eq_ignore_ascii_case(&ours)),
            head: pull.head.name,
            base: pull.base.name,
        })
    }
}

#[async_trait::async_trait]
impl Forge for GitHub {
    fn identity(&self) -> String {
        format!("github {}{}", self.connection.api, self.repo)
    }

    async fn find_open(&self, head: &str, base: &str) -> Result<Option<PullState>, ForgeError> {
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("state", "open")
            .append_pair("head", &format!("{}:{head}", self.owner))
            .append_pair("base", base)
            .finish();
        let pulls: Vec<Pull> = self
            .call(Method::GET, &format!("{}/pulls?{query}", self.repo), None)
            .await?;
        Ok(pulls.into_iter().next().map(|p| self.state(p)))
    }

    async fn get(&self, number: u64) -> Result<PullState, ForgeError> {
        let pull = self
            .call(Method::GET, &format!("{}/pulls/{number}", self.repo), None)
            .await?;
        Ok(self.state(pull))
    }

    async fn create(&self, spec: &PullRequestSpec) -> Result<PullState, ForgeError> {
        let body =
            json!({"title": spec.title, "body": spec.body, "head": spec.head, "base": spec.base});
        let pull = self
            .call(Method::POST, &format!("{}/pulls", self.repo), Some(body))
            .await?;
        Ok(self.state(pull))
    }

    async fn edit(&self, number: u64, title: &str, body: &str) -> Result<PullState, ForgeError> {
        let path = format!("{}/pulls/{number}", self.repo);
        let pull = self
            .call(
                Method::PATCH,
                &path,
                Some(json!({"title": title, "body": body})),
            )
            .await?;
        Ok(self.state(pull))
    }

    async fn add_labels(&self, number: u64, labels: &[String]) -> Result<(), ForgeError> {
        let path = format!("{}/issues/{number}/labels", self.repo);
        self.call::<IgnoredAny>(Method::POST, &path, Some(json!({"labels": labels})))
            .await
            .map(drop)
    }

    async fn close(&self, number: u64, comment: &str) -> Result<(), ForgeError> {
        let path = format!("{}/pulls/{number}", self.repo);
        self.call::<IgnoredAny>(Method::PATCH, &path, Some(json!({"state": "closed"})))
            .await?;
        let path = format!("{}/issues/{number}/comments", self.repo);
        self.call::<IgnoredAny>(Method::POST, &path, Some(json!({"body": comment})))
            .await
            .map(drop)
    }

    fn body_limit(&self) -> usize {
        super::GITHUB_BODY_LIMIT
    }
}
