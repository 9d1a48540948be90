//! GitLab merge requests, by the REST API
//! (https://docs.gitlab.com/api/merge_requests/). Projects are addressed by
//! their URL-encoded path, so subgroups work.

use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use super::{Connection, Forge, ForgeError, ForgeRepo, PullRequestSpec, PullState, decode};

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
        }
    }
}

impl GitLab {
    /// `api` is `https://gitlab.com/api/v4` or a server's `https://HOST/api/v4`.
    pub fn new(
        api: &str,
        repo: &ForgeRepo,
        token: String,
        runtime: tokio::runtime::Handle,
    ) -> Result<GitLab, ForgeError> {
        let project: String = url::form_urlencoded::byte_serialize(repo.path.as_bytes()).collect();
        Ok(GitLab {
            connection: Connection::new(api, token, runtime)?,
            merge_requests: format!("/projects/{project}/merge_requests"),
        })
    }

    fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value, ForgeError> {
        self.connection.call(method, path, body, |r, token| {
            r.header("PRIVATE-TOKEN", token)
        })
    }

    fn merge_request(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<PullState, ForgeError> {
        let name = match method.as_str() {
            "GET" => "GET",
            "POST" => "POST",
            _ => "PUT",
        };
        let mr: MergeRequest = decode(self.call(method, path, body)?, name, path)?;
        Ok(mr.into())
    }
}

impl Forge for GitLab {
    fn find_open(&self, head: &str, base: &str) -> Result<Option<PullState>, ForgeError> {
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("state", "opened")
            .append_pair("source_branch", head)
            .append_pair("target_branch", base)
            .finish();
        let path = format!("{}?{query}", self.merge_requests);
        let mrs: Vec<MergeRequest> = decode(self.call(Method::GET, &path, None)?, "GET", &path)?;
        Ok(mrs.into_iter().next().map(PullState::from))
    }

    fn get(&self, number: u64) -> Result<PullState, ForgeError> {
        self.merge_request(
            Method::GET,
            &format!("{}/{number}", self.merge_requests),
            None,
        )
    }

    fn create(&self, spec: &PullRequestSpec) -> Result<PullState, ForgeError> {
        let body = json!({
            "source_branch": spec.head, "target_branch": spec.base,
            "title": spec.title, "description": spec.body, "labels": spec.labels.join(","),
            "remove_source_branch": true,
        });
        self.merge_request(Method::POST, &self.merge_requests, Some(body))
    }

    fn edit(&self, number: u64, title: &str, body: &str) -> Result<PullState, ForgeError> {
        let path = format!("{}/{number}", self.merge_requests);
        self.merge_request(
            Method::PUT,
            &path,
            Some(json!({"title": title, "description": body})),
        )
    }

    fn add_labels(&self, number: u64, labels: &[String]) -> Result<(), ForgeError> {
        let path = format!("{}/{number}", self.merge_requests);
        self.call(
            Method::PUT,
            &path,
            Some(json!({"add_labels": labels.join(",")})),
        )
        .map(drop)
    }

    fn close(&self, number: u64, comment: &str) -> Result<(), ForgeError> {
        let path = format!("{}/{number}/notes", self.merge_requests);
        self.call(Method::POST, &path, Some(json!({"body": comment})))?;
        let path = format!("{}/{number}", self.merge_requests);
        self.call(Method::PUT, &path, Some(json!({"state_event": "close"})))
            .map(drop)
    }
}
