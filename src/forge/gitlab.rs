//! GitLab merge requests, by the REST API
//! (https://docs.gitlab.com/api/merge_requests/). Projects are addressed by
//! their URL-encoded path, so subgroups work.

use reqwest::Method;
use serde::Deserialize;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde_json::json;

use super::{Connection, Forge, ForgeError, ForgeRepo, PullRequestSpec, PullState};

/// A GitLab project and the token to act on it with.
pub struct GitLab {
    connection: Connection,
    /// `/projects/group%2Fsub%2Fproject/merge_requests`
    merge_requests: String,
}

#[derive(Deserialize)]
struct MergeRequest {
    iid: u64,
    web_url: String,
    /// `opened`, `closed`, `locked` or `merged`.
    state: String,
    title: String,
    description: Option<String>,
    #[serde(default)]
    labels: Vec<String>,
    source_branch: String,
    target_branch: String,
    /// Differ for a merge request from a fork.
    source_project_id: Option<u64>,
    target_project_id: Option<u64>,
}

impl From<MergeRequest> for PullState {
    fn from(mr: MergeRequest) -> PullState {
        PullState {
            number: mr.iid,
            url: mr.web_url,
            open: mr.state == "opened",
            title: mr.title,
            body: mr.description.unwrap_or_default(),
            labels: mr.labels,
            head: mr.source_branch,
            base: mr.target_branch,
            fork: mr.source_project_id != mr.target_project_id,
        }
    }
}

impl GitLab {
    /// `api` is `https://gitlab.com/api/v4` or a server's `https://HOST/api/v4`.
    pub fn new(api: &str, repo: &ForgeRepo, token: String) -> Result<GitLab, ForgeError> {
        let project: String = url::form_urlencoded::byte_serialize(repo.path.as_bytes()).collect();
        Ok(GitLab {
            connection: Connection::new(api, token)?,
            merge_requests: format!("/projects/{project}/merge_requests"),
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
                r.header("PRIVATE-TOKEN", token)
            })
            .await
    }
}

#[async_trait::async_trait]
impl Forge for GitLab {
    fn identity(&self) -> String {
        format!("gitlab {}{}", self.connection.api, self.merge_requests)
    }

    async fn find_open(&self, head: &str, base: &str) -> Result<Option<PullState>, ForgeError> {
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("state", "opened")
            .append_pair("source_branch", head)
            .append_pair("target_branch", base)
            .finish();
        let mrs: Vec<MergeRequest> = self
            .call(
                Method::GET,
                &format!("{}?{query}", self.merge_requests),
                None,
            )
            .await?;
        // The filter matches forks' branches of the same name too.
        Ok(mrs
            .into_iter()
            .map(|m| self.connection.clean(m.into()))
            .find(|m| !m.fork))
    }

    async fn get(&self, number: u64) -> Result<PullState, ForgeError> {
        let mr: MergeRequest = self
            .call(
                Method::GET,
                &format!("{}/{number}", self.merge_requests),
                None,
            )
            .await?;
        Ok(self.connection.clean(mr.into()))
    }

    async fn create(&self, spec: &PullRequestSpec) -> Result<PullState, ForgeError> {
        let body = json!({
            "source_branch": spec.head, "target_branch": spec.base,
            "title": spec.title, "description": spec.body, "labels": spec.labels.join(","),
            "remove_source_branch": true,
        });
        let mr: MergeRequest = self
            .call(Method::POST, &self.merge_requests, Some(body))
            .await?;
        Ok(self.connection.clean(mr.into()))
    }

    async fn edit(&self, number: u64, title: &str, body: &str) -> Result<PullState, ForgeError> {
        let path = format!("{}/{number}", self.merge_requests);
        let mr: MergeRequest = self
            .call(
                Method::PUT,
                &path,
                Some(json!({"title": title, "description": body})),
            )
            .await?;
        Ok(self.connection.clean(mr.into()))
    }

    async fn add_labels(&self, number: u64, labels: &[String]) -> Result<(), ForgeError> {
        let path = format!("{}/{number}", self.merge_requests);
        self.call::<IgnoredAny>(
            Method::PUT,
            &path,
            Some(json!({"add_labels": labels.join(",")})),
        )
        .await
        .map(drop)
    }

    async fn close(&self, number: u64, comment: &str) -> Result<(), ForgeError> {
        let path = format!("{}/{number}", self.merge_requests);
        self.call::<IgnoredAny>(Method::PUT, &path, Some(json!({"state_event": "close"})))
            .await?;
        let path = format!("{}/{number}/notes", self.merge_requests);
        self.call::<IgnoredAny>(Method::POST, &path, Some(json!({"body": comment})))
            .await
            .map(drop)
    }

    fn body_limit(&self) -> usize {
        super::GITLAB_BODY_LIMIT
    }
}
