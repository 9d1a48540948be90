//! Plain values the stages hand each other. No I/O here.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The namespace an object without one lives in, as the API server and
/// kubectl put it.
pub const DEFAULT_NAMESPACE: &str = "default";

/// The namespace of an object: its own, else [`DEFAULT_NAMESPACE`].
pub fn namespace_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
    meta.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE)
}

/// An object by namespace and name: how every stage, status and report
/// names hoist's objects, printed `namespace/name`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(namespace: &str, name: &str) -> ObjectKey {
        ObjectKey {
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }

    /// The key of the object `meta` describes; a missing name is empty
    /// (the loader refuses such objects before any stage sees them).
    pub fn of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> ObjectKey {
        ObjectKey::new(namespace_of(meta), meta.name.as_deref().unwrap_or(""))
    }

    /// The object a reference names: `name` in `namespace`, else in the
    /// referring object's namespace `from`.
    pub fn referred(namespace: Option<&str>, name: &str, from: &str) -> ObjectKey {
        ObjectKey::new(namespace.unwrap_or(from), name)
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A git remote's URL read into host and repository path:
/// `https://host[:port]/owner/name(.git)`, `ssh://user@host[:port]/…`,
/// `git://…` and the scp form `user@host:owner/name.git`. The forge
/// clients and the webhook's repository matching both read URLs through
/// it, so they agree on what a URL names. (Which transport git would use
/// for a URL, and whether a controller may reach it, is git's question:
/// [`crate::git::network_url`].)
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GitUrl {
    /// `https`, `ssh`, …; `None` for the scp form.
    pub scheme: Option<String>,
    /// The host as written, with its port (`git.example.com:8443`,
    /// `[::1]:2222`), without userinfo.
    pub authority: String,
    /// The host alone: no port, no brackets around an IPv6 address.
    pub host: String,
    /// The repository path without slashes at the ends or `.git`.
    pub path: String,
}

impl GitUrl {
    pub fn parse(url: &str) -> Option<GitUrl> {
        let (scheme, authority, path) = match url.split_once("://") {
            Some((scheme, rest)) => {
                let (authority, path) = rest.split_once('/')?;
                (Some(scheme.to_ascii_lowercase()), authority, path)
            }
            None => {
                let (authority, path) = url.split_once(':')?;
                (None, authority, path)
            }
        };
        let authority = authority.rsplit('@').next().unwrap_or(authority);
        let host = match authority.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(v6),
            None if scheme.is_none() => authority,
            None => authority.split(':').next().unwrap_or(authority),
        };
        let path = path.trim_matches('/');
        let path = path
            .strip_suffix(".git")
            .unwrap_or(path)
            .trim_end_matches('/');
        if host.is_empty() || path.is_empty() {
            return None;
        }
        Some(GitUrl {
            scheme,
            authority: authority.to_string(),
            host: host.to_string(),
            path: path.to_string(),
        })
    }

    /// `(host, path)`, lower-cased: the https, ssh and scp URLs of one
    /// repository compare equal.
    pub fn identity(&self) -> (String, String) {
        (
            self.host.to_ascii_lowercase(),
            self.path.to_ascii_lowercase(),
        )
    }
}

/// Which object, whatever its API version: what a sync's inventory keeps.
/// Here rather than in the sync stage because the automation's status (a
/// CRD schema) and the store hold inventories too.
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct ObjectId {
    /// "" for the core group.
    pub group: String,
    pub kind: String,
    /// None for cluster-scoped kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        };
        match &self.namespace {
            Some(ns) => write!(f, "{kind} {ns}/{}", self.name),
            None => write!(f, "{kind} {}", self.name),
        }
    }
}

/// One object hoist applied, and the API version to reach it with.
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct InventoryEntry {
    #[serde(flatten)]
    pub id: ObjectId,
    pub api_version: String,
    /// hoist created the object (rather than taking over one that
    /// existed): only then may it prune a Namespace or CRD.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub created: bool,
}

/// What hoist remembers of an automation's pull request between runs, so
/// that a run with nothing new asks the forge nothing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequestRecord {
    /// [`crate::forge::Forge::identity`] of the forge it is on.
    #[serde(default)]
    pub forge: String,
    pub number: u64,
    pub url: String,
    pub head: String,
    pub base: String,
    /// sha256 of the title and body hoist last set.
    pub content: String,
    pub labels: Vec<String>,
}

/// A tag as a registry lists it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Tag(pub String);

