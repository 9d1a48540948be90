//! GitLab merge requests, by the REST API
//! (https://docs.gitlab.com/api/merge_requests/). Projects are addressed by
//! their URL-encoded path, so subgroups work.

use serde::Deserialize;
use serde_json::json;

use super::{Connection, Forge, ForgeError, ForgeRepo, PullRequest, PullRequestSpec};

/// A GitLab project and the token to act on it with.
pub struct GitLab {
    connection: Connection,
    /// The project's path, URL-encoded (`group%2Fsub%2Fproject`).
    project: String,
}

#[derive(Deserialize)]
struct MergeRequest {
    iid: u64,
    web_url: String,
}

impl GitLab {
    /// `api` is `https://gitlab.com/api/v4` or a server's `https://HOST/api/v4`.
    pub fn new(
        api: &str,
        repo: &ForgeRepo,
        token: String,
        runtime: tokio::runtime::Handle,
    ) -> Result<GitLab, ForgeError> {
        Ok(GitLab {
            connection: Connection::new(api, token, runtime)?,
            project: url::form_urlencoded::byte_serialize(repo.path.as_bytes()).collect(),
        })
    }

    fn merge_request(value: serde_json::Value, path: &str) -> Result<PullRequest, ForgeError> {
        let mr: MergeRequest =
            serde_json::from_value(value).map_err(|e| ForgeError::Transport {
                method: "GET",
                path: path.to_string(),
                message: format!("unexpected merge request JSON: {e}"),
            })?;
        Ok(PullRequest {
            number: mr.iid,
            url: mr.web_url,
        })
    }
}

impl Forge for GitLab {
    fn ensure(&self, spec: &PullRequestSpec) -> Result<PullRequest, ForgeError> {
        let base = format!("/projects/{}/merge_requests", self.project);
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("state", "opened")
            .append_pair("source_branch", &spec.head)
            .append_pair("target_branch", &spec.base)
            .finish();
        let call = |method, path: &str, body| {
            self.connection.call(method, path, body, |r, token| {
                r.header("PRIVATE-TOKEN", token)
            })
        };
        let listed = call(reqwest::Method::GET, &format!("{base}?{query}"), None)?;
        let labels = spec.labels.join(",");
        match listed.as_array().and_then(|a| a.first()).cloned() {
            Some(open) => {
                let open = GitLab::merge_request(open, &base)?;
                let path = format!("{base}/{}", open.number);
                let updated = call(
                    reqwest::Method::PUT,
                    &path,
                    Some(
                        json!({"title": spec.title, "description": spec.body, "add_labels": labels}),
                    ),
                )?;
                GitLab::merge_request(updated, &path)
            }
            None => {
                let created = call(
                    reqwest::Method::POST,
                    &base,
                    Some(json!({
                        "source_branch": spec.head, "target_branch": spec.base,
                        "title": spec.title, "description": spec.body, "labels": labels,
                        "remove_source_branch": true,
                    })),
                )?;
                GitLab::merge_request(created, &base)
            }
        }
    }
}
