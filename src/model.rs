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
}
