//! In-process fakes of the forge REST APIs for the calls hoist makes:
//! GitHub (https://docs.github.com/en/rest/pulls/pulls), GitLab merge
//! requests (https://docs.gitlab.com/api/merge_requests/) and Gitea /
//! Forgejo (https://docs.gitea.com/api/). Each checks its auth header,
//! answers with the forge's paths, status codes and JSON shapes, records
//! every request, and can be told to fail the next requests.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::http::{FakeServer, Reply, Request};

/// A pull (merge) request as a fake forge keeps it.
#[derive(Clone, Debug, Default)]
pub struct FakePull {
    pub number: u64,
    pub head: String,
    pub base: String,
    pub title: String,
    pub body: String,
    pub labels: Vec<String>,
    pub open: bool,
    pub merged: bool,
    pub comments: Vec<String>,
    /// From a fork whose branch has the same name as `head`.
    pub fork: bool,
}

/// An answer to give instead of the normal one, to the next request with
/// this method.
struct Fault {
    method: String,
    status: u16,
    body: String,
    headers: Vec<(String, String)>,
}

/// A running fake forge.
pub struct FakeForge {
    pub server: FakeServer,
    pulls: Arc<Mutex<Vec<FakePull>>>,
    faults: Arc<Mutex<VecDeque<Fault>>>,
}

/// The state a handler works on, and where the forge says it lives.
struct State<'a> {
    pulls: &'a mut Vec<FakePull>,
    /// `host:port`, for `html_url`s.
    addr: String,
    body: Value,
}

