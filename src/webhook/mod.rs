//! The pure half of webhook receivers: is a request really from its
//! sender, and what does it name? Each sender type signs the way it does
//! (GitHub and Gitea an HMAC-SHA256 of the body, GitLab a token header,
//! Harbor and distribution an `Authorization` header, Docker Hub and Quay
//! only the secret URL path), and each payload names images or git
//! repositories in its own shape. Comparisons of secrets take constant
//! time. No HTTP here: the server hands in headers and body.

pub mod server;
pub mod targets;

use hmac::{Hmac, Mac};
use serde_json::Value;

use crate::api::ReceiverType;

/// Why a request is refused. The HTTP answer says no more than the status;
/// the reason goes to the log and a metric.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("no signature or token")]
    Unsigned,
    #[error("the signature or token does not match")]
    BadSignature,
    #[error("an event this receiver does not act on")]
    IgnoredEvent,
    #[error("the body is not the JSON this sender sends")]
    BadPayload,
}

/// The most images, and the most repositories, one event names: a sender
/// has no reason to name more, and a merged burst stays small.
pub const MAX_NAMES: usize = 100;

/// What a verified event asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// Images pushed, as `registry/path` (docker.io spelt out).
    pub images: Vec<String>,
    /// Git repositories pushed to, as the URLs the payload gives.
    pub repositories: Vec<String>,
}

