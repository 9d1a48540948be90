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
