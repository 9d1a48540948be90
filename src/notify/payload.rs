//! Each service's published message shape: Slack Block Kit, a Teams
//! Adaptive Card (workflows webhooks), a Discord embed, a Google Chat
//! card (cardsV2), Flux's event JSON (generic, optionally HMAC-signed),
//! and GitHub's and GitLab's commit status APIs. Pure: a message in, the
//! request to send out; each service's length limits are kept.

use serde_json::{Value, json};

use super::batch::Message;
use super::event::Severity;
use crate::api::ProviderType;

/// A Provider as delivery needs it, its Secret read.
#[derive(Clone)]
pub struct Target {
    /// `ns/name` of the Provider.
    pub key: String,
    pub type_: ProviderType,
    /// The webhook or repository URL: a secret, never logged whole.
    pub address: url::Url,
    pub channel: Option<String>,
    pub username: Option<String>,
    /// The API token (github, gitlab) or HMAC key (generic-hmac).
    pub token: Option<String>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("key", &self.key)
            .field("type", &self.type_)
            .field("host", &self.address.host_str())
            .finish_non_exhaustive()
    }
}

/// One POST.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    pub url: url::Url,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// At most `n` characters of `text`, an ellipsis marking the cut.
fn clip(text: &str, n: usize) -> String {
    if text.chars().count() <= n {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(n.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Slack's mrkdwn reads `&`, `<` and `>` as markup.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn json_body(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

/// The request that delivers `message` to `target`; `None` when there is
/// nothing to deliver (a commit status for an event of no commit).
pub fn request(target: &Target, message: &Message) -> Result<Option<Outgoing>, String> {
    let event = &message.headline;
    let title = message.title();
    let text = message.text();
    let error = message.severity() == Severity::Error;
    let facts: Vec<(&String, &String)> = event.metadata.iter().collect();
    let json_headers = vec![("Content-Type".to_string(), "application/json".to_string())];
    let post = |body: Value| Outgoing {
        url: target.address.clone(),
        headers: json_headers.clone(),
        body: json_body(&body),
    };
    let outgoing = match target.type_ {
        ProviderType::Slack => {
            let mut blocks = vec![
                json!({"type": "header", "text": {"type": "plain_text", "text": clip(&title, 150)}}),
            ];
            if let Some(summary) = &message.summary {
                blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": clip(&slack_escape(summary), 3000)}]}));
            }
            blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": clip(&slack_escape(&text), 3000)}}));
            if !facts.is_empty() {
                let fields: Vec<Value> = facts
                    .iter()
                    .take(10)
                    .map(|(k, v)| json!({"type": "mrkdwn", "text": clip(&format!("*{}*\n{}", slack_escape(k), slack_escape(v)), 2000)}))
                    .collect();
                blocks.push(json!({"type": "section", "fields": fields}));
            }
            blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": format!("severity: {} · hoist", message.severity().name())}]}));
            let mut body = json!({"text": clip(&format!("{title}: {}", event.message), 3000), "blocks": blocks});
            if let Some(channel) = &target.channel {
                body["channel"] = channel.as_str().into();
            }
            if let Some(username) = &target.username {
                body["username"] = username.as_str().into();
            }
            post(body)
        }
        ProviderType::MsTeams => {
            let mut card_body = vec![
                json!({"type": "TextBlock", "text": clip(&title, 500), "weight": "Bolder", "size": "Medium", "wrap": true, "color": if error { "Attention" } else { "Default" }}),
            ];
            if let Some(summary) = &message.summary {
                card_body.push(json!({"type": "TextBlock", "text": clip(summary, 1000), "isSubtle": true, "wrap": true}));
            }
            card_body.push(json!({"type": "TextBlock", "text": clip(&text, 10000), "wrap": true}));
            if !facts.is_empty() {
                let facts: Vec<Value> = facts
                    .iter()
                    .map(|(k, v)| json!({"title": k, "value": clip(v, 1000)}))
                    .collect();
                card_body.push(json!({"type": "FactSet", "facts": facts}));
            }
            post(json!({
                "type": "message",
                "attachments": [{
                    "contentType": "application/vnd.microsoft.card.adaptive",
                    "contentUrl": null,
                    "content": {
                        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                        "type": "AdaptiveCard",
                        "version": "1.4",
                        "body": card_body,
                    }
                }]
            }))
        }
        ProviderType::Discord => {
            let fields: Vec<Value> = facts
                .iter()
                .take(25)
                .map(|(k, v)| json!({"name": clip(k, 256), "value": clip(v, 1024), "inline": true}))
                .collect();
            let mut description = text.clone();
            if let Some(summary) = &message.summary {
                description = format!("{summary}\n{description}");
            }
            let mut body = json!({"embeds": [{
                "title": clip(&title, 256),
                "description": clip(&description, 4096),
                "color": if error { 0xd4_0e0d } else { 0x2e_b886 },
                "fields": fields,
                "timestamp": event.at.to_string(),
                "footer": {"text": format!("hoist · {}", message.severity().name())},
            }]});
            if let Some(username) = &target.username {
                body["username"] = clip(username, 80).into();
            }
            post(body)
        }
        ProviderType::GoogleChat => {
            let mut widgets = vec![json!({"textParagraph": {"text": clip(&text, 4000)}})];
            for (k, v) in facts.iter().take(20) {
                widgets.push(json!({"decoratedText": {"topLabel": k, "text": clip(v, 1000)}}));
            }
            let mut header = json!({"title": clip(&title, 200), "subtitle": format!("hoist · {}", message.severity().name())});
            if let Some(summary) = &message.summary {
                header["subtitle"] = clip(summary, 200).into();
            }
            post(json!({
                "text": clip(&format!("{title}: {}", event.message), 4000),
                "cardsV2": [{"cardId": "hoist", "card": {"header": header, "sections": [{"widgets": widgets}]}}],
            }))
        }
        ProviderType::Generic | ProviderType::GenericHmac => {
            let mut metadata: serde_json::Map<String, Value> = event
                .metadata
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            if let Some(summary) = &message.summary {
                metadata.insert("summary".into(), summary.as_str().into());
            }
            if message.total > 1 {
                metadata.insert("events".into(), message.total.to_string().into());
            }
            let body = json_body(&json!({
                "involvedObject": {"apiVersion": crate::api::API_VERSION, "kind": event.kind, "namespace": event.namespace, "name": event.name},
                "severity": message.severity().name(),
                "timestamp": event.at.to_string(),
                "message": text,
                "reason": event.reason.name(),
                "metadata": metadata,
                "reportingController": "hoist",
            }));
            let mut headers = json_headers.clone();
            if target.type_ == ProviderType::GenericHmac {
                let key = target
                    .token
                    .as_deref()
                    .ok_or("generic-hmac signs with the Secret's token, and there is none")?;
                headers.push((
                    "X-Signature".to_string(),
                    format!("sha256={}", hmac_sha256(key.as_bytes(), &body)),
                ));
            }
            Outgoing {
                url: target.address.clone(),
                headers,
                body,
            }
        }
        ProviderType::GitHub | ProviderType::GitLab => {
            let Some(revision) = event.revision() else {
                return Ok(None);
            };
            if !revision.bytes().all(|b| b.is_ascii_hexdigit()) || revision.len() < 7 {
                return Err(format!("{revision:?} is not a commit id"));
            }
            let token = target
                .token
                .as_deref()
                .ok_or("a commit status needs the Secret's token")?;
            let context = format!("hoist/{}/{}", event.kind.to_ascii_lowercase(), event.name);
            let description = clip(&event.message.replace('\n', " "), 140);
            let (owner_repo, base) = repository(&target.address)?;
            if target.type_ == ProviderType::GitHub {
                let api = if target.address.host_str() == Some("github.com") {
                    "https://api.github.com".to_string()
                } else {
                    format!("{base}/api/v3")
                };
                let url = url::Url::parse(&format!("{api}/repos/{owner_repo}/statuses/{revision}"))
                    .map_err(|e| e.to_string())?;
                Outgoing {
                    url,
                    headers: vec![
                        ("Content-Type".into(), "application/json".into()),
                        ("Accept".into(), "application/vnd.github+json".into()),
                        ("X-GitHub-Api-Version".into(), "2022-11-28".into()),
                        ("Authorization".into(), format!("Bearer {token}")),
                    ],
                    body: json_body(&json!({
                        "state": if error { "failure" } else { "success" },
                        "context": context,
                        "description": description,
                    })),
                }
            } else {
                let project: String =
                    url::form_urlencoded::byte_serialize(owner_repo.as_bytes()).collect();
                let url = url::Url::parse(&format!(
                    "{base}/api/v4/projects/{project}/statuses/{revision}"
                ))
                .map_err(|e| e.to_string())?;
                Outgoing {
                    url,
                    headers: vec![
                        ("Content-Type".into(), "application/json".into()),
                        ("PRIVATE-TOKEN".into(), token.to_string()),
                    ],
                    body: json_body(&json!({
                        "state": if error { "failed" } else { "success" },
                        "name": context,
                        "description": description,
                    })),
                }
            }
        }
    };
    Ok(Some(outgoing))
}

/// `owner/repo` (GitLab: `group/sub/project`) of a repository URL, and
/// the URL's origin.
fn repository(address: &url::Url) -> Result<(String, String), String> {
    let path = address
        .path()
        .trim_matches('/')
        .trim_end_matches(".git")
        .to_string();
    if path.split('/').filter(|p| !p.is_empty()).count() < 2 {
        return Err("the address is not a repository URL (https://HOST/OWNER/REPO)".to_string());
    }
    Ok((path, address.origin().ascii_serialization()))
}

/// Lowercase hex of HMAC-SHA256, as Flux's generic-hmac signs.
pub fn hmac_sha256(key: &[u8], body: &[u8]) -> String {
    use hmac::Mac;
    let Ok(mut mac) = <hmac::Hmac<sha2::Sha256> as hmac::digest::KeyInit>::new_from_slice(key)
    else {
        return String::new();
    };
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
