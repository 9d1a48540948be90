//! An in-process fake of the GitHub REST API for the calls hoist makes
//! (https://docs.github.com/en/rest/pulls/pulls): list, create and update
//! pull requests, add labels. It checks the bearer token, answers with
//! GitHub's status codes and JSON shapes, and records every request.

use std::sync::{Arc, Mutex};

use super::http::{FakeServer, Reply, Request};

#[derive(Clone, Debug)]
pub struct FakePull {
    pub number: u64,
    pub head: String,
    pub base: String,
    pub title: String,
    pub body: String,
    pub labels: Vec<String>,
    pub open: bool,
}

pub struct FakeGitHub {
    pub server: FakeServer,
    pub pulls: Arc<Mutex<Vec<FakePull>>>,
}

fn query(target: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(target.split_once('?').map_or("", |(_, q)| q).as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

impl FakeGitHub {
    /// A fake for repository `owner/name` accepting `token`.
    pub fn start(owner: &'static str, name: &'static str, token: &'static str) -> FakeGitHub {
        let pulls: Arc<Mutex<Vec<FakePull>>> = Arc::default();
        let state = Arc::clone(&pulls);
        let server = FakeServer::start(move |request: &Request, _| {
            let addr = request.header("host").unwrap_or("").to_string();
            if request.header("authorization") != Some(&format!("Bearer {token}")) {
                return Reply::json(
                    401,
                    r#"{"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"}"#,
                );
            }
            let prefix = format!("/repos/{owner}/{name}");
            let Some(rest) = request.path().strip_prefix(&prefix) else {
                return Reply::json(404, r#"{"message": "Not Found"}"#);
            };
            let Ok(mut pulls) = state.lock() else {
                return Reply::json(500, "{}");
            };
            let json_of = |p: &FakePull| {
                serde_json::json!({"number": p.number, "html_url": format!("http://{addr}/{owner}/{name}/pull/{}", p.number),
                    "state": if p.open { "open" } else { "closed" }, "title": p.title, "body": p.body,
                    "head": {"ref": p.head}, "base": {"ref": p.base}})
            };
            let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap_or_default();
            match (request.method.as_str(), rest) {
                ("GET", "/pulls") => {
                    let q = query(&request.target);
                    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
                    let head = get("head").unwrap_or_default();
                    let listed: Vec<serde_json::Value> = pulls
                        .iter()
                        .filter(|p| p.open && get("state").as_deref() == Some("open"))
                        .filter(|p| head.is_empty() || head == format!("{owner}:{}", p.head))
                        .filter(|p| get("base").is_none_or(|b| b == p.base))
                        .map(json_of)
                        .collect();
                    Reply::json(200, &serde_json::Value::Array(listed).to_string())
                }
                ("POST", "/pulls") => {
                    let head = body["head"].as_str().unwrap_or("").to_string();
                    if pulls.iter().any(|p| p.open && p.head == head) {
                        return Reply::json(
                            422,
                            &format!(
                                r#"{{"message": "Validation Failed", "errors": [{{"message": "A pull request already exists for {owner}:{head}."}}]}}"#
                            ),
                        );
                    }
                    let pull = FakePull {
                        number: pulls.len() as u64 + 1,
                        head,
                        base: body["base"].as_str().unwrap_or("").to_string(),
                        title: body["title"].as_str().unwrap_or("").to_string(),
                        body: body["body"].as_str().unwrap_or("").to_string(),
                        labels: Vec::new(),
                        open: true,
                    };
                    let reply = json_of(&pull).to_string();
                    pulls.push(pull);
                    Reply::json(201, &reply)
                }
                (method, path) if path.starts_with("/pulls/") || path.starts_with("/issues/") => {
                    let number: u64 = path
                        .split('/')
                        .nth(2)
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0);
                    let Some(pull) = pulls.iter_mut().find(|p| p.number == number) else {
                        return Reply::json(404, r#"{"message": "Not Found"}"#);
                    };
                    match (method, path.ends_with("/labels")) {
                        ("PATCH", false) => {
                            if let Some(t) = body["title"].as_str() {
                                pull.title = t.to_string();
                            }
                            if let Some(b) = body["body"].as_str() {
                                pull.body = b.to_string();
                            }
                            Reply::json(200, &json_of(pull).to_string())
                        }
                        ("POST", true) => {
                            for l in body["labels"].as_array().into_iter().flatten() {
                                pull.labels.push(l.as_str().unwrap_or("").to_string());
                            }
                            Reply::json(200, "[]")
                        }
                        _ => Reply::json(404, r#"{"message": "Not Found"}"#),
                    }
                }
                _ => Reply::json(404, r#"{"message": "Not Found"}"#),
            }
        });
        FakeGitHub { server, pulls }
    }
}

/// An in-process fake of GitLab's merge requests API
/// (https://docs.gitlab.com/api/merge_requests/): projects addressed by
/// URL-encoded path, `PRIVATE-TOKEN` auth, `iid` numbering.
pub struct FakeGitLab {
    pub server: FakeServer,
    pub merge_requests: Arc<Mutex<Vec<FakePull>>>,
}

impl FakeGitLab {
    pub fn start(project: &'static str, token: &'static str) -> FakeGitLab {
        let merge_requests: Arc<Mutex<Vec<FakePull>>> = Arc::default();
        let state = Arc::clone(&merge_requests);
        let server = FakeServer::start(move |request: &Request, _| {
            let addr = request.header("host").unwrap_or("").to_string();
            if request.header("private-token") != Some(token) {
                return Reply::json(401, r#"{"message": "401 Unauthorized"}"#);
            }
            let encoded: String =
                url::form_urlencoded::byte_serialize(project.as_bytes()).collect();
            let prefix = format!("/api/v4/projects/{encoded}/merge_requests");
            let Some(rest) = request.path().strip_prefix(&prefix) else {
                return Reply::json(404, r#"{"message": "404 Project Not Found"}"#);
            };
            let Ok(mut mrs) = state.lock() else {
                return Reply::json(500, "{}");
            };
            let json_of = |p: &FakePull| {
                serde_json::json!({"iid": p.number, "web_url": format!("http://{addr}/{project}/-/merge_requests/{}", p.number),
                    "state": if p.open { "opened" } else { "closed" }, "title": p.title, "description": p.body,
                    "source_branch": p.head, "target_branch": p.base, "labels": p.labels})
            };
            let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap_or_default();
            let labels = |v: &serde_json::Value| -> Vec<String> {
                v.as_str()
                    .unwrap_or("")
                    .split(',')
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
                    .collect()
            };
            match (request.method.as_str(), rest) {
                ("GET", "") => {
                    let q = query(&request.target);
                    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
                    let listed: Vec<serde_json::Value> = mrs
                        .iter()
                        .filter(|p| p.open && get("state").as_deref() == Some("opened"))
                        .filter(|p| get("source_branch").is_none_or(|h| h == p.head))
                        .filter(|p| get("target_branch").is_none_or(|b| b == p.base))
                        .map(json_of)
                        .collect();
                    Reply::json(200, &serde_json::Value::Array(listed).to_string())
                }
                ("POST", "") => {
                    let head = body["source_branch"].as_str().unwrap_or("").to_string();
                    if let Some(open) = mrs.iter().find(|p| p.open && p.head == head) {
                        return Reply::json(
                            409,
                            &format!(
                                r#"{{"message": ["Another open merge request already exists for this source branch: !{}"]}}"#,
                                open.number
                            ),
                        );
                    }
                    let mr = FakePull {
                        number: mrs.len() as u64 + 1,
                        head,
                        base: body["target_branch"].as_str().unwrap_or("").to_string(),
                        title: body["title"].as_str().unwrap_or("").to_string(),
                        body: body["description"].as_str().unwrap_or("").to_string(),
                        labels: labels(&body["labels"]),
                        open: true,
                    };
                    let reply = json_of(&mr).to_string();
                    mrs.push(mr);
                    Reply::json(201, &reply)
                }
                ("PUT", iid) => {
                    let number: u64 = iid.trim_start_matches('/').parse().unwrap_or(0);
                    let Some(mr) = mrs.iter_mut().find(|p| p.number == number) else {
                        return Reply::json(404, r#"{"message": "404 Not found"}"#);
                    };
                    if let Some(t) = body["title"].as_str() {
                        mr.title = t.to_string();
                    }
                    if let Some(d) = body["description"].as_str() {
                        mr.body = d.to_string();
                    }
                    for l in labels(&body["add_labels"]) {
                        if !mr.labels.contains(&l) {
                            mr.labels.push(l);
                        }
                    }
                    Reply::json(200, &json_of(mr).to_string())
                }
                _ => Reply::json(404, r#"{"message": "404 Not found"}"#),
            }
        });
        FakeGitLab {
            server,
            merge_requests,
        }
    }
}

/// An in-process fake of Gitea's (and Forgejo's) pull request API
/// (https://docs.gitea.com/api/): `Authorization: token T`, pages of open
/// pull requests, labels by id.
pub struct FakeGitea {
    pub server: FakeServer,
    pub pulls: Arc<Mutex<Vec<FakePull>>>,
}

impl FakeGitea {
    /// A fake holding `others` unrelated open pull requests, so finding
    /// hoist's needs more than one page.
    pub fn start(
        owner: &'static str,
        name: &'static str,
        token: &'static str,
        others: u64,
    ) -> FakeGitea {
        let seeded: Vec<FakePull> = (1..=others)
            .map(|n| FakePull {
                number: n,
                head: format!("feature-{n}"),
                base: "main".into(),
                title: format!("someone's change {n}"),
                body: String::new(),
                labels: Vec::new(),
                open: true,
            })
            .collect();
        let pulls = Arc::new(Mutex::new(seeded));
        let state = Arc::clone(&pulls);
        let server = FakeServer::start(move |request: &Request, _| {
            let addr = request.header("host").unwrap_or("").to_string();
            if request.header("authorization") != Some(&format!("token {token}")) {
                return Reply::json(401, r#"{"message": "token is required"}"#);
            }
            let prefix = format!("/api/v1/repos/{owner}/{name}");
            let Some(rest) = request.path().strip_prefix(&prefix) else {
                return Reply::json(404, r#"{"message": "The target couldn't be found."}"#);
            };
            let Ok(mut pulls) = state.lock() else {
                return Reply::json(500, "{}");
            };
            let json_of = |p: &FakePull| {
                serde_json::json!({"number": p.number, "html_url": format!("http://{addr}/{owner}/{name}/pulls/{}", p.number),
                    "state": if p.open { "open" } else { "closed" }, "title": p.title, "body": p.body,
                    "head": {"ref": p.head}, "base": {"ref": p.base}})
            };
            let label_names = |ids: &serde_json::Value| -> Vec<String> {
                ids.as_array()
                    .into_iter()
                    .flatten()
                    .filter(|i| i.as_u64() == Some(7))
                    .map(|_| "dependencies".to_string())
                    .collect()
            };
            let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap_or_default();
            match (request.method.as_str(), rest) {
                ("GET", "/labels") => Reply::json(
                    200,
                    r#"[{"id": 3, "name": "bug"}, {"id": 7, "name": "dependencies"}]"#,
                ),
                ("GET", "/pulls") => {
                    let q = query(&request.target);
                    let get = |k: &str| {
                        q.iter()
                            .find(|(n, _)| n == k)
                            .and_then(|(_, v)| v.parse::<usize>().ok())
                    };
                    let (limit, page) =
                        (get("limit").unwrap_or(30), get("page").unwrap_or(1).max(1));
                    let listed: Vec<serde_json::Value> = pulls
                        .iter()
                        .filter(|p| p.open)
                        .skip((page - 1) * limit)
                        .take(limit)
                        .map(json_of)
                        .collect();
                    Reply::json(200, &serde_json::Value::Array(listed).to_string())
                }
                ("POST", "/pulls") => {
                    let head = body["head"].as_str().unwrap_or("").to_string();
                    if pulls.iter().any(|p| p.open && p.head == head) {
                        return Reply::json(
                            409,
                            r#"{"message": "pull request already exists for these targets"}"#,
                        );
                    }
                    let pull = FakePull {
                        number: pulls.len() as u64 + 1,
                        head,
                        base: body["base"].as_str().unwrap_or("").to_string(),
                        title: body["title"].as_str().unwrap_or("").to_string(),
                        body: body["body"].as_str().unwrap_or("").to_string(),
                        labels: label_names(&body["labels"]),
                        open: true,
                    };
                    let reply = json_of(&pull).to_string();
                    pulls.push(pull);
                    Reply::json(201, &reply)
                }
                ("PATCH", path) if path.starts_with("/pulls/") => {
                    let number: u64 = path.trim_start_matches("/pulls/").parse().unwrap_or(0);
                    let Some(pull) = pulls.iter_mut().find(|p| p.number == number) else {
                        return Reply::json(404, r#"{"message": "The target couldn't be found."}"#);
                    };
                    if let Some(t) = body["title"].as_str() {
                        pull.title = t.to_string();
                    }
                    if let Some(b) = body["body"].as_str() {
                        pull.body = b.to_string();
                    }
                    Reply::json(201, &json_of(pull).to_string())
                }
                _ => Reply::json(404, r#"{"message": "The target couldn't be found."}"#),
            }
        });
        FakeGitea { server, pulls }
    }
}
