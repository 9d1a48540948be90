//! Gitea and Forgejo pull requests, by the REST API
//! (https://docs.gitea.com/api/): open pull requests are listed a page at a
//! time and matched by head and base; labels are set by id.

use reqwest::Method;
use serde::Deserialize;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde_json::json;

use super::{Connection, Forge, ForgeError, ForgeRepo, PullRequestSpec, PullState};

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
    /// Differs between head and base for a pull request from a fork.
    repo_id: Option<u64>,
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
            fork: pull.head.repo_id != pull.base.repo_id,
            head: pull.head.name,
            base: pull.base.name,
        }
    }
}

/// Items hoist asks for per page, and pages it reads at most, when it
/// looks for its pull request or for labels. A server may return fewer per
/// page than asked (its MAX_RESPONSE_ITEMS), so only an empty page ends a
/// listing.
const PAGE: usize = 50;
const MAX_PAGES: u32 = 20;

impl Gitea {
    /// `api` is a server's `https://HOST/api/v1`.
    pub fn new(api: &str, repo: &ForgeRepo, token: String) -> Result<Gitea, ForgeError> {
        let (owner, name) = repo.owner_name()?;
        Ok(Gitea {
            connection: Connection::new(api, token)?,
            repo: format!("/repos/{owner}/{name}"),
            name: format!("{owner}/{name}"),
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
                r.header("Authorization", format!("token {token}"))
            })
            .await
    }

    /// The first item of a paged listing under `path` that `wanted` picks.
    async fn find_paged<T: DeserializeOwned>(
        &self,
        path: &str,
        what: &str,
        mut wanted: impl FnMut(&T) -> bool,
    ) -> Result<Option<T>, ForgeError> {
        let separator = if path.contains('?') { '&' } else { '?' };
        for page in 1..=MAX_PAGES {
            let items: Vec<T> = self
                .call(
                    Method::GET,
                    &format!("{path}{separator}limit={PAGE}&page={page}"),
                    None,
                )
                .await?;
            if items.is_empty() {
                return Ok(None);
            }
            if let Some(found) = items.into_iter().find(&mut wanted) {
                return Ok(Some(found));
            }
        }
        Err(ForgeError::Config(format!(
            "{} has more {what} than hoist reads ({MAX_PAGES} pages)",
            self.name
        )))
    }

    /// Label ids for the names given, read page by page until every name
    /// is found; names the repository lacks are reported rather than
    /// silently dropped.
    async fn label_ids(&self, names: &[String]) -> Result<Vec<u64>, ForgeError> {
        let mut ids: Vec<Option<u64>> = vec![None; names.len()];
        let path = format!("{}/labels", self.repo);
        self.find_paged::<Label>(&path, "labels", |label| {
            for (i, name) in names.iter().enumerate() {
                if *name == label.name {
                    ids[i] = Some(label.id);
                }
            }
            ids.iter().all(Option::is_some)
        })
        .await?;
        names
            .iter()
            .zip(ids)
            .map(|(name, id)| {
                id.ok_or_else(|| {
                    ForgeError::Config(format!(
                        "label {name:?} does not exist in {}; create it first",
                        self.name
                    ))
                })
            })
            .collect()
    }
}

#[async_trait::async_trait]
impl Forge for Gitea {
    fn identity(&self) -> String {
        format!("gitea {}{}", self.connection.api, self.repo)
    }

    async fn find_open(&self, head: &str, base: &str) -> Result<Option<PullState>, ForgeError> {
        let path = format!("{}/pulls?state=open", self.repo);
        let found = self
            .find_paged::<Pull>(&path, "open pull requests", |p| {
                p.head.name == head && p.base.name == base && p.head.repo_id == p.base.repo_id
            })
            .await?;
        Ok(found.map(|p| self.connection.clean(p.into())))
    }

    async fn get(&self, number: u64) -> Result<PullState, ForgeError> {
        let pull: Pull = self
            .call(Method::GET, &format!("{}/pulls/{number}", self.repo), None)
            .await?;
        Ok(self.connection.clean(pull.into()))
    }

    async fn create(&self, spec: &PullRequestSpec) -> Result<PullState, ForgeError> {
        let labels = if spec.labels.is_empty() {
            Vec::new()
        } else {
            self.label_ids(&spec.labels).await?
        };
        let body = json!({"head": spec.head, "base": spec.base, "title": spec.title, "body": spec.body, "labels": labels});
        let pull: Pull = self
            .call(Method::POST, &format!("{}/pulls", self.repo), Some(body))
            .await?;
        Ok(self.connection.clean(pull.into()))
    }

    async fn edit(&self, number: u64, title: &str, body: &str) -> Result<PullState, ForgeError> {
        let path = format!("{}/pulls/{number}", self.repo);
        let pull: Pull = self
            .call(
                Method::PATCH,
                &path,
                Some(json!({"title": title, "body": body})),
            )
            .await?;
        Ok(self.connection.clean(pull.into()))
    }

    async fn add_labels(&self, number: u64, labels: &[String]) -> Result<(), ForgeError> {
        let ids = self.label_ids(labels).await?;
        let path = format!("{}/issues/{number}/labels", self.repo);
        self.call::<IgnoredAny>(Method::POST, &path, Some(json!({"labels": ids})))
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
