//! Entry points for the fuzz targets in `fuzz/` and for the corpus test
//! that replays their seeds on stable. Each takes arbitrary bytes, must
//! not panic on any of them, touches neither network nor disk, and checks
//! the invariants the parser under it promises: a failed assertion here is
//! a finding, like a panic inside.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::LazyLock;
use std::time::{Duration, SystemTime};

use hmac::Mac;

use crate::api::{ImageRef, ReceiverType};
use crate::load::{LoadError, ObjectSet};
use crate::registry::headers;
use crate::rewrite::{Marker, Refs};
use crate::webhook::{self, Rejection};

/// `hoist run -f FILE`'s path from a file's text to objects.
pub fn loader(data: &[u8]) {
    // `load` reads files with `read_to_string`: text that is not UTF-8
    // never gets further than an I/O error.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzz.yaml");
    for explicit in [true, false] {
        let mut set = ObjectSet::default();
        let mut errors = Vec::new();
        crate::load::load_text(path, text, explicit, &mut set, &mut errors);
        crate::load::finish(&mut set, &mut errors);
        for e in &errors {
            let shown = e.to_string();
            assert!(
                shown.starts_with("fuzz.yaml"),
                "error names no file: {shown}"
            );
            if let LoadError::Invalid { field, .. } = e {
                assert!(!field.is_empty(), "error names no field: {shown}");
            }
        }
        for w in &set.warnings {
            assert_eq!(w.path, path, "warning names another file");
        }
    }
}

/// Latest refs a policy may hold: ordinary ones and ones that YAML would
/// misread or that need quoting in every style.
fn latest(choice: u8) -> ImageRef {
    const TAGS: [&str; 16] = [
        "1.2.3",
        "1.10",
        "true",
        "0x1F",
        "v1 #x",
        "a: b",
        "it's",
        "\"q\"",
        "-",
        "~",
        "null",
        "[x]",
        "",
        "é\u{85}",
        " lead",
        "tab\there",
    ];
    const NAMES: [&str; 4] = ["ghcr.io/acme/app", "app", "r.example:5000/a/b", "*x"];
    let digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    ImageRef {
        name: NAMES[usize::from(choice >> 4) % NAMES.len()].to_string(),
        tag: TAGS[usize::from(choice) % TAGS.len()].to_string(),
        digest: (choice & 0x40 != 0).then(|| digest.to_string()),
    }
}