/// `a == b` in time that does not depend on where they differ, nor on
/// their lengths: the digests of both are compared.
fn same(a: &[u8], b: &[u8]) -> bool {
    use sha2::Digest;
    let (a, b) = (sha2::Sha256::digest(a), sha2::Sha256::digest(b));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The hash of an HMAC.
#[derive(Clone, Copy, Debug)]
enum Hash {
    /// Accepted from generic senders only, as Flux does; HMAC-SHA1 is
    /// still sound as a MAC.
    Sha1,
    Sha256,
    Sha512,
}

/// The HMAC of `body` with `secret`.
fn hmac(hash: Hash, secret: &[u8], body: &[u8]) -> Vec<u8> {
    fn of<M: Mac + hmac::digest::KeyInit>(secret: &[u8], body: &[u8]) -> Vec<u8> {
        match <M as hmac::digest::KeyInit>::new_from_slice(secret) {
            Ok(mut mac) => {
                mac.update(body);
                mac.finalize().into_bytes().to_vec()
            }
            Err(_) => Vec::new(),
        }
    }
    match hash {
        Hash::Sha1 => of::<Hmac<sha1::Sha1>>(secret, body),
        Hash::Sha256 => of::<Hmac<sha2::Sha256>>(secret, body),
        Hash::Sha512 => of::<Hmac<sha2::Sha512>>(secret, body),
    }
}

/// Checks `signature` (hex) against an HMAC of `body` with `secret`, in
/// constant time.
fn hmac_matches(hash: Hash, secret: &[u8], body: &[u8], signature: &str) -> bool {
    let Some(expected) = hex_decode(signature.trim()) else {
        return false;
    };
    let actual = hmac(hash, secret, body);
    !actual.is_empty() && same(&actual, &expected)
}

/// A header by name, case-insensitively.
fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Verifies a request for a receiver of `sender` with `secret`, then reads
/// what it names. Docker Hub, Quay and generic senders sign nothing: reaching the receiver's
/// secret path is their proof.
pub fn verify(
    sender: ReceiverType,
    secret: &[u8],
    headers: &[(String, String)],
    body: &[u8],
) -> Result<Event, Rejection> {
    // A Secret value written with a trailing newline still matches; an
    // empty one matches nothing.
    let secret = secret.trim_ascii();
    if secret.is_empty()
        && !matches!(
            sender,
            ReceiverType::DockerHub | ReceiverType::Quay | ReceiverType::Generic
        )
    {
        return Err(Rejection::BadSignature);
    }
    match sender {
        ReceiverType::GitHub => {
            let signature = header(headers, "X-Hub-Signature-256").ok_or(Rejection::Unsigned)?;
            let hex = signature
                .strip_prefix("sha256=")
                .ok_or(Rejection::BadSignature)?;
            if !hmac_matches(Hash::Sha256, secret, body, hex) {
                return Err(Rejection::BadSignature);
            }
        }
        ReceiverType::Gitea => {
            let signature = header(headers, "X-Gitea-Signature")
                .or_else(|| header(headers, "X-Forgejo-Signature"))
                .ok_or(Rejection::Unsigned)?;
            if !hmac_matches(Hash::Sha256, secret, body, signature) {
                return Err(Rejection::BadSignature);
            }
        }
        ReceiverType::GitLab => {
            let token = header(headers, "X-Gitlab-Token").ok_or(Rejection::Unsigned)?;
            if !same(token.trim().as_bytes(), secret) {
                return Err(Rejection::BadSignature);
            }
        }
        ReceiverType::Harbor | ReceiverType::Distribution => {
            let token = header(headers, "Authorization").ok_or(Rejection::Unsigned)?;
            // The header as it is (Flux compares it verbatim, so a token
            // stored as `Bearer xyz` keeps working), or a bearer token.
            let bearer = token.strip_prefix("Bearer ").unwrap_or(token);
            // Both compared, so the time does not tell which form matched.
            let verbatim = same(token.trim().as_bytes(), secret);
            let stripped = same(bearer.trim().as_bytes(), secret);
            if !(verbatim | stripped) {
                return Err(Rejection::BadSignature);
            }
        }
        ReceiverType::GenericHmac => {
            let signature = header(headers, "X-Signature").ok_or(Rejection::Unsigned)?;
            let ok = match signature.split_once('=') {
                Some(("sha1", hex)) => hmac_matches(Hash::Sha1, secret, body, hex),
                Some(("sha256", hex)) => hmac_matches(Hash::Sha256, secret, body, hex),
                Some(("sha512", hex)) => hmac_matches(Hash::Sha512, secret, body, hex),
                _ => false,
            };
            if !ok {
                return Err(Rejection::BadSignature);
            }
        }
        ReceiverType::DockerHub | ReceiverType::Quay | ReceiverType::Generic => {}
    }
    event(sender, headers, body)
}

/// `acme/app` on Docker Hub is `docker.io/acme/app`; `app` is
/// `docker.io/library/app`.
fn docker_hub(name: &str) -> String {
    if name.contains('/') {
        format!("docker.io/{name}")
    } else {
        format!("docker.io/library/{name}")
    }
}

/// `host/path:tag` or `host/path@digest` → `host/path`.
fn without_tag(reference: &str) -> String {
    let reference = reference.split('@').next().unwrap_or(reference);
    match reference.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => name.to_string(),
        _ => reference.to_string(),
    }
}