impl Tag {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Tag {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Tag {
    fn from(tag: &str) -> Self {
        Tag(tag.to_string())
    }
}

impl From<String> for Tag {
    fn from(tag: String) -> Self {
        Tag(tag)
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a policy made of a list of tags.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Selection {
    /// The latest tag, exactly as the registry wrote it; `None` when no tag
    /// qualified.
    pub tag: Option<Tag>,
    /// Tags the policy ordered: they passed `filterTags` and, for semver,
    /// fall within the range.
    pub candidates: usize,
    /// Tags that passed `filterTags` but that the policy could not read: not
    /// a version (semver) or not a number (numerical).
    pub ignored: usize,
}

/// The Kubernetes object a change sits in, as far as its document says.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ObjectRef {
    pub kind: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    /// Not shown or reported; Flux's commit templates read it
    /// (`$resource.APIVersion`).
    #[serde(skip)]
    pub api_version: Option<String>,
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.kind, &self.name) {
            (None, None) => f.write_str("-"),
            (kind, name) => {
                if let Some(kind) = kind {
                    write!(f, "{kind}")?;
                    if name.is_some() {
                        f.write_str(" ")?;
                    }
                }
                if let Some(name) = name {
                    if let Some(ns) = &self.namespace {
                        write!(f, "{ns}/")?;
                    }
                    f.write_str(name)?;
                }
                Ok(())
            }
        }
    }
}

/// One marked value hoist changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    /// The file, relative to the rewritten tree.
    pub file: std::path::PathBuf,
    /// 1-based line of the value.
    pub line: usize,
    pub object: ObjectRef,
    /// The marker as written: `flux-system:podinfo:tag`.
    pub marker: String,
    /// The ImagePolicy, `ns/name`.
    pub policy: String,
    /// The image repository the policy selected from (`ghcr.io/acme/app`),
    /// so that a change to a `:tag` or `:digest` field still names it.
    pub image: String,
    pub old: String,
    pub new: String,
}

/// Every change of one rewrite, in file and line order. Commit messages and
/// pull request bodies are made from it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ChangeSet {
    pub changes: Vec<Change>,
}

impl ChangeSet {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// The distribution spec's tag grammar: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
pub fn is_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// `algorithm:hex`, as a registry names a manifest.
pub fn is_digest(digest: &str) -> bool {
    digest.split_once(':').is_some_and(|(alg, hex)| {
        !alg.is_empty() && hex.len() >= 32 && hex.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    #[test]
    fn an_object_without_a_namespace_is_in_default_and_a_reference_in_its_referrers() {
        let meta = |namespace: Option<&str>| ObjectMeta {
            name: Some("app".into()),
            namespace: namespace.map(str::to_string),
            ..ObjectMeta::default()
        };
        assert_eq!(ObjectKey::of(&meta(None)).to_string(), "default/app");
        assert_eq!(ObjectKey::of(&meta(Some("team"))).to_string(), "team/app");
        assert_eq!(namespace_of(&meta(None)), "default");
        assert_eq!(
            ObjectKey::referred(None, "repo", "team"),
            ObjectKey::new("team", "repo")
        );
        assert_eq!(
            ObjectKey::referred(Some("shared"), "repo", "team").to_string(),
            "shared/repo"
        );
    }

    #[test]
    fn one_repository_reads_the_same_in_every_url_form() {
        let forms = [
            "https://GitHub.com/Acme/Fleet.git",
            "https://user:secret@github.com/acme/fleet/",
            "ssh://git@github.com:22/acme/fleet.git",
            "git@github.com:acme/fleet.git",
            "git://github.com/acme/fleet",
        ];
        for url in forms {
            let parsed = GitUrl::parse(url).unwrap_or_else(|| panic!("{url}"));
            assert_eq!(
                parsed.identity(),
                ("github.com".to_string(), "acme/fleet".to_string()),
                "{url}"
            );
        }
        let v6 = GitUrl::parse("ssh://git@[::1]:2222/team/app.git");
        assert_eq!(
            v6.map(|u| (u.authority, u.host, u.path)),
            Some(("[::1]:2222".into(), "::1".into(), "team/app".into()))
        );
        let port = GitUrl::parse("https://git.example.com:8443/group/sub/project.git");
        assert_eq!(
            port.map(|u| (u.authority, u.host)),
            Some(("git.example.com:8443".into(), "git.example.com".into()))
        );
        for bad in [
            "",
            "fleet",
            "https://github.com",
            "https:///acme/fleet",
            "host:",
        ] {
            assert_eq!(GitUrl::parse(bad), None, "{bad}");
        }
    }
}