/// The rewriter on a file's text, with a latest ref for every policy a
/// marker in it names. The first byte picks the ref.
pub fn rewriter(data: &[u8]) {
    let Some((&choice, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let image = latest(choice);
    let mut refs = Refs::new();
    for line in text.lines() {
        for (at, _) in line.match_indices('#') {
            if let Some(Ok(marker)) = Marker::parse(&line[at + 1..]) {
                refs.insert(marker.policy(), image.clone());
            }
        }
    }
    let out = crate::rewrite::rewrite(text, &refs);
    if !text.contains("$imagepolicy") {
        assert_eq!(
            out,
            crate::rewrite::Rewritten::default(),
            "text without markers"
        );
        return;
    }
    assert_eq!(
        out.text.is_some(),
        !out.edits.is_empty(),
        "edits and text disagree"
    );
    if out.unparsable {
        assert!(out.text.is_none(), "an unparsable text was changed");
    }
    let Some(new) = &out.text else {
        return;
    };
    assert_ne!(new, text, "a changed text is the same");
    // Only the marked scalars' lines change: each value's lines, from the
    // one it starts on to its marker's, become the one line of its new
    // value, and every other line stays where it was, as it was. (A line
    // diff cannot say this: among identical blank lines it may blame any.)
    // A value's own text may look like a marker line too (a quoted scalar
    // spanning lines can hold one), so each value may end on any line from
    // its start that holds its marker: some choice must explain the text.
    let old_lines = yaml_lines(text);
    let new_lines = yaml_lines(new);
    let mut edits: Vec<(usize, Vec<usize>)> = out
        .edits
        .iter()
        .map(|e| {
            let start = e.line.saturating_sub(1);
            let ends = (start..old_lines.len())
                .filter(|&i| holds_marker(old_lines[i], &e.marker))
                .collect();
            (start, ends)
        })
        .collect();
    edits.sort_unstable();
    let mut furthest = 0;
    assert!(
        explains(&old_lines, &new_lines, &edits, 0, 0, &mut furthest),
        "line {} changed without a marker (or lines were inserted): {new:?}",
        furthest + 1
    );
    // Rewriting again with the same refs changes nothing: every value was
    // written so that it reads back as itself.
    let again = crate::rewrite::rewrite(new, &refs);
    assert!(!again.unparsable, "the rewrite broke the YAML: {new:?}");
    assert_eq!(again.text, None, "a second rewrite changed {new:?}");
}

/// Whether `new` from line `at` on is `old` from line `from` on with each
/// of `edits` (a start line and the lines its value may end on) replaced
/// by one line, and every other line kept. `furthest` is the furthest old
/// line that matched, for the message.
fn explains(
    old: &[&str],
    new: &[&str],
    edits: &[(usize, Vec<usize>)],
    from: usize,
    at: usize,
    furthest: &mut usize,
) -> bool {
    let Some(((start, ends), later)) = edits.split_first() else {
        return kept(old, new, from..old.len(), at, furthest) && at + old.len() - from == new.len();
    };
    if *start < from || !kept(old, new, from..*start, at, furthest) {
        return false;
    }
    let at = at + (start - from);
    at < new.len()
        && ends
            .iter()
            .any(|&end| explains(old, new, later, end + 1, at + 1, furthest))
}

/// Whether the old lines `lines` are in `new` from line `at` on.
fn kept(
    old: &[&str],
    new: &[&str],
    lines: std::ops::Range<usize>,
    at: usize,
    furthest: &mut usize,
) -> bool {
    for (offset, line) in lines.clone().enumerate() {
        if new.get(at + offset) != Some(&old[line]) {
            *furthest = (*furthest).max(line);
            return false;
        }
    }
    *furthest = (*furthest).max(lines.end);
    true
}

/// Whether `line` has a comment that is the setter marker `marker`. The
/// value's own text may hold `$imagepolicy` (a plain scalar spanning lines
/// can), so the words alone do not make a marker line.
fn holds_marker(line: &str, marker: &str) -> bool {
    line.match_indices('#').any(|(at, _)| {
        let starts_comment = at == 0 || line[..at].ends_with([' ', '\t']);
        starts_comment
            && matches!(Marker::parse(&line[at + 1..]), Some(Ok(m)) if m.to_string() == marker)
    })
}

/// The lines of `text` as YAML counts them (and the diff splits them):
/// each ends at `\r\n`, `\n` or a lone `\r`.
fn yaml_lines(text: &str) -> Vec<&str> {
    let bytes = text.as_bytes();
    let mut lines = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let end = match (bytes[i], bytes.get(i + 1)) {
            (b'\r', Some(b'\n')) => i + 2,
            (b'\r' | b'\n', _) => i + 1,
            _ => {
                i += 1;
                continue;
            }
        };
        lines.push(&text[start..end]);
        start = end;
        i = end;
    }
    if start < text.len() {
        lines.push(&text[start..]);
    }
    lines
}

/// Setter markers: the comment text after `#`.
pub fn marker(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let parsed = Marker::parse(&text);
    assert_eq!(parsed.is_some(), text.contains("$imagepolicy"));
    if let Some(Ok(m)) = parsed {
        assert!(!m.namespace.is_empty() && !m.name.is_empty());
        // What hoist writes into a commit message reads back as the same
        // marker.
        let written = serde_json::json!({ "$imagepolicy": m.to_string() }).to_string();
        assert_eq!(Marker::parse(&written), Some(Ok(m)));
    }
}

const SENDERS: [ReceiverType; 8] = [
    ReceiverType::DockerHub,
    ReceiverType::GitHub,
    ReceiverType::GitLab,
    ReceiverType::Gitea,
    ReceiverType::Harbor,
    ReceiverType::Quay,
    ReceiverType::Distribution,
    ReceiverType::GenericHmac,
];

const SECRET: &[u8] = b"fuzz-webhook-secret-0123456789";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn mac<M: Mac + hmac::digest::KeyInit>(body: &[u8]) -> Vec<u8> {
    match <M as hmac::digest::KeyInit>::new_from_slice(SECRET) {
        Ok(mut m) => {
            m.update(body);
            m.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

fn sha256(body: &[u8]) -> Vec<u8> {
    mac::<hmac::Hmac<sha2::Sha256>>(body)
}

/// The header that signs a request from `sender`, and its correct value.
fn signature(sender: ReceiverType, body: &[u8]) -> Option<(&'static str, String)> {
    let token = String::from_utf8_lossy(SECRET).into_owned();
    match sender {
        ReceiverType::GitHub => Some((
            "X-Hub-Signature-256",
            format!("sha256={}", hex(&sha256(body))),
        )),
        ReceiverType::Gitea => Some(("X-Gitea-Signature", hex(&sha256(body)))),
        ReceiverType::GitLab => Some(("X-Gitlab-Token", token)),
        ReceiverType::Harbor | ReceiverType::Distribution => {
            Some(("Authorization", format!("Bearer {token}")))
        }
        ReceiverType::GenericHmac => {
            Some(("X-Signature", format!("sha256={}", hex(&sha256(body)))))
        }
        ReceiverType::DockerHub | ReceiverType::Quay | ReceiverType::Generic => None,
    }
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    let text = text.as_bytes();
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect()
}

/// Whether `value` of `sender`'s signature header really signs `body`,
/// worked out independently of the code under test.
fn genuine(sender: ReceiverType, value: &str, body: &[u8]) -> bool {
    let hmac_of = |hash: &str, hex: &str| {
        let expected = match hash {
            "sha1" => mac::<hmac::Hmac<sha1::Sha1>>(body),
            "sha256" => sha256(body),
            "sha512" => mac::<hmac::Hmac<sha2::Sha512>>(body),
            _ => return false,
        };
        let hex = hex.trim();
        // Signs only if it is plain hex: no sign, no `0x`.
        hex.bytes().all(|b| b.is_ascii_hexdigit()) && unhex(hex) == Some(expected)
    };
    let secret = SECRET;
    match sender {
        ReceiverType::GitHub => value
            .strip_prefix("sha256=")
            .is_some_and(|h| hmac_of("sha256", h)),
        ReceiverType::Gitea => hmac_of("sha256", value),
        ReceiverType::GitLab => value.trim().as_bytes() == secret,
        ReceiverType::Harbor | ReceiverType::Distribution => {
            value.trim().as_bytes() == secret
                || value
                    .strip_prefix("Bearer ")
                    .is_some_and(|t| t.trim().as_bytes() == secret)
        }
        ReceiverType::GenericHmac => value
            .split_once('=')
            .is_some_and(|(hash, h)| hmac_of(hash, h)),
        ReceiverType::DockerHub | ReceiverType::Quay | ReceiverType::Generic => true,
    }
}

/// Signature and token checks: byte 0 picks the sender, the first line is
/// the signature header's value (`=` alone: the correct one), the rest is
/// the body. Nothing but the right signature is accepted, and the right
/// one always is.
pub fn webhook_signature(data: &[u8]) {
    let Some((&choice, rest)) = data.split_first() else {
        return;
    };
    let sender = SENDERS[usize::from(choice) % SENDERS.len()];
    let (line, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (rest, &[][..]),
    };
    let value = String::from_utf8_lossy(line).into_owned();
    let Some((name, correct)) = signature(sender, body) else {
        let result = webhook::verify(sender, SECRET, &[], body);
        assert!(!matches!(
            result,
            Err(Rejection::Unsigned | Rejection::BadSignature)
        ));
        return;
    };
    let value = if value == "=" { correct } else { value };
    // Header names arrive in any case.
    let name = if choice & 0x80 != 0 {
        name.to_ascii_lowercase()
    } else {
        name.to_string()
    };
    let headers = vec![(name, value.clone())];
    let signed = !matches!(
        webhook::verify(sender, SECRET, &headers, body),
        Err(Rejection::Unsigned | Rejection::BadSignature)
    );
    assert_eq!(
        signed,
        genuine(sender, &value, body),
        "{sender:?} {value:?}"
    );
    let unsigned = webhook::verify(sender, SECRET, &[], body);
    assert_eq!(
        unsigned,
        Err(Rejection::Unsigned),
        "{sender:?} without a header"
    );
    // With an empty secret nothing is signed.
    let empty = webhook::verify(sender, b" \n", &headers, body);
    assert_eq!(
        empty,
        Err(Rejection::BadSignature),
        "{sender:?} with no secret"
    );
}

/// Objects a Receiver's event can trigger, read once.
static OBJECTS: LazyLock<ObjectSet> = LazyLock::new(|| {
    let mut set = ObjectSet::default();
    let mut errors = Vec::new();
    crate::load::load_text(
        Path::new("objects.yaml"),
        WEBHOOK_OBJECTS,
        true,
        &mut set,
        &mut errors,
    );
    set
});

const WEBHOOK_OBJECTS: &str = "\
apiVersion: hoist.dev/v1alpha1
kind: ImageRepository
metadata: {name: app, namespace: team}
spec: {image: ghcr.io/acme/app, interval: 1h}
---
apiVersion: hoist.dev/v1alpha1
kind: ImageRepository
metadata: {name: hub, namespace: team}
spec: {image: acme/app, interval: 1h}
---
apiVersion: hoist.dev/v1alpha1
kind: ImageRepository
metadata: {name: local, namespace: team}
spec: {image: registry.local:5000/team/app, interval: 1h}
---
apiVersion: hoist.dev/v1alpha1
kind: ImageUpdateAutomation
metadata: {name: fleet, namespace: team}
spec:
  interval: 1h
  git:
    url: https://github.com/acme/fleet.git
    checkout: {ref: {branch: main}}
    commit:
      author: {name: hoist-bot, email: bot@example.com}
---
apiVersion: hoist.dev/v1alpha1
kind: Receiver
metadata: {name: named, namespace: team}
spec:
  type: github
  secretRef: {name: token}
---
apiVersion: hoist.dev/v1alpha1
kind: Receiver
metadata: {name: listed, namespace: team}
spec:
  type: generic-hmac
  secretRef: {name: token}
  resources:
    - {kind: ImageRepository, name: app}
    - {kind: ImageUpdateAutomation, name: fleet}
";

/// Event headers a sender sends, the ones acted on and some that are not.
fn event_header(sender: ReceiverType, choice: u8) -> Option<(&'static str, &'static str)> {
    let pick = |names: &[&'static str]| names[usize::from(choice) % names.len()];
    match sender {
        ReceiverType::GitHub => Some((
            "X-GitHub-Event",
            pick(&["push", "package", "registry_package", "ping", "issues"]),
        )),
        ReceiverType::GitLab => Some((
            "X-Gitlab-Event",
            pick(&["Push Hook", "Tag Push Hook", "Note Hook"]),
        )),
        ReceiverType::Gitea => Some(("X-Gitea-Event", pick(&["push", "create"]))),
        _ => None,
    }
}

/// Payloads: byte 0 picks the sender, byte 1 the event header and the
/// Receiver, the rest is the body, correctly signed. A signed request is
/// never refused for its signature, an event names a bounded set of
/// distinct names, and it triggers only objects that exist.
pub fn webhook_payload(data: &[u8]) {
    let [sender, event, body @ ..] = data else {
        return;
    };
    let sender = SENDERS[usize::from(*sender) % SENDERS.len()];
    let mut headers = Vec::new();
    if let Some((name, value)) = signature(sender, body) {
        headers.push((name.to_string(), value));
    }
    if let Some((name, value)) = event_header(sender, *event) {
        headers.push((name.to_string(), value.to_string()));
    }
    let result = webhook::verify(sender, SECRET, &headers, body);
    let found = match result {
        Ok(found) => found,
        Err(Rejection::Unsigned | Rejection::BadSignature) => {
            panic!("a correctly signed {sender:?} request was refused: {result:?}")
        }
        Err(_) => return,
    };
    for names in [&found.images, &found.repositories] {
        assert!(names.len() <= webhook::MAX_NAMES);
        let distinct: BTreeSet<&String> = names.iter().collect();
        assert_eq!(distinct.len(), names.len(), "repeated names: {names:?}");
        assert!(names.iter().all(|n| !n.is_empty()));
    }
    let objects = &*OBJECTS;
    let Some(receiver) = objects.receivers.get(usize::from(event & 0x80 != 0)) else {
        return;
    };
    let mut receiver = receiver.object.clone();
    receiver.spec.type_ = sender;
    let targets = webhook::targets::targets(
        &receiver,
        &found,
        objects.repositories.iter().map(|r| &r.object),
        objects.automations.iter().map(|a| &a.object),
    );
    let key = |meta: &kube::api::ObjectMeta| crate::model::ObjectKey::of(meta).to_string();
    let repositories: BTreeSet<String> = objects
        .repositories
        .iter()
        .map(|r| key(&r.object.metadata))
        .collect();
    let automations: BTreeSet<String> = objects
        .automations
        .iter()
        .map(|a| key(&a.object.metadata))
        .collect();
    assert!(targets.repositories.is_subset(&repositories));
    assert!(targets.automations.is_subset(&automations));
}

/// Longer than any wait a registry or forge could mean.
const ABSURD_WAIT: Duration = Duration::from_secs(24 * 60 * 60);

/// The registry's `WWW-Authenticate`, `Link` and `Retry-After` headers.
pub fn registry_headers(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Some(headers::Challenge::Bearer { realm, .. }) = headers::parse_challenge(&text) {
        assert!(!realm.is_empty());
    }
    if let Some(next) = headers::next_link(&text) {
        let (start, end) = (text.as_ptr() as usize, text.as_ptr() as usize + text.len());
        assert!((start..=end).contains(&(next.as_ptr() as usize)));
        assert!(!next.contains('>'), "{next:?}");
    }
    // 2026-01-01: a fixed now, so that a finding replays.
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
    for now in [now, SystemTime::UNIX_EPOCH] {
        if let Some(wait) = crate::net::retry_after(&text, now) {
            assert!(wait <= ABSURD_WAIT, "Retry-After {text:?} waits {wait:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_webhook_objects_load() {
        let objects = &*super::OBJECTS;
        assert_eq!(
            (
                objects.repositories.len(),
                objects.automations.len(),
                objects.receivers.len()
            ),
            (3, 1, 2)
        );
    }
}