/// What a verified payload names.
fn event(
    sender: ReceiverType,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<Event, Rejection> {
    // A generic payload names nothing; GitHub's ping, sent when a hook is
    // made, asks for nothing but a 2xx.
    if matches!(sender, ReceiverType::GenericHmac | ReceiverType::Generic)
        || (sender == ReceiverType::GitHub && header(headers, "X-GitHub-Event") == Some("ping"))
    {
        return Ok(Event::default());
    }
    let payload: Value = serde_json::from_slice(body).map_err(|_| Rejection::BadPayload)?;
    let text = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_string);
    let mut event = Event::default();
    match sender {
        ReceiverType::DockerHub => {
            let name = text(&payload["repository"]["repo_name"]).ok_or(Rejection::BadPayload)?;
            event.images.push(docker_hub(&name));
        }
        ReceiverType::Quay => {
            let url = text(&payload["docker_url"]).ok_or(Rejection::BadPayload)?;
            event.images.push(url);
        }
        ReceiverType::Harbor => {
            if !matches!(
                payload["type"].as_str(),
                Some("PUSH_ARTIFACT" | "pushImage")
            ) {
                return Err(Rejection::IgnoredEvent);
            }
            for resource in payload["event_data"]["resources"]
                .as_array()
                .into_iter()
                .flatten()
            {
                if let Some(url) = text(&resource["resource_url"]) {
                    event.images.push(without_tag(&url));
                }
            }
        }
        ReceiverType::Distribution => {
            for e in payload["events"].as_array().into_iter().flatten() {
                if e["action"] != "push" {
                    continue;
                }
                let (Some(host), Some(repository)) = (
                    text(&e["request"]["host"]),
                    text(&e["target"]["repository"]),
                ) else {
                    continue;
                };
                event.images.push(format!("{host}/{repository}"));
            }
            if event.images.is_empty() {
                return Err(Rejection::IgnoredEvent);
            }
        }
        ReceiverType::GitHub => match header(headers, "X-GitHub-Event").unwrap_or("") {
            "push" => {
                let repository = &payload["repository"];
                for field in ["clone_url", "ssh_url", "html_url"] {
                    if let Some(url) = text(&repository[field]) {
                        event.repositories.push(url);
                    }
                }
            }
            "package" | "registry_package" => {
                let package = if payload["package"].is_object() {
                    &payload["package"]
                } else {
                    &payload["registry_package"]
                };
                if package["package_type"]
                    .as_str()
                    .map(str::to_ascii_lowercase)
                    .as_deref()
                    != Some("container")
                {
                    return Err(Rejection::IgnoredEvent);
                }
                let owner = text(&package["namespace"])
                    .or_else(|| text(&package["owner"]["login"]))
                    .ok_or(Rejection::BadPayload)?;
                let name = text(&package["name"]).ok_or(Rejection::BadPayload)?;
                event.images.push(format!(
                    "ghcr.io/{}/{}",
                    owner.to_ascii_lowercase(),
                    name.to_ascii_lowercase()
                ));
            }
            _ => return Err(Rejection::IgnoredEvent),
        },
        ReceiverType::GitLab => {
            if !matches!(
                header(headers, "X-Gitlab-Event"),
                Some("Push Hook" | "Tag Push Hook")
            ) {
                return Err(Rejection::IgnoredEvent);
            }
            for field in ["git_http_url", "git_ssh_url", "web_url"] {
                if let Some(url) = text(&payload["project"][field]) {
                    event.repositories.push(url);
                }
            }
        }
        ReceiverType::Gitea => {
            let kind = header(headers, "X-Gitea-Event")
                .or_else(|| header(headers, "X-Forgejo-Event"))
                .unwrap_or("");
            if kind != "push" {
                return Err(Rejection::IgnoredEvent);
            }
            for field in ["clone_url", "ssh_url", "html_url"] {
                if let Some(url) = text(&payload["repository"][field]) {
                    event.repositories.push(url);
                }
            }
        }
        ReceiverType::GenericHmac | ReceiverType::Generic => {}
    }
    for names in [&mut event.images, &mut event.repositories] {
        // An empty name (a Harbor `resource_url` of only `:tag`) names no
        // object; left in, it would be one more name matching nothing.
        let mut seen = std::collections::HashSet::new();
        names.retain(|n| !n.is_empty() && seen.insert(n.clone()));
        names.truncate(MAX_NAMES);
    }
    if event.images.is_empty() && event.repositories.is_empty() {
        return Err(Rejection::BadPayload);
    }
    Ok(event)
}

/// Shortest token of a sender that signs nothing, where the path made from
/// the token is the only credential.
pub const MIN_PATH_TOKEN: usize = 16;

/// What is wrong with `token` for a Receiver of `sender`, if anything.
pub fn token_problem(sender: ReceiverType, token: &[u8]) -> Option<String> {
    let token = token.trim_ascii();
    if token.is_empty() {
        return Some("key `token` is empty".to_string());
    }
    let path_only = matches!(
        sender,
        ReceiverType::DockerHub | ReceiverType::Quay | ReceiverType::Generic
    );
    (path_only && token.len() < MIN_PATH_TOKEN).then(|| {
        format!(
            "key `token` has {} characters; Docker Hub, Quay and generic senders sign nothing, so the path made from the token is the only credential: use at least {MIN_PATH_TOKEN} random characters",
            token.len()
        )
    })
}

