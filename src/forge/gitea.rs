//! Gitea and Forgejo pull requests, by the REST API
//! (https://docs.gitea.com/api/): open pull requests are listed a page at a
//! time and matched by head and base; labels are set by id.

use serde::Deserialize;
use serde_json::json;

use super::{Connection, Forge, ForgeError, ForgeRepo, PullRequest, PullRequestSpec};

/// A Gitea repository and the token to act on it with.
pub struct Gitea {
    connection: Connection,
    owner: String,
    name: String,
}

#[derive(Deserialize)]
struct Pull {
    number: u64,
    html_url: String,
    head: Branch,
    base: Branch,
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

/// Pages of open pull requests hoist reads at most before it opens one.
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
            r.header("Authorization", format!("token {token}"))
        })
    }

    fn pull(value: serde_json::Value, path: &str) -> Result<Pull, ForgeError> {
        serde_json::from_value(value).map_err(|e| ForgeError::Transport {
            method: "GET",
            path: path.to_string(),
            message: format!("unexpected pull request JSON: {e}"),
        })
    }

    /// Label ids for the names given; names the repository lacks are
    /// reported rather than silently dropped.
    fn label_ids(&self, repo: &str, names: &[String]) -> Result<Vec<u64>, ForgeError> {
        let path = format!("{repo}/labels?limit=50");
        let labels: Vec<Label> =
            serde_json::from_value(self.call(reqwest::Method::GET, &path, None)?)
                .unwrap_or_default();
        names
            .iter()
            .map(|n| {
                labels
                    .iter()
                    .find(|l| &l.name == n)
                    .map(|l| l.id)
                    .ok_or_else(|| {
                        ForgeError::Config(format!(
                            "label {n:?} does not exist in {}/{}; create it first",
                            self.owner, self.name
                        ))
                    })
            })
            .collect()
    }
}

impl Forge for Gitea {
    fn ensure(&self, spec: &PullRequestSpec) -> Result<PullRequest, ForgeError> {
        let repo = format!("/repos/{}/{}", self.owner, self.name);
        let mut existing = None;
        for page in 1..=MAX_PAGES {
            let path = format!("{repo}/pulls?state=open&limit=50&page={page}");
            let listed = self.call(reqwest::Method::GET, &path, None)?;
            let items = listed.as_array().cloned().unwrap_or_default();
            let done = items.len() < 50;
            for item in items {
                let pull = Gitea::pull(item, &path)?;
                if pull.head.name == spec.head && pull.base.name == spec.base {
                    existing = Some(pull);
                    break;
                }
            }
            if existing.is_some() || done {
                break;
            }
        }
        let labels = if spec.labels.is_empty() {
            Vec::new()
        } else {
            self.label_ids(&repo, &spec.labels)?
        };
        let pull = match existing {
            Some(open) => {
                let path = format!("{repo}/pulls/{}", open.number);
                let mut body = json!({"title": spec.title, "body": spec.body});
                if !labels.is_empty() {
                    body["labels"] = json!(labels);
                }
                Gitea::pull(self.call(reqwest::Method::PATCH, &path, Some(body))?, &path)?
            }
            None => {
                let path = format!("{repo}/pulls");
                let body = json!({"head": spec.head, "base": spec.base, "title": spec.title, "body": spec.body, "labels": labels});
                Gitea::pull(self.call(reqwest::Method::POST, &path, Some(body))?, &path)?
            }
        };
        Ok(PullRequest {
            number: pull.number,
            url: pull.html_url,
        })
    }
}
