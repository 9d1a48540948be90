//! Gitea and Forgejo pull requests, by the REST API
//! (https://docs.gitea.com/api/): open pull requests are listed a page at a
//! time and matched by head and base; labels are set by id.

use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use super::{Connection, Forge, ForgeError, ForgeRepo, PullRequestSpec, PullState, decode};

/// A Gitea repository and the token to act on it with.
pub struct Gitea {
    connection: Connection,
    /// `owner/name`, for messages.
    name: String,
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
    head: Branch,
    base: Branch,
    #[serde(default)]
    labels: Option<Vec<Label>>,
}

#[derive(Deserialize)]
struct Branch {
    #[serde(rename = "ref")]
    name: String,
}

#[derive(Deserialize)]
struct Label {
    id: u64,
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
            labels: pull
                .labels
                .unwrap_or_default()
                .into_iter()
                .map(|l| l.name)
                .collect(),
        }
    }
}

/// Open pull requests per page, and pages read at most, when hoist looks
/// for its own.
const PAGE: usize = 50;
const MAX_PAGES: u32 = 20;

impl Gitea {
    /// `api` is a server's `https://HOST/api/v1`.
    pub fn new(
        api: &str,
        repo: &ForgeRepo,
        token: String,
        runtime: tokio::runtime::Handle,
    ) -> Result<Gitea, ForgeError> {
        let (owner, name) = repo.owner_name()?;
        Ok(Gitea {
            connection: Connection::new(api, token, runtime)?,
            repo: format!("/repos/{owner}/{name}"),
            name: format!("{owner}/{name}"),
        })
    }

    fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value, ForgeError> {
        self.connection.call(method, path, body, |r, token| {
            r.header("Authorization", format!("token {token}"))
        })
    }

    fn pull(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<PullState, ForgeError> {
        let name = match method.as_str() {
            "GET" => "GET",
            "POST" => "POST",
            _ => "PATCH",
        };
        let pull: Pull = decode(self.call(method, path, body)?, name, path)?;
        Ok(pull.into())
    }

    /// Label ids for the names given; names the repository lacks are
    /// reported rather than silently dropped.
    fn label_ids(&self, names: &[String]) -> Result<Vec<u64>, ForgeError> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let path = format!("{}/labels?limit=50", self.repo);
        let labels: Vec<Label> = decode(self.call(Method::GET, &path, None)?, "GET", &path)?;
        names
            .iter()
            .map(|n| {
                labels
                    .iter()
                    .find(|l| &l.name == n)
                    .map(|l| l.id)
                    .ok_or_else(|| {
                        ForgeError::Config(format!(
                            "label {n:?} does not exist in {}; create it first",
                            self.name
                        ))
                    })
            })
            .collect()
    }
}

impl Forge for Gitea {
    fn find_open(&self, head: &str, base: &str) -> Result<Option<PullState>, ForgeError> {
        for page in 1..=MAX_PAGES {
            let path = format!("{}/pulls?state=open&limit={PAGE}&page={page}", self.repo);
            let pulls: Vec<Pull> = decode(self.call(Method::GET, &path, None)?, "GET", &path)?;
            let last = pulls.len() < PAGE;
            if let Some(ours) = pulls
                .into_iter()
                .find(|p| p.head.name == head && p.base.name == base)
            {
                return Ok(Some(ours.into()));
            }
            if last {
                return Ok(None);
            }
        }
        Err(ForgeError::Config(format!(
            "{} has more than {} open pull requests; hoist did not look further for its own",
            self.name,
            PAGE * MAX_PAGES as usize
        )))
    }

    fn get(&self, number: u64) -> Result<PullState, ForgeError> {
        self.pull(Method::GET, &format!("{}/pulls/{number}", self.repo), None)
    }

    fn create(&self, spec: &PullRequestSpec) -> Result<PullState, ForgeError> {
        let labels = self.label_ids(&spec.labels)?;
        let body = json!({"head": spec.head, "base": spec.base, "title": spec.title, "body": spec.body, "labels": labels});
        self.pull(Method::POST, &format!("{}/pulls", self.repo), Some(body))
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
        let ids = self.label_ids(labels)?;
        let path = format!("{}/issues/{number}/labels", self.repo);
        self.call(Method::POST, &path, Some(json!({"labels": ids})))
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