/// Why a Receiver's Secret gives it no token to verify with. Both drivers
/// (`hoist run` over files, the controller over the API) check with
/// [`receiver_token`], so they refuse the same Secrets with the same words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("spec.secretRef: Secret {secret}{}", match .problem { None => " with key `token` not found".to_string(), Some(p) => format!(": {p}") })]
pub struct TokenRefused {
    /// `ns/name` of the Secret.
    pub secret: String,
    /// What is wrong with the token; `None`: no such Secret or key.
    pub problem: Option<String>,
}

/// The token of `receiver`, from the `token` key of its Secret as the
/// driver found it (`None`: no such Secret, or no such key).
pub fn receiver_token<'a>(
    receiver: &crate::api::Receiver,
    token: Option<&'a [u8]>,
) -> Result<&'a [u8], TokenRefused> {
    let secret = crate::model::ObjectKey::new(
        crate::model::namespace_of(&receiver.metadata),
        &receiver.spec.secret_ref.name,
    )
    .to_string();
    let token = token.ok_or_else(|| TokenRefused {
        secret: secret.clone(),
        problem: None,
    })?;
    match token_problem(receiver.spec.type_, token) {
        Some(problem) => Err(TokenRefused {
            secret,
            problem: Some(problem),
        }),
        None => Ok(token),
    }
}

/// `first` and whatever else has arrived by now, one delivery per Receiver
/// (events of one Receiver merged): what both drivers act on as one batch
/// after a slow pass or a slow API server.
pub fn batch(
    first: server::Delivery,
    more: &mut tokio::sync::mpsc::UnboundedReceiver<server::Delivery>,
) -> Vec<server::Delivery> {
    let mut batch = vec![first];
    while let Ok(next) = more.try_recv() {
        match batch
            .iter_mut()
            .find(|d| d.endpoint.key() == next.endpoint.key())
        {
            Some(d) => server::merge(&mut d.event, next.event),
            None => batch.push(next),
        }
    }
    batch
}

/// Flux's URL path for its Receiver `namespace/name`: `/hook/` and the
/// sha256 of the token, name and namespace, as Flux's notification-controller
/// computes it (of the token as the Secret holds it).
pub fn flux_path(namespace: &str, name: &str, token: &[u8]) -> String {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    hasher.update(token);
    hasher.update(name.as_bytes());
    hasher.update(namespace.as_bytes());
    format!("/hook/{:x}", hasher.finalize())
}