fn query(target: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(target.split_once('?').map_or("", |(_, q)| q).as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn param(target: &str, name: &str) -> Option<String> {
    query(target)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// `rest` = `/N` or `/N/suffix` → (N, suffix).
fn number_of(rest: &str) -> Option<(u64, &str)> {
    let rest = rest.strip_prefix('/')?;
    let (number, suffix) = rest.split_once('/').unwrap_or((rest, ""));
    Some((number.parse().ok()?, suffix))
}

/// GitHub's limit on a pull request body, in characters, and its answer
/// to a longer one.
const GITHUB_BODY_LIMIT: usize = 65_536;
const BODY_TOO_LONG: &str = r#"{"message": "Validation Failed", "errors": [{"resource": "Issue", "code": "custom", "field": "body", "message": "body is too long (maximum is 65536 characters)"}]}"#;

fn too_long(body: &Value) -> bool {
    body.as_str()
        .is_some_and(|b| b.chars().count() > GITHUB_BODY_LIMIT)
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or("").to_string()
}

impl FakeForge {
    fn start(
        authorized: impl Fn(&Request) -> bool + Send + Sync + 'static,
        unauthorized: &'static str,
        seeded: Vec<FakePull>,
        handle: impl Fn(&Request, &mut State) -> Reply + Send + Sync + 'static,
    ) -> FakeForge {
        let pulls = Arc::new(Mutex::new(seeded));
        let faults: Arc<Mutex<VecDeque<Fault>>> = Arc::default();
        let (state, queued) = (Arc::clone(&pulls), Arc::clone(&faults));
        let server = FakeServer::start(move |request: &Request, _| {
            let fault = queued.lock().ok().and_then(|mut faults| {
                let at = faults.iter().position(|f| f.method == request.method)?;
                faults.remove(at)
            });
            if let Some(fault) = fault {
                // A forge that echoes the request, credentials included.
                let echoed = request
                    .header("authorization")
                    .or_else(|| request.header("private-token"))
                    .unwrap_or("");
                let mut reply =
                    Reply::json(fault.status, &fault.body.replace("{authorization}", echoed));
                for (k, v) in &fault.headers {
                    reply = reply.with_header(k, v);
                }
                return reply;
            }
            if !authorized(request) {
                return Reply::json(401, unauthorized);
            }
            let Ok(mut pulls) = state.lock() else {
                return Reply::json(500, "{}");
            };
            // A body that is not JSON is refused, as the forges do.
            let body = if request.body.is_empty() {
                serde_json::Value::Null
            } else {
                match serde_json::from_slice(&request.body) {
                    Ok(body) => body,
                    Err(_) => return Reply::json(400, r#"{"message":"Problems parsing JSON"}"#),
                }
            };
            let mut state = State {
                pulls: &mut pulls,
                addr: request.header("host").unwrap_or("").to_string(),
                body,
            };
            handle(request, &mut state)
        });
        FakeForge {
            server,
            pulls,
            faults,
        }
    }

    /// Answers the next `method` request with `status`, `body` and
    /// `headers` instead (queued: call again to fail several in a row).
    /// `{authorization}` in `body` becomes the request's credentials, as a
    /// forge that echoes its request would send them.
    pub fn fail_next(&self, method: &str, status: u16, body: &str, headers: &[(&str, &str)]) {
        if let Ok(mut faults) = self.faults.lock() {
            faults.push_back(Fault {
                method: method.to_string(),
                status,
                body: body.to_string(),
                headers: headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            });
        }
    }

    /// Adds a pull request someone else opened.
    pub fn seed(&self, pull: FakePull) {
        if let Ok(mut pulls) = self.pulls.lock() {
            pulls.push(pull);
        }
    }

    pub fn pulls(&self) -> Vec<FakePull> {
        self.pulls.lock().map(|p| p.clone()).unwrap_or_default()
    }

    /// Changes pull request `number` as a person on the forge would.
    pub fn edit(&self, number: u64, f: impl FnOnce(&mut FakePull)) {
        if let Ok(mut pulls) = self.pulls.lock()
            && let Some(pull) = pulls.iter_mut().find(|p| p.number == number)
        {
            f(pull);
        }
    }

    /// `METHOD path` of every request so far.
    pub fn calls(&self) -> Vec<String> {
        self.server
            .requests()
            .iter()
            .map(|r| format!("{} {}", r.method, r.path()))
            .collect()
    }

    /// GitHub (or GitHub Enterprise when `prefix` is `/api/v3`) for
    /// repository `owner/name`, accepting `token` as a bearer token.
    pub fn github(
        owner: &'static str,
        name: &'static str,
        token: &'static str,
        prefix: &'static str,
    ) -> FakeForge {
        let json_of = move |p: &FakePull, addr: &str| {
            json!({"number": p.number, "html_url": format!("http://{addr}/{owner}/{name}/pull/{}", p.number),
                "state": if p.open { "open" } else { "closed" }, "merged": p.merged, "title": p.title,
                "body": if p.body.is_empty() { Value::Null } else { json!(p.body) },
                "labels": p.labels.iter().map(|l| json!({"name": l})).collect::<Vec<_>>(),
                "head": {"ref": p.head, "label": format!("{}:{}", if p.fork { "someone" } else { owner }, p.head)},
                "base": {"ref": p.base, "label": format!("{owner}:{}", p.base)}})
        };
        let not_found =
            r#"{"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}"#;
        FakeForge::start(
            move |r| r.header("authorization") == Some(&format!("Bearer {token}")),
            r#"{"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"}"#,
            Vec::new(),
            move |request, state| {
                let repo = format!("{prefix}/repos/{owner}/{name}");
                let Some(rest) = request.path().strip_prefix(&repo) else {
                    return Reply::json(404, not_found);
                };
                let addr = state.addr.clone();
                match (request.method.as_str(), rest) {
                    ("GET", "/pulls") => {
                        let head = param(&request.target, "head").unwrap_or_default();
                        let base = param(&request.target, "base");
                        let state_wanted = param(&request.target, "state").unwrap_or("open".into());
                        let listed: Vec<Value> = state
                            .pulls
                            .iter()
                            .filter(|p| state_wanted == "all" || p.open == (state_wanted == "open"))
                            .filter(|p| {
                                let label = format!(
                                    "{}:{}",
                                    if p.fork { "someone" } else { owner },
                                    p.head
                                );
                                head.is_empty() || head == label
                            })
                            .filter(|p| base.as_ref().is_none_or(|b| *b == p.base))
                            .map(|p| json_of(p, &addr))
                            .collect();
                        Reply::json(200, &Value::Array(listed).to_string())
                    }
                    _ if too_long(&state.body["body"]) => Reply::json(422, BODY_TOO_LONG),
                    ("POST", "/pulls") => {
                        let head = text(&state.body["head"]);
                        let base = text(&state.body["base"]);
                        if state
                            .pulls
                            .iter()
                            .any(|p| p.open && !p.fork && p.head == head && p.base == base)
                        {
                            return Reply::json(
                                422,
                                &format!(
                                    r#"{{"message": "Validation Failed", "errors": [{{"resource": "PullRequest", "code": "custom", "message": "A pull request already exists for {owner}:{head}."}}]}}"#
                                ),
                            );
                        }
                        let pull = FakePull {
                            number: state.pulls.len() as u64 + 1,
                            head,
                            base: text(&state.body["base"]),
                            title: text(&state.body["title"]),
                            body: text(&state.body["body"]),
                            open: true,
                            ..FakePull::default()
                        };
                        let reply = json_of(&pull, &addr).to_string();
                        state.pulls.push(pull);
                        Reply::json(201, &reply)
                    }
                    (method, path) => {
                        let (kind, rest) = if let Some(rest) = path.strip_prefix("/pulls") {
                            ("pulls", rest)
                        } else if let Some(rest) = path.strip_prefix("/issues") {
                            ("issues", rest)
                        } else {
                            return Reply::json(404, not_found);
                        };
                        let Some((number, suffix)) = number_of(rest) else {
                            return Reply::json(404, not_found);
                        };
                        let body = state.body.clone();
                        let Some(pull) = state.pulls.iter_mut().find(|p| p.number == number) else {
                            return Reply::json(404, not_found);
                        };
                        match (method, kind, suffix) {
                            ("GET", "pulls", "") => {
                                Reply::json(200, &json_of(pull, &addr).to_string())
                            }
                            ("PATCH", "pulls", "") => {
                                if let Some(t) = body["title"].as_str() {
                                    pull.title = t.to_string();
                                }
                                if let Some(b) = body["body"].as_str() {
                                    pull.body = b.to_string();
                                }
                                if body["state"] == "closed" {
                                    pull.open = false;
                                }
                                Reply::json(200, &json_of(pull, &addr).to_string())
                            }
                            ("POST", "issues", "labels") => {
                                for l in body["labels"].as_array().into_iter().flatten() {
                                    if !pull.labels.contains(&text(l)) {
                                        pull.labels.push(text(l));
                                    }
                                }
                                let labels: Vec<Value> =
                                    pull.labels.iter().map(|l| json!({"name": l})).collect();
                                Reply::json(200, &Value::Array(labels).to_string())
                            }
                            ("POST", "issues", "comments") => {
                                pull.comments.push(text(&body["body"]));
                                Reply::json(
                                    201,
                                    &json!({"id": pull.comments.len(), "body": body["body"]})
                                        .to_string(),
                                )
                            }
                            _ => Reply::json(404, not_found),
                        }
                    }
                }
            },
        )
    }

    /// GitLab for `project` (`group/subgroup/name`, addressed URL-encoded),
    /// accepting `token` as `PRIVATE-TOKEN`.
    pub fn gitlab(project: &'static str, token: &'static str) -> FakeForge {
        let json_of = move |p: &FakePull, addr: &str| {
            json!({"iid": p.number, "web_url": format!("http://{addr}/{project}/-/merge_requests/{}", p.number),
                "state": if p.merged { "merged" } else if p.open { "opened" } else { "closed" }, "title": p.title,
                "description": p.body, "source_branch": p.head, "target_branch": p.base, "labels": p.labels,
                "source_project_id": if p.fork { 2 } else { 1 }, "target_project_id": 1})
        };
        let labels = |v: &Value| -> Vec<String> {
            v.as_str()
                .unwrap_or("")
                .split(',')
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect()
        };
        FakeForge::start(
            move |r| r.header("private-token") == Some(token),
            r#"{"message": "401 Unauthorized"}"#,
            Vec::new(),
            move |request, state| {
                let encoded: String =
                    url::form_urlencoded::byte_serialize(project.as_bytes()).collect();
                let prefix = format!("/api/v4/projects/{encoded}/merge_requests");
                let Some(rest) = request.path().strip_prefix(&prefix) else {
                    return Reply::json(404, r#"{"message": "404 Project Not Found"}"#);
                };
                let addr = state.addr.clone();
                match (request.method.as_str(), rest) {
                    ("GET", "") => {
                        let wanted = param(&request.target, "state");
                        let head = param(&request.target, "source_branch");
                        let base = param(&request.target, "target_branch");
                        let listed: Vec<Value> = state
                            .pulls
                            .iter()
                            .filter(|p| wanted.as_deref() != Some("opened") || p.open)
                            .filter(|p| head.as_ref().is_none_or(|h| *h == p.head))
                            .filter(|p| base.as_ref().is_none_or(|b| *b == p.base))
                            .map(|p| json_of(p, &addr))
                            .collect();
                        Reply::json(200, &Value::Array(listed).to_string())
                    }
                    ("POST", "") => {
                        let head = text(&state.body["source_branch"]);
                        let base = text(&state.body["target_branch"]);
                        if let Some(open) = state
                            .pulls
                            .iter()
                            .find(|p| p.open && !p.fork && p.head == head && p.base == base)
                        {
                            return Reply::json(
                                409,
                                &format!(
                                    r#"{{"message": ["Another open merge request already exists for this source branch: !{}"]}}"#,
                                    open.number
                                ),
                            );
                        }
                        let mr = FakePull {
                            number: state.pulls.len() as u64 + 1,
                            head,
                            base: text(&state.body["target_branch"]),
                            title: text(&state.body["title"]),
                            body: text(&state.body["description"]),
                            labels: labels(&state.body["labels"]),
                            open: true,
                            ..FakePull::default()
                        };
                        let reply = json_of(&mr, &addr).to_string();
                        state.pulls.push(mr);
                        Reply::json(201, &reply)
                    }
                    (method, rest) => {
                        let body = state.body.clone();
                        let Some((number, suffix)) = number_of(rest) else {
                            return Reply::json(404, r#"{"message": "404 Not found"}"#);
                        };
                        let Some(mr) = state.pulls.iter_mut().find(|p| p.number == number) else {
                            return Reply::json(404, r#"{"message": "404 Not found"}"#);
                        };
                        match (method, suffix) {
                            ("GET", "") => Reply::json(200, &json_of(mr, &addr).to_string()),
                            ("PUT", "") => {
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
                                if body["state_event"] == "close" {
                                    mr.open = false;
                                }
                                Reply::json(200, &json_of(mr, &addr).to_string())
                            }
                            ("POST", "notes") => {
                                mr.comments.push(text(&body["body"]));
                                Reply::json(
                                    201,
                                    &json!({"id": mr.comments.len(), "body": body["body"]})
                                        .to_string(),
                                )
                            }
                            _ => Reply::json(404, r#"{"message": "404 Not found"}"#),
                        }
                    }
                }
            },
        )
    }

    /// Gitea for `owner/name`, accepting `Authorization: token T`, with
    /// `others` unrelated open pull requests so that finding hoist's takes
    /// more than one page. Labels: `bug` (id 3) and `dependencies` (id 7).
    pub fn gitea(
        owner: &'static str,
        name: &'static str,
        token: &'static str,
        others: u64,
    ) -> FakeForge {
        const LABELS: [(u64, &str); 2] = [(3, "bug"), (7, "dependencies")];
        let seeded: Vec<FakePull> = (1..=others)
            .map(|n| FakePull {
                number: n,
                head: format!("feature-{n}"),
                base: "main".into(),
                title: format!("someone's change {n}"),
                open: true,
                ..FakePull::default()
            })
            .collect();
        let json_of = move |p: &FakePull, addr: &str| {
            let labels: Vec<Value> = p
                .labels
                .iter()
                .filter_map(|l| LABELS.iter().find(|(_, n)| n == l))
                .map(|(id, n)| json!({"id": id, "name": n}))
                .collect();
            json!({"number": p.number, "html_url": format!("http://{addr}/{owner}/{name}/pulls/{}", p.number),
                "state": if p.open { "open" } else { "closed" }, "merged": p.merged, "title": p.title, "body": p.body,
                "labels": labels, "head": {"ref": p.head, "repo_id": if p.fork { 2 } else { 1 }},
                "base": {"ref": p.base, "repo_id": 1}})
        };
        let names = |ids: &Value| -> Vec<String> {
            ids.as_array()
                .into_iter()
                .flatten()
                .filter_map(|i| LABELS.iter().find(|(id, _)| i.as_u64() == Some(*id)))
                .map(|(_, n)| n.to_string())
                .collect()
        };
        let not_found = r#"{"message": "The target couldn't be found."}"#;
        FakeForge::start(
            move |r| r.header("authorization") == Some(&format!("token {token}")),
            r#"{"message": "token is required"}"#,
            seeded,
            move |request, state| {
                let prefix = format!("/api/v1/repos/{owner}/{name}");
                let Some(rest) = request.path().strip_prefix(&prefix) else {
                    return Reply::json(404, not_found);
                };
                let addr = state.addr.clone();
                let number = |v: Option<String>, default: usize| {
                    v.and_then(|v| v.parse::<usize>().ok()).unwrap_or(default)
                };
                match (request.method.as_str(), rest) {
                    ("GET", "/labels") => {
                        let limit = number(param(&request.target, "limit"), 30);
                        let page = number(param(&request.target, "page"), 1).max(1);
                        let labels: Vec<Value> = LABELS
                            .iter()
                            .skip((page - 1) * limit)
                            .take(limit)
                            .map(|(id, n)| json!({"id": id, "name": n}))
                            .collect();
                        Reply::json(200, &Value::Array(labels).to_string())
                    }
                    ("GET", "/pulls") => {
                        let limit = number(param(&request.target, "limit"), 30);
                        let page = number(param(&request.target, "page"), 1).max(1);
                        let listed: Vec<Value> = state
                            .pulls
                            .iter()
                            .filter(|p| p.open)
                            .skip((page - 1) * limit)
                            .take(limit)
                            .map(|p| json_of(p, &addr))
                            .collect();
                        Reply::json(200, &Value::Array(listed).to_string())
                    }
                    ("POST", "/pulls") => {
                        let head = text(&state.body["head"]);
                        let base = text(&state.body["base"]);
                        if state
                            .pulls
                            .iter()
                            .any(|p| p.open && !p.fork && p.head == head && p.base == base)
                        {
                            return Reply::json(
                                409,
                                r#"{"message": "pull request already exists for these targets"}"#,
                            );
                        }
                        let pull = FakePull {
                            number: state.pulls.len() as u64 + 1,
                            head,
                            base: text(&state.body["base"]),
                            title: text(&state.body["title"]),
                            body: text(&state.body["body"]),
                            labels: names(&state.body["labels"]),
                            open: true,
                            ..FakePull::default()
                        };
                        let reply = json_of(&pull, &addr).to_string();
                        state.pulls.push(pull);
                        Reply::json(201, &reply)
                    }
                    (method, path) => {
                        let (kind, rest) = if let Some(rest) = path.strip_prefix("/pulls") {
                            ("pulls", rest)
                        } else if let Some(rest) = path.strip_prefix("/issues") {
                            ("issues", rest)
                        } else {
                            return Reply::json(404, not_found);
                        };
                        let body = state.body.clone();
                        let Some((number, suffix)) = number_of(rest) else {
                            return Reply::json(404, not_found);
                        };
                        let Some(pull) = state.pulls.iter_mut().find(|p| p.number == number) else {
                            return Reply::json(404, not_found);
                        };
                        match (method, kind, suffix) {
                            ("GET", "pulls", "") => {
                                Reply::json(200, &json_of(pull, &addr).to_string())
                            }
                            ("PATCH", "pulls", "") => {
                                if let Some(t) = body["title"].as_str() {
                                    pull.title = t.to_string();
                                }
                                if let Some(b) = body["body"].as_str() {
                                    pull.body = b.to_string();
                                }
                                if body["state"] == "closed" {
                                    pull.open = false;
                                }
                                Reply::json(201, &json_of(pull, &addr).to_string())
                            }
                            ("POST", "issues", "labels") => {
                                for l in names(&body["labels"]) {
                                    if !pull.labels.contains(&l) {
                                        pull.labels.push(l);
                                    }
                                }
                                Reply::json(200, "[]")
                            }
                            ("POST", "issues", "comments") => {
                                pull.comments.push(text(&body["body"]));
                                Reply::json(
                                    201,
                                    &json!({"id": pull.comments.len(), "body": body["body"]})
                                        .to_string(),
                                )
                            }
                            _ => Reply::json(404, not_found),
                        }
                    }
                }
            },
        )
    }
}