/// The receiver's URL path: `/hook/` and the sha256 of its name and token,
/// so that only someone who knows the token can find it.
pub fn path(namespace: &str, name: &str, token: &[u8]) -> String {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    hasher.update(format!("{namespace}/{name}").as_bytes());
    hasher.update(token);
    format!("/hook/{:x}", hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receiver(name: &str, type_: &str) -> crate::api::Receiver {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "apps"},
            "spec": {"type": type_, "secretRef": {"name": "hook"}}
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn both_drivers_refuse_the_same_tokens_naming_the_secret() {
        let github = receiver("gh", "github");
        assert_eq!(
            receiver_token(&github, None).map_err(|e| e.to_string()),
            Err("spec.secretRef: Secret apps/hook with key `token` not found".into())
        );
        let empty = receiver_token(&github, Some(b"  \n")).map_err(|e| e.to_string());
        assert_eq!(
            empty,
            Err("spec.secretRef: Secret apps/hook: key `token` is empty".into())
        );
        assert_eq!(receiver_token(&github, Some(b"s3cret")), Ok(&b"s3cret"[..]));
        // Docker Hub signs nothing: a short token is a guessable path.
        let short = receiver_token(&receiver("hub", "dockerhub"), Some(b"s3cret"));
        assert!(short.is_err_and(|e| e.problem.is_some_and(|p| p.contains("at least 16"))));
        // Nor does Flux's generic type.
        let short = receiver_token(&receiver("any", "generic"), Some(b"s3cret"));
        assert!(short.is_err_and(|e| e.problem.is_some_and(|p| p.contains("at least 16"))));
    }

    #[test]
    fn a_batch_is_one_delivery_per_receiver_with_their_events_merged() {
        let endpoint = |name: &str| {
            std::sync::Arc::new(server::Endpoint::new(
                receiver(name, "generic-hmac"),
                b"t0ken-t0ken-t0ken".to_vec(),
            ))
        };
        let (a, b) = (endpoint("a"), endpoint("b"));
        let delivery =
            |endpoint: &std::sync::Arc<server::Endpoint>, image: &str| server::Delivery {
                endpoint: std::sync::Arc::clone(endpoint),
                event: Event {
                    images: vec![image.to_string()],
                    ..Event::default()
                },
            };
        let (send, mut more) = tokio::sync::mpsc::unbounded_channel();
        for d in [
            delivery(&b, "x/2"),
            delivery(&a, "x/3"),
            delivery(&b, "x/4"),
        ] {
            send.send(d)
                .unwrap_or_else(|_| panic!("the channel is open"));
        }
        let batch = batch(delivery(&a, "x/1"), &mut more);
        let got: Vec<(String, Vec<String>)> = batch
            .into_iter()
            .map(|d| (d.endpoint.key(), d.event.images))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "apps/a".to_string(),
                    vec!["x/1".to_string(), "x/3".to_string()]
                ),
                (
                    "apps/b".to_string(),
                    vec!["x/2".to_string(), "x/4".to_string()]
                ),
            ]
        );
    }
    use serde_json::json;

    const SECRET: &[u8] = b"s3cret";

    /// Sender, headers, body, and what `verify` should say.
    type Case<'a> = (
        ReceiverType,
        Vec<(&'a str, &'a str)>,
        &'a str,
        Result<Event, Rejection>,
    );

    fn hmac_hex(hash: Hash, body: &[u8]) -> String {
        hmac(hash, SECRET, body)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// A good request, a bad signature, and an unsigned one, per sender.
    #[test]
    fn each_sender_is_verified_the_way_it_signs() {
        let push = json!({"ref": "refs/heads/main", "repository": {
            "clone_url": "https://github.com/acme/fleet.git", "ssh_url": "git@github.com:acme/fleet.git",
            "html_url": "https://github.com/acme/fleet"}})
        .to_string();
        let package = json!({"action": "published", "package": {"name": "App", "namespace": "Acme",
            "package_type": "CONTAINER", "package_version": {"container_metadata": {"tag": {"name": "1.2.0"}}}}})
        .to_string();
        let gitlab = json!({"object_kind": "push", "project": {
            "git_http_url": "https://gitlab.example.com/platform/apps/fleet.git",
            "git_ssh_url": "git@gitlab.example.com:platform/apps/fleet.git"}})
        .to_string();
        let dockerhub = json!({"push_data": {"tag": "1.2.0", "pusher": "acme"},
            "repository": {"repo_name": "acme/app", "namespace": "acme", "name": "app"}})
        .to_string();
        let harbor = json!({"type": "PUSH_ARTIFACT", "event_data": {"resources": [
            {"tag": "1.2.0", "resource_url": "harbor.example.com/library/app:1.2.0"}],
            "repository": {"repo_full_name": "library/app"}}})
        .to_string();
        // Found by the webhook_payload fuzz target: a resource that names
        // only a tag names no image.
        let harbor_tag_only = json!({"type": "PUSH_ARTIFACT", "event_data": {"resources": [
            {"resource_url": ":1.2.0"}]}})
        .to_string();
        let quay = json!({"repository": "acme/app", "docker_url": "quay.io/acme/app", "updated_tags": ["1.2.0"]})
            .to_string();
        let distribution = json!({"events": [
            {"action": "pull", "target": {"repository": "team/other"}, "request": {"host": "registry:5000"}},
            {"action": "push", "target": {"repository": "team/app", "tag": "1.2.0"}, "request": {"host": "registry:5000"}}]})
        .to_string();
        let github_sig = format!("sha256={}", hmac_hex(Hash::Sha256, push.as_bytes()));
        let package_sig = format!("sha256={}", hmac_hex(Hash::Sha256, package.as_bytes()));
        let gitea_sig = hmac_hex(Hash::Sha256, push.as_bytes());
        let generic_sig = format!("sha512={}", hmac_hex(Hash::Sha512, b"{}"));
        let image = |i: &str| Event {
            images: vec![i.into()],
            repositories: vec![],
        };
        let repos = |r: &[&str]| Event {
            images: vec![],
            repositories: r.iter().map(|s| s.to_string()).collect(),
        };
        let github_repos = repos(&[
            "https://github.com/acme/fleet.git",
            "git@github.com:acme/fleet.git",
            "https://github.com/acme/fleet",
        ]);
        let cases: Vec<Case> = vec![
            (
                ReceiverType::GitHub,
                vec![
                    ("X-GitHub-Event", "push"),
                    ("X-Hub-Signature-256", &github_sig),
                ],
                &push,
                Ok(github_repos.clone()),
            ),
            (
                ReceiverType::GitHub,
                vec![
                    ("X-GitHub-Event", "package"),
                    ("X-Hub-Signature-256", &package_sig),
                ],
                &package,
                Ok(image("ghcr.io/acme/app")),
            ),
            (
                ReceiverType::GitHub,
                vec![
                    ("X-GitHub-Event", "push"),
                    ("X-Hub-Signature-256", "sha256=00"),
                ],
                &push,
                Err(Rejection::BadSignature),
            ),
            (
                ReceiverType::GitHub,
                vec![("X-GitHub-Event", "push")],
                &push,
                Err(Rejection::Unsigned),
            ),
            (
                ReceiverType::GitHub,
                vec![
                    ("X-GitHub-Event", "issues"),
                    ("X-Hub-Signature-256", &github_sig),
                ],
                &push,
                Err(Rejection::IgnoredEvent),
            ),
            (
                ReceiverType::Gitea,
                vec![("X-Gitea-Event", "push"), ("X-Gitea-Signature", &gitea_sig)],
                &push,
                Ok(github_repos),
            ),
            (
                ReceiverType::Gitea,
                vec![
                    ("X-Gitea-Event", "push"),
                    ("X-Gitea-Signature", &github_sig),
                ],
                &push,
                Err(Rejection::BadSignature),
            ),
            (
                ReceiverType::GitLab,
                vec![
                    ("X-Gitlab-Event", "Push Hook"),
                    ("X-Gitlab-Token", "s3cret"),
                ],
                &gitlab,
                Ok(repos(&[
                    "https://gitlab.example.com/platform/apps/fleet.git",
                    "git@gitlab.example.com:platform/apps/fleet.git",
                ])),
            ),
            (
                ReceiverType::GitLab,
                vec![
                    ("X-Gitlab-Event", "Push Hook"),
                    ("X-Gitlab-Token", "s3crex"),
                ],
                &gitlab,
                Err(Rejection::BadSignature),
            ),
            (
                ReceiverType::DockerHub,
                vec![],
                &dockerhub,
                Ok(image("docker.io/acme/app")),
            ),
            (
                ReceiverType::Harbor,
                vec![("Authorization", "s3cret")],
                &harbor,
                Ok(image("harbor.example.com/library/app")),
            ),
            (
                ReceiverType::Harbor,
                vec![],
                &harbor,
                Err(Rejection::Unsigned),
            ),
            (
                ReceiverType::Harbor,
                vec![("Authorization", "s3cret")],
                &harbor_tag_only,
                Err(Rejection::BadPayload),
            ),
            (
                ReceiverType::Quay,
                vec![],
                &quay,
                Ok(image("quay.io/acme/app")),
            ),
            (
                ReceiverType::Distribution,
                vec![("Authorization", "Bearer s3cret")],
                &distribution,
                Ok(image("registry:5000/team/app")),
            ),
            (
                ReceiverType::Distribution,
                vec![("Authorization", "Bearer nope")],
                &distribution,
                Err(Rejection::BadSignature),
            ),
            (
                ReceiverType::GenericHmac,
                vec![("X-Signature", &generic_sig)],
                "{}",
                Ok(Event::default()),
            ),
            (
                ReceiverType::GenericHmac,
                vec![("X-Signature", "sha1=abcd")],
                "{}",
                Err(Rejection::BadSignature),
            ),
            (
                ReceiverType::DockerHub,
                vec![],
                "not json",
                Err(Rejection::BadPayload),
            ),
        ];
        for (sender, pairs, body, expected) in cases {
            assert_eq!(
                verify(sender, SECRET, &headers(&pairs), body.as_bytes()),
                expected,
                "{sender:?} {pairs:?}"
            );
        }
    }

    #[test]
    fn hmacs_match_published_test_vectors() {
        // RFC 4231, test case 2.
        assert!(hmac_matches(
            Hash::Sha256,
            b"Jefe",
            b"what do ya want for nothing?",
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        ));
        assert!(hmac_matches(
            Hash::Sha512,
            b"Jefe",
            b"what do ya want for nothing?",
            "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"
        ));
        // RFC 2202, test case 2.
        assert!(hmac_matches(
            Hash::Sha1,
            b"Jefe",
            b"what do ya want for nothing?",
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        ));
        // A Harbor token stored with its scheme, as Flux users keep it.
        let harbor = json!({"type": "PUSH_ARTIFACT", "event_data": {"resources": [
            {"resource_url": "harbor.example.com/library/app:1.2.0"}]}})
        .to_string();
        for (stored, sent, ok) in [
            ("Bearer xyz", "Bearer xyz", true),
            ("xyz", "Bearer xyz", true),
            ("xyz", "xyz", true),
            ("Bearer xyz", "xyz", false),
        ] {
            let result = verify(
                ReceiverType::Harbor,
                stored.as_bytes(),
                &headers(&[("Authorization", sent)]),
                harbor.as_bytes(),
            );
            assert_eq!(result.is_ok(), ok, "{stored:?} / {sent:?}");
        }
        // GitHub's documentation example of X-Hub-Signature-256.
        let headers = vec![
            (
                "X-Hub-Signature-256".to_string(),
                "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
                    .to_string(),
            ),
            ("X-GitHub-Event".to_string(), "ping".to_string()),
        ];
        assert_eq!(
            verify(
                ReceiverType::GitHub,
                b"It's a Secret to Everybody",
                &headers,
                b"Hello, World!"
            ),
            // The signature is accepted: a ping, answered and acted on no further.
            Ok(Event::default())
        );
    }

    #[test]
    fn paths_depend_on_the_token_and_secrets_compare_in_full() {
        let a = path("flux-system", "registry", b"token-a");
        assert!(a.starts_with("/hook/") && a.len() == 6 + 64, "{a}");
        assert_ne!(a, path("flux-system", "registry", b"token-b"));
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd") && !same(b"abc", b"abcd"));
        assert_eq!(hex_decode("+f"), None);
        // An empty secret matches nothing; a trailing newline is ignored.
        let gitlab =
            json!({"project": {"git_http_url": "https://gitlab.example.com/a/b.git"}}).to_string();
        let hook =
            |token: &str| headers(&[("X-Gitlab-Event", "Push Hook"), ("X-Gitlab-Token", token)]);
        assert_eq!(
            verify(ReceiverType::GitLab, b"", &hook(""), gitlab.as_bytes()),
            Err(Rejection::BadSignature)
        );
        assert!(
            verify(
                ReceiverType::GitLab,
                b"s3cret\n",
                &hook("s3cret"),
                gitlab.as_bytes()
            )
            .is_ok()
        );
        assert_eq!(
            without_tag("harbor.example.com:8443/library/app:1.2.0"),
            "harbor.example.com:8443/library/app"
        );
        assert_eq!(
            without_tag("ghcr.io/acme/app@sha256:ab"),
            "ghcr.io/acme/app"
        );
        assert_eq!(docker_hub("nginx"), "docker.io/library/nginx");
    }
}
